//! Who a notification goes to.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::receiver::{City, Group, ReceiverId};

/// Most ids an include or exclude list may hold. Larger audiences are selected by city and group:
/// lists are stored with the notification, and one row per receiver is what Herald never writes.
pub const MAX_LIST_LEN: usize = 10_000;

/// Receivers chosen by city and group: the broadcast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `None` selects every city.
    pub cities: Option<BTreeSet<City>>,
    /// Empty selects every receiver; otherwise receivers in at least one of these groups.
    pub groups: BTreeSet<Group>,
}

impl Selection {
    pub fn everyone() -> Self {
        Self { cities: None, groups: BTreeSet::new() }
    }

    /// Whether a receiver in `city` with `groups` is selected.
    pub fn matches(&self, city: &City, groups: &[Group]) -> bool {
        let city_ok = self.cities.as_ref().is_none_or(|cities| cities.contains(city));
        let group_ok = self.groups.is_empty() || groups.iter().any(|g| self.groups.contains(g));
        city_ok && group_ok
    }
}

/// Who receives: a selection (broadcast) or an explicit include list (point-to-point), minus an
/// exclude list. Mixing a selection with an include list is refused: a receiver in both would be
/// counted twice in `matched` while its inbox holds the message once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AudienceSpec", into = "AudienceSpec")]
pub struct Audience {
    pub target: Target,
    pub exclude: BTreeSet<ReceiverId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Selection(Selection),
    Include(BTreeSet<ReceiverId>),
}

impl Audience {
    /// True when pages travel on the point-to-point topic.
    pub fn is_direct(&self) -> bool {
        matches!(self.target, Target::Include(_))
    }

    pub fn excludes(&self, id: &ReceiverId) -> bool {
        self.exclude.contains(id)
    }

    /// The cities the audience names (none for `all`, groups only, or an include list).
    pub fn named_cities(&self) -> impl Iterator<Item = &City> {
        match &self.target {
            Target::Selection(Selection { cities: Some(cities), .. }) => Some(cities.iter()),
            _ => None,
        }
        .into_iter()
        .flatten()
    }
}

/// The wire form of an audience: `{"all": true}` or any of cities, groups, include, exclude.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceSpec {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cities: Option<Vec<City>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<ReceiverId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<ReceiverId>>,
}

fn bounded_set<T: Ord>(field: &str, items: Vec<T>) -> Result<BTreeSet<T>, InvalidInput> {
    if items.len() > MAX_LIST_LEN {
        return Err(InvalidInput::new(field, format!("at most {MAX_LIST_LEN} entries")));
    }
    Ok(items.into_iter().collect())
}

impl TryFrom<AudienceSpec> for Audience {
    type Error = InvalidInput;

    fn try_from(spec: AudienceSpec) -> Result<Self, InvalidInput> {
        let exclude = bounded_set("exclude", spec.exclude.unwrap_or_default())?;
        let selects = spec.all || spec.cities.is_some() || spec.groups.is_some();
        let target = match spec.include {
            Some(_) if selects => {
                return Err(InvalidInput::new(
                    "include",
                    "an include list cannot be combined with all, cities or groups",
                ));
            }
            Some(ids) => {
                let ids = bounded_set("include", ids)?;
                if ids.is_empty() {
                    return Err(InvalidInput::new("include", "must name at least one receiver"));
                }
                Target::Include(ids)
            }
            None if spec.all && spec.cities.is_some() => {
                return Err(InvalidInput::new("cities", "cannot be combined with all: true"));
            }
            None if !selects => {
                return Err(InvalidInput::new("", "choose receivers: all, cities, groups or include"));
            }
            None => {
                let cities = spec.cities.map(|c| bounded_set("cities", c)).transpose()?;
                if cities.as_ref().is_some_and(BTreeSet::is_empty) {
                    return Err(InvalidInput::new("cities", "must name at least one city"));
                }
                let groups = match spec.groups {
                    // An empty list selecting everyone would turn a console slip into a nationwide push.
                    Some(g) if g.is_empty() => {
                        return Err(InvalidInput::new("groups", "must name at least one group"));
                    }
                    g => bounded_set("groups", g.unwrap_or_default())?,
                };
                Target::Selection(Selection { cities, groups })
            }
        };
        Ok(Audience { target, exclude })
    }
}

impl From<Audience> for AudienceSpec {
    fn from(a: Audience) -> Self {
        let exclude = (!a.exclude.is_empty()).then(|| a.exclude.into_iter().collect());
        match a.target {
            Target::Include(ids) => {
                AudienceSpec { include: Some(ids.into_iter().collect()), exclude, ..Default::default() }
            }
            Target::Selection(s) => AudienceSpec {
                all: s.cities.is_none() && s.groups.is_empty(),
                cities: s.cities.map(|c| c.into_iter().collect()),
                groups: (!s.groups.is_empty()).then(|| s.groups.into_iter().collect()),
                exclude,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Audience, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn all_round_trips() {
        let a = parse(r#"{"all": true, "exclude": ["r9"]}"#).unwrap();
        assert_eq!(a.target, Target::Selection(Selection::everyone()));
        assert!(a.excludes(&ReceiverId::parse("", "r9").unwrap()));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"all":true,"exclude":["r9"]}"#);
    }

    #[test]
    fn selection_matches_city_and_any_group() {
        let a = parse(r#"{"cities": ["sh", "bj"], "groups": ["vip"]}"#).unwrap();
        let Target::Selection(s) = a.target else { panic!("selection") };
        let g = |x: &str| Group::parse("", x).unwrap();
        let c = |x: &str| City::parse("", x).unwrap();
        assert!(s.matches(&c("sh"), &[g("new"), g("vip")]));
        assert!(!s.matches(&c("sh"), &[g("new")]));
        assert!(!s.matches(&c("gz"), &[g("vip")]));
    }

    #[test]
    fn refuses_ambiguous_or_empty_audiences() {
        assert!(parse(r#"{}"#).unwrap_err().contains("choose receivers"));
        assert!(parse(r#"{"all": true, "include": ["r1"]}"#).unwrap_err().contains("include"));
        assert!(parse(r#"{"cities": []}"#).unwrap_err().contains("at least one city"));
        assert!(parse(r#"{"groups": []}"#).unwrap_err().contains("at least one group"));
        assert!(parse(r#"{"cities": ["x"], "groups": []}"#).unwrap_err().contains("at least one group"));
        assert!(parse(r#"{"include": []}"#).unwrap_err().contains("at least one"));
        assert!(parse(r#"{"everyone": true}"#).unwrap_err().contains("unknown field"));
        assert!(parse(r#"{"cities": ["a b"]}"#).unwrap_err().contains("must not contain"));
    }
}
