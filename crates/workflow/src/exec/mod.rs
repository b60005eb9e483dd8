//! The executor: runs a workflow's steps through a [`Delegator`], stores
//! every state change, and resumes killed or paused runs.
//!
//! # Layout
//!
//! One layer per file. This module is the [`Executor`]: its seams
//! ([`Approver`], [`StepRouter`], [`ContextSource`], [`Progress`]), what a
//! run is started or resumed with, and the checks made before anything is
//! sent. `runner.rs` is the run loop: which step starts when, the records
//! and the summary. `job.rs` is one step: whether a ready step may run,
//! its rendered task and its agent, then the task that sends its attempts,
//! retries them and judges the gate. The loop names a step by its position
//! in the plan's order (`Plan::id_at`), so it never turns an
//! id back into a position.
//!
//! # The loop
//!
//! [`Executor::run`] is one loop over a closed `Event` enum read from a
//! channel: `StepFinished` (sent by the task that ran a step's
//! delegations), `ApprovalArrived` (sent by the task that asked the
//! [`Approver`]), `SummaryDue` (sent by the summary writer when it can
//! take the next summary) and `Cancelled` (the token fired). Step and
//! approval tasks live in `JoinSet`s owned by the loop, so dropping the run
//! future aborts them. Each turn applies every event that has arrived, then
//! starts every ready step (pending, every dependency ended; only the
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
//! - **`uses`**: the step runs its workflow as a child run
//!   ([`child_run_id`](crate::child_run_id)) on this executor, its `with`
//!   rendered as the child's inputs; the child's output, status and
//!   confidence are the step's, judged by the step's gate. A child paused
//!   for approval pauses the step (the decision is the child's); resume
//!   resumes the child. See `child.rs`.
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
//! [`orch_delegate::orch_handoff::WorkflowRecords::max_record_bytes`]: a run that could write a record
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
use orch_delegate::Delegator;
use orch_delegate::orch_handoff::{HandoffStore, LedgerEventKind, MAX_ID_LEN, RunId};
use tokio_util::sync::CancellationToken;

use crate::error::{ExecError, WorkflowError};
use crate::model::{OnFailure, Target, Workflow};
use crate::run::{
    ApprovalDecision, RunStatus, RunSummary, StepRecord, StepStatus, StepSummary, put_summary,
    read_step, read_summary,
};
use crate::template::StepOutput;
use crate::validate::ResolvedInputs;

mod child;
mod fan;
mod job;
mod runner;

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
    /// A `repeat` step's answer was not good enough: the next iteration is
    /// sent (a new delegation, with the last answer in its task).
    Repeating {
        /// The step.
        step: String,
        /// The iteration that follows (2 for the second).
        iteration: u32,
        /// The most the step may have.
        max: u32,
        /// Why: the `until` condition and what came.
        reason: String,
    },
    /// A `for_each` step sends its instances (`step[0]`, `step[1]`, …:
    /// their events name them so).
    FannedOut {
        /// The step.
        step: String,
        /// How many items (instances).
        items: usize,
        /// Its `join`: `all`, `any`, `min N`.
        join: String,
    },
    /// How a `for_each` step's instances stand, when one ends.
    Instances {
        /// The step.
        step: String,
        /// The counts.
        counts: crate::run::InstanceCounts,
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

impl ProgressEvent {
    /// The same event of a child run's step, named `prefix/step` (a
    /// `uses` step's child run reports so).
    pub fn under(&self, prefix: &str) -> Self {
        let mut e = self.clone();
        match &mut e {
            Self::Started { step, .. }
            | Self::Retrying { step, .. }
            | Self::Repeating { step, .. }
            | Self::FannedOut { step, .. }
            | Self::Instances { step, .. }
            | Self::Finished { step, .. }
            | Self::Skipped { step, .. }
            | Self::AwaitingApproval { step }
            | Self::Reawaiting { step, .. }
            | Self::Lost { step, .. } => *step = format!("{prefix}/{step}"),
        }
        e
    }
}

/// Observes a run (for a live view).
pub trait Progress: Send + Sync {
    /// Called on each event, from the run loop or a step task.
    fn event(&self, e: &ProgressEvent);
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

/// The share of the store's record limit a run's `output` may take in the
/// summary (and never more than [`OUTPUT_KEPT`]).
const OUTPUT_SHARE: u64 = 8;

/// Largest `output` stored in a run summary.
const OUTPUT_KEPT: u64 = 1024 * 1024;

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
        self.start(wf, source, opts, None, cancel).await
    }

    /// [`run`](Self::run), as the child run of `parent` when it has one.
    async fn start(
        &self,
        wf: &Workflow,
        source: &str,
        opts: RunOptions,
        parent: Option<crate::run::ParentLink>,
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
            run_id: run_id.clone(),
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
            cancelled: None,
            confidence: None,
            parent,
            children: wf
                .children()
                .map(|(s, _)| (s.id.clone(), crate::run::child_run_id(&run_id, &s.id)))
                .collect(),
            uses: wf.used(),
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
        // resume. Meanwhile the store gets ready to wait (a watcher that
        // fails to start fails the first step's subscription, which says
        // so).
        let (stored, _) = tokio::join!(
            put_summary(&*self.store, &summary),
            self.store.prepare_waits()
        );
        stored?;
        runner::drive(self, wf, summary, recs, None, BTreeSet::new(), cancel).await
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
        // A killed run's records may be views older than what it durably
        // stored (FsStore: the run's journal); they are made to agree first.
        let rebuilt = self.store.rebuild_workflow_views(run_id).await?;
        if rebuilt > 0 {
            tracing::debug!(run = %run_id, rebuilt, "workflow records rebuilt from the run's journal");
        }
        let mut summary = read_summary(&*self.store, run_id).await?;
        let wf = crate::load_with(
            &summary.source,
            &summary.origin,
            &crate::uses::Stored(&summary.uses),
        )
        .map_err(ExecError::Workflow)?;
        self.check_router(&wf)?;
        let mut recs = BTreeMap::new();
        for s in &wf.steps {
            let rec = read_step(&*self.store, run_id, &s.id)
                .await?
                .unwrap_or_else(|| StepRecord::new(&s.id));
            recs.insert(s.id.clone(), rec);
        }
        let mut restarted = BTreeSet::new();
        if opts.retry_failed {
            for rec in recs.values_mut() {
                if rec.retryable() {
                    rec.restart();
                    restarted.insert(rec.step.clone());
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
        runner::drive(
            self,
            &wf,
            summary,
            recs,
            Some(dispatched),
            restarted,
            cancel,
        )
        .await
    }

    /// The largest `output` a summary of this store keeps.
    fn output_limit(&self) -> u64 {
        (self.store.max_record_bytes() / OUTPUT_SHARE).min(OUTPUT_KEPT)
    }

    /// Refuses a run whose summary or step records could grow past what
    /// the store reads back ([`orch_delegate::orch_handoff::WorkflowRecords::max_record_bytes`]): every
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
                Target::Route | Target::Workflow(_) => 0,
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
        // An instance's record is `<step>.<N>`.
        let longest_step = wf
            .steps
            .iter()
            .map(|s| {
                s.id.len()
                    + s.for_each.as_ref().map_or(0, |f| {
                        1 + f.max_items.saturating_sub(1).max(1).to_string().len()
                    })
            })
            .max()
            .unwrap_or(0);
        let largest = crate::run::largest_step_record(&"x".repeat(longest_step), longest_agent);
        if largest > cap {
            return Err(ExecError::Usage(format!(
                "workflow {}: a step record could grow to {largest} bytes, more than the {cap} bytes the store keeps in a workflow record: raise the store's handoff size cap (`max_handoff_bytes`; records may be 4 times it)",
                wf.name
            )));
        }
        Ok(())
    }

    /// Refuses `wf` if it (or a workflow it uses) has a `route: auto` step
    /// and no router is set.
    fn check_router(&self, wf: &Workflow) -> Result<(), ExecError> {
        match wf.steps.iter().find(|s| s.target == Target::Route) {
            Some(s) if self.router.is_none() => Err(ExecError::Usage(format!(
                "step `{}` uses `route: auto`, but no router is configured",
                s.id
            ))),
            _ => wf
                .children()
                .try_for_each(|(_, u)| self.check_router(&u.workflow)),
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

    fn emit(&self, e: ProgressEvent) {
        if let Some(p) = &self.progress {
            p.event(&e);
        }
    }
}
