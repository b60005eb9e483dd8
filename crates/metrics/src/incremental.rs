//! Reports that read only what is new: from the index's checkpoint
//! ([`crate::index`]) on, or with `--since` from the window's start, found
//! by bisection of the time-ordered ledger. Neither lists the store: the
//! handoff files looked up are those of the runs still in flight or that
//! ended without a handoff (a file that landed without its ledger line, or
//! after the deadline), few whatever the history.

use std::path::Path;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use orch_handoff::{HandoffKey, HandoffStore, RunId, Scope, StoreError};

use crate::MetricsError;
use crate::filter::Filter;
use crate::index::{CHUNK, LastLine, State, TAIL};
use crate::ledger::{self, End, RunAcc};
use crate::par::{Exec, par_map};
use crate::problems::{ProblemList, store_reason};
use crate::report::{IndexKind, IndexUse, MAX_LISTED_PROBLEMS, Mode, Problems, Report, Source};
use crate::scan::{Aggregate, Fact, Options, View, assemble, handoff_path, line_problems, tally};
use crate::workflows;

/// How far before `--since` the tail is read: lines are stamped just
/// before they are appended, so concurrent writers leave them slightly out
/// of order.
const SINCE_SLACK: SignedDuration = SignedDuration::from_mins(5);

/// The report, through the index or (with `since`) the tail.
pub(crate) fn scan(
    store: &dyn HandoffStore,
    exec: &Exec,
    options: &Options,
    path: &Path,
) -> Result<Report, MetricsError> {
    let started = Instant::now();
    let filter = Filter::of(options);
    let problems = ProblemList::default();
    let threads = options.thread_count();
    let (state, use_) = match options.since {
        Some(since) => tail(store, exec, options, &filter, since, &problems)?,
        None => checkpointed(store, exec, threads, path, &problems)?,
    };
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        live = state.live.len(),
        cells = state.cells.len(),
        "metrics: ledger folded"
    );

    // The live runs that may have a handoff file the ledger does not tell.
    let wanted: Vec<&str> = state
        .live
        .iter()
        .filter(|(_, a)| !matches!(a.end, Some(End::Handoff { .. })))
        .map(|(id, _)| id.as_str())
        .collect();
    let facts = par_map(&wanted, threads, |id| look_up(store, exec, id, &problems));
    let facts: std::collections::HashMap<&str, Fact> = wanted
        .iter()
        .zip(facts)
        .filter_map(|(id, f)| Some((*id, f?)))
        .collect();

    let runs = exec.block(store.list_workflow_runs())?;
    let wf = workflows::read(store, exec, &runs, &filter, threads, &problems);

    let mut agg = Aggregate::default();
    for cell in state.cells.values() {
        if filter.agent(&cell.agent) {
            agg.add_cell(cell);
        }
    }
    for (id, acc) in &state.live {
        let view = View::of(id, acc, facts.get(id.as_str()));
        if filter.agent(view.agent) && counts_in_window(acc, &filter) {
            agg.add(&view);
        }
    }
    let counted = agg.finish(wf.runs);

    let mut files = problems.into_files();
    files.sort();
    let lines = match use_.kind {
        IndexKind::Checkpoint => line_problems(&state.bad),
        // Line numbers of a tail would not be the file's.
        IndexKind::Tail => Vec::new(),
    };
    let found = facts.len() as u64;
    let source = Source {
        store: store.describe(),
        mode: Mode::Ledger,
        ledger_lines: state.parsed,
        handoff_files: found,
        files_read: found,
        workflow_runs: runs.len() as u64,
        index: Some(use_),
    };
    let problems = Problems {
        unreadable_files: files.len() as u64,
        files: files.into_iter().take(MAX_LISTED_PROBLEMS).collect(),
        ledger_bad_lines: state.bad_total,
        ledger_lines: lines,
        missing_handoff_files: 0,
    };
    Ok(assemble(options, source, counted, wf.stats, problems))
}

/// Whether a run of the ledger read counts in the window: with `since`,
/// one dispatched in what was read, at or after it (a run dispatched
/// before the tail is before the window).
fn counts_in_window(acc: &RunAcc<'_>, filter: &Filter) -> bool {
    filter.since.is_none() || (acc.dispatched && filter.in_window(acc.ts.as_deref()))
}

/// The handoff file of run `id`, at the top level or under `sub/`.
fn look_up(
    store: &dyn HandoffStore,
    exec: &Exec,
    id: &str,
    problems: &ProblemList,
) -> Option<Fact> {
    let run_id = RunId::new(id).ok()?;
    for scope in [Scope::Top, Scope::Sub] {
        let key = HandoffKey {
            scope,
            run_id: run_id.clone(),
        };
        match exec.block(store.get(&key)) {
            Ok(Some(h)) => {
                return Some(Fact {
                    agent: h.agent,
                    status: h.status,
                    confidence: h.confidence,
                    timestamp: h.timestamp,
                });
            }
            Ok(None) => {}
            Err(e) => {
                problems.file(handoff_path(&key), store_reason(&e));
                return None;
            }
        }
    }
    None
}

/// Counts a settled run into its cell (its handoff file looked up when it
/// ended without a handoff: a late one is counted as late).
fn settle_into(
    state: &mut State,
    id: &str,
    acc: RunAcc<'static>,
    store: &dyn HandoffStore,
    exec: &Exec,
    problems: &ProblemList,
    keep: &dyn Fn(&RunAcc<'_>) -> bool,
) {
    if !keep(&acc) {
        return;
    }
    let fact = match acc.end {
        Some(End::Handoff { .. }) => None,
        _ => look_up(store, exec, id, problems),
    };
    let view = View::of(id, &acc, fact.as_ref());
    let cell = state.cell(view.agent, view.caller);
    if let Some(ms) = tally(&mut cell.stats, &view) {
        cell.latency.record(ms);
    }
}

/// Folds the ledger from `state.covered` to its end, [`CHUNK`] bytes at a
/// time; returns the bytes read and the ledger's unfinished last line (no
/// newline yet: being written, or torn), which is not folded. A line longer
/// than a chunk is skipped as bad, as the whole-ledger reader skips one
/// over 1 MiB.
fn fold_to_end(
    store: &dyn HandoffStore,
    exec: &Exec,
    threads: usize,
    state: &mut State,
    settle: &mut dyn FnMut(&mut State, &str, RunAcc<'static>),
    deny: &dyn Fn(&ledger::Denial<'_>) -> bool,
) -> Result<(u64, Vec<u8>), StoreError> {
    let mut read = 0;
    loop {
        let r = exec.block(store.read_ledger_range(state.covered, CHUNK))?;
        if r.bytes.is_empty() {
            return Ok((read, Vec::new()));
        }
        let at_end = state.covered + r.bytes.len() as u64 >= r.len;
        match memchr::memrchr(b'\n', &r.bytes) {
            Some(i) => {
                let (whole, rest) = r.bytes.split_at(i + 1);
                read += whole.len() as u64;
                let index = ledger::parse(whole, threads);
                state.fold(index, whole.len() as u64, deny, settle);
                if at_end && !rest.is_empty() {
                    read += rest.len() as u64;
                    return Ok((read, rest.to_vec()));
                }
            }
            None if at_end => {
                read += r.bytes.len() as u64;
                return Ok((read, r.bytes));
            }
            None => {
                // A line longer than a chunk: skip to its end.
                let mut skipped = r.bytes.len() as u64;
                loop {
                    let more =
                        exec.block(store.read_ledger_range(state.covered + skipped, CHUNK))?;
                    match memchr::memchr(b'\n', &more.bytes) {
                        Some(i) => {
                            skipped += i as u64 + 1;
                            break;
                        }
                        None if more.bytes.is_empty() => break,
                        None => skipped += more.bytes.len() as u64,
                    }
                }
                read += skipped;
                state.line_count += 1;
                state.bad_line(
                    state.line_count,
                    format!("line longer than {} bytes", 1024 * 1024),
                );
                state.covered += skipped;
            }
        }
    }
}

/// Folds the ledger's unfinished last line into this report only (as a
/// whole-ledger scan counts it: a bad line), after the checkpoint was saved.
fn fold_unfinished(
    state: &mut State,
    bytes: &[u8],
    deny: &dyn Fn(&ledger::Denial<'_>) -> bool,
    settle: &mut dyn FnMut(&mut State, &str, RunAcc<'static>),
) {
    if !bytes.is_empty() {
        state.fold(ledger::parse(bytes, 1), bytes.len() as u64, deny, settle);
    }
}

/// The end of the covered prefix, as [`LastLine`] hashes it.
fn prefix_end(
    store: &dyn HandoffStore,
    exec: &Exec,
    covered: u64,
) -> Result<(Vec<u8>, u64), StoreError> {
    let from = covered.saturating_sub(TAIL);
    let r = exec.block(store.read_ledger_range(from, covered - from))?;
    Ok((r.bytes, r.len))
}

/// The checkpoint brought up to date (and saved), with the ledger's
/// unfinished last line folded in for this report only.
fn checkpointed(
    store: &dyn HandoffStore,
    exec: &Exec,
    threads: usize,
    path: &Path,
    problems: &ProblemList,
) -> Result<(State, IndexUse), MetricsError> {
    let (loaded, mut rebuilt) = load(path);
    let mut state = loaded.unwrap_or_default();
    if rebuilt.is_none() && state.covered > 0 {
        let (end, len) = prefix_end(store, exec, state.covered)?;
        if len < state.covered {
            rebuilt = Some(
                "the ledger is shorter than the index covers (truncated or rotated)".to_owned(),
            );
        } else if state.last_line.as_ref() != Some(&LastLine::of(&end)) {
            rebuilt =
                Some("the ledger differs from the one the index covers (replaced)".to_owned());
        }
        if rebuilt.is_some() {
            state = State::default();
        }
    }
    let covered_before = state.covered;
    let mut settle = |s: &mut State, id: &str, acc: RunAcc<'static>| {
        settle_into(s, id, acc, store, exec, problems, &|_| true);
    };
    let (read, unfinished) =
        match fold_to_end(store, exec, threads, &mut state, &mut settle, &|_| true) {
            Ok(done) => done,
            Err(e) => {
                // As a whole-ledger scan does: reported, and the rest stands.
                problems.file("ledger.jsonl".to_owned(), store_reason(&e));
                (0, Vec::new())
            }
        };
    if state.covered != covered_before || rebuilt.is_some() {
        match prefix_end(store, exec, state.covered) {
            Ok((end, _)) => {
                state.last_line = (state.covered > 0).then(|| LastLine::of(&end));
                if let Err(e) = save(path, &state.to_bytes()) {
                    tracing::warn!(
                        "could not save the metrics index at {}: {e} (the next report reads the ledger again)",
                        path.display()
                    );
                }
            }
            Err(e) => problems.file("ledger.jsonl".to_owned(), store_reason(&e)),
        }
    }
    fold_unfinished(&mut state, &unfinished, &|_| true, &mut settle);
    let use_ = IndexUse {
        kind: IndexKind::Checkpoint,
        bytes_read: read,
        bytes_covered: covered_before,
        rebuilt,
    };
    Ok((state, use_))
}

/// The checkpoint at `path`, or why there is none to use.
fn load(path: &Path) -> (Option<State>, Option<String>) {
    /// A checkpoint is small; anything larger is not one.
    const MAX: u64 = 256 << 20;
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (None, Some("no index yet".to_owned()));
        }
        Err(e) => return (None, Some(format!("the index could not be read ({e})"))),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX + 1).read_to_end(&mut bytes) {
        return (None, Some(format!("the index could not be read ({e})")));
    }
    if bytes.len() as u64 > MAX {
        return (None, Some(format!("the index is larger than {MAX} bytes")));
    }
    match State::from_bytes(&bytes) {
        Ok(s) => (Some(s), None),
        Err(why) => (None, Some(format!("the index is {why}"))),
    }
}

/// Writes the checkpoint: a new file beside it, then renamed over it, so
/// a reader sees the old one or the new one, never part of one.
fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The ledger from the window's start (`since` less [`SINCE_SLACK`],
/// found by bisection) to its end, folded into a fresh state that keeps
/// only what the window holds.
fn tail(
    store: &dyn HandoffStore,
    exec: &Exec,
    options: &Options,
    filter: &Filter,
    since: Timestamp,
    problems: &ProblemList,
) -> Result<(State, IndexUse), MetricsError> {
    let threads = options.thread_count();
    let start = bisect(store, exec, since.checked_sub(SINCE_SLACK).unwrap_or(since))?;
    let mut state = State {
        covered: start,
        ..State::default()
    };
    // The line the start cuts belongs to before the window.
    if start > 0 {
        let r = exec.block(store.read_ledger_range(start - 1, 1 << 20))?;
        match memchr::memchr(b'\n', &r.bytes) {
            Some(i) => state.covered = start + i as u64,
            None => state.covered = r.len,
        }
    }
    let keep = |acc: &RunAcc<'_>| counts_in_window(acc, filter);
    let mut settle = |s: &mut State, id: &str, acc: RunAcc<'static>| {
        settle_into(s, id, acc, store, exec, problems, &keep);
    };
    let deny = |d: &ledger::Denial<'_>| filter.in_window(Some(&d.ts));
    let (read, unfinished) = match fold_to_end(store, exec, threads, &mut state, &mut settle, &deny)
    {
        Ok(done) => done,
        Err(e) => {
            problems.file("ledger.jsonl".to_owned(), store_reason(&e));
            (0, Vec::new())
        }
    };
    fold_unfinished(&mut state, &unfinished, &deny, &mut settle);
    let use_ = IndexUse {
        kind: IndexKind::Tail,
        bytes_read: read,
        bytes_covered: 0,
        rebuilt: None,
    };
    Ok((state, use_))
}

/// An offset at or before the first line stamped at or after `at`: the
/// ledger is bisected on the time of the first whole line after a probe
/// (a probe that finds no readable time counts as "at or after", so the
/// search errs towards reading more).
fn bisect(store: &dyn HandoffStore, exec: &Exec, at: Timestamp) -> Result<u64, StoreError> {
    const PROBE: u64 = 16 << 10;
    let len = exec.block(store.read_ledger_range(0, 0))?.len;
    let (mut lo, mut hi) = (0u64, len);
    while hi - lo > 4 * PROBE {
        let mid = lo + (hi - lo) / 2;
        let r = exec.block(store.read_ledger_range(mid, PROBE))?;
        let before = memchr::memchr(b'\n', &r.bytes)
            .and_then(|i| line_time(&r.bytes[i + 1..]))
            .is_some_and(|t| t < at);
        if before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The `ts` of the line at the start of `bytes`, as orch writes it (the
/// first field).
fn line_time(bytes: &[u8]) -> Option<Timestamp> {
    let line = &bytes[..memchr::memchr(b'\n', bytes)?];
    let rest = line.strip_prefix(b"{\"ts\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}
