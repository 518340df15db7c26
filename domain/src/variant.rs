//! Variants: one notification whose content differs by user group (one campaign, a text and an
//! image per segment). A receiver is shown the **first** variant, in the order given, that names
//! one of its groups; a receiver in none of them is shown the notification's own content (the
//! default). Then the locale picks among that content's translations (`crate::locale`). The
//! choice is made when an inbox is read, from the receiver's groups and locale at that moment: a
//! variant is stored once with its notification, never once per receiver, so variants cost nothing
//! at send time.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::content::{Actions, ImageUrl};
use crate::locale::{Locale, Locales};
use crate::notification::{Body, NewNotification, Title};
use crate::receiver::Group;

/// Most variants one notification carries.
pub const MAX_VARIANTS: usize = 10;
/// Most groups one variant names.
pub const MAX_VARIANT_GROUPS: usize = 100;
/// Most characters of title and body one notification holds in all: its own, its translations'
/// and its variants'. Notifications are cached whole by every reader; this keeps one small.
pub const MAX_TOTAL_TEXT_CHARS: usize = 100_000;

/// The content one group of receivers is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// Receivers in any of these groups are shown it (unless an earlier variant names one of theirs).
    groups: BTreeSet<Group>,
    pub title: Title,
    pub body: Body,
    /// Its own image and buttons: a variant shows none unless it gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageUrl>,
    #[serde(default, skip_serializing_if = "Actions::is_empty")]
    pub actions: Actions,
    #[serde(default, skip_serializing_if = "Locales::is_empty")]
    pub locales: Locales,
}

impl Variant {
    /// A variant for receivers in any of `groups` (one at least, at most `MAX_VARIANT_GROUPS`).
    pub fn new(
        groups: Vec<Group>,
        title: Title,
        body: Body,
        image: Option<ImageUrl>,
        actions: Actions,
        locales: Locales,
    ) -> Result<Self, InvalidInput> {
        Ok(Self { groups: Self::parse_groups(groups)?, title, body, image, actions, locales })
    }

    /// A variant's groups: one at least, at most `MAX_VARIANT_GROUPS` (errors name `groups`).
    pub fn parse_groups(groups: Vec<Group>) -> Result<BTreeSet<Group>, InvalidInput> {
        if groups.is_empty() {
            return Err(InvalidInput::new("groups", "must name at least one group"));
        }
        if groups.len() > MAX_VARIANT_GROUPS {
            return Err(InvalidInput::new("groups", format!("at most {MAX_VARIANT_GROUPS} groups")));
        }
        Ok(groups.into_iter().collect())
    }

    pub fn groups(&self) -> &BTreeSet<Group> {
        &self.groups
    }

    /// Whether a receiver in `groups` belongs to it.
    pub fn matches(&self, groups: &[Group]) -> bool {
        groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Stored variants read back with the same checks.
impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            groups: Vec<Group>,
            title: Title,
            body: Body,
            #[serde(default)]
            image: Option<ImageUrl>,
            #[serde(default)]
            actions: Actions,
            #[serde(default)]
            locales: Locales,
        }
        let r = Raw::deserialize(d)?;
        Self::new(r.groups, r.title, r.body, r.image, r.actions, r.locales)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// A notification's variants, in the order they are tried: at most `MAX_VARIANTS`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Variants(Vec<Variant>);

impl Variants {
    pub fn new(field: &str, variants: Vec<Variant>) -> Result<Self, InvalidInput> {
        Self::check_count(field, variants.len())?;
        Ok(Self(variants))
    }

    /// Refuses more than `MAX_VARIANTS`.
    pub fn check_count(field: &str, count: usize) -> Result<(), InvalidInput> {
        if count > MAX_VARIANTS {
            return Err(InvalidInput::new(field, format!("at most {MAX_VARIANTS} variants, got {count}")));
        }
        Ok(())
    }

    pub fn as_slice(&self) -> &[Variant] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variant a receiver in `groups` is shown, with its place: the first that names one of them.
    pub fn pick(&self, groups: &[Group]) -> Option<(usize, &Variant)> {
        self.0.iter().enumerate().find(|(_, v)| v.matches(groups))
    }
}

impl<'de> Deserialize<'de> for Variants {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let variants = Vec::<Variant>::deserialize(d)?;
        Self::new("", variants).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Which content of a notification with variants one receiver was shown: a variant (its place in
/// `variants`) or the default. What a notification's sent and read are split by
/// (`ports::Counters::variants`): the inbox store raises the split of `sent` with each page,
/// attributing each receiver by its groups when the page is delivered, and the split of `read` with
/// each read, by the reader's groups then; stores name it by `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShownVariant {
    /// The variant at this place (below `MAX_VARIANTS`): ordered before the default, in place order.
    Variant(u8),
    Default,
}

// One decimal digit names each variant's place.
const _: () = assert!(MAX_VARIANTS <= 10);

impl ShownVariant {
    /// One character: the place's digit, or `d` for the default.
    pub fn code(self) -> char {
        match self {
            ShownVariant::Variant(i) => char::from(b'0' + i),
            ShownVariant::Default => 'd',
        }
    }

    /// The `code` read back; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Self> {
        match code.as_bytes() {
            [b'd'] => Some(ShownVariant::Default),
            [d @ b'0'..=b'9'] if usize::from(d - b'0') < MAX_VARIANTS => Some(ShownVariant::Variant(d - b'0')),
            _ => None,
        }
    }
}

/// What one receiver is shown of a notification, before placeholders are filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown<'a> {
    /// The variant's place in `variants`; `None` for the default content.
    pub variant: Option<usize>,
    /// The translation's locale; `None` for the untranslated text.
    pub locale: Option<&'a Locale>,
    pub title: &'a Title,
    pub body: &'a Body,
    pub image: Option<&'a ImageUrl>,
    pub actions: &'a Actions,
}

/// Who reads, as far as choosing content goes: its groups and its locale.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer<'a> {
    pub groups: &'a [Group],
    pub locale: Option<&'a Locale>,
}

impl NewNotification {
    /// Whether what a reader sees depends on who it is beyond its id: variants, translations or
    /// placeholders (then the reader's record is looked up once per read).
    pub fn is_personal(&self) -> bool {
        use crate::template::has_placeholders;
        // Any variant or translation makes it personal; otherwise only placeholders in its own text do.
        !self.variants.is_empty()
            || !self.locales.is_empty()
            || has_placeholders(self.title.as_str())
            || has_placeholders(self.body.as_str())
    }

    /// Every title and body a reader may be shown, the default's first: its own, its translations',
    /// each variant's and theirs (what admin search finds it by).
    pub fn texts(&self) -> impl Iterator<Item = (&Title, &Body)> {
        fn translated(l: &Locales) -> impl Iterator<Item = (&Title, &Body)> {
            l.iter().map(|(_, t)| (&t.title, &t.body))
        }
        let variants = self.variants.as_slice().iter();
        std::iter::once((&self.title, &self.body))
            .chain(translated(&self.locales))
            .chain(variants.flat_map(|v| std::iter::once((&v.title, &v.body)).chain(translated(&v.locales))))
    }

    /// Which content a receiver in `groups` is shown, for a notification with variants (`None`
    /// without): what its sent and read are split by.
    pub fn variant_shown(&self, groups: &[Group]) -> Option<ShownVariant> {
        if self.variants.is_empty() {
            return None;
        }
        Some(match self.variants.pick(groups) {
            Some((i, _)) => ShownVariant::Variant(i as u8),
            None => ShownVariant::Default,
        })
    }

    /// The content a reader with `who`'s groups and locale is shown (the rule is this module's).
    pub fn shown_to(&self, who: Viewer<'_>) -> Shown<'_> {
        let (variant, title, body, image, actions, locales) = match self.variants.pick(who.groups) {
            Some((i, v)) => (Some(i), &v.title, &v.body, v.image.as_ref(), &v.actions, &v.locales),
            None => (None, &self.title, &self.body, self.image.as_ref(), &self.actions, &self.locales),
        };
        let (locale, title, body) = match locales.pick(who.locale) {
            Some((l, t)) => (Some(l), &t.title, &t.body),
            None => (None, title, body),
        };
        Shown { variant, locale, title, body, image, actions }
    }

    /// Refuses content over `MAX_TOTAL_TEXT_CHARS` characters of title and body in all.
    pub fn check_total_text(&self) -> Result<(), InvalidInput> {
        let total: usize = self.texts().map(|(t, b)| t.as_str().chars().count() + b.as_str().chars().count()).sum();
        if total > MAX_TOTAL_TEXT_CHARS {
            return Err(InvalidInput::new(
                "variants",
                format!(
                    "title and body text in all (translations and variants included) is {total} characters; at most {MAX_TOTAL_TEXT_CHARS}"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locale::LocalizedText;

    fn group(g: &str) -> Group {
        Group::parse("", g).unwrap()
    }

    fn locales(pairs: &[(&str, &str)]) -> Locales {
        let raw = pairs
            .iter()
            .map(|(l, t)| {
                (
                    l.to_string(),
                    LocalizedText { title: Title::parse("", t).unwrap(), body: Body::parse("", t).unwrap() },
                )
            })
            .collect();
        Locales::new("locales", raw).unwrap()
    }

    fn variant(groups: &[&str], title: &str, translations: Locales) -> Variant {
        let groups = groups.iter().map(|g| group(g)).collect();
        let image = Some(ImageUrl::parse("", &format!("https://cdn.example.com/{title}.png")).unwrap());
        Variant::new(
            groups,
            Title::parse("", title).unwrap(),
            Body::parse("", "b").unwrap(),
            image,
            Actions::default(),
            translations,
        )
        .unwrap()
    }

    fn notification(variants: Vec<Variant>, translations: Locales) -> NewNotification {
        NewNotification {
            title: Title::parse("", "default").unwrap(),
            body: Body::parse("", "b").unwrap(),
            category: crate::Category::Activity,
            receiver_kind: crate::ReceiverKind::Rider,
            audience: serde_json::from_str(r#"{"all": true}"#).unwrap(),
            pinned: false,
            force_read: false,
            validity: Default::default(),
            send_at: None,
            draft: false,
            image: None,
            actions: Actions::default(),
            locales: translations,
            variants: Variants::new("variants", variants).unwrap(),
        }
    }

    #[test]
    fn the_first_variant_naming_one_of_the_groups_wins_else_the_default() {
        let n = notification(
            vec![variant(&["vip"], "vip", Locales::default()), variant(&["new", "vip"], "new", Locales::default())],
            Locales::default(),
        );
        let shown = |groups: &[Group]| {
            let s = n.shown_to(Viewer { groups, locale: None });
            (s.variant, s.title.as_str().to_string(), s.image.map(|i| i.as_str().to_string()))
        };
        assert_eq!(shown(&[group("new"), group("vip")]).0, Some(0), "order decides, not the receiver's groups");
        assert_eq!(shown(&[group("new")]).1, "new");
        assert_eq!(shown(&[group("other")]), (None, "default".to_string(), None), "the default has no image");
        assert_eq!(shown(&[]).0, None);
        assert_eq!(shown(&[group("vip")]).2.as_deref(), Some("https://cdn.example.com/vip.png"));
    }

    #[test]
    fn what_a_receiver_was_shown_is_named_by_one_character() {
        let n = notification(vec![variant(&["vip"], "vip", Locales::default())], Locales::default());
        assert_eq!(n.variant_shown(&[group("vip")]), Some(ShownVariant::Variant(0)));
        assert_eq!(n.variant_shown(&[group("new")]), Some(ShownVariant::Default));
        assert_eq!(notification(Vec::new(), Locales::default()).variant_shown(&[group("vip")]), None, "no variants");
        for shown in (0..MAX_VARIANTS as u8).map(ShownVariant::Variant).chain([ShownVariant::Default]) {
            assert_eq!(ShownVariant::from_code(&shown.code().to_string()), Some(shown));
        }
        for bad in ["", "x", "10", "dd", "-"] {
            assert_eq!(ShownVariant::from_code(bad), None, "{bad:?}");
        }
        assert!(ShownVariant::Variant(9) < ShownVariant::Default, "variants first, in place order");
    }

    #[test]
    fn variants_and_locales_combine() {
        let n = notification(
            vec![variant(&["vip"], "vip", locales(&[("en", "vip en")]))],
            locales(&[("en", "default en"), ("zh-CN", "默认")]),
        );
        let (vip, en, zh) = (group("vip"), Locale::parse("", "en-GB").unwrap(), Locale::parse("", "zh-CN").unwrap());
        let title = |groups: &[Group], locale| n.shown_to(Viewer { groups, locale }).title.as_str().to_string();
        assert_eq!(title(std::slice::from_ref(&vip), Some(&en)), "vip en", "the variant's own translation");
        assert_eq!(title(std::slice::from_ref(&vip), Some(&zh)), "vip", "a variant without it: its own text");
        assert_eq!(title(&[], Some(&zh)), "默认");
        assert_eq!(title(&[], Some(&en)), "default en");
        assert_eq!(title(&[], None), "default");
        let shown = n.shown_to(Viewer { groups: &[], locale: Some(&en) });
        assert_eq!(shown.locale.map(Locale::as_str), Some("en"));
        assert!(n.is_personal());
        assert!(!notification(Vec::new(), Locales::default()).is_personal());
    }

    #[test]
    fn variants_are_bounded_and_name_a_group() {
        let none = Variant::new(
            Vec::new(),
            Title::parse("", "t").unwrap(),
            Body::parse("", "b").unwrap(),
            None,
            Actions::default(),
            Locales::default(),
        );
        assert_eq!(none.unwrap_err().field, "groups");
        let many = (0..=MAX_VARIANTS).map(|_| variant(&["g"], "t", Locales::default())).collect();
        assert_eq!(Variants::new("variants", many).unwrap_err().field, "variants");
        let long = "字".repeat(10_000);
        let mut big = notification(Vec::new(), Locales::default());
        big.variants = Variants::new(
            "variants",
            (0..MAX_VARIANTS)
                .map(|_| {
                    let mut v = variant(&["g"], "t", Locales::default());
                    v.body = Body::parse("", &long).unwrap();
                    v
                })
                .collect(),
        )
        .unwrap();
        assert!(big.check_total_text().unwrap_err().message.contains("at most"));
        let stored = serde_json::to_string(&big.variants).unwrap();
        assert_eq!(serde_json::from_str::<Variants>(&stored).unwrap(), big.variants, "stored variants read back");
        assert!(
            serde_json::from_str::<Variants>(r#"[{"groups":["g"],"title":"t","body":"b","image":"http://x"}]"#)
                .is_err()
        );
    }
}
