//! What a delegation produced: [`Outcome`], [`End`], [`Validation`],
//! [`Timings`] and the [`OutcomeStatus`] the CLI turns into an exit code.

pub(crate) use orch_support::text::shorten;
use std::time::Duration;

use orch_handoff::{Handoff, HandoffError, RunId, Scope, Status};

use super::Unacknowledged;
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

/// The result of one delegation (and, with `validate`, of its validation).
///
/// Serializes (camelCase) for `orch delegate --json` as `{ runId, agent,
/// caller, parent, status, end, handoff, validation, dispatches, reasks,
/// timings: { started, ackedMs, handoffMs, totalMs }, handoffPath,
/// rejected? }`, where `status` is [`Outcome::status`], `end` is `{ "kind":
/// "handoff" | "timed-out" | "no-handoff" | "invalid", "detail"?, "error"?
/// }` (a `timed-out` end has a `detail` when the transport never
/// acknowledged the task or a partial file was seen:
/// [`Outcome::timeout_reason`]), and `rejected`
/// (present when not empty) lists where invalid answers were moved.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The delegation's run id.
    pub run_id: RunId,
    /// The agent the task went to.
    pub agent: String,
    /// Who delegated.
    pub caller: String,
    /// The parent run of a sub-delegation.
    pub parent: Option<RunId>,
    /// Where the handoff lives ([`Scope::Sub`] exactly when `parent` is set).
    pub scope: Scope,
    /// Where the agent was told to write its handoff (absolute path for the
    /// file store). A file is there only when `end` is [`End::Handoff`]
    /// (or a late answer came).
    pub handoff_path: String,
    /// Where each invalid answer was moved (`<runId>.json.rejected-N`), in
    /// order: the last one too, so an invalid file never stays at the
    /// final name.
    pub rejected: Vec<String>,
    /// Set when the deadline passed and the transport never acknowledged
    /// the (last) ask: what its tries said (a hanging or unreachable
    /// gateway).
    pub unacknowledged: Option<Unacknowledged>,
    /// Set when the deadline passed while the handoff file was still cut
    /// off (being written, or abandoned half-written): what reading it
    /// said. The delegation timed out; the file is not an answer.
    pub partial: Option<HandoffError>,
    /// How the wait ended.
    pub end: End,
    /// The valid handoff, when `end` is [`End::Handoff`].
    pub handoff: Option<Handoff>,
    /// The validator's verdict, when validation was asked for and the
    /// handoff was `complete` or `partial`.
    pub validation: Option<Validation>,
    /// How many times the transport was called (every retry and re-ask
    /// counts).
    pub dispatches: u32,
    /// How many re-asks were sent.
    pub reasks: u32,
    /// When things happened.
    pub timings: Timings,
}

/// How a delegation's wait ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// A valid handoff from the agent arrived ([`Outcome::handoff`]).
    Handoff,
    /// The deadline passed without a valid handoff.
    TimedOut,
    /// The transport reported that the agent's run ended and no handoff
    /// came (after the re-asks, if any).
    NoHandoff {
        /// What the transport knows about the end (exit status, stderr
        /// tail, OpenClaw's completion status).
        detail: String,
    },
    /// The agent's last handoff was invalid (after the re-asks, if any).
    Invalid {
        /// What was wrong with it.
        error: HandoffError,
    },
}

/// A validator agent's verdict on a delegation's handoff.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// The validator agent.
    pub validator: String,
    /// `true` iff the validator's handoff has status `complete`.
    pub approved: bool,
    /// The validation delegation itself (its own run id, handoff, timings).
    pub outcome: Box<Outcome>,
}

impl Validation {
    /// One line for humans and the ledger: `approved`, `rejected by
    /// <validator>: <notes>`, or `no verdict from <validator>: <why>`.
    pub fn summary(&self) -> String {
        let v = &self.validator;
        if self.approved {
            return "approved".to_owned();
        }
        match (&self.outcome.end, &self.outcome.handoff) {
            (End::Handoff, Some(h)) => {
                let why = if h.notes.trim().is_empty() {
                    h.result.trim()
                } else {
                    h.notes.trim()
                };
                format!("rejected by {v}: {}", shorten(why, 500))
            }
            (End::TimedOut, _) => format!("no verdict from {v}: timed out"),
            (End::NoHandoff { detail }, _) => format!(
                "no verdict from {v}: its run ended without a handoff ({})",
                shorten(detail, 300)
            ),
            (End::Invalid { error }, _) => {
                format!("no verdict from {v}: its handoff is invalid ({error})")
            }
            (End::Handoff, None) => format!("no verdict from {v}"),
        }
    }
}

/// When a delegation's steps happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    /// When the delegation started (wall clock).
    pub started: jiff::Timestamp,
    /// From the first dispatch to the first acknowledgement, if one arrived
    /// before the delegation ended.
    pub acked_after: Option<Duration>,
    /// From the first dispatch to the valid handoff.
    pub handoff_after: Option<Duration>,
    /// From the start to the end (validation included).
    pub total: Duration,
}

/// The overall status of an [`Outcome`]; the CLI's exit codes are 0 / 10 /
/// 11 / 12 / 13 in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// The handoff says `complete` (and the validator, if any, approved).
    Complete,
    /// The handoff says `partial` (and the validator, if any, approved).
    Partial,
    /// The handoff says `blocked`.
    Blocked,
    /// The handoff says `failed`, or the validator rejected it or gave no
    /// verdict, or no valid handoff came.
    Failed,
    /// The deadline passed without a handoff.
    TimedOut,
}

impl OutcomeStatus {
    /// `complete`, `partial`, `blocked`, `failed` or `timed-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
        }
    }
}

impl std::fmt::Display for OutcomeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    /// The handoff's status; [`OutcomeStatus::Failed`] when the validator
    /// rejected it (or gave no verdict) and when the run ended without a
    /// valid handoff; [`OutcomeStatus::TimedOut`] when the deadline passed.
    pub fn status(&self) -> OutcomeStatus {
        match (&self.end, &self.handoff) {
            (End::Handoff, Some(h)) => {
                if self.validation.as_ref().is_some_and(|v| !v.approved) {
                    return OutcomeStatus::Failed;
                }
                match h.status {
                    Status::Complete => OutcomeStatus::Complete,
                    Status::Partial => OutcomeStatus::Partial,
                    Status::Blocked => OutcomeStatus::Blocked,
                    Status::Failed => OutcomeStatus::Failed,
                }
            }
            (End::TimedOut, _) => OutcomeStatus::TimedOut,
            (End::Handoff, None) | (End::NoHandoff { .. } | End::Invalid { .. }, _) => {
                OutcomeStatus::Failed
            }
        }
    }
}

impl Outcome {
    /// Why a delegation that timed out got no answer, when more is known
    /// than "nothing came": its transport never acknowledged the task
    /// ([`Outcome::unacknowledged`]), or a partial file was seen at the
    /// deadline ([`Outcome::partial`]). `None` otherwise.
    pub fn timeout_reason(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(u) = &self.unacknowledged {
            parts.push(u.to_string());
        }
        if let Some(p) = &self.partial {
            parts.push(format!("a partial file was seen: {p}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Outcome", 13)?;
        m.serialize_field("runId", &self.run_id)?;
        m.serialize_field("agent", &self.agent)?;
        m.serialize_field("caller", &self.caller)?;
        m.serialize_field("parent", &self.parent)?;
        m.serialize_field("status", &self.status())?;
        match (&self.end, self.timeout_reason()) {
            (End::TimedOut, Some(reason)) => m.serialize_field(
                "end",
                &serde_json::json!({ "kind": "timed-out", "detail": reason }),
            )?,
            _ => m.serialize_field("end", &self.end)?,
        }
        m.serialize_field("handoff", &self.handoff)?;
        m.serialize_field("validation", &self.validation)?;
        m.serialize_field("dispatches", &self.dispatches)?;
        m.serialize_field("reasks", &self.reasks)?;
        m.serialize_field("timings", &self.timings)?;
        m.serialize_field("handoffPath", &self.handoff_path)?;
        if self.rejected.is_empty() {
            m.skip_field("rejected")?;
        } else {
            m.serialize_field("rejected", &self.rejected)?;
        }
        m.end()
    }
}

impl Serialize for End {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("End", 2)?;
        match self {
            Self::Handoff => m.serialize_field("kind", "handoff")?,
            Self::TimedOut => m.serialize_field("kind", "timed-out")?,
            Self::NoHandoff { detail } => {
                m.serialize_field("kind", "no-handoff")?;
                m.serialize_field("detail", detail)?;
            }
            Self::Invalid { error } => {
                m.serialize_field("kind", "invalid")?;
                m.serialize_field("error", &error.to_string())?;
            }
        }
        m.end()
    }
}

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Timings", 4)?;
        m.serialize_field("started", &self.started)?;
        m.serialize_field("ackedMs", &self.acked_after.map(millis))?;
        m.serialize_field("handoffMs", &self.handoff_after.map(millis))?;
        m.serialize_field("totalMs", &millis(self.total))?;
        m.end()
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
