//! The run loop: one `Runner` per run, driven by the closed `Event` enum
//! (see the module docs of `exec`). It decides which step starts when,
//! keeps every step record and the summary, and hands each started step to
//! a `Job` task. Steps are named by their position in the plan's order;
//! records and events keep the step ids people read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::HandoffStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::child;
use super::fan::{self, Fan};
use super::job::{self, EndsEarly, Job, Scope, StepDone};
use super::{Dispatched, Executor, ProgressEvent};
use crate::error::{ExecError, RenderError};
use crate::model::{OnFailure, Target, Workflow};
use crate::plan::Plan;
use crate::run::{
    ApprovalDecision, ChildRun, InstanceCounts, ParentLink, REASON_KEPT, RunStatus, RunSummary,
    SUMMARY_REASON_KEPT, StepRecord, StepStatus, StepSummary, put_step, put_summary,
    put_summary_view,
};
use crate::template::Context;
use orch_delegate::orch_handoff::Confidence;

/// The closed set of things the run loop reacts to. Steps are named by
/// their position in the plan's order.
#[derive(Debug)]
pub(super) enum Event {
    /// A step task ended (or was cancelled).
    StepFinished { at: usize, done: Box<StepDone> },
    /// An instance of the `for_each` step at `at` ended.
    Instances { at: usize, counts: InstanceCounts },
    /// The approver decided on a step.
    ApprovalArrived {
        at: usize,
        decision: ApprovalDecision,
    },
    /// The summary writer can take the next summary.
    SummaryDue,
    /// The run's cancel token fired.
    Cancelled,
    /// Someone asked to cancel the run (`orch workflow cancel`).
    CancelRequested(crate::cancel::CancelRequest),
}

/// The latest summary to store, with its version.
type Published = Option<(u64, RunSummary)>;

/// At most one mid-run summary write per this long: the summary is for
/// people watching (`workflow status`); resume trusts the step records.
/// Written as often as it changes, its fsyncs would compete with every
/// step's on the one disk, and building it (every step, the workflow's
/// YAML) on every turn of the loop would cost the loop time.
const SUMMARY_EVERY: Duration = Duration::from_millis(100);

/// The summary writer: pauses [`SUMMARY_EVERY`], tells the loop it may
/// publish a summary ([`Event::SummaryDue`]), stores the one it publishes
/// as a view (a progress report for people watching, not journalled: the
/// run's first and final summaries are the durable ones), and so on: the
/// loop builds a summary only when one can be written, and nothing is
/// written before the first tasks go out. Ends when the publisher is
/// dropped (even mid-pause: the loop then stores the final summary
/// itself), or on the first failed write. Nothing waits for it.
async fn write_summaries(
    store: Arc<dyn HandoffStore>,
    mut rx: watch::Receiver<Published>,
    due: mpsc::UnboundedSender<Event>,
) -> Result<(), ExecError> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SUMMARY_EVERY) => {}
            r = rx.changed() => if r.is_err() {
                return Ok(());
            },
        }
        if due.send(Event::SummaryDue).is_err() {
            return Ok(());
        }
        if rx.changed().await.is_err() {
            return Ok(());
        }
        let next = rx.borrow_and_update().clone();
        if let Some((_, s)) = next {
            put_summary_view(&*store, &s).await?;
        }
    }
}

/// Runs `wf` from `summary` and `recs` (fresh, or as stored on resume, with
/// what earlier processes `dispatched`) to its end, a pause for approval,
/// or cancellation.
pub(super) async fn drive(
    exec: &Executor,
    wf: &Workflow,
    summary: RunSummary,
    recs: BTreeMap<String, StepRecord>,
    dispatched: Option<Dispatched>,
    restarted: BTreeSet<String>,
    cancel: &CancellationToken,
) -> Result<RunSummary, ExecError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (publish, published) = watch::channel(None);
    let mut writer = JoinSet::new();
    writer.spawn(write_summaries(
        Arc::clone(&exec.store),
        published,
        tx.clone(),
    ));
    // A request to cancel the run, from any process, through the store's
    // watcher; a resumed run may find one already there.
    let mut watch = JoinSet::new();
    watch.spawn(watch_cancel(
        Arc::clone(&exec.store),
        summary.run_id.clone(),
        tx.clone(),
    ));
    let requested = match &dispatched {
        Some(_) => crate::cancel::cancel_requested(&*exec.store, &summary.run_id).await?,
        None => None,
    };
    let plan = wf.plan();
    let mut r = Runner {
        exec,
        wf,
        plan,
        summary,
        recs,
        tx,
        steps: JoinSet::new(),
        approvals: JoinSet::new(),
        running: 0,
        stop: false,
        cancelled: false,
        token: cancel.child_token(),
        candidates: (0..plan.len()).collect(),
        version: 0,
        publish: Some(publish),
        summary_due: false,
        summary_dirty: true,
        writer,
        dispatched,
        restarted,
        slots: wf
            .max_parallel
            .map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS)))),
        _watch: watch,
        finally: (0..plan.len())
            .filter(|&p| wf.step(plan.id_at(p)).is_some_and(|s| s.finally))
            .collect(),
        finally_phase: false,
        finally_token: CancellationToken::new(),
        outcome: None,
    };
    if let Some(request) = requested {
        r.apply(Event::CancelRequested(request)).await?;
    }
    r.go(rx, cancel).await?;
    let Runner { recs, summary, .. } = r;
    // Freeing a large run's state (every step's handoff, attempts and
    // task) takes a millisecond or two that nobody should wait for: it
    // goes to a short-lived thread of its own (inline if none starts).
    if recs.len() > FREE_ASIDE {
        let _ = std::thread::Builder::new()
            .name("orch-free".into())
            .spawn(move || drop(recs));
    }
    Ok(summary)
}

/// Runs with more steps than this free their state on another thread.
const FREE_ASIDE: usize = 64;

struct Runner<'a> {
    exec: &'a Executor,
    wf: &'a Workflow,
    /// `wf`'s plan: positions, dependencies, dependents and heights.
    plan: &'a Plan,
    summary: RunSummary,
    recs: BTreeMap<String, StepRecord>,
    tx: mpsc::UnboundedSender<Event>,
    /// Step tasks; each ends with how writing its final record went.
    steps: JoinSet<Result<(), ExecError>>,
    approvals: JoinSet<()>,
    running: usize,
    stop: bool,
    cancelled: bool,
    token: CancellationToken,
    /// Positions of pending steps that may have become ready: every step
    /// at first, then the dependents of each step that ends.
    candidates: BTreeSet<usize>,
    /// The version of the last published summary.
    version: u64,
    /// Feeds the summary writer (dropped at the end to stop it).
    publish: Option<watch::Sender<Published>>,
    /// The writer can take a summary now.
    summary_due: bool,
    /// The state changed since the last published summary.
    summary_dirty: bool,
    /// The summary writer task (one).
    writer: JoinSet<Result<(), ExecError>>,
    /// On resume: what earlier processes dispatched.
    dispatched: Option<Dispatched>,
    /// Steps `resume --retry-failed` started afresh (a `for_each` step's
    /// failed instances start again too).
    restarted: BTreeSet<String>,
    /// The workflow's `max_parallel`: a slot per running delegation (a
    /// step, or an instance of a `for_each` step).
    slots: Option<Arc<Semaphore>>,
    /// The task that waits for a cancel request (dropped with the run).
    _watch: JoinSet<()>,
    /// Positions of the `finally` steps.
    finally: BTreeSet<usize>,
    /// Every other step has ended: the `finally` steps run.
    finally_phase: bool,
    /// What the `finally` steps' delegations are cancelled by (never the
    /// run's token: they run after a cancellation too).
    finally_token: CancellationToken,
    /// How the run ended before its `finally` steps.
    outcome: Option<RunStatus>,
}

/// Waits for a request to cancel run `run` (see `crate::cancel`) and tells
/// the loop; ends with the run (its task is dropped) or on a store error.
async fn watch_cancel(
    store: Arc<dyn HandoffStore>,
    run: orch_delegate::orch_handoff::RunId,
    tx: mpsc::UnboundedSender<Event>,
) {
    use orch_delegate::orch_handoff::WaitOutcome;
    let key = crate::cancel::cancel_key(&run);
    loop {
        let until = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        match store.wait(&key, until).await {
            Ok(WaitOutcome::Landed(h)) => {
                let _ = tx.send(Event::CancelRequested(crate::cancel::CancelRequest::of(&h)));
                return;
            }
            Ok(WaitOutcome::TimedOut | WaitOutcome::TimedOutIncomplete(_)) => {}
            Ok(WaitOutcome::Invalid(e)) => {
                tracing::warn!(run = %run, error = %e, "a cancel request that does not read is ignored");
                return;
            }
            Err(e) => {
                tracing::warn!(run = %run, error = %e, "cannot watch for a cancel request");
                return;
            }
        }
    }
}

fn elapsed(rec: &StepRecord) -> Duration {
    rec.started.map_or(Duration::ZERO, |s| {
        Duration::try_from(jiff::Timestamp::now().duration_since(s)).unwrap_or_default()
    })
}

impl Runner<'_> {
    /// The loop: start what is ready, publish the summary, wait for events
    /// and apply them, until nothing runs and nobody is asked.
    async fn go(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        cancel: &CancellationToken,
    ) -> Result<(), ExecError> {
        self.restore_outputs().await?;
        self.carry_over().await?;
        loop {
            if cancel.is_cancelled() {
                self.cancelled = true;
            }
            if self.finally_phase || (!self.stop && !self.cancelled) {
                self.start_ready().await?;
            }
            self.save(RunStatus::Running)?;
            if self.running == 0 && self.approvals.is_empty() {
                // Every other step ended: the `finally` steps run (not for
                // a run that pauses for approval: it has not ended).
                let status = self.main_status();
                if !self.finally_phase
                    && !self.finally.is_empty()
                    && status != RunStatus::AwaitingApproval
                {
                    self.finally_phase = true;
                    self.outcome = Some(status);
                    self.candidates.extend(self.finally.iter().copied());
                    continue;
                }
                break;
            }
            let Some(events) = self.next_events(&mut rx, cancel).await else {
                break;
            };
            for ev in events {
                self.apply(ev).await?;
            }
            self.reap()?;
        }
        if cancel.is_cancelled() {
            self.cancelled = true;
        }
        let status = self.final_status();
        self.finish(status).await
    }

    /// Takes up the state an earlier process left: `running` steps are
    /// re-awaited, `awaiting-approval` ones get their recorded decision or
    /// are asked again, a failure under `on_failure: stop` stops the run.
    /// Steps are taken in the order of their ids, as the records are kept.
    async fn carry_over(&mut self) -> Result<(), ExecError> {
        let plan = self.plan;
        let mut by_id: Vec<usize> = (0..plan.len()).collect();
        by_id.sort_by_key(|&p| plan.id_at(p));
        for p in by_id {
            let id = plan.id_at(p);
            let Some(status) = self.recs.get(id).map(|r| r.status) else {
                continue;
            };
            let fails = matches!(status, StepStatus::Failed | StepStatus::Rejected);
            if fails && self.on_failure(id) == OnFailure::Stop {
                self.stop = true;
            }
            let uses = self.wf.step(id).and_then(|s| match &s.target {
                Target::Workflow(u) => Some(Arc::clone(u)),
                _ => None,
            });
            // A `uses` step left running, or waiting on its child's gate.
            let child_left = status == StepStatus::Running
                || (status == StepStatus::AwaitingApproval && self.child_awaits(id));
            match status {
                _ if child_left && uses.is_some() => {
                    // Its child run is resumed: it applies its own recorded
                    // decisions, or pauses again.
                    let ctx = self.context_for(p);
                    let limit = self.exec.store.max_record_bytes();
                    let with = uses.as_deref().map(|u| render_with(u, &ctx, limit));
                    match with {
                        Some(Ok(with)) => self.spawn_child(p, with),
                        Some(Err(end)) => self.end_early(p, end).await?,
                        None => {}
                    }
                }
                StepStatus::Running if self.wf.step(id).is_some_and(|s| s.for_each.is_some()) => {
                    self.start_fan(p).await?;
                }
                StepStatus::Running => {
                    self.restore_task(p);
                    let permit = self.slot();
                    self.spawn_step(p, true, permit);
                }
                StepStatus::AwaitingApproval => {
                    match self.recs.get(id).and_then(|r| r.approval.clone()) {
                        Some(d) => self.apply_approval(p, d).await?,
                        None => self.ask_approval(p),
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits for the next event (or the cancel token), then takes every
    /// event that arrived meanwhile: all of them are applied in this turn.
    /// `None`: the channel closed.
    async fn next_events(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        cancel: &CancellationToken,
    ) -> Option<Vec<Event>> {
        let first = tokio::select! {
            ev = rx.recv() => ev?,
            () = cancel.cancelled(), if !self.cancelled => Event::Cancelled,
        };
        let mut events = vec![first];
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        Some(events)
    }

    async fn apply(&mut self, ev: Event) -> Result<(), ExecError> {
        if !matches!(ev, Event::SummaryDue) {
            self.summary_dirty = true;
        }
        match ev {
            Event::Cancelled => {
                self.cancelled = true;
                self.token.cancel();
                self.approvals.abort_all();
                while self.approvals.join_next().await.is_some() {}
            }
            Event::CancelRequested(request) => {
                tracing::info!(run = %self.summary.run_id, by = %request.by, "cancel requested");
                self.summary.cancelled = Some(request);
                self.cancelled = true;
                self.token.cancel();
                self.approvals.abort_all();
                while self.approvals.join_next().await.is_some() {}
            }
            Event::StepFinished { at, done } => {
                self.running -= 1;
                self.step_finished(at, *done)?;
            }
            Event::SummaryDue => self.summary_due = true,
            Event::Instances { at, counts } => {
                let id = self.plan.id_at(at);
                if let Some(f) = self.recs.get_mut(id).and_then(|r| r.fan_out.as_mut()) {
                    f.instances = counts;
                }
            }
            Event::ApprovalArrived { at, decision } => {
                if let Some(rec) = self.recs.get_mut(self.plan.id_at(at)) {
                    rec.approval = Some(decision.clone());
                }
                self.apply_approval(at, decision).await?;
            }
        }
        Ok(())
    }

    /// Reaps finished tasks; a step task that failed to write its final
    /// record fails the run.
    fn reap(&mut self) -> Result<(), ExecError> {
        while self.approvals.try_join_next().is_some() {}
        while let Some(r) = self.steps.try_join_next() {
            task_result(r)?;
        }
        Ok(())
    }

    /// How the run ended, once the loop is over: as its other steps left
    /// it, and a failed `finally` step turns `completed` into
    /// `completed-with-failures`.
    fn final_status(&self) -> RunStatus {
        let Some(base) = self.outcome.filter(|_| self.finally_phase) else {
            return self.main_status();
        };
        let finally_failed = self.finally.iter().any(|&p| {
            self.recs
                .get(self.plan.id_at(p))
                .is_some_and(|r| matches!(r.status, StepStatus::Failed | StepStatus::Rejected))
        });
        if base == RunStatus::Completed && finally_failed {
            RunStatus::CompletedWithFailures
        } else {
            base
        }
    }

    /// How the run stands by its steps other than the `finally` ones.
    fn main_status(&self) -> RunStatus {
        let any = |st: &[StepStatus]| {
            (0..self.plan.len())
                .filter(|p| !self.finally.contains(p))
                .filter_map(|p| self.recs.get(self.plan.id_at(p)))
                .any(|r| st.contains(&r.status))
        };
        if self.cancelled {
            RunStatus::Cancelled
        } else if self.stop {
            RunStatus::Failed
        } else if any(&[StepStatus::AwaitingApproval]) {
            RunStatus::AwaitingApproval
        } else if any(&[StepStatus::Failed, StepStatus::Rejected]) {
            RunStatus::CompletedWithFailures
        } else {
            RunStatus::Completed
        }
    }

    /// Stores the final summary (with the run's `output` if it ended),
    /// once every step task has written its last record.
    async fn finish(&mut self, status: RunStatus) -> Result<(), ExecError> {
        self.summary.output_note = None;
        if matches!(
            status,
            RunStatus::Completed | RunStatus::CompletedWithFailures
        ) && let Some(out) = &self.wf.output
        {
            let (output, note) = self.render_output(out);
            self.summary.confidence = output.as_ref().map(|_| self.output_confidence(out));
            self.summary.output = output;
            self.summary.output_note = note.map(|n| crate::run::cut(&n, REASON_KEPT).into_owned());
        }
        self.summary.finished = Some(jiff::Timestamp::now());
        self.summary.status = status;
        self.summarise_steps();
        // Stop the writer, then store the final summary ourselves, so the
        // stored summary is exactly the returned one.
        self.publish = None;
        while let Some(r) = self.writer.join_next().await {
            task_result(r)?;
        }
        // Step tasks may still be writing their final records: those
        // writes and the final summary's go together.
        let steps = async {
            while let Some(r) = self.steps.join_next().await {
                task_result(r)?;
            }
            Ok::<(), ExecError>(())
        };
        let (steps, summary) = tokio::join!(steps, put_summary(&*self.exec.store, &self.summary));
        steps?;
        summary?;
        Ok(())
    }

    /// The lowest confidence among the steps `out` reads (unstated counts
    /// as low; an output that reads no step is as sure as its inputs:
    /// high).
    fn output_confidence(&self, out: &crate::template::Template) -> Confidence {
        out.step_refs()
            .filter_map(|id| self.recs.get(id).and_then(StepRecord::output))
            .map(|o| o.confidence.unwrap_or(Confidence::Low))
            .min()
            .unwrap_or(Confidence::High)
    }

    /// The run's `output`, or why there is none: a step it reads did not
    /// complete (skipped by `when` or for a dependency, failed under
    /// `on_failure: continue`), or it is over the summary's limit.
    fn render_output(&self, out: &crate::template::Template) -> (Option<String>, Option<String>) {
        let mut seen = BTreeSet::new();
        let mut missing = Vec::new();
        for id in out.step_refs() {
            if !seen.insert(id) {
                continue;
            }
            let Some(rec) = self.recs.get(id) else {
                continue;
            };
            if rec.status == StepStatus::Completed {
                continue;
            }
            let how = match rec.status {
                StepStatus::Skipped => "was skipped",
                StepStatus::Failed => "failed",
                StepStatus::Rejected => "was rejected",
                _ => "did not complete",
            };
            let why = rec
                .reason
                .as_deref()
                .map(|r| format!(" ({})", crate::run::cut(r, SUMMARY_REASON_KEPT)))
                .unwrap_or_default();
            missing.push(format!("step `{id}`, which {how}{why}"));
        }
        if !missing.is_empty() {
            return (
                None,
                Some(format!("no output: it reads {}", missing.join("; and "))),
            );
        }
        match out.render_within(&self.context(), self.exec.output_limit()) {
            Ok(text) => (Some(text), None),
            Err(RenderError::TooLarge(e)) => (
                None,
                Some(format!(
                    "no output stored: it would be {}, over the summary's limit of {}; made of {} (the steps' handoffs hold it)",
                    crate::error::bytes(e.size),
                    crate::error::bytes(e.limit),
                    e.made_of()
                )),
            ),
            Err(e) => (None, Some(format!("no output: {e}"))),
        }
    }

    /// Resume: a running step's task stored cut is rendered again (the
    /// handoffs it reads are in the store) and kept only if it is the task
    /// that was sent (same size and SHA-256); else the step can still be
    /// re-awaited, but not sent again.
    fn restore_task(&mut self, p: usize) {
        let id = self.plan.id_at(p);
        let Some(rec) = self.recs.get(id) else { return };
        if rec.has_whole_task() || rec.rendered_task.is_none() {
            return;
        }
        let (Some(size), Some(hash)) = (rec.rendered_task_bytes, rec.rendered_task_sha256.clone())
        else {
            return;
        };
        let Some(step) = self.wf.step(id) else { return };
        let ctx = self.context_for(p);
        match step.task.render_within(&ctx, size) {
            Ok(task) if task.len() as u64 == size && crate::run::sha256(&task) == hash => {
                if let Some(rec) = self.recs.get_mut(id) {
                    rec.set_rendered_task(task);
                }
            }
            _ => tracing::warn!(
                step = id,
                "a task stored cut does not render the same any more: the step is re-awaited, never sent again"
            ),
        }
    }

    fn on_failure(&self, id: &str) -> OnFailure {
        self.wf
            .step(id)
            .map_or(OnFailure::Stop, |s| self.wf.on_failure_of(s))
    }

    fn context(&self) -> Context {
        Context {
            inputs: self.summary.inputs.clone(),
            steps: self
                .recs
                .iter()
                .filter(|(_, r)| r.status == StepStatus::Completed)
                .filter_map(|(k, r)| r.output().map(|o| (k.clone(), o)))
                .collect(),
            run_id: Some(self.summary.run_id.as_str().to_owned()),
            previous: None,
            item: None,
            outcome: None,
        }
    }

    /// The outputs of the completed direct dependencies of the step at
    /// position `p` (all a step's task and `when` may read).
    fn context_for(&self, p: usize) -> Context {
        let steps = self
            .plan
            .deps_at(p)
            .iter()
            .filter_map(|&d| {
                let dep = self.plan.id_at(d);
                let r = self.recs.get(dep)?;
                if r.status != StepStatus::Completed {
                    return None;
                }
                Some((dep.to_owned(), r.output()?))
            })
            .collect();
        Context {
            inputs: self.summary.inputs.clone(),
            steps,
            run_id: Some(self.summary.run_id.as_str().to_owned()),
            previous: None,
            item: None,
            outcome: self.finally.contains(&p).then(|| self.outcome_text()),
        }
    }

    /// How the run ended, as its `finally` steps read it.
    fn outcome_text(&self) -> crate::template::RunOutcome {
        let word = |v: serde_json::Result<serde_json::Value>| {
            v.ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let status = word(serde_json::to_value(
            self.outcome.unwrap_or_else(|| self.main_status()),
        ));
        let mut steps = String::new();
        for p in 0..self.plan.len() {
            if self.finally.contains(&p) {
                continue;
            }
            let id = self.plan.id_at(p);
            let Some(rec) = self.recs.get(id) else {
                continue;
            };
            if !steps.is_empty() {
                steps.push('\n');
            }
            steps.push_str(id);
            steps.push_str(": ");
            steps.push_str(&word(serde_json::to_value(rec.status)));
            if let Some(reason) = &rec.reason {
                steps.push_str(" (");
                steps.push_str(&crate::run::cut(reason, SUMMARY_REASON_KEPT));
                steps.push(')');
            }
        }
        crate::template::RunOutcome { status, steps }
    }

    /// What the steps of this run share, for preparing and starting one.
    fn scope(&self) -> Scope<'_> {
        Scope {
            exec: self.exec,
            wf: self.wf,
            wf_run: &self.summary.run_id,
            caller: &self.summary.caller,
            dispatched: self.dispatched.as_ref(),
            cancel: if self.finally_phase {
                &self.finally_token
            } else {
                &self.token
            },
        }
    }

    fn summarise_steps(&mut self) {
        self.summary.steps = self
            .recs
            .iter()
            .map(|(k, r)| (k.clone(), StepSummary::of(r)))
            .collect();
    }

    /// Hands the current state to the summary writer if it changed and
    /// the writer can take it now (else it goes with a later turn); never
    /// waits for the write. Fails if the writer already failed.
    fn save(&mut self, status: RunStatus) -> Result<(), ExecError> {
        if let Some(r) = self.writer.try_join_next() {
            task_result(r)?;
        }
        if !(self.summary_dirty && self.summary_due) {
            return Ok(());
        }
        self.summary.status = status;
        self.summarise_steps();
        self.version += 1;
        if let Some(p) = &self.publish {
            p.send_replace(Some((self.version, self.summary.clone())));
        }
        self.summary_dirty = false;
        self.summary_due = false;
        Ok(())
    }

    /// Makes the pending dependents of the step at position `p` candidates
    /// for starting.
    fn ended(&mut self, p: usize) {
        self.candidates
            .extend(self.plan.dependents_at(p).iter().copied());
    }

    async fn put(&self, id: &str) -> Result<(), ExecError> {
        match self.recs.get(id) {
            Some(rec) => put_step(&*self.exec.store, &self.summary.run_id, rec).await,
            None => Ok(()),
        }
    }

    /// Ends the step at position `p` without running it (skipped) or as
    /// failed.
    async fn end_early(&mut self, p: usize, end: EndsEarly) -> Result<(), ExecError> {
        let EndsEarly { status, reason } = end;
        let id = self.plan.id_at(p);
        let now = jiff::Timestamp::now();
        if let Some(rec) = self.recs.get_mut(id) {
            rec.status = status;
            rec.reason = Some(reason.clone());
            rec.started.get_or_insert(now);
            rec.finished = Some(now);
        }
        self.put(id).await?;
        self.ended(p);
        if status == StepStatus::Skipped {
            self.exec.emit(ProgressEvent::Skipped {
                step: id.to_owned(),
                reason,
            });
        } else {
            self.failed(id);
            self.exec.emit(ProgressEvent::Finished {
                step: id.to_owned(),
                status,
                elapsed: Duration::ZERO,
            });
        }
        Ok(())
    }

    fn failed(&mut self, id: &str) {
        if self.wf.step(id).is_some_and(|s| s.finally) {
            // A `finally` step's failure stops nothing: the run is ending.
            return;
        }
        if self.on_failure(id) == OnFailure::Stop {
            self.stop = true;
        }
    }

    /// Starts every ready step (up to `max_parallel`) and ends early those
    /// that cannot run, until a pass ends none (an ended step may make its
    /// dependents ready).
    async fn start_ready(&mut self) -> Result<(), ExecError> {
        loop {
            let mut changed = false;
            for p in self.take_ready() {
                if self.stop && !self.finally_phase {
                    return Ok(());
                }
                changed |= self.try_start(p).await?;
            }
            if !changed {
                return Ok(());
            }
        }
    }

    /// The pending candidates whose dependencies all ended, longest chain
    /// first; they stay candidates until they start. The others wait to be
    /// added again when their last dependency ends.
    fn take_ready(&mut self) -> Vec<usize> {
        let is_ended = |r: &StepRecord| {
            matches!(
                r.status,
                StepStatus::Completed
                    | StepStatus::Skipped
                    | StepStatus::Failed
                    | StepStatus::Rejected
            )
        };
        let mut ready = Vec::new();
        let candidates = std::mem::take(&mut self.candidates);
        for p in candidates {
            let finally = self.finally.contains(&p);
            if finally && !self.finally_phase {
                // Added again when every other step has ended.
                continue;
            }
            let id = self.plan.id_at(p);
            if self.recs.get(id).map(|r| r.status) != Some(StepStatus::Pending) {
                continue;
            }
            // For a `finally` step, the other steps have all ended (or
            // will never start: a stopped or cancelled run).
            let all_ended = self.plan.deps_at(p).iter().all(|&d| {
                (finally && !self.finally.contains(&d))
                    || self.recs.get(self.plan.id_at(d)).is_some_and(is_ended)
            });
            if all_ended {
                self.candidates.insert(p);
                ready.push(p);
            }
        }
        // Longest chain first: durations are unknown, so the number of
        // steps still ahead is the best guess of which step is on the
        // critical path; it gets its dispatch (and a `max_parallel` slot)
        // before its siblings.
        ready.sort_by_key(|&p| (std::cmp::Reverse(self.plan.height_at(p)), p));
        ready
    }

    /// The ready step at position `p`: skipped or failed at once if it
    /// cannot run, else started if fewer than `cap` steps run. Whether it
    /// ended (so its dependents may have become ready).
    async fn try_start(&mut self, p: usize) -> Result<bool, ExecError> {
        let (plan, wf) = (self.plan, self.wf);
        let id = plan.id_at(p);
        let Some(step) = wf.step(id) else {
            self.candidates.remove(&p);
            return Ok(false);
        };
        // A `finally` step runs whatever became of the other steps; only
        // another `finally` step it reads can keep it from running.
        let finally = self.finally.contains(&p);
        let deps: Vec<(&str, StepStatus)> = plan
            .deps_at(p)
            .iter()
            .filter(|d| !finally || self.finally.contains(d))
            .filter_map(|&d| {
                let dep = plan.id_at(d);
                Some((dep, self.recs.get(dep)?.status))
            })
            .collect();
        if let Some(end) = job::blocked_by(&deps) {
            self.end_early(p, end).await?;
            return Ok(true);
        }
        let ctx = self.context_for(p);
        if let Err(end) = job::check_when(step, &ctx) {
            self.end_early(p, end).await?;
            return Ok(true);
        }
        if step.for_each.is_some() {
            // Its instances take the run's slots, each when it sends.
            return self.start_fan(p).await;
        }
        if let Target::Workflow(uses) = &step.target {
            // No slot: its child run's steps are capped by its own
            // `max_parallel` (a slot held here could starve them).
            let with = match render_with(uses, &ctx, self.exec.store.max_record_bytes()) {
                Ok(with) => with,
                Err(end) => {
                    self.end_early(p, end).await?;
                    return Ok(true);
                }
            };
            let child = self
                .summary
                .children
                .get(id)
                .cloned()
                .map(|run_id| ChildRun {
                    run_id,
                    workflow: uses.workflow.name.clone(),
                    status: None,
                });
            if let Some(rec) = self.recs.get_mut(id) {
                rec.status = StepStatus::Running;
                rec.started = Some(jiff::Timestamp::now());
                rec.child = child;
            }
            self.candidates.remove(&p);
            self.exec.emit(ProgressEvent::Started {
                step: id.to_owned(),
                agent: format!("workflow {}", uses.workflow.name),
                attempt: 1,
            });
            self.spawn_child(p, with);
            return Ok(false);
        }
        let permit = match &self.slots {
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Ok(false),
            },
            None => None,
        };
        let (agent, task) = match job::agent_and_task(&self.scope(), step, &ctx) {
            Ok(found) => found,
            Err(end) => {
                self.end_early(p, end).await?;
                return Ok(true);
            }
        };
        if let Some(rec) = self.recs.get_mut(id) {
            rec.status = StepStatus::Running;
            rec.agent = Some(agent);
            rec.set_rendered_task(task);
            rec.started = Some(jiff::Timestamp::now());
        }
        self.candidates.remove(&p);
        self.spawn_step(p, false, permit);
        Ok(false)
    }

    /// A free slot of the workflow's `max_parallel`, if it has one (on
    /// resume, steps in flight are taken up with one or without).
    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots
            .as_ref()
            .and_then(|s| Arc::clone(s).try_acquire_owned().ok())
    }

    /// Starts (or, on resume, takes up) the `for_each` step at position
    /// `p`; ends it early if it cannot run. Whether it ended.
    async fn start_fan(&mut self, p: usize) -> Result<bool, ExecError> {
        let (plan, wf) = (self.plan, self.wf);
        let id = plan.id_at(p);
        let (Some(step), Some(rec)) = (wf.step(id), self.recs.get(id)) else {
            return Ok(false);
        };
        let Some(for_each) = &step.for_each else {
            return Ok(false);
        };
        let start = fan::Start {
            scope: self.scope(),
            step,
            fan: for_each,
            at: p,
            rec,
            ctx: self.context_for(p),
            resume: self.dispatched.is_some(),
            restarted: self.restarted.contains(id),
            events: self.tx.clone(),
            run_slots: self.slots.clone(),
        };
        let (fan, rec) = match fan::prepare(start).await? {
            Ok(prepared) => prepared,
            Err(end) => {
                self.end_early(p, end).await?;
                return Ok(true);
            }
        };
        self.recs.insert(id.to_owned(), rec);
        self.candidates.remove(&p);
        self.spawn_fan(p, fan);
        Ok(false)
    }

    /// Starts the task of the `for_each` step at position `p`.
    fn spawn_fan(&mut self, p: usize, fan: Fan) {
        let tx = self.tx.clone();
        let store = Arc::clone(&self.exec.store);
        let wf_run = self.summary.run_id.clone();
        self.running += 1;
        self.steps.spawn(async move {
            let (done, mut writes) = fan.run().await;
            let rec = done.rec.clone();
            let finished = Event::StepFinished {
                at: p,
                done: Box::new(done),
            };
            let drain = async move {
                while let Some(r) = writes.join_next().await {
                    task_result(r)?;
                }
                Ok::<(), ExecError>(())
            };
            if rec.status == StepStatus::AwaitingApproval {
                // As for any step: this write goes before the decision's.
                let (wrote, drained) = tokio::join!(put_step(&*store, &wf_run, &rec), drain);
                wrote?;
                drained?;
                let _ = tx.send(finished);
                return Ok(());
            }
            // The loop hears first; the step's and its instances' records
            // are written while its dependents start.
            let _ = tx.send(finished);
            let (wrote, drained) = tokio::join!(put_step(&*store, &wf_run, &rec), drain);
            wrote?;
            drained
        });
    }

    /// On resume: each `for_each` step an earlier process ended (completed,
    /// or awaiting approval) gets back what its instances produced
    /// together, in plan order (its items may read an earlier one's); each
    /// such `uses` step, its child run's output.
    async fn restore_outputs(&mut self) -> Result<(), ExecError> {
        if self.dispatched.is_none() {
            return Ok(());
        }
        for p in 0..self.plan.len() {
            let id = self.plan.id_at(p);
            let (Some(step), Some(rec)) = (self.wf.step(id), self.recs.get(id)) else {
                continue;
            };
            if !matches!(
                rec.status,
                StepStatus::Completed | StepStatus::AwaitingApproval
            ) {
                continue;
            }
            if matches!(step.target, Target::Workflow(_)) {
                if self.child_awaits(id) {
                    continue;
                }
                let out = child::restore(&*self.exec.store, rec).await?;
                if let Some(rec) = self.recs.get_mut(id) {
                    rec.fanned = out;
                }
                continue;
            }
            let Some(for_each) = &step.for_each else {
                continue;
            };
            let ctx = self.context_for(p);
            let out = fan::restore(&self.scope(), step, for_each, &ctx).await?;
            if let Some(rec) = self.recs.get_mut(id) {
                rec.fanned = out;
            }
        }
        Ok(())
    }

    /// Starts the task of the step at position `p` (`reawait`: on resume,
    /// its last delegation may still answer).
    fn spawn_step(&mut self, p: usize, reawait: bool, permit: Option<OwnedSemaphorePermit>) {
        let id = self.plan.id_at(p);
        let (Some(step), Some(rec)) = (self.wf.step(id), self.recs.get(id)) else {
            return;
        };
        let mut job = Job::new(&self.scope(), step, rec, reawait);
        if step.repeat.is_some() {
            // Its next iterations are rendered with the last one's answer.
            job.render_with(step, self.context_for(p));
        }
        self.spawn_task(p, async move {
            let done = job.run().await;
            drop(permit);
            done
        });
    }

    /// Starts (or, on resume, takes up) the child run of the `uses` step at
    /// position `p`, whose inputs are `with`.
    fn spawn_child(&mut self, p: usize, with: BTreeMap<String, String>) {
        let id = self.plan.id_at(p);
        let (Some(step), Some(rec)) = (self.wf.step(id), self.recs.get(id)) else {
            return;
        };
        let Target::Workflow(uses) = &step.target else {
            return;
        };
        let mut exec = self.exec.clone();
        exec.progress = exec.progress.map(|inner| {
            Arc::new(child::Prefixed {
                inner,
                prefix: id.to_owned(),
            }) as Arc<dyn super::Progress>
        });
        let job = child::Child {
            exec,
            uses: Arc::clone(uses),
            rec: rec.clone(),
            parent: ParentLink {
                run_id: self.summary.run_id.clone(),
                step: id.to_owned(),
            },
            caller: self.summary.caller.clone(),
            with,
            gate: step.gate.clone().unwrap_or_default(),
            timeout: step.timeout,
            retry_failed: self.restarted.contains(id),
            cancel: self.scope().cancel.clone(),
        };
        self.spawn_task(p, job.run());
    }

    /// Runs the task of the step at position `p` (a delegating step's or a
    /// `uses` step's): the loop hears how it ended, and its record is
    /// written. An `awaiting-approval` record is written before the loop
    /// hears (the loop writes it again once a decision comes, and the two
    /// must not cross); any other after, so dependents start while it is
    /// written, off the critical path: if the process dies before the
    /// write lands, resume derives the outcome again (a delegation's from
    /// its handoff, which the agent wrote durably; a child run's from the
    /// child's summary), and nothing is sent again.
    fn spawn_task(
        &mut self,
        p: usize,
        task: impl std::future::Future<Output = StepDone> + Send + 'static,
    ) {
        let tx = self.tx.clone();
        let store = Arc::clone(&self.exec.store);
        let wf_run = self.summary.run_id.clone();
        self.running += 1;
        self.steps.spawn(async move {
            let done = task.await;
            let rec = done.rec.clone();
            let finished = Event::StepFinished {
                at: p,
                done: Box::new(done),
            };
            if rec.status == StepStatus::AwaitingApproval {
                put_step(&*store, &wf_run, &rec).await?;
                let _ = tx.send(finished);
                return Ok(());
            }
            let _ = tx.send(finished);
            put_step(&*store, &wf_run, &rec).await
        });
    }

    fn ask_approval(&mut self, p: usize) {
        let id = self.plan.id_at(p);
        let Some(approver) = self.exec.approver.clone() else {
            self.exec.emit(ProgressEvent::AwaitingApproval {
                step: id.to_owned(),
            });
            return;
        };
        let Some(output) = self.recs.get(id).and_then(StepRecord::output) else {
            return;
        };
        self.exec.emit(ProgressEvent::AwaitingApproval {
            step: id.to_owned(),
        });
        let tx = self.tx.clone();
        let id = id.to_owned();
        self.approvals.spawn(async move {
            let decision = approver.approve(&id, &output).await;
            let _ = tx.send(Event::ApprovalArrived { at: p, decision });
        });
    }

    async fn apply_approval(&mut self, p: usize, d: ApprovalDecision) -> Result<(), ExecError> {
        let id = self.plan.id_at(p);
        let Some(rec) = self.recs.get_mut(id) else {
            return Ok(());
        };
        rec.finished = Some(jiff::Timestamp::now());
        match &d {
            ApprovalDecision::Approve => rec.status = StepStatus::Completed,
            ApprovalDecision::Reject { reason } => {
                rec.status = StepStatus::Rejected;
                rec.reason = Some(format!("rejected: {reason}"));
            }
        }
        let status = rec.status;
        let elapsed = elapsed(rec);
        if status == StepStatus::Rejected {
            self.failed(id);
        }
        self.put(id).await?;
        self.ended(p);
        self.exec.emit(ProgressEvent::Finished {
            step: id.to_owned(),
            status,
            elapsed,
        });
        Ok(())
    }

    /// Whether step `id` is a `uses` step whose child run waits for a
    /// human (the approval is the child's, not the step's own).
    fn child_awaits(&self, id: &str) -> bool {
        self.recs.get(id).is_some_and(StepRecord::waits_on_child)
    }

    fn step_finished(&mut self, p: usize, done: StepDone) -> Result<(), ExecError> {
        let id = self.plan.id_at(p);
        let status = done.rec.status;
        let elapsed = elapsed(&done.rec);
        self.recs.insert(id.to_owned(), done.rec);
        if done.cancelled {
            return Ok(());
        }
        self.ended(p);
        match status {
            // A step of its child run waits: the child asked (or paused).
            StepStatus::AwaitingApproval if self.child_awaits(id) => {}
            StepStatus::AwaitingApproval => self.ask_approval(p),
            StepStatus::Failed => {
                self.failed(id);
                self.exec.emit(ProgressEvent::Finished {
                    step: id.to_owned(),
                    status,
                    elapsed,
                });
            }
            _ => self.exec.emit(ProgressEvent::Finished {
                step: id.to_owned(),
                status,
                elapsed,
            }),
        }
        Ok(())
    }
}

/// The inputs of a `uses` step's child run: its `with` templates rendered
/// in `ctx`, each within `limit` bytes (what the child's summary can
/// hold); a value that cannot be rendered fails the step.
fn render_with(
    uses: &crate::model::Uses,
    ctx: &Context,
    limit: u64,
) -> Result<BTreeMap<String, String>, EndsEarly> {
    uses.with
        .iter()
        .map(|(k, t)| match t.render_within(ctx, limit) {
            Ok(v) => Ok((k.clone(), v)),
            Err(e) => Err(EndsEarly::failed(format!("`with.{k}`: {e}"))),
        })
        .collect()
}

/// A step or summary writer task's result; a panic is passed on.
fn task_result(r: Result<Result<(), ExecError>, tokio::task::JoinError>) -> Result<(), ExecError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Ok(()),
    }
}
