//! The executor: runs a workflow's steps through a [`Delegator`], stores
//! every state change, and resumes killed or paused runs.
//!
//! # The loop
//!
//! [`Executor::run`] is one loop over a closed [`Event`] enum read from a
//! channel: `StepFinished` (sent by the task that ran a step's
//! delegations), `ApprovalArrived` (sent by the task that asked the
//! [`Approver`]) and `Cancelled` (the token fired). Step and approval tasks
//! live in `JoinSet`s owned by the loop, so dropping the run future aborts
//! them. Each turn applies every event that has arrived, then starts every
//! ready step (as [`Plan::ready`](crate::Plan::ready) defines it; only the
//! dependents of steps that ended are looked at), up to `max_parallel`: a
//! step starts the moment its own dependencies ended, never level by level.
//! Among steps ready in the same turn, the one with the longest chain of
//! steps after it goes first (its dispatch, its `max_parallel` slot): with
//! durations unknown, that is the best guess of the critical path.
//! The agents' `maxConcurrent` is the [`Delegator`]'s to enforce. The loop
//! never waits for a store write of a running step: step tasks write their
//! own records.
//!
//! # Per step
//!
//! - **Dependencies**: a step whose dependency did not complete (skipped,
//!   failed, rejected) is skipped too, with the reason `dependency X was
//!   skipped` / `… failed`. So templates never read a missing step.
//! - **`when`** false: skipped with the reason `when \`…\` is false`; it
//!   counts as ended for scheduling.
//! - **Task**: rendered with the inputs, the outputs of completed steps
//!   and `run.id`; `context:` is fetched through the [`ContextSource`];
//!   `route: auto` asks the [`StepRouter`] (none configured: refused at
//!   start).
//! - **Attempts**: each delegation gets a derived run id,
//!   `<wfRunId>.<step>.<n>` ([`attempt_run_id`]). An outcome `failed` or
//!   `timed-out`, or a transport error, is retried up to
//!   [`Workflow::retries_of`] times after a backoff of
//!   [`Executor::with_retry_base`] (default 1 s) doubling each time
//!   (`tokio::time::sleep`).
//! - **Gate**: the handoff's status must be in `gate.status` (no gate, or
//!   an empty list: `complete` or `partial`) and its confidence at least
//!   `gate.min_confidence` (absent confidence counts as `low`). A failure
//!   of the attempts or of the gate applies `on_failure`: `stop` starts no
//!   new step (running ones finish; the run ends `failed`), `continue` lets
//!   independent steps go on (the run ends `completed-with-failures`).
//! - **Approval** (`gate.approval`, after a passing gate): the [`Approver`]
//!   is asked with the step's output; without one (non-interactive) the
//!   step waits as `awaiting-approval`, and when nothing else can run the
//!   run returns with that status. [`approve`](crate::approve) records the
//!   decision; [`Executor::resume`] applies it. A rejection is a failure.
//!
//! # Storage and resume
//!
//! Step records (`workflows/<wfRunId>/<step>.json`) are written by the
//! step's task when it ends (after the loop heard of it, so dependents
//! start meanwhile; an `awaiting-approval` record is written first), when
//! a retry starts (at the same time as its dispatch: the record keeps how
//! the earlier attempts ended), and when resume gives up on a lost
//! delegation. No record write is on a step's critical path: each costs
//! two fsyncs, and the disk is shared by every parallel step and by the
//! agents' own handoff writes. None is needed for a crash to lose nothing:
//! a delegation sent but not yet recorded is found by its derived id in the
//! ledger (appended before the dispatch), and an outcome not yet recorded is
//! re-derived from its handoff, which the agent wrote durably. The
//! summary, with the workflow's
//! YAML so resume does not depend on the file, is handed to one writer
//! task after every turn (the latest version wins) and nothing waits for
//! it mid-run (waiting put a summary fsync on every step's critical path);
//! the final summary is written and awaited before the run returns, so the
//! stored summary is the returned one. Resume takes step states from the
//! step records, never from the summary. [`Executor::resume`] reloads
//! both: completed,
//! skipped, failed and rejected steps stay as they are; a step recorded
//! `running` ends, in this order: with its handoff if one landed (looked up
//! by its last delegation run id: it may have landed while nobody waited);
//! as the ledger says if the earlier process recorded the delegation's end
//! (`timeout`, `failed`: the try counts, nothing is waited for: a final
//! record lost to a full disk is not mistaken for a delegation in flight);
//! `lost` at once if its agent's transport does not outlive the sender
//! ([`Transport::outlives_sender`]: sim tasks and exec process groups die
//! with orch) or its deadline passed; else it is re-awaited for what
//! remained of its deadline ([`ProgressEvent::Reawaiting`] says which, since
//! when and until when) and is `lost` if nothing came. A `lost` delegation
//! ([`ProgressEvent::Lost`]) does not use up a retry and is sent again as
//! the *next* derived id (`<wfRunId>.<step>.<n+1>`), so a new
//! `Idempotency-Key`: the old id may still get a late handoff, which must
//! not be taken for the new delegation's, and a gateway must not drop the
//! re-send as a duplicate of a delegation that is gone. Before any attempt
//! is sent, its derived id is looked up in the ledger's `dispatched` lines
//! (read once per resume, with each delegation's ending line) and in the
//! store: one that an earlier process sent is treated the same way, not
//! sent again.
//!
//! # Sizes
//!
//! A task is rendered with [`Template::render_within`] against its agent's
//! transport: [`Transport::max_task_bytes`] bounds the whole message, so
//! the Delegator's instructions around the task
//! ([`Delegator::message_bytes`]) and room for a re-ask are taken off
//! first. Rendering stops the moment the limit is passed; the step fails
//! naming the agent, the size and the references that grew it, and
//! nothing of that size is built, sent or stored. Before a send, the
//! whole message (with any `context:`) is measured again. At start, the
//! parts of every task known before the run (text and inputs) are checked
//! ([`check_task_sizes`](crate::check_task_sizes)), and so is the largest
//! size the summary and a step record can reach against
//! [`HandoffStore::max_record_bytes`]: a run that could write a record
//! resume cannot read is refused before anything is stored. Records stay
//! small by construction (see `run.rs`): the handoff is named, not copied;
//! a task over [`TASK_KEPT`](crate::TASK_KEPT) bytes is stored cut with its
//! size and SHA-256 and rendered again (and checked against both) when
//! resume must send it again; reasons and details are cut; at most
//! [`ATTEMPTS_KEPT`](crate::ATTEMPTS_KEPT) attempts are listed. A run's
//! `output` is kept up to an eighth of the record limit (at most 1 MiB);
//! when it is missing, [`RunSummary::output_note`] says why.
//!
//! Cancellation: the token is passed to every delegation; the run is
//! stored as `cancelled`, its running steps stay `running` (resume
//! re-awaits them, or sends again what died with the cancelled process).
//!
//! [`Transport::outlives_sender`]: orch_delegate::Transport::outlives_sender
//! [`Transport::max_task_bytes`]: orch_delegate::Transport::max_task_bytes
//! [`Template::render_within`]: crate::Template::render_within

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_delegate::orch_handoff::{
    Confidence, Handoff, HandoffKey, HandoffStore, LedgerEventKind, MAX_ID_LEN, RunId, Status,
    StoreError, WaitOutcome,
};
use orch_delegate::{DelegateError, Delegator, OutcomeStatus, Request};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{RenderError, TooLarge, WorkflowError};
use crate::model::{ContextSpec, OnFailure, Target, Workflow};
use crate::run::{
    ApprovalDecision, Attempt, GateDecision, REASON_KEPT, RunStatus, RunSummary,
    SUMMARY_REASON_KEPT, StepRecord, StepStatus, StepSummary, attempt_run_id, put_step,
    put_summary, read_step, read_summary,
};
use crate::template::{Context, StepOutput, confidence_str, status_str};
use crate::validate::ResolvedInputs;

/// Asks a human whether a step's result may go on.
#[async_trait]
pub trait Approver: Send + Sync {
    /// The decision on `step`, whose result is `output`.
    async fn approve(&self, step: &str, output: &StepOutput) -> ApprovalDecision;
}

/// Picks the agent of a `route: auto` step.
pub trait StepRouter: Send + Sync {
    /// The agent for `task` delegated by `caller`; `None`: nothing fits.
    fn route(&self, task: &str, caller: &str) -> Option<String>;
}

/// Renders a step's `context:` (a channel's recent messages).
#[async_trait]
pub trait ContextSource: Send + Sync {
    /// The last `messages` messages of `channel`, rendered; `Err` says why
    /// not.
    async fn fetch(&self, channel: &str, messages: usize) -> Result<String, String>;
}

/// What a live view is told.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A delegation of the step was sent.
    Started {
        /// The step.
        step: String,
        /// Its agent.
        agent: String,
        /// 1 for the first delegation.
        attempt: u32,
    },
    /// An attempt failed; another follows after `delay`.
    Retrying {
        /// The step.
        step: String,
        /// The attempt that follows.
        attempt: u32,
        /// The backoff.
        delay: Duration,
    },
    /// The step ended (completed, failed or rejected).
    Finished {
        /// The step.
        step: String,
        /// How.
        status: StepStatus,
        /// Since it started.
        elapsed: Duration,
    },
    /// The step was skipped.
    Skipped {
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
    /// The step passed its gate and waits for a human.
    AwaitingApproval {
        /// The step.
        step: String,
    },
    /// Resume: a delegation an earlier process sent can still answer, and
    /// is waited for until its deadline before anything is sent again.
    Reawaiting {
        /// The step.
        step: String,
        /// Its agent.
        agent: String,
        /// Which delegation of the step (1 for the first).
        attempt: u32,
        /// When it was sent.
        since: jiff::Timestamp,
        /// Its deadline: when it is sent again if nothing came.
        until: jiff::Timestamp,
    },
    /// Resume: a delegation an earlier process sent cannot answer any more
    /// (or never will: its deadline passed); the step is sent again now as
    /// a new delegation, which does not use up a retry.
    Lost {
        /// The step.
        step: String,
        /// Which delegation of the step was lost.
        attempt: u32,
        /// Why it cannot answer.
        reason: String,
    },
}

/// Observes a run (for a live view).
pub trait Progress: Send + Sync {
    /// Called on each event, from the run loop or a step task.
    fn event(&self, e: &ProgressEvent);
}

/// Why a run could not be carried out (a failing step is not an error: it
/// is in the [`RunSummary`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored record does not read back.
    #[error("workflow run {run_id}: stored record is corrupt: {message}")]
    Corrupt {
        /// The run.
        run_id: RunId,
        /// What is wrong.
        message: String,
    },
    /// No such run.
    #[error("no workflow run {run_id} in the store")]
    NotFound {
        /// The run asked for.
        run_id: RunId,
    },
    /// The workflow stored with the run no longer loads.
    #[error("workflow stored with the run: {0}")]
    Workflow(WorkflowError),
    /// The run cannot start: a step's task can never fit what its agent's
    /// transport delivers ([`check_task_sizes`](crate::check_task_sizes)).
    #[error("{0}")]
    Refused(WorkflowError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}

/// How to resume a run.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Also start again the steps that failed or were rejected (and those
    /// skipped because of them).
    pub retry_failed: bool,
}

/// How to start a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Who runs it (checked by the ACL on every delegation).
    pub caller: String,
    /// Input values, defaults applied (from [`check_run`](crate::check_run)).
    pub inputs: ResolvedInputs,
    /// The run id (default: [`RunId::generate_workflow`]).
    pub run_id: Option<RunId>,
}

/// The closed set of things the run loop reacts to.
#[derive(Debug)]
enum Event {
    StepFinished {
        step: String,
        done: Box<StepDone>,
    },
    ApprovalArrived {
        step: String,
        decision: ApprovalDecision,
    },
    /// The summary writer can take the next summary.
    SummaryDue,
    Cancelled,
}

#[derive(Debug)]
struct StepDone {
    rec: StepRecord,
    cancelled: bool,
}

/// Delegations an earlier process dispatched for this run, by run id (from
/// the ledger; read once, on resume).
type Dispatched = Arc<HashMap<RunId, Sent>>;

/// What the ledger says of one delegation an earlier process sent.
#[derive(Clone, Debug)]
struct Sent {
    /// Its `dispatched` line.
    at: jiff::Timestamp,
    /// Its last line that ends a delegation (`handoff`, `timeout`,
    /// `failed`, `cancelled`), with the line's detail.
    end: Option<(LedgerEventKind, Option<String>)>,
}

/// Room left in a task message for a re-ask's "asked again" block, which
/// the Delegator adds around the task on a second ask.
const REASK_HEADROOM: u64 = 2 * 1024;

/// The share of the store's record limit a run's `output` may take in the
/// summary (and never more than [`OUTPUT_KEPT`]).
const OUTPUT_SHARE: u64 = 8;

/// Largest `output` stored in a run summary.
const OUTPUT_KEPT: u64 = 1024 * 1024;

/// The latest summary to store, with its version.
type Published = Option<(u64, RunSummary)>;

/// At most one mid-run summary write per this long: the summary is for
/// people watching (`workflow status`); resume trusts the step records.
/// Written as often as it changes, its fsyncs would compete with every
/// step's on the one disk, and building it (every step, the workflow's
/// YAML) on every turn of the loop would cost the loop time.
const SUMMARY_EVERY: Duration = Duration::from_millis(100);

/// The summary writer: stores each summary the loop publishes, then pauses
/// [`SUMMARY_EVERY`] and tells the loop it may publish again
/// ([`Event::SummaryDue`]): the loop builds a summary only when one can be
/// written. Ends when the publisher is dropped (even mid-pause: the loop
/// then stores the final summary itself), or on the first failed write.
/// Nothing waits for it.
async fn write_summaries(
    store: Arc<dyn HandoffStore>,
    mut rx: watch::Receiver<Published>,
    due: mpsc::UnboundedSender<Event>,
) -> Result<(), ExecError> {
    loop {
        if rx.changed().await.is_err() {
            return Ok(());
        }
        let next = rx.borrow_and_update().clone();
        if let Some((_, s)) = next {
            put_summary(&*store, &s).await?;
        }
        tokio::select! {
            () = tokio::time::sleep(SUMMARY_EVERY) => {}
            r = rx.changed() => if r.is_err() {
                return Ok(());
            },
        }
        if due.send(Event::SummaryDue).is_err() {
            return Ok(());
        }
    }
}

/// Runs workflows (see the module docs).
#[derive(Clone)]
pub struct Executor {
    delegator: Arc<Delegator>,
    store: Arc<dyn HandoffStore>,
    approver: Option<Arc<dyn Approver>>,
    router: Option<Arc<dyn StepRouter>>,
    context: Option<Arc<dyn ContextSource>>,
    progress: Option<Arc<dyn Progress>>,
    retry_base: Duration,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("delegator", &self.delegator)
            .field("interactive", &self.approver.is_some())
            .field("retry_base", &self.retry_base)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor over `delegator` (and its store), non-interactive, with
    /// no router, no context source and no progress observer.
    pub fn new(delegator: Arc<Delegator>) -> Self {
        let store = Arc::clone(delegator.store());
        Self {
            delegator,
            store,
            approver: None,
            router: None,
            context: None,
            progress: None,
            retry_base: Duration::from_secs(1),
        }
    }

    /// Asks `approver` at approval gates (interactive runs).
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// Routes `route: auto` steps with `router`.
    pub fn with_router(mut self, router: Arc<dyn StepRouter>) -> Self {
        self.router = Some(router);
        self
    }

    /// Fetches `context:` with `source`.
    pub fn with_context_source(mut self, source: Arc<dyn ContextSource>) -> Self {
        self.context = Some(source);
        self
    }

    /// Tells `progress` what happens.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The first retry backoff (doubled for each further retry).
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// The store runs are kept in.
    pub fn store(&self) -> &Arc<dyn HandoffStore> {
        &self.store
    }

    /// [`check_task_sizes`](crate::check_task_sizes) against this
    /// executor's agents: every error, before a run is started.
    pub fn check_task_sizes(
        &self,
        wf: &Workflow,
        inputs: &ResolvedInputs,
        caller: &str,
    ) -> Result<(), Vec<WorkflowError>> {
        crate::check_task_sizes(wf, inputs, &self.delegator, caller)
    }

    /// Runs `wf` (loaded from `source`, its YAML text) to its end, a pause
    /// for approval, or cancellation.
    pub async fn run(
        &self,
        wf: &Workflow,
        source: &str,
        opts: RunOptions,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, ExecError> {
        self.check_router(wf)?;
        let run_id = opts
            .run_id
            .unwrap_or_else(|| RunId::generate_workflow(&wf.name));
        if self
            .store
            .get_workflow_record(
                &run_id,
                &orch_delegate::orch_handoff::WorkflowRecord::Summary,
            )
            .await?
            .is_some()
        {
            return Err(ExecError::Usage(format!(
                "workflow run {run_id} already exists: use resume"
            )));
        }
        let recs: BTreeMap<String, StepRecord> = wf
            .steps
            .iter()
            .map(|s| (s.id.clone(), StepRecord::new(&s.id)))
            .collect();
        let summary = RunSummary {
            schema: 1,
            run_id,
            workflow: wf.name.clone(),
            origin: wf.origin().to_owned(),
            source: source.to_owned(),
            status: RunStatus::Running,
            caller: opts.caller,
            inputs: opts.inputs.into_map(),
            steps: recs
                .iter()
                .map(|(k, r)| (k.clone(), StepSummary::of(r)))
                .collect(),
            started: jiff::Timestamp::now(),
            finished: None,
            output: None,
            output_note: None,
        };
        // Nothing is sent for a task that can never fit, nor for a run
        // whose records could outgrow what the store reads back.
        if let Err(mut errors) = crate::validate::check_task_sizes_for(
            wf,
            &summary.inputs,
            &self.delegator,
            &summary.caller,
            &summary.run_id,
        ) {
            return Err(ExecError::Refused(errors.remove(0)));
        }
        self.check_record_sizes(wf, &summary)?;
        // Stored before anything is sent: without it there is no run to
        // resume.
        put_summary(&*self.store, &summary).await?;
        self.drive(wf, summary, recs, None, cancel).await
    }

    /// Continues run `run_id` (killed, cancelled or paused): finished steps
    /// are not re-run, in-flight ones are re-awaited first.
    pub async fn resume(
        &self,
        run_id: &RunId,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, ExecError> {
        self.resume_with(run_id, &ResumeOptions::default(), cancel)
            .await
    }

    /// [`resume`](Self::resume), with options: `retry_failed` also starts
    /// again every step that failed or was rejected, and those skipped
    /// because of them, with a fresh retry budget (completed steps are
    /// never re-run). A run with nothing left to do is returned as stored.
    pub async fn resume_with(
        &self,
        run_id: &RunId,
        opts: &ResumeOptions,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, ExecError> {
        let mut summary = read_summary(&*self.store, run_id).await?;
        let wf = crate::load(&summary.source, &summary.origin).map_err(ExecError::Workflow)?;
        self.check_router(&wf)?;
        let mut recs = BTreeMap::new();
        for s in &wf.steps {
            let rec = read_step(&*self.store, run_id, &s.id)
                .await?
                .unwrap_or_else(|| StepRecord::new(&s.id));
            recs.insert(s.id.clone(), rec);
        }
        if opts.retry_failed {
            for rec in recs.values_mut() {
                if rec.retryable() {
                    rec.restart();
                }
            }
        }
        // Records name their handoff; the store holds it. A step that
        // completed without it cannot feed its dependents.
        for rec in recs.values() {
            if matches!(
                rec.status,
                StepStatus::Completed | StepStatus::AwaitingApproval
            ) && rec.handoff.is_none()
                && let Some(id) = &rec.handoff_run_id
            {
                return Err(ExecError::Corrupt {
                    run_id: run_id.clone(),
                    message: format!(
                        "step `{}` rests on the handoff of delegation {id}, which the store no longer has (or which no longer reads)",
                        rec.step
                    ),
                });
            }
        }
        let stopped = recs.values().any(|r| {
            matches!(r.status, StepStatus::Failed | StepStatus::Rejected)
                && wf
                    .step(&r.step)
                    .is_some_and(|s| wf.on_failure_of(s) == OnFailure::Stop)
        });
        let left = recs.values().any(|r| {
            matches!(r.status, StepStatus::Running | StepStatus::AwaitingApproval)
                || (r.status == StepStatus::Pending && !stopped)
        });
        let ended = matches!(
            summary.status,
            RunStatus::Completed | RunStatus::CompletedWithFailures | RunStatus::Failed
        );
        if ended && !left {
            return Ok(summary);
        }
        summary.status = RunStatus::Running;
        summary.finished = None;
        let dispatched = self.dispatched_before(run_id).await?;
        self.drive(&wf, summary, recs, Some(dispatched), cancel)
            .await
    }

    /// The largest `output` a summary of this store keeps.
    fn output_limit(&self) -> u64 {
        (self.store.max_record_bytes() / OUTPUT_SHARE).min(OUTPUT_KEPT)
    }

    /// Refuses a run whose summary or step records could grow past what
    /// the store reads back ([`HandoffStore::max_record_bytes`]): every
    /// text a record holds is capped, so their largest size is known now.
    fn check_record_sizes(&self, wf: &Workflow, summary: &RunSummary) -> Result<(), ExecError> {
        let cap = self.store.max_record_bytes();
        let longest_agent = self
            .delegator
            .agent_ids()
            .into_iter()
            .map(str::len)
            .chain(wf.steps.iter().map(|s| match &s.target {
                Target::Agent(a) => a.len(),
                Target::Route => 0,
            }))
            .max()
            .unwrap_or(0);
        let output = usize::try_from(self.output_limit()).unwrap_or(usize::MAX);
        let largest = crate::run::largest_summary(summary, longest_agent, output);
        if largest > cap {
            return Err(ExecError::Usage(format!(
                "workflow {}: its run summary (the workflow file, the inputs and {} step{}) could grow to {largest} bytes, more than the {cap} bytes the store keeps in a workflow record: raise the store's handoff size cap (`max_handoff_bytes`; records may be 4 times it) or shorten the workflow or its inputs",
                wf.name,
                wf.steps.len(),
                if wf.steps.len() == 1 { "" } else { "s" }
            )));
        }
        let longest_step = wf.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let largest = crate::run::largest_step_record(&"x".repeat(longest_step), longest_agent);
        if largest > cap {
            return Err(ExecError::Usage(format!(
                "workflow {}: a step record could grow to {largest} bytes, more than the {cap} bytes the store keeps in a workflow record: raise the store's handoff size cap (`max_handoff_bytes`; records may be 4 times it)",
                wf.name
            )));
        }
        Ok(())
    }

    /// Refuses `wf` if it has a `route: auto` step and no router is set.
    fn check_router(&self, wf: &Workflow) -> Result<(), ExecError> {
        match wf.steps.iter().find(|s| s.target == Target::Route) {
            Some(s) if self.router.is_none() => Err(ExecError::Usage(format!(
                "step `{}` uses `route: auto`, but no router is configured",
                s.id
            ))),
            _ => Ok(()),
        }
    }

    /// The delegations of run `run` an earlier process dispatched, from the
    /// ledger: their ids are derived ([`attempt_run_id`]), so one that was
    /// sent but not yet recorded in its step record is found here.
    async fn dispatched_before(&self, run: &RunId) -> Result<Dispatched, ExecError> {
        let prefix = format!("{run}.");
        let ledger = self.store.read_ledger().await?;
        let mut map: HashMap<RunId, Sent> = HashMap::new();
        for e in ledger.events {
            let Some(id) = e.run_id else { continue };
            // Long ids are hashed (see `attempt_run_id`); those are
            // checked by exact id when a step asks, so keep them all.
            if !id.as_str().starts_with(&prefix) && id.as_str().len() < MAX_ID_LEN {
                continue;
            }
            match e.event {
                LedgerEventKind::Dispatched => {
                    if let Ok(at) = e.ts.parse::<jiff::Timestamp>() {
                        map.entry(id).or_insert(Sent { at, end: None });
                    }
                }
                LedgerEventKind::Handoff
                | LedgerEventKind::Timeout
                | LedgerEventKind::Failed
                | LedgerEventKind::Cancelled => {
                    if let Some(sent) = map.get_mut(&id) {
                        sent.end = Some((e.event, e.detail));
                    }
                }
                _ => {}
            }
        }
        Ok(Arc::new(map))
    }

    async fn drive(
        &self,
        wf: &Workflow,
        summary: RunSummary,
        recs: BTreeMap<String, StepRecord>,
        dispatched: Option<Dispatched>,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, ExecError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (publish, published) = watch::channel(None);
        let mut writer = JoinSet::new();
        writer.spawn(write_summaries(
            Arc::clone(&self.store),
            published,
            tx.clone(),
        ));
        let order = wf.plan().order();
        let pos: HashMap<&str, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let index = |ids: Vec<&str>| -> Vec<usize> {
            ids.into_iter()
                .filter_map(|d| pos.get(d).copied())
                .collect()
        };
        let deps = order.iter().map(|&id| index(wf.plan().deps(id))).collect();
        let dependents: Vec<Vec<usize>> = order
            .iter()
            .map(|&id| index(wf.plan().dependents(id)))
            .collect();
        // Steps on the longest chain to the end, counting this one.
        let mut height = vec![1usize; order.len()];
        for p in (0..order.len()).rev() {
            height[p] = 1 + dependents[p].iter().map(|&d| height[d]).max().unwrap_or(0);
        }
        let mut r = Runner {
            exec: self,
            wf,
            summary,
            recs,
            tx,
            steps: JoinSet::new(),
            approvals: JoinSet::new(),
            running: 0,
            stop: false,
            cancelled: false,
            token: cancel.child_token(),
            candidates: (0..order.len()).collect(),
            deps,
            dependents,
            height,
            pos,
            order,
            version: 0,
            publish: Some(publish),
            summary_due: true,
            summary_dirty: true,
            writer,
            dispatched,
        };
        r.go(rx, cancel).await
    }

    fn emit(&self, e: ProgressEvent) {
        if let Some(p) = &self.progress {
            p.event(&e);
        }
    }
}

/// What a step's task may take when it goes to one agent: the agent's
/// transport limits the whole message ([`Transport::max_task_bytes`]), and
/// orch's instructions around the task take part of it.
///
/// [`Transport::max_task_bytes`]: orch_delegate::Transport::max_task_bytes
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub(crate) agent: String,
    pub(crate) transport: String,
    /// The transport's message limit.
    pub(crate) limit: u64,
    /// orch's instructions around the task, and [`REASK_HEADROOM`].
    pub(crate) overhead: u64,
}

impl Budget {
    /// Bytes left for the task.
    pub(crate) fn task(&self) -> u64 {
        self.limit.saturating_sub(self.overhead)
    }

    /// Why a task of `e.size` bytes does not fit.
    pub(crate) fn refusal(&self, what: &str, e: &TooLarge) -> String {
        format!(
            "{what} too large for `{}`: {}, over the limit of {}; made of {} ({} transport: messages up to {} bytes, {} of them for orch's instructions and a re-ask)",
            self.agent,
            if what == "task" {
                format!("it would be {}", crate::error::bytes(e.size))
            } else {
                format!("at least {}", crate::error::bytes(e.size))
            },
            crate::error::bytes(e.limit),
            e.made_of(),
            self.transport,
            self.limit,
            self.overhead
        )
    }
}

/// The budget of `step`'s task for `agent` in workflow run `wf_run`, if the
/// Delegator knows the agent. The instructions are measured with the id of
/// a late attempt, so no retry's longer id can push the message over.
pub(crate) fn budget(
    delegator: &Delegator,
    wf_run: &RunId,
    step: &str,
    agent: &str,
    caller: &str,
) -> Option<Budget> {
    let transport = delegator.transport_of(agent)?;
    let id = attempt_run_id(wf_run, step, 999_999);
    let overhead = delegator
        .message_bytes(&id, agent, caller, "", None)
        .saturating_add(REASK_HEADROOM);
    Some(Budget {
        agent: agent.to_owned(),
        transport: transport.name().to_owned(),
        limit: transport.max_task_bytes(),
        overhead,
    })
}

/// The budgets a step's task can have: its agent's, or for `route: auto`
/// every agent's, largest first.
pub(crate) fn budgets(
    delegator: &Delegator,
    wf_run: &RunId,
    step: &crate::model::Step,
    caller: &str,
) -> Vec<Budget> {
    let mut out: Vec<Budget> = match &step.target {
        Target::Agent(a) => budget(delegator, wf_run, &step.id, a, caller)
            .into_iter()
            .collect(),
        Target::Route => delegator
            .agent_ids()
            .into_iter()
            .filter_map(|a| budget(delegator, wf_run, &step.id, a, caller))
            .collect(),
    };
    out.sort_by_key(|b| std::cmp::Reverse(b.task()));
    out
}

struct Runner<'a> {
    exec: &'a Executor,
    wf: &'a Workflow,
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
    /// Step ids in topological order.
    order: Vec<&'a str>,
    /// Position of each step in `order`.
    pos: HashMap<&'a str, usize>,
    /// Dependencies of `order[i]`, as positions.
    deps: Vec<Vec<usize>>,
    /// Direct dependents of `order[i]`, as positions.
    dependents: Vec<Vec<usize>>,
    /// Steps on the longest chain from `order[i]` to the end.
    height: Vec<usize>,
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
}

fn elapsed(rec: &StepRecord) -> Duration {
    rec.started.map_or(Duration::ZERO, |s| {
        Duration::try_from(jiff::Timestamp::now().duration_since(s)).unwrap_or_default()
    })
}

impl Runner<'_> {
    async fn go(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, ExecError> {
        // State carried over from an earlier process.
        let ids: Vec<String> = self.recs.keys().cloned().collect();
        for id in ids {
            let rec = &self.recs[&id];
            let fails = matches!(rec.status, StepStatus::Failed | StepStatus::Rejected);
            if fails && self.on_failure(&id) == OnFailure::Stop {
                self.stop = true;
            }
            match rec.status {
                StepStatus::Running => {
                    self.restore_task(&id);
                    self.spawn_step(&id, true);
                }
                StepStatus::AwaitingApproval => {
                    if let Some(d) = rec.approval.clone() {
                        self.apply_approval(&id, d).await?;
                    } else {
                        self.ask_approval(&id);
                    }
                }
                _ => {}
            }
        }
        loop {
            if cancel.is_cancelled() {
                self.cancelled = true;
            }
            if !self.stop && !self.cancelled {
                self.start_ready().await?;
            }
            self.save(RunStatus::Running)?;
            if self.running == 0 && self.approvals.is_empty() {
                break;
            }
            let first = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                () = cancel.cancelled(), if !self.cancelled => Event::Cancelled,
            };
            // Everything that arrived meanwhile is applied in this turn.
            let mut events = vec![first];
            while let Ok(ev) = rx.try_recv() {
                events.push(ev);
            }
            for ev in events {
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
                    Event::StepFinished { step, done } => {
                        self.running -= 1;
                        self.step_finished(&step, *done)?;
                    }
                    Event::SummaryDue => self.summary_due = true,
                    Event::ApprovalArrived { step, decision } => {
                        if let Some(rec) = self.recs.get_mut(&step) {
                            rec.approval = Some(decision.clone());
                        }
                        self.apply_approval(&step, decision).await?;
                    }
                }
            }
            // Reap finished tasks.
            while self.approvals.try_join_next().is_some() {}
            while let Some(r) = self.steps.try_join_next() {
                task_result(r)?;
            }
        }
        if cancel.is_cancelled() {
            self.cancelled = true;
        }
        let any = |st: &[StepStatus]| self.recs.values().any(|r| st.contains(&r.status));
        let status = if self.cancelled {
            RunStatus::Cancelled
        } else if self.stop {
            RunStatus::Failed
        } else if any(&[StepStatus::AwaitingApproval]) {
            RunStatus::AwaitingApproval
        } else if any(&[StepStatus::Failed, StepStatus::Rejected]) {
            RunStatus::CompletedWithFailures
        } else {
            RunStatus::Completed
        };
        self.summary.output_note = None;
        if matches!(
            status,
            RunStatus::Completed | RunStatus::CompletedWithFailures
        ) && let Some(out) = &self.wf.output
        {
            let (output, note) = self.render_output(out);
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
        Ok(self.summary.clone())
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
    fn restore_task(&mut self, id: &str) {
        let Some(rec) = self.recs.get(id) else { return };
        if rec.has_whole_task() || rec.rendered_task.is_none() {
            return;
        }
        let (Some(size), Some(hash)) = (rec.rendered_task_bytes, rec.rendered_task_sha256.clone())
        else {
            return;
        };
        let Some(step) = self.wf.step(id) else { return };
        let ctx = self.context_for(id);
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
                .filter_map(|(k, r)| {
                    r.handoff
                        .as_ref()
                        .map(|h| (k.clone(), StepOutput::from_handoff(h)))
                })
                .collect(),
            run_id: Some(self.summary.run_id.as_str().to_owned()),
        }
    }

    /// The outputs of the completed direct dependencies of `id` (all a
    /// step's task and `when` may read).
    fn context_for(&self, id: &str) -> Context {
        let steps = self
            .pos
            .get(id)
            .and_then(|&p| self.deps.get(p))
            .into_iter()
            .flatten()
            .filter_map(|&d| {
                let dep = self.order[d];
                let r = self.recs.get(dep)?;
                if r.status != StepStatus::Completed {
                    return None;
                }
                let h = r.handoff.as_ref()?;
                Some((dep.to_owned(), StepOutput::from_handoff(h)))
            })
            .collect();
        Context {
            inputs: self.summary.inputs.clone(),
            steps,
            run_id: Some(self.summary.run_id.as_str().to_owned()),
        }
    }

    fn summarise_steps(&mut self) {
        self.summary.steps = self
            .recs
            .iter()
            .map(|(k, r)| (k.clone(), StepSummary::of(r)))
            .collect();
    }

    /// Hands the current state to the summary writer; never waits for the
    /// write. Fails if the writer already failed.
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

    /// Makes the pending dependents of `id` candidates for starting.
    fn ended(&mut self, id: &str) {
        if let Some(&p) = self.pos.get(id)
            && let Some(ds) = self.dependents.get(p)
        {
            self.candidates.extend(ds.iter().copied());
        }
    }

    async fn put(&self, id: &str) -> Result<(), ExecError> {
        match self.recs.get(id) {
            Some(rec) => put_step(&*self.exec.store, &self.summary.run_id, rec).await,
            None => Ok(()),
        }
    }

    /// Ends step `id` without running it (skipped) or as failed.
    async fn end_early(
        &mut self,
        id: &str,
        status: StepStatus,
        reason: String,
    ) -> Result<(), ExecError> {
        let now = jiff::Timestamp::now();
        if let Some(rec) = self.recs.get_mut(id) {
            rec.status = status;
            rec.reason = Some(reason.clone());
            rec.started.get_or_insert(now);
            rec.finished = Some(now);
        }
        self.put(id).await?;
        self.ended(id);
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
        if self.on_failure(id) == OnFailure::Stop {
            self.stop = true;
        }
    }

    async fn start_ready(&mut self) -> Result<(), ExecError> {
        let cap = self.wf.max_parallel.unwrap_or(usize::MAX).max(1);
        let is_ended = |r: &StepRecord| {
            matches!(
                r.status,
                StepStatus::Completed
                    | StepStatus::Skipped
                    | StepStatus::Failed
                    | StepStatus::Rejected
            )
        };
        loop {
            // Pending candidates whose dependencies all ended; the others
            // wait to be added again when their last dependency ends.
            let mut ready = Vec::new();
            let candidates = std::mem::take(&mut self.candidates);
            for p in candidates {
                let id = self.order[p];
                if self.recs.get(id).map(|r| r.status) != Some(StepStatus::Pending) {
                    continue;
                }
                let all_ended = self.deps[p]
                    .iter()
                    .all(|&d| self.recs.get(self.order[d]).is_some_and(is_ended));
                if all_ended {
                    self.candidates.insert(p);
                    ready.push(p);
                }
            }
            // Longest chain first: durations are unknown, so the number of
            // steps still ahead is the best guess of which step is on the
            // critical path; it gets its dispatch (and a `max_parallel`
            // slot) before its siblings.
            ready.sort_by_key(|&p| (std::cmp::Reverse(self.height[p]), p));
            let mut changed = false;
            for p in ready {
                if self.stop {
                    return Ok(());
                }
                let id = self.order[p].to_owned();
                let Some(step) = self.wf.step(&id) else {
                    self.candidates.remove(&p);
                    continue;
                };
                let bad_dep = self.wf.plan().deps(&id).into_iter().find_map(|d| {
                    let st = self.recs.get(d).map(|r| r.status)?;
                    let word = match st {
                        StepStatus::Skipped => "was skipped",
                        StepStatus::Failed => "failed",
                        StepStatus::Rejected => "was rejected",
                        _ => return None,
                    };
                    Some(format!("dependency `{d}` {word}"))
                });
                if let Some(reason) = bad_dep {
                    self.end_early(&id, StepStatus::Skipped, reason).await?;
                    changed = true;
                    continue;
                }
                let ctx = self.context_for(&id);
                if let Some(cond) = &step.when {
                    match cond.eval(&ctx) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.end_early(
                                &id,
                                StepStatus::Skipped,
                                format!("when `{cond}` is false"),
                            )
                            .await?;
                            changed = true;
                            continue;
                        }
                        Err(e) => {
                            self.end_early(&id, StepStatus::Failed, format!("when `{cond}`: {e}"))
                                .await?;
                            changed = true;
                            continue;
                        }
                    }
                }
                if self.running >= cap {
                    continue;
                }
                // Rendering stops the moment the task passes what the
                // agent's transport can take: a too large task is never
                // built, sent or stored.
                let budgets = budgets(
                    &self.exec.delegator,
                    &self.summary.run_id,
                    step,
                    &self.summary.caller,
                );
                let limit = budgets
                    .first()
                    .map_or(orch_delegate::DEFAULT_MAX_TASK_BYTES, Budget::task);
                let task = match step.task.render_within(&ctx, limit) {
                    Ok(t) => t,
                    Err(RenderError::TooLarge(e)) => {
                        let reason = match budgets.first() {
                            Some(b) => b.refusal("task", &e),
                            None => format!("task too large: {e}"),
                        };
                        self.end_early(&id, StepStatus::Failed, reason).await?;
                        changed = true;
                        continue;
                    }
                    Err(e) => {
                        self.end_early(&id, StepStatus::Failed, format!("task: {e}"))
                            .await?;
                        changed = true;
                        continue;
                    }
                };
                let agent = match &step.target {
                    Target::Agent(a) => Some(a.clone()),
                    Target::Route => self
                        .exec
                        .router
                        .as_ref()
                        .and_then(|r| r.route(&task, &self.summary.caller)),
                };
                let Some(agent) = agent else {
                    self.end_early(&id, StepStatus::Failed, "no agent fits the task".to_owned())
                        .await?;
                    changed = true;
                    continue;
                };
                // A routed task was rendered for the roomiest agent.
                if let Some(b) = budgets.iter().find(|b| b.agent == agent)
                    && task.len() as u64 > b.task()
                {
                    let e = step.task.too_large(&ctx, task.len() as u64, b.task());
                    self.end_early(&id, StepStatus::Failed, b.refusal("task", &e))
                        .await?;
                    changed = true;
                    continue;
                }
                if let Some(rec) = self.recs.get_mut(&id) {
                    rec.status = StepStatus::Running;
                    rec.agent = Some(agent);
                    rec.set_rendered_task(task);
                    rec.started = Some(jiff::Timestamp::now());
                }
                self.candidates.remove(&p);
                self.spawn_step(&id, false);
            }
            if !changed {
                return Ok(());
            }
        }
    }

    fn spawn_step(&mut self, id: &str, reawait: bool) {
        let (Some(step), Some(rec)) = (self.wf.step(id), self.recs.get(id)) else {
            return;
        };
        let context = match (&step.context, &self.exec.context) {
            (Some(spec), Some(src)) => Some((Arc::clone(src), spec.clone())),
            _ => None,
        };
        let transport = rec
            .agent
            .as_deref()
            .and_then(|a| self.exec.delegator.transport_of(a));
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
        let job = Job {
            delegator: Arc::clone(&self.exec.delegator),
            store: Arc::clone(&self.exec.store),
            progress: self.exec.progress.clone(),
            wf_run: self.summary.run_id.clone(),
            rec: rec.clone(),
            caller: self.summary.caller.clone(),
            timeout: self.wf.timeout_of(step),
            retries: self.wf.retries_of(step),
            retry_base: self.exec.retry_base,
            gate: step.gate.clone().unwrap_or_default(),
            context,
            reawait,
            dispatched: self.dispatched.clone(),
            outlives,
            transport: transport_name,
            max_message,
            cancel: self.token.clone(),
        };
        let tx = self.tx.clone();
        let store = Arc::clone(&self.exec.store);
        let wf_run = self.summary.run_id.clone();
        let id = id.to_owned();
        self.running += 1;
        self.steps.spawn(async move {
            let done = job.run().await;
            let rec = done.rec.clone();
            let finished = Event::StepFinished {
                step: id,
                done: Box::new(done),
            };
            if rec.status == StepStatus::AwaitingApproval {
                // The loop writes this record again once a decision comes:
                // this write goes first so the two cannot cross.
                put_step(&*store, &wf_run, &rec).await?;
                let _ = tx.send(finished);
                return Ok(());
            }
            // The loop hears first, so dependents start while this record
            // is written (off the critical path). If the process dies
            // before the write lands, the record still says `running` and
            // resume re-derives the outcome from the handoff, which the
            // agent wrote durably: nothing is sent again.
            let _ = tx.send(finished);
            put_step(&*store, &wf_run, &rec).await
        });
    }

    fn ask_approval(&mut self, id: &str) {
        let Some(approver) = self.exec.approver.clone() else {
            self.exec.emit(ProgressEvent::AwaitingApproval {
                step: id.to_owned(),
            });
            return;
        };
        let Some(h) = self.recs.get(id).and_then(|r| r.handoff.clone()) else {
            return;
        };
        self.exec.emit(ProgressEvent::AwaitingApproval {
            step: id.to_owned(),
        });
        let tx = self.tx.clone();
        let id = id.to_owned();
        self.approvals.spawn(async move {
            let decision = approver.approve(&id, &StepOutput::from_handoff(&h)).await;
            let _ = tx.send(Event::ApprovalArrived { step: id, decision });
        });
    }

    async fn apply_approval(&mut self, id: &str, d: ApprovalDecision) -> Result<(), ExecError> {
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
        self.ended(id);
        self.exec.emit(ProgressEvent::Finished {
            step: id.to_owned(),
            status,
            elapsed,
        });
        Ok(())
    }

    fn step_finished(&mut self, id: &str, done: StepDone) -> Result<(), ExecError> {
        let status = done.rec.status;
        let elapsed = elapsed(&done.rec);
        self.recs.insert(id.to_owned(), done.rec);
        if done.cancelled {
            return Ok(());
        }
        self.ended(id);
        match status {
            StepStatus::AwaitingApproval => self.ask_approval(id),
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

/// Everything one step task needs.
struct Job {
    delegator: Arc<Delegator>,
    store: Arc<dyn HandoffStore>,
    progress: Option<Arc<dyn Progress>>,
    wf_run: RunId,
    rec: StepRecord,
    caller: String,
    timeout: Duration,
    retries: u32,
    retry_base: Duration,
    gate: crate::model::Gate,
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

    fn end_attempt(&mut self, status: &str, detail: Option<String>) {
        if let Some(a) = self.rec.attempts.last_mut() {
            a.status = status.to_owned();
            a.finished = Some(jiff::Timestamp::now());
            a.detail = detail;
        }
    }

    async fn run(mut self) -> StepDone {
        let mut last = None;
        if self.reawait {
            last = self.reawait_last().await;
        }
        let tries_made =
            |rec: &StepRecord| rec.attempts.iter().filter(|a| a.status != "lost").count() as u64;
        let mut context: Option<Option<String>> = None;
        loop {
            let tried = match last.take() {
                Some(t) => t,
                None => {
                    let n = tries_made(&self.rec);
                    if n > 0 {
                        let delay = self.retry_base.saturating_mul(1u32 << (n - 1).min(16));
                        self.emit(ProgressEvent::Retrying {
                            step: self.rec.step.clone(),
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
                    self.attempt(context.clone().flatten()).await
                }
            };
            match tried {
                Tried::Cancelled => return self.done(true),
                Tried::Answer(h) => {
                    self.judge(*h);
                    return self.done(false);
                }
                Tried::Failed { detail, retry } => {
                    if retry && tries_made(&self.rec) <= u64::from(self.retries) {
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
        if a.status != "running" {
            return None;
        }
        let n = u32::try_from(self.rec.delegations()).unwrap_or(u32::MAX);
        let key = HandoffKey::top(a.run_id.clone());
        if let Ok(Some(h)) = self.store.get(&key).await {
            return Some(self.answer(h, OutcomeStatus::Complete));
        }
        let end = self
            .dispatched
            .as_ref()
            .and_then(|d| d.get(&a.run_id))
            .and_then(|sent| sent.end.clone());
        let earlier = "recorded in the ledger by the process that sent it";
        match end {
            Some((LedgerEventKind::Timeout, _)) => {
                let detail = format!("timed out ({earlier})");
                self.end_attempt(OutcomeStatus::TimedOut.as_str(), Some(detail.clone()));
                return Some(Tried::Failed {
                    detail,
                    retry: true,
                });
            }
            Some((LedgerEventKind::Failed, detail)) => {
                let detail = format!(
                    "{} ({earlier})",
                    detail.unwrap_or_else(|| "the delegation failed".to_owned())
                );
                self.end_attempt("error", Some(detail.clone()));
                return Some(Tried::Failed {
                    detail,
                    retry: true,
                });
            }
            Some((LedgerEventKind::Handoff, _)) => {
                return self
                    .lose(n, "its handoff is no longer in the store".to_owned())
                    .await;
            }
            // Cancelled (Ctrl-C) or no end at all (killed): in flight, if
            // its agent outlived the sender.
            _ => {}
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
            step: self.rec.step.clone(),
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

    /// Marks the last attempt `lost` (it does not count as a try): the step
    /// is sent again, as the next delegation.
    async fn lose(&mut self, attempt: u32, reason: String) -> Option<Tried> {
        self.end_attempt("lost", Some(format!("{reason}; sent again")));
        self.emit(ProgressEvent::Lost {
            step: self.rec.step.clone(),
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
        self.end_attempt(status.as_str(), None);
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
            status: "running".to_owned(),
            started,
            finished: None,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            detail: None,
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
        let Some(agent) = self.rec.agent.clone() else {
            return Tried::Failed {
                detail: "no agent".to_owned(),
                retry: false,
            };
        };
        let Some(task) = self
            .rec
            .rendered_task
            .clone()
            .filter(|_| self.rec.has_whole_task())
        else {
            return Tried::Failed {
                detail: "no task to send (a task stored cut is rendered again on resume)"
                    .to_owned(),
                retry: false,
            };
        };
        // What is sent is the whole message: the task, the context and
        // orch's instructions around them.
        if let Some(max) = self.max_message {
            let bytes = self.delegator.message_bytes(
                &run_id,
                &agent,
                &self.caller,
                &task,
                context.as_deref(),
            );
            if bytes > max {
                let with = match (&self.context, &context) {
                    (Some((_, spec)), Some(c)) => format!(
                        " with the context from `{}` ({})",
                        spec.channel,
                        crate::error::bytes(c.len() as u64)
                    ),
                    _ => String::new(),
                };
                return Tried::Failed {
                    detail: format!(
                        "task too large: the message to `{agent}`{with} would be {}, over the {}-byte limit of its {} transport (less {REASK_HEADROOM} kept for a re-ask)",
                        crate::error::bytes(bytes),
                        max + REASK_HEADROOM,
                        self.transport
                    ),
                    retry: false,
                };
            }
        }
        self.rec.push_attempt(Attempt {
            run_id: run_id.clone(),
            status: "running".to_owned(),
            started: jiff::Timestamp::now(),
            finished: None,
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            detail: None,
        });
        self.rec.delegation_run_id = Some(run_id.clone());
        self.rec.status = StepStatus::Running;
        self.emit(ProgressEvent::Started {
            step: self.rec.step.clone(),
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
            self.end_attempt("error", Some(e.to_string()));
            return Tried::Failed {
                detail: format!("could not record the attempt: {e}"),
                retry: false,
            };
        }
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
                        self.end_attempt(status.as_str(), Some(detail.clone()));
                        Tried::Failed {
                            detail,
                            retry: true,
                        }
                    }
                    (status, Some(h)) => self.answer(h, status),
                }
            }
            Err(DelegateError::Cancelled { .. }) => {
                self.end_attempt("running", None);
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
                self.end_attempt("error", Some(e.to_string()));
                Tried::Failed {
                    detail: e.to_string(),
                    retry,
                }
            }
        }
    }

    /// The gate's verdict on `h`.
    fn judge(&mut self, h: Handoff) {
        let ok_status = if self.gate.status.is_empty() {
            matches!(h.status, Status::Complete | Status::Partial)
        } else {
            self.gate.status.contains(&h.status)
        };
        let conf = h.confidence.unwrap_or(Confidence::Low);
        let ok_conf = self.gate.min_confidence.is_none_or(|m| conf >= m);
        let passed = ok_status && ok_conf;
        let reason = if !ok_status {
            let want: Vec<&str> = if self.gate.status.is_empty() {
                vec!["complete", "partial"]
            } else {
                self.gate.status.iter().map(|s| status_str(*s)).collect()
            };
            format!(
                "status {} is not one of {}",
                status_str(h.status),
                want.join(", ")
            )
        } else if !ok_conf {
            format!(
                "confidence {} is below {}",
                h.confidence.map_or("unstated", confidence_str),
                self.gate.min_confidence.map_or("", confidence_str)
            )
        } else {
            "passed".to_owned()
        };
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

/// The summary writer's result; a panic is passed on.
fn task_result(r: Result<Result<(), ExecError>, tokio::task::JoinError>) -> Result<(), ExecError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Ok(()),
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    if l.chars().count() > 200 {
        format!("{}…", l.chars().take(200).collect::<String>())
    } else {
        l.to_owned()
    }
}
