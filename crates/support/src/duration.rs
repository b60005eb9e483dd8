//! The one way orch reads and writes a duration: seconds (`120`) or
//! friendly (`90s`, `10m`, `1h 30m`, `500ms`), in flags, `orch.yaml` and
//! workflow files alike.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses `120`, `90s`, `10m`, `1h 30m`, `500ms`. The error says what is
/// accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use seconds (120) or e.g. 90s, 10m, 1h"))?;
    d.try_into()
        .map_err(|_| format!("{s:?} is not a duration: it must not be negative"))
}

/// Formats a duration the way [`parse`] reads it (`2m`, `1h 30m`, `500ms`).
pub fn format(d: Duration) -> String {
    match jiff::SignedDuration::try_from(d) {
        Ok(d) => format!("{d:#}"),
        Err(_) => format!("{}s", d.as_secs()),
    }
}

/// A duration in a configuration file: deserialised from whole seconds or
/// text ([`parse`]), serialised as text ([`format()`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Secs(s)) => Ok(Dur(Duration::from_secs(s))),
            Ok(Raw::Text(t)) => parse(&t).map(Dur).map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(
                "expected a duration: seconds (120) or e.g. 90s, 10m, 1h",
            )),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_back() {
        assert_eq!(parse("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse("-5s").is_err_and(|e| e.contains("negative")));
        assert!(parse("soon").is_err_and(|e| e.contains("not a duration")));
        for d in [
            Duration::from_secs(120),
            Duration::from_millis(500),
            Duration::from_secs(5400),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
