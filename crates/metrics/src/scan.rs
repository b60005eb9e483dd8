//! The scan: store → [`Report`].
//!
//! 1. At once, through the store: the raw ledger, the handoff listings
//!    (top level and `sub/`) and the workflow run listing.
//! 2. On a blocking thread (the caller's runtime stays free), the ledger is
//!    parsed in parallel into one accumulator per delegation
//!    ([`crate::ledger`]).
//! 3. The listing is matched against it. With [`Mode::Ledger`] only the
//!    handoff files the ledger does not account for are read: no `handoff`
//!    line for the run (an agent that submitted without a ledger, a process
//!    killed before it wrote the line, a handoff that came after a timeout)
//!    — usually a handful. With [`Mode::Rescan`] every file is read, on
//!    several threads, one file at a time each (only a few fields of each
//!    are kept). Both modes then apply the same rules, so on a consistent
//!    store they give the same report.
//! 4. Workflow summaries (and the step records that matter) are read.
//! 5. Every delegation is resolved (ledger facts, and the file's status and
//!    confidence where it was read), filtered and counted.
//!
//! Store calls made from the scan's threads are driven with the caller's
//! tokio runtime (`Handle::block_on`), or, without one, by parking the
//! thread until the future is ready: any [`HandoffStore`] works.

use orch_support::text::shorten;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use orch_handoff::{Confidence, HandoffKey, HandoffStore, RunId, Scope, Status, StoreError};

use crate::MetricsError;
use crate::filter::Filter;
use crate::index::{Cell, Latency};
use crate::ledger::{self, End, FxBuild, Index, RunAcc};
use crate::par::{Exec, on_threads, par_map};
use crate::problems::{ProblemList, store_reason};
use crate::report::{
    AgentStats, CallerStats, Distribution, Filters, LATENCY_BUCKETS_MS, LineProblem,
    MAX_LISTED_PROBLEMS, Mode, Outcomes, Problems, Report, SCHEMA_VERSION, Source, Totals, Window,
    WorkflowStats,
};
use crate::workflows::{self, Members};

/// What to report on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Ledger index (default) or read every handoff file.
    pub mode: Mode,
    /// Only what happened at or after this instant.
    pub since: Option<Timestamp>,
    /// Only delegations to these agents (empty: all).
    pub agents: Vec<String>,
    /// Only these workflows, by name or run id, and their delegations
    /// (empty: all).
    pub workflows: Vec<String>,
    /// "Now": the report's `generatedAt` and the window's end.
    pub now: Timestamp,
    /// Threads for parsing and reading (0: one per CPU).
    pub threads: usize,
    /// Where the index's checkpoint is kept (a file beside the ledger);
    /// `None` reads the whole ledger and lists the store every time. With
    /// one, [`Mode::Ledger`] reads only the ledger after the checkpoint
    /// (and updates it), or with `since` only the window's tail, unless
    /// `workflows` filters (a workflow's delegations are found through its
    /// runs' records, over the whole ledger).
    pub index: Option<std::path::PathBuf>,
}

impl Options {
    /// Everything in the store, from the ledger, as of `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            mode: Mode::Ledger,
            since: None,
            agents: Vec::new(),
            workflows: Vec::new(),
            now,
            threads: 0,
            index: None,
        }
    }

    pub(crate) fn thread_count(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Scans `store` into a [`Report`].
///
/// Unreadable files and ledger lines are reported in
/// [`Report::problems`]; only a store that cannot be listed is an error.
/// CPU-heavy work runs on `spawn_blocking` threads when called inside a
/// tokio runtime, inline otherwise.
pub async fn scan(store: Arc<dyn HandoffStore>, options: &Options) -> Result<Report, MetricsError> {
    if let Some(path) = &options.index
        && options.mode == Mode::Ledger
        && options.workflows.is_empty()
    {
        let (options, path) = (options.clone(), path.clone());
        return blocking(store, move |store, exec| {
            crate::incremental::scan(store, exec, &options, &path)
        })
        .await;
    }
    let (ledger, top, sub, runs) = tokio::join!(
        store.read_ledger_raw(),
        store.list_unordered(Scope::Top),
        store.list_unordered(Scope::Sub),
        store.list_workflow_runs(),
    );
    let input = Input {
        ledger,
        top: top?,
        sub: sub?,
        runs: runs?,
        options: options.clone(),
    };
    blocking(store, move |store, exec| Ok(compute(store, exec, input))).await
}

/// Runs `f` on a blocking thread when inside a tokio runtime (its store
/// calls driven by the runtime), inline otherwise.
async fn blocking<T: Send + 'static>(
    store: Arc<dyn HandoffStore>,
    f: impl FnOnce(&dyn HandoffStore, &Exec) -> Result<T, MetricsError> + Send + 'static,
) -> Result<T, MetricsError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let exec = Exec::Tokio(handle);
            match tokio::task::spawn_blocking(move || f(&*store, &exec)).await {
                Ok(report) => report,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(MetricsError::Aborted(e.to_string())),
            }
        }
        Err(_) => f(&*store, &Exec::Park),
    }
}

struct Input {
    ledger: Result<Vec<u8>, StoreError>,
    top: Vec<RunId>,
    sub: Vec<RunId>,
    runs: Vec<RunId>,
    options: Options,
}

/// What a handoff file says.
pub(crate) struct Fact {
    pub(crate) agent: String,
    pub(crate) status: Status,
    pub(crate) confidence: Option<Confidence>,
    pub(crate) timestamp: Option<String>,
}

pub(crate) fn handoff_path(key: &HandoffKey) -> String {
    match key.scope {
        Scope::Top => format!("{}.json", key.run_id),
        Scope::Sub => format!("sub/{}.json", key.run_id),
        Scope::Control => format!("control/{}.json", key.run_id),
    }
}

fn compute(store: &dyn HandoffStore, exec: &Exec, input: Input) -> Report {
    let started = Instant::now();
    let Input {
        ledger,
        top,
        sub,
        runs,
        options,
    } = input;
    let threads = options.thread_count();
    let filter = Filter::of(&options);
    let problems = ProblemList::default();
    let bytes = ledger.unwrap_or_else(|e| {
        problems.file("ledger.jsonl".to_owned(), store_reason(&e));
        Vec::new()
    });
    let mut index = ledger::parse(&bytes, threads);
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        bytes = bytes.len(),
        lines = index.lines,
        "metrics: ledger parsed"
    );

    // Match the listing with the ledger, each partition on its thread:
    // which handoff files to read.
    let listed: Vec<(Scope, &RunId)> = top
        .iter()
        .map(|id| (Scope::Top, id))
        .chain(sub.iter().map(|id| (Scope::Sub, id)))
        .collect();
    let rescan = options.mode == Mode::Rescan;
    let parts = index.parts.len();
    let to_read: Vec<HandoffKey> =
        on_threads(index.parts.iter_mut().enumerate().collect(), |(p, map)| {
            let mut read = Vec::new();
            for &(scope, id) in &listed {
                if ledger::partition(id.as_str(), parts) != p {
                    continue;
                }
                let wanted = match map.get_mut(id.as_str()) {
                    Some(acc) => {
                        acc.file = Some(scope);
                        rescan || !matches!(acc.end, Some(End::Handoff { .. }))
                    }
                    None => true,
                };
                if wanted {
                    read.push(HandoffKey {
                        scope,
                        run_id: id.clone(),
                    });
                }
            }
            read
        })
        .concat();

    let read = par_map(&to_read, threads, |key| match exec.block(store.get(key)) {
        Ok(Some(h)) => Some(Fact {
            agent: h.agent,
            status: h.status,
            confidence: h.confidence,
            timestamp: h.timestamp,
        }),
        // Gone since the listing.
        Ok(None) => None,
        Err(e) => {
            problems.file(handoff_path(key), store_reason(&e));
            None
        }
    });
    let facts: HashMap<&str, (Scope, Fact), FxBuild> = to_read
        .iter()
        .zip(read)
        .filter_map(|(key, fact)| fact.map(|f| (key.run_id.as_str(), (key.scope, f))))
        .collect();
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        listed = listed.len(),
        read = to_read.len(),
        "metrics: handoff files read"
    );

    let wf = workflows::read(store, exec, &runs, &filter, threads, &problems);
    let members = wf.members.as_ref();

    // Count, each partition on its thread.
    let counted = on_threads(index.parts.iter().collect(), |map| {
        let mut agg = Aggregate::default();
        for (id, acc) in map {
            if acc.file.is_none() && matches!(acc.end, Some(End::Handoff { .. })) {
                agg.missing_files += 1;
            }
            let fact = facts.get(id.as_ref()).map(|(_, f)| f);
            let view = View::of(id, acc, fact);
            if keep(&view, &filter, members, &index) {
                agg.add(&view);
            }
        }
        agg
    });
    let mut agg = Aggregate::default();
    for part in counted {
        agg.merge(part);
    }
    for (id, (scope, fact)) in &facts {
        if index.contains(id) {
            continue;
        }
        let view = View::file_only(id, *scope, fact);
        if keep(&view, &filter, members, &index) {
            agg.add(&view);
        }
    }
    for d in &index.denials {
        let agent = d.agent.as_deref().unwrap_or("(unknown)");
        if !filter.in_window(Some(&d.ts)) || !filter.agent(agent) {
            continue;
        }
        if let Some(m) = members {
            let by_run = d
                .run_id
                .as_deref()
                .is_some_and(|r| m.delegations.contains(r));
            let by_wf = d.workflow.as_deref().is_some_and(|w| m.runs.contains(w));
            if !by_run && !by_wf {
                continue;
            }
        }
        agg.deny(agent, d.caller.as_deref());
    }
    let missing_files = agg.missing_files;
    let (totals, agents, callers) = agg.finish(wf.runs);
    tracing::debug!(ms = started.elapsed().as_millis(), "metrics: counted");

    let mut files = problems.into_files();
    files.sort();
    let lines = line_problems(&index.bad_lines);
    let problems = Problems {
        unreadable_files: files.len() as u64,
        files: files.into_iter().take(MAX_LISTED_PROBLEMS).collect(),
        ledger_bad_lines: index.bad_lines.len() as u64,
        ledger_lines: lines,
        missing_handoff_files: missing_files,
    };
    let source = Source {
        store: store.describe(),
        mode: options.mode,
        ledger_lines: index.lines,
        handoff_files: listed.len() as u64,
        files_read: to_read.len() as u64,
        workflow_runs: runs.len() as u64,
        index: None,
    };
    // Free the big maps on their threads too.
    drop(facts);
    on_threads(std::mem::take(&mut index.parts), drop);
    assemble(
        &options,
        source,
        (totals, agents, callers),
        wf.stats,
        problems,
    )
}

/// The first [`MAX_LISTED_PROBLEMS`] of `bad` ledger lines (file order),
/// as the report lists them.
pub(crate) fn line_problems(bad: &[(u64, String)]) -> Vec<LineProblem> {
    let mut lines: Vec<LineProblem> = bad
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|(line, why)| LineProblem {
            line: *line,
            reason: shorten(why.trim(), 160),
        })
        .collect();
    lines.sort();
    lines
}

/// The report of a scan made with `options`.
pub(crate) fn assemble(
    options: &Options,
    source: Source,
    (totals, agents, callers): (Totals, Vec<AgentStats>, Vec<CallerStats>),
    workflows: Vec<WorkflowStats>,
    problems: Problems,
) -> Report {
    Report {
        schema: SCHEMA_VERSION,
        generated_at: options.now.to_string(),
        source,
        window: Window {
            since: options.since.map(|t| t.to_string()),
            until: options.now.to_string(),
        },
        filters: Filters {
            agents: options.agents.clone(),
            workflows: options.workflows.clone(),
        },
        totals,
        agents,
        callers,
        workflows,
        problems,
    }
}

/// How a delegation ended (see [`Outcomes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(Status),
    TimedOut,
    Invalid,
    Error,
    Cancelled,
    Pending,
}

/// One delegation, resolved.
pub(crate) struct View<'s> {
    pub(crate) run_id: &'s str,
    pub(crate) agent: &'s str,
    pub(crate) caller: Option<&'s str>,
    pub(crate) parent: Option<&'s str>,
    pub(crate) workflow: Option<&'s str>,
    pub(crate) sub: bool,
    pub(crate) outcome: Outcome,
    pub(crate) confidence: Option<Confidence>,
    pub(crate) latency_ms: Option<u64>,
    pub(crate) reasks: u32,
    pub(crate) retries: u32,
    pub(crate) late: bool,
    pub(crate) when: Option<&'s str>,
}

impl<'s> View<'s> {
    /// The ledger's account of a run, with its handoff file's if read.
    pub(crate) fn of(id: &'s str, acc: &'s RunAcc<'_>, fact: Option<&'s Fact>) -> Self {
        let late = fact.is_some();
        let (outcome, confidence, latency_ms, late) = match acc.end {
            Some(End::Handoff {
                status,
                confidence,
                latency_ms,
            }) => {
                // A file that was read (rescan) is the truth about its content.
                let (status, confidence) =
                    fact.map_or((status, confidence), |f| (f.status, f.confidence));
                (Outcome::Status(status), confidence, latency_ms, false)
            }
            Some(End::TimedOut) => (Outcome::TimedOut, None, None, late),
            Some(End::Invalid) => (Outcome::Invalid, None, None, late),
            Some(End::Error) => (Outcome::Error, None, None, late),
            Some(End::Cancelled) => (Outcome::Cancelled, None, None, late),
            // The handoff landed but its ledger line is missing.
            None => match fact {
                Some(f) => (Outcome::Status(f.status), f.confidence, None, false),
                None => (Outcome::Pending, None, None, false),
            },
        };
        let agent = acc
            .agent
            .as_deref()
            .or(fact.map(|f| f.agent.as_str()))
            .unwrap_or("(unknown)");
        Self {
            run_id: id,
            agent,
            caller: acc.caller.as_deref(),
            parent: acc.parent.as_deref(),
            workflow: acc.workflow.as_deref(),
            sub: acc.parent.is_some() || acc.file == Some(Scope::Sub),
            outcome,
            confidence,
            latency_ms,
            reasks: acc.reasks,
            retries: acc.retries,
            late,
            when: acc.ts.as_deref(),
        }
    }

    /// A handoff file no ledger line mentions.
    fn file_only(id: &'s str, scope: Scope, f: &'s Fact) -> Self {
        Self {
            run_id: id,
            agent: &f.agent,
            caller: None,
            parent: None,
            workflow: None,
            sub: scope == Scope::Sub,
            outcome: Outcome::Status(f.status),
            confidence: f.confidence,
            latency_ms: None,
            reasks: 0,
            retries: 0,
            late: false,
            when: f.timestamp.as_deref(),
        }
    }
}

fn keep(v: &View<'_>, filter: &Filter, members: Option<&Members>, index: &Index<'_>) -> bool {
    if !filter.agent(v.agent) || !filter.in_window(v.when) {
        return false;
    }
    let Some(m) = members else { return true };
    let member = |run: &str, workflow: Option<&str>| {
        m.delegations.contains(run) || workflow.is_some_and(|w| m.runs.contains(w))
    };
    if member(v.run_id, v.workflow) {
        return true;
    }
    // A sub-delegation belongs to the workflow of its ancestor (bounded: a
    // corrupt ledger may hold a parent cycle).
    let mut parent = v.parent;
    for _ in 0..32 {
        let Some(p) = parent else { return false };
        let acc = index.get(p);
        if member(p, acc.and_then(|a| a.workflow.as_deref())) {
            return true;
        }
        parent = acc.and_then(|a| a.parent.as_deref());
    }
    false
}

#[derive(Default)]
struct AgentAcc {
    stats: AgentStats,
    latencies: Vec<u64>,
    /// Latencies of settled delegations (from the index).
    settled: Option<Latency>,
}

#[derive(Default)]
pub(crate) struct Aggregate<'s> {
    agents: BTreeMap<&'s str, AgentAcc>,
    callers: BTreeMap<Option<&'s str>, CallerStats>,
    /// Handoffs the ledger records whose file is not listed.
    missing_files: u64,
}

/// Adds the counts of `b` to `a`.
fn add_agent(a: &mut AgentStats, b: &AgentStats) {
    a.delegations += b.delegations;
    a.outcomes.add(&b.outcomes);
    a.confidence.add(&b.confidence);
    a.reasks += b.reasks;
    a.dispatch_retries += b.dispatch_retries;
    a.acl_denials += b.acl_denials;
    a.sub_delegations += b.sub_delegations;
    a.late_handoffs += b.late_handoffs;
}

/// Adds the counts of `b` to `a`.
fn add_caller(a: &mut CallerStats, b: CallerStats) {
    a.delegations += b.delegations;
    a.sub_delegations += b.sub_delegations;
    a.outcomes.add(&b.outcomes);
    a.acl_denials += b.acl_denials;
    for (agent, n) in b.agents {
        *a.agents.entry(agent).or_default() += n;
    }
    for (agent, n) in b.denied {
        *a.denied.entry(agent).or_default() += n;
    }
}

pub(crate) fn count(o: &mut Outcomes, outcome: Outcome) {
    *match outcome {
        Outcome::Status(Status::Complete) => &mut o.complete,
        Outcome::Status(Status::Partial) => &mut o.partial,
        Outcome::Status(Status::Blocked) => &mut o.blocked,
        Outcome::Status(Status::Failed) => &mut o.failed,
        Outcome::TimedOut => &mut o.timed_out,
        Outcome::Invalid => &mut o.invalid,
        Outcome::Error => &mut o.error,
        Outcome::Cancelled => &mut o.cancelled,
        Outcome::Pending => &mut o.pending,
    } += 1;
}

/// Counts delegation `v` into `s`; its latency, if it has one to count.
pub(crate) fn tally(s: &mut AgentStats, v: &View<'_>) -> Option<u64> {
    s.delegations += 1;
    count(&mut s.outcomes, v.outcome);
    let mut latency = None;
    if let Outcome::Status(_) = v.outcome {
        *match v.confidence {
            Some(Confidence::High) => &mut s.confidence.high,
            Some(Confidence::Medium) => &mut s.confidence.medium,
            Some(Confidence::Low) => &mut s.confidence.low,
            None => &mut s.confidence.unstated,
        } += 1;
        latency = v.latency_ms;
    }
    s.reasks += u64::from(v.reasks);
    s.dispatch_retries += u64::from(v.retries);
    s.sub_delegations += u64::from(v.sub);
    s.late_handoffs += u64::from(v.late);
    latency
}

impl<'s> Aggregate<'s> {
    pub(crate) fn add(&mut self, v: &View<'s>) {
        let a = self.agents.entry(v.agent).or_default();
        a.latencies.extend(tally(&mut a.stats, v));

        let c = self.callers.entry(v.caller).or_default();
        c.delegations += 1;
        c.sub_delegations += u64::from(v.sub);
        count(&mut c.outcomes, v.outcome);
        match c.agents.get_mut(v.agent) {
            Some(n) => *n += 1,
            None => {
                c.agents.insert(v.agent.to_owned(), 1);
            }
        }
    }

    /// Adds the settled delegations and denials of an index cell.
    pub(crate) fn add_cell(&mut self, cell: &'s Cell) {
        let a = self.agents.entry(&cell.agent).or_default();
        add_agent(&mut a.stats, &cell.stats);
        a.settled
            .get_or_insert_with(Latency::default)
            .merge(&cell.latency);
        let s = &cell.stats;
        let c = self.callers.entry(cell.caller.as_deref()).or_default();
        c.delegations += s.delegations;
        c.sub_delegations += s.sub_delegations;
        c.outcomes.add(&s.outcomes);
        c.acl_denials += s.acl_denials;
        if s.delegations > 0 {
            *c.agents.entry(cell.agent.clone()).or_default() += s.delegations;
        }
        if s.acl_denials > 0 {
            *c.denied.entry(cell.agent.clone()).or_default() += s.acl_denials;
        }
    }

    fn merge(&mut self, other: Self) {
        for (name, b) in other.agents {
            let a = self.agents.entry(name).or_default();
            add_agent(&mut a.stats, &b.stats);
            a.latencies.extend(b.latencies);
            if let Some(l) = b.settled {
                a.settled.get_or_insert_with(Latency::default).merge(&l);
            }
        }
        for (name, b) in other.callers {
            add_caller(self.callers.entry(name).or_default(), b);
        }
        self.missing_files += other.missing_files;
    }

    pub(crate) fn deny(&mut self, agent: &'s str, caller: Option<&'s str>) {
        self.agents.entry(agent).or_default().stats.acl_denials += 1;
        let c = self.callers.entry(caller).or_default();
        c.acl_denials += 1;
        *c.denied.entry(agent.to_owned()).or_default() += 1;
    }

    pub(crate) fn finish(self, workflow_runs: u64) -> (Totals, Vec<AgentStats>, Vec<CallerStats>) {
        let mut totals = Totals {
            workflow_runs,
            ..Totals::default()
        };
        let mut all = Vec::new();
        let mut all_settled: Option<Latency> = None;
        let mut agents = Vec::with_capacity(self.agents.len());
        let mut sum = AgentStats::default();
        for (name, mut a) in self.agents {
            a.stats.agent = name.to_owned();
            a.stats.latency = match &mut a.settled {
                // Settled latencies are a histogram: the exact ones join it.
                Some(settled) => {
                    let mut l = settled.clone();
                    for &v in &a.latencies {
                        l.record(v);
                    }
                    all_settled
                        .get_or_insert_with(Latency::default)
                        .merge(settled);
                    l.distribution()
                }
                None => Distribution::of(&mut a.latencies, LATENCY_BUCKETS_MS),
            };
            add_agent(&mut sum, &a.stats);
            all.append(&mut a.latencies);
            agents.push(a.stats);
        }
        totals.delegations = sum.delegations;
        totals.outcomes = sum.outcomes;
        totals.confidence = sum.confidence;
        totals.reasks = sum.reasks;
        totals.dispatch_retries = sum.dispatch_retries;
        totals.acl_denials = sum.acl_denials;
        totals.sub_delegations = sum.sub_delegations;
        totals.late_handoffs = sum.late_handoffs;
        totals.latency = match all_settled {
            Some(mut l) => {
                for &v in &all {
                    l.record(v);
                }
                l.distribution()
            }
            None => Distribution::of(&mut all, LATENCY_BUCKETS_MS),
        };
        // Known callers by name, then the unknown one.
        let mut callers: Vec<CallerStats> = Vec::with_capacity(self.callers.len());
        let mut unknown = None;
        for (name, mut c) in self.callers {
            match name {
                Some(n) => {
                    c.caller = Some(n.to_owned());
                    callers.push(c);
                }
                None => unknown = Some(c),
            }
        }
        callers.extend(unknown);
        (totals, agents, callers)
    }
}
