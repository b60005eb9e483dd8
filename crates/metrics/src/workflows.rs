//! Workflow runs: `workflows/<wfRunId>/summary.json` and, where needed,
//! step records, read as JSON with lenient local types (metrics do not
//! depend on `orch-workflow`; a field this module does not know is
//! ignored, a missing one makes the record unreadable).
//!
//! Summaries give runs by status, durations, and per step its status and
//! attempt count. A step record is read only when the summary cannot tell
//! the answer: a step that failed or was retried (how many attempts timed
//! out), and every step of the runs a `--workflow` filter selects (their
//! delegation run ids, so that the agent tables can be filtered too).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use jiff::Timestamp;
use orch_handoff::{HandoffStore, RunId, WorkflowRecord};
use serde::Deserialize;

use crate::par::par_map;
use crate::report::{DURATION_BUCKETS_MS, Distribution, RunStatuses, StepStats, WorkflowStats};
use crate::scan::{Exec, Filter, ProblemList, store_reason};

/// The fields of a run summary metrics read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    workflow: String,
    status: String,
    started: String,
    #[serde(default)]
    finished: Option<String>,
    #[serde(default)]
    steps: BTreeMap<String, StepSummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepSummary {
    status: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    attempts: u64,
}

/// The fields of a step record metrics read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepRecord {
    #[serde(default)]
    attempts: Vec<Attempt>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attempt {
    run_id: String,
    status: String,
}

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

struct Run {
    id: RunId,
    summary: Summary,
    /// Attempts that timed out, per step (from its record).
    timed_out: BTreeMap<String, u64>,
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
            Ok(Some(value)) => match serde_json::from_value::<Summary>(value) {
                Ok(summary) => Some(summary),
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
    let mut runs: Vec<Run> = ids
        .iter()
        .zip(summaries)
        .filter_map(|(id, s)| s.map(|summary| (id, summary)))
        .filter(|(id, summary)| selected(id, summary, filter, problems))
        .map(|(id, summary)| Run {
            id: id.clone(),
            summary,
            timed_out: BTreeMap::new(),
        })
        .collect();

    // Step records: the ones whose attempts matter.
    let mut members = filter.workflows.as_ref().map(|_| Members::default());
    let wanted: Vec<(usize, String)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, run)| {
            run.summary
                .steps
                .iter()
                .filter(|(_, s)| members.is_some() || s.status == "failed" || s.attempts > 1)
                .map(move |(step, _)| (i, step.clone()))
        })
        .collect();
    let records = par_map(&wanted, threads, |(i, step)| {
        let run = &runs[*i].id;
        let path = || format!("workflows/{run}/{step}.json");
        match exec.block(store.get_workflow_record(run, &WorkflowRecord::Step(step.clone()))) {
            Ok(Some(value)) => match serde_json::from_value::<StepRecord>(value) {
                Ok(record) => Some(record),
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
    for ((i, step), record) in wanted.into_iter().zip(records) {
        let Some(record) = record else { continue };
        let timed_out = record
            .attempts
            .iter()
            .filter(|a| a.status == "timed-out")
            .count() as u64;
        if let Some(m) = &mut members {
            m.delegations
                .extend(record.attempts.into_iter().map(|a| a.run_id));
        }
        runs[i].timed_out.insert(step, timed_out);
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

/// Whether a run is in the window and passes the filters.
fn selected(id: &RunId, s: &Summary, filter: &Filter, problems: &ProblemList) -> bool {
    if let Some(since) = filter.since {
        match s.started.parse::<Timestamp>() {
            Ok(t) if t >= since => {}
            Ok(_) => return false,
            Err(e) => {
                problems.file(
                    format!("workflows/{id}/summary.json"),
                    format!("started: {e}"),
                );
                return false;
            }
        }
    }
    if let Some(names) = &filter.workflows
        && !names.contains(s.workflow.as_str())
        && !names.contains(id.as_str())
    {
        return false;
    }
    if let Some(agents) = &filter.agents
        && !s
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
        let s = &run.summary;
        let acc = by_name.entry(s.workflow.as_str()).or_default();
        acc.runs += 1;
        let st = &mut acc.statuses;
        *match s.status.as_str() {
            "running" => &mut st.running,
            "completed" => &mut st.completed,
            "completed-with-failures" => &mut st.completed_with_failures,
            "failed" => &mut st.failed,
            "awaiting-approval" => &mut st.awaiting_approval,
            "cancelled" => &mut st.cancelled,
            _ => &mut st.other,
        } += 1;
        if s.status != "running"
            && let Some(finished) = &s.finished
            && let (Ok(a), Ok(b)) = (
                s.started.parse::<Timestamp>(),
                finished.parse::<Timestamp>(),
            )
        {
            let ms = b.duration_since(a).as_millis().max(0);
            acc.durations.push(u64::try_from(ms).unwrap_or(u64::MAX));
        }
        for (id, step) in &s.steps {
            if let Some(agents) = &filter.agents
                && !step.agent.as_deref().is_some_and(|a| agents.contains(a))
            {
                continue;
            }
            let sa = acc.steps.entry(id.clone()).or_default();
            sa.runs += 1;
            sa.agents.extend(step.agent.clone());
            match step.status.as_str() {
                "failed" => sa.failed += 1,
                "rejected" => sa.rejected += 1,
                _ => {}
            }
            sa.retries += step.attempts.saturating_sub(1);
            sa.timed_out += run.timed_out.get(id).copied().unwrap_or(0);
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut acc)| {
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
            }
        })
        .collect()
}
