//! Metrics over everything that was delegated (DESIGN §9).
//!
//! Not built yet; later issues fill it. This crate will read the handoff
//! store (handoffs including `sub/`, the ledger and workflow summaries) and
//! report, over a `--since` window:
//!
//! - per agent: delegations, status and confidence mix, latency p50, p90,
//!   p99 and max (dispatch → handoff), timeouts, denials and re-asks;
//! - per workflow: runs by status, durations, and the steps that fail most;
//!
//! rendered as text, as JSON with a stable, documented schema, or in the
//! Prometheus text exposition format.
//!
//! Decisions a newcomer will ask about:
//!
//! - **The ledger is the index.** `ledger.jsonl` has one line per event,
//!   and handoff events carry agent, caller, status and confidence, so a
//!   report reads one append-only file instead of opening every handoff
//!   (DESIGN §11: 100,000 delegations in at most 0.3 s). A rescan that reads
//!   every file is the fallback, for checking or rebuilding.
//! - **Read-only, through `orch-handoff`.** Metrics never write to the
//!   store and know nothing about transports, agents or workflows beyond the
//!   records `orch-handoff` defines.
#![warn(missing_docs)]
