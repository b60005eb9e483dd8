//! Run storage: the step records and the run summary of a workflow run
//! (DESIGN §4), as camelCase JSON under `workflows/<wfRunId>/` in the
//! handoff store.

use std::collections::BTreeMap;

use orch_delegate::orch_handoff::{
    Expect, Handoff, HandoffStore, MAX_ID_LEN, RunId, StoreError, WorkflowRecord, parse_handoff,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exec::ExecError;

/// The state of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Steps are running (or the process died while they were).
    Running,
    /// Every step completed or was skipped by its `when`.
    Completed,
    /// Every step ended, some failed under `on_failure: continue`.
    CompletedWithFailures,
    /// A step failed under `on_failure: stop`.
    Failed,
    /// Nothing can run until a step is approved (`approve`, then `resume`).
    AwaitingApproval,
    /// The run was cancelled (Ctrl-C); `resume` continues it.
    Cancelled,
}

/// The state of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Delegated, no final answer yet.
    Running,
    /// Passed its gate (and approval).
    Completed,
    /// Its attempts or its gate failed.
    Failed,
    /// Not run: `when` was false, or a dependency did not complete.
    Skipped,
    /// Passed its gate, waits for a human.
    AwaitingApproval,
    /// A human rejected its result.
    Rejected,
}

/// A human's decision on a step with `gate.approval`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum ApprovalDecision {
    /// Go on.
    Approve,
    /// The step fails (its `on_failure` applies).
    Reject {
        /// Why.
        reason: String,
    },
}

/// The run id of attempt `n` (1-based) of `step` in workflow run `wf`:
/// `<wf>.<step>.<n>`.
///
/// Derived, not random: a resumed run can tell whether an earlier process
/// already sent this attempt (its `dispatched` ledger line, or its handoff
/// in the store) without having recorded it first, so the step record need
/// not be written before the dispatch; and a re-send carries the same
/// `Idempotency-Key`, which a gateway deduplicates. Step ids contain no
/// `.`, so the id splits back into its parts unambiguously. Where the
/// result would pass the id length limit, the workflow part is cut and
/// followed by a hash of the whole workflow run id (FNV-1a, stable across
/// builds), so two long runs still get different ids.
pub fn attempt_run_id(wf: &RunId, step: &str, n: u32) -> RunId {
    use std::hash::Hasher as _;

    let tail = format!(".{step}.{n}");
    let full = format!("{wf}{tail}");
    let id = if full.len() <= MAX_ID_LEN {
        full
    } else {
        let mut h = fnv::FnvHasher::default();
        h.write(wf.as_str().as_bytes());
        let hash = format!("-{:016x}", h.finish());
        let keep = MAX_ID_LEN.saturating_sub(tail.len() + hash.len());
        let prefix: String = wf.as_str().chars().take(keep).collect();
        format!("{prefix}{hash}{tail}")
    };
    // Every part is in the id alphabet, so this holds; a random id is the
    // fallback that keeps a run going if it ever did not.
    RunId::new(id).unwrap_or_else(|_| RunId::generate())
}

/// One delegation of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The delegation's run id (recorded before it is dispatched).
    pub run_id: RunId,
    /// `running`, then the outcome status (`complete`, `timed-out`, …) or
    /// `error`.
    pub status: String,
    /// When it was sent.
    pub started: jiff::Timestamp,
    /// When it ended.
    pub finished: Option<jiff::Timestamp>,
    /// The step's timeout when it was sent (for re-awaiting on resume).
    pub timeout_ms: u64,
    /// What went wrong, if anything.
    pub detail: Option<String>,
}

/// Whether a step's handoff passed its gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateDecision {
    /// Passed.
    pub passed: bool,
    /// Why (what was required and what came).
    pub reason: String,
}

/// `workflows/<wfRunId>/<stepId>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step id.
    pub step: String,
    /// Its state.
    pub status: StepStatus,
    /// The agent that does it (after routing).
    pub agent: Option<String>,
    /// The run id of the current (last) delegation.
    pub delegation_run_id: Option<RunId>,
    /// Every delegation, oldest first.
    pub attempts: Vec<Attempt>,
    /// Delegations from before `resume --retry-failed` gave the step a
    /// fresh start (its retry budget counts `attempts` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_attempts: Vec<Attempt>,
    /// The task as sent.
    pub rendered_task: Option<String>,
    /// The gate's verdict on the last handoff.
    pub gate: Option<GateDecision>,
    /// A human's decision, when the gate asks for one.
    pub approval: Option<ApprovalDecision>,
    /// The last valid handoff.
    #[serde(with = "handoff_json")]
    pub handoff: Option<Handoff>,
    /// When the step started.
    pub started: Option<jiff::Timestamp>,
    /// When it ended.
    pub finished: Option<jiff::Timestamp>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
}

impl StepRecord {
    /// Whether `resume --retry-failed` starts this step again: it failed or
    /// was rejected, or was skipped because a dependency did not complete.
    pub fn retryable(&self) -> bool {
        match self.status {
            StepStatus::Failed | StepStatus::Rejected => true,
            StepStatus::Skipped => self
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("dependency `")),
            _ => false,
        }
    }

    /// Pending again, its attempts kept as `earlier_attempts` (so
    /// delegation ids keep counting up).
    pub(crate) fn restart(&mut self) {
        let mut earlier = std::mem::take(&mut self.earlier_attempts);
        earlier.append(&mut self.attempts);
        *self = Self {
            earlier_attempts: earlier,
            delegation_run_id: self.delegation_run_id.take(),
            ..Self::new(&self.step)
        };
    }

    /// Delegations made for this step, before and after any restart.
    pub(crate) fn delegations(&self) -> usize {
        self.earlier_attempts.len() + self.attempts.len()
    }

    /// A pending record.
    pub fn new(step: &str) -> Self {
        Self {
            step: step.to_owned(),
            status: StepStatus::Pending,
            agent: None,
            delegation_run_id: None,
            attempts: Vec::new(),
            earlier_attempts: Vec::new(),
            rendered_task: None,
            gate: None,
            approval: None,
            handoff: None,
            started: None,
            finished: None,
            reason: None,
        }
    }
}

/// One step in the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// Its state.
    pub status: StepStatus,
    /// The agent.
    pub agent: Option<String>,
    /// How many delegations were made.
    pub attempts: u32,
    /// From start to end.
    pub duration_ms: Option<u64>,
    /// Why it was skipped, failed or rejected.
    pub reason: Option<String>,
}

/// `workflows/<wfRunId>/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Format version (1).
    pub schema: u32,
    /// The workflow run id.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Where the workflow came from.
    pub origin: String,
    /// The workflow file's text, so resume does not depend on the file.
    pub source: String,
    /// The run's state.
    pub status: RunStatus,
    /// Who runs it.
    pub caller: String,
    /// Input values (defaults applied).
    pub inputs: BTreeMap<String, String>,
    /// Every step, by id.
    pub steps: BTreeMap<String, StepSummary>,
    /// When it started.
    pub started: jiff::Timestamp,
    /// When it ended (last time).
    pub finished: Option<jiff::Timestamp>,
    /// The rendered `output` template, once every step it reads completed.
    pub output: Option<String>,
}

impl StepSummary {
    pub(crate) fn of(r: &StepRecord) -> Self {
        let duration_ms = match (r.started, r.finished) {
            (Some(s), Some(f)) => u64::try_from(f.duration_since(s).as_millis().max(0)).ok(),
            _ => None,
        };
        Self {
            status: r.status,
            agent: r.agent.clone(),
            attempts: u32::try_from(r.delegations()).unwrap_or(u32::MAX),
            duration_ms,
            reason: r.reason.clone(),
        }
    }
}

mod handoff_json {
    use super::*;

    pub(super) fn serialize<S: Serializer>(h: &Option<Handoff>, s: S) -> Result<S::Ok, S::Error> {
        h.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Handoff>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        let Some(v) = v else { return Ok(None) };
        let bytes = serde_json::to_vec(&v).map_err(serde::de::Error::custom)?;
        parse_handoff(
            &bytes,
            &Expect {
                run_id: None,
                agent: None,
            },
        )
        .map(Some)
        .map_err(serde::de::Error::custom)
    }
}

fn corrupt(run: &RunId, what: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Corrupt {
        run_id: run.clone(),
        message: format!("{what}: {e}"),
    }
}

pub(crate) async fn put_step(
    store: &dyn HandoffStore,
    run: &RunId,
    rec: &StepRecord,
) -> Result<(), ExecError> {
    let v = serde_json::to_value(rec).map_err(|e| corrupt(run, &rec.step, e))?;
    store
        .put_workflow_record(run, &WorkflowRecord::Step(rec.step.clone()), &v)
        .await?;
    Ok(())
}

pub(crate) async fn put_summary(store: &dyn HandoffStore, s: &RunSummary) -> Result<(), ExecError> {
    let v = serde_json::to_value(s).map_err(|e| corrupt(&s.run_id, "summary", e))?;
    store
        .put_workflow_record(&s.run_id, &WorkflowRecord::Summary, &v)
        .await?;
    Ok(())
}

/// Reads the record of `step` in run `run` (`None` if it has none).
pub async fn read_step(
    store: &dyn HandoffStore,
    run: &RunId,
    step: &str,
) -> Result<Option<StepRecord>, ExecError> {
    match store
        .get_workflow_record(run, &WorkflowRecord::Step(step.to_owned()))
        .await?
    {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| corrupt(run, &format!("step record {step}"), e)),
    }
}

/// Reads the summary of run `run`.
pub async fn read_summary(store: &dyn HandoffStore, run: &RunId) -> Result<RunSummary, ExecError> {
    match store
        .get_workflow_record(run, &WorkflowRecord::Summary)
        .await?
    {
        None => Err(ExecError::NotFound {
            run_id: run.clone(),
        }),
        Some(v) => serde_json::from_value(v).map_err(|e| corrupt(run, "summary", e)),
    }
}

/// Records a human's decision on a step awaiting approval; the run goes on
/// with `resume`. Refused when the step is not awaiting approval.
pub async fn approve(
    store: &dyn HandoffStore,
    run: &RunId,
    step: &str,
    decision: ApprovalDecision,
) -> Result<(), ExecError> {
    let summary = read_summary(store, run).await?;
    let Some(st) = summary.steps.get(step) else {
        return Err(ExecError::Usage(format!("run {run} has no step `{step}`")));
    };
    let rec = read_step(store, run, step).await?;
    let mut rec = match rec {
        Some(rec) if rec.status == StepStatus::AwaitingApproval => rec,
        other => {
            let status = other.map_or(st.status, |r| r.status);
            return Err(ExecError::Usage(format!(
                "step `{step}` of run {run} is not awaiting approval (it is {})",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
    };
    rec.approval = Some(decision);
    put_step(store, run, &rec).await
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        ExecError::Store(e)
    }
}
