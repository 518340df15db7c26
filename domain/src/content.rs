//! Rich content of a notification: an image and up to two action buttons, each a link the apps may
//! open. Links are parsed against an allow-list of schemes — `https`, and for deep links only the
//! app's own schemes (`AppSchemes`) — so a value of these types is never `javascript:`, `data:`,
//! plain `http:` or anything else an app or the console would run or load unsafely.

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::notification::ActionLabel;

/// Longest link kept: every browser and app handles it, and a row stays small.
pub const MAX_LINK_LEN: usize = 2048;
/// Most action buttons one notification carries.
pub const MAX_ACTIONS: usize = 2;

/// Schemes that are never an app's own: they load, run or reach something other than the app.
const NEVER_APP_SCHEMES: [&str; 9] =
    ["javascript", "vbscript", "data", "file", "blob", "about", "http", "https", "filesystem"];

/// The schemes deep links may use: the apps' own (`herald` by default; `HERALD_APP_SCHEMES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSchemes(Vec<String>);

impl Default for AppSchemes {
    fn default() -> Self {
        Self(vec!["herald".to_string()])
    }
}

impl AppSchemes {
    /// A comma-separated list of schemes (`herald,herald-merchant`), each a URI scheme that is not
    /// one of the web's (`https`, `http`, `javascript`, `data`, …).
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        let mut schemes = Vec::new();
        for scheme in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let scheme = scheme.to_ascii_lowercase();
            check_app_scheme(field, &scheme)?;
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        if schemes.is_empty() {
            return Err(InvalidInput::new(field, "must name at least one scheme"));
        }
        Ok(Self(schemes))
    }

    pub fn contains(&self, scheme: &str) -> bool {
        self.0.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A scheme as RFC 3986 spells it: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn check_app_scheme(field: &str, scheme: &str) -> Result<(), InvalidInput> {
    if !is_scheme(scheme) {
        return Err(InvalidInput::new(field, format!("{scheme:?} is not a URI scheme")));
    }
    if NEVER_APP_SCHEMES.contains(&scheme) {
        return Err(InvalidInput::new(field, format!("{scheme:?} cannot be an app's own scheme")));
    }
    Ok(())
}

/// The scheme of a link (before its first `:`), lowercased, after checking the link's characters:
/// no whitespace, control or bidi characters and nothing HTML would read as markup, so a link is
/// safe inside an attribute and can't hide a different scheme behind invisible characters.
fn scheme_of(field: &str, raw: &str) -> Result<String, InvalidInput> {
    if raw.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if raw.len() > MAX_LINK_LEN {
        return Err(InvalidInput::new(field, format!("must be at most {MAX_LINK_LEN} bytes")));
    }
    if let Some(bad) = raw.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '"' | '\'' | '`' | '\\' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}')
            || matches!(c, '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    }) {
        return Err(InvalidInput::new(field, format!("must not contain {bad:?}")));
    }
    let scheme = raw.split_once(':').map(|(s, _)| s).filter(|s| is_scheme(s));
    let scheme = scheme.ok_or_else(|| InvalidInput::new(field, "must start with a scheme (`https:`)"))?;
    Ok(scheme.to_ascii_lowercase())
}

/// An `https://` link with a host, and no credentials in it.
fn parse_https(field: &str, raw: &str) -> Result<String, InvalidInput> {
    let scheme = scheme_of(field, raw)?;
    if scheme != "https" {
        return Err(InvalidInput::new(field, format!("scheme {scheme:?} is not allowed: only https")));
    }
    let rest = raw[scheme.len() + 1..].strip_prefix("//");
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match authority {
        Some(a) if a.contains('@') => Err(InvalidInput::new(field, "must not hold credentials (`user@`)")),
        Some(a) if !a.is_empty() && !a.starts_with(':') => Ok(raw.to_string()),
        _ => Err(InvalidInput::new(field, "must be https://host/…")),
    }
}

/// The image a notification shows: an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ImageUrl(String);

impl ImageUrl {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        parse_https(field, raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ImageUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse("", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// What a button opens: a web page (`https`) or a screen of the app (one of its own schemes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Url,
    DeepLink,
}

impl ActionKind {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidInput> {
        match raw {
            "url" => Ok(Self::Url),
            "deep_link" => Ok(Self::DeepLink),
            other => {
                Err(InvalidInput::new(field, format!("unknown kind {other:?}; expected \"url\" or \"deep_link\"")))
            }
        }
    }
}

/// A button: its kind, the link it opens (checked for its kind) and an optional label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    kind: ActionKind,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<ActionLabel>,
}

impl Action {
    /// An action from input: a `url` target is `https://host/…`, a `deep_link` target one of
    /// `schemes`. Errors name `kind`, `target` or `label` (the caller adds `actions[i]`).
    pub fn parse(kind: &str, target: &str, label: Option<&str>, schemes: &AppSchemes) -> Result<Self, InvalidInput> {
        let kind = ActionKind::parse("kind", kind)?;
        let target = match kind {
            ActionKind::Url => parse_https("target", target)?,
            ActionKind::DeepLink => {
                let scheme = scheme_of("target", target)?;
                if !schemes.contains(&scheme) {
                    let allowed = schemes.as_slice().join(", ");
                    return Err(InvalidInput::new(
                        "target",
                        format!("scheme {scheme:?} is not allowed for a deep link: only the app's own ({allowed})"),
                    ));
                }
                check_app_scheme("target", &scheme)?;
                if target.len() == scheme.len() + 1 {
                    return Err(InvalidInput::new("target", "must say where in the app (`herald://orders/1`)"));
                }
                target.to_string()
            }
        };
        let label = label.map(|l| ActionLabel::parse("label", l)).transpose()?;
        Ok(Self { kind, target, label })
    }

    pub fn kind(&self) -> ActionKind {
        self.kind
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn label(&self) -> Option<&ActionLabel> {
        self.label.as_ref()
    }
}

/// Stored actions read back: the same checks, except that a deep link's scheme need only be one
/// an app could own (the allow-list may have changed since it was written).
impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            kind: ActionKind,
            target: String,
            label: Option<ActionLabel>,
        }
        let raw = Raw::deserialize(d)?;
        let target = match raw.kind {
            ActionKind::Url => parse_https("target", &raw.target),
            ActionKind::DeepLink => {
                scheme_of("target", &raw.target).and_then(|s| check_app_scheme("target", &s)).map(|()| raw.target)
            }
        };
        let target = target.map_err(|e| serde::de::Error::custom(e.message))?;
        Ok(Self { kind: raw.kind, target, label: raw.label })
    }
}

/// A notification's buttons: at most `MAX_ACTIONS`, in the order the apps show them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Actions(Vec<Action>);

impl Actions {
    pub fn new(field: &str, actions: Vec<Action>) -> Result<Self, InvalidInput> {
        if actions.len() > MAX_ACTIONS {
            return Err(InvalidInput::new(field, format!("at most {MAX_ACTIONS} actions, got {}", actions.len())));
        }
        Ok(Self(actions))
    }

    pub fn as_slice(&self) -> &[Action] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let actions = Vec::<Action>::deserialize(d)?;
        Self::new("", actions).map_err(|e| serde::de::Error::custom(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemes() -> AppSchemes {
        AppSchemes::parse("app-schemes", "herald, Herald-Merchant").unwrap()
    }

    #[test]
    fn images_are_https_with_a_host() {
        assert!(ImageUrl::parse("image", "https://cdn.example.com/a.png?x=1").is_ok());
        assert!(ImageUrl::parse("image", "HTTPS://cdn.example.com/a.png").is_ok());
        for bad in [
            "http://cdn.example.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https:/cdn.example.com",
            "https://",
            "https://user:pw@cdn.example.com/a.png",
            "https://cdn.example.com/a b.png",
            "https://cdn.example.com/\"onerror=\"x",
            " https://cdn.example.com/a.png",
            "//cdn.example.com/a.png",
            "",
        ] {
            assert_eq!(ImageUrl::parse("image", bad).unwrap_err().field, "image", "{bad:?}");
        }
        assert!(ImageUrl::parse("image", &format!("https://x.com/{}", "a".repeat(MAX_LINK_LEN))).is_err());
    }

    #[test]
    fn deep_links_take_only_the_apps_schemes() {
        let s = schemes();
        let a = Action::parse("deep_link", "herald-merchant://orders/7", Some("查看订单"), &s).unwrap();
        assert_eq!((a.kind(), a.target()), (ActionKind::DeepLink, "herald-merchant://orders/7"));
        for bad in
            ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "other://x", "herald:", "java\tscript:x", "https://x.com"]
        {
            assert_eq!(Action::parse("deep_link", bad, None, &s).unwrap_err().field, "target", "{bad:?}");
        }
        assert!(Action::parse("url", "https://example.com/promo", None, &s).is_ok());
        assert_eq!(Action::parse("url", "herald://orders", None, &s).unwrap_err().field, "target");
        assert_eq!(Action::parse("url", "http://example.com", None, &s).unwrap_err().field, "target");
        assert_eq!(Action::parse("button", "https://example.com", None, &s).unwrap_err().field, "kind");
        assert_eq!(Action::parse("url", "https://example.com", Some("a\nb"), &s).unwrap_err().field, "label");
    }

    #[test]
    fn app_schemes_refuse_the_webs() {
        assert!(schemes().contains("herald") && schemes().contains("HERALD-merchant"));
        for bad in ["javascript", "https", "data", "1abc", "a b", ""] {
            assert!(AppSchemes::parse("app-schemes", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn at_most_two_actions_and_stored_ones_read_back() {
        let s = schemes();
        let one = || Action::parse("url", "https://example.com", None, &s).unwrap();
        assert_eq!(Actions::new("actions", vec![one(), one(), one()]).unwrap_err().field, "actions");
        let two =
            Actions::new("actions", vec![one(), Action::parse("deep_link", "herald://a", Some("Go"), &s).unwrap()]);
        let json = serde_json::to_string(&two.unwrap()).unwrap();
        assert_eq!(
            json,
            r#"[{"kind":"url","target":"https://example.com"},{"kind":"deep_link","target":"herald://a","label":"Go"}]"#
        );
        let back: Actions = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_slice().len(), 2);
        assert!(serde_json::from_str::<Actions>(r#"[{"kind":"deep_link","target":"javascript:x"}]"#).is_err());
    }
}
