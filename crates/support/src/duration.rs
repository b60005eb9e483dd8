//! The one way orch reads and writes a duration: seconds (`120`) or
//! friendly (`90s`, `10m`, `1h 30m`, `500ms`), in flags, `orch.yaml` and
//! workflow files alike. In serde: [`Dur`], a newtype, or [`serde`] for a
//! plain [`Duration`] field (`#[serde(with = "orch_support::duration::serde")]`).

use std::time::Duration;

use ::serde::{Deserialize, Deserializer, Serialize, Serializer};

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
            Ok(Raw::Text(t)) => parse(&t).map(Dur).map_err(::serde::de::Error::custom),
            Err(_) => Err(::serde::de::Error::custom(
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

/// A [`Duration`] field in the one syntax, without the [`Dur`] newtype:
/// `#[serde(with = "orch_support::duration::serde")]` reads what [`Dur`]
/// reads and writes what it writes.
pub mod serde {
    use std::time::Duration;

    use ::serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Dur;

    /// Writes `d` as text ([`format()`](super::format)).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        Dur(*d).serialize(s)
    }

    /// Reads whole seconds or text ([`parse`](super::parse)).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Dur::deserialize(d).map(|d| d.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    struct Timeouts {
        #[serde(with = "super::serde")]
        wait: Duration,
    }

    #[test]
    fn a_plain_duration_field_reads_and_writes_the_one_syntax() {
        let read = |json: &str| serde_json::from_str::<Timeouts>(json).map(|t| t.wait);
        assert_eq!(read(r#"{"wait": 90}"#).unwrap(), Duration::from_secs(90));
        assert_eq!(
            read(r#"{"wait": "1h 30m"}"#).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            read(r#"{"wait": "500ms"}"#).unwrap(),
            Duration::from_millis(500)
        );
        let soon = read(r#"{"wait": "soon"}"#).unwrap_err().to_string();
        assert!(soon.contains(r#""soon" is not a duration"#), "{soon}");
        let wrong = read(r#"{"wait": [1]}"#).unwrap_err().to_string();
        assert!(wrong.contains("expected a duration"), "{wrong}");
        let shown = serde_json::to_string(&Timeouts {
            wait: Duration::from_secs(120),
        })
        .unwrap();
        assert_eq!(shown, r#"{"wait":"2m"}"#);
    }

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
