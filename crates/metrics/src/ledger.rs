//! The ledger as an index: a lean, borrowed, parallel parse of
//! `ledger.jsonl` into one accumulator per delegation run.
//!
//! The bytes are cut into one chunk per thread at line boundaries
//! (`memchr`). Each line becomes a [`Line`] that borrows its strings from
//! the ledger: lines in orch's own shape (one flat object, no whitespace,
//! no escapes; every line orch writes) are read by a strict hand-written
//! scanner ([`fast_line`]), anything else by `serde_json`, so the scanner
//! only ever accepts what `serde_json` would accept, with the same result
//! (a test checks this on thousands of lines, well-formed and mangled).
//!
//! Each thread folds its lines into maps run id → [`RunAcc`], in file
//! order, one map per *partition* (a hash of the run id picks it). Then
//! partition `p` of every chunk is merged, in chunk order, on thread `p`:
//! the result equals one fold over the whole file, and later passes (match
//! the listing, count) run on every partition at once too.
//!
//! A line is bad (reported, skipped) exactly when `orch-handoff`'s
//! `read_ledger` would report it: not JSON, `ts` or `event` missing, a run
//! id that is not a valid id, a status or confidence out of range, or
//! longer than 1 MiB. `acked` and `validated` lines are checked but carry
//! nothing a report uses.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use orch_handoff::{Confidence, Scope, Status, validate_id};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::par::on_threads;

/// Longest line read (as in `orch-handoff`).
const MAX_LINE: usize = 1024 * 1024;

/// rustc's Fx hash (`rustc-hash`): several times faster than SipHash on
/// run ids; its keys come from the local store, so resistance to crafted
/// collisions is not needed.
pub(crate) type FxBuild = rustc_hash::FxBuildHasher;

/// A map keyed by run id.
pub(crate) type RunMap<'a, V> = HashMap<Cow<'a, str>, V, FxBuild>;

/// A string borrowed from the ledger when it has no escapes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of a ledger line that metrics read.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    #[serde(borrow)]
    ts: Str<'a>,
    #[serde(borrow)]
    event: Str<'a>,
    #[serde(borrow, default)]
    run_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    agent: Option<Str<'a>>,
    #[serde(borrow, default)]
    caller: Option<Str<'a>>,
    #[serde(borrow, default)]
    parent: Option<Str<'a>>,
    #[serde(borrow, default)]
    workflow: Option<Str<'a>>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    confidence: Option<Confidence>,
    #[serde(default)]
    latency_ms: Option<u64>,
}

/// A value in a line of orch's own shape.
enum Value<'a> {
    Str(&'a str),
    Num(u64),
    Null,
}

/// Reads a line in orch's own shape: one flat JSON object without
/// whitespace whose values are strings without escapes or control
/// characters, unsigned integers, or `null`. Anything else (whitespace,
/// escapes, nested values, booleans, a duplicate field, a field of the
/// wrong type, a missing `ts` or `event`) is `None`, and the line goes to
/// `serde_json`, which reads it or says what is wrong with it.
fn fast_line(text: &[u8]) -> Option<Line<'_>> {
    let s = std::str::from_utf8(text).ok()?;
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
        return None;
    }
    let plain = |v: &str| !v.bytes().any(|c| c < 0x20 || c == b'\\');
    let mut i = 1;
    let mut seen = 0u16;
    let (mut ts, mut event) = (None, None);
    let mut line = Line {
        ts: Str(Cow::Borrowed("")),
        event: Str(Cow::Borrowed("")),
        run_id: None,
        agent: None,
        caller: None,
        parent: None,
        workflow: None,
        status: None,
        confidence: None,
        latency_ms: None,
    };
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let end = i + 1 + memchr::memchr(b'"', b.get(i + 1..)?)?;
        let key = s.get(i + 1..end)?;
        if !plain(key) || *b.get(end + 1)? != b':' {
            return None;
        }
        i = end + 2;
        let value = match *b.get(i)? {
            b'"' => {
                let end = i + 1 + memchr::memchr(b'"', b.get(i + 1..)?)?;
                let v = s.get(i + 1..end)?;
                if !plain(v) {
                    return None;
                }
                i = end + 1;
                Value::Str(v)
            }
            b'0'..=b'9' => {
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let digits = s.get(start..i)?;
                if digits.len() > 1 && digits.starts_with('0') {
                    return None;
                }
                Value::Num(digits.parse().ok()?)
            }
            b'n' if b.get(i..i + 4) == Some(b"null") => {
                i += 4;
                Value::Null
            }
            _ => return None,
        };
        let bit = match key {
            "ts" => 0,
            "event" => 1,
            "runId" => 2,
            "agent" => 3,
            "caller" => 4,
            "parent" => 5,
            "workflow" => 6,
            "status" => 7,
            "confidence" => 8,
            "latencyMs" => 9,
            _ => 16,
        };
        if bit < 16 {
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
        }
        match (bit, value) {
            (0, Value::Str(v)) => ts = Some(v),
            (1, Value::Str(v)) => event = Some(v),
            (2..=6, Value::Str(v)) => {
                let slot = match bit {
                    2 => &mut line.run_id,
                    3 => &mut line.agent,
                    4 => &mut line.caller,
                    5 => &mut line.parent,
                    _ => &mut line.workflow,
                };
                *slot = Some(Str(Cow::Borrowed(v)));
            }
            (2..=9, Value::Null) => {}
            (7, Value::Str(v)) => {
                line.status = Some(match v {
                    "complete" => Status::Complete,
                    "partial" => Status::Partial,
                    "blocked" => Status::Blocked,
                    "failed" => Status::Failed,
                    _ => return None,
                });
            }
            (8, Value::Str(v)) => {
                line.confidence = Some(match v {
                    "high" => Confidence::High,
                    "medium" => Confidence::Medium,
                    "low" => Confidence::Low,
                    _ => return None,
                });
            }
            (9, Value::Num(n)) => line.latency_ms = Some(n),
            (16, _) => {}
            _ => return None,
        }
        match *b.get(i)? {
            b',' => i += 1,
            b'}' if i == b.len() - 1 => break,
            _ => return None,
        }
    }
    line.ts = Str(Cow::Borrowed(ts?));
    line.event = Str(Cow::Borrowed(event?));
    Some(line)
}

/// How a delegation ended, as far as the ledger knows (serialised in the
/// index's checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(crate) enum End {
    Handoff {
        status: Status,
        confidence: Option<Confidence>,
        latency_ms: Option<u64>,
    },
    TimedOut,
    Invalid,
    Error,
    Cancelled,
}

/// Everything the ledger says about one delegation run.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunAcc<'a> {
    /// Dispatch time (else the time of its first line).
    pub(crate) ts: Option<Cow<'a, str>>,
    pub(crate) dispatched: bool,
    pub(crate) agent: Option<Cow<'a, str>>,
    pub(crate) caller: Option<Cow<'a, str>>,
    pub(crate) parent: Option<Cow<'a, str>>,
    pub(crate) workflow: Option<Cow<'a, str>>,
    /// The last ending event (`reasked` clears it: the run went on).
    pub(crate) end: Option<End>,
    /// Whether any line touched `end` (for merging chunks).
    pub(crate) touched: bool,
    pub(crate) reasks: u32,
    pub(crate) retries: u32,
    /// The time of its last line (the index settles a run once this is
    /// old enough).
    pub(crate) last: Option<Cow<'a, str>>,
    /// Where its handoff file is, if the store lists one (set after the
    /// parse, from the listing).
    pub(crate) file: Option<Scope>,
}

impl<'a> RunAcc<'a> {
    fn identity(&mut self, line: &Line<'a>, authoritative: bool) {
        fn set<'a>(slot: &mut Option<Cow<'a, str>>, v: &Option<Str<'a>>, over: bool) {
            if let Some(v) = v
                && (over || slot.is_none())
            {
                *slot = Some(v.0.clone());
            }
        }
        set(&mut self.agent, &line.agent, authoritative);
        set(&mut self.caller, &line.caller, authoritative);
        set(&mut self.parent, &line.parent, authoritative);
        set(&mut self.workflow, &line.workflow, authoritative);
        if authoritative || self.ts.is_none() {
            self.ts = Some(line.ts.0.clone());
        }
    }

    fn apply(&mut self, kind: Kind, line: &Line<'a>) {
        let first_dispatch = kind == Kind::Dispatched && !self.dispatched;
        self.identity(line, first_dispatch);
        self.last = Some(line.ts.0.clone());
        let end = match kind {
            Kind::Dispatched => {
                self.dispatched = true;
                return;
            }
            Kind::Retried => {
                self.retries += 1;
                return;
            }
            Kind::Reasked => {
                self.reasks += 1;
                None
            }
            Kind::Handoff => match line.status {
                Some(status) => Some(End::Handoff {
                    status,
                    confidence: line.confidence,
                    latency_ms: line.latency_ms,
                }),
                // A handoff line without a status says nothing usable.
                None => return,
            },
            Kind::Invalid => Some(End::Invalid),
            Kind::Timeout => Some(End::TimedOut),
            Kind::Failed => Some(End::Error),
            Kind::Cancelled => Some(End::Cancelled),
            Kind::Acked | Kind::Denied | Kind::Ignored => return,
        };
        self.end = end;
        self.touched = true;
    }

    /// Folds `later` (the same run, from a later chunk) into `self`.
    pub(crate) fn merge(&mut self, later: Self) {
        if later.last.is_some() {
            self.last.clone_from(&later.last);
        }
        if !self.dispatched && later.dispatched {
            self.dispatched = true;
            self.ts = later.ts;
            for (slot, v) in [
                (&mut self.agent, later.agent),
                (&mut self.caller, later.caller),
                (&mut self.parent, later.parent),
                (&mut self.workflow, later.workflow),
            ] {
                if v.is_some() {
                    *slot = v;
                }
            }
        } else {
            for (slot, v) in [
                (&mut self.agent, later.agent),
                (&mut self.caller, later.caller),
                (&mut self.parent, later.parent),
                (&mut self.workflow, later.workflow),
            ] {
                if slot.is_none() {
                    *slot = v;
                }
            }
            if self.ts.is_none() {
                self.ts = later.ts;
            }
        }
        if later.touched {
            self.end = later.end;
            self.touched = true;
        }
        self.reasks += later.reasks;
        self.retries += later.retries;
    }

    /// The same, owning its strings (to outlive the bytes it was read from).
    pub(crate) fn into_owned(self) -> RunAcc<'static> {
        fn own(v: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            v.map(|c| Cow::Owned(c.into_owned()))
        }
        RunAcc {
            ts: own(self.ts),
            dispatched: self.dispatched,
            agent: own(self.agent),
            caller: own(self.caller),
            parent: own(self.parent),
            workflow: own(self.workflow),
            end: self.end,
            touched: self.touched,
            reasks: self.reasks,
            retries: self.retries,
            last: own(self.last),
            file: self.file,
        }
    }
}

/// An ACL refusal.
#[derive(Clone, Debug)]
pub(crate) struct Denial<'a> {
    pub(crate) ts: Cow<'a, str>,
    pub(crate) run_id: Option<Cow<'a, str>>,
    pub(crate) agent: Option<Cow<'a, str>>,
    pub(crate) caller: Option<Cow<'a, str>>,
    pub(crate) workflow: Option<Cow<'a, str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dispatched,
    Acked,
    Retried,
    Handoff,
    Invalid,
    Reasked,
    Timeout,
    Denied,
    Failed,
    Cancelled,
    /// `validated` and kinds written by a newer orch.
    Ignored,
}

fn kind(event: &str) -> Kind {
    match event {
        "dispatched" => Kind::Dispatched,
        "acked" => Kind::Acked,
        "retried" => Kind::Retried,
        "handoff" => Kind::Handoff,
        "invalid" => Kind::Invalid,
        "reasked" => Kind::Reasked,
        "timeout" => Kind::Timeout,
        "denied" => Kind::Denied,
        "failed" => Kind::Failed,
        "cancelled" => Kind::Cancelled,
        _ => Kind::Ignored,
    }
}

/// The parsed ledger.
#[derive(Debug, Default)]
pub(crate) struct Index<'a> {
    /// Delegation run id → what the ledger says, partitioned by
    /// [`Index::part_of`].
    pub(crate) parts: Vec<RunMap<'a, RunAcc<'a>>>,
    /// ACL refusals, in file order.
    pub(crate) denials: Vec<Denial<'a>>,
    /// Lines that parsed.
    pub(crate) lines: u64,
    /// `(1-based line, reason)` of lines that did not, in file order.
    pub(crate) bad_lines: Vec<(u64, String)>,
    /// Every line, blank and bad ones too (line numbers of what follows).
    pub(crate) line_count: u64,
}

/// Which of `n` partitions holds `id`: bits of its hash that the maps do
/// not use for buckets (low bits) or tags (top bits).
pub(crate) fn partition(id: &str, n: usize) -> usize {
    let h = FxBuild::default().hash_one(id);
    ((h >> 24) as usize & 0xff_ffff) % n.max(1)
}

impl<'a> Index<'a> {
    /// The partition of `id`.
    pub(crate) fn part_of(&self, id: &str) -> usize {
        partition(id, self.parts.len())
    }

    /// What the ledger says about run `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&RunAcc<'a>> {
        self.parts.get(self.part_of(id))?.get(id)
    }

    /// Whether the ledger knows run `id`.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }
}

/// One chunk's result; line numbers are relative to the chunk.
struct Chunk<'a> {
    parts: Vec<RunMap<'a, RunAcc<'a>>>,
    denials: Vec<Denial<'a>>,
    lines: u64,
    bad_lines: Vec<(u64, String)>,
    /// Lines in the chunk (for the next chunk's numbering).
    line_count: u64,
}

/// Parses the whole ledger on up to `threads` threads, into `threads`
/// partitions.
pub(crate) fn parse(bytes: &[u8], threads: usize) -> Index<'_> {
    let n = threads.max(1);
    let chunks = on_threads(split(bytes, n), |c| parse_chunk(c, n));
    let mut index = Index::default();
    let mut columns: Vec<Vec<RunMap<'_, RunAcc<'_>>>> =
        (0..n).map(|_| Vec::with_capacity(chunks.len())).collect();
    let mut offset = 0;
    for chunk in chunks {
        index.lines += chunk.lines;
        index.bad_lines.extend(
            chunk
                .bad_lines
                .into_iter()
                .map(|(l, why)| (l + offset, why)),
        );
        index.denials.extend(chunk.denials);
        for (column, map) in columns.iter_mut().zip(chunk.parts) {
            column.push(map);
        }
        offset += chunk.line_count;
    }
    index.line_count = offset;
    index.parts = on_threads(columns, |maps| {
        maps.into_iter().reduce(merge_maps).unwrap_or_default()
    });
    index
}

/// `later` (the same partition of a later chunk) folded into `earlier`;
/// the smaller map is moved into the larger.
fn merge_maps<'a>(
    earlier: RunMap<'a, RunAcc<'a>>,
    later: RunMap<'a, RunAcc<'a>>,
) -> RunMap<'a, RunAcc<'a>> {
    let later_is_smaller = later.len() <= earlier.len();
    let (mut into, from) = if later_is_smaller {
        (earlier, later)
    } else {
        (later, earlier)
    };
    into.reserve(from.len());
    for (id, acc) in from {
        match into.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(acc);
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if later_is_smaller {
                    o.get_mut().merge(acc);
                } else {
                    let mut first = acc;
                    first.merge(std::mem::take(o.get_mut()));
                    *o.get_mut() = first;
                }
            }
        }
    }
    into
}

/// Cuts `bytes` into up to `n` chunks that end at a newline (the last one
/// at the end of the input).
fn split(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(n);
    let mut rest = bytes;
    for i in (1..=n).rev() {
        if rest.is_empty() {
            break;
        }
        if i == 1 {
            chunks.push(rest);
            break;
        }
        let target = rest.len() / i;
        let cut = match memchr::memchr(b'\n', &rest[target..]) {
            Some(p) => target + p + 1,
            None => rest.len(),
        };
        let (head, tail) = rest.split_at(cut);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

fn parse_chunk(chunk: &[u8], parts: usize) -> Chunk<'_> {
    // About three lines of 170 bytes per run.
    let per_part = chunk.len() / 450 / parts + 16;
    let mut out = Chunk {
        parts: (0..parts)
            .map(|_| RunMap::with_capacity_and_hasher(per_part, FxBuild::default()))
            .collect(),
        denials: Vec::new(),
        lines: 0,
        bad_lines: Vec::new(),
        line_count: 0,
    };
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', chunk).chain(
        // A last line without a newline.
        (chunk.last().is_some_and(|&b| b != b'\n')).then_some(chunk.len()),
    );
    for end in ends {
        let line = &chunk[start..end];
        start = end + 1;
        out.line_count += 1;
        let number = out.line_count;
        if line.len() > MAX_LINE {
            out.bad_lines
                .push((number, format!("line longer than {MAX_LINE} bytes")));
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let parsed = match fast_line(text) {
            Some(line) => Ok(line),
            None => serde_json::from_slice::<Line<'_>>(text).map_err(|e| e.to_string()),
        };
        match parsed.and_then(|line| fold(&mut out, line)) {
            Ok(()) => out.lines += 1,
            Err(why) => out.bad_lines.push((number, why)),
        }
    }
    out
}

/// `Err` for an id that is not a valid run id (the line is bad, as it is
/// for `orch-handoff`'s reader).
fn check_id(field: &str, value: &Option<Str<'_>>) -> Result<(), String> {
    match value {
        Some(v) => validate_id(&v.0).map_err(|e| format!("{field}: {e}")),
        None => Ok(()),
    }
}

fn fold<'a>(out: &mut Chunk<'a>, line: Line<'a>) -> Result<(), String> {
    check_id("parent", &line.parent)?;
    check_id("workflow", &line.workflow)?;
    let kind = kind(&line.event.0);
    if kind == Kind::Denied {
        check_id("runId", &line.run_id)?;
        out.denials.push(Denial {
            ts: line.ts.0,
            run_id: line.run_id.map(|s| s.0),
            agent: line.agent.map(|s| s.0),
            caller: line.caller.map(|s| s.0),
            workflow: line.workflow.map(|s| s.0),
        });
        return Ok(());
    }
    let Some(id) = &line.run_id else {
        return Ok(());
    };
    if matches!(kind, Kind::Acked | Kind::Ignored) {
        // Nothing to count; the id must still be one.
        return check_id("runId", &line.run_id);
    }
    let n = out.parts.len();
    let map = &mut out.parts[partition(&id.0, n)];
    // A run id is checked once, when its run is first seen: a later line
    // with the same id holds the same, valid, id.
    if let Some(acc) = map.get_mut(id.0.as_ref()) {
        acc.apply(kind, &line);
        return Ok(());
    }
    check_id("runId", &line.run_id)?;
    let mut acc = RunAcc::default();
    acc.apply(kind, &line);
    map.insert(id.0.clone(), acc);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LEDGER: &str = r#"{"ts":"2026-11-23T10:00:00Z","event":"dispatched","runId":"r1","agent":"webster","caller":"manager","attempt":1,"detail":"via sim"}
{"ts":"2026-11-23T10:00:01Z","event":"acked","runId":"r1","agent":"webster","caller":"manager","latencyMs":3}
{"ts":"2026-11-23T10:00:02Z","event":"dispatched","runId":"r2","agent":"nx-expert","caller":"manager","attempt":1}
{"ts":"2026-11-23T10:00:03Z","event":"invalid","runId":"r1","agent":"webster","caller":"manager","attempt":1,"detail":"x"}
{"ts":"2026-11-23T10:00:04Z","event":"reasked","runId":"r1","agent":"webster","caller":"manager","attempt":2}

{"ts":"2026-11-23T10:00:05Z","event":"denied","agent":"auditor","caller":"tech-lead","detail":"no"}
{"ts":"2026-11-23T10:00:06Z","event":"retried","runId":"r2","agent":"nx-expert","caller":"manager","attempt":1}
{"ts":"2026-11-23T10:00:07Z","event":"handoff","runId":"r1","agent":"webster","caller":"manager","status":"complete","confidence":"high","latencyMs":7000,"attempt":2}
{"ts":"2026-11-23T10:00:08Z","event":"validated","runId":"r1","agent":"tech-lead","caller":"manager"}
{"ts":"2026-11-23T10:00:09Z","event":"timeout","runId":"r2","agent":"nx-expert","caller":"manager","latencyMs":9000}
{"ts":"2026-11-23T10:00:10Z","event":"dispatched","runId":"../x","agent":"a","caller":"b"}
{"ts":"2026-11-23T10:00:11Z","event":"handoff","runId":"r3","agent":"a","status":"done"}
{"ts":"2026-11-23T10:00:12Z","event":"some-new-kind","runId":"r9"}
{"ts":"2026-11-23T10:00:13Z","event":"handoff","runId":"r3","ag"#;

    fn check(index: &Index<'_>) {
        assert_eq!(index.lines, 11);
        let bad: Vec<u64> = index.bad_lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(bad, [12, 13, 15], "{:?}", index.bad_lines);
        assert_eq!(index.parts.iter().map(|p| p.len()).sum::<usize>(), 2);
        let r1 = index.get("r1").unwrap();
        assert_eq!(r1.ts.as_deref(), Some("2026-11-23T10:00:00Z"));
        assert_eq!(r1.agent.as_deref(), Some("webster"));
        assert_eq!(r1.reasks, 1);
        assert_eq!(
            r1.end,
            Some(End::Handoff {
                status: Status::Complete,
                confidence: Some(Confidence::High),
                latency_ms: Some(7000)
            })
        );
        let r2 = index.get("r2").unwrap();
        assert_eq!(r2.end, Some(End::TimedOut));
        assert_eq!(r2.retries, 1);
        assert_eq!(index.denials.len(), 1);
        assert_eq!(index.denials[0].agent.as_deref(), Some("auditor"));
    }

    #[test]
    fn every_split_gives_the_same_index() {
        for threads in 1..=8 {
            check(&parse(LEDGER.as_bytes(), threads));
        }
    }

    #[test]
    fn a_reask_after_an_invalid_handoff_reopens_the_run() {
        let text = r#"{"ts":"t1","event":"dispatched","runId":"r","agent":"a","caller":"c"}
{"ts":"t2","event":"invalid","runId":"r"}
{"ts":"t3","event":"reasked","runId":"r"}
"#;
        for threads in 1..=3 {
            let index = parse(text.as_bytes(), threads);
            assert_eq!(index.get("r").unwrap().end, None);
            assert_eq!(index.get("r").unwrap().reasks, 1);
        }
    }

    #[test]
    fn escaped_strings_are_read_too() {
        let text =
            r#"{"ts":"t","event":"dispatched","runId":"r\u0031","agent":"we\"b","caller":"c"}"#;
        let index = parse(text.as_bytes(), 1);
        assert_eq!(index.get("r1").unwrap().agent.as_deref(), Some("we\"b"));
    }

    #[test]
    fn splitting_keeps_whole_lines() {
        let bytes = b"aa\nbbbb\nc\ndddddd\n";
        for n in 1..=6 {
            let chunks = split(bytes, n);
            assert_eq!(chunks.concat(), bytes);
            assert!(chunks.iter().all(|c| c.ends_with(b"\n")), "{n}");
        }
        assert!(split(b"", 2).is_empty());
        assert_eq!(split(b"no newline", 3), [&b"no newline"[..]]);
    }

    /// Lines as orch writes them, and mangled: whatever the fast scanner
    /// reads, serde_json reads the same; what it declines goes to serde.
    #[test]
    fn the_fast_scanner_agrees_with_serde() {
        let canonical = [
            r#"{"ts":"2026-11-23T10:00:00.123456789Z","event":"dispatched","runId":"orch-20261123T100000Z-3f9a1c2b","agent":"webster","caller":"manager","attempt":1,"detail":"via sim"}"#,
            r#"{"ts":"2026-11-23T10:00:07Z","event":"handoff","runId":"r1","agent":"webster","caller":"manager","parent":"p0","status":"complete","confidence":"high","latencyMs":7000,"attempt":2}"#,
            r#"{"ts":"t","event":"validated","runId":"r1","agent":"auditor","caller":"manager","status":"partial","detail":"approved","validationRunId":"orch-x"}"#,
            r#"{"ts":"t","event":"denied","agent":"auditor","caller":"tech-lead","workflow":"wf-1","step":"audit","detail":"no"}"#,
            r#"{"ts":"t","event":"timeout","runId":"r2","latencyMs":0,"confidence":null,"status":null}"#,
        ];
        let mutations: &[&dyn Fn(&str) -> String] = &[
            &|l| l.to_owned(),
            &|l| l.replacen(",", ", ", 1),
            &|l| l.replacen("\":", "\" :", 1),
            &|l| l.replacen("webster", "web\\u0073ter", 1),
            &|l| l.replacen("manager", "man\\\"ager", 1),
            &|l| l.replacen("\"ts\"", "\"ts\":\"x\",\"ts\"", 1),
            &|l| l.replacen("\"event\"", "\"event\":\"acked\",\"event\"", 1),
            &|l| l.replacen("{", "{\"extra\":{\"a\":[1,2]},", 1),
            &|l| l.replacen("{", "{\"flag\":true,", 1),
            &|l| l.replacen("{", "{\"n\":-1.5e3,", 1),
            &|l| l.replacen("{", "{\"big\":123456789012345678901234567890,", 1),
            &|l| l.replacen("7000", "07000", 1),
            &|l| l.replacen("7000", "7000.5", 1),
            &|l| l.replacen("7000", "\"7000\"", 1),
            &|l| l.replacen("7000", "99999999999999999999999", 1),
            &|l| l.replacen("\"complete\"", "\"done\"", 1),
            &|l| l.replacen("\"high\"", "\"HIGH\"", 1),
            &|l| l.replacen("\"r1\"", "null", 1),
            &|l| l.replacen("\"r1\"", "5", 1),
            &|l| l.replacen("\"ts\":\"t\",", "", 1),
            &|l| l.replacen("\"event\":", "\"evnt\":", 1),
            &|l| l.replacen("via sim", "via\tsim", 1),
            &|l| l.replacen("via sim", "via sïm ✓", 1),
            &|l| l[..l.len() - 1].to_owned(),
            &|l| format!("{l} "),
            &|l| format!("{l}}}"),
            &|l| l.replacen("}", ",}", 1),
            &|l| l.replacen("{", "{,", 1),
            &|_| "{}".to_owned(),
            &|_| "[]".to_owned(),
            &|_| "{\"ts\":\"t\",\"event\":\"x\"}".to_owned(),
        ];
        let mut fast = 0;
        for line in canonical {
            for (m, mutate) in mutations.iter().enumerate() {
                let text = mutate(line);
                let serde = serde_json::from_slice::<Line<'_>>(text.as_bytes());
                if let Some(read) = fast_line(text.as_bytes()) {
                    fast += 1;
                    assert_eq!(serde.as_ref().ok(), Some(&read), "mutation {m}: {text}");
                }
            }
            assert!(fast_line(line.as_bytes()).is_some(), "{line}");
        }
        assert!(fast > canonical.len() * 3, "{fast}");
    }
}
