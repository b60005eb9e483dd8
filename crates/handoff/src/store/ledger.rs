//! Ledger lines: one JSON object per event in `ledger.jsonl`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Confidence, RunId, Status};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LedgerEventKind {
    /// The task was handed to the transport.
    Dispatched,
    /// The transport acknowledged it.
    Acked,
    /// A dispatch attempt failed transiently and is retried.
    Retried,
    /// A valid handoff arrived.
    Handoff,
    /// An invalid handoff arrived.
    Invalid,
    /// The agent was asked again after an invalid handoff.
    Reasked,
    /// The deadline passed without a handoff.
    Timeout,
    /// The ACL refused the delegation.
    Denied,
    /// A validator agent judged the result.
    Validated,
    /// The transport failed for good.
    Failed,
    /// The caller cancelled the delegation before it ended.
    Cancelled,
    /// An event kind written by a newer orch.
    #[serde(other)]
    Other,
}

/// One ledger line. Handoff events carry agent, caller, status, confidence
/// and latency, so the ledger is the index metrics read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEvent {
    /// When (RFC 3339, UTC).
    pub ts: String,
    /// What happened.
    pub event: LedgerEventKind,
    /// The delegation's run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// Target agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Who delegated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Parent run of a sub-delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    /// Workflow run this delegation belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<RunId>,
    /// Workflow step id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Handoff status (handoff events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Handoff confidence (handoff events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Milliseconds from dispatch to this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Attempt number (retries, re-asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Free-text detail (error message, validator verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LedgerEvent {
    /// An event of `kind` stamped now, every optional field empty.
    pub fn now(kind: LedgerEventKind) -> Self {
        Self {
            ts: jiff::Timestamp::now().to_string(),
            event: kind,
            run_id: None,
            agent: None,
            caller: None,
            parent: None,
            workflow: None,
            step: None,
            status: None,
            confidence: None,
            latency_ms: None,
            attempt: None,
            detail: None,
            extra: Map::new(),
        }
    }
}

/// The result of reading the ledger.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerRead {
    /// Events in file order.
    pub events: Vec<LedgerEvent>,
    /// `(1-based line number, error)` of lines that did not parse.
    pub bad_lines: Vec<(usize, String)>,
}
