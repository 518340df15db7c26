//! The port contracts, run against the embedded adapters.

mod contracts;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::inbox::InboxHarness;
use contracts::queue::QueueHarness;
use contracts::store::StoreHarness;
use herald::adapters::embedded_inbox::EmbeddedInbox;
use herald::adapters::embedded_queue::EmbeddedQueue;
use herald::startup::Ports;
use herald_domain::InboxCap;
use herald_domain::ports::{InboxStore, Queue};

/// Embedded adapters keep their files in a temp dir; opening again reopens the same files.
struct Embedded(tempfile::TempDir);

impl Embedded {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

#[async_trait]
impl QueueHarness for Embedded {
    async fn open(&self) -> Arc<dyn Queue> {
        Arc::new(EmbeddedQueue::open(&self.0.path().join("queue.db"), Duration::from_secs(30)).await.unwrap())
    }

    fn topic(&self, name: &str) -> String {
        name.to_string()
    }
}

#[async_trait]
impl InboxHarness for Embedded {
    async fn open_capped(&self, cap: InboxCap) -> Arc<dyn InboxStore> {
        Arc::new(EmbeddedInbox::open(&self.0.path().join("inbox.db"), cap).await.unwrap())
    }
}

#[async_trait]
impl StoreHarness for Embedded {
    async fn open(&self) -> Ports {
        Ports::embedded(self.0.path()).await.unwrap()
    }
}

mod queue {
    use super::*;
    contract_tests!(
        queue,
        Embedded::new(),
        [
            delivers_in_order_and_ack_removes,
            filters_by_topic_and_tag,
            every_group_gets_every_message,
            retry_later_redelivers_with_next_attempt,
            unacked_messages_survive_a_restart,
            pull_waits_for_a_publish,
            earlier_topics_are_served_first_so_a_backlog_never_delays_them,
            a_declared_group_keeps_what_is_published_before_its_consumer_runs,
            retries_never_give_up,
            a_second_subscriber_leaves_what_the_first_holds,
            a_stale_holders_messages_come_back_and_its_receipts_are_void,
        ]
    );
}

mod inbox {
    use super::*;
    contract_tests!(
        inbox,
        Embedded::new(),
        [
            redelivery_changes_nothing,
            concurrent_redelivery_counts_once,
            a_withheld_notification_gets_no_more_entries,
            a_page_delivered_after_withholding_records_zero_and_repeats_it,
            applied_revocations_are_withheld_and_remembered,
            kinds_have_separate_inboxes,
            reads_count_once_per_receiver,
            changes_are_versioned_for_sync,
            entries_survive_a_restart,
            the_list_pages_in_inbox_order_pinned_unread_first,
            only_visible_entries_are_listed_and_counted_exactly,
            sync_finds_windows_that_opened_without_the_whole_inbox,
            a_full_inbox_drops_gone_then_read_then_unread_oldest_first,
            pinned_and_unread_force_read_entries_are_kept_past_the_cap,
            a_dropped_entry_never_comes_back_nor_counts_again,
        ]
    );
}

mod store {
    use super::*;
    contract_tests!(
        store,
        Embedded::new(),
        [
            keyset_pages_cover_a_city_exactly_once,
            upsert_replaces_city_and_groups,
            group_names_are_matched_whole,
            selections_of_ten_thousand_cities_and_groups_are_answered,
            upsert_counts_only_new_or_changed_receivers,
            idempotent_create_and_lawful_transitions,
            an_event_is_recorded_under_the_current_status,
            revocations_are_logged_in_order,
            read_receipts_count_new_ones,
            a_send_is_resumable_and_completes_once,
            the_outbox_is_read_per_topic_oldest_first,
            a_late_joiner_is_paged_into_the_broadcasts_it_now_matches,
            a_city_reached_after_the_plan_was_counted_gets_a_task_when_sending_starts,
            an_empty_plan_is_sent_at_once,
            state_survives_a_restart,
            include_snapshots_are_kept_and_listed_apart,
            open_tasks_page_by_keyset,
            lists_newest_first_with_filters_and_a_keyset_cursor,
        ]
    );
}
