//! Receivers: the riders and merchants that own inboxes.

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::text::ident_type;

/// Who a notification is for. Also the queue tag of every page, so consumers can subscribe by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    Rider,
    Merchant,
}

impl ReceiverKind {
    pub const ALL: [ReceiverKind; 2] = [ReceiverKind::Rider, ReceiverKind::Merchant];

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Rider => "rider",
            ReceiverKind::Merchant => "merchant",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        match raw.trim() {
            "rider" => Ok(ReceiverKind::Rider),
            "merchant" => Ok(ReceiverKind::Merchant),
            other => Err(InvalidInput::new(
                field,
                format!("unknown receiver kind {other:?}; expected \"rider\" or \"merchant\""),
            )),
        }
    }
}

impl std::fmt::Display for ReceiverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

ident_type!(
    /// A receiver's id, unique within its kind.
    ReceiverId
);
ident_type!(
    /// A city name as operations write it (`shanghai`, `上海`).
    City
);
ident_type!(
    /// A user group (`vip`, `new_rider`): audiences may select by group.
    Group
);

/// The owner of one inbox: a kind and an id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiverRef {
    pub kind: ReceiverKind,
    pub id: ReceiverId,
}

impl ReceiverRef {
    /// A stable key for stores that index inboxes by one string (`rider:r1`).
    pub fn key(&self) -> String {
        Self::key_of(self.kind, &self.id)
    }

    pub fn key_of(kind: ReceiverKind, id: &ReceiverId) -> String {
        format!("{}:{}", kind.as_str(), id)
    }
}

/// Most groups one receiver may belong to. Groups are segments operations target (`vip`,
/// `new_rider`), a handful per receiver; a cap keeps every receiver row and its group lookups small.
pub const MAX_GROUPS_PER_RECEIVER: usize = 100;

/// A rider or merchant as the SQL store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub kind: ReceiverKind,
    pub id: ReceiverId,
    pub city: City,
    /// Sorted, without repeats and at most `MAX_GROUPS_PER_RECEIVER`, so equal receivers compare equal.
    groups: Vec<Group>,
}

impl Receiver {
    pub fn new(kind: ReceiverKind, id: ReceiverId, city: City, mut groups: Vec<Group>) -> Result<Self, InvalidInput> {
        groups.sort();
        groups.dedup();
        if groups.len() > MAX_GROUPS_PER_RECEIVER {
            return Err(InvalidInput::new(
                "groups",
                format!("at most {MAX_GROUPS_PER_RECEIVER} groups per receiver, got {}", groups.len()),
            ));
        }
        Ok(Self { kind, id, city, groups })
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Parses the CSV form `kind,id,city,groups` with groups separated by `;` (may be empty).
    pub fn parse_fields(kind: &str, id: &str, city: &str, groups: &str) -> Result<Self, InvalidInput> {
        let groups = groups
            .split(';')
            .filter(|g| !g.trim().is_empty())
            .map(|g| Group::parse("groups", g))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(ReceiverKind::parse("kind", kind)?, ReceiverId::parse("id", id)?, City::parse("city", city)?, groups)
    }

    /// The groups as one `;`-separated string: the CSV and SQL column form.
    pub fn groups_joined(&self) -> String {
        self.groups.iter().map(Group::as_str).collect::<Vec<_>>().join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv_fields_and_normalises_groups() {
        let r = Receiver::parse_fields("rider", "r1", "shanghai", "vip;new;vip;").unwrap();
        assert_eq!(r.groups_joined(), "new;vip");
        assert_eq!(ReceiverRef { kind: r.kind, id: r.id }.key(), "rider:r1");
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(Receiver::parse_fields("driver", "r1", "x", "").unwrap_err().field, "kind");
        assert_eq!(Receiver::parse_fields("rider", "r1", "", "").unwrap_err().field, "city");
        assert_eq!(Receiver::parse_fields("rider", "r1", "x", "a b").unwrap_err().field, "groups");
        let many: Vec<String> = (0..=MAX_GROUPS_PER_RECEIVER).map(|i| format!("g{i}")).collect();
        assert_eq!(Receiver::parse_fields("rider", "r1", "x", &many.join(";")).unwrap_err().field, "groups");
        assert!(Receiver::parse_fields("rider", "r1", "x", &many[1..].join(";")).is_ok());
    }
}
