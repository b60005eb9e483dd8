//! The metrics index: a checkpoint of what the ledger said up to a byte
//! offset, so that a report reads only the ledger after it.
//!
//! A checkpoint holds:
//!
//! - **settled** aggregates, one [`Cell`] per (agent, caller): the
//!   delegations whose last ledger line is more than [`SETTLE_AFTER`] older
//!   than the newest line seen (the *watermark*) and that have ended, with
//!   their counts by outcome and confidence, re-asks, retries, ACL
//!   denials, and their latencies (exact count, sum, maximum and histogram
//!   buckets; percentiles from an HDR histogram of two significant digits,
//!   so within 1 % of the exact nearest-rank value, and exact below 256 ms);
//! - **live** runs, in full ([`RunAcc`]): the ones that may still change
//!   (in flight, or ended less than [`SETTLE_AFTER`] ago); they are counted
//!   afresh by every report, as a scan without the index counts them;
//! - the ledger offset it covers, with the length and SHA-256 of the line
//!   that ends there, so a ledger that was truncated, rotated or replaced
//!   is noticed (the index is then rebuilt), and the line counts and first
//!   bad lines a report lists.
//!
//! So what a checkpoint holds grows with the agents and callers and with
//! the work of the last day, never with the ledger's history.
//!
//! **Never wrong, only slower.** The checkpoint is a cache: missing,
//! unreadable, from another version, or not matching the ledger, it is
//! rebuilt from the whole ledger (read [`CHUNK`] bytes at a time, so a
//! rebuild's memory is bounded too). A checkpoint is replaced by writing a
//! new file and renaming it into place: concurrent reports never see half
//! of one, and when two race the later rename wins, a valid checkpoint
//! either way.
//!
//! One assumption, which orch's writers keep: a run id gets no new ledger
//! line once its run has been settled (orch writes a run's lines while it
//! runs, and a run id is never reused). A foreign writer that breaks it
//! has its late line counted as a run of its own until `--no-index`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ledger::{End, FxBuild, Index, RunAcc};
use crate::report::{AgentStats, Bucket, Distribution, LATENCY_BUCKETS_MS, MAX_LISTED_PROBLEMS};

/// The checkpoint's format; another one is rebuilt.
pub(crate) const VERSION: u32 = 1;

/// How long after its last ledger line an ended run is settled.
pub(crate) const SETTLE_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// How much of the ledger is parsed at a time.
pub(crate) const CHUNK: u64 = 32 << 20;

/// How much of the covered prefix's end [`LastLine`] hashes.
pub(crate) const TAIL: u64 = 4096;

/// Significant digits of the latency histograms: values within 1 %.
const SIGFIG: u8 = 2;

/// Settled latencies of one cell.
#[derive(Clone, Debug)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) sum: u64,
    pub(crate) max: Option<u64>,
    /// Values ≤ each bound of [`LATENCY_BUCKETS_MS`], not cumulative.
    pub(crate) buckets: Vec<u64>,
    pub(crate) hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0,
            max: None,
            buckets: vec![0; LATENCY_BUCKETS_MS.len()],
            hist: new_histogram(),
        }
    }
}

/// An auto-resizing histogram of [`SIGFIG`] digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGFIG).expect("SIGFIG is in hdrhistogram's range, 0..=5");
    h.auto(true);
    h
}

impl Latency {
    pub(crate) fn record(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(Some(v));
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|&b| v <= b) {
            self.buckets[i] += 1;
        }
        // Auto-resizing: recording cannot fail for a u64.
        let _ = self.hist.record(v);
    }

    /// The report's distribution: count, sum, maximum and buckets exact;
    /// a percentile is the upper end of the histogram bucket that holds the
    /// value of its nearest rank (at most the maximum), within 1 % of it.
    pub(crate) fn distribution(&self) -> Distribution {
        let at = |p: u64| {
            if self.count == 0 {
                return None;
            }
            let rank = (p * self.count).div_ceil(100).max(1);
            let mut seen = 0;
            for v in self.hist.iter_recorded() {
                seen += v.count_since_last_iteration();
                if seen >= rank {
                    return Some(v.value_iterated_to().min(self.max.unwrap_or(u64::MAX)));
                }
            }
            self.max
        };
        let mut below = 0;
        let buckets = LATENCY_BUCKETS_MS
            .iter()
            .zip(&self.buckets)
            .map(|(&le_ms, &n)| {
                below += n;
                Bucket {
                    le_ms,
                    count: below,
                }
            })
            .collect();
        Distribution {
            count: self.count,
            sum_ms: self.sum,
            p50_ms: at(50),
            p90_ms: at(90),
            p99_ms: at(99),
            max_ms: self.max,
            buckets,
        }
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        let _ = self.hist.add(&other.hist);
    }
}

/// A latency as stored: the histogram as `[value, count]` pairs of its
/// non-empty buckets.
#[derive(Serialize, Deserialize)]
struct LatencyForm {
    count: u64,
    sum: u64,
    max: Option<u64>,
    buckets: Vec<u64>,
    hist: Vec<(u64, u64)>,
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LatencyForm {
            count: self.count,
            sum: self.sum,
            max: self.max,
            buckets: self.buckets.clone(),
            hist: self
                .hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = LatencyForm::deserialize(d)?;
        if f.buckets.len() != LATENCY_BUCKETS_MS.len() {
            return Err(serde::de::Error::custom(
                "latency buckets of another version",
            ));
        }
        let mut hist = new_histogram();
        for (v, n) in f.hist {
            hist.record_n(v, n).map_err(serde::de::Error::custom)?;
        }
        Ok(Self {
            count: f.count,
            sum: f.sum,
            max: f.max,
            buckets: f.buckets,
            hist,
        })
    }
}

/// The settled delegations (and ACL denials) of one agent from one caller:
/// their counts as the report has them (`stats`, whose `latency` is left
/// empty) and their latencies.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cell {
    pub(crate) agent: String,
    pub(crate) caller: Option<String>,
    pub(crate) stats: AgentStats,
    pub(crate) latency: Latency,
}

/// A live run as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveForm {
    id: String,
    ts: Option<String>,
    dispatched: bool,
    agent: Option<String>,
    caller: Option<String>,
    parent: Option<String>,
    workflow: Option<String>,
    end: Option<End>,
    touched: bool,
    reasks: u32,
    retries: u32,
    last: Option<String>,
}

/// The end of the covered prefix: its last [`TAIL`] bytes (fewer when it
/// is shorter), to tell the same ledger from a truncated or replaced one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastLine {
    /// How many bytes.
    pub(crate) len: u64,
    /// SHA-256 of those bytes, hex.
    pub(crate) sha256: String,
}

impl LastLine {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            len: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What a checkpoint file holds.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Form {
    version: u32,
    covered: u64,
    last_line: Option<LastLine>,
    line_count: u64,
    parsed: u64,
    bad_total: u64,
    bad: Vec<(u64, String)>,
    watermark: Option<Timestamp>,
    cells: Vec<Cell>,
    live: Vec<LiveForm>,
}

/// The index in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Ledger bytes folded in (always at a line's end).
    pub(crate) covered: u64,
    pub(crate) last_line: Option<LastLine>,
    /// Every line folded in (line numbers).
    pub(crate) line_count: u64,
    /// Lines that parsed.
    pub(crate) parsed: u64,
    /// Bad lines: how many, and the first [`MAX_LISTED_PROBLEMS`].
    pub(crate) bad_total: u64,
    pub(crate) bad: Vec<(u64, String)>,
    /// The newest time of a run's line.
    pub(crate) watermark: Option<Timestamp>,
    /// Settled, by (agent, caller).
    pub(crate) cells: BTreeMap<(String, Option<String>), Cell>,
    /// Runs that may still change, by run id.
    pub(crate) live: HashMap<String, RunAcc<'static>, FxBuild>,
}

impl State {
    /// Reads a checkpoint; `Err` says why it cannot be used.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let form: Form = serde_json::from_slice(bytes).map_err(|e| format!("unreadable ({e})"))?;
        if form.version != VERSION {
            return Err(format!(
                "version {} (this orch writes {VERSION})",
                form.version
            ));
        }
        let mut live = HashMap::with_capacity_and_hasher(form.live.len(), FxBuild::default());
        for l in form.live {
            let own = |v: Option<String>| v.map(Cow::Owned);
            live.insert(
                l.id,
                RunAcc {
                    ts: own(l.ts),
                    dispatched: l.dispatched,
                    agent: own(l.agent),
                    caller: own(l.caller),
                    parent: own(l.parent),
                    workflow: own(l.workflow),
                    end: l.end,
                    touched: l.touched,
                    reasks: l.reasks,
                    retries: l.retries,
                    last: own(l.last),
                    file: None,
                },
            );
        }
        Ok(Self {
            covered: form.covered,
            last_line: form.last_line,
            line_count: form.line_count,
            parsed: form.parsed,
            bad_total: form.bad_total,
            bad: form.bad,
            watermark: form.watermark,
            cells: form
                .cells
                .into_iter()
                .map(|c| ((c.agent.clone(), c.caller.clone()), c))
                .collect(),
            live,
        })
    }

    /// The checkpoint's bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let s = |v: &Option<Cow<'_, str>>| v.as_ref().map(|c| c.to_string());
        let mut live: Vec<LiveForm> = self
            .live
            .iter()
            .map(|(id, a)| LiveForm {
                id: id.clone(),
                ts: s(&a.ts),
                dispatched: a.dispatched,
                agent: s(&a.agent),
                caller: s(&a.caller),
                parent: s(&a.parent),
                workflow: s(&a.workflow),
                end: a.end,
                touched: a.touched,
                reasks: a.reasks,
                retries: a.retries,
                last: s(&a.last),
            })
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        let form = Form {
            version: VERSION,
            covered: self.covered,
            last_line: self.last_line.clone(),
            line_count: self.line_count,
            parsed: self.parsed,
            bad_total: self.bad_total,
            bad: self.bad.clone(),
            watermark: self.watermark,
            cells: self.cells.values().cloned().collect(),
            live,
        };
        // Plain data: serialising it cannot fail.
        serde_json::to_vec(&form).unwrap_or_default()
    }

    /// Folds a parse of the ledger's next lines in: `index` was parsed from
    /// the `len` bytes after [`covered`](Self::covered). Runs are merged
    /// into the live ones; the ACL denials `deny` keeps go to their cell at
    /// once. Then the runs that can be are settled, each through `settle`
    /// (which counts it into its cell). [`last_line`](Self::last_line) is
    /// the caller's to set.
    pub(crate) fn fold(
        &mut self,
        index: Index<'_>,
        len: u64,
        deny: &dyn Fn(&crate::ledger::Denial<'_>) -> bool,
        settle: &mut dyn FnMut(&mut Self, &str, RunAcc<'static>),
    ) {
        for (line, why) in index.bad_lines {
            self.bad_line(line + self.line_count, why);
        }
        self.line_count += index.line_count;
        self.parsed += index.lines;
        self.covered += len;
        for d in index.denials.iter().filter(|d| deny(d)) {
            let key = (
                d.agent.as_deref().unwrap_or("(unknown)").to_owned(),
                d.caller.as_deref().map(str::to_owned),
            );
            let cell = self.cells.entry(key).or_insert_with_key(|(a, c)| Cell {
                agent: a.clone(),
                caller: c.clone(),
                ..Cell::default()
            });
            cell.stats.acl_denials += 1;
        }
        let mut newest = self.watermark;
        for part in index.parts {
            for (id, acc) in part {
                let at = acc
                    .last
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok());
                newest = newest.max(at);
                match self.live.get_mut(id.as_ref()) {
                    Some(old) => old.merge(acc.into_owned()),
                    None => {
                        self.live.insert(id.into_owned(), acc.into_owned());
                    }
                }
            }
        }
        self.watermark = newest;
        let Some(cut) = newest.and_then(|w| w.checked_sub(SETTLE_AFTER).ok()) else {
            return;
        };
        let ready: Vec<String> = self
            .live
            .iter()
            .filter(|(_, a)| {
                a.end.is_some()
                    && a.last
                        .as_deref()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .is_none_or(|t| t < cut)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            if let Some(acc) = self.live.remove(&id) {
                settle(self, &id, acc);
            }
        }
    }

    /// Counts a bad line (1-based `line` of the whole ledger), listing it
    /// among the first [`MAX_LISTED_PROBLEMS`].
    pub(crate) fn bad_line(&mut self, line: u64, why: String) {
        self.bad_total += 1;
        if self.bad.len() < MAX_LISTED_PROBLEMS {
            self.bad.push((line, why));
        }
    }

    /// The cell of `agent` from `caller`.
    pub(crate) fn cell(&mut self, agent: &str, caller: Option<&str>) -> &mut Cell {
        self.cells
            .entry((agent.to_owned(), caller.map(str::to_owned)))
            .or_insert_with_key(|(a, c)| Cell {
                agent: a.clone(),
                caller: c.clone(),
                ..Cell::default()
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn latency_round_trips_and_stays_within_one_percent() {
        let mut l = Latency::default();
        let values: Vec<u64> = (0..5000).map(|i| i * 37 % 100_000 + 1).collect();
        for &v in &values {
            l.record(v);
        }
        let back: Latency = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(back.count, l.count);
        assert_eq!(back.sum, l.sum);
        assert_eq!(back.max, l.max);
        assert_eq!(back.buckets, l.buckets);
        let mut sorted = values.clone();
        let exact = Distribution::of(&mut sorted, LATENCY_BUCKETS_MS);
        let got = back.distribution();
        assert_eq!(
            (got.count, got.sum_ms, got.max_ms, &got.buckets),
            (exact.count, exact.sum_ms, exact.max_ms, &exact.buckets)
        );
        for (g, e) in [
            (got.p50_ms, exact.p50_ms),
            (got.p90_ms, exact.p90_ms),
            (got.p99_ms, exact.p99_ms),
        ] {
            let (g, e) = (g.unwrap() as f64, e.unwrap() as f64);
            assert!((g - e).abs() <= e * 0.01, "{g} vs {e}");
        }
        // Small values are exact.
        let mut small = Latency::default();
        for v in [3, 7, 7, 200] {
            small.record(v);
        }
        let d = small.distribution();
        assert_eq!(
            (d.p50_ms, d.p90_ms, d.max_ms),
            (Some(7), Some(200), Some(200))
        );
    }

    #[test]
    fn a_checkpoint_of_another_version_or_garbage_is_refused() {
        let s = State {
            covered: 10,
            ..State::default()
        };
        let bytes = s.to_bytes();
        assert_eq!(State::from_bytes(&bytes).unwrap().covered, 10);
        let other = String::from_utf8(bytes)
            .unwrap()
            .replace("\"version\":1", "\"version\":99");
        assert!(
            State::from_bytes(other.as_bytes())
                .unwrap_err()
                .contains("version 99")
        );
        assert!(State::from_bytes(b"{\"version\":1,").is_err());
    }
}
