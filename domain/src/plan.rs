//! Who an audience reaches, per city: what a send is planned from and what a preview shows. A
//! domain service: it needs only the receiver directory port.

use std::collections::{BTreeMap, BTreeSet};

use crate::audience::Target;
use crate::ports::{CityPlan, PortResult, ReceiverDirectory};
use crate::{Audience, City, ReceiverId, ReceiverKind};

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
