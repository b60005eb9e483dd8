//! A generated store with known contents: every figure of the report is
//! checked against the generator's ground truth, folded here with code of
//! its own (not the scanner's).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use orch_metrics::{
    AgentStats, Bucket, CallerStats, ConfidenceMix, DURATION_BUCKETS_MS, Distribution,
    LATENCY_BUCKETS_MS, Mode, Options, Outcomes, Report, Since, StepStats, WorkflowStats,
};

use crate::generator::{self, Spec, Truth};
use crate::{options, rescan, scan};

/// Percentile by nearest rank, computed in floating point (the scanner
/// uses integers).
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank - 1])
}

fn distribution(mut values: Vec<u64>, bounds: &[u64]) -> Distribution {
    values.sort();
    Distribution {
        count: values.len() as u64,
        sum_ms: values.iter().sum(),
        p50_ms: percentile(&values, 50.0),
        p90_ms: percentile(&values, 90.0),
        p99_ms: percentile(&values, 99.0),
        max_ms: values.iter().max().copied(),
        buckets: bounds
            .iter()
            .map(|&le_ms| Bucket {
                le_ms,
                count: values.iter().filter(|&&v| v <= le_ms).count() as u64,
            })
            .collect(),
    }
}

fn bump(o: &mut Outcomes, name: &str) {
    match name {
        "complete" => o.complete += 1,
        "partial" => o.partial += 1,
        "blocked" => o.blocked += 1,
        "failed" => o.failed += 1,
        "timed-out" => o.timed_out += 1,
        "invalid" => o.invalid += 1,
        "error" => o.error += 1,
        "cancelled" => o.cancelled += 1,
        "pending" => o.pending += 1,
        other => panic!("outcome {other}"),
    }
}

struct Filter<'a> {
    since: Option<Timestamp>,
    agents: &'a [&'a str],
    workflow: Option<&'a str>,
}

const ALL: Filter<'static> = Filter {
    since: None,
    agents: &[],
    workflow: None,
};

/// What the report must say about `truth` under `f`.
struct Expected {
    agents: Vec<AgentStats>,
    callers: Vec<CallerStats>,
    workflows: Vec<WorkflowStats>,
    latency: Distribution,
}

fn expected(truth: &Truth, f: &Filter<'_>) -> Expected {
    let by_id: HashMap<&str, &generator::TrueDelegation> = truth
        .delegations
        .iter()
        .map(|d| (d.run_id.as_str(), d))
        .collect();
    let in_workflow = |d: &generator::TrueDelegation| -> bool {
        let Some(w) = f.workflow else { return true };
        let mut cur = Some(d);
        while let Some(c) = cur {
            if c.workflow.as_deref() == Some(w) {
                return true;
            }
            cur = c.parent.as_deref().and_then(|p| by_id.get(p).copied());
        }
        false
    };
    let mut agents: BTreeMap<String, (AgentStats, Vec<u64>)> = BTreeMap::new();
    let mut callers: BTreeMap<Option<String>, CallerStats> = BTreeMap::new();
    let mut all = Vec::new();
    for d in &truth.delegations {
        if f.since.is_some_and(|s| d.at < s)
            || (!f.agents.is_empty() && !f.agents.contains(&d.agent.as_str()))
            || !in_workflow(d)
        {
            continue;
        }
        let (a, lat) = agents.entry(d.agent.clone()).or_default();
        a.agent = d.agent.clone();
        a.delegations += 1;
        bump(&mut a.outcomes, d.outcome);
        match d.confidence {
            Some("high") => a.confidence.high += 1,
            Some("medium") => a.confidence.medium += 1,
            Some("low") => a.confidence.low += 1,
            Some("unstated") => a.confidence.unstated += 1,
            _ => {}
        }
        lat.extend(d.latency_ms);
        all.extend(d.latency_ms);
        a.reasks += d.reasks;
        a.dispatch_retries += d.retries;
        a.sub_delegations += u64::from(d.sub);
        a.late_handoffs += u64::from(d.late);
        let c = callers.entry(d.caller.clone()).or_default();
        c.caller = d.caller.clone();
        c.delegations += 1;
        c.sub_delegations += u64::from(d.sub);
        bump(&mut c.outcomes, d.outcome);
        *c.agents.entry(d.agent.clone()).or_default() += 1;
    }
    // Denials carry no workflow in the generated ledger.
    if f.workflow.is_none() {
        for d in &truth.denials {
            if f.since.is_some_and(|s| d.at < s)
                || (!f.agents.is_empty() && !f.agents.contains(&d.agent.as_str()))
            {
                continue;
            }
            let (a, _) = agents.entry(d.agent.clone()).or_default();
            a.agent = d.agent.clone();
            a.acl_denials += 1;
            let c = callers.entry(Some(d.caller.clone())).or_default();
            c.caller = Some(d.caller.clone());
            c.acl_denials += 1;
            *c.denied.entry(d.agent.clone()).or_default() += 1;
        }
    }
    let agents = agents
        .into_values()
        .map(|(mut a, lat)| {
            a.latency = distribution(lat, LATENCY_BUCKETS_MS);
            a
        })
        .collect();
    // Known callers by name, then the unknown one (None sorts first here).
    let mut callers: Vec<CallerStats> = callers.into_values().collect();
    if callers.first().is_some_and(|c| c.caller.is_none()) {
        let unknown = callers.remove(0);
        callers.push(unknown);
    }

    type Acc = (WorkflowStats, Vec<u64>, BTreeMap<String, StepStats>);
    let mut workflows: BTreeMap<String, Acc> = BTreeMap::new();
    for r in &truth.runs {
        if f.since.is_some_and(|s| r.started < s)
            || f.workflow.is_some_and(|w| w != r.workflow)
            || (!f.agents.is_empty()
                && !r.steps.iter().any(|s| f.agents.contains(&s.agent.as_str())))
        {
            continue;
        }
        let (w, durations, steps) = workflows.entry(r.workflow.clone()).or_default();
        w.workflow = r.workflow.clone();
        w.runs += 1;
        let s = &mut w.statuses;
        match r.status {
            "running" => s.running += 1,
            "completed" => s.completed += 1,
            "completed-with-failures" => s.completed_with_failures += 1,
            "failed" => s.failed += 1,
            "awaiting-approval" => s.awaiting_approval += 1,
            "cancelled" => s.cancelled += 1,
            _ => s.other += 1,
        }
        durations.extend(r.duration_ms);
        for step in &r.steps {
            if !f.agents.is_empty() && !f.agents.contains(&step.agent.as_str()) {
                continue;
            }
            let e = steps.entry(step.id.clone()).or_default();
            e.step = step.id.clone();
            if !e.agents.contains(&step.agent) {
                e.agents.push(step.agent.clone());
                e.agents.sort();
            }
            e.runs += 1;
            e.failed += u64::from(step.status == "failed");
            e.rejected += u64::from(step.status == "rejected");
            e.timed_out += step.timed_out;
            e.retries += step.attempts.saturating_sub(1);
        }
    }
    let workflows = workflows
        .into_values()
        .map(|(mut w, durations, steps)| {
            w.duration = distribution(durations, DURATION_BUCKETS_MS);
            let mut failing: Vec<StepStats> = steps
                .into_values()
                .filter(|s| s.failed + s.rejected + s.timed_out > 0)
                .collect();
            failing.sort_by_key(|s| {
                (
                    std::cmp::Reverse(s.failed + s.rejected + s.timed_out),
                    s.step.clone(),
                )
            });
            w.failing_steps = failing;
            w
        })
        .collect();
    Expected {
        agents,
        callers,
        workflows,
        latency: distribution(all, LATENCY_BUCKETS_MS),
    }
}

fn check(report: &Report, truth: &Truth, f: &Filter<'_>) {
    let want = expected(truth, f);
    assert_eq!(report.agents, want.agents);
    assert_eq!(report.callers, want.callers);
    assert_eq!(report.workflows, want.workflows);
    let t = &report.totals;
    assert_eq!(t.latency, want.latency);
    assert_eq!(
        t.delegations,
        want.agents.iter().map(|a| a.delegations).sum::<u64>()
    );
    let mut outcomes = Outcomes::default();
    let mut confidence = ConfidenceMix::default();
    for a in &want.agents {
        outcomes.complete += a.outcomes.complete;
        outcomes.partial += a.outcomes.partial;
        outcomes.blocked += a.outcomes.blocked;
        outcomes.failed += a.outcomes.failed;
        outcomes.timed_out += a.outcomes.timed_out;
        outcomes.invalid += a.outcomes.invalid;
        outcomes.error += a.outcomes.error;
        outcomes.cancelled += a.outcomes.cancelled;
        outcomes.pending += a.outcomes.pending;
        confidence.high += a.confidence.high;
        confidence.medium += a.confidence.medium;
        confidence.low += a.confidence.low;
        confidence.unstated += a.confidence.unstated;
    }
    assert_eq!(t.outcomes, outcomes);
    assert_eq!(t.confidence, confidence);
    let sum = |g: fn(&AgentStats) -> u64| want.agents.iter().map(g).sum::<u64>();
    assert_eq!(t.reasks, sum(|a| a.reasks));
    assert_eq!(t.dispatch_retries, sum(|a| a.dispatch_retries));
    assert_eq!(t.acl_denials, sum(|a| a.acl_denials));
    assert_eq!(t.sub_delegations, sum(|a| a.sub_delegations));
    assert_eq!(t.late_handoffs, sum(|a| a.late_handoffs));
    assert_eq!(
        t.workflow_runs,
        want.workflows.iter().map(|w| w.runs).sum::<u64>()
    );
}

fn check_problems(report: &Report, truth: &Truth) {
    let p = &report.problems;
    let paths: BTreeSet<String> = p.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paths, truth.unreadable, "{:#?}", p.files);
    assert_eq!(p.unreadable_files, truth.unreadable.len() as u64);
    let lines: Vec<u64> = p.ledger_lines.iter().map(|l| l.line).collect();
    assert_eq!(lines, truth.bad_lines, "{:#?}", p.ledger_lines);
    assert_eq!(p.ledger_bad_lines, truth.bad_lines.len() as u64);
    assert_eq!(p.missing_handoff_files, truth.missing_files);
    assert_eq!(report.source.handoff_files, truth.handoff_files);
}

fn generated(spec: &Spec<'_>) -> (tempfile::TempDir, Truth) {
    let dir = tempfile::tempdir().unwrap();
    let truth = generator::generate(dir.path(), spec);
    (dir, truth)
}

#[test]
fn every_figure_matches_the_generated_truth() {
    let (dir, truth) = generated(&Spec::default());
    // The generator's mix has every kind of delegation in it.
    let kinds: BTreeSet<&str> = truth.delegations.iter().map(|d| d.outcome).collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");
    assert!(truth.delegations.iter().any(|d| d.sub));
    assert!(truth.delegations.iter().any(|d| d.late));
    assert!(truth.delegations.iter().any(|d| d.caller.is_none()));
    assert!(truth.missing_files > 0);

    let report = scan(dir.path(), &options());
    check(&report, &truth, &ALL);
    check_problems(&report, &truth);
    assert_eq!(report.schema, 1);
    assert_eq!(report.source.mode, Mode::Ledger);
    // Only what the ledger does not account for was read.
    assert!(
        report.source.files_read < report.source.handoff_files / 4,
        "{:?}",
        report.source
    );
}

#[test]
fn rescan_reads_every_file_and_agrees_with_the_ledger() {
    let (dir, truth) = generated(&Spec::default());
    let fast = scan(dir.path(), &options());
    let full = scan(dir.path(), &rescan());
    check(&full, &truth, &ALL);
    check_problems(&full, &truth);
    assert_eq!(full.source.mode, Mode::Rescan);
    assert_eq!(full.source.files_read, full.source.handoff_files);
    let mut full = full;
    full.source = fast.source.clone();
    assert_eq!(full, fast);
}

#[test]
fn the_same_report_whatever_the_thread_count() {
    let (dir, _) = generated(&Spec {
        delegations: 3000,
        ..Spec::default()
    });
    let one = scan(
        dir.path(),
        &Options {
            threads: 1,
            ..options()
        },
    );
    for threads in [2, 3, 8] {
        let many = scan(
            dir.path(),
            &Options {
                threads,
                ..options()
            },
        );
        assert_eq!(many, one, "{threads} threads");
    }
}

#[test]
fn a_window_keeps_what_started_in_it() {
    let (dir, truth) = generated(&Spec::default());
    let since = generator::base() + SignedDuration::from_secs(400);
    let report = scan(
        dir.path(),
        &Options {
            since: Some(since),
            ..options()
        },
    );
    check(
        &report,
        &truth,
        &Filter {
            since: Some(since),
            ..ALL
        },
    );
    assert_eq!(report.window.since.as_deref(), Some("2026-11-01T00:06:40Z"));
    assert!(report.totals.delegations < truth.delegations.len() as u64);
    assert!(report.totals.delegations > 0);

    // A relative window resolves against the injected now.
    let now = generator::base() + SignedDuration::from_secs(1000);
    let since: Since = "10m".parse().unwrap();
    let relative = scan(
        dir.path(),
        &Options {
            since: Some(since.resolve(now)),
            now,
            ..options()
        },
    );
    check(
        &relative,
        &truth,
        &Filter {
            since: Some(generator::base() + SignedDuration::from_secs(400)),
            ..ALL
        },
    );
}

#[test]
fn agent_and_workflow_filters() {
    let (dir, truth) = generated(&Spec::default());
    let agents = ["webster", "auditor"];
    let report = scan(
        dir.path(),
        &Options {
            agents: agents.iter().map(|a| a.to_string()).collect(),
            ..options()
        },
    );
    check(
        &report,
        &truth,
        &Filter {
            agents: &agents,
            ..ALL
        },
    );
    assert_eq!(report.agents.len(), 2);

    let report = scan(
        dir.path(),
        &Options {
            workflows: vec!["quick-research".to_owned()],
            ..options()
        },
    );
    check(
        &report,
        &truth,
        &Filter {
            workflow: Some("quick-research"),
            ..ALL
        },
    );
    assert_eq!(report.workflows.len(), 1);
    assert!(report.totals.delegations > 0);
    assert!(report.totals.delegations < 100);
}

/// 1,000 complete handoffs with latencies 10, 20, …, 10,000 ms in a
/// scrambled order: nearest-rank percentiles are exact.
#[test]
fn percentiles_on_a_known_distribution() {
    let shape = |i: usize, _: &mut generator::Rng| generator::Shape {
        agent: "webster",
        caller: "manager",
        end: generator::End::Handoff(orch_handoff::Status::Complete),
        confidence: None,
        latency_ms: ((i * 7 % 1000) as u64 + 1) * 10,
        retries: 0,
        reasks: 0,
        sub: false,
        late: false,
        file_only: false,
        no_handoff_line: false,
        missing_file: false,
    };
    let (dir, _) = generated(&Spec {
        delegations: 1000,
        denials: 0,
        workflow_runs: 0,
        corrupt: false,
        shape: &shape,
        ..Spec::default()
    });
    let report = scan(dir.path(), &options());
    let l = &report.agents[0].latency;
    assert_eq!(report.agents.len(), 1);
    assert_eq!(l.count, 1000);
    assert_eq!(l.sum_ms, 10 * 1000 * 1001 / 2);
    assert_eq!(
        (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
        (Some(5_000), Some(9_000), Some(9_900), Some(10_000))
    );
    let le = |ms: u64| l.buckets.iter().find(|b| b.le_ms == ms).unwrap().count;
    assert_eq!(le(100), 10);
    assert_eq!(le(2_500), 250);
    assert_eq!(le(10_000), 1000);
    assert_eq!(report.problems, Default::default());
    assert_eq!(report.agents[0].confidence.unstated, 1000);
}

#[test]
fn run_statuses_cover_every_kind() {
    let (_, truth) = generated(&Spec::default());
    let statuses: BTreeSet<&str> = truth.runs.iter().map(|r| r.status).collect();
    assert!(statuses.len() >= 4, "{statuses:?}");
}
