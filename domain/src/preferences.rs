//! A receiver's preferences: the categories it opted out of. `system` messages and force-read
//! notices are critical and reach every receiver whatever it chose (`NewNotification::opt_out_category`).

use std::collections::BTreeSet;

use crate::{Category, InvalidInput, NewNotification};

/// The categories a receiver opted out of: never `system`, each at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences(BTreeSet<Category>);

impl Preferences {
    /// Parses a list of category names as a receiver sent it; `field` names the list
    /// (`opted_out`), each refusal names the element at fault (`opted_out[1]`).
    pub fn parse(field: &str, raw: &[String]) -> Result<Self, InvalidInput> {
        let mut opted_out = BTreeSet::new();
        for (i, name) in raw.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let category = Category::parse(&at, name)?;
            if category == Category::System {
                return Err(InvalidInput::new(at, "system messages are always delivered: they cannot be opted out of"));
            }
            if !opted_out.insert(category) {
                return Err(InvalidInput::new(at, format!("{name:?} is listed twice")));
            }
        }
        Ok(Self(opted_out))
    }

    /// As a store keeps them (it only ever stored parsed ones; `system` is dropped if found).
    pub fn from_stored(categories: impl IntoIterator<Item = Category>) -> Self {
        Self(categories.into_iter().filter(|c| *c != Category::System).collect())
    }

    pub fn opted_out(&self) -> impl Iterator<Item = Category> + '_ {
        self.0.iter().copied()
    }

    /// Whether a message of `category` that may be opted out of is left out for this receiver.
    pub fn excludes(&self, category: Category) -> bool {
        self.0.contains(&category)
    }

    /// The categories opted out of in `before` and no longer here: what comes back late.
    pub fn opted_in_since(&self, before: &Preferences) -> Vec<Category> {
        before.0.difference(&self.0).copied().collect()
    }
}

/// The category a receiver may have opted out of that a message of `category` is in; `None` when
/// it is critical (`system`, or `force_read`) and so reaches its whole audience.
pub fn opt_out_category(category: Category, force_read: bool) -> Option<Category> {
    (category != Category::System && !force_read).then_some(category)
}

impl NewNotification {
    /// `opt_out_category` of this message.
    pub fn opt_out_category(&self) -> Option<Category> {
        opt_out_category(self.category, self.force_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_list_of_categories_parses_and_each_refusal_names_its_element() {
        let prefs = Preferences::parse("opted_out", &names(&["announcement", "activity"])).unwrap();
        assert_eq!(prefs.opted_out().collect::<Vec<_>>(), [Category::Activity, Category::Announcement]);
        assert!(Preferences::parse("opted_out", &[]).unwrap().opted_out().next().is_none());
        for (raw, field) in [
            (names(&["activity", "system"]), "opted_out[1]"),
            (names(&["promo"]), "opted_out[0]"),
            (names(&["activity", "announcement", "activity"]), "opted_out[2]"),
        ] {
            assert_eq!(Preferences::parse("opted_out", &raw).unwrap_err().field, field, "{raw:?}");
        }
    }

    #[test]
    fn opting_in_again_names_what_comes_back() {
        let before = Preferences::parse("", &names(&["activity", "announcement"])).unwrap();
        let after = Preferences::parse("", &names(&["announcement"])).unwrap();
        assert_eq!(after.opted_in_since(&before), [Category::Activity]);
        assert!(before.opted_in_since(&after).is_empty());
    }
}
