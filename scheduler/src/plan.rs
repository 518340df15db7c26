//! Who an audience reaches, per city: used to plan a send and to preview one.

use std::collections::BTreeMap;

use herald_domain::audience::Target;
use herald_domain::ports::{CityPlan, PortResult, ReceiverDirectory};
use herald_domain::{Audience, City, Receiver, ReceiverId, ReceiverKind};

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
/// excluded receivers it would have matched are subtracted; an include list is looked up.
/// Cities named by the audience appear even when they match nobody, so operations see the zero.
pub async fn plan_audience(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
) -> PortResult<AudiencePlan> {
    let mut per_city: BTreeMap<City, u64> = BTreeMap::new();
    let mut unknown = Vec::new();
    match &audience.target {
        Target::Selection(selection) => {
            for city in selection.cities.iter().flatten() {
                per_city.insert(city.clone(), 0);
            }
            per_city.extend(directory.count_selection(kind, selection).await?);
            let excluded: Vec<ReceiverId> = audience.exclude.iter().cloned().collect();
            for r in directory.lookup_receivers(kind, &excluded).await? {
                if selection.matches(&r.city, &r.groups)
                    && let Some(n) = per_city.get_mut(&r.city)
                {
                    *n = n.saturating_sub(1);
                }
            }
        }
        Target::Include(ids) => {
            let wanted: Vec<ReceiverId> = ids.iter().filter(|id| !audience.excludes(id)).cloned().collect();
            let found = included_receivers(directory, kind, audience).await?;
            for r in &found {
                *per_city.entry(r.city.clone()).or_default() += 1;
            }
            let known: std::collections::BTreeSet<&ReceiverId> = found.iter().map(|r| &r.id).collect();
            unknown = wanted.into_iter().filter(|id| !known.contains(id)).collect();
        }
    }
    Ok(AudiencePlan {
        cities: per_city.into_iter().map(|(city, matched)| CityPlan { city, matched }).collect(),
        unknown,
    })
}

/// The known receivers of an include list, minus the exclude list, in id order.
pub(crate) async fn included_receivers(
    directory: &dyn ReceiverDirectory,
    kind: ReceiverKind,
    audience: &Audience,
) -> PortResult<Vec<Receiver>> {
    let Target::Include(ids) = &audience.target else {
        return Ok(Vec::new());
    };
    let wanted: Vec<ReceiverId> = ids.iter().filter(|id| !audience.excludes(id)).cloned().collect();
    let mut found = directory.lookup_receivers(kind, &wanted).await?;
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}
