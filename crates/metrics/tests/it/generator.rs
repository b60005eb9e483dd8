//! A generated store with known contents, for the scan tests and the
//! benchmark (`benches/scan.rs` includes this file).
//!
//! Files and ledger lines are in the exact format orch writes them:
//! handoffs with `Handoff::to_json_pretty`, ledger lines by serializing
//! `LedgerEvent`s, one per line, in time order (so the lines of concurrent
//! delegations interleave as they do in a real ledger). Workflow summaries
//! and step records follow `orch-workflow`'s camelCase shape, with the
//! workflow source embedded as the executor does.
//!
//! The generator records the ground truth of every delegation, denial and
//! workflow run in a [`Truth`]; tests fold it into the figures they expect
//! with their own code, independently of the scanner.
#![allow(unreachable_pub)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use orch_handoff::{Confidence, Handoff, LedgerEvent, LedgerEventKind, RunId, Status};

/// splitmix64: small, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const AGENTS: &[&str] = &[
    "manager",
    "tech-lead",
    "webster",
    "nx-expert",
    "study-builder",
    "secretary",
    "optimizer",
    "auditor",
];
pub const CALLERS: &[&str] = &["manager", "tech-lead", "optimizer", "ops"];

/// The base of every generated time.
pub fn base() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

/// How one delegation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Handoff(Status),
    TimedOut,
    Invalid,
    Error,
    Cancelled,
    Pending,
}

impl End {
    /// The outcome name in the report.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Handoff(Status::Complete) => "complete",
            Self::Handoff(Status::Partial) => "partial",
            Self::Handoff(Status::Blocked) => "blocked",
            Self::Handoff(Status::Failed) => "failed",
            Self::TimedOut => "timed-out",
            Self::Invalid => "invalid",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Pending => "pending",
        }
    }
}

/// What to generate for delegation `i`.
#[derive(Clone, Debug)]
pub struct Shape {
    pub agent: &'static str,
    pub caller: &'static str,
    pub end: End,
    pub confidence: Option<Confidence>,
    /// Dispatch → handoff (or → the ending event).
    pub latency_ms: u64,
    pub retries: u32,
    /// Invalid handoffs before the end, each followed by a re-ask.
    pub reasks: u32,
    /// Try to make it a sub-delegation of a recent run.
    pub sub: bool,
    /// Timed out, then the agent's handoff landed anyway.
    pub late: bool,
    /// A handoff file only: no ledger line at all.
    pub file_only: bool,
    /// Handoff file written, but the process died before its ledger line.
    pub no_handoff_line: bool,
    /// Handoff line written, file deleted since.
    pub missing_file: bool,
}

/// The default mix of outcomes, agents and oddities.
pub fn random_shape(_i: usize, rng: &mut Rng) -> Shape {
    let roll = rng.below(100);
    let end = match roll {
        0..60 => End::Handoff(Status::Complete),
        60..70 => End::Handoff(Status::Partial),
        70..75 => End::Handoff(Status::Blocked),
        75..80 => End::Handoff(Status::Failed),
        80..88 => End::TimedOut,
        88..91 => End::Invalid,
        91..94 => End::Error,
        94..96 => End::Cancelled,
        _ => End::Pending,
    };
    let confidence = match rng.below(4) {
        0 => None,
        1 => Some(Confidence::Low),
        2 => Some(Confidence::Medium),
        _ => Some(Confidence::High),
    };
    let handoff = matches!(end, End::Handoff(_));
    Shape {
        agent: rng.pick(AGENTS),
        caller: rng.pick(CALLERS),
        end,
        confidence,
        latency_ms: 1 + rng.below(600_000),
        retries: if rng.percent(5) {
            1 + rng.below(2) as u32
        } else {
            0
        },
        reasks: if rng.percent(4) { 1 } else { 0 },
        sub: rng.percent(5),
        late: end == End::TimedOut && rng.percent(25),
        file_only: handoff && rng.percent(1),
        no_handoff_line: handoff && rng.percent(1),
        missing_file: handoff && rng.percent(1),
    }
}

pub struct Spec<'a> {
    pub delegations: usize,
    pub denials: usize,
    pub workflow_runs: usize,
    pub seed: u64,
    /// Corrupt, foreign and partial files, bad ledger lines.
    pub corrupt: bool,
    pub shape: &'a dyn Fn(usize, &mut Rng) -> Shape,
    /// Milliseconds between two delegations' dispatches (1,000 unless a
    /// bench spreads a store over a year).
    pub spacing_ms: u64,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            delegations: 1000,
            denials: 20,
            workflow_runs: 12,
            seed: 7,
            corrupt: true,
            shape: &random_shape,
            spacing_ms: 1000,
        }
    }
}

/// One delegation as generated.
#[derive(Clone, Debug)]
pub struct TrueDelegation {
    pub run_id: String,
    pub agent: String,
    /// `None`: a handoff file no ledger line accounts for.
    pub caller: Option<String>,
    pub outcome: &'static str,
    /// For handoff outcomes: `high`, `medium`, `low` or `unstated`.
    pub confidence: Option<&'static str>,
    /// Set when the ledger timed a handoff.
    pub latency_ms: Option<u64>,
    pub reasks: u64,
    pub retries: u64,
    pub sub: bool,
    pub late: bool,
    /// Dispatch time (or the file's timestamp).
    pub at: Timestamp,
    /// The workflow (name) whose step made it.
    pub workflow: Option<String>,
    /// The parent run of a sub-delegation.
    pub parent: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TrueDenial {
    pub agent: String,
    pub caller: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct TrueStep {
    pub id: String,
    pub agent: String,
    pub status: &'static str,
    pub attempts: u64,
    pub timed_out: u64,
}

#[derive(Clone, Debug)]
pub struct TrueRun {
    pub id: String,
    pub workflow: String,
    pub status: &'static str,
    pub started: Timestamp,
    pub duration_ms: Option<u64>,
    pub steps: Vec<TrueStep>,
}

/// The ground truth of a generated store.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    pub delegations: Vec<TrueDelegation>,
    pub denials: Vec<TrueDenial>,
    pub runs: Vec<TrueRun>,
    /// Paths (inside the store) that cannot be read.
    pub unreadable: BTreeSet<String>,
    /// 1-based ledger line numbers that do not parse.
    pub bad_lines: Vec<u64>,
    pub missing_files: u64,
    /// Handoff files present (top level and sub/).
    pub handoff_files: u64,
}

fn ts(t: Timestamp) -> String {
    t.to_string()
}

fn event(
    kind: LedgerEventKind,
    at: Timestamp,
    run: &RunId,
    agent: &str,
    caller: &str,
    parent: Option<&RunId>,
) -> LedgerEvent {
    let mut e = LedgerEvent::now(kind);
    e.ts = ts(at);
    e.run_id = Some(run.clone());
    e.agent = Some(agent.to_owned());
    e.caller = Some(caller.to_owned());
    e.parent = parent.cloned();
    e
}

const RESULT: &str = "Zerodur CTE is 0 ± 0.007 ppm/K over 0–50 °C (expansion class 0); \
ULE 0 ± 0.03 ppm/K over 5–35 °C. Sources: SCHOTT datasheet 2024, Corning ULE 7972 product \
information. Both meet the requirement; Zerodur has the better homogeneity for this size.";

const SOURCE: &str = "name: quick-research\ndescription: Research a question, then have the tech lead check it.\ninputs:\n  question: { required: true, description: What to find out }\nsteps:\n  - id: research\n    agent: webster\n    task: \"Research: {{ inputs.question }}\"\n  - id: validate\n    agent: tech-lead\n    task: \"Check this research:\\n{{ steps.research.result }}\"\n    gate: { status: [complete], min_confidence: medium }\noutput: \"{{ steps.validate.result }}\"\n";

/// Writes a store at `root` and returns what it holds.
pub fn generate(root: &Path, spec: &Spec<'_>) -> Truth {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    let mut rng = Rng::new(spec.seed);
    let mut truth = Truth::default();
    // (time, order, line)
    let mut lines: Vec<(Timestamp, usize, Vec<u8>)> = Vec::new();
    let push = |lines: &mut Vec<(Timestamp, usize, Vec<u8>)>, e: &LedgerEvent| {
        let at: Timestamp = e.ts.parse().unwrap();
        let n = lines.len();
        lines.push((at, n, serde_json::to_vec(e).unwrap()));
    };
    let mut ids: Vec<RunId> = Vec::with_capacity(spec.delegations);

    for i in 0..spec.delegations {
        let s = (spec.shape)(i, &mut rng);
        let dispatched = base()
            + SignedDuration::from_millis(
                (i as u64 * spec.spacing_ms + rng.below(spec.spacing_ms)) as i64,
            );
        let run = RunId::new(format!(
            "orch-{}-{:08x}",
            dispatched.strftime("%Y%m%dT%H%M%SZ"),
            i
        ))
        .unwrap();
        ids.push(run.clone());
        // A sub-delegation: the caller is the agent of a recent run that
        // ended with a handoff (as the delegator requires).
        let mut parent = None;
        if s.sub && !s.file_only {
            for back in 1..=50.min(i) {
                let j = i - back;
                let d = &truth.delegations[j];
                if d.caller.is_some()
                    && matches!(d.outcome, "complete" | "partial")
                    && d.agent != s.agent
                {
                    parent = Some((ids[j].clone(), d.agent.clone()));
                    break;
                }
            }
        }
        let caller: String = parent
            .as_ref()
            .map_or_else(|| s.caller.to_owned(), |(_, a)| a.clone());
        let parent_id = parent.as_ref().map(|(p, _)| p);
        let sub = parent.is_some();
        let dir = if sub {
            root.join("sub")
        } else {
            root.to_path_buf()
        };
        let file = dir.join(format!("{run}.json"));
        let rel = if sub {
            format!("sub/{run}.json")
        } else {
            format!("{run}.json")
        };
        let end_at = dispatched + SignedDuration::from_millis(s.latency_ms as i64);
        let write_handoff = |status: Status, confidence: Option<Confidence>, at: Timestamp| {
            let mut h = Handoff::new(run.clone(), s.agent, status, RESULT);
            h.confidence = confidence;
            h.timestamp = Some(ts(at));
            std::fs::write(&file, h.to_json_pretty()).unwrap();
        };

        if s.file_only {
            let End::Handoff(status) = s.end else {
                unreachable!()
            };
            write_handoff(status, s.confidence, end_at);
            truth.handoff_files += 1;
            truth.delegations.push(TrueDelegation {
                run_id: run.to_string(),
                agent: s.agent.to_owned(),
                caller: None,
                outcome: s.end.outcome(),
                confidence: Some(conf_name(s.confidence)),
                latency_ms: None,
                reasks: 0,
                retries: 0,
                sub: false,
                late: false,
                at: end_at,
                workflow: None,
                parent: None,
            });
            continue;
        }

        let mut e = event(
            LedgerEventKind::Dispatched,
            dispatched,
            &run,
            s.agent,
            &caller,
            parent_id,
        );
        e.attempt = Some(1);
        e.detail = Some("via sim".to_owned());
        push(&mut lines, &e);
        let mut t = dispatched;
        for r in 0..s.retries {
            t += SignedDuration::from_millis(50);
            let mut e = event(
                LedgerEventKind::Retried,
                t,
                &run,
                s.agent,
                &caller,
                parent_id,
            );
            e.attempt = Some(1);
            e.detail = Some(format!(
                "try {} of 3 failed: HTTP 503; next try in 200ms",
                r + 1
            ));
            push(&mut lines, &e);
        }
        if s.end != End::Cancelled || rng.percent(50) {
            t += SignedDuration::from_millis(3);
            let mut e = event(LedgerEventKind::Acked, t, &run, s.agent, &caller, parent_id);
            e.attempt = Some(1);
            e.latency_ms = Some(3 + 50 * u64::from(s.retries));
            push(&mut lines, &e);
        }
        // Each re-ask: an invalid handoff (quarantined), then a new ask.
        let mut ask = 1;
        for _ in 0..s.reasks {
            let at = dispatched + SignedDuration::from_millis((s.latency_ms / 2) as i64);
            let mut e = event(
                LedgerEventKind::Invalid,
                at,
                &run,
                s.agent,
                &caller,
                parent_id,
            );
            e.attempt = Some(ask);
            e.latency_ms = Some(s.latency_ms / 2);
            e.detail = Some("status: unknown variant `done`".to_owned());
            push(&mut lines, &e);
            std::fs::write(
                dir.join(format!("{run}.json.rejected-{ask}")),
                b"{\"status\":\"done\"}",
            )
            .unwrap();
            ask += 1;
            let mut e = event(
                LedgerEventKind::Reasked,
                at,
                &run,
                s.agent,
                &caller,
                parent_id,
            );
            e.attempt = Some(ask);
            e.detail = Some("status: unknown variant `done`".to_owned());
            push(&mut lines, &e);
        }
        let (confidence, latency) = match s.end {
            End::Handoff(status) => {
                if !s.no_handoff_line {
                    let mut e = event(
                        LedgerEventKind::Handoff,
                        end_at,
                        &run,
                        s.agent,
                        &caller,
                        parent_id,
                    );
                    e.status = Some(status);
                    e.confidence = s.confidence;
                    e.latency_ms = Some(s.latency_ms);
                    e.attempt = Some(ask);
                    push(&mut lines, &e);
                }
                if s.missing_file && !s.no_handoff_line {
                    truth.missing_files += 1;
                } else {
                    write_handoff(status, s.confidence, end_at);
                    truth.handoff_files += 1;
                }
                if rng.percent(3) {
                    // A validation: its own run is not generated; the
                    // `validated` line must not change anything.
                    let mut e = event(
                        LedgerEventKind::Validated,
                        end_at + SignedDuration::from_secs(5),
                        &run,
                        "auditor",
                        &caller,
                        parent_id,
                    );
                    e.status = Some(Status::Complete);
                    e.detail = Some("approved by auditor".to_owned());
                    push(&mut lines, &e);
                }
                (
                    Some(conf_name(s.confidence)),
                    (!s.no_handoff_line).then_some(s.latency_ms),
                )
            }
            End::TimedOut => {
                let mut e = event(
                    LedgerEventKind::Timeout,
                    end_at,
                    &run,
                    s.agent,
                    &caller,
                    parent_id,
                );
                e.attempt = Some(ask);
                e.latency_ms = Some(s.latency_ms);
                e.detail = Some("no handoff within 10m".to_owned());
                push(&mut lines, &e);
                if s.late {
                    write_handoff(
                        Status::Complete,
                        s.confidence,
                        end_at + SignedDuration::from_secs(30),
                    );
                    truth.handoff_files += 1;
                }
                (None, None)
            }
            End::Invalid => {
                let mut e = event(
                    LedgerEventKind::Invalid,
                    end_at,
                    &run,
                    s.agent,
                    &caller,
                    parent_id,
                );
                e.attempt = Some(ask);
                e.latency_ms = Some(s.latency_ms);
                e.detail = Some("status: unknown variant `done`".to_owned());
                push(&mut lines, &e);
                std::fs::write(
                    &file,
                    format!("{{\"schemaVersion\":\"1.0\",\"runId\":\"{run}\",\"agent\":\"{}\",\"status\":\"done\",\"result\":\"x\"}}", s.agent),
                )
                .unwrap();
                truth.unreadable.insert(rel.clone());
                truth.handoff_files += 1;
                (None, None)
            }
            End::Error => {
                let mut e = event(
                    LedgerEventKind::Failed,
                    end_at,
                    &run,
                    s.agent,
                    &caller,
                    parent_id,
                );
                e.attempt = Some(ask);
                e.latency_ms = Some(s.latency_ms);
                e.detail = Some("HTTP 400: unknown agent (1 try)".to_owned());
                push(&mut lines, &e);
                (None, None)
            }
            End::Cancelled => {
                let mut e = event(
                    LedgerEventKind::Cancelled,
                    end_at,
                    &run,
                    s.agent,
                    &caller,
                    parent_id,
                );
                e.attempt = Some(ask);
                e.latency_ms = Some(s.latency_ms);
                push(&mut lines, &e);
                (None, None)
            }
            End::Pending => (None, None),
        };
        // Handoff outcome without its ledger line: the file tells the status.
        truth.delegations.push(TrueDelegation {
            run_id: run.to_string(),
            agent: s.agent.to_owned(),
            caller: Some(caller),
            outcome: s.end.outcome(),
            confidence,
            latency_ms: latency,
            reasks: u64::from(s.reasks),
            retries: u64::from(s.retries),
            sub,
            late: s.late,
            at: dispatched,
            workflow: None,
            parent: parent_id.map(|p| p.to_string()),
        });
    }

    for k in 0..spec.denials {
        let at = base()
            + SignedDuration::from_millis(
                rng.below(spec.delegations.max(1) as u64 * spec.spacing_ms) as i64,
            );
        let agent = rng.pick(AGENTS);
        let caller = rng.pick(&["tech-lead", "optimizer", "ops"]);
        let mut e = LedgerEvent::now(LedgerEventKind::Denied);
        e.ts = ts(at);
        e.agent = Some(agent.to_owned());
        e.caller = Some(caller.to_owned());
        e.detail = Some(format!("{caller} may not delegate to {agent} (denial {k})"));
        push(&mut lines, &e);
        truth.denials.push(TrueDenial {
            agent: agent.to_owned(),
            caller: caller.to_owned(),
            at,
        });
    }

    workflows(root, spec, &mut rng, &mut truth);

    // The ledger, in time order.
    lines.sort_by_key(|l| (l.0, l.1));
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(root.join("ledger.jsonl")).unwrap());
    let mut number = 0u64;
    for (k, (_, _, line)) in lines.iter().enumerate() {
        if spec.corrupt && k == lines.len() / 3 {
            // A foreign writer's line, and one with a hostile run id.
            out.write_all(b"this is not JSON\n").unwrap();
            number += 1;
            truth.bad_lines.push(number);
            out.write_all(
                br#"{"ts":"2026-11-01T00:00:00Z","event":"dispatched","runId":"../../etc/passwd"}"#,
            )
            .unwrap();
            out.write_all(b"\n\n").unwrap();
            number += 2;
            truth.bad_lines.push(number - 1);
        }
        out.write_all(line).unwrap();
        out.write_all(b"\n").unwrap();
        number += 1;
    }
    if spec.corrupt {
        // A torn last line (a crash mid-append).
        out.write_all(br#"{"ts":"2026-11-01T00:00:00Z","event":"hand"#)
            .unwrap();
        truth.bad_lines.push(number + 1);
    }
    out.flush().unwrap();

    if spec.corrupt {
        for (rel, bytes) in [
            ("garbage.json", &b"\x00\x01 not json at all"[..]),
            ("foreign.json", &br#"{"hello": "world"}"#[..]),
            (
                "sub/half.json",
                &br#"{"schemaVersion":"1.0","runId":"half","agent":"webster","sta"#[..],
            ),
            ("empty.json", &b""[..]),
        ] {
            std::fs::write(root.join(rel), bytes).unwrap();
            truth.unreadable.insert(rel.to_owned());
            truth.handoff_files += 1;
        }
        // Never listed, so never read: not ours.
        std::fs::write(root.join("notes.txt"), b"hello").unwrap();
        std::fs::write(root.join(".x.json.tmp-1-2"), b"{").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.json")).unwrap();
    }
    truth
}

fn conf_name(c: Option<Confidence>) -> &'static str {
    match c {
        Some(Confidence::High) => "high",
        Some(Confidence::Medium) => "medium",
        Some(Confidence::Low) => "low",
        None => "unstated",
    }
}

fn workflows(root: &Path, spec: &Spec<'_>, rng: &mut Rng, truth: &mut Truth) {
    // Delegations a workflow step may claim: dispatched by manager, not sub.
    let mut claimable: Vec<usize> = truth
        .delegations
        .iter()
        .enumerate()
        .filter(|(_, d)| d.caller.as_deref() == Some("manager") && !d.sub)
        .map(|(i, _)| i)
        .collect();
    claimable.reverse();
    for r in 0..spec.workflow_runs {
        let name = if r % 3 == 2 {
            "design-review"
        } else {
            "quick-research"
        };
        let started = base() + SignedDuration::from_secs(r as i64 * 600);
        let id = format!("wf-{name}-{}-{:08x}", started.strftime("%Y%m%dT%H%M%SZ"), r);
        let status = match (r + rng.below(2) as usize) % 8 {
            0..3 => "completed",
            3 => "completed-with-failures",
            4 => "failed",
            5 => "awaiting-approval",
            6 => "cancelled",
            _ => "running",
        };
        let duration_ms = (status != "running").then(|| 1000 + rng.below(3_600_000));
        let step_ids: &[(&str, &str)] = if name == "quick-research" {
            &[("research", "webster"), ("validate", "tech-lead")]
        } else {
            &[
                ("review", "tech-lead"),
                ("optimise", "optimizer"),
                ("audit", "auditor"),
            ]
        };
        let dir = root.join("workflows").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut steps = Vec::new();
        let mut summary_steps = serde_json::Map::new();
        for &(step, agent) in step_ids {
            let st = match (status, rng.below(6)) {
                ("failed" | "completed-with-failures", 0..3) => "failed",
                ("completed-with-failures", 3) => "rejected",
                ("awaiting-approval", _) => "awaiting-approval",
                ("running", _) => "running",
                _ => "completed",
            };
            let attempts = match st {
                "failed" => 1 + rng.below(3),
                "running" | "awaiting-approval" | "rejected" => 1,
                _ => 1 + u64::from(rng.percent(30)),
            };
            let mut records = Vec::new();
            let mut timed_out = 0;
            for a in 0..attempts {
                let last = a + 1 == attempts;
                let a_status = if !last {
                    if rng.percent(50) {
                        "timed-out"
                    } else {
                        "failed"
                    }
                } else {
                    match st {
                        "failed" => {
                            if rng.percent(50) {
                                "timed-out"
                            } else {
                                "error"
                            }
                        }
                        "running" => "running",
                        _ => "complete",
                    }
                };
                timed_out += u64::from(a_status == "timed-out");
                let run_id = match claimable.pop() {
                    Some(i) => {
                        truth.delegations[i].workflow = Some(name.to_owned());
                        truth.delegations[i].run_id.clone()
                    }
                    None => format!("{id}.{step}.{}", a + 1),
                };
                records.push(serde_json::json!({
                    "runId": run_id,
                    "status": a_status,
                    "started": ts(started),
                    "finished": ts(started + SignedDuration::from_secs(60)),
                    "timeoutMs": 600000,
                    "detail": null,
                }));
            }
            let record = serde_json::json!({
                "step": step,
                "status": st,
                "agent": agent,
                "delegationRunId": records.last().map(|r| r["runId"].clone()),
                "attempts": records,
                "renderedTask": "Research: Zerodur vs ULE for a 1 m mirror",
                "gate": null,
                "approval": null,
                "handoff": null,
                "started": ts(started),
                "finished": null,
                "reason": null,
            });
            std::fs::write(
                dir.join(format!("{step}.json")),
                serde_json::to_vec_pretty(&record).unwrap(),
            )
            .unwrap();
            summary_steps.insert(
                step.to_owned(),
                serde_json::json!({
                    "status": st,
                    "agent": agent,
                    "attempts": attempts,
                    "durationMs": 60000,
                    "reason": null,
                }),
            );
            steps.push(TrueStep {
                id: step.to_owned(),
                agent: agent.to_owned(),
                status: st,
                attempts,
                timed_out,
            });
        }
        let summary = serde_json::json!({
            "schema": 1,
            "runId": id,
            "workflow": name,
            "origin": "built-in",
            "source": SOURCE,
            "status": status,
            "caller": "manager",
            "inputs": { "question": "Zerodur or ULE?" },
            "steps": summary_steps,
            "started": ts(started),
            "finished": duration_ms.map(|d| ts(started + SignedDuration::from_millis(d as i64))),
            "output": null,
        });
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_vec_pretty(&summary).unwrap(),
        )
        .unwrap();
        truth.runs.push(TrueRun {
            id,
            workflow: name.to_owned(),
            status,
            started,
            duration_ms,
            steps,
        });
    }
    if spec.corrupt {
        let bad = root.join("workflows/wf-broken-20261101T000000Z-00000000");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("summary.json"), b"{\"schema\":1,\"runId\":").unwrap();
        truth
            .unreadable
            .insert("workflows/wf-broken-20261101T000000Z-00000000/summary.json".to_owned());
        let empty = root.join("workflows/wf-starting-20261101T000000Z-00000000");
        std::fs::create_dir_all(&empty).unwrap();
        truth
            .unreadable
            .insert("workflows/wf-starting-20261101T000000Z-00000000/summary.json".to_owned());
    }
}
