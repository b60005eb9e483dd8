//! A `uses` step: the child run it starts (or, when the run already
//! exists, resumes: after a crash, a pause for approval, or
//! `--retry-failed`) through the same executor, and the step's outcome
//! from the child's. The child's steps report to the live view as
//! `step/child-step`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::{HandoffStore, Status};
use tokio_util::sync::CancellationToken;

use super::job::StepDone;
use super::{Executor, Progress, ProgressEvent, ResumeOptions, RunOptions};
use crate::error::ExecError;
use crate::model::{Gate, Uses};
use crate::run::{
    GateDecision, ParentLink, RunStatus, RunSummary, StepRecord, StepStatus, read_summary,
};
use crate::template::StepOutput;
use crate::validate::ResolvedInputs;

/// Everything a `uses` step's task needs.
pub(super) struct Child {
    /// The executor the child runs on: the parent's, its progress events
    /// named `step/…`.
    pub(super) exec: Executor,
    pub(super) uses: Arc<Uses>,
    pub(super) rec: StepRecord,
    pub(super) parent: ParentLink,
    pub(super) caller: String,
    /// The child's inputs: `with` rendered in the parent run.
    pub(super) with: BTreeMap<String, String>,
    pub(super) gate: Gate,
    /// The step's own `timeout`, if it gives one: the child run is
    /// cancelled when it passes.
    pub(super) timeout: Option<Duration>,
    /// `resume --retry-failed`: the child's failed steps start again too.
    pub(super) retry_failed: bool,
    pub(super) cancel: CancellationToken,
}

type ChildRun<'a> = Pin<Box<dyn Future<Output = Result<RunSummary, ExecError>> + Send + 'a>>;

impl Child {
    /// Runs (or takes up) the child run to its end, a pause for approval,
    /// or cancellation, and judges the step by it.
    pub(super) async fn run(self) -> StepDone {
        let Some(child) = self.rec.child.clone() else {
            return self.fail("no child run was recorded for this step".to_owned());
        };
        let exists = match read_summary(&*self.exec.store, &child.run_id).await {
            Ok(_) => true,
            Err(ExecError::NotFound { .. }) => false,
            Err(e) => return self.fail(format!("child run {}: {e}", child.run_id)),
        };
        let token = self.cancel.child_token();
        let run: ChildRun<'_> = if exists {
            let opts = ResumeOptions {
                retry_failed: self.retry_failed,
            };
            let (exec, id, token) = (&self.exec, &child.run_id, &token);
            Box::pin(async move { exec.resume_with(id, &opts, token).await })
        } else {
            let inputs = ResolvedInputs::from_map(self.uses.inputs(self.with.clone()));
            let opts = RunOptions {
                caller: self.caller.clone(),
                inputs,
                run_id: Some(child.run_id.clone()),
            };
            let (exec, uses, parent, token) = (&self.exec, &self.uses, self.parent.clone(), &token);
            Box::pin(async move {
                exec.start(&uses.workflow, &uses.source, opts, Some(parent), token)
                    .await
            })
        };
        let deadline = self.timeout.map(|t| {
            let started = self.rec.started.unwrap_or_else(jiff::Timestamp::now);
            let spent = jiff::Timestamp::now().duration_since(started);
            let spent = Duration::try_from(spent).unwrap_or_default();
            tokio::time::Instant::now() + t.saturating_sub(spent)
        });
        let mut run = run;
        let ended = match deadline {
            None => Some((&mut run).await),
            Some(at) => tokio::select! {
                r = &mut run => Some(r),
                () = tokio::time::sleep_until(at) => None,
            },
        };
        let ended = match ended {
            Some(r) => r,
            None => {
                // The child stores itself as cancelled before it returns.
                token.cancel();
                let _ = (&mut run).await;
                drop(run);
                let t = orch_support::duration::format(self.timeout.unwrap_or_default());
                return self.fail(format!(
                    "timed out after {t}: child run {} was cancelled",
                    child.run_id
                ));
            }
        };
        drop(run);
        drop(token);
        match ended {
            Ok(summary) => self.judge(&summary),
            Err(e) => self.fail(format!("child run {}: {e}", child.run_id)),
        }
    }

    fn fail(mut self, reason: String) -> StepDone {
        self.rec.status = StepStatus::Failed;
        self.rec.reason = Some(reason);
        self.rec.finished = Some(jiff::Timestamp::now());
        StepDone {
            rec: self.rec,
            cancelled: false,
        }
    }

    /// The step's outcome from the child run's `summary`.
    fn judge(mut self, summary: &RunSummary) -> StepDone {
        if let Some(c) = self.rec.child.as_mut() {
            c.status = Some(summary.status);
        }
        let id = &summary.run_id;
        match summary.status {
            RunStatus::Completed | RunStatus::CompletedWithFailures => {
                let Some(out) = output_of(summary) else {
                    let why = summary
                        .output_note
                        .clone()
                        .unwrap_or_else(|| "it has none".to_owned());
                    return self.fail(format!("child run {id} ended without an output: {why}"));
                };
                let (passed, reason) =
                    super::job::gate_verdict(&self.gate, out.status, out.confidence);
                self.rec.gate = Some(GateDecision {
                    passed,
                    reason: reason.clone(),
                });
                self.rec.fanned = Some(out);
                if passed && self.gate.approval {
                    self.rec.status = StepStatus::AwaitingApproval;
                } else if passed {
                    self.rec.status = StepStatus::Completed;
                    self.rec.finished = Some(jiff::Timestamp::now());
                } else {
                    return self.fail(format!("gate: {reason}"));
                }
            }
            // A step of the child waits for a human: so does this one
            // (`approve RUN step/child-step`, then `resume RUN`).
            RunStatus::AwaitingApproval => self.rec.status = StepStatus::AwaitingApproval,
            RunStatus::Cancelled if self.cancel.is_cancelled() => {
                return StepDone {
                    rec: self.rec,
                    cancelled: true,
                };
            }
            RunStatus::Cancelled => {
                let by = summary
                    .cancelled
                    .as_ref()
                    .map(|c| format!(" by {}", c.by))
                    .unwrap_or_default();
                return self.fail(format!("child run {id} was cancelled{by}"));
            }
            RunStatus::Failed | RunStatus::Running => {
                let why = summary
                    .steps
                    .iter()
                    .find(|(_, s)| matches!(s.status, StepStatus::Failed | StepStatus::Rejected))
                    .map(|(step, s)| {
                        format!(
                            ": step `{step}` {}",
                            s.reason.as_deref().unwrap_or("failed")
                        )
                    })
                    .unwrap_or_default();
                return self.fail(format!("child run {id} failed{why}"));
            }
        }
        StepDone {
            rec: self.rec,
            cancelled: false,
        }
    }
}

/// What the steps that read a `uses` step see, from its child run's
/// summary: the child's `output` as the result, `complete` (or `partial`
/// for `completed-with-failures`), the child's confidence. `None`: the
/// child has not completed, or has no output.
pub(super) fn output_of(summary: &RunSummary) -> Option<StepOutput> {
    let status = match summary.status {
        RunStatus::Completed => Status::Complete,
        RunStatus::CompletedWithFailures => Status::Partial,
        _ => return None,
    };
    Some(StepOutput {
        status,
        confidence: summary.confidence,
        result: summary.output.clone()?,
        notes: format!(
            "sub-workflow `{}`, run {} ({})",
            summary.workflow,
            summary.run_id,
            status.as_str()
        ),
        artifacts: Vec::new(),
        instances: Vec::new(),
    })
}

/// On resume: the output of a `uses` step that completed (or waits for
/// its own approval), read back from its child run.
pub(super) async fn restore(
    store: &dyn HandoffStore,
    rec: &StepRecord,
) -> Result<Option<StepOutput>, ExecError> {
    let Some(child) = &rec.child else {
        return Ok(None);
    };
    let summary = read_summary(store, &child.run_id).await?;
    match output_of(&summary) {
        Some(out) => Ok(Some(out)),
        None => Err(ExecError::Corrupt {
            run_id: child.run_id.clone(),
            message: format!(
                "step `{}` completed on this child run's output, which the run no longer has",
                rec.step
            ),
        }),
    }
}

/// A child run's progress, passed on with its steps named `step/…`.
pub(super) struct Prefixed {
    pub(super) inner: Arc<dyn Progress>,
    pub(super) prefix: String,
}

impl Progress for Prefixed {
    fn event(&self, e: &ProgressEvent) {
        self.inner.event(&e.under(&self.prefix));
    }
}
