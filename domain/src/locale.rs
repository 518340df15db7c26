//! Locales: a receiver's language from the import, and a notification's title and body per locale.
//! A receiver reads the text of its own locale, else of its language alone (`zh-TW` reads `zh`),
//! else the notification's own text: a translation is never required and a reader never goes
//! without text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::notification::{Body, Title};

/// Most translations one text carries (a notification's, or one variant's).
pub const MAX_LOCALES: usize = 20;
/// Longest language tag kept: BCP 47's common forms (`zh-Hant-TW`, `es-419`) fit with room to spare.
pub const MAX_LOCALE_LEN: usize = 35;

/// A language tag in BCP 47's shape (`en`, `zh-CN`, `zh-Hant-TW`), written the canonical way: the
/// language in lowercase, a four-letter script in title case, a region in uppercase (`zh_cn` and
/// `ZH-cn` are `zh-CN`), so tags from the import and from a notification compare by equality.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::new(field, format!("{raw:?} is not a language tag (`en`, `zh-CN`, `zh-Hant-TW`)"));
        let raw_trimmed = raw.trim();
        if raw_trimmed.is_empty() || raw_trimmed.len() > MAX_LOCALE_LEN {
            return Err(bad());
        }
        let mut tag = String::with_capacity(raw_trimmed.len());
        for (i, part) in raw_trimmed.split(['-', '_']).enumerate() {
            let valid = if i == 0 {
                (2..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphabetic())
            } else {
                (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
            };
            if !valid {
                return Err(bad());
            }
            if i > 0 {
                tag.push('-');
            }
            match (i, part.len()) {
                (0, _) => tag.push_str(&part.to_ascii_lowercase()),
                (_, 2) if part.bytes().all(|b| b.is_ascii_alphabetic()) => tag.push_str(&part.to_ascii_uppercase()),
                (_, 4) if part.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    tag.push_str(&part[..1].to_ascii_uppercase());
                    tag.push_str(&part[1..].to_ascii_lowercase());
                }
                _ => tag.push_str(&part.to_ascii_lowercase()),
            }
        }
        Ok(Self(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language alone (`zh` of `zh-CN`).
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Locale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse("", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A title and body in one locale; placeholders are filled in as in the notification's own text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalizedText {
    pub title: Title,
    pub body: Body,
}

/// Translations of a text, by locale: at most `MAX_LOCALES`, each locale once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Locales(BTreeMap<Locale, LocalizedText>);

impl Locales {
    /// Translations keyed as written (`zh_cn`, `en`); errors name `field.<key>`. Two keys that are
    /// one locale (`zh-cn` and `zh-CN`) are refused rather than one silently dropped.
    pub fn new(field: &str, raw: BTreeMap<String, LocalizedText>) -> Result<Self, InvalidInput> {
        if raw.len() > MAX_LOCALES {
            return Err(InvalidInput::new(field, format!("at most {MAX_LOCALES} locales, got {}", raw.len())));
        }
        let mut locales = BTreeMap::new();
        for (key, text) in raw {
            let locale = Locale::parse(&format!("{field}.{key}"), &key)?;
            if locales.contains_key(&locale) {
                return Err(InvalidInput::new(format!("{field}.{key}"), format!("{locale} is given twice")));
            }
            locales.insert(locale, text);
        }
        Ok(Self(locales))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Locale, &LocalizedText)> {
        self.0.iter()
    }

    /// The translation a reader of `locale` reads: its own locale's, else its language's alone;
    /// `None` when there is neither (the reader reads the untranslated text).
    pub fn pick(&self, locale: Option<&Locale>) -> Option<(&Locale, &LocalizedText)> {
        let locale = locale?;
        self.0.get_key_value(locale).or_else(|| {
            let language = locale.language();
            self.0.iter().find(|(l, _)| l.as_str() == language)
        })
    }
}

impl<'de> Deserialize<'de> for Locales {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, LocalizedText>::deserialize(d)?;
        Self::new("", raw).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locale(raw: &str) -> Locale {
        Locale::parse("locale", raw).unwrap()
    }

    fn text(title: &str) -> LocalizedText {
        LocalizedText { title: Title::parse("", title).unwrap(), body: Body::parse("", "b").unwrap() }
    }

    #[test]
    fn tags_are_written_one_way() {
        assert_eq!(locale("zh_cn").as_str(), "zh-CN");
        assert_eq!(locale(" ZH-hant-tw ").as_str(), "zh-Hant-TW");
        assert_eq!(locale("es-419").as_str(), "es-419");
        assert_eq!(locale("EN").as_str(), "en");
        assert_eq!(locale("zh-CN").language(), "zh");
        for bad in ["", "e", "english", "zh-", "zh--CN", "zh CN", "中文", "en-abcdefghi", "1a", "zh-C_N!"] {
            assert_eq!(Locale::parse("locale", bad).unwrap_err().field, "locale", "{bad:?}");
        }
    }

    #[test]
    fn a_reader_gets_its_locale_then_its_language_then_nothing() {
        let raw = [("zh".to_string(), text("中")), ("en-US".to_string(), text("US"))].into_iter().collect();
        let locales = Locales::new("locales", raw).unwrap();
        let title = |l: &str| locales.pick(Some(&locale(l))).map(|(_, t)| t.title.as_str().to_string());
        assert_eq!(title("en-US").as_deref(), Some("US"));
        assert_eq!(title("zh-TW").as_deref(), Some("中"), "the language alone");
        assert_eq!(title("en-GB"), None, "en-US is not en: no sibling region is guessed");
        assert_eq!(title("fr"), None);
        assert!(locales.pick(None).is_none());
    }

    #[test]
    fn translations_are_bounded_and_each_locale_once() {
        let twice = [("zh-cn".to_string(), text("a")), ("zh_CN".to_string(), text("b"))].into_iter().collect();
        assert!(Locales::new("locales", twice).unwrap_err().message.contains("twice"));
        let bad = [("chinese!".to_string(), text("a"))].into_iter().collect();
        assert_eq!(Locales::new("locales", bad).unwrap_err().field, "locales.chinese!");
        let many = (0..=MAX_LOCALES).map(|i| (format!("l{}", (b'a' + i as u8) as char), text("t"))).collect();
        assert!(Locales::new("locales", many).unwrap_err().message.contains("at most"));
        let stored: Locales = serde_json::from_str(r#"{"en":{"title":"t","body":"b"}}"#).unwrap();
        assert_eq!(serde_json::to_string(&stored).unwrap(), r#"{"en":{"title":"t","body":"b"}}"#);
        assert!(serde_json::from_str::<Locales>(r#"{"en":{"title":"","body":"b"}}"#).is_err());
    }
}
