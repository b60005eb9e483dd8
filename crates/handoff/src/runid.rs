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

    /// A fresh delegation id: `orch-<UTC yyyymmddThhmmssZ>-<8 hex>`, never
    /// the same twice in one process (see `suffix_hex`).
    pub fn generate() -> Self {
        Self(format!("orch-{}-{}", utc_stamp(), suffix_hex()))
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
        Self(format!("wf-{clean}-{}-{}", utc_stamp(), suffix_hex()))
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

/// The 8 hex digits of a generated id. Drawn at random they would repeat:
/// 32 bits give two ids made in the same second the same suffix with
/// probability k²/2³³ for k ids in that second, about one run in thirty
/// of the 50,000-delegation benchmark (issue 12: two delegations shared a
/// run id, each read the other's answer as invalid, and one was lost).
/// Instead, a per-process counter starting at a random point goes through
/// a 32-bit permutation: one process never repeats a suffix (for 2³² ids),
/// two processes can only collide where their counter ranges overlap,
/// about (k₁ + k₂)/2³² per second, and the digits still look random.
fn suffix_hex() -> String {
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = *START.get_or_init(random_u32);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:08x}", permute(start.wrapping_add(n)))
}

/// A bijection on `u32` that scatters consecutive inputs (Chris Wellons'
/// `lowbias32`: every step, an xor-shift or a multiplication by an odd
/// constant, can be undone).
fn permute(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // The OS RNG failing is not something a caller can act on; fall back to
    // the clock and pid rather than panicking (ids stay unique within the
    // process either way).
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = jiff::Timestamp::now().subsec_nanosecond() as u32;
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    u32::from_be_bytes(bytes)
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

    /// 262,144 ids: random 32-bit suffixes would repeat about eight times
    /// here (k²/2³³); these never do.
    #[test]
    fn generated_ids_never_repeat_in_a_process() {
        let n = 1 << 18;
        let mut seen = std::collections::HashSet::with_capacity(n);
        for i in 0..n {
            let id = if i % 2 == 0 {
                RunId::generate()
            } else {
                RunId::generate_workflow("w")
            };
            assert!(
                seen.insert(id.as_str()[id.as_str().len() - 8..].to_owned()),
                "{id}"
            );
        }
    }

    /// Every step of `permute` is undone here, so it is a bijection.
    #[test]
    fn the_suffix_permutation_can_be_undone() {
        fn inverse_of_odd(c: u32) -> u32 {
            // Newton's iteration doubles the correct low bits each round.
            let mut inv = c;
            for _ in 0..5 {
                inv = inv.wrapping_mul(2u32.wrapping_sub(c.wrapping_mul(inv)));
            }
            inv
        }
        fn unpermute(mut x: u32) -> u32 {
            x ^= x >> 16;
            x = x.wrapping_mul(inverse_of_odd(0x846c_a68b));
            x ^= (x >> 15) ^ (x >> 30);
            x = x.wrapping_mul(inverse_of_odd(0x7feb_352d));
            x ^= x >> 16;
            x
        }
        for x in (0..=u32::MAX).step_by(65_537).chain(0..100_000) {
            assert_eq!(unpermute(permute(x)), x, "{x:#x}");
        }
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
