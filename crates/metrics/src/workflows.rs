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
//! Summaries give runs by status, durations, and per step its status and
//! attempt count. A step record is read only when the summary cannot tell
//! the answer: a step that failed or was retried (how many attempts timed
//! out), and every step of the runs a `--workflow` filter selects (their
//! delegation run ids, so that the agent tables can be filtered too).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use jiff::Timestamp;
use orch_handoff::{HandoffStore, RunId, WorkflowRecord};
use orch_workflow::{AttemptStatus, RunStatus, RunSummary, StepRecord, StepStatus, StepSummary};

use crate::filter::Filter;
use crate::par::Exec;
use crate::par::par_map;
use crate::problems::{ProblemList, store_reason};
use crate::report::{
    DURATION_BUCKETS_MS, Distribution, RepeatStats, RunStatuses, StepStats, WorkflowStats,
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
    /// Attempts that timed out, per step (from its record).
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
            ..
        } = summary;
        Self {
            id: id.clone(),
            workflow,
            status,
            started,
            finished,
            steps,
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

impl Attempts {
    fn of(record: StepRecord, with_ids: bool) -> Self {
        let timed_out = record
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::TimedOut)
            .count() as u64;
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
    let wanted: Vec<(usize, String)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| {
            run.steps
                .iter()
                .filter(|(_, s)| {
                    members.is_some() || s.status == StepStatus::Failed || s.attempts > 1
                })
                .map(move |(step, _)| (i, step.clone()))
        })
        .collect();
    let with_ids = members.is_some();
    let records = par_map(&wanted, threads, |(i, step)| {
        let run = &runs[*i].id;
        let path = || format!("workflows/{run}/{step}.json");
        match exec.block(store.get_workflow_record(run, &WorkflowRecord::Step(step.clone()))) {
            Ok(Some(value)) => match typed::<StepRecord>(value) {
                // Taken here, so the record is dropped on the thread that
                // read it.
                Ok(record) => Some(Attempts::of(record, with_ids)),
                Err(e) => {
                    problems.file(path(), format!("not a workflow step record: {e}"));
                    None
                }
            },
            // A step listed in the summary before its record was written.
            Ok(None) => None,
            Err(e) => {
                problems.file(path(), store_reason(&e));
                None
            }
        }
    });
    for ((i, step), attempts) in wanted.into_iter().zip(records) {
        let Some(attempts) = attempts else { continue };
        if let Some(m) = &mut members {
            m.delegations.extend(attempts.run_ids);
        }
        runs[i].timed_out.insert(step, attempts.timed_out);
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
}

fn aggregate(runs: &[Run], filter: &Filter) -> Vec<WorkflowStats> {
    #[derive(Default)]
    struct Acc {
        runs: u64,
        statuses: RunStatuses,
        durations: Vec<u64>,
        steps: BTreeMap<String, StepAcc>,
    }
    let mut by_name: BTreeMap<&str, Acc> = BTreeMap::new();
    for run in runs {
        let acc = by_name.entry(run.workflow.as_str()).or_default();
        acc.runs += 1;
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
                statuses: acc.statuses,
                duration: Distribution::of(&mut acc.durations, DURATION_BUCKETS_MS),
                failing_steps: failing,
                repeated_steps,
            }
        })
        .collect()
}
