//! The index: a report read through the checkpoint equals the whole
//! ledger's, wherever the ledger was cut between reports (a property test
//! over random ledgers); a truncated, replaced or corrupt checkpoint is
//! rebuilt; `--since` reads the tail only and agrees with the whole read.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use orch_metrics::{Distribution, IndexKind, Options, Report};
use proptest::prelude::*;

use crate::{now, scan};

/// One ledger event of a generated run.
#[derive(Clone, Debug)]
enum Ev {
    Acked,
    Retried,
    Invalid,
    Reasked,
    Handoff(&'static str, Option<&'static str>, u64),
    Timeout,
    Failed,
    Cancelled,
    Validated,
}

const AGENTS: &[&str] = &["webster", "tech-lead", "auditor"];
const CALLERS: &[Option<&str>] = &[Some("manager"), Some("ops"), None];

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        Just(Ev::Acked),
        Just(Ev::Retried),
        Just(Ev::Invalid),
        Just(Ev::Reasked),
        (
            prop::sample::select(vec!["complete", "partial", "blocked", "failed"]),
            prop::option::of(prop::sample::select(vec!["high", "medium", "low"])),
            prop_oneof![0u64..300, 0u64..5_000_000],
        )
            .prop_map(|(s, c, l)| Ev::Handoff(s, c, l)),
        Just(Ev::Timeout),
        Just(Ev::Failed),
        Just(Ev::Cancelled),
        Just(Ev::Validated),
    ]
}

/// A run: agent, caller, a parent (an earlier run's index), the gap after
/// the previous run's start (seconds: up to two days), its events.
type Run = (usize, usize, Option<usize>, u64, Vec<Ev>);

fn run() -> impl Strategy<Value = Run> {
    (
        0..AGENTS.len(),
        0..CALLERS.len(),
        prop::option::of(0usize..8),
        prop_oneof![0u64..600, 0u64..172_800],
        prop::collection::vec(ev(), 0..5),
    )
}

fn base() -> Timestamp {
    "2026-10-01T00:00:00Z".parse().unwrap()
}

/// The ledger of `runs`, lines in time order, with `denials` ACL refusals
/// and `junk` bad lines among them. A run's lines span at most an hour.
fn ledger(runs: &[Run], denials: &[(usize, u64)], junk: &[u64]) -> Vec<u8> {
    let mut lines: Vec<(Timestamp, String)> = Vec::new();
    let mut at = base();
    for (i, (agent, caller, parent, gap, evs)) in runs.iter().enumerate() {
        at += SignedDuration::from_secs(*gap as i64);
        let id = format!("r{i:04}");
        let agent = AGENTS[*agent];
        let mut ident = format!(r#""runId":"{id}","agent":"{agent}""#);
        if let Some(c) = CALLERS[*caller] {
            ident.push_str(&format!(r#","caller":"{c}""#));
        }
        if let Some(p) = parent.filter(|p| *p < i) {
            ident.push_str(&format!(r#","parent":"r{p:04}""#));
        }
        lines.push((
            at,
            format!(r#"{{"ts":"{at}","event":"dispatched",{ident}}}"#),
        ));
        for (k, e) in evs.iter().enumerate() {
            let t = at + SignedDuration::from_secs(60 * (k as i64 + 1));
            let tail = match e {
                Ev::Acked => r#""event":"acked""#.to_owned(),
                Ev::Retried => r#""event":"retried""#.to_owned(),
                Ev::Invalid => r#""event":"invalid""#.to_owned(),
                Ev::Reasked => r#""event":"reasked""#.to_owned(),
                Ev::Handoff(s, c, l) => {
                    let c = c.map_or(String::new(), |c| format!(r#","confidence":"{c}""#));
                    format!(r#""event":"handoff","status":"{s}"{c},"latencyMs":{l}"#)
                }
                Ev::Timeout => r#""event":"timeout""#.to_owned(),
                Ev::Failed => r#""event":"failed""#.to_owned(),
                Ev::Cancelled => r#""event":"cancelled""#.to_owned(),
                Ev::Validated => r#""event":"validated""#.to_owned(),
            };
            lines.push((t, format!(r#"{{"ts":"{t}",{tail},{ident}}}"#)));
        }
    }
    let end = at;
    let span = (end - base()).as_secs().max(1) as u64;
    for (agent, when) in denials {
        let t = base() + SignedDuration::from_secs((when % span) as i64);
        let a = AGENTS[agent % AGENTS.len()];
        lines.push((
            t,
            format!(r#"{{"ts":"{t}","event":"denied","agent":"{a}","caller":"ops"}}"#),
        ));
    }
    for when in junk {
        let t = base() + SignedDuration::from_secs((when % span) as i64);
        lines.push((
            t,
            format!(r#"{{"ts":"{t}","event":"handoff","runId":"../x"}}"#),
        ));
    }
    lines.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    for (_, l) in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

fn indexed(root: &Path) -> Options {
    Options {
        index: Some(index_path(root)),
        ..crate::options()
    }
}

fn index_path(root: &Path) -> PathBuf {
    root.join(".index/metrics-v1.json")
}

/// A percentile from the index: within 1 % of the exact one.
fn close(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a as f64 - b as f64).abs() <= b as f64 * 0.01,
        (a, b) => a == b,
    }
}

fn same_distribution(got: &Distribution, want: &Distribution) -> Result<(), String> {
    let exact = |d: &Distribution| (d.count, d.sum_ms, d.max_ms, d.buckets.clone());
    if exact(got) != exact(want)
        || !close(got.p50_ms, want.p50_ms)
        || !close(got.p90_ms, want.p90_ms)
        || !close(got.p99_ms, want.p99_ms)
    {
        return Err(format!("{got:?}\n!=\n{want:?}"));
    }
    Ok(())
}

/// The index's report agrees with the whole ledger's: every count equal,
/// percentiles within 1 %. (What only a listing finds, files the ledger
/// does not account for, is not compared: there are none here.)
fn agree(got: &Report, want: &Report) -> Result<(), String> {
    agree_on(got, want, true)
}

/// [`agree`], without the ledger's line counts when `lines` is false (a
/// tail counts only its own).
fn agree_on(got: &Report, want: &Report, lines: bool) -> Result<(), String> {
    same_distribution(&got.totals.latency, &want.totals.latency)?;
    let mut g = got.clone();
    let mut w = want.clone();
    g.totals.latency = Distribution::default();
    w.totals.latency = Distribution::default();
    if g.agents.len() != w.agents.len() {
        return Err(format!("agents {:?} != {:?}", g.agents, w.agents));
    }
    for (a, b) in g.agents.iter_mut().zip(w.agents.iter_mut()) {
        same_distribution(&a.latency, &b.latency)?;
        a.latency = Distribution::default();
        b.latency = Distribution::default();
    }
    let pairs = [
        (
            serde_json::to_value(&g.totals).unwrap(),
            serde_json::to_value(&w.totals).unwrap(),
        ),
        (
            serde_json::to_value(&g.agents).unwrap(),
            serde_json::to_value(&w.agents).unwrap(),
        ),
        (
            serde_json::to_value(&g.callers).unwrap(),
            serde_json::to_value(&w.callers).unwrap(),
        ),
        (
            serde_json::json!([
                g.problems.ledger_bad_lines,
                g.problems.ledger_lines,
                g.source.ledger_lines
            ]),
            serde_json::json!([
                w.problems.ledger_bad_lines,
                w.problems.ledger_lines,
                w.source.ledger_lines
            ]),
        ),
    ];
    for (a, b) in pairs.into_iter().take(if lines { 4 } else { 3 }) {
        if a != b {
            return Err(format!("{a:#}\n!=\n{b:#}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random ledgers, cut at random bytes (a line cut in half too) into a
    /// part the index has seen and parts it has not: after each part the
    /// report through the index equals the whole read of that much ledger.
    #[test]
    fn the_index_agrees_with_the_whole_ledger_wherever_it_was_cut(
        runs in prop::collection::vec(run(), 1..40),
        denials in prop::collection::vec((0usize..3, any::<u64>()), 0..4),
        junk in prop::collection::vec(any::<u64>(), 0..3),
        cuts in prop::collection::vec(0.0f64..1.0, 1..4),
    ) {
        let bytes = ledger(&runs, &denials, &junk);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| (c * bytes.len() as f64) as usize).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        for cut in cuts {
            std::fs::write(root.join("ledger.jsonl"), &bytes[..cut]).unwrap();
            let got = scan(root, &indexed(root));
            let want = scan(root, &crate::options());
            prop_assert!(got.source.index.is_some());
            if let Err(why) = agree(&got, &want) {
                prop_assert!(false, "cut at {cut} of {}: {why}", bytes.len());
            }
        }
    }
}

/// A ledger of `n` runs `gap` seconds apart, each ending with a handoff.
fn plain_ledger(n: usize, gap: u64) -> Vec<u8> {
    let runs: Vec<Run> = (0..n)
        .map(|i| {
            (
                i % 3,
                i % 3,
                None,
                gap,
                vec![Ev::Handoff(
                    "complete",
                    Some("high"),
                    (i as u64 * 7919) % 90_000,
                )],
            )
        })
        .collect();
    ledger(&runs, &[], &[])
}

#[test]
fn a_second_report_reads_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let bytes = plain_ledger(3000, 3600);
    let half = bytes.len() / 2;
    let half = half + bytes[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(root.join("ledger.jsonl"), &bytes[..half]).unwrap();
    let first = scan(root, &indexed(root)).source.index.unwrap();
    assert_eq!(first.rebuilt.as_deref(), Some("no index yet"));
    assert_eq!(first.bytes_read, half as u64);
    // The checkpoint holds the settled aggregates and the last day's runs,
    // not every run.
    let saved = std::fs::read(index_path(root)).unwrap();
    assert!(saved.len() < half / 10, "{} bytes", saved.len());

    std::fs::write(root.join("ledger.jsonl"), &bytes).unwrap();
    let report = scan(root, &indexed(root));
    let second = report.source.index.clone().unwrap();
    assert_eq!(second.rebuilt, None);
    assert_eq!(second.bytes_covered, half as u64);
    assert_eq!(second.bytes_read, (bytes.len() - half) as u64);
    assert_eq!(report.totals.delegations, 3000);
    agree(&report, &scan(root, &crate::options())).unwrap();
}

#[test]
fn a_truncated_replaced_or_corrupt_ledger_or_checkpoint_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let bytes = plain_ledger(400, 60);
    std::fs::write(root.join("ledger.jsonl"), &bytes).unwrap();
    scan(root, &indexed(root));

    // Rotated: a shorter ledger.
    let shorter = plain_ledger(100, 60);
    std::fs::write(root.join("ledger.jsonl"), &shorter).unwrap();
    let r = scan(root, &indexed(root));
    assert!(
        r.source
            .index
            .as_ref()
            .unwrap()
            .rebuilt
            .as_deref()
            .unwrap()
            .contains("shorter"),
        "{:?}",
        r.source.index
    );
    assert_eq!(r.totals.delegations, 100);

    // Replaced: as long, other lines.
    scan(root, &indexed(root));
    let mut other = shorter.clone();
    let i = other.iter().rposition(|&b| b == b'h').unwrap();
    other[i] = b'H';
    std::fs::write(root.join("ledger.jsonl"), &other).unwrap();
    let r = scan(root, &indexed(root));
    assert!(
        r.source
            .index
            .as_ref()
            .unwrap()
            .rebuilt
            .as_deref()
            .unwrap()
            .contains("replaced"),
        "{:?}",
        r.source.index
    );

    // A corrupt checkpoint, and one of another version.
    std::fs::write(index_path(root), b"{\"version\":1,\"cov").unwrap();
    let r = scan(root, &indexed(root));
    assert!(
        r.source
            .index
            .unwrap()
            .rebuilt
            .unwrap()
            .contains("unreadable")
    );
    let v2 = String::from_utf8(std::fs::read(index_path(root)).unwrap())
        .unwrap()
        .replace("\"version\":1", "\"version\":2");
    std::fs::write(index_path(root), v2).unwrap();
    let r = scan(root, &indexed(root));
    assert!(
        r.source
            .index
            .as_ref()
            .unwrap()
            .rebuilt
            .as_deref()
            .unwrap()
            .contains("version 2")
    );
    agree(&r, &scan(root, &crate::options())).unwrap();
}

#[test]
fn since_reads_the_tail_and_agrees_with_the_whole_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let bytes = plain_ledger(5000, 60);
    std::fs::write(root.join("ledger.jsonl"), &bytes).unwrap();
    // The last 500 runs (a minute apart), and one line more.
    let since = base() + SignedDuration::from_mins(4500) + SignedDuration::from_secs(30);
    let window = |index: bool| Options {
        since: Some(since),
        index: index.then(|| index_path(root)),
        ..Options::new(now())
    };
    let tail = scan(root, &window(true));
    let whole = scan(root, &window(false));
    let used = tail.source.index.clone().unwrap();
    assert_eq!(used.kind, IndexKind::Tail);
    assert!(
        used.bytes_read < bytes.len() as u64 / 5,
        "read {} of {}",
        used.bytes_read,
        bytes.len()
    );
    assert_eq!(tail.totals.delegations, 500);
    agree_on(&tail, &whole, false).unwrap();
}
