//! The one rule every short identifier follows, shared by receiver ids, cities and groups.

use crate::InvalidInput;

/// Longest identifier we accept: long enough for any id scheme, short enough to keep keys small.
pub const MAX_IDENT_LEN: usize = 64;

/// An identifier is 1–64 characters of letters (any script), digits, `_`, `-`, `.` or `:`.
/// No spaces or separators (`;` `,` `|`) so that it is safe inside CSV cells, tag lists and keys.
pub(crate) fn parse_ident(field: &str, raw: &str) -> Result<String, InvalidInput> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.chars().count() > MAX_IDENT_LEN {
        return Err(InvalidInput::new(field, format!("must be at most {MAX_IDENT_LEN} characters")));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))) {
        return Err(InvalidInput::new(field, format!("must not contain {bad:?}")));
    }
    Ok(value.to_string())
}

/// Declares a newtype over `String` that can only be built through `parse_ident`.
macro_rules! ident_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(field: &str, raw: &str) -> Result<Self, $crate::InvalidInput> {
                $crate::text::parse_ident(field, raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Deserializing parses, so a request body cannot smuggle in a bad value.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse("", &raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use ident_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_chinese_and_punctuation_free_ids() {
        assert_eq!(parse_ident("city", " 上海 ").unwrap(), "上海");
        assert_eq!(parse_ident("id", "r-1_2.3:4").unwrap(), "r-1_2.3:4");
    }

    #[test]
    fn rejects_empty_long_and_separators() {
        assert_eq!(parse_ident("id", "  ").unwrap_err().field, "id");
        assert!(parse_ident("id", &"x".repeat(65)).is_err());
        assert!(parse_ident("id", "a;b").is_err());
        assert!(parse_ident("id", "a b").is_err());
    }
}
