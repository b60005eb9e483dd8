//! `--since`: a duration back from now, or a point in time.

use std::str::FromStr;

use jiff::{SignedDuration, SpanRelativeTo, Timestamp};

/// The start of a report's window, as a user writes it: a duration back from
/// "now" (`24h`, `7d`, `2w`, `90m`, `1h30m`, ISO 8601 `P7D`; a day is 24
/// hours), an RFC 3339 time (`2026-11-20T08:00:00Z`, any offset), or a date
/// (`2026-11-20`, midnight UTC). "Now" is supplied when the window is
/// resolved ([`Since::resolve`]), so tests can fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(SignedDuration),
    /// From this instant.
    At(Timestamp),
}

/// A `--since` value that is neither a duration nor a time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a time window start{why}: use a duration back from now (24h, 7d, 2w, \
     90m), an RFC 3339 time (2026-11-20T08:00:00Z) or a date (2026-11-20, UTC)"
)]
pub struct SinceError {
    input: String,
    why: &'static str,
}

impl Since {
    /// The instant the window starts at, given the current time.
    pub fn resolve(&self, now: Timestamp) -> Timestamp {
        match *self {
            Self::At(t) => t,
            Self::Ago(d) => now.checked_sub(d).unwrap_or(Timestamp::MIN),
        }
    }
}

impl FromStr for Since {
    type Err = SinceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = |why| SinceError {
            input: s.chars().take(60).collect(),
            why,
        };
        if let Ok(t) = text.parse::<Timestamp>() {
            return Ok(Self::At(t));
        }
        if let Ok(date) = text.parse::<jiff::civil::Date>() {
            return jiff::tz::TimeZone::UTC
                .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                .map(Self::At)
                .map_err(|_| err(""));
        }
        let span: jiff::Span = text.parse().map_err(|_| err(""))?;
        let d = span
            .to_duration(SpanRelativeTo::days_are_24_hours())
            .map_err(|_| err(" (months and years have no fixed length: use days)"))?;
        if d.is_negative() {
            return Err(err(" (a duration back from now cannot be negative)"));
        }
        Ok(Self::Ago(d))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn at(s: &str) -> String {
        s.parse::<Since>().unwrap().resolve(now()).to_string()
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(at("24h"), "2026-11-24T12:00:00Z");
        assert_eq!(at("7d"), "2026-11-18T12:00:00Z");
        assert_eq!(at("2w"), "2026-11-11T12:00:00Z");
        assert_eq!(at("90m"), "2026-11-25T10:30:00Z");
        assert_eq!(at("1h 30m"), "2026-11-25T10:30:00Z");
        assert_eq!(at("P1D"), "2026-11-24T12:00:00Z");
        assert_eq!(at("0s"), "2026-11-25T12:00:00Z");
    }

    #[test]
    fn times_and_dates_are_absolute() {
        assert_eq!(at("2026-11-20T08:00:00Z"), "2026-11-20T08:00:00Z");
        assert_eq!(at("2026-11-20T08:00:00+02:00"), "2026-11-20T06:00:00Z");
        assert_eq!(at("2026-11-20"), "2026-11-20T00:00:00Z");
    }

    #[test]
    fn anything_else_says_what_is_accepted() {
        for bad in ["", "yesterday", "7", "-5h", "1mo", "2026-13-01"] {
            let e = bad.parse::<Since>().unwrap_err().to_string();
            assert!(
                e.contains("24h, 7d") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
        assert!(
            "-5h"
                .parse::<Since>()
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(
            "1mo"
                .parse::<Since>()
                .unwrap_err()
                .to_string()
                .contains("use days")
        );
    }
}
