//! Who an audience reaches, per city: what a send is planned from and what a preview shows (a
//! domain service: it needs only the receiver directory port); and which broadcasts a receiver who
//! joins, moves or changes groups later still gets.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::audience::Target;
use crate::ports::{CityPlan, PortResult, QueueMessage, ReceiverDirectory};
use crate::{
    Audience, Category, City, Group, NewNotification, Notification, NotificationId, PAGE_SIZE, Page, PageKey,
    Preferences, Receiver, ReceiverId, ReceiverKind, ReceiverRef, Selection, ShownVariant, Status, Topic,
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

    pub fn opted_out(&self) -> u64 {
        self.cities.iter().map(|c| c.opted_out).sum()
    }
}

/// Those among `ids` who opted out of `opt_out` (none when the message is critical: `None`).
async fn opted_out_among(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    opt_out: Option<Category>,
    ids: &[ReceiverId],
) -> PortResult<BTreeSet<ReceiverId>> {
    match opt_out {
        Some(category) if !ids.is_empty() => Ok(directory.opted_out(kind, category, ids).await?.into_iter().collect()),
        _ => Ok(BTreeSet::new()),
    }
}

/// Counts the receivers an audience reaches in each city, and apart from them those it leaves out
/// because they opted out of `opt_out` (`NewNotification::opt_out_category`; `None` for a
/// critical message, which reaches everyone). A selection is counted in SQL and the excluded
/// receivers it would have matched are subtracted. An include list (minus the excluded and the
/// opted out) is looked up once and its members are kept per city, so the send pages exactly this
/// snapshot. Cities named by the audience appear even when they match nobody, so operations see
/// the zero.
pub async fn plan_audience(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
    opt_out: Option<Category>,
) -> PortResult<AudiencePlan> {
    match &audience.target {
        Target::Selection(selection) => {
            let mut per_city: BTreeMap<City, (u64, u64)> = BTreeMap::new();
            for city in selection.cities.iter().flatten() {
                per_city.insert(city.clone(), (0, 0));
            }
            for (city, n) in directory.count_selection(kind, selection).await? {
                per_city.insert(city, (n, 0));
            }
            if let Some(category) = opt_out {
                for (city, n) in directory.count_opted_out(kind, selection, category).await? {
                    per_city.entry(city).or_default().1 = n;
                }
            }
            let excluded: Vec<ReceiverId> = audience.exclude.iter().cloned().collect();
            let excluded_opted_out = opted_out_among(directory, kind, opt_out, &excluded).await?;
            for r in directory.lookup_receivers(kind, &excluded).await? {
                if selection.matches(&r.city, r.groups())
                    && let Some((all, opted_out)) = per_city.get_mut(&r.city)
                {
                    *all = all.saturating_sub(1);
                    if excluded_opted_out.contains(&r.id) {
                        *opted_out = opted_out.saturating_sub(1);
                    }
                }
            }
            let cities = per_city.into_iter().map(|(city, (all, opted_out))| CityPlan {
                city,
                matched: all.saturating_sub(opted_out),
                members: None,
                opted_out,
            });
            Ok(AudiencePlan { cities: cities.collect(), unknown: Vec::new() })
        }
        Target::Include(ids) => {
            let wanted: Vec<ReceiverId> = ids.iter().filter(|id| !audience.excludes(id)).cloned().collect();
            let found = directory.lookup_receivers(kind, &wanted).await?;
            let known: BTreeSet<&ReceiverId> = found.iter().map(|r| &r.id).collect();
            let unknown = wanted.iter().filter(|id| !known.contains(id)).cloned().collect();
            let found_ids: Vec<ReceiverId> = found.iter().map(|r| r.id.clone()).collect();
            let opted_out = opted_out_among(directory, kind, opt_out, &found_ids).await?;
            let mut per_city: BTreeMap<City, (BTreeSet<ReceiverId>, u64)> = BTreeMap::new();
            for r in found {
                let (members, left_out) = per_city.entry(r.city).or_default();
                if opted_out.contains(&r.id) {
                    *left_out += 1;
                } else {
                    members.insert(r.id);
                }
            }
            let cities = per_city.into_iter().map(|(city, (members, opted_out))| CityPlan {
                city,
                matched: members.len() as u64,
                members: Some(members.into_iter().collect()),
                opted_out,
            });
            Ok(AudiencePlan { cities: cities.collect(), unknown })
        }
    }
}

/// How many receivers an audience reaches with each variant of a message whose variants name
/// `variant_groups` (in order), and with the default content (the last count): the preview's split
/// by the rule of `crate::variant` (the first variant naming one of a receiver's groups), from the
/// groups the directory holds now. The counts add up to `plan_audience`'s `matched`: the excluded
/// and the opted out of `opt_out` are in none.
///
/// An include list is looked up and each receiver placed by its groups. A selection is counted
/// in SQL without reading a receiver: with `has(X)` the receivers of the selection's cities in a
/// group of `X`, variant `i` reaches `has(U_i) - has(U_(i-1))`, `U_i` the groups of the first `i`
/// variants; a selection that itself names groups `A` counts `has(A) ∩ has(U)` as
/// `has(A) + has(U) - has(A ∪ U)`. So a preview asks the directory at most `2n + 1` counts (and as
/// many again for the opted out), for `n` ≤ 10 variants.
pub async fn count_by_variant(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
    opt_out: Option<Category>,
    variant_groups: &[BTreeSet<Group>],
) -> PortResult<Vec<u64>> {
    let place = |groups: &[Group]| {
        variant_groups.iter().position(|v| groups.iter().any(|g| v.contains(g))).unwrap_or(variant_groups.len())
    };
    let mut counts = vec![0u64; variant_groups.len() + 1];
    match &audience.target {
        Target::Include(ids) => {
            let wanted: Vec<ReceiverId> = ids.iter().filter(|id| !audience.excludes(id)).cloned().collect();
            let found = directory.lookup_receivers(kind, &wanted).await?;
            let ids: Vec<ReceiverId> = found.iter().map(|r| r.id.clone()).collect();
            let opted_out = opted_out_among(directory, kind, opt_out, &ids).await?;
            for r in found.iter().filter(|r| !opted_out.contains(&r.id)) {
                counts[place(r.groups())] += 1;
            }
        }
        Target::Selection(selection) => {
            let reached = split_selection(directory, kind, selection, variant_groups, None).await?;
            let left_out = match opt_out {
                Some(category) => split_selection(directory, kind, selection, variant_groups, Some(category)).await?,
                None => vec![0; counts.len()],
            };
            for (i, count) in counts.iter_mut().enumerate() {
                *count = reached[i].saturating_sub(left_out[i]);
            }
            let excluded: Vec<ReceiverId> = audience.exclude.iter().cloned().collect();
            let excluded_opted_out = opted_out_among(directory, kind, opt_out, &excluded).await?;
            for r in directory.lookup_receivers(kind, &excluded).await? {
                if selection.matches(&r.city, r.groups()) && !excluded_opted_out.contains(&r.id) {
                    let count = &mut counts[place(r.groups())];
                    *count = count.saturating_sub(1);
                }
            }
        }
    }
    Ok(counts)
}

/// What each of `ids` (receivers of `kind`) is shown of `n`, in their order, by their groups in the
/// directory now: empty, asking nothing, when `n` has no variants; one lookup otherwise, a receiver
/// no longer known counted as shown the default. How a delivered page's `sent` and a rebuild's
/// counters are split by variant (`ports::PageWrite::shown`).
pub async fn shown_to_each(
    directory: &dyn ReceiverDirectory,
    n: &NewNotification,
    kind: ReceiverKind,
    ids: &[ReceiverId],
) -> PortResult<Vec<ShownVariant>> {
    if n.variants.is_empty() {
        return Ok(Vec::new());
    }
    let known = directory.lookup_receivers(kind, ids).await?;
    let shown: HashMap<&ReceiverId, ShownVariant> =
        known.iter().map(|r| (&r.id, n.variant_shown(r.groups()).unwrap_or(ShownVariant::Default))).collect();
    Ok(ids.iter().map(|id| shown.get(id).copied().unwrap_or(ShownVariant::Default)).collect())
}

/// `count_by_variant`'s split of a selection (of its opted out of `category` when one is given),
/// by counts alone.
async fn split_selection(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    selection: &Selection,
    variant_groups: &[BTreeSet<Group>],
    category: Option<Category>,
) -> PortResult<Vec<u64>> {
    // The selection's cities with any groups: everyone there when `groups` is empty.
    let count = |groups: BTreeSet<Group>| {
        let narrowed = Selection { cities: selection.cities.clone(), groups };
        async move {
            let per_city = match category {
                Some(category) => directory.count_opted_out(kind, &narrowed, category).await?,
                None => directory.count_selection(kind, &narrowed).await?,
            };
            PortResult::Ok(per_city.into_iter().map(|(_, n)| n).sum::<u64>())
        }
    };
    let own = &selection.groups;
    let total = count(own.clone()).await?;
    // Receivers of the selection in a group of `union` (`union` not empty).
    let in_any = |union: BTreeSet<Group>| async {
        if own.is_empty() {
            return count(union).await;
        }
        let either: BTreeSet<Group> = own.union(&union).cloned().collect();
        Ok((total + count(union).await?).saturating_sub(count(either).await?))
    };
    let mut split = Vec::with_capacity(variant_groups.len() + 1);
    let (mut union, mut before) = (BTreeSet::new(), 0u64);
    for groups in variant_groups {
        union.extend(groups.iter().cloned());
        let upto = in_any(union.clone()).await?;
        split.push(upto.saturating_sub(before));
        before = upto;
    }
    split.push(total.saturating_sub(before));
    Ok(split)
}

/// One step of paging a selection through one city by keyset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionPage {
    /// The receivers of this step, in id order, the excluded and the opted out left out.
    pub receivers: Vec<ReceiverId>,
    /// How many of this step's receivers were left out because they opted out of its category.
    pub opted_out: u64,
    /// The keyset position after it (`after` when nothing was read).
    pub last: Option<ReceiverId>,
    /// No receiver of the city remains after it.
    pub finished: bool,
}

/// The next up to `PAGE_SIZE` receivers of `kind` in `city` that `selection` matches, strictly
/// after `after`, minus those `audience` excludes and those who opted out of `opt_out` (looked up
/// among this step's receivers only, so a step costs O(page) however many opted out): how a send
/// pages a city, and how a rebuild of the inbox store re-pages it.
pub async fn page_selection(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
    selection: &Selection,
    city: &City,
    after: Option<&ReceiverId>,
    opt_out: Option<Category>,
) -> PortResult<SelectionPage> {
    let raw = directory.page_selection(kind, selection, city, after, PAGE_SIZE).await?;
    let finished = raw.len() < PAGE_SIZE;
    let last = raw.last().or(after).cloned();
    let wanted: Vec<ReceiverId> = raw.into_iter().filter(|id| !audience.excludes(id)).collect();
    let opted_out = opted_out_among(directory, kind, opt_out, &wanted).await?;
    let receivers = wanted.into_iter().filter(|id| !opted_out.contains(id)).collect();
    Ok(SelectionPage { receivers, opted_out: opted_out.len() as u64, last, finished })
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
/// city and groups as they are now and does not exclude it, and whose category the receiver has
/// not opted out of (`prefs`; a critical message reaches it anyway).
pub fn reaches_late(n: &Notification, r: &Receiver, prefs: &Preferences, now: DateTime<Utc>) -> bool {
    let Target::Selection(selection) = &n.content.audience.target else { return false };
    matches!(n.status, Status::Sending | Status::Sent)
        && n.content.receiver_kind == r.kind
        && n.content.validity.until().is_none_or(|until| until > now)
        && selection.matches(&r.city, r.groups())
        && !n.content.audience.excludes(&r.id)
        && n.content.opt_out_category().is_none_or(|c| !prefs.excludes(c))
}

/// What the receivers that are new or changed get late (`reaches_late`, each with its
/// preferences from `prefs`, none when absent), grouped per (notification, city) so it is paged
/// like any send: never one write per receiver. A receiver that no longer matches keeps what it
/// already got. A receiver who opts back into a category is paged through this too, with
/// `notifications` narrowed to that category: it gets what it would have got as a late joiner.
pub fn late_deliveries(
    notifications: &[Notification],
    receivers: &[Receiver],
    prefs: &HashMap<ReceiverRef, Preferences>,
    now: DateTime<Utc>,
) -> Vec<LateDelivery> {
    let none = Preferences::default();
    let prefs_of = |r: &Receiver| prefs.get(&ReceiverRef { kind: r.kind, id: r.id.clone() }).unwrap_or(&none);
    let mut groups: BTreeMap<(&NotificationId, &City), (ReceiverKind, BTreeSet<&ReceiverId>)> = BTreeMap::new();
    for n in notifications {
        for r in receivers.iter().filter(|r| reaches_late(n, r, prefs_of(r), now)) {
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
                locales: Default::default(),
                variants: Default::default(),
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
        assert_eq!(late_deliveries(&notifications, &receivers, &HashMap::new(), now), expected);
    }

    #[test]
    fn a_late_joiner_who_opted_out_gets_only_the_critical_messages_of_that_category() {
        let now = Utc::now();
        let of = |category: Category, force_read: bool| {
            let mut n = notification(r#"{"all": true}"#, Status::Sent, None);
            n.content.category = category;
            n.content.force_read = force_read;
            n
        };
        let (activity, system, forced) =
            (of(Category::Activity, false), of(Category::System, false), of(Category::Activity, true));
        let r1 = rider(ReceiverKind::Rider, "r1", "bj", &[]);
        let prefs = HashMap::from([(
            ReceiverRef { kind: r1.kind, id: r1.id.clone() },
            Preferences::parse("", &["activity".to_string()]).unwrap(),
        )]);
        let notifications = [activity.clone(), system.clone(), forced.clone()];
        let got: BTreeSet<NotificationId> =
            late_deliveries(&notifications, &[r1], &prefs, now).into_iter().map(|l| l.notification).collect();
        assert_eq!(got, BTreeSet::from([system.id, forced.id]));
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
