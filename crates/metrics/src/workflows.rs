//! Workflow runs: `workflows/<wfRunId>/summary.json` and, where needed,
//! step records, read as `orch-workflow`'s own record types
//! ([`RunSummary`], [`StepRecord`]): one contract with the engine that
//! writes them, statuses as enums rather than strings. A record that does
//! not read as that type (foreign, hand-written, cut, or with a status this
//! version does not know) is listed in the report's problems, never fatal.
//! Reading the whole type validates every run id and parses every time in
//! the record, which a lenient subset skipped: more work, though a small
//! part of what the store's read and parse of the file costs. What is not
//! counted (the workflow's source, inputs, output, rendered tasks) is
//! dropped on the thread that read it.
//!
//! Summaries give runs by status, durations, and per step its status,
//! attempt count, a `repeat` step's iterations and a `for_each` step's
//! instance counts; whether the run is a child run (its `parent`), and
//! which of its steps are `uses` steps (the keys of its `children`). A
//! step record is read only when the summary cannot tell the answer: a
//! step that failed or was retried (how many attempts timed out), and every
//! step of the runs a `--workflow` filter selects (their delegation run
//! ids, so that the agent tables can be filtered too).
//!
//! A `for_each` step makes no delegations of its own: each of its instances
//! has a record `<step>.<N>` (delegations `<wfRun>.<step>.<N>.<n>`). Those
//! records are read, and counted for the `for_each` step, when the summary
//! says some instances failed (the timed-out attempts of the failed ones)
//! and for a `--workflow` filter (their delegation run ids). An instance
//! its step's `join` no longer needed (`skipped`, its delegation
//! `cancelled`) is never a failure.
//!
//! A `uses` step runs another workflow as a child run `<wfRun>.<step>`,
//! which has a summary of its own and is counted as a run of that workflow
//! (and as one of its child runs); the `uses` step itself is counted by its
//! status in the parent's summary, like any step.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use jiff::Timestamp;
use orch_handoff::{HandoffStore, RunId, WorkflowRecord};
use orch_workflow::{
    AttemptStatus, RunStatus, RunSummary, StepRecord, StepStatus, StepSummary, instance_record_id,
};

use crate::filter::Filter;
use crate::par::Exec;
use crate::par::par_map;
use crate::problems::{ProblemList, store_reason};
use crate::report::{
    DURATION_BUCKETS_MS, Distribution, FanOutStats, RepeatStats, RunStatuses, StepStats,
    SubWorkflowStats, WorkflowStats,
};

/// The result of reading the workflow runs.
pub(crate) struct Workflows {
    /// Per workflow, by name.
    pub(crate) stats: Vec<WorkflowStats>,
    /// Runs counted.
    pub(crate) runs: u64,
    /// With a `--workflow` filter: the selected runs and their delegations.
    pub(crate) members: Option<Members>,
}

/// What a `--workflow` filter selects.
#[derive(Default)]
pub(crate) struct Members {
    /// Workflow run ids.
    pub(crate) runs: HashSet<String>,
    /// Delegation run ids of their steps' attempts.
    pub(crate) delegations: HashSet<String>,
}

/// A run as metrics keep it: the fields of its [`RunSummary`] that are
/// counted, taken out of it by name (so a field orch-workflow renames or
/// retypes breaks the build here, not the figures).
struct Run {
    id: RunId,
    workflow: String,
    status: RunStatus,
    started: Timestamp,
    finished: Option<Timestamp>,
    steps: BTreeMap<String, StepSummary>,
    /// It is a child run (a `uses` step of another run started it).
    child: bool,
    /// Its `uses` steps (the steps that have a child run, started or not).
    uses: BTreeSet<String>,
    /// Attempts that timed out, per step (from its record; of a `for_each`
    /// step, from its failed instances' records).
    timed_out: BTreeMap<String, u64>,
}

impl Run {
    /// The rest of the summary (the workflow's source, inputs, output) is
    /// dropped here, on the thread that read it, so a scan never holds every
    /// run's texts at once.
    fn of(id: &RunId, summary: RunSummary) -> Self {
        let RunSummary {
            workflow,
            status,
            started,
            finished,
            steps,
            parent,
            children,
            ..
        } = summary;
        Self {
            id: id.clone(),
            workflow,
            status,
            started,
            finished,
            steps,
            child: parent.is_some(),
            uses: children.into_keys().collect(),
            timed_out: BTreeMap::new(),
        }
    }
}

/// What metrics take from a step record.
struct Attempts {
    /// Attempts that timed out.
    timed_out: u64,
    /// Every attempt's delegation run id (for a `--workflow` filter).
    run_ids: Vec<String>,
}

/// A step record to read: the step it counts for, and which record.
struct Wanted {
    /// The run (its index in the runs read).
    run: usize,
    /// The step id in the summary.
    step: String,
    /// `None`: the step's own record; `Some(n)`: its `for_each` instance
    /// `n` (record `<step>.<n>`).
    instance: Option<u32>,
}

impl Wanted {
    fn record_id(&self) -> String {
        match self.instance {
            None => self.step.clone(),
            Some(n) => instance_record_id(&self.step, n as usize),
        }
    }
}

/// Whether an attempt timed out. Every status is named, so one that
/// orch-workflow adds is decided here rather than counted by default: a
/// `cancelled` attempt was stopped because its `for_each` step's `join` no
/// longer needed it, and a `lost` one was sent again; neither is a timeout.
fn timed_out(status: AttemptStatus) -> bool {
    match status {
        AttemptStatus::TimedOut => true,
        AttemptStatus::Running
        | AttemptStatus::Complete
        | AttemptStatus::Partial
        | AttemptStatus::Blocked
        | AttemptStatus::Failed
        | AttemptStatus::Error
        | AttemptStatus::Lost
        | AttemptStatus::Cancelled => false,
    }
}

impl Attempts {
    /// What `record` gives; `instance`: it is a `for_each` instance's, whose
    /// timeouts count only if the instance failed (one its step's `join` no
    /// longer needed is `skipped`, even when its step's deadline stopped it
    /// as a timeout).
    fn of(record: StepRecord, with_ids: bool, instance: bool) -> Self {
        let counted =
            !instance || matches!(record.status, StepStatus::Failed | StepStatus::Rejected);
        let timed_out = if counted {
            record
                .attempts
                .iter()
                .filter(|a| timed_out(a.status))
                .count() as u64
        } else {
            0
        };
        let run_ids = if with_ids {
            record
                .attempts
                .iter()
                .map(|a| a.run_id.as_str().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        Self { timed_out, run_ids }
    }
}

pub(crate) fn read(
    store: &dyn HandoffStore,
    exec: &Exec,
    ids: &[RunId],
    filter: &Filter,
    threads: usize,
    problems: &ProblemList,
) -> Workflows {
    let summaries = par_map(ids, threads, |id| {
        let path = || format!("workflows/{id}/summary.json");
        match exec.block(store.get_workflow_record(id, &WorkflowRecord::Summary)) {
            Ok(Some(value)) => match typed::<RunSummary>(value) {
                Ok(summary) => Some(Run::of(id, summary)),
                Err(e) => {
                    problems.file(path(), format!("not a workflow run summary: {e}"));
                    None
                }
            },
            Ok(None) => {
                problems.file(
                    path(),
                    "missing (a run still starting, or not a run directory)".to_owned(),
                );
                None
            }
            Err(e) => {
                problems.file(path(), store_reason(&e));
                None
            }
        }
    });
    let mut runs: Vec<Run> = summaries
        .into_iter()
        .flatten()
        .filter(|run| selected(run, filter))
        .collect();

    // Step records: the ones whose attempts matter.
    let mut members = filter.workflows.as_ref().map(|_| Members::default());
    let with_ids = members.is_some();
    // Most instance records read for one `for_each` step of a run: the
    // engine never fans out more (a summary that says so is not read
    // further).
    let most_instances = u32::try_from(orch_workflow::MAX_ITEMS).unwrap_or(u32::MAX);
    let mut wanted: Vec<Wanted> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for (step, s) in &run.steps {
            match s.instances {
                // A `for_each` step: its own record has no attempts; its
                // instances' records do.
                Some(counts) => {
                    if with_ids || counts.failed > 0 {
                        let total = counts.total.min(most_instances);
                        wanted.extend((0..total).map(|n| Wanted {
                            run: i,
                            step: step.clone(),
                            instance: Some(n),
                        }));
                    }
                }
                None => {
                    if with_ids || s.status == StepStatus::Failed || s.attempts > 1 {
                        wanted.push(Wanted {
                            run: i,
                            step: step.clone(),
                            instance: None,
                        });
                    }
                }
            }
        }
    }
    let records = par_map(&wanted, threads, |w| {
        let run = &runs[w.run].id;
        let id = w.record_id();
        let path = || format!("workflows/{run}/{id}.json");
        match exec.block(store.get_workflow_record(run, &WorkflowRecord::Step(id.clone()))) {
            Ok(Some(value)) => match typed::<StepRecord>(value) {
                // Taken here, so the record is dropped on the thread that
                // read it.
                Ok(record) => Some(Attempts::of(record, with_ids, w.instance.is_some())),
                Err(e) => {
                    problems.file(path(), format!("not a workflow step record: {e}"));
                    None
                }
            },
            // A step listed in the summary before its record was written,
            // or an instance that was never sent.
            Ok(None) => None,
            Err(e) => {
                problems.file(path(), store_reason(&e));
                None
            }
        }
    });
    for (w, attempts) in wanted.into_iter().zip(records) {
        let Some(attempts) = attempts else { continue };
        if let Some(m) = &mut members {
            m.delegations.extend(attempts.run_ids);
        }
        // An instance's count goes to its `for_each` step.
        *runs[w.run].timed_out.entry(w.step).or_default() += attempts.timed_out;
    }
    if let Some(m) = &mut members {
        m.runs.extend(runs.iter().map(|r| r.id.to_string()));
    }

    let count = runs.len() as u64;
    Workflows {
        stats: aggregate(&runs, filter),
        runs: count,
        members,
    }
}

/// `value` as a record type. An array is refused as such: serde reads one
/// as the struct's fields in order and would name an element instead.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    if value.is_array() {
        return Err("invalid type: sequence, expected a JSON object".to_owned());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Whether a run is in the window and passes the filters.
fn selected(run: &Run, filter: &Filter) -> bool {
    if filter.since.is_some_and(|since| run.started < since) {
        return false;
    }
    if let Some(names) = &filter.workflows
        && !names.contains(run.workflow.as_str())
        && !names.contains(run.id.as_str())
    {
        return false;
    }
    if let Some(agents) = &filter.agents
        && !run
            .steps
            .values()
            .any(|st| st.agent.as_deref().is_some_and(|a| agents.contains(a)))
    {
        return false;
    }
    true
}

#[derive(Default)]
struct StepAcc {
    agents: BTreeSet<String>,
    runs: u64,
    failed: u64,
    rejected: u64,
    timed_out: u64,
    retries: u64,
    /// Runs in which it is a `repeat` step, and their iterations.
    repeated: u64,
    iterations: u64,
    /// Runs in which it fanned out (a `for_each` step), and how its
    /// instances ended.
    fanned: u64,
    instances: u64,
    instances_completed: u64,
    instances_failed: u64,
    instances_cancelled: u64,
    /// It is a `uses` step (of some run); the runs in which it started (a
    /// child run each), and how they ended.
    uses: bool,
    uses_started: u64,
    uses_completed: u64,
    uses_failed: u64,
}

fn aggregate(runs: &[Run], filter: &Filter) -> Vec<WorkflowStats> {
    #[derive(Default)]
    struct Acc {
        runs: u64,
        child_runs: u64,
        statuses: RunStatuses,
        durations: Vec<u64>,
        steps: BTreeMap<String, StepAcc>,
    }
    let mut by_name: BTreeMap<&str, Acc> = BTreeMap::new();
    for run in runs {
        let acc = by_name.entry(run.workflow.as_str()).or_default();
        acc.runs += 1;
        acc.child_runs += u64::from(run.child);
        let st = &mut acc.statuses;
        *match run.status {
            RunStatus::Running => &mut st.running,
            RunStatus::Completed => &mut st.completed,
            RunStatus::CompletedWithFailures => &mut st.completed_with_failures,
            RunStatus::Failed => &mut st.failed,
            RunStatus::AwaitingApproval => &mut st.awaiting_approval,
            RunStatus::Cancelled => &mut st.cancelled,
        } += 1;
        if run.status != RunStatus::Running
            && let Some(finished) = run.finished
        {
            let ms = finished.duration_since(run.started).as_millis().max(0);
            acc.durations.push(u64::try_from(ms).unwrap_or(u64::MAX));
        }
        for (id, step) in &run.steps {
            if let Some(agents) = &filter.agents
                && !step.agent.as_deref().is_some_and(|a| agents.contains(a))
            {
                continue;
            }
            let sa = acc.steps.entry(id.clone()).or_default();
            sa.runs += 1;
            sa.agents.extend(step.agent.clone());
            match step.status {
                StepStatus::Failed => sa.failed += 1,
                StepStatus::Rejected => sa.rejected += 1,
                StepStatus::Pending
                | StepStatus::Running
                | StepStatus::Completed
                | StepStatus::Skipped
                | StepStatus::AwaitingApproval => {}
            }
            // A repeat step's later iterations are delegations too, but not
            // retries.
            let iterations = step.iterations.unwrap_or(1).max(1);
            sa.retries += u64::from(step.attempts.saturating_sub(iterations));
            if let Some(n) = step.iterations {
                sa.repeated += 1;
                sa.iterations += u64::from(n);
            }
            // Its instances' failures are counted here, not as the step's:
            // the step failed only if its summary says so, and a cancelled
            // instance (its `join` was met without it) is not a failure.
            if let Some(c) = step.instances {
                sa.fanned += 1;
                sa.instances += u64::from(c.total);
                sa.instances_completed += u64::from(c.completed);
                sa.instances_failed += u64::from(c.failed);
                sa.instances_cancelled += u64::from(c.cancelled);
            }
            // A `uses` step: its child run's outcome, as the step's status
            // says (a rejected result is a failure of the sub-workflow too).
            if run.uses.contains(id) {
                sa.uses = true;
                let (started, completed, failed) = match step.status {
                    StepStatus::Pending | StepStatus::Skipped => (false, false, false),
                    StepStatus::Completed => (true, true, false),
                    StepStatus::Failed | StepStatus::Rejected => (true, false, true),
                    StepStatus::Running | StepStatus::AwaitingApproval => (true, false, false),
                };
                sa.uses_started += u64::from(started);
                sa.uses_completed += u64::from(completed);
                sa.uses_failed += u64::from(failed);
            }
            sa.timed_out += run.timed_out.get(id).copied().unwrap_or(0);
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut acc)| {
            let repeated_steps: Vec<RepeatStats> = acc
                .steps
                .iter()
                .filter(|(_, s)| s.repeated > 0)
                .map(|(step, s)| RepeatStats {
                    step: step.clone(),
                    runs: s.repeated,
                    iterations: s.iterations,
                })
                .collect();
            let fanned_steps: Vec<FanOutStats> = acc
                .steps
                .iter()
                .filter(|(_, s)| s.fanned > 0)
                .map(|(step, s)| FanOutStats {
                    step: step.clone(),
                    runs: s.fanned,
                    instances: s.instances,
                    completed: s.instances_completed,
                    failed: s.instances_failed,
                    cancelled: s.instances_cancelled,
                })
                .collect();
            let sub_workflow_steps: Vec<SubWorkflowStats> = acc
                .steps
                .iter()
                .filter(|(_, s)| s.uses)
                .map(|(step, s)| SubWorkflowStats {
                    step: step.clone(),
                    runs: s.uses_started,
                    completed: s.uses_completed,
                    failed: s.uses_failed,
                })
                .collect();
            let mut failing: Vec<StepStats> = acc
                .steps
                .into_iter()
                .filter(|(_, s)| s.failed + s.rejected + s.timed_out > 0)
                .map(|(step, s)| StepStats {
                    step,
                    agents: s.agents.into_iter().collect(),
                    runs: s.runs,
                    failed: s.failed,
                    rejected: s.rejected,
                    timed_out: s.timed_out,
                    retries: s.retries,
                })
                .collect();
            failing.sort_by(|a, b| {
                let bad = |s: &StepStats| s.failed + s.rejected + s.timed_out;
                bad(b).cmp(&bad(a)).then_with(|| a.step.cmp(&b.step))
            });
            WorkflowStats {
                workflow: name.to_owned(),
                runs: acc.runs,
                child_runs: acc.child_runs,
                statuses: acc.statuses,
                duration: Distribution::of(&mut acc.durations, DURATION_BUCKETS_MS),
                failing_steps: failing,
                repeated_steps,
                fanned_steps,
                sub_workflow_steps,
            }
        })
        .collect()
}
