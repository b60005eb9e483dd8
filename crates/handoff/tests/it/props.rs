//! Property tests (proptest) of the handoff parser and the ledger reader.
//!
//! - Arbitrary bytes, and valid documents after random mutations (cuts,
//!   flipped, inserted and deleted bytes, repeated lines, JSON tokens
//!   spliced in), never make the parser panic; whatever it accepts is a
//!   handoff that round-trips.
//! - Every strict prefix of a valid document reads as *incomplete* (a file
//!   still being written is waited on, never reported broken).
//! - Valid documents round-trip: parse → write → parse gives the same
//!   handoff, unknown fields (nested JSON of every kind) included, and the
//!   bytes written again are the same.
//! - The ledger reader never panics on arbitrary bytes and reads back what
//!   was written, garbage lines counted by number; `dispatched` (a
//!   backwards scan in chunks) agrees with reading the whole ledger, for
//!   chunks of every size.
//!
//! Inputs are bounded (documents of a few KiB, nesting within serde_json's
//! limit of 128 plus a few cases past it), so a case cannot hang.
//!
//! Each target runs `PROPTEST_CASES` cases (by default 64 to 256, a few
//! seconds per target in a debug build). `ORCH_PROPTEST_MINUTES=10` runs every target for ten minutes
//! instead, in batches of 1,000 cases with fresh seeds, and prints how many
//! cases ran: `ORCH_PROPTEST_MINUTES=10 cargo test --release -p orch-handoff
//! --test it props:: -- --test-threads 1 --nocapture`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use orch_handoff::Ledger as _;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use orch_handoff::{
    Artifact, ArtifactRef, Confidence, Expect, FsStore, FsStoreConfig, Handoff, LedgerEvent,
    LedgerEventKind, RunId, Status, parse_handoff,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

// ----------------------------------------------------------------- harness

/// Runs `test` on values of `strategy`: `PROPTEST_CASES` cases (else
/// `default_cases`, sized so a target takes a few seconds in a debug build),
/// or for `ORCH_PROPTEST_MINUTES` minutes.
fn run<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let minutes = std::env::var("ORCH_PROPTEST_MINUTES")
        .ok()
        .and_then(|m| m.parse::<f64>().ok());
    let config = |cases| Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let Some(minutes) = minutes else {
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
            Config::default().cases
        } else {
            default_cases
        };
        let mut runner = TestRunner::new(config(cases));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        return;
    };
    let budget = Duration::from_secs_f64(minutes * 60.0);
    let start = Instant::now();
    let mut cases = 0u64;
    while start.elapsed() < budget {
        // A new runner draws a new seed.
        let mut runner = TestRunner::new(config(1000));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: after {cases} cases: {e}");
        }
        cases += 1000;
    }
    eprintln!(
        "{name}: {cases} cases in {:.0?}, 0 failures",
        start.elapsed()
    );
}

// -------------------------------------------------------------- strategies

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,30}"
}

/// Any JSON value, nested up to four levels; objects never repeat a key.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Unknown fields: any keys but the ones in `known`.
fn extra(known: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..4).prop_map(move |m| {
        m.into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect()
    })
}

const HANDOFF_FIELDS: &[&str] = &[
    "schemaVersion",
    "runId",
    "agent",
    "status",
    "result",
    "artifacts",
    "confidence",
    "notes",
    "timestamp",
];

fn non_empty() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("non-empty", |s| !s.is_empty())
}

fn artifact() -> impl Strategy<Value = Artifact> {
    prop_oneof![
        non_empty().prop_map(Artifact::Plain),
        (
            proptest::option::of(non_empty()),
            proptest::option::of(non_empty()),
            extra(&["path", "url"]),
        )
            .prop_filter("path or url", |(p, u, _)| p.is_some() || u.is_some())
            .prop_map(|(path, url, extra)| Artifact::Ref(ArtifactRef { path, url, extra })),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Complete),
        Just(Status::Partial),
        Just(Status::Blocked),
        Just(Status::Failed),
    ]
}

fn confidence() -> impl Strategy<Value = Option<Confidence>> {
    proptest::option::of(prop_oneof![
        Just(Confidence::Low),
        Just(Confidence::Medium),
        Just(Confidence::High),
    ])
}

fn timestamp() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        (0i64..4_000_000_000, 0i32..1_000_000_000).prop_map(|(s, ns)| {
            jiff::Timestamp::new(s, ns)
                .map(|t| t.to_string())
                .unwrap_or_default()
        }),
    )
}

/// A valid handoff, unknown fields and all.
fn handoff() -> impl Strategy<Value = Handoff> {
    (
        (0u32..30, id(), id(), status(), any::<String>()),
        (
            prop::collection::vec(artifact(), 0..3),
            confidence(),
            any::<String>(),
            timestamp(),
            extra(HANDOFF_FIELDS),
        ),
    )
        .prop_map(
            |(
                (minor, run_id, agent, status, result),
                (artifacts, confidence, notes, timestamp, extra),
            )| Handoff {
                schema_version: format!("1.{minor}"),
                run_id: RunId::new(run_id).unwrap(),
                agent,
                status,
                result,
                artifacts,
                confidence,
                notes,
                timestamp,
                extra,
            },
        )
}

/// A change to a document's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Cut(usize),
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    RepeatLine(usize),
    Splice(usize, &'static str),
}

/// JSON fragments that make the interesting mistakes.
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\\",
    "null",
    "-",
    "1e999",
    "NaN",
    "\"runId\": \"x\",",
    "\"agent\": \"a\",",
    "\"status\": \"done\",",
    "\"schemaVersion\": \"2.0\",",
    "\"x\": 1, \"x\": 2,",
    "\\u0000",
    "\\ud800",
    "\u{feff}",
    "\u{202e}",
    "\u{1b}[31m",
    "\u{0}",
    "[[[[[[[[",
    "]]]]]]]]",
    "\"a\":{\"b\":{\"c\":[]}}",
    "//",
    "'",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::RepeatLine),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Mutation::Splice(i, t)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *m {
        Mutation::Cut(i) => bytes.truncate(at(i)),
        Mutation::Flip(i, b) => {
            let i = at(i);
            bytes[i] ^= b | 1;
        }
        Mutation::Insert(i, b) => {
            let i = at(i);
            bytes.insert(i, b);
        }
        Mutation::Delete(i) => {
            let i = at(i);
            bytes.remove(i);
        }
        Mutation::RepeatLine(i) => {
            let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
            let n = i % lines.len();
            let mut out = Vec::with_capacity(bytes.len() * 2);
            for (k, line) in lines.iter().enumerate() {
                out.extend_from_slice(line);
                out.push(b'\n');
                if k == n {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            *bytes = out;
        }
        Mutation::Splice(i, token) => {
            let i = at(i);
            bytes.splice(i..i, token.bytes());
        }
    }
}

/// What the parser accepted must be a handoff that round-trips.
fn accepted_round_trips(h: &Handoff) -> Result<(), TestCaseError> {
    let written = h.to_json_pretty();
    let again = parse_handoff(&written, &Expect::default())
        .map_err(|e| TestCaseError::fail(format!("accepted, written, refused: {e}")))?;
    prop_assert_eq!(&again, h);
    prop_assert_eq!(again.to_json_pretty(), written);
    Ok(())
}

// ------------------------------------------------------- parser properties

#[test]
fn the_parser_never_panics_on_arbitrary_bytes() {
    run(
        "parser: arbitrary bytes",
        256,
        prop::collection::vec(any::<u8>(), 0..2048),
        |bytes| {
            if let Ok(h) = parse_handoff(&bytes, &Expect::default()) {
                accepted_round_trips(&h)?;
            }
            Ok(())
        },
    );
}

#[test]
fn the_parser_never_panics_on_mutated_documents() {
    run(
        "parser: mutated documents",
        256,
        (handoff(), prop::collection::vec(mutation(), 1..5)),
        |(h, mutations)| {
            let mut bytes = h.to_json_pretty();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            let run_id = h.run_id.clone();
            let expect = Expect {
                run_id: Some(&run_id),
                agent: Some(&h.agent),
            };
            let _ = parse_handoff(&bytes, &expect);
            if let Ok(got) = parse_handoff(&bytes, &Expect::default()) {
                accepted_round_trips(&got)?;
            }
            Ok(())
        },
    );
}

#[test]
fn every_prefix_of_a_document_is_incomplete() {
    run(
        "parser: prefixes",
        256,
        (handoff(), any::<bool>(), any::<prop::sample::Index>()),
        |(h, compact, cut)| {
            let bytes = if compact {
                serde_json::to_vec(&h).unwrap()
            } else {
                h.to_json_pretty()
            };
            let end = bytes.trim_ascii_end().len();
            let cut = cut.index(end);
            match parse_handoff(&bytes[..cut], &Expect::default()) {
                Err(e) if e.is_incomplete() => Ok(()),
                other => Err(TestCaseError::fail(format!(
                    "a prefix of {cut} of {end} bytes is not incomplete: {other:?}\n{}",
                    String::from_utf8_lossy(&bytes[..cut])
                ))),
            }
        },
    );
}

#[test]
fn valid_documents_round_trip_with_unknown_fields() {
    run("parser: round trip", 256, handoff(), |h| {
        for bytes in [h.to_json_pretty(), serde_json::to_vec(&h).unwrap()] {
            let parsed = parse_handoff(&bytes, &Expect::default())
                .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            prop_assert_eq!(&parsed, &h);
            accepted_round_trips(&parsed)?;
        }
        Ok(())
    });
}

#[test]
fn nesting_past_the_limit_is_an_error_not_a_crash() {
    run(
        "parser: deep nesting",
        256,
        (1usize..400, any::<bool>(), any::<bool>()),
        |(depth, arrays, close)| {
            let (open, shut) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            let mut doc = String::from(
                r#"{"schemaVersion":"1.0","runId":"r","agent":"a","status":"complete","result":"x","deep":"#,
            );
            doc.push_str(&open.repeat(depth));
            doc.push('1');
            if close {
                doc.push_str(&shut.repeat(depth));
                doc.push('}');
            }
            match parse_handoff(doc.as_bytes(), &Expect::default()) {
                Ok(h) => accepted_round_trips(&h),
                Err(_) => Ok(()),
            }
        },
    );
}

// ------------------------------------------------------- ledger properties

const LEDGER_FIELDS: &[&str] = &[
    "ts",
    "event",
    "runId",
    "agent",
    "caller",
    "parent",
    "workflow",
    "step",
    "status",
    "confidence",
    "latencyMs",
    "attempt",
    "detail",
];

fn kind() -> impl Strategy<Value = LedgerEventKind> {
    prop::sample::select(vec![
        LedgerEventKind::Dispatched,
        LedgerEventKind::Acked,
        LedgerEventKind::Retried,
        LedgerEventKind::Handoff,
        LedgerEventKind::Invalid,
        LedgerEventKind::Reasked,
        LedgerEventKind::Timeout,
        LedgerEventKind::Denied,
        LedgerEventKind::Validated,
        LedgerEventKind::Failed,
        LedgerEventKind::Cancelled,
        LedgerEventKind::Other,
    ])
}

/// Run ids from a small pool, so lines of one run recur.
fn pooled_run_id() -> impl Strategy<Value = RunId> {
    prop::sample::select(vec!["a", "b", "a.b", "ab", "orch-1", "x-a"])
        .prop_map(|s| RunId::new(s).unwrap())
}

fn ledger_event() -> impl Strategy<Value = LedgerEvent> {
    (
        (
            any::<String>(),
            kind(),
            proptest::option::of(pooled_run_id()),
        ),
        (
            proptest::option::of(any::<String>()),
            proptest::option::of(id()),
            proptest::option::of(pooled_run_id()),
            proptest::option::of(pooled_run_id()),
            proptest::option::of(id()),
        ),
        (
            proptest::option::of(status()),
            confidence(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<String>()),
            extra(LEDGER_FIELDS),
        ),
    )
        .prop_map(
            |(
                (ts, event, run_id),
                (agent, caller, parent, workflow, step),
                (status, confidence, latency_ms, attempt, detail, extra),
            )| LedgerEvent {
                ts,
                event,
                run_id,
                agent,
                caller,
                parent,
                workflow,
                step,
                status,
                confidence,
                latency_ms,
                attempt,
                detail,
                extra,
            },
        )
}

/// A ledger line: an event, or garbage (which may mention a run id).
#[derive(Clone, Debug)]
enum Line {
    Event(Box<LedgerEvent>),
    Garbage(Vec<u8>),
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => ledger_event().prop_map(|e| Line::Event(Box::new(e))),
        1 => prop::collection::vec(any::<u8>(), 0..80)
            .prop_map(|b| Line::Garbage(b.into_iter().filter(|b| *b != b'\n').collect())),
        1 => pooled_run_id().prop_map(|id| Line::Garbage(
            format!(r#"{{"event":"dispatched","runId":"{id}""#).into_bytes()
        )),
    ]
}

fn ledger_bytes(lines: &[Line], torn: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        match line {
            Line::Event(e) => out.extend(serde_json::to_vec(&**e).unwrap()),
            Line::Garbage(g) => out.extend_from_slice(g),
        }
        out.push(b'\n');
    }
    if let Some(torn) = torn {
        out.extend_from_slice(torn);
    }
    out
}

/// One store, its ledger rewritten for every case.
struct Ledger {
    _dir: tempfile::TempDir,
    store: FsStore,
    runtime: tokio::runtime::Runtime,
}

impl Ledger {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Self {
            _dir: dir,
            store,
            runtime,
        }
    }

    fn write(&self, bytes: &[u8]) {
        std::fs::write(self.store.root().join("ledger.jsonl"), bytes).unwrap();
    }
}

#[test]
fn the_ledger_reader_never_panics_on_arbitrary_bytes() {
    let ledger = Ledger::new();
    run(
        "ledger: arbitrary bytes",
        128,
        // Bytes, one in eight of them a newline (lines of every length).
        prop::collection::vec(any::<u8>(), 0..4096).prop_map(|mut b| {
            for x in &mut b {
                if *x % 8 == 0 {
                    *x = b'\n';
                }
            }
            b
        }),
        |bytes| {
            ledger.write(&bytes);
            let read = ledger.runtime.block_on(ledger.store.read_ledger()).unwrap();
            let lines = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            prop_assert!(read.events.len() + read.bad_lines.len() <= lines);
            let raw = ledger
                .runtime
                .block_on(ledger.store.read_ledger_raw())
                .unwrap();
            prop_assert_eq!(raw, bytes);
            for id in ["a", "b", "orch-1"] {
                ledger
                    .store
                    .dispatched_in_chunks(&RunId::new(id).unwrap(), 7)
                    .unwrap();
            }
            Ok(())
        },
    );
}

#[test]
fn the_ledger_reads_back_what_was_written() {
    let ledger = Ledger::new();
    run(
        "ledger: round trip",
        64,
        prop::collection::vec(line(), 0..40),
        |lines| {
            ledger.write(&ledger_bytes(&lines, None));
            let read = ledger.runtime.block_on(ledger.store.read_ledger()).unwrap();
            let events: Vec<&LedgerEvent> = lines
                .iter()
                .filter_map(|l| match l {
                    Line::Event(e) => Some(&**e),
                    Line::Garbage(_) => None,
                })
                .collect();
            prop_assert_eq!(read.events.iter().collect::<Vec<_>>(), events);
            // Every garbage line that is not blank is a bad line, by number.
            let bad: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, l)| match l {
                    Line::Garbage(g)
                        if !g.trim_ascii().is_empty()
                            && serde_json::from_slice::<LedgerEvent>(g.trim_ascii()).is_err() =>
                    {
                        Some(i + 1)
                    }
                    _ => None,
                })
                .collect();
            let got: Vec<usize> = read.bad_lines.iter().map(|(n, _)| *n).collect();
            prop_assert_eq!(got, bad);
            Ok(())
        },
    );
}

#[test]
fn dispatched_agrees_with_reading_the_whole_ledger() {
    let ledger = Ledger::new();
    run(
        "ledger: dispatched",
        64,
        (
            prop::collection::vec(line(), 0..40),
            proptest::option::of(prop::collection::vec(any::<u8>(), 1..60)),
            1usize..200,
        ),
        |(lines, torn, chunk)| {
            let torn: Option<Vec<u8>> =
                torn.map(|t| t.into_iter().filter(|b| *b != b'\n').collect());
            ledger.write(&ledger_bytes(&lines, torn.as_deref()));
            let read = ledger.runtime.block_on(ledger.store.read_ledger()).unwrap();
            for id in ["a", "b", "a.b", "ab", "orch-1", "x-a", "never"] {
                let id = RunId::new(id).unwrap();
                let expected = read
                    .events
                    .iter()
                    .rev()
                    .find(|e| {
                        e.event == LedgerEventKind::Dispatched && e.run_id.as_ref() == Some(&id)
                    })
                    .cloned();
                let scanned = ledger.store.dispatched_in_chunks(&id, chunk).unwrap();
                prop_assert_eq!(&scanned, &expected, "{} in chunks of {}", id, chunk);
                let whole = ledger
                    .runtime
                    .block_on(ledger.store.dispatched(&id))
                    .unwrap();
                prop_assert_eq!(&whole, &expected, "{}", id);
            }
            Ok(())
        },
    );
}
