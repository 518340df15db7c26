//! `herald rebuild`: the inbox store (inboxes, read and archived flags, counters, delivered pages,
//! withheld notifications) restored from the SQL truth, for every adapter alike.
//!
//! What SQL knows, and so what comes back (SQL keeps no row per receiver per broadcast, so who a
//! page reached is re-derived, never read back):
//!
//! - **withheld**: the revocation log, applied from its start (`apply_revocation`).
//! - **entries**: for each notification sending, sent or revoked whose every city is done (every
//!   page published was delivered), its audience is paged again as sending pages it, against the
//!   receiver directory as it is now: a selection city by city of its send tasks by keyset, 500 at
//!   a time, minus the excluded; an include list as the snapshot a send would take now. A receiver
//!   who left the audience since it got the message (moved to a city it does not name, left its
//!   groups, was deleted) does not get it back; one who joined later got it as a late joiner
//!   (or, past its window, gets an entry that is never shown). A revoked one's entries come back
//!   hidden, so a device that held one still syncs its revocation. A notification with a city still
//!   delivering is left out of this step and reported: run the rebuild again once it is done.
//! - **read flags**: each read receipt marks its receiver's entry read.
//! - **archived entries**: each archive SQL holds (un-archiving deleted its row) archives its
//!   receiver's entry again.
//! - **counters**: `sent` and `sent:<city>` are what the ledger's delivered pages added
//!   (`matched` once a city is done), `read` the receipts SQL holds; set exactly, last. A
//!   notification with variants has its split re-derived from the directory as it is now (SQL
//!   keeps no receiver's variant): each variant's `sent` counts the audience paged again by the
//!   groups each receiver is in now, its `read` the readers by theirs (so a receiver who changed
//!   groups since moves to the variant it would be shown now, and one who left the audience is no
//!   longer in a split, though still in `sent`); one still delivering gets no split of `sent`.
//! - **delivered pages**: the ledger's, with what each added, so a page delivered again after the
//!   rebuild changes nothing.
//!
//! Every step is idempotent (entries are added only where missing, reads and archives flip once,
//! counters and pages are set to SQL's values), so a rebuild run twice, or after one that stopped
//! part way, ends in the same state. Everything is read by keyset, `BATCH` at a time. Run it with the
//! consumers stopped: a page delivered while its notification is being rebuilt may be counted
//! against the restored state.

use std::collections::BTreeMap;

use herald_domain::audience::Target;
use herald_domain::plan::{page_selection, plan_audience, shown_to_each};
use herald_domain::ports::{CityProgress, Counters, Read};
use herald_domain::{
    City, EntryMeta, Notification, NotificationId, PAGE_SIZE, Page, PageKey, ReceiverId, ReceiverRef, ShownVariant,
    Status,
};

use crate::{AppResult, Herald};

/// Rows read per step (log positions, receipts, delivered pages); pages hold `PAGE_SIZE` receivers.
const BATCH: usize = 500;

/// What a rebuild restored, so far or in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Revocations applied from the log.
    pub revocations: u64,
    /// Notifications looked at (every one SQL holds).
    pub notifications: u64,
    /// Of those, the ones that were sent (sending, sent or revoked): their counters and pages set.
    pub restored: u64,
    /// Entries added (receivers that did not hold their notification yet).
    pub entries: u64,
    /// Read receipts applied.
    pub reads: u64,
    /// Archives applied.
    pub archives: u64,
    /// Delivered pages recorded.
    pub pages: u64,
    /// Notifications with a city still delivering: their entries are not restored yet.
    pub pending: Vec<NotificationId>,
}

impl Herald {
    /// Restores the inbox store from SQL (see the module's text for what and how), telling
    /// `progress` after each notification.
    pub async fn rebuild_inbox(&self, mut progress: impl FnMut(&RebuildReport)) -> AppResult<RebuildReport> {
        let mut report = RebuildReport::default();
        let mut after = 0;
        loop {
            let batch = self.ports.notifications.revocations_since(after, BATCH).await?;
            for (position, id) in &batch {
                self.ports.inbox.apply_revocation(*position, id).await?;
                report.revocations += 1;
                after = *position;
            }
            if batch.len() < BATCH {
                break;
            }
        }
        // The change log lists every notification once, by position.
        let mut position = 0;
        loop {
            let batch = self.ports.notifications.changes_since(position, BATCH).await?;
            let ids: Vec<NotificationId> = batch.iter().map(|(_, id)| id.clone()).collect();
            let mut found: BTreeMap<NotificationId, Notification> =
                self.ports.notifications.notifications(&ids).await?.into_iter().map(|n| (n.id.clone(), n)).collect();
            let mut cities = self.ports.ledger.progress_of(&ids).await?;
            for id in &ids {
                if let Some(n) = found.remove(id) {
                    report.notifications += 1;
                    self.rebuild_one(&n, &cities.remove(id).unwrap_or_default(), &mut report).await?;
                    progress(&report);
                }
            }
            match batch.last() {
                Some((last, _)) if batch.len() == BATCH => position = *last,
                _ => break,
            }
        }
        Ok(report)
    }

    async fn rebuild_one(
        &self,
        n: &Notification,
        cities: &[CityProgress],
        report: &mut RebuildReport,
    ) -> AppResult<()> {
        if !matches!(n.status, Status::Sending | Status::Sent | Status::Revoked) {
            return Ok(());
        }
        report.restored += 1;
        let mut counters = Counters::default();
        if cities.iter().all(|c| c.done) {
            for (shown, sent) in self.restore_entries(n, cities, report).await? {
                counters.variants.entry(shown).or_default().sent = sent;
            }
        } else {
            report.pending.push(n.id.clone());
        }
        counters.read = self.restore_reads(n, &mut counters, report).await?;
        self.restore_archives(&n.id, report).await?;
        let mut after: Option<(City, u32)> = None;
        loop {
            let pages = self.ports.ledger.delivered_pages(&n.id, after.as_ref().map(|(c, p)| (c, *p)), BATCH).await?;
            for (key, added) in &pages {
                counters.sent += added;
                *counters.sent_by_city.entry(key.city.as_str().to_owned()).or_default() += added;
            }
            self.ports.inbox.restore_pages(&pages).await?;
            report.pages += pages.len() as u64;
            match pages.last() {
                Some((key, _)) if pages.len() == BATCH => after = Some((key.city.clone(), key.page_no)),
                _ => break,
            }
        }
        self.ports.inbox.set_counters(&n.id, &counters).await?;
        Ok(())
    }

    /// Pages the audience again, as sending pages it, into the inbox store; answers, for a
    /// notification with variants, how many of the audience each one is shown.
    async fn restore_entries(
        &self,
        n: &Notification,
        cities: &[CityProgress],
        report: &mut RebuildReport,
    ) -> AppResult<BTreeMap<ShownVariant, u64>> {
        let kind = n.content.receiver_kind;
        let audience = &n.content.audience;
        let meta = EntryMeta::of(n);
        let mut by_variant = BTreeMap::new();
        let mut restore = async |city: &City, page_no: u32, receivers: Vec<ReceiverId>| -> AppResult<u64> {
            let shown = shown_to_each(self.ports.receivers.as_ref(), &n.content, kind, &receivers).await?;
            for shown in shown {
                *by_variant.entry(shown).or_default() += 1;
            }
            let key = PageKey { notification_id: n.id.clone(), city: city.clone(), page_no };
            Ok(self.ports.inbox.restore(&Page { key, receiver_kind: kind, receivers }, &meta).await?)
        };
        match &audience.target {
            Target::Selection(selection) => {
                for city in cities.iter().map(|c| &c.city) {
                    let mut after = None;
                    for page_no in 0.. {
                        let step = page_selection(
                            self.ports.receivers.as_ref(),
                            kind,
                            audience,
                            selection,
                            city,
                            after.as_ref(),
                            n.content.opt_out_category(),
                        )
                        .await?;
                        if !step.receivers.is_empty() {
                            report.entries += restore(city, page_no, step.receivers).await?;
                        }
                        if step.finished {
                            break;
                        }
                        after = step.last;
                    }
                }
            }
            Target::Include(_) => {
                let plan =
                    plan_audience(self.ports.receivers.as_ref(), kind, audience, n.content.opt_out_category()).await?;
                for city in &plan.cities {
                    let members = city.members.as_deref().unwrap_or_default();
                    for (page_no, chunk) in (0..).zip(members.chunks(PAGE_SIZE)) {
                        report.entries += restore(&city.city, page_no, chunk.to_vec()).await?;
                    }
                }
            }
        }
        Ok(by_variant)
    }

    /// Marks read what the receipts say was read; answers how many receipts there are, and counts
    /// them in `counters.variants` by what each reader is shown.
    async fn restore_reads(
        &self,
        n: &Notification,
        counters: &mut Counters,
        report: &mut RebuildReport,
    ) -> AppResult<u64> {
        let id = &n.id;
        let mut read = 0;
        let mut after: Option<ReceiverRef> = None;
        loop {
            let readers = self.ports.notifications.read_receipts(id, after.as_ref(), BATCH).await?;
            let ids: Vec<ReceiverId> = readers.iter().map(|r| r.id.clone()).collect();
            let shown = shown_to_each(self.ports.receivers.as_ref(), &n.content, n.content.receiver_kind, &ids).await?;
            for (i, me) in readers.iter().enumerate() {
                let shown = shown.get(i).copied();
                self.ports.inbox.mark_read_shown(me, &[Read { id: id.clone(), shown }]).await?;
                if let Some(shown) = shown {
                    counters.variants.entry(shown).or_default().read += 1;
                }
            }
            read += readers.len() as u64;
            report.reads += readers.len() as u64;
            if readers.len() < BATCH {
                break;
            }
            after = readers.last().cloned();
        }
        Ok(read)
    }

    /// Archives again what SQL's archives say was archived (moving no counter).
    async fn restore_archives(&self, id: &NotificationId, report: &mut RebuildReport) -> AppResult<()> {
        let mut after: Option<ReceiverRef> = None;
        loop {
            let archivers = self.ports.notifications.archives(id, after.as_ref(), BATCH).await?;
            for me in &archivers {
                self.ports.inbox.set_archived(me, std::slice::from_ref(id), true).await?;
            }
            report.archives += archivers.len() as u64;
            if archivers.len() < BATCH {
                return Ok(());
            }
            after = archivers.last().cloned();
        }
    }
}
