//! Placeholders in a notification's title and body, filled in per receiver when an inbox is read:
//! `{{receiver.id}}`, `{{receiver.city}}` and `{{receiver.attr.NAME}}` (a receiver attribute from
//! the import; empty where the receiver has none of that name). Any other `{{…}}` is refused when
//! the text is parsed, so whether a placeholder is known is decided at create time and rendering
//! never fails: a stored text only holds placeholders it can fill.

use std::borrow::Cow;

use crate::InvalidInput;
use crate::receiver::{AttributeName, Attributes, City, ReceiverId};

/// A placeholder a text may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    ReceiverId,
    ReceiverCity,
    Attribute(AttributeName),
}

impl Placeholder {
    /// What is written between `{{` and `}}` (spaces around it allowed).
    fn parse(inner: &str) -> Option<Self> {
        match inner.trim() {
            "receiver.id" => Some(Self::ReceiverId),
            "receiver.city" => Some(Self::ReceiverCity),
            other => {
                let name = other.strip_prefix("receiver.attr.")?;
                AttributeName::parse("", name).ok().map(Self::Attribute)
            }
        }
    }
}

/// What a receiver fills placeholders with. A receiver the directory does not know (deleted
/// since) still has its id; its city and attributes render empty.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub id: &'a ReceiverId,
    pub city: Option<&'a City>,
    pub attributes: Option<&'a Attributes>,
}

/// Each `{{…}}` of `text` in order: the byte range of the whole placeholder and its inner text.
/// `Err` holds the offset of a `{{` with no `}}` after it.
fn spans(text: &str) -> impl Iterator<Item = Result<(usize, usize, &str), usize>> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let start = from + text.get(from..)?.find("{{")?;
        let Some(len) = text[start + 2..].find("}}") else {
            from = text.len();
            return Some(Err(start));
        };
        let end = start + 2 + len + 2;
        from = end;
        Some(Ok((start, end, &text[start + 2..start + 2 + len])))
    })
}

/// Refuses a text with a placeholder this module cannot fill, naming it (`{{user.name}}`).
pub fn check(field: &str, text: &str) -> Result<(), InvalidInput> {
    for span in spans(text) {
        match span {
            Err(_) => return Err(InvalidInput::new(field, "has a `{{` without its `}}`")),
            Ok((_, _, inner)) if Placeholder::parse(inner).is_none() => {
                return Err(InvalidInput::new(
                    field,
                    format!(
                        "unknown placeholder {{{{{inner}}}}}; known: {{{{receiver.id}}}}, {{{{receiver.city}}}}, \
                         {{{{receiver.attr.NAME}}}}"
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Whether `text` has any placeholder (then its reader's receiver must be looked up).
pub fn has_placeholders(text: &str) -> bool {
    text.contains("{{")
}

/// `text` with its placeholders filled in for `fields`. Never fails: a text `check` would refuse
/// keeps what it cannot fill as written.
pub fn render<'t>(text: &'t str, fields: &Fields<'_>) -> Cow<'t, str> {
    if !has_placeholders(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end, inner) in spans(text).map_while(Result::ok) {
        let Some(placeholder) = Placeholder::parse(inner) else { continue };
        out.push_str(&text[copied..start]);
        match placeholder {
            Placeholder::ReceiverId => out.push_str(fields.id.as_str()),
            Placeholder::ReceiverCity => out.push_str(fields.city.map_or("", City::as_str)),
            Placeholder::Attribute(name) => out.push_str(fields.attributes.and_then(|a| a.get(&name)).unwrap_or("")),
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_placeholders_pass_and_unknown_ones_are_named() {
        assert!(check("body", "Hi {{receiver.id}} in {{ receiver.city }}, level {{receiver.attr.level}}").is_ok());
        assert!(check("body", "no placeholder { at } all }}").is_ok());
        let e = check("body", "Hi {{user.name}}").unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains("{{user.name}}"), "{e}");
        assert!(check("title", "{{receiver.attr.Bad Name}}").unwrap_err().message.contains("Bad Name"));
        assert!(check("title", "{{receiver.attr.}}").is_err());
        assert!(check("title", "open {{receiver.id").unwrap_err().message.contains("without"));
    }

    #[test]
    fn renders_per_receiver_and_never_fails() {
        let id = ReceiverId::parse("id", "r1").unwrap();
        let city = City::parse("city", "上海").unwrap();
        let attrs = Attributes::parse_json("attributes", r#"{"name": "小王", "level": "3"}"#).unwrap();
        let fields = Fields { id: &id, city: Some(&city), attributes: Some(&attrs) };
        let text = "{{receiver.attr.name}}({{receiver.id}}) @ {{receiver.city}}: L{{ receiver.attr.level }}{{receiver.attr.nope}}!";
        assert_eq!(render(text, &fields), "小王(r1) @ 上海: L3!");
        let unknown = Fields { id: &id, city: None, attributes: None };
        assert_eq!(render("{{receiver.city}}|{{receiver.attr.name}}|{{receiver.id}}", &unknown), "||r1");
        assert_eq!(render("kept {{x}} and {{receiver.id", &fields), "kept {{x}} and {{receiver.id");
        assert!(matches!(render("plain", &fields), Cow::Borrowed("plain")));
    }
}
