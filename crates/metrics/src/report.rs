//! The [`Report`]: what a scan found, as plain data. Its JSON form is the
//! `orch metrics json` output, schema version [`SCHEMA_VERSION`], published
//! as `schema/metrics.schema.json` (generated from these types by
//! [`report_json_schema`]) and documented field by field in
//! `docs/metrics.md`.
//!
//! Counts are `u64`, durations whole milliseconds, times RFC 3339 UTC.
//! Lists are sorted (agents, callers and workflows by name) so a report is
//! deterministic for a given store and options.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the report's JSON shape. A new field is not a new version;
/// a renamed, removed or re-typed one is.
pub const SCHEMA_VERSION: u32 = 1;

/// `$id` of the published JSON Schema.
const SCHEMA_ID: &str = "https://raw.githubusercontent.com/atomizer-hq/orch/main/crates/metrics/schema/metrics.schema.json";

/// Upper bounds (ms) of the delegation latency histogram buckets.
pub const LATENCY_BUCKETS_MS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    1_800_000, 3_600_000,
];

/// Upper bounds (ms) of the workflow run duration histogram buckets.
pub const DURATION_BUCKETS_MS: &[u64] = &[
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
    7_200_000, 21_600_000, 86_400_000,
];

/// At most this many entries in each problem list (the counts are exact).
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// Metrics over a store: delegations per agent and per caller, workflow
/// runs, and what could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "orch metrics report",
    description = "The output of `orch metrics json`: delegations per agent and per caller, workflow runs, and what could not be read (schema 1).",
    extend("$id" = SCHEMA_ID)
)]
pub struct Report {
    /// Version of this shape: 1.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema: u32,
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// What was read, and how.
    pub source: Source,
    /// The time window.
    pub window: Window,
    /// The `--agent` and `--workflow` filters.
    pub filters: Filters,
    /// Everything in the window, over all agents.
    pub totals: Totals,
    /// Per target agent, by id.
    pub agents: Vec<AgentStats>,
    /// Per caller, by id; `caller: null` (unknown) last.
    pub callers: Vec<CallerStats>,
    /// Per workflow, by name.
    pub workflows: Vec<WorkflowStats>,
    /// Files and ledger lines that could not be read.
    pub problems: Problems,
}

/// How the report was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The ledger is the index; only handoff files it does not account for
    /// are read.
    #[default]
    Ledger,
    /// Every handoff file is read (and trusted over the ledger's copy of its
    /// status and confidence).
    Rescan,
}

/// What was read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The store, e.g. `file store at /srv/orch/handoffs`.
    pub store: String,
    /// `ledger` or `rescan`.
    pub mode: Mode,
    /// Ledger lines that parsed (bad ones are in `problems`).
    pub ledger_lines: u64,
    /// Handoff files in the store (top level and `sub/`).
    pub handoff_files: u64,
    /// Handoff files read (all of them with `rescan`; otherwise those the
    /// ledger does not account for).
    pub files_read: u64,
    /// Workflow run directories in the store.
    pub workflow_runs: u64,
    /// How the ledger was read when not whole: from the index's checkpoint
    /// on, or (with `--since`) from the window's start. Then the store is
    /// not listed: `handoffFiles` and `filesRead` count only the handoff
    /// files looked up (of delegations in flight or that ended without a
    /// handoff), and `problems.missingHandoffFiles` is 0. Absent when the
    /// whole ledger and the listing were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexUse>,
}

/// How a report used the index (see `Source::index`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexUse {
    /// `checkpoint`: the aggregates of the ledger up to an offset, and the
    /// ledger after it; `tail`: the ledger from the `--since` window's start
    /// (found by bisection).
    pub kind: IndexKind,
    /// Ledger bytes read for this report.
    pub bytes_read: u64,
    /// Ledger bytes the checkpoint already covered (not read again).
    pub bytes_covered: u64,
    /// Why the checkpoint was rebuilt from the whole ledger (missing,
    /// unreadable, another version, the ledger truncated or replaced);
    /// `null` when it was used.
    pub rebuilt: Option<String>,
}

/// See [`IndexUse::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// The checkpoint and the ledger after it.
    Checkpoint,
    /// The ledger from the window's start.
    Tail,
}

/// The time window: delegations dispatched, denials made and workflow runs
/// started at or after `since`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start (RFC 3339, UTC); `null` for all time.
    pub since: Option<String>,
    /// End: when the report was made.
    pub until: String,
}

/// Filters applied (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Only delegations to (and denials of) these agents.
    pub agents: Vec<String>,
    /// Only these workflows (by name or run id) and their delegations.
    pub workflows: Vec<String>,
}

/// How delegations ended. The first four are the handoff's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    /// A handoff with status `complete`.
    pub complete: u64,
    /// A handoff with status `partial`.
    pub partial: u64,
    /// A handoff with status `blocked`.
    pub blocked: u64,
    /// A handoff with status `failed`.
    pub failed: u64,
    /// No handoff before the deadline.
    pub timed_out: u64,
    /// The last handoff was invalid (after any re-asks).
    pub invalid: u64,
    /// The transport failed, or the agent's run ended without a handoff.
    pub error: u64,
    /// The caller cancelled it (Ctrl-C).
    pub cancelled: u64,
    /// Dispatched, not ended: in flight, or its process was killed.
    pub pending: u64,
}

impl Outcomes {
    /// Delegations that ended with a valid handoff.
    pub fn handoffs(&self) -> u64 {
        self.complete + self.partial + self.blocked + self.failed
    }

    /// All delegations.
    pub fn total(&self) -> u64 {
        self.handoffs() + self.timed_out + self.invalid + self.error + self.cancelled + self.pending
    }

    /// `(name, count)` in schema order; names as in the Prometheus `status`
    /// label.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("complete", self.complete),
            ("partial", self.partial),
            ("blocked", self.blocked),
            ("failed", self.failed),
            ("timed-out", self.timed_out),
            ("invalid", self.invalid),
            ("error", self.error),
            ("cancelled", self.cancelled),
            ("pending", self.pending),
        ]
    }

    pub(crate) fn add(&mut self, o: &Self) {
        self.complete += o.complete;
        self.partial += o.partial;
        self.blocked += o.blocked;
        self.failed += o.failed;
        self.timed_out += o.timed_out;
        self.invalid += o.invalid;
        self.error += o.error;
        self.cancelled += o.cancelled;
        self.pending += o.pending;
    }
}

/// The confidence of the handoffs (delegations that ended with one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfidenceMix {
    /// `high`.
    pub high: u64,
    /// `medium`.
    pub medium: u64,
    /// `low`.
    pub low: u64,
    /// Not stated by the agent.
    pub unstated: u64,
}

impl ConfidenceMix {
    /// `(name, count)` in schema order.
    pub fn named(&self) -> [(&'static str, u64); 4] {
        [
            ("high", self.high),
            ("medium", self.medium),
            ("low", self.low),
            ("unstated", self.unstated),
        ]
    }

    pub(crate) fn add(&mut self, o: &Self) {
        self.high += o.high;
        self.medium += o.medium;
        self.low += o.low;
        self.unstated += o.unstated;
    }
}

/// A distribution of durations in milliseconds. Percentiles are
/// nearest-rank: the value at 1-based rank ⌈p/100 × count⌉ of the sorted
/// values, so always one of the values; `null` when there are none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    /// How many values.
    pub count: u64,
    /// Their sum.
    pub sum_ms: u64,
    /// Median.
    pub p50_ms: Option<u64>,
    /// 90th percentile.
    pub p90_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
    /// Largest.
    pub max_ms: Option<u64>,
    /// Cumulative histogram for fixed bounds: upper bound in ms (inclusive)
    /// → how many values are ≤ it. In JSON an object keyed by the bound,
    /// ascending: `{"100": 0, "250": 3, …}`; the last bucket, +∞, is
    /// `count`.
    #[serde(with = "bucket_map")]
    #[schemars(schema_with = "bucket_map::schema")]
    pub buckets: Vec<Bucket>,
}

/// `Vec<Bucket>` as a JSON object `{"<leMs>": count}` in bound order.
mod bucket_map {
    use std::fmt;

    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use super::Bucket;

    pub(super) fn serialize<S: Serializer>(buckets: &[Bucket], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(buckets.len()))?;
        for b in buckets {
            map.serialize_entry(&b.le_ms.to_string(), &b.count)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Bucket>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Bucket>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of bucket bounds (ms) to counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((le, count)) = map.next_entry::<String, u64>()? {
                    let le_ms = le.parse().map_err(|_| {
                        de::Error::custom(format!("bucket bound {le:?} is not a whole number"))
                    })?;
                    out.push(Bucket { le_ms, count });
                }
                out.sort_by_key(|b| b.le_ms);
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }

    pub(super) fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Cumulative histogram: upper bound in ms (inclusive, ascending) -> how many values are <= it.",
            "propertyNames": { "pattern": "^[0-9]+$" },
            "additionalProperties": { "type": "integer", "format": "uint64", "minimum": 0 }
        })
    }
}

/// One cumulative histogram bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Upper bound, inclusive (ms).
    pub le_ms: u64,
    /// Values ≤ the bound.
    pub count: u64,
}

impl Distribution {
    /// The distribution of `values` over histogram `bounds` (ascending).
    /// Sorts `values`.
    pub fn of(values: &mut [u64], bounds: &[u64]) -> Self {
        values.sort_unstable();
        let mut buckets = Vec::with_capacity(bounds.len());
        let mut below = 0;
        for &le_ms in bounds {
            below += values[below..].partition_point(|&v| v <= le_ms);
            buckets.push(Bucket {
                le_ms,
                count: below as u64,
            });
        }
        Self {
            count: values.len() as u64,
            sum_ms: values.iter().fold(0u64, |s, &v| s.saturating_add(v)),
            p50_ms: nearest_rank(values, 50),
            p90_ms: nearest_rank(values, 90),
            p99_ms: nearest_rank(values, 99),
            max_ms: values.last().copied(),
            buckets,
        }
    }
}

/// The nearest-rank `p`th percentile of sorted `values`: the value at
/// 1-based rank ⌈p × n / 100⌉ (at least 1).
pub fn nearest_rank(sorted: &[u64], p: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = usize::try_from(p.min(100)).unwrap_or(100);
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Totals over every delegation in the window (after filters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Delegations (dispatched, or known from a handoff file alone).
    pub delegations: u64,
    /// How they ended.
    pub outcomes: Outcomes,
    /// Confidence of the handoffs.
    pub confidence: ConfidenceMix,
    /// Dispatch → handoff, over delegations that ended with a handoff the
    /// ledger timed.
    pub latency: Distribution,
    /// Re-asks after an invalid handoff (or a run that ended without one).
    pub reasks: u64,
    /// Transport retries of a dispatch.
    pub dispatch_retries: u64,
    /// Delegations the ACL refused (nothing was sent; not in `delegations`).
    pub acl_denials: u64,
    /// Delegations made by a delegated agent (`--parent`; handoff in `sub/`).
    pub sub_delegations: u64,
    /// Handoffs that landed after the delegation had ended otherwise (timed
    /// out, failed, cancelled).
    pub late_handoffs: u64,
    /// Workflow runs.
    pub workflow_runs: u64,
}

/// One target agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStats {
    /// The agent id.
    pub agent: String,
    /// Delegations to it.
    pub delegations: u64,
    /// How they ended.
    pub outcomes: Outcomes,
    /// Confidence of its handoffs.
    pub confidence: ConfidenceMix,
    /// Dispatch → handoff.
    pub latency: Distribution,
    /// Times it was re-asked.
    pub reasks: u64,
    /// Transport retries of dispatches to it.
    pub dispatch_retries: u64,
    /// Delegations to it that the ACL refused.
    pub acl_denials: u64,
    /// Delegations to it that were sub-delegations.
    pub sub_delegations: u64,
    /// Its handoffs that landed after the delegation had ended.
    pub late_handoffs: u64,
}

/// One caller: what it delegated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerStats {
    /// The caller; `null` for handoffs no ledger line accounts for.
    pub caller: Option<String>,
    /// Delegations it made.
    pub delegations: u64,
    /// Of those, made as a delegated agent (sub-delegations).
    pub sub_delegations: u64,
    /// How they ended.
    pub outcomes: Outcomes,
    /// Delegations per target agent.
    pub agents: BTreeMap<String, u64>,
    /// Delegations the ACL refused it.
    pub acl_denials: u64,
    /// Refusals per target agent.
    pub denied: BTreeMap<String, u64>,
}

/// One workflow (by name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStats {
    /// The workflow's name.
    pub workflow: String,
    /// Runs started in the window.
    pub runs: u64,
    /// Of those runs, the child runs: started by a `uses` step of another
    /// run (their summary names a `parent`). Also counted in `runs`.
    #[serde(default)]
    pub child_runs: u64,
    /// Runs by status.
    pub statuses: RunStatuses,
    /// Start → finish of the runs that finished.
    pub duration: Distribution,
    /// Steps that failed, were rejected or had attempts time out, most
    /// first (then by step id).
    pub failing_steps: Vec<StepStats>,
    /// Its `repeat` steps, by step id: how often they were asked.
    #[serde(default)]
    pub repeated_steps: Vec<RepeatStats>,
    /// Its `for_each` steps, by step id: how their instances ended.
    #[serde(default)]
    pub fanned_steps: Vec<FanOutStats>,
    /// Its `uses` steps, by step id: how the sub-workflows they ran as
    /// child runs ended.
    #[serde(default)]
    pub sub_workflow_steps: Vec<SubWorkflowStats>,
}

/// How often a `repeat` step of a workflow was asked over its runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepeatStats {
    /// The step id.
    pub step: String,
    /// Runs in which it was delegated.
    pub runs: u64,
    /// Iterations over those runs (one per run when the first answer was
    /// good enough).
    pub iterations: u64,
}

/// How the instances of a `for_each` step of a workflow ended over its
/// runs (one instance per item).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FanOutStats {
    /// The step id.
    pub step: String,
    /// Runs in which it fanned out.
    pub runs: u64,
    /// Its instances over those runs (one per item).
    pub instances: u64,
    /// Instances that completed (passed the step's gate).
    pub completed: u64,
    /// Instances that failed (no answer, or one that did not pass the
    /// gate).
    pub failed: u64,
    /// Instances stopped or never sent because the step's `join` no longer
    /// needed them: not failures.
    pub cancelled: u64,
}

/// How a `uses` step of a workflow (another workflow run as a child run,
/// `<wfRunId>.<step>`) ended over its runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubWorkflowStats {
    /// The step id.
    pub step: String,
    /// Runs in which it started (neither pending nor skipped): one child
    /// run each.
    pub runs: u64,
    /// Runs in which it completed.
    pub completed: u64,
    /// Runs in which it failed or its result was rejected.
    pub failed: u64,
}

/// Workflow runs by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatuses {
    /// Still running (or its process died).
    pub running: u64,
    /// Every step completed or was skipped.
    pub completed: u64,
    /// Ended; some steps failed under `on_failure: continue`.
    pub completed_with_failures: u64,
    /// A step failed under `on_failure: stop`.
    pub failed: u64,
    /// Paused for a human's approval.
    pub awaiting_approval: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Always 0: summaries are read as `orch-workflow`'s `RunSummary`, so
    /// one with a status this version does not know is listed in
    /// `problems` instead. Kept so the schema stays the same.
    pub other: u64,
}

impl RunStatuses {
    /// `(name, count)` in schema order; names as stored in summaries.
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("running", self.running),
            ("completed", self.completed),
            ("completed-with-failures", self.completed_with_failures),
            ("failed", self.failed),
            ("awaiting-approval", self.awaiting_approval),
            ("cancelled", self.cancelled),
            ("other", self.other),
        ]
    }
}

/// How one step of a workflow fared over its runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStats {
    /// The step id.
    pub step: String,
    /// The agents that ran it, sorted.
    pub agents: Vec<String>,
    /// Runs in which the step appears.
    pub runs: u64,
    /// Runs in which it failed.
    pub failed: u64,
    /// Runs in which a human rejected its result.
    pub rejected: u64,
    /// Its attempts that timed out (of a `for_each` step: those of its
    /// instances that failed).
    pub timed_out: u64,
    /// Attempts beyond the first (of each iteration, for a `repeat` step).
    pub retries: u64,
}

/// What could not be read. Never fatal: the rest of the report stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problems {
    /// Files that could not be read or are not what they should be
    /// (corrupt, partial, foreign, symlinks, too large).
    pub unreadable_files: u64,
    /// The first 100 of them, by path.
    pub files: Vec<FileProblem>,
    /// Ledger lines that do not parse (a torn last line is normal after a
    /// crash).
    pub ledger_bad_lines: u64,
    /// The first 100 of them, by line.
    pub ledger_lines: Vec<LineProblem>,
    /// Handoffs the ledger records whose file is no longer in the store.
    pub missing_handoff_files: u64,
}

/// A file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileProblem {
    /// Path inside the store (`<runId>.json`, `sub/…`, `workflows/…`).
    pub path: String,
    /// What is wrong, in a few words.
    pub reason: String,
}

/// A ledger line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineProblem {
    /// 1-based line number in `ledger.jsonl`.
    pub line: u64,
    /// Why it does not parse.
    pub reason: String,
}

/// The JSON Schema (draft 2020-12) of [`Report`] as `orch metrics json`
/// writes it, as committed in `schema/metrics.schema.json`.
pub fn report_json_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Report>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_value_at_the_ceiling_rank() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 1), Some(7));
        assert_eq!(nearest_rank(&[7], 99), Some(7));
        // n = 4: ranks ⌈2⌉ = 2, ⌈3.6⌉ = 4, ⌈3.96⌉ = 4.
        let v = [10, 20, 30, 40];
        assert_eq!(nearest_rank(&v, 50), Some(20));
        assert_eq!(nearest_rank(&v, 90), Some(40));
        assert_eq!(nearest_rank(&v, 25), Some(10));
        assert_eq!(nearest_rank(&v, 26), Some(20));
        // 1..=100: the p-th percentile is p.
        let v: Vec<u64> = (1..=100).collect();
        for p in [1, 50, 90, 99, 100] {
            assert_eq!(nearest_rank(&v, p), Some(u64::from(p)));
        }
        // 1..=1000: rank ⌈p × 10⌉.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(nearest_rank(&v, 50), Some(500));
        assert_eq!(nearest_rank(&v, 99), Some(990));
    }

    #[test]
    fn distributions_count_cumulatively() {
        let mut v = vec![3000, 50, 100, 101, 250, 10_000_000];
        let d = Distribution::of(&mut v, &[100, 250, 1000]);
        assert_eq!(d.count, 6);
        assert_eq!(d.sum_ms, 10_003_501);
        assert_eq!(d.max_ms, Some(10_000_000));
        assert_eq!(d.p50_ms, Some(101));
        let counts: Vec<(u64, u64)> = d.buckets.iter().map(|b| (b.le_ms, b.count)).collect();
        assert_eq!(counts, [(100, 2), (250, 4), (1000, 4)]);
        let empty = Distribution::of(&mut [], LATENCY_BUCKETS_MS);
        assert_eq!(empty.count, 0);
        assert_eq!(empty.p99_ms, None);
        assert!(empty.buckets.iter().all(|b| b.count == 0));
    }
}
