//! Run ids: the one name every handoff, ledger line and workflow record is filed under.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

pub use orch_support::id::{InvalidId, MAX_ID_LEN, validate_id};

/// A validated run id. Every `RunId` is safe to use as a file name or a
/// key: it can never name a path outside the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Validates `s` as a run id.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
        let s = s.into();
        validate_id(&s)?;
        Ok(Self(s))
    }

    /// A fresh delegation id: `orch-<UTC yyyymmddThhmmssZ>-<8 hex>`.
    pub fn generate() -> Self {
        Self(format!("orch-{}-{}", utc_stamp(), random_hex()))
    }

    /// A fresh workflow run id: `wf-<name>-<UTC stamp>-<8 hex>`. Characters
    /// of `name` outside the id alphabet become `-`, and the name is
    /// shortened so the whole id stays within [`MAX_ID_LEN`].
    pub fn generate_workflow(name: &str) -> Self {
        let mut clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_ID_LEN - "wf--yyyymmddThhmmssZ-xxxxxxxx".len())
            .collect();
        if clean.is_empty() {
            clean.push_str("workflow");
        }
        Self(format!("wf-{clean}-{}-{}", utc_stamp(), random_hex()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn utc_stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 4];
    // The OS RNG failing is not something a caller can act on; fall back to
    // the clock and pid so ids stay unique enough rather than panicking.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = jiff::Timestamp::now().subsec_nanosecond() as u32;
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RunId::new(s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for RunId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Run id: ASCII letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters.",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_shaped() {
        let id = RunId::generate();
        assert!(RunId::new(id.as_str()).is_ok());
        let s = id.as_str();
        assert!(s.starts_with("orch-"), "{s}");
        assert_eq!(s.len(), "orch-20261123T224500Z-3f9a1c2b".len(), "{s}");
        let wf = RunId::generate_workflow("material trade/study");
        assert!(wf.as_str().starts_with("wf-material-trade-study-"), "{wf}");
        let long = RunId::generate_workflow(&"x".repeat(500));
        assert!(long.as_str().len() <= MAX_ID_LEN);
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "", "../x", "a/b", ".", "..", ".hidden", "-x", "a b", "é", "a\0b",
        ] {
            assert!(RunId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            RunId::new("x".repeat(200)),
            Err(InvalidId::TooLong { len: 200 })
        );
        assert!(RunId::new("x".repeat(128)).is_ok());
        assert!(RunId::new("orch-20261123T224500Z-3f9a1c2b").is_ok());
    }
}
