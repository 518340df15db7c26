//! Who an audience reaches, per city: what a send is planned from and what a preview shows (a
//! domain service: it needs only the receiver directory port); and which broadcasts a receiver who
//! joins, moves or changes groups later still gets.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::audience::Target;
use crate::ports::{CityPlan, PortResult, QueueMessage, ReceiverDirectory};
use crate::{
    Audience, City, Notification, NotificationId, PAGE_SIZE, Page, PageKey, Receiver, ReceiverId, ReceiverKind,
    Selection, Status, Topic,
};

/// An audience resolved against the receiver directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudiencePlan {
    pub cities: Vec<CityPlan>,
    /// Include-list ids that are not known receivers of the kind.
    pub unknown: Vec<ReceiverId>,
}

impl AudiencePlan {
    pub fn matched(&self) -> u64 {
        self.cities.iter().map(|c| c.matched).sum()
    }
}

/// Counts the receivers an audience reaches in each city. A selection is counted in SQL and the
/// excluded receivers it would have matched are subtracted. An include list (minus the excluded)
/// is looked up once and its members are kept per city, so the send pages exactly this snapshot.
/// Cities named by the audience appear even when they match nobody, so operations see the zero.
pub async fn plan_audience(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
) -> PortResult<AudiencePlan> {
    match &audience.target {
        Target::Selection(selection) => {
            let mut per_city: BTreeMap<City, u64> = BTreeMap::new();
            for city in selection.cities.iter().flatten() {
                per_city.insert(city.clone(), 0);
            }
            per_city.extend(directory.count_selection(kind, selection).await?);
            let excluded: Vec<ReceiverId> = audience.exclude.iter().cloned().collect();
            for r in directory.lookup_receivers(kind, &excluded).await? {
                if selection.matches(&r.city, r.groups())
                    && let Some(n) = per_city.get_mut(&r.city)
                {
                    *n = n.saturating_sub(1);
                }
            }
            let cities = per_city.into_iter().map(|(city, matched)| CityPlan { city, matched, members: None });
            Ok(AudiencePlan { cities: cities.collect(), unknown: Vec::new() })
        }
        Target::Include(ids) => {
            let wanted: Vec<ReceiverId> = ids.iter().filter(|id| !audience.excludes(id)).cloned().collect();
            let found = directory.lookup_receivers(kind, &wanted).await?;
            let known: BTreeSet<&ReceiverId> = found.iter().map(|r| &r.id).collect();
            let unknown = wanted.iter().filter(|id| !known.contains(id)).cloned().collect();
            let mut per_city: BTreeMap<City, BTreeSet<ReceiverId>> = BTreeMap::new();
            for r in found {
                per_city.entry(r.city).or_default().insert(r.id);
            }
            let cities = per_city.into_iter().map(|(city, members)| CityPlan {
                city,
                matched: members.len() as u64,
                members: Some(members.into_iter().collect()),
            });
            Ok(AudiencePlan { cities: cities.collect(), unknown })
        }
    }
}

/// One step of paging a selection through one city by keyset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionPage {
    /// The receivers of this step, in id order, the excluded left out.
    pub receivers: Vec<ReceiverId>,
    /// The keyset position after it (`after` when nothing was read).
    pub last: Option<ReceiverId>,
    /// No receiver of the city remains after it.
    pub finished: bool,
}

/// The next up to `PAGE_SIZE` receivers of `kind` in `city` that `selection` matches, strictly
/// after `after`, minus those `audience` excludes: how a send pages a city, and how a rebuild of
/// the inbox store re-pages it.
pub async fn page_selection(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
    selection: &Selection,
    city: &City,
    after: Option<&ReceiverId>,
) -> PortResult<SelectionPage> {
    let raw = directory.page_selection(kind, selection, city, after, PAGE_SIZE).await?;
    let finished = raw.len() < PAGE_SIZE;
    let last = raw.last().or(after).cloned();
    let receivers = raw.into_iter().filter(|id| !audience.excludes(id)).collect();
    Ok(SelectionPage { receivers, last, finished })
}

/// Receivers a broadcast reaches late in one city, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateDelivery {
    pub notification: NotificationId,
    pub receiver_kind: ReceiverKind,
    pub city: City,
    pub receivers: Vec<ReceiverId>,
}

impl LateDelivery {
    /// How many pages `pages` makes.
    pub fn page_count(&self) -> u32 {
        self.receivers.len().div_ceil(PAGE_SIZE) as u32
    }

    /// The pages of at most `PAGE_SIZE` that carry it, numbered from `first` (the city's task had
    /// published `first` pages before), as queue messages on the bulk topic (they are broadcast
    /// pages, however few).
    pub fn pages(&self, first: u32) -> Result<Vec<QueueMessage>, serde_json::Error> {
        self.receivers
            .chunks(PAGE_SIZE)
            .zip(first..)
            .map(|(chunk, page_no)| {
                let page = Page {
                    key: PageKey { notification_id: self.notification.clone(), city: self.city.clone(), page_no },
                    receiver_kind: self.receiver_kind,
                    receivers: chunk.to_vec(),
                };
                page.to_message(Topic::Bulk)
            })
            .collect()
    }
}

/// The selection of a broadcast to every city, if `n` is one: starting it gives a task to every
/// city where it matches someone when sending starts, not only those counted in its plan (someone
/// may have joined a new city in between, and would otherwise get neither a task nor a late page).
pub fn selection_of_every_city(n: &Notification) -> Option<&Selection> {
    match &n.content.audience.target {
        Target::Selection(selection) if selection.cities.is_none() => Some(selection),
        _ => None,
    }
}

/// Whether a receiver that is new, or whose city or groups just changed, gets `n` late: `n` is a
/// broadcast (a selection; an include list is an explicit snapshot) that is sending or sent (not
/// revoked or cancelled), for its kind, still valid at `now`, whose selection matches the receiver's
/// city and groups as they are now and does not exclude it.
pub fn reaches_late(n: &Notification, r: &Receiver, now: DateTime<Utc>) -> bool {
    let Target::Selection(selection) = &n.content.audience.target else { return false };
    matches!(n.status, Status::Sending | Status::Sent)
        && n.content.receiver_kind == r.kind
        && n.content.validity.until().is_none_or(|until| until > now)
        && selection.matches(&r.city, r.groups())
        && !n.content.audience.excludes(&r.id)
}

/// What the receivers that are new or changed get late (`reaches_late`), grouped per
/// (notification, city) so it is paged like any send: never one write per receiver. A receiver
/// that no longer matches keeps what it already got.
pub fn late_deliveries(
    notifications: &[Notification],
    receivers: &[Receiver],
    now: DateTime<Utc>,
) -> Vec<LateDelivery> {
    let mut groups: BTreeMap<(&NotificationId, &City), (ReceiverKind, BTreeSet<&ReceiverId>)> = BTreeMap::new();
    for n in notifications {
        for r in receivers.iter().filter(|r| reaches_late(n, r, now)) {
            groups.entry((&n.id, &r.city)).or_insert_with(|| (r.kind, BTreeSet::new())).1.insert(&r.id);
        }
    }
    groups
        .into_iter()
        .map(|((n, city), (receiver_kind, ids))| LateDelivery {
            notification: n.clone(),
            receiver_kind,
            city: city.clone(),
            receivers: ids.into_iter().cloned().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NewNotification;
    use crate::{Body, Category, Group, Title, ValidityWindow};

    fn notification(audience: &str, status: Status, until: Option<DateTime<Utc>>) -> Notification {
        Notification {
            id: NotificationId::generate(),
            content: NewNotification {
                title: Title::parse("title", "t").unwrap(),
                body: Body::parse("body", "b").unwrap(),
                category: Category::System,
                receiver_kind: ReceiverKind::Rider,
                audience: serde_json::from_str(audience).unwrap(),
                pinned: false,
                force_read: false,
                validity: ValidityWindow::new(None, until).unwrap(),
                send_at: None,
                draft: false,
                image: None,
                actions: Default::default(),
            },
            status,
            created_at: Utc::now(),
            sent_at: None,
            revoked_at: None,
        }
    }

    fn rider(kind: ReceiverKind, id: &str, city: &str, groups: &[&str]) -> Receiver {
        let groups = groups.iter().map(|g| Group::parse("", g).unwrap()).collect();
        Receiver::new(kind, ReceiverId::parse("", id).unwrap(), City::parse("", city).unwrap(), groups).unwrap()
    }

    #[test]
    fn late_joiners_get_what_they_now_match_per_notification_and_city() {
        let now = Utc::now();
        let all = notification(r#"{"all": true, "exclude": ["r9"]}"#, Status::Sent, None);
        let vip_bj = notification(r#"{"cities": ["bj"], "groups": ["vip"]}"#, Status::Sending, None);
        let not_late = [
            notification(r#"{"all": true}"#, Status::Revoked, None),
            notification(r#"{"all": true}"#, Status::Scheduled, None),
            notification(r#"{"all": true}"#, Status::Sent, Some(now - chrono::Duration::seconds(1))),
            notification(r#"{"include": ["r1"]}"#, Status::Sent, None),
        ];
        let receivers = [
            rider(ReceiverKind::Rider, "r2", "bj", &["vip"]),
            rider(ReceiverKind::Rider, "r1", "bj", &[]),
            rider(ReceiverKind::Rider, "r3", "sh", &["vip"]),
            rider(ReceiverKind::Rider, "r9", "bj", &["vip"]),
            rider(ReceiverKind::Merchant, "m1", "bj", &["vip"]),
        ];
        let mut notifications = vec![all.clone(), vip_bj.clone()];
        notifications.extend(not_late);
        let ids = |v: &[&str]| v.iter().map(|i| ReceiverId::parse("", i).unwrap()).collect::<Vec<_>>();
        let city = |c: &str| City::parse("", c).unwrap();
        let mut expected = vec![
            (all.id.clone(), city("bj"), ids(&["r1", "r2"])),
            (all.id.clone(), city("sh"), ids(&["r3"])),
            (vip_bj.id.clone(), city("bj"), ids(&["r2", "r9"])),
        ];
        let mut expected: Vec<LateDelivery> = expected
            .drain(..)
            .map(|(notification, city, receivers)| LateDelivery {
                notification,
                receiver_kind: ReceiverKind::Rider,
                city,
                receivers,
            })
            .collect();
        expected.sort_by(|a, b| (&a.notification, &a.city).cmp(&(&b.notification, &b.city)));
        assert_eq!(late_deliveries(&notifications, &receivers, now), expected);
    }

    #[test]
    fn late_pages_are_numbered_after_the_task_and_go_on_the_bulk_topic() {
        let late = LateDelivery {
            notification: NotificationId::generate(),
            receiver_kind: ReceiverKind::Rider,
            city: City::parse("", "bj").unwrap(),
            receivers: (0..1201).map(|i| ReceiverId::parse("", &format!("r{i:05}")).unwrap()).collect(),
        };
        assert_eq!(late.page_count(), 3);
        let pages: Vec<Page> = late.pages(3).unwrap().iter().map(|m| Page::decode(&m.body).unwrap()).collect();
        let shape: Vec<(u32, usize)> = pages.iter().map(|p| (p.key.page_no, p.receivers.len())).collect();
        assert_eq!(shape, [(3, 500), (4, 500), (5, 201)]);
        assert_eq!(pages.iter().flat_map(|p| p.receivers.clone()).collect::<Vec<_>>(), late.receivers);
        assert!(late.pages(0).unwrap().iter().all(|m| m.topic == Topic::Bulk.name() && m.tag == "rider"));
    }

    #[test]
    fn only_a_selection_of_every_city_gets_cities_joined_after_its_plan() {
        let every = notification(r#"{"all": true}"#, Status::Scheduled, None);
        assert!(selection_of_every_city(&every).is_some());
        for audience in [r#"{"cities": ["bj"]}"#, r#"{"include": ["r1"]}"#] {
            assert!(selection_of_every_city(&notification(audience, Status::Scheduled, None)).is_none(), "{audience}");
        }
    }
}
