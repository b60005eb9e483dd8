//! One step: whether a ready step may run (`blocked_by`, `check_when`),
//! the task it sends and to which agent (`agent_and_task`, within the
//! agent's `Budget`), and the `Job`: the task that sends the step's
//! attempts, re-awaits on resume what an earlier process sent, retries, and
//! judges the gate. A job works on its own copy of the step record and
//! hands it back in a `StepDone`; only the loop keeps the run's state.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::{
    Confidence, Handoff, HandoffKey, HandoffStore, LedgerEventKind, RunId, Status, WaitOutcome,
};
use orch_delegate::{DelegateError, Delegator, OutcomeStatus, Request};
use tokio_util::sync::CancellationToken;

use super::{ContextSource, Dispatched, Executor, Progress, ProgressEvent};
use crate::budget::{Budget, REASK_HEADROOM, budgets};
use crate::error::RenderError;
use crate::model::{ContextSpec, Gate, Step, Target, Workflow};
use crate::run::{
    Attempt, AttemptStatus, GateDecision, StepRecord, StepStatus, attempt_run_id, put_step,
};
use crate::template::Context;

/// What the steps of one run share, lent by the loop to each step it
/// prepares or starts.
pub(super) struct Scope<'a> {
    pub(super) exec: &'a Executor,
    pub(super) wf: &'a Workflow,
    pub(super) wf_run: &'a RunId,
    pub(super) caller: &'a str,
    /// On resume: what earlier processes dispatched.
    pub(super) dispatched: Option<&'a Dispatched>,
    /// The run's token: cancels every delegation.
    pub(super) cancel: &'a CancellationToken,
}

/// A ready step that ends before anything is sent: skipped or failed, and
/// why.
#[derive(Debug)]
pub(super) struct EndsEarly {
    pub(super) status: StepStatus,
    pub(super) reason: String,
}

impl EndsEarly {
    pub(super) fn skipped(reason: String) -> Self {
        Self {
            status: StepStatus::Skipped,
            reason,
        }
    }

    pub(super) fn failed(reason: String) -> Self {
        Self {
            status: StepStatus::Failed,
            reason,
        }
    }
}

/// Why a step whose dependencies all ended is skipped: one of them did not
/// complete, so its task and `when` would read a missing step. `deps` are
/// the dependencies with their status, in plan order; the first that did
/// not complete is named.
pub(super) fn blocked_by(deps: &[(&str, StepStatus)]) -> Option<EndsEarly> {
    deps.iter().find_map(|&(d, st)| {
        let word = match st {
            StepStatus::Skipped => "was skipped",
            StepStatus::Failed => "failed",
            StepStatus::Rejected => "was rejected",
            _ => return None,
        };
        Some(EndsEarly::skipped(format!("dependency `{d}` {word}")))
    })
}

/// What the step's `when` says in `ctx`: false skips the step, a condition
/// that cannot be evaluated fails it.
pub(super) fn check_when(step: &Step, ctx: &Context) -> Result<(), EndsEarly> {
    let Some(cond) = &step.when else {
        return Ok(());
    };
    match cond.eval(ctx) {
        Ok(true) => Ok(()),
        Ok(false) => Err(EndsEarly::skipped(format!("when `{cond}` is false"))),
        Err(e) => Err(EndsEarly::failed(format!("when `{cond}`: {e}"))),
    }
}

/// The agent and the task of a step about to start.
///
/// Rendering stops the moment the task passes what the agent's transport
/// can take: a too large task is never built, sent or stored. A `route:
/// auto` step's task is rendered for the roomiest agent, routed, then
/// measured against the chosen agent's budget.
pub(super) fn agent_and_task(
    scope: &Scope<'_>,
    step: &Step,
    ctx: &Context,
) -> Result<(String, String), EndsEarly> {
    let budgets = budgets(&scope.exec.delegator, scope.wf_run, step, scope.caller);
    let limit = budgets
        .first()
        .map_or(orch_delegate::DEFAULT_MAX_TASK_BYTES, Budget::task);
    let task = match step.task.render_within(ctx, limit) {
        Ok(t) => t,
        Err(RenderError::TooLarge(e)) => {
            let reason = match budgets.first() {
                Some(b) => b.refusal("task", &e),
                None => format!("task too large: {e}"),
            };
            return Err(EndsEarly::failed(reason));
        }
        Err(e) => return Err(EndsEarly::failed(format!("task: {e}"))),
    };
    let agent = match &step.target {
        Target::Agent(a) => Some(a.clone()),
        Target::Route => scope
            .exec
            .router
            .as_ref()
            .and_then(|r| r.route(&task, scope.caller)),
        // Started by the loop as a child run, never as a delegation.
        Target::Workflow(_) => None,
    };
    let Some(agent) = agent else {
        return Err(EndsEarly::failed("no agent fits the task".to_owned()));
    };
    // A routed task was rendered for the roomiest agent.
    if let Some(b) = budgets.iter().find(|b| b.agent == agent)
        && task.len() as u64 > b.task()
    {
        let e = step.task.too_large(ctx, task.len() as u64, b.task());
        return Err(EndsEarly::failed(b.refusal("task", &e)));
    }
    Ok((agent, task))
}

/// How a step task ended: its record, and whether the run was cancelled
/// under it (then the record stays `running` for resume).
#[derive(Debug)]
pub(super) struct StepDone {
    pub(super) rec: StepRecord,
    pub(super) cancelled: bool,
}

/// Everything one step task needs.
pub(super) struct Job {
    delegator: Arc<Delegator>,
    store: Arc<dyn HandoffStore>,
    progress: Option<Arc<dyn Progress>>,
    wf_run: RunId,
    rec: StepRecord,
    caller: String,
    timeout: Duration,
    retries: u32,
    retry_base: Duration,
    gate: Gate,
    context: Option<(Arc<dyn ContextSource>, ContextSpec)>,
    reawait: bool,
    dispatched: Option<Dispatched>,
    /// Whether a delegation of the step's agent outlives the process that
    /// sent it ([`orch_delegate::Transport::outlives_sender`]).
    outlives: bool,
    /// The name of the agent's transport, for messages.
    transport: String,
    /// The largest task message the agent's transport delivers, less
    /// [`REASK_HEADROOM`].
    max_message: Option<u64>,
    cancel: CancellationToken,
    /// A `repeat` step's loop; `None` for every other step.
    repeat: Option<Repeating>,
    /// The workflow step (of an instance: its `for_each` step).
    step_id: String,
    /// How events name it: the step, or an instance as `step[N]`.
    label: String,
}

/// What a `repeat` step's job needs to ask again.
struct Repeating {
    spec: crate::model::Repeat,
    task: crate::template::Template,
    /// Its dependencies' outputs and the inputs; `previous` set per
    /// iteration.
    ctx: Context,
    /// The largest task its agent takes.
    limit: u64,
    /// The iteration the next delegation belongs to (from 1).
    iteration: u32,
}

impl Repeating {
    /// Why answer `h` of step `step` is not good enough (`until` is false
    /// of it, or cannot be judged), or `None` if it is.
    fn not_good_enough(&self, step: &str, h: &Handoff) -> Option<String> {
        let mut ctx = Context {
            previous: None,
            ..self.ctx.clone()
        };
        ctx.steps.insert(
            step.to_owned(),
            crate::template::StepOutput::from_handoff(h),
        );
        match self.spec.until.eval(&ctx) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "`{}` is false: status {}, confidence {}",
                self.spec.until_text,
                h.status.as_str(),
                h.confidence.map_or("unstated", Confidence::as_str)
            )),
            Err(e) => Some(format!("`{}`: {e}", self.spec.until_text)),
        }
    }
}

impl Job {
    /// The task of `step`, whose record `rec` has its agent and rendered
    /// task. `reawait`: on resume, the last attempt may still answer and is
    /// waited for before anything is sent again.
    pub(super) fn new(scope: &Scope<'_>, step: &Step, rec: &StepRecord, reawait: bool) -> Self {
        let exec = scope.exec;
        let context = match (&step.context, &exec.context) {
            (Some(spec), Some(src)) => Some((Arc::clone(src), spec.clone())),
            _ => None,
        };
        let transport = rec
            .agent
            .as_deref()
            .and_then(|a| exec.delegator.transport_of(a));
        let (outlives, transport_name, max_message) = match transport {
            Some(t) => (
                t.outlives_sender(),
                t.name().to_owned(),
                Some(t.max_task_bytes().saturating_sub(REASK_HEADROOM)),
            ),
            // An agent the Delegator does not know: waiting is the safe
            // choice, and the delegation itself will say what is wrong.
            None => (true, "unknown".to_owned(), None),
        };
        let mut gate = step.gate.clone().unwrap_or_default();
        let label = match &rec.instance {
            // An instance is judged by the step's gate; a human approves
            // the step once, when its instances have joined.
            Some(inst) => {
                gate.approval = false;
                crate::run::instance_label(&inst.step, inst.index as usize)
            }
            None => rec.step.clone(),
        };
        Self {
            delegator: Arc::clone(&exec.delegator),
            store: Arc::clone(&exec.store),
            progress: exec.progress.clone(),
            wf_run: scope.wf_run.clone(),
            rec: rec.clone(),
            caller: scope.caller.to_owned(),
            timeout: scope.wf.timeout_of(step),
            retries: scope.wf.retries_of(step),
            retry_base: exec.retry_base,
            gate,
            context,
            reawait,
            dispatched: scope.dispatched.cloned(),
            outlives,
            transport: transport_name,
            max_message,
            cancel: scope.cancel.clone(),
            repeat: None,
            step_id: step.id.clone(),
            label,
        }
    }

    /// The step's record as the job holds it.
    pub(super) fn record(&self) -> &StepRecord {
        &self.rec
    }

    /// Cancelled by `token` instead of the run's (an instance: by its
    /// `for_each` step's, a child of the run's).
    pub(super) fn cancel_with(&mut self, token: CancellationToken) {
        self.cancel = token;
    }

    /// A `repeat` step: its later iterations are rendered from `step`'s
    /// task in `ctx` (its dependencies' outputs), with the last iteration
    /// as `previous`. On resume the iteration goes on from the record.
    pub(super) fn render_with(&mut self, step: &Step, ctx: Context) {
        let Some(spec) = step.repeat.clone() else {
            return;
        };
        let limit = match &self.rec.agent {
            Some(a) => budgets(&self.delegator, &self.wf_run, step, &self.caller)
                .iter()
                .find(|b| &b.agent == a)
                .map_or(orch_delegate::DEFAULT_MAX_TASK_BYTES, Budget::task),
            None => orch_delegate::DEFAULT_MAX_TASK_BYTES,
        };
        self.repeat = Some(Repeating {
            spec,
            task: step.task.clone(),
            ctx,
            limit,
            iteration: self.rec.iterations().unwrap_or(1),
        });
    }
}

/// What an earlier process did with an attempt (see `Job::sent_before`).
enum Earlier {
    /// Nothing: send it.
    NotSent,
    /// Sent, but no handoff came in time: marked `lost`.
    Lost,
    /// Sent, and it ended so.
    Ended(Tried),
}

/// How the last attempt ended.
enum Tried {
    /// A handoff the gate may judge.
    Answer(Box<Handoff>),
    /// No usable answer; `retry` if another attempt may help.
    Failed {
        detail: String,
        retry: bool,
    },
    Cancelled,
}

impl Job {
    fn emit(&self, e: ProgressEvent) {
        if let Some(p) = &self.progress {
            p.event(&e);
        }
    }

    async fn save(&self) {
        if let Err(e) = put_step(&*self.store, &self.wf_run, &self.rec).await {
            tracing::warn!(step = %self.rec.step, error = %e, "could not write the step record");
        }
    }

    fn end_attempt(&mut self, status: AttemptStatus, detail: Option<String>) {
        if let Some(a) = self.rec.attempts.last_mut() {
            a.status = status;
            a.finished = Some(jiff::Timestamp::now());
            a.detail = detail;
        }
    }

    /// Sends the step's attempts (after re-awaiting the last one, on
    /// resume) until one passes the gate, the retries run out or the run is
    /// cancelled.
    pub(super) async fn run(mut self) -> StepDone {
        let mut last = None;
        if self.reawait {
            last = self.reawait_last().await;
        }
        let tries_made = |rec: &StepRecord, iteration: Option<u32>| {
            rec.attempts
                .iter()
                .filter(|a| a.status != AttemptStatus::Lost && a.iteration == iteration)
                .count() as u64
        };
        let mut context: Option<Option<String>> = None;
        loop {
            let tried = match last.take() {
                Some(t) => t,
                None => {
                    let n = tries_made(&self.rec, self.iteration());
                    if n > 0 {
                        let delay = self.retry_base.saturating_mul(1u32 << (n - 1).min(16));
                        self.emit(ProgressEvent::Retrying {
                            step: self.label.clone(),
                            attempt: u32::try_from(n + 1).unwrap_or(u32::MAX),
                            delay,
                        });
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = self.cancel.cancelled() => return self.done(true),
                        }
                    }
                    if context.is_none() {
                        context = Some(match &self.context {
                            None => None,
                            Some((src, spec)) => {
                                match src.fetch(&spec.channel, spec.messages).await {
                                    Ok(s) => Some(s),
                                    Err(e) => {
                                        self.rec.status = StepStatus::Failed;
                                        self.rec.reason =
                                            Some(format!("context from `{}`: {e}", spec.channel));
                                        self.rec.finished = Some(jiff::Timestamp::now());
                                        return self.done(false);
                                    }
                                }
                            }
                        });
                    }
                    if let Err(detail) = self.render_iteration().await {
                        self.rec.status = StepStatus::Failed;
                        self.rec.reason = Some(detail);
                        self.rec.finished = Some(jiff::Timestamp::now());
                        return self.done(false);
                    }
                    self.attempt(context.clone().flatten()).await
                }
            };
            match tried {
                Tried::Cancelled => return self.done(true),
                Tried::Answer(h) => {
                    if self.ask_again(&h) {
                        continue;
                    }
                    self.judge(*h);
                    return self.done(false);
                }
                Tried::Failed { detail, retry } => {
                    if retry && tries_made(&self.rec, self.iteration()) <= u64::from(self.retries) {
                        continue;
                    }
                    self.rec.status = StepStatus::Failed;
                    self.rec.reason = Some(detail);
                    self.rec.finished = Some(jiff::Timestamp::now());
                    return self.done(false);
                }
            }
        }
    }

    /// The iteration the next delegation belongs to, for a `repeat` step.
    fn iteration(&self) -> Option<u32> {
        self.repeat.as_ref().map(|r| r.iteration)
    }

    /// A `repeat` step's answer `h` (of its current iteration): if `until`
    /// is false of it and iterations are left, the next iteration is set
    /// up (`previous` is `h`, the task rendered again when it is sent) and
    /// `true` is returned. At `max`, the last answer stands and goes to the
    /// gate; its attempt says that `until` never held.
    fn ask_again(&mut self, h: &Handoff) -> bool {
        let step = self.step_id.clone();
        let Some(r) = &mut self.repeat else {
            return false;
        };
        let Some(reason) = r.not_good_enough(&step, h) else {
            return false;
        };
        if r.iteration >= r.spec.max {
            let note = format!(
                "until {reason}, after {} iterations (the most `repeat.max` allows)",
                r.spec.max
            );
            if let Some(a) = self.rec.attempts.last_mut() {
                a.detail = Some(note);
            }
            return false;
        }
        if let Some(a) = self.rec.attempts.last_mut() {
            a.detail = Some(format!("until {reason}: asked again"));
        }
        r.iteration += 1;
        r.ctx.previous = Some(crate::template::Previous {
            output: crate::template::StepOutput::from_handoff(h),
            reason: format!("until {reason}"),
        });
        let (iteration, max) = (r.iteration, r.spec.max);
        self.rec.rendered_task = None;
        self.emit(ProgressEvent::Repeating {
            step: self.label.clone(),
            iteration,
            max,
            reason,
        });
        true
    }

    /// Before a `repeat` step's iteration past the first is sent: its task,
    /// rendered with the iteration before it as `previous`. On resume that
    /// answer is read back from the store (the last attempt of the
    /// iteration before that answered). `Err`: why nothing can be sent.
    async fn render_iteration(&mut self) -> Result<(), String> {
        let Some(r) = &self.repeat else {
            return Ok(());
        };
        if r.iteration <= 1 || (self.rec.rendered_task.is_some() && self.rec.has_whole_task()) {
            return Ok(());
        }
        if r.ctx.previous.is_none() {
            let before = r.iteration - 1;
            let answered = self.rec.attempts.iter().rev().find(|a| {
                a.iteration == Some(before)
                    && matches!(
                        a.status,
                        AttemptStatus::Complete | AttemptStatus::Partial | AttemptStatus::Blocked
                    )
            });
            let Some(a) = answered else {
                return Err(format!(
                    "iteration {before}'s answer is not in the record: iteration {} cannot be rendered",
                    r.iteration
                ));
            };
            let key = HandoffKey::top(a.run_id.clone());
            let h = match self.store.get(&key).await {
                Ok(Some(h)) => h,
                Ok(None) => {
                    return Err(format!(
                        "iteration {before}'s handoff ({}) is gone from the store",
                        a.run_id
                    ));
                }
                Err(e) => return Err(format!("iteration {before}'s handoff: {e}")),
            };
            let step = self.step_id.clone();
            if let Some(r) = &mut self.repeat {
                // Why it was asked again, judged again as it was then.
                let reason = r.not_good_enough(&step, &h).unwrap_or_default();
                r.ctx.previous = Some(crate::template::Previous {
                    output: crate::template::StepOutput::from_handoff(&h),
                    reason: format!("until {reason}"),
                });
            }
        }
        let Some(r) = &self.repeat else {
            return Ok(());
        };
        match r.task.render_within(&r.ctx, r.limit) {
            Ok(task) => {
                self.rec.set_rendered_task(task);
                Ok(())
            }
            Err(RenderError::TooLarge(e)) => Err(format!(
                "iteration {}'s task is too large for `{}`: {e}",
                r.iteration,
                self.rec.agent.as_deref().unwrap_or("its agent")
            )),
            Err(e) => Err(format!("iteration {}'s task: {e}", r.iteration)),
        }
    }

    fn done(self, cancelled: bool) -> StepDone {
        StepDone {
            rec: self.rec,
            cancelled,
        }
    }

    /// Resume: the last attempt was in flight when the run stopped. Ends,
    /// in this order: with the handoff if it landed (whatever else
    /// happened, the agent's answer is the outcome); as the ledger says if
    /// the earlier process recorded its end (a timeout or a failure counts
    /// as the try it was; nothing is waited for); as `lost` at once if its
    /// transport's delegations die with the process that sent them (sim,
    /// exec), or if its deadline passed; else it is re-awaited until its
    /// deadline, and is `lost` if nothing came. `None`: lost, send again.
    async fn reawait_last(&mut self) -> Option<Tried> {
        let a = self.rec.attempts.last()?.clone();
        if a.status != AttemptStatus::Running {
            return None;
        }
        let n = u32::try_from(self.rec.delegations()).unwrap_or(u32::MAX);
        let key = HandoffKey::top(a.run_id.clone());
        if let Ok(Some(h)) = self.store.get(&key).await {
            return Some(self.answer(h, OutcomeStatus::Complete));
        }
        if let ControlFlow::Break(tried) = self.recorded_end(&a.run_id, n).await {
            return tried;
        }
        if !self.outlives {
            return self
                .lose(
                    n,
                    format!(
                        "its delegation ended with the orch process that sent it ({} transport)",
                        self.transport
                    ),
                )
                .await;
        }
        let until = a.started
            + jiff::SignedDuration::from_millis(a.timeout_ms.try_into().unwrap_or(i64::MAX));
        let left =
            Duration::try_from(until.duration_since(jiff::Timestamp::now())).unwrap_or_default();
        if left.is_zero() {
            return self
                .lose(n, "no handoff came before its deadline".to_owned())
                .await;
        }
        self.emit(ProgressEvent::Reawaiting {
            step: self.label.clone(),
            agent: self.rec.agent.clone().unwrap_or_default(),
            attempt: n,
            since: a.started,
            until,
        });
        let deadline = tokio::time::Instant::now() + left;
        let found = tokio::select! {
            w = self.store.wait(&key, deadline) => match w {
                Ok(WaitOutcome::Landed(h)) => Some(h),
                _ => None,
            },
            () = self.cancel.cancelled() => return Some(Tried::Cancelled),
        };
        match found {
            Some(h) => Some(self.answer(h, OutcomeStatus::Complete)),
            None => {
                self.lose(n, "no handoff came before its deadline".to_owned())
                    .await
            }
        }
    }

    /// How delegation `run_id` (the step's `n`th) ended, if the process
    /// that sent it recorded an end in the ledger: a timeout or failure
    /// counts as a try and nothing is waited for; a handoff that is gone
    /// from the store loses the delegation (all three: `Break`, with what
    /// [`Job::reawait_last`] returns). `Continue`: cancelled or no end at all
    /// (killed), so it may still be in flight.
    async fn recorded_end(&mut self, run_id: &RunId, n: u32) -> ControlFlow<Option<Tried>> {
        let end = self
            .dispatched
            .as_ref()
            .and_then(|d| d.get(run_id))
            .and_then(|sent| sent.end.clone());
        let Some(end) = end else {
            return ControlFlow::Continue(());
        };
        let earlier = "recorded in the ledger by the process that sent it";
        match end {
            (LedgerEventKind::Timeout, _) => {
                let detail = format!("timed out ({earlier})");
                self.end_attempt(AttemptStatus::TimedOut, Some(detail.clone()));
                ControlFlow::Break(Some(Tried::Failed {
                    detail,
                    retry: true,
                }))
            }
            (LedgerEventKind::Failed, detail) => {
                let detail = format!(
                    "{} ({earlier})",
                    detail.unwrap_or_else(|| "the delegation failed".to_owned())
                );
                self.end_attempt(AttemptStatus::Error, Some(detail.clone()));
                ControlFlow::Break(Some(Tried::Failed {
                    detail,
                    retry: true,
                }))
            }
            (LedgerEventKind::Handoff, _) => ControlFlow::Break(
                self.lose(n, "its handoff is no longer in the store".to_owned())
                    .await,
            ),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Marks the last attempt `lost` (it does not count as a try): the step
    /// is sent again, as the next delegation.
    async fn lose(&mut self, attempt: u32, reason: String) -> Option<Tried> {
        self.end_attempt(AttemptStatus::Lost, Some(format!("{reason}; sent again")));
        self.emit(ProgressEvent::Lost {
            step: self.label.clone(),
            attempt,
            reason,
        });
        self.save().await;
        None
    }

    /// Records how an attempt with handoff `h` ended.
    fn answer(&mut self, h: Handoff, fallback: OutcomeStatus) -> Tried {
        let status = match h.status {
            Status::Complete => OutcomeStatus::Complete,
            Status::Partial => OutcomeStatus::Partial,
            Status::Blocked => OutcomeStatus::Blocked,
            Status::Failed => OutcomeStatus::Failed,
        };
        let status = if fallback == OutcomeStatus::Failed {
            fallback
        } else {
            status
        };
        self.end_attempt(status.into(), None);
        if status == OutcomeStatus::Failed {
            let detail = format!("the agent reported failure: {}", first_line(&h.result));
            self.rec.set_handoff(h);
            return Tried::Failed {
                detail,
                retry: true,
            };
        }
        Tried::Answer(Box::new(h))
    }

    /// On resume: whether attempt `run_id` was sent by the process that
    /// died before its step record said so. Found in the ledger (or its
    /// handoff in the store), it is re-awaited, not sent again.
    async fn sent_before(&mut self, run_id: &RunId) -> Earlier {
        let Some(dispatched) = &self.dispatched else {
            return Earlier::NotSent;
        };
        let started = match dispatched.get(run_id) {
            Some(sent) => sent.at,
            None => match self.store.get(&HandoffKey::top(run_id.clone())).await {
                Ok(Some(_)) => jiff::Timestamp::now(),
                _ => return Earlier::NotSent,
            },
        };
        self.rec.push_attempt(Attempt {
            run_id: run_id.clone(),
            status: AttemptStatus::Running,
            started,
            finished: None,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            detail: None,
            iteration: self.iteration(),
        });
        self.rec.delegation_run_id = Some(run_id.clone());
        self.rec.status = StepStatus::Running;
        self.save().await;
        match self.reawait_last().await {
            Some(t) => Earlier::Ended(t),
            None => Earlier::Lost,
        }
    }

    async fn attempt(&mut self, context: Option<String>) -> Tried {
        let run_id = loop {
            let n = u32::try_from(self.rec.delegations() + 1).unwrap_or(u32::MAX);
            let id = attempt_run_id(&self.wf_run, &self.rec.step, n);
            match self.sent_before(&id).await {
                Earlier::NotSent => break id,
                Earlier::Ended(t) => return t,
                // Marked `lost`: the next attempt has the next id.
                Earlier::Lost => {}
            }
        };
        let (agent, task) = match self.what_to_send(&run_id, context.as_deref()) {
            Ok(sent) => sent,
            Err(tried) => return tried,
        };
        self.rec.push_attempt(Attempt {
            run_id: run_id.clone(),
            status: AttemptStatus::Running,
            started: jiff::Timestamp::now(),
            finished: None,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            detail: None,
            iteration: self.iteration(),
        });
        self.rec.delegation_run_id = Some(run_id.clone());
        self.rec.status = StepStatus::Running;
        self.emit(ProgressEvent::Started {
            step: self.label.clone(),
            agent: agent.clone(),
            attempt: u32::try_from(self.rec.delegations()).unwrap_or(u32::MAX),
        });
        let req = Request {
            agent,
            task,
            caller: self.caller.clone(),
            timeout: self.timeout,
            context,
            parent: None,
            validate: false,
            validator: None,
            run_id: Some(run_id),
        };
        // Nothing is recorded before the task goes out: the id is derived,
        // so a resume finds a delegation sent but not yet recorded in the
        // ledger (see `sent_before`). A first attempt's record would hold
        // nothing else; a retry's keeps how the earlier attempts ended, so
        // it is written, while the task goes out.
        let record = async {
            if self.rec.attempts.len() > 1 {
                put_step(&*self.store, &self.wf_run, &self.rec).await
            } else {
                Ok(())
            }
        };
        let (saved, delegated) = tokio::join!(record, self.delegator.delegate(req, &self.cancel));
        if let Err(e) = saved {
            self.end_attempt(AttemptStatus::Error, Some(e.to_string()));
            return Tried::Failed {
                detail: format!("could not record the attempt: {e}"),
                retry: false,
            };
        }
        self.settle(delegated)
    }

    /// The agent and task attempt `run_id` sends, or why it can send
    /// nothing (no agent, a task stored cut, a message over the transport's
    /// limit): a failure no retry can change.
    fn what_to_send(
        &self,
        run_id: &RunId,
        context: Option<&str>,
    ) -> Result<(String, String), Tried> {
        let Some(agent) = self.rec.agent.clone() else {
            return Err(Tried::Failed {
                detail: "no agent".to_owned(),
                retry: false,
            });
        };
        let Some(task) = self
            .rec
            .rendered_task
            .clone()
            .filter(|_| self.rec.has_whole_task())
        else {
            return Err(Tried::Failed {
                detail: "no task to send (a task stored cut is rendered again on resume)"
                    .to_owned(),
                retry: false,
            });
        };
        if let Some(detail) = self.oversized(run_id, &agent, &task, context) {
            return Err(Tried::Failed {
                detail,
                retry: false,
            });
        }
        Ok((agent, task))
    }

    /// Why the message of attempt `run_id` is larger than the agent's
    /// transport delivers, if it is. What is sent is the whole message:
    /// the task, the `context` and orch's instructions around them.
    fn oversized(
        &self,
        run_id: &RunId,
        agent: &str,
        task: &str,
        context: Option<&str>,
    ) -> Option<String> {
        let max = self.max_message?;
        let bytes = self
            .delegator
            .message_bytes(run_id, agent, &self.caller, task, context);
        if bytes <= max {
            return None;
        }
        let with = match (&self.context, context) {
            (Some((_, spec)), Some(c)) => format!(
                " with the context from `{}` ({})",
                spec.channel,
                crate::error::bytes(c.len() as u64)
            ),
            _ => String::new(),
        };
        Some(format!(
            "task too large: the message to `{agent}`{with} would be {}, over the {}-byte limit of its {} transport (less {REASK_HEADROOM} kept for a re-ask)",
            crate::error::bytes(bytes),
            max + REASK_HEADROOM,
            self.transport
        ))
    }

    /// How the delegation of the last attempt ended, recorded in its
    /// attempt.
    fn settle(&mut self, delegated: Result<orch_delegate::Outcome, DelegateError>) -> Tried {
        match delegated {
            Ok(out) => {
                let status = out.status();
                match (status, out.handoff) {
                    (OutcomeStatus::TimedOut, _) | (_, None) => {
                        let detail = match status {
                            OutcomeStatus::TimedOut => format!(
                                "timed out after {}",
                                jiff::SignedDuration::try_from(self.timeout)
                                    .map(|d| format!("{d:#}"))
                                    .unwrap_or_default()
                            ),
                            _ => format!("no valid handoff ({:?})", out.end),
                        };
                        self.end_attempt(status.into(), Some(detail.clone()));
                        Tried::Failed {
                            detail,
                            retry: true,
                        }
                    }
                    (status, Some(h)) => self.answer(h, status),
                }
            }
            Err(DelegateError::Cancelled { .. }) => {
                self.end_attempt(AttemptStatus::Running, None);
                if let Some(a) = self.rec.attempts.last_mut() {
                    a.finished = None;
                }
                Tried::Cancelled
            }
            Err(e) => {
                // Only what another try can change: a transport that was
                // unreachable or busy until the attempt's deadline. A
                // rejection, a task too large or a misconfigured
                // transport would fail the same way again.
                let retry = matches!(
                    &e,
                    DelegateError::Transport { source, .. } if source.is_retryable()
                );
                self.end_attempt(AttemptStatus::Error, Some(e.to_string()));
                Tried::Failed {
                    detail: e.to_string(),
                    retry,
                }
            }
        }
    }

    /// The gate's verdict on `h`.
    fn judge(&mut self, h: Handoff) {
        let (passed, reason) = gate_verdict(&self.gate, h.status, h.confidence);
        self.rec.gate = Some(GateDecision {
            passed,
            reason: reason.clone(),
        });
        self.rec.set_handoff(h);
        if passed && self.gate.approval {
            self.rec.status = StepStatus::AwaitingApproval;
            return;
        }
        self.rec.finished = Some(jiff::Timestamp::now());
        if passed {
            self.rec.status = StepStatus::Completed;
        } else {
            self.rec.status = StepStatus::Failed;
            self.rec.reason = Some(format!("gate: {reason}"));
        }
    }
}

/// Whether an answer of `status` and `confidence` passes `gate` (no gate,
/// or no statuses: `complete` or `partial`; unstated confidence counts as
/// low), and why not.
pub(super) fn gate_verdict(
    gate: &Gate,
    status: Status,
    confidence: Option<Confidence>,
) -> (bool, String) {
    let ok_status = if gate.status.is_empty() {
        matches!(status, Status::Complete | Status::Partial)
    } else {
        gate.status.contains(&status)
    };
    let conf = confidence.unwrap_or(Confidence::Low);
    let ok_conf = gate.min_confidence.is_none_or(|m| conf >= m);
    let reason = if !ok_status {
        let want: Vec<&str> = if gate.status.is_empty() {
            vec!["complete", "partial"]
        } else {
            gate.status.iter().map(|s| s.as_str()).collect()
        };
        format!(
            "status {} is not one of {}",
            status.as_str(),
            want.join(", ")
        )
    } else if !ok_conf {
        format!(
            "confidence {} is below {}",
            confidence.map_or("unstated", Confidence::as_str),
            gate.min_confidence.map_or("", Confidence::as_str)
        )
    } else {
        "passed".to_owned()
    };
    (ok_status && ok_conf, reason)
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    if l.chars().count() > 200 {
        format!("{}…", l.chars().take(200).collect::<String>())
    } else {
        l.to_owned()
    }
}
