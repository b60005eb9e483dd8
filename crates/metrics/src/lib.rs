//! Metrics over everything that was delegated (DESIGN §9).
//!
//! [`scan`] reads a [`HandoffStore`](orch_handoff::HandoffStore) — the
//! ledger, the handoffs (top level and `sub/`), the workflow run summaries
//! and the step records that matter — into a [`Report`]: per agent
//! (delegations, outcome and confidence mix, dispatch → handoff latency
//! p50/p90/p99/max, timeouts, re-asks, ACL denials, sub-delegations), per
//! caller, per workflow (runs by status, durations, the steps that fail or
//! time out most, `repeat` steps' iterations, `for_each` steps' instances,
//! `uses` steps' child runs, how many runs are child runs) and totals, over
//! an optional window ([`Since`]) and `agent` / `workflow` filters. The
//! report renders as aligned text ([`render_text`]), JSON ([`render_json`],
//! schema [`SCHEMA_VERSION`], `schema/metrics.schema.json`) or the
//! Prometheus text exposition format ([`render_prometheus`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use orch_handoff::{FsStore, FsStoreConfig};
//! use orch_metrics::{Options, Since, TextOptions};
//!
//! let store = Arc::new(FsStore::open(FsStoreConfig::new("/srv/orch/handoffs"))?);
//! let now = jiff::Timestamp::now();
//! let since: Since = "7d".parse()?;
//! let options = Options {
//!     since: Some(since.resolve(now)),
//!     ..Options::new(now)
//! };
//! let report = orch_metrics::scan(store, &options).await?;
//! let text = orch_metrics::render_text(&report, &TextOptions::default());
//! # let _ = text;
//! # Ok(())
//! # }
//! ```
//!
//! Decisions a newcomer will ask about:
//!
//! - **The ledger is the index.** `ledger.jsonl` has one line per event,
//!   and `handoff` lines carry agent, caller, status, confidence and the
//!   dispatch → handoff latency, so a report reads that one file (parsed
//!   lean, borrowed and on every core: a strict scanner for lines in orch's
//!   own shape, `serde_json` for any other) plus a directory listing, and
//!   opens only the handoff files the ledger does not account for. DESIGN §11:
//!   100,000 delegations in at most 0.3 s. [`Mode::Rescan`] reads every
//!   handoff file too (in parallel, keeping a few fields of each), for when
//!   the ledger is missing or suspect; both modes apply the same rules, so
//!   they agree on a consistent store.
//! - **Nothing in the store is fatal.** A corrupt, partial, foreign or
//!   oversized file, a symlink, a torn ledger line: each is counted and
//!   listed in [`Report::problems`] and the rest of the report stands. Only
//!   a store that cannot be listed is an error.
//! - **Read-only, through `orch-handoff`.** Metrics never write to the store
//!   and go through the [`HandoffStore`](orch_handoff::HandoffStore) trait
//!   only, so they work on any store.
//! - **Workflow records through `orch-workflow`'s types.** Run summaries
//!   and step records are read as
//!   [`RunSummary`](orch_workflow::RunSummary) and
//!   [`StepRecord`](orch_workflow::StepRecord), the types the executor
//!   writes, with their status enums: one contract, so a change to the
//!   records cannot leave metrics silently counting something else. A
//!   record that does not read as those types is a problem like any other.
//! - **Percentiles are nearest-rank** ([`nearest_rank`]): always a value
//!   that was measured, exact on small samples.
//! - **"Now" is a parameter** ([`Options::now`]), so windows such as `24h`
//!   and the report itself are reproducible in tests.
#![warn(missing_docs)]

mod filter;
mod incremental;
mod index;
mod ledger;
mod par;
mod problems;
mod prom;
mod report;
mod scan;
mod since;
mod text;
mod workflows;

pub use prom::render_prometheus;
pub use report::{
    AgentStats, Bucket, CallerStats, ConfidenceMix, DURATION_BUCKETS_MS, Distribution, FanOutStats,
    FileProblem, Filters, IndexKind, IndexUse, LATENCY_BUCKETS_MS, LineProblem,
    MAX_LISTED_PROBLEMS, Mode, Outcomes, Problems, RepeatStats, Report, RunStatuses,
    SCHEMA_VERSION, Source, StepStats, SubWorkflowStats, Totals, Window, WorkflowStats,
    nearest_rank, report_json_schema,
};
pub use scan::{Options, scan};
pub use since::{Since, SinceError};
pub use text::{TextOptions, render_text};

/// Errors of a scan. Unreadable files and ledger lines are not errors (see
/// [`Report::problems`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The store could not be listed.
    #[error("reading the store: {0}")]
    Store(#[from] orch_handoff::StoreError),
    /// The scan's worker thread did not finish (the runtime shut down).
    #[error("the metrics scan was aborted: {0}")]
    Aborted(String),
}

/// The report as pretty JSON with a trailing newline (`orch metrics json`).
pub fn render_json(report: &Report) -> String {
    // Plain data with string keys: serializing cannot fail.
    let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
    s.push('\n');
    s
}
