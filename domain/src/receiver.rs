//! Receivers: the riders and merchants that own inboxes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::locale::Locale;
use crate::notification::is_bidi_control;
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

/// Most attributes one receiver may have, and the longest value of one.
pub const MAX_ATTRIBUTES: usize = 20;
pub const MAX_ATTRIBUTE_CHARS: usize = 200;

/// An attribute's name, as templates name it (`{{receiver.attr.level}}`): a lowercase ASCII letter,
/// then up to 31 lowercase letters, digits or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AttributeName(String);

impl AttributeName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let mut chars = raw.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && raw.len() <= 32;
        if !ok {
            return Err(InvalidInput::new(
                field,
                format!("{raw:?} is not an attribute name (a-z, then up to 31 of a-z, 0-9, _)"),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A receiver's named fields from the import (`{"name": "小王", "level": "3"}`), which templates
/// fill in: at most `MAX_ATTRIBUTES`, each value one line of at most `MAX_ATTRIBUTE_CHARS`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<AttributeName, String>);

impl Attributes {
    pub fn new(field: &str, raw: BTreeMap<String, String>) -> Result<Self, InvalidInput> {
        if raw.len() > MAX_ATTRIBUTES {
            return Err(InvalidInput::new(field, format!("at most {MAX_ATTRIBUTES} attributes, got {}", raw.len())));
        }
        let mut attributes = BTreeMap::new();
        for (name, value) in raw {
            let name = AttributeName::parse(field, &name)?;
            let at = format!("{field}.{}", name.as_str());
            if value.chars().count() > MAX_ATTRIBUTE_CHARS {
                return Err(InvalidInput::new(at, format!("must be at most {MAX_ATTRIBUTE_CHARS} characters")));
            }
            if let Some(bad) = value.chars().find(|&c| c.is_control() || is_bidi_control(c)) {
                return Err(InvalidInput::new(
                    at,
                    format!("must not contain the control character U+{:04X}", bad as u32),
                ));
            }
            attributes.insert(name, value);
        }
        Ok(Self(attributes))
    }

    /// A JSON object of strings (the CSV column and the SQL column form); empty text is none.
    pub fn parse_json(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        if raw.trim().is_empty() {
            return Ok(Self::default());
        }
        let map: BTreeMap<String, String> = serde_json::from_str(raw)
            .map_err(|_| InvalidInput::new(field, "must be a JSON object of strings ({\"name\": \"value\"})"))?;
        Self::new(field, map)
    }

    /// The JSON form, `{}` for none.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn get(&self, name: &AttributeName) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        Self::new("", raw).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// A rider or merchant as the SQL store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub kind: ReceiverKind,
    pub id: ReceiverId,
    pub city: City,
    /// Sorted, without repeats and at most `MAX_GROUPS_PER_RECEIVER`, so equal receivers compare equal.
    groups: Vec<Group>,
    /// What templates fill in besides the id and city.
    pub attributes: Attributes,
    /// The language it reads (`crate::locale`); `None` reads every notification's own text.
    pub locale: Option<Locale>,
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
        Ok(Self { kind, id, city, groups, attributes: Attributes::default(), locale: None })
    }

    /// The same receiver with these attributes.
    pub fn with_attributes(self, attributes: Attributes) -> Self {
        Self { attributes, ..self }
    }

    /// The same receiver reading `locale`.
    pub fn with_locale(self, locale: Option<Locale>) -> Self {
        Self { locale, ..self }
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

    #[test]
    fn attributes_are_named_and_bounded() {
        let a = Attributes::parse_json("attributes", r#"{"name": "小王", "level": "3"}"#).unwrap();
        assert_eq!(a.get(&AttributeName::parse("", "name").unwrap()), Some("小王"));
        assert_eq!(a.to_json(), r#"{"level":"3","name":"小王"}"#);
        assert!(Attributes::parse_json("attributes", "").unwrap().is_empty());
        assert_eq!(Attributes::parse_json("attributes", r#"{"Name": "x"}"#).unwrap_err().field, "attributes");
        assert_eq!(Attributes::parse_json("attributes", r#"{"n": 3}"#).unwrap_err().field, "attributes");
        assert_eq!(Attributes::parse_json("attributes", r#"{"n": "a\u0007"}"#).unwrap_err().field, "attributes.n");
        let long = format!(r#"{{"n": "{}"}}"#, "x".repeat(MAX_ATTRIBUTE_CHARS + 1));
        assert_eq!(Attributes::parse_json("attributes", &long).unwrap_err().field, "attributes.n");
        let many: BTreeMap<String, String> = (0..=MAX_ATTRIBUTES).map(|i| (format!("a{i}"), String::new())).collect();
        assert!(Attributes::new("attributes", many).is_err());
    }
}
