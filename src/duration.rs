//! Durations as people write them on a command line: `90s`, `30m`, `12h`, `30d`.

use std::time::Duration;

pub fn parse(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let digits = raw.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().map_err(|_| format!("{raw:?}: expected a number and a unit, like 30s or 12h"))?;
    let unit_seconds = match &raw[digits.len()..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{raw:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit_seconds).map(Duration::from_secs).ok_or_else(|| format!("{raw:?}: too long"))
}

/// The duration in the largest unit that divides it: `30d`, `12h`, `90s`.
pub fn describe(d: Duration) -> String {
    let s = d.as_secs();
    match () {
        _ if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_describes() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 12h "), Ok(Duration::from_secs(43_200)));
        assert_eq!(describe(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(describe(Duration::from_secs(90)), "90s");
        for bad in ["", "12", "h", "1w", "-5m", "99999999999999999999d", "18446744073709551615d"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
