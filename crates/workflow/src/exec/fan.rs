//! A `for_each` step: one instance per item, each a `Job` of its own
//! (attempts, retries, timeout, gate, record `<step>.<N>`, delegation ids
//! `<run>.<step>.<N>.<n>`), run under the step's `max_parallel` and the
//! run's, and joined by the step's `join`.
//!
//! The loop prepares the instances (items, tasks, agents, and on resume
//! what each instance's record says) and hands them to one `Fan` task,
//! which is the step's task: it starts the instances in item order, hears
//! each one end, cancels those the join no longer needs (`any`, `min`,
//! or `min` at the step's deadline), and ends with the step's record and
//! what its instances produced together (`StepOutput::fan_in`). Instances
//! write their own records after telling the fan they ended, and those
//! writes are handed back with the step's end, so dependents start while
//! they land (as for any step).

use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::{HandoffStore, RunId};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ProgressEvent;
use super::job::{self, EndsEarly, Job, Scope, StepDone};
use super::runner::Event;
use crate::error::ExecError;
use crate::model::{ForEach, Join, Step};
use crate::run::{
    AttemptStatus, FanOutRecord, InstanceCounts, InstanceOf, StepRecord, StepStatus,
    instance_label, instance_record_id, put_step, read_step, sha256,
};
use crate::template::{Context, Instance, StepOutput};

/// How a `for_each` step is started.
pub(super) struct Start<'a> {
    /// What the run shares.
    pub(super) scope: Scope<'a>,
    pub(super) step: &'a Step,
    pub(super) fan: &'a ForEach,
    /// The step's position in the plan.
    pub(super) at: usize,
    /// The step's record as the loop has it.
    pub(super) rec: &'a StepRecord,
    /// Its dependencies' outputs and the inputs.
    pub(super) ctx: Context,
    /// On resume: read what each instance's record says (an earlier
    /// process may have sent and ended some).
    pub(super) resume: bool,
    /// `resume --retry-failed` gave the step a fresh start: its failed
    /// and cancelled instances start again (completed ones stay).
    pub(super) restarted: bool,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) run_slots: Option<Arc<Semaphore>>,
}

/// The `Fan` of a ready `for_each` step, its record to keep meanwhile, or
/// why it ends before anything is sent (no items, too many, fewer than
/// its join needs, items changed since an earlier process started it).
pub(super) async fn prepare(
    s: Start<'_>,
) -> Result<Result<(Fan, StepRecord), EndsEarly>, ExecError> {
    let Start {
        scope,
        step,
        fan,
        at,
        rec,
        ctx,
        resume,
        restarted,
        events,
        run_slots,
    } = s;
    let id = step.id.as_str();
    let failed = |reason: String| Ok(Err(EndsEarly::failed(reason)));
    let items = match fan.items_in(&ctx) {
        Ok(items) => items,
        Err(e) => return failed(format!("`for_each`: {e}")),
    };
    if items.is_empty() {
        return failed("`for_each` gives no items".to_owned());
    }
    if items.len() > fan.max_items {
        return failed(format!(
            "`for_each` gives {} items, more than its `max_items` of {}",
            items.len(),
            fan.max_items
        ));
    }
    if let Join::Min(n) = fan.join
        && n > items.len()
    {
        return failed(format!(
            "`join: {{ min: {n} }}` needs {n} instances to complete, and `for_each` gives {}",
            items.len()
        ));
    }
    let items_sha256 = sha256(&serde_json::to_string(&items).unwrap_or_default());
    if let Some(before) = &rec.fan_out
        && before.items_sha256 != items_sha256
    {
        return failed(
            "its items are not the ones it started with (a step they are read from changed): its instances cannot be taken up".to_owned(),
        );
    }
    let mut slots = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let record_id = instance_record_id(id, index);
        let earlier = if resume {
            read_step(&*scope.exec.store, scope.wf_run, &record_id).await?
        } else {
            None
        };
        let mut ictx = ctx.clone();
        ictx.item = Some((fan.name.clone(), item.clone()));
        slots.push(instance_slot(
            &scope, step, index, item, earlier, restarted, ictx,
        ));
    }
    let mut rec = rec.clone();
    rec.status = StepStatus::Running;
    rec.agent = match &step.target {
        crate::model::Target::Agent(a) => Some(a.clone()),
        crate::model::Target::Route | crate::model::Target::Workflow(_) => None,
    };
    let started = *rec.started.get_or_insert_with(jiff::Timestamp::now);
    let counts = InstanceCounts {
        total: u32::try_from(items.len()).unwrap_or(u32::MAX),
        ..InstanceCounts::default()
    };
    rec.fan_out = Some(FanOutRecord {
        items_sha256,
        instances: counts,
    });
    // `min` keeps what arrived by the step's deadline, counted from when
    // the step first started.
    let deadline = match fan.join {
        Join::Min(_) => {
            let timeout = jiff::SignedDuration::try_from(scope.wf.timeout_of(step))
                .unwrap_or(jiff::SignedDuration::MAX);
            let left = (started + timeout).duration_since(jiff::Timestamp::now());
            Some(tokio::time::Instant::now() + Duration::try_from(left).unwrap_or_default())
        }
        Join::All | Join::Any => None,
    };
    let out = Fan {
        rec: rec.clone(),
        at,
        items,
        slots,
        join: fan.join,
        max_parallel: fan.max_parallel,
        run_slots,
        deadline,
        approval: step.gate.as_ref().is_some_and(|g| g.approval),
        gate_status: step
            .gate
            .as_ref()
            .map(|g| g.status.clone())
            .unwrap_or_default(),
        run_cancel: scope.cancel.clone(),
        store: Arc::clone(&scope.exec.store),
        wf_run: scope.wf_run.clone(),
        events,
        progress: scope.exec.progress.clone(),
    };
    Ok(Ok((out, rec)))
}

/// Instance `index` (item `item`, task context `ctx`): ended as an
/// earlier process recorded it, taken up (`running`: re-awaited), or
/// started; a task that cannot be rendered or sent ends it failed.
fn instance_slot(
    scope: &Scope<'_>,
    step: &Step,
    index: usize,
    item: &str,
    earlier: Option<StepRecord>,
    restarted: bool,
    ctx: Context,
) -> Slot {
    let of = InstanceOf {
        step: step.id.clone(),
        index: u32::try_from(index).unwrap_or(u32::MAX),
        item: item.to_owned(),
    };
    let mut rec = earlier.unwrap_or_else(|| StepRecord::new(&instance_record_id(&step.id, index)));
    if restarted && (rec.retryable() || rec.status == StepStatus::Skipped) {
        rec.restart();
    }
    rec.instance = Some(of);
    let reawait = match rec.status {
        StepStatus::Completed | StepStatus::Failed | StepStatus::Rejected | StepStatus::Skipped => {
            return Slot::Ended(Box::new(rec));
        }
        StepStatus::Running | StepStatus::AwaitingApproval => {
            rec.status = StepStatus::Running;
            true
        }
        StepStatus::Pending => false,
    };
    if !reawait {
        match job::agent_and_task(scope, step, &ctx) {
            Ok((agent, task)) => {
                rec.status = StepStatus::Running;
                rec.agent = Some(agent);
                rec.set_rendered_task(task);
                rec.started = Some(jiff::Timestamp::now());
            }
            Err(end) => {
                let now = jiff::Timestamp::now();
                rec.status = end.status;
                rec.reason = Some(end.reason);
                rec.started = Some(now);
                rec.finished = Some(now);
                return Slot::Ended(Box::new(rec));
            }
        }
    }
    let mut job = Job::new(scope, step, &rec, reawait);
    if step.repeat.is_some() {
        job.render_with(step, ctx);
    }
    Slot::Run(Box::new(job))
}

/// A `for_each` step that ended (completed, or awaiting approval) in an
/// earlier process: what its instances produced together, read back from
/// their records and handoffs, for the steps that read it.
pub(super) async fn restore(
    scope: &Scope<'_>,
    step: &Step,
    fan: &ForEach,
    ctx: &Context,
) -> Result<Option<StepOutput>, ExecError> {
    let Ok(items) = fan.items_in(ctx) else {
        return Ok(None);
    };
    let mut ended = Vec::with_capacity(items.len());
    for index in 0..items.len() {
        let rec = read_step(
            &*scope.exec.store,
            scope.wf_run,
            &instance_record_id(&step.id, index),
        )
        .await?
        .unwrap_or_else(|| {
            let mut r = StepRecord::new(&instance_record_id(&step.id, index));
            r.status = StepStatus::Skipped;
            r
        });
        ended.push(rec);
    }
    let completed = ended
        .iter()
        .filter(|r| r.status == StepStatus::Completed)
        .count();
    let counted: Vec<bool> = match fan.join {
        Join::All => vec![true; ended.len()],
        Join::Any | Join::Min(_) => ended
            .iter()
            .map(|r| r.status == StepStatus::Completed)
            .collect(),
    };
    let short = matches!(fan.join, Join::Min(n) if completed < n);
    Ok(Some(StepOutput::fan_in(
        instances_of(&ended, &items),
        &counted,
        short,
    )))
}

/// The instances as templates see them, from their records (in item
/// order) and items.
fn instances_of(ended: &[StepRecord], items: &[String]) -> Vec<Instance> {
    ended
        .iter()
        .zip(items)
        .map(|(rec, item)| Instance {
            item: item.clone(),
            outcome: outcome(rec).to_owned(),
            output: rec
                .handoff
                .as_ref()
                .filter(|_| rec.status == StepStatus::Completed)
                .map(StepOutput::from_handoff),
        })
        .collect()
}

/// One instance, as the loop hands it to the fan.
pub(super) enum Slot {
    /// To run (or, on resume, to take up).
    Run(Box<Job>),
    /// Already ended: its record (with its handoff, if it has one).
    Ended(Box<StepRecord>),
}

/// An instance's end, as the fan hears it.
struct Report {
    index: usize,
    rec: StepRecord,
    /// The run was cancelled under it (its record stays `running`).
    cancelled: bool,
}

/// A `for_each` step's task.
pub(super) struct Fan {
    /// The step's record: running, with its `fan_out`.
    pub(super) rec: StepRecord,
    /// The step's position in the plan (for the loop's events).
    pub(super) at: usize,
    pub(super) items: Vec<String>,
    pub(super) slots: Vec<Slot>,
    pub(super) join: Join,
    /// The step's own `max_parallel`.
    pub(super) max_parallel: Option<usize>,
    /// The run's `max_parallel`, shared by every step.
    pub(super) run_slots: Option<Arc<Semaphore>>,
    /// `join: { min }`: when what arrived is kept.
    pub(super) deadline: Option<tokio::time::Instant>,
    /// A human approves the step once its instances joined.
    pub(super) approval: bool,
    /// The step's gate statuses (empty: complete or partial), for a `min`
    /// join that ended short.
    pub(super) gate_status: Vec<orch_delegate::orch_handoff::Status>,
    /// The run's token (a Ctrl-C, a cancel).
    pub(super) run_cancel: CancellationToken,
    pub(super) store: Arc<dyn HandoffStore>,
    pub(super) wf_run: RunId,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) progress: Option<Arc<dyn super::Progress>>,
}

/// The instances' record writes still in flight when the step ended.
pub(super) type Writes = JoinSet<Result<(), ExecError>>;

impl Fan {
    /// Runs the instances to the step's end (or the run's cancellation).
    /// They start in item order, each once it holds a slot of its step's
    /// `max_parallel` and of the run's.
    pub(super) async fn run(mut self) -> (StepDone, Writes) {
        let total = self.items.len();
        let step = self.rec.step.clone();
        // The join's own token: cancels the instances it no longer needs.
        let joined = self.run_cancel.child_token();
        let per_step = Arc::new(Semaphore::new(
            self.max_parallel
                .unwrap_or(Semaphore::MAX_PERMITS)
                .min(Semaphore::MAX_PERMITS),
        ));
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        let mut writes: Writes = JoinSet::new();
        let mut ended: Vec<Option<StepRecord>> = (0..total).map(|_| None).collect();
        let mut counts = InstanceCounts {
            total: u32::try_from(total).unwrap_or(u32::MAX),
            ..InstanceCounts::default()
        };
        let mut waiting: std::collections::VecDeque<(usize, Job)> = Default::default();
        for (index, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            match slot {
                Slot::Ended(rec) => {
                    count(&mut counts, &rec);
                    ended[index] = Some(*rec);
                }
                Slot::Run(job) => waiting.push_back((index, *job)),
            }
        }
        self.emit(ProgressEvent::FannedOut {
            step: step.clone(),
            items: total,
            join: self.join.describe(),
        });
        self.tell(counts);

        let (mut started, mut heard) = (0usize, 0usize);
        let mut cancelled = false;
        let mut by_deadline = false;
        let deadline = self.deadline;
        loop {
            if !joined.is_cancelled() && self.met(&counts) {
                joined.cancel();
            }
            if joined.is_cancelled() && !waiting.is_empty() {
                // Not started and no longer needed (or the run was
                // cancelled: they stay pending for resume).
                for (index, job) in waiting.drain(..) {
                    if self.run_cancel.is_cancelled() {
                        continue;
                    }
                    let mut rec = job.record().clone();
                    if rec.attempts.is_empty() {
                        rec.status = StepStatus::Skipped;
                        rec.reason = Some(format!("not sent: {JOIN_MET}"));
                    } else {
                        // Taken up on resume, then no longer needed.
                        stop(&mut rec, JOIN_MET);
                        let (store, run, rec) =
                            (Arc::clone(&self.store), self.wf_run.clone(), rec.clone());
                        writes.spawn(async move { put_step(&*store, &run, &rec).await });
                    }
                    count(&mut counts, &rec);
                    ended[index] = Some(rec);
                }
                self.tell(counts);
            }
            if waiting.is_empty() && heard == started {
                break;
            }
            let acquire = async {
                let step = Arc::clone(&per_step).acquire_owned().await.ok();
                let run = match &self.run_slots {
                    Some(s) => Arc::clone(s).acquire_owned().await.ok(),
                    None => None,
                };
                (step, run)
            };
            tokio::select! {
                held = acquire, if !waiting.is_empty() && !joined.is_cancelled() => {
                    let Some((index, job)) = waiting.pop_front() else { continue };
                    started += 1;
                    writes.spawn(instance(
                        index,
                        job,
                        held,
                        joined.clone(),
                        self.run_cancel.clone(),
                        deadline,
                        tx.clone(),
                        Arc::clone(&self.store),
                        self.wf_run.clone(),
                    ));
                }
                report = rx.recv(), if heard < started => {
                    let Some(report) = report else { break };
                    heard += 1;
                    cancelled |= report.cancelled;
                    if !report.cancelled {
                        self.finished(&report);
                    }
                    count(&mut counts, &report.rec);
                    ended[report.index] = Some(report.rec);
                    self.tell(counts);
                }
                () = sleep_until(deadline), if !joined.is_cancelled() => {
                    // `min`: what arrived by the step's deadline is kept.
                    by_deadline = true;
                    joined.cancel();
                }
            }
        }
        if cancelled || self.run_cancel.is_cancelled() {
            self.rec.fan_out_counts(counts);
            return (
                StepDone {
                    rec: self.rec,
                    cancelled: true,
                },
                writes,
            );
        }
        let ended: Vec<StepRecord> = ended
            .into_iter()
            .enumerate()
            .map(|(index, rec)| {
                // Not reached: only a run that stopped leaves one.
                rec.unwrap_or_else(|| StepRecord::new(&instance_record_id(&step, index)))
            })
            .collect();
        self.conclude(&ended, counts, by_deadline);
        (
            StepDone {
                rec: self.rec,
                cancelled: false,
            },
            writes,
        )
    }

    /// Tells the live view that an instance ended.
    fn finished(&self, report: &Report) {
        let label = instance_label(&self.rec.step, report.index);
        let rec = &report.rec;
        match rec.status {
            StepStatus::Skipped => self.emit(ProgressEvent::Skipped {
                step: label,
                reason: rec.reason.clone().unwrap_or_default(),
            }),
            status => self.emit(ProgressEvent::Finished {
                step: label,
                status,
                elapsed: rec
                    .started
                    .zip(rec.finished)
                    .and_then(|(s, f)| Duration::try_from(f.duration_since(s)).ok())
                    .unwrap_or_default(),
            }),
        }
    }

    /// Whether the join is met by `counts` (or can never be: `min` with
    /// every instance ended).
    fn met(&self, counts: &InstanceCounts) -> bool {
        match self.join {
            Join::All => false,
            Join::Any => counts.completed >= 1,
            Join::Min(n) => counts.completed as usize >= n || counts.open() == 0,
        }
    }

    /// The step's outcome from its instances' `ended` records (in item
    /// order); `by_deadline`: a `min` join stopped at the step's deadline.
    fn conclude(&mut self, ended: &[StepRecord], counts: InstanceCounts, by_deadline: bool) {
        let step = self.rec.step.clone();
        let completed = counts.completed as usize;
        let instances = instances_of(ended, &self.items);
        // What the step's status and confidence are made of: every
        // instance's for `all`, the completed ones' for `any` and `min`.
        let counted: Vec<bool> = match self.join {
            Join::All => vec![true; ended.len()],
            Join::Any | Join::Min(_) => ended
                .iter()
                .map(|r| r.status == StepStatus::Completed)
                .collect(),
        };
        let short = matches!(self.join, Join::Min(n) if completed < n);
        let ok = match self.join {
            Join::All => counts.failed == 0,
            Join::Any | Join::Min(_) => completed >= 1,
        };
        let deadline = if by_deadline {
            " by the step's deadline"
        } else {
            ""
        };
        let output = StepOutput::fan_in(instances, &counted, short);
        self.rec.fan_out_counts(counts);
        self.rec.finished = Some(jiff::Timestamp::now());
        self.rec.fanned = Some(output);
        if !ok {
            let failed = failures(&step, ended, counts.failed);
            self.rec.status = StepStatus::Failed;
            self.rec.reason = Some(match self.join {
                Join::All => failed,
                Join::Any | Join::Min(_) => format!("no instance completed{deadline}: {failed}"),
            });
            return;
        }
        if short {
            let need = match self.join {
                Join::Min(n) => n,
                Join::All | Join::Any => completed,
            };
            let what = format!(
                "{completed} of the {need} instances `join: {{ min: {need} }}` needs completed{deadline}"
            );
            // A short join is `partial`: it passes only a gate that takes
            // that (no gate statuses: complete or partial).
            if !self.gate_status.is_empty()
                && !self
                    .gate_status
                    .contains(&orch_delegate::orch_handoff::Status::Partial)
            {
                let want: Vec<&str> = self.gate_status.iter().map(|s| s.as_str()).collect();
                self.rec.status = StepStatus::Failed;
                self.rec.reason = Some(format!(
                    "gate: status partial ({what}) is not one of {}",
                    want.join(", ")
                ));
                return;
            }
            self.rec.reason = Some(format!("{what}: its result is partial"));
        }
        self.rec.status = if self.approval {
            StepStatus::AwaitingApproval
        } else {
            StepStatus::Completed
        };
    }

    /// Tells the loop (for the summary) and the live view how the
    /// instances stand.
    fn tell(&self, counts: InstanceCounts) {
        let _ = self.events.send(Event::Instances {
            at: self.at,
            counts,
        });
        self.emit(ProgressEvent::Instances {
            step: self.rec.step.clone(),
            counts,
        });
    }

    fn emit(&self, e: ProgressEvent) {
        if let Some(p) = &self.progress {
            p.event(&e);
        }
    }
}

impl StepRecord {
    /// Sets a `for_each` step's instance counts.
    fn fan_out_counts(&mut self, counts: InstanceCounts) {
        if let Some(f) = &mut self.fan_out {
            f.instances = counts;
        }
    }
}

/// Adds an ended instance's record to `counts`.
fn count(counts: &mut InstanceCounts, rec: &StepRecord) {
    match rec.status {
        StepStatus::Completed => counts.completed += 1,
        StepStatus::Failed | StepStatus::Rejected => counts.failed += 1,
        StepStatus::Skipped => counts.cancelled += 1,
        StepStatus::Pending | StepStatus::Running | StepStatus::AwaitingApproval => {}
    }
}

/// How an instance ended, as `{{ steps.ID.statuses }}` says it.
fn outcome(rec: &StepRecord) -> &'static str {
    match rec.status {
        StepStatus::Completed => rec
            .handoff
            .as_ref()
            .map_or("complete", |h| h.status.as_str()),
        StepStatus::Failed | StepStatus::Rejected => "failed",
        StepStatus::Skipped => "cancelled",
        StepStatus::Pending | StepStatus::Running | StepStatus::AwaitingApproval => "pending",
    }
}

/// `2 of 5 instances failed: research[1]: …; research[3]: …` (the first
/// three named).
fn failures(step: &str, ended: &[StepRecord], failed: u32) -> String {
    let named: Vec<String> = ended
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.status, StepStatus::Failed | StepStatus::Rejected))
        .take(3)
        .map(|(i, r)| {
            format!(
                "{}: {}",
                instance_label(step, i),
                crate::run::cut(r.reason.as_deref().unwrap_or("failed"), 300)
            )
        })
        .collect();
    let more = (failed as usize).saturating_sub(named.len());
    format!(
        "{failed} of {} instance{} failed: {}{}",
        ended.len(),
        if ended.len() == 1 { "" } else { "s" },
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One instance's task, once it holds its slots (`held`: released when
/// its job ends): runs its job, tells the fan how it ended, then writes
/// its record. Stopped by the join (the run goes on), it is `skipped`,
/// never failed.
#[allow(clippy::too_many_arguments)]
async fn instance(
    index: usize,
    mut job: Job,
    held: (
        Option<tokio::sync::OwnedSemaphorePermit>,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ),
    joined: CancellationToken,
    run_cancel: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    tx: mpsc::UnboundedSender<Report>,
    store: Arc<dyn HandoffStore>,
    wf_run: RunId,
) -> Result<(), ExecError> {
    job.cancel_with(joined);
    let done = job.run().await;
    drop(held);
    let mut rec = done.rec;
    let run_cancelled = done.cancelled && run_cancel.is_cancelled();
    // An instance that timed out as its step's deadline (`join: { min }`)
    // came was stopped by it, like those still running then.
    let at_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
        && rec.status == StepStatus::Failed
        && rec
            .attempts
            .last()
            .is_some_and(|a| a.status == AttemptStatus::TimedOut);
    if at_deadline {
        stop(
            &mut rec,
            "its step's deadline came first (`join: { min }` keeps what arrived)",
        );
    } else if done.cancelled && !run_cancelled {
        stop(&mut rec, JOIN_MET);
    }
    let _ = tx.send(Report {
        index,
        rec: rec.clone(),
        cancelled: run_cancelled,
    });
    put_step(&*store, &wf_run, &rec).await
}

/// Why an instance stopped by its step's join is: the join was met.
const JOIN_MET: &str = "its step's `join` was met without it";

/// Marks an instance its step no longer needs (`why`): `skipped`, never
/// failed; its delegation in flight `cancelled`.
fn stop(rec: &mut StepRecord, why: &str) {
    if let Some(a) = rec.attempts.last_mut()
        && a.status == AttemptStatus::Running
    {
        a.status = AttemptStatus::Cancelled;
        a.finished = Some(jiff::Timestamp::now());
        a.detail = Some(format!("cancelled: {why}"));
    }
    rec.status = StepStatus::Skipped;
    rec.reason = Some(format!("cancelled: {why}"));
    rec.finished = Some(jiff::Timestamp::now());
}
