//! Property tests of the workflow parser + validator and the template
//! renderer: arbitrary bytes, structure-aware mutations of valid documents
//! and generated valid documents.
//!
//! - never a panic, never a hang: every input is bounded (at most a few KB)
//!   and every case runs on a thread that must answer within
//!   [`CASE_LIMIT`];
//! - an error always names a real place (`origin:line:column`, both ≥ 1,
//!   the line within the file);
//! - a generated valid document loads, and what it says comes back: step
//!   ids in order, agents, task text, dependencies (`needs` ∪ what the task
//!   and `when` read), retries and timeouts; a template's text parses back
//!   to the same template, and renders to what its pieces say;
//! - `render_within(limit)` gives the whole text when it fits, and
//!   otherwise the exact size it would have had, never more than `limit`
//!   bytes of text.
//!
//! Each target runs [`DEFAULT_CASES`] cases (about a second each in a debug
//! build). `PROPTEST_CASES=N` changes the count; `ORCH_PROPTEST_MINUTES=M`
//! runs each target in batches with fresh seeds for M minutes and prints
//! how many cases ran, e.g. for ten minutes of one target:
//!
//! ```text
//! ORCH_PROPTEST_MINUTES=10 cargo test --release -p orch-workflow --test it \
//!     props::parser_never_panics_on_arbitrary_bytes -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{Confidence, Status};
use orch_workflow::{
    Context, RenderError, StepOutput, Template, builtin, builtin_names, check_run, load,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::corpus::AGENTS;

/// Cases per target by default (CI): small enough for a few seconds.
const DEFAULT_CASES: u32 = 128;

/// A case taking longer than this is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `test` on cases of `strategy`: [`DEFAULT_CASES`] (or
/// `PROPTEST_CASES`), or batches for `ORCH_PROPTEST_MINUTES`; prints how
/// many cases ran (the figure a long run reports).
#[allow(clippy::print_stderr)]
fn check<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Send + 'static,
{
    let minutes: Option<f64> = std::env::var("ORCH_PROPTEST_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if minutes.is_some() {
            4096
        } else {
            DEFAULT_CASES
        });
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(config.clone());
        match runner.run(&strategy, &test) {
            Ok(()) => {}
            Err(TestError::Fail(why, value)) => {
                panic!("{name}: {why} after {total} cases; minimal input: {value:?}")
            }
            Err(TestError::Abort(why)) => panic!("{name}: aborted: {why}"),
        }
        total += u64::from(cases);
        match minutes {
            Some(m) if started.elapsed().as_secs_f64() < m * 60.0 => {}
            _ => break,
        }
    }
    eprintln!(
        "{name}: {total} cases, 0 failures, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs `f` on a thread; a case that does not answer in [`CASE_LIMIT`]
/// fails as a hang (its thread is left behind: the test fails anyway).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TestCaseError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("panicked: {what}")))
        }
        Err(_) => Err(TestCaseError::fail(format!(
            "no answer within {CASE_LIMIT:?}: a hang"
        ))),
    }
}

/// Loads `text` (and, when it loads, checks a run of it and walks its
/// plan); an error must name a real place.
fn load_checked(text: String) -> Result<(), TestCaseError> {
    // Lines as YAML counts them: `\n`, `\r\n` and a lone `\r` end one.
    let lines =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count() + 1;
    let outcome = bounded(move || {
        let result = load(&text, "prop.yaml").map(|wf| {
            let _ = check_run(
                &wf,
                AGENTS,
                &Policy::atomizer_default(),
                "manager",
                &BTreeMap::new(),
            );
            let _ = wf.plan().levels();
            let _ = orch_workflow::warnings(&wf);
        });
        result.err()
    })?;
    if let Some(e) = outcome {
        prop_assert!(e.line >= 1 && e.column >= 1, "{e}");
        prop_assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
        prop_assert!(e.to_string().starts_with("prop.yaml:"), "{e}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generated valid workflows.

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Input(usize),
    Step(usize, &'static str),
    RunId,
}

#[derive(Clone, Debug)]
struct GenStep {
    agent: Option<usize>,
    parts: Vec<Part>,
    needs: Vec<usize>,
    retries: Option<u32>,
    timeout: Option<u64>,
    when: Option<usize>,
}

#[derive(Clone, Debug)]
struct GenWorkflow {
    inputs: usize,
    steps: Vec<GenStep>,
    output: Option<usize>,
}

const FIELDS: [&str; 5] = ["result", "status", "confidence", "notes", "artifacts"];

fn text() -> impl Strategy<Value = String> {
    // No `{` (every `{{` opens a reference), anything else goes: quotes,
    // backslashes, tabs, newlines, non-ASCII.
    proptest::string::string_regex(
        "[a-zA-Z0-9 .,:;!?'\"\\\\/()\\[\\]<>#&*|%@=+~`-]{1,12}|é|→|\t|\n",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn gen_workflow() -> impl Strategy<Value = GenWorkflow> {
    (0usize..3, 1usize..7).prop_flat_map(|(inputs, n)| {
        let steps: Vec<_> = (0..n)
            .map(move |i| {
                let part = prop_oneof![
                    3 => text().prop_map(Part::Text),
                    1 => (0..inputs.max(1)).prop_map(move |k| if inputs == 0 { Part::RunId } else { Part::Input(k) }),
                    1 => (0..i.max(1), 0usize..5).prop_map(move |(j, f)| if i == 0 { Part::RunId } else { Part::Step(j, FIELDS[f]) }),
                    1 => Just(Part::RunId),
                ];
                (
                    proptest::option::of(0usize..AGENTS.len()),
                    (text(), proptest::collection::vec(part, 0..5)),
                    proptest::collection::vec(0..i.max(1), 0..3),
                    proptest::option::of(0u32..=100),
                    proptest::option::of(1u64..=604_800),
                    proptest::option::of(0..i.max(1)),
                )
                    .prop_map(move |(agent, (first, mut parts), needs, retries, timeout, when)| {
                        parts.insert(0, Part::Text(format!("x{first}")));
                        GenStep {
                            agent,
                            parts,
                            needs: if i == 0 { Vec::new() } else { needs },
                            retries,
                            timeout,
                            when: if i == 0 { None } else { when },
                        }
                    })
            })
            .collect();
        (steps, proptest::option::of(0..n)).prop_map(move |(steps, output)| GenWorkflow {
            inputs,
            steps,
            output,
        })
    })
}

/// A YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

impl GenWorkflow {
    fn task(&self, i: usize) -> String {
        self.steps[i]
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Input(k) => format!("{{{{ inputs.in{k} }}}}"),
                Part::Step(j, f) => format!("{{{{ steps.s{j}.{f} }}}}"),
                Part::RunId => "{{ run.id }}".to_owned(),
            })
            .collect()
    }

    fn yaml(&self) -> String {
        let mut y = String::from("name: generated\n");
        if self.inputs > 0 {
            y.push_str("inputs:\n");
            for k in 0..self.inputs {
                y.push_str(&format!(
                    "  in{k}: {{ default: {} }}\n",
                    quoted(&format!("v{k}"))
                ));
            }
        }
        y.push_str("steps:\n");
        for (i, s) in self.steps.iter().enumerate() {
            y.push_str(&format!("  - id: s{i}\n"));
            match s.agent {
                Some(a) => y.push_str(&format!("    agent: {}\n", AGENTS[a])),
                None => y.push_str("    route: auto\n"),
            }
            y.push_str(&format!("    task: {}\n", quoted(&self.task(i))));
            if !s.needs.is_empty() {
                let needs: Vec<String> = s.needs.iter().map(|j| format!("s{j}")).collect();
                y.push_str(&format!("    needs: [{}]\n", needs.join(", ")));
            }
            if let Some(r) = s.retries {
                y.push_str(&format!("    retries: {r}\n"));
            }
            if let Some(t) = s.timeout {
                y.push_str(&format!("    timeout: {t}\n"));
            }
            if let Some(j) = s.when {
                y.push_str(&format!("    when: \"steps.s{j}.status == complete\"\n"));
            }
        }
        if let Some(j) = self.output {
            y.push_str(&format!("output: \"{{{{ steps.s{j}.result }}}}\"\n"));
        }
        y
    }

    /// What step `i` depends on.
    fn deps(&self, i: usize) -> BTreeSet<String> {
        let s = &self.steps[i];
        let mut d: BTreeSet<String> = s.needs.iter().map(|j| format!("s{j}")).collect();
        for p in &s.parts {
            if let Part::Step(j, _) = p {
                d.insert(format!("s{j}"));
            }
        }
        if let Some(j) = s.when {
            d.insert(format!("s{j}"));
        }
        d
    }
}

fn outputs() -> impl Strategy<Value = StepOutput> {
    (
        prop_oneof![
            Just(Status::Complete),
            Just(Status::Partial),
            Just(Status::Blocked),
            Just(Status::Failed)
        ],
        proptest::option::of(prop_oneof![
            Just(Confidence::Low),
            Just(Confidence::Medium),
            Just(Confidence::High)
        ]),
        ".{0,40}",
        ".{0,10}",
        proptest::collection::vec("[a-z./]{1,10}", 0..3),
    )
        .prop_map(
            |(status, confidence, result, notes, artifacts)| StepOutput {
                status,
                confidence,
                result,
                notes,
                artifacts,
                instances: Vec::new(),
            },
        )
}

// ---------------------------------------------------------------------------
// The targets.

#[test]
fn parser_never_panics_on_arbitrary_bytes() {
    check(
        "parser_never_panics_on_arbitrary_bytes",
        proptest::collection::vec(any::<u8>(), 0..2048),
        |bytes| load_checked(String::from_utf8_lossy(&bytes).into_owned()),
    );
}

#[test]
fn parser_never_panics_on_yaml_like_text() {
    let token = prop_oneof![
        Just("name: x\n"),
        Just("steps:\n"),
        Just("  - id: a\n"),
        Just("    agent: webster\n"),
        Just("    task: \"{{ steps.a.result }}\"\n"),
        Just("    needs: [a, b]\n"),
        Just("    when: \"steps.a.confidence >= medium\"\n"),
        Just("    retries: 3\n"),
        Just("    timeout: 10m\n"),
        Just("    gate: { status: [complete], approval: true }\n"),
        Just("inputs:\n  q: { required: true }\n"),
        Just("defaults: { retries: 101 }\n"),
        Just("output: \"{{ inputs.q }}\"\n"),
        Just("&a "),
        Just("*a "),
        Just("!!binary "),
        Just("---\n"),
        Just("\t"),
        Just("\u{feff}"),
        Just("[[[["),
        Just("{{"),
        Just("}}"),
        Just(": "),
        Just("- "),
        Just("'"),
        Just("\""),
        Just("#"),
        Just("\n"),
        Just("    "),
    ];
    check(
        "parser_never_panics_on_yaml_like_text",
        proptest::collection::vec(token, 0..64),
        |tokens| load_checked(tokens.concat()),
    );
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    Indent(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        Just(":"),
        Just("- "),
        Just("{{"),
        Just("}}"),
        Just("{{ steps.nope.result }}"),
        Just("!!binary "),
        Just("!ruby/object "),
        Just("&a "),
        Just("*a"),
        Just("\t"),
        Just("\u{feff}"),
        Just("\n"),
        Just("  "),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just("#"),
        Just("'"),
        Just("\""),
        Just("---\n"),
        Just("id: s0"),
        Just("needs: [s0, s0]"),
        Just("when: "),
        Just("retries: 4294967296"),
        Just("timeout: 999999999999h"),
        Just("route: auto"),
        Just("\u{0}"),
        Just("\u{202e}"),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), snippet).prop_map(|(a, s)| Mutation::Insert(a, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0usize..5).prop_map(|(a, n)| Mutation::Indent(a, n)),
    ]
}

/// The nearest char boundary at or before `at % (len + 1)`.
fn boundary(s: &str, at: usize) -> usize {
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(mut text: String, mutations: &[Mutation]) -> String {
    for m in mutations {
        match m {
            Mutation::Delete(at, n) => {
                let a = boundary(&text, *at);
                let b = boundary(&text, a.saturating_add(*n).min(text.len()));
                text.replace_range(a..b.max(a), "");
            }
            Mutation::Insert(at, s) => {
                let a = boundary(&text, *at);
                text.insert_str(a, s);
            }
            Mutation::DuplicateLine(at) | Mutation::Indent(at, _) => {
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = at % lines.len();
                match m {
                    Mutation::Indent(_, n) => lines[i] = format!("{}{}", " ".repeat(*n), lines[i]),
                    _ => lines.insert(i, lines[i].clone()),
                }
                text = lines.join("\n");
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
                text = lines.join("\n");
            }
            Mutation::Truncate(at) => {
                let a = boundary(&text, *at);
                text.truncate(a);
            }
        }
    }
    text
}

#[test]
fn parser_never_panics_on_mutated_valid_documents() {
    let shipped: Vec<String> = builtin_names()
        .filter_map(builtin)
        .map(str::to_owned)
        .collect();
    let doc = prop_oneof![
        gen_workflow().prop_map(|g| g.yaml()),
        proptest::sample::select(shipped),
    ];
    check(
        "parser_never_panics_on_mutated_valid_documents",
        (doc, proptest::collection::vec(mutation(), 1..6)),
        |(text, ms)| load_checked(mutate(text, &ms)),
    );
}

#[test]
fn generated_valid_documents_load_and_say_what_they_were_written_to_say() {
    check(
        "generated_valid_documents_load_and_say_what_they_were_written_to_say",
        gen_workflow(),
        |g| {
            let yaml = g.yaml();
            let loaded = bounded({
                let yaml = yaml.clone();
                move || load(&yaml, "gen.yaml")
            })?;
            let wf = match loaded {
                Ok(wf) => wf,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{yaml}"))),
            };
            let ids: Vec<String> = (0..g.steps.len()).map(|i| format!("s{i}")).collect();
            let got: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
            prop_assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
            for (i, (gs, s)) in g.steps.iter().zip(&wf.steps).enumerate() {
                let task = g.task(i);
                prop_assert_eq!(s.task.source(), task.as_str());
                // The text of a template parses back to the same template.
                prop_assert_eq!(&Template::new(s.task.source()).unwrap(), &s.task);
                let deps: BTreeSet<String> = wf
                    .plan()
                    .deps(&s.id)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                prop_assert_eq!(deps, g.deps(i));
                prop_assert_eq!(wf.retries_of(s), gs.retries.unwrap_or(0));
                prop_assert_eq!(
                    wf.timeout_of(s),
                    Duration::from_secs(gs.timeout.unwrap_or(600))
                );
                match (gs.agent, &s.target) {
                    (Some(a), orch_workflow::Target::Agent(name)) => {
                        prop_assert_eq!(name.as_str(), AGENTS[a]);
                    }
                    (None, orch_workflow::Target::Route) => {}
                    (want, got) => {
                        return Err(TestCaseError::fail(format!("{want:?} vs {got:?}")));
                    }
                }
            }
            prop_assert_eq!(wf.output.is_some(), g.output.is_some());
            // The stored text loads to the same workflow (resume loads it).
            let again = load(&yaml, "gen.yaml").unwrap();
            prop_assert_eq!(again.steps, wf.steps);
            Ok(())
        },
    );
}

fn template_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{{"),
        Just("}}"),
        Just(" "),
        Just("inputs."),
        Just("steps."),
        Just("run.id"),
        Just("run."),
        Just("a"),
        Just("b"),
        Just(".result"),
        Just(".status"),
        Just(".confidence"),
        Just(".notes"),
        Just(".artifacts"),
        Just(".nope"),
        Just("."),
        Just("x"),
        Just("é"),
        Just("\n"),
        Just("{"),
        Just("}"),
    ];
    prop_oneof![
        ".{0,64}",
        proptest::collection::vec(token, 0..24).prop_map(|t| t.concat()),
    ]
}

#[test]
fn templates_parse_and_render_within_their_limit() {
    let ctx = (
        proptest::collection::btree_map("[ab]", ".{0,30}", 0..3),
        proptest::collection::btree_map("[ab]", outputs(), 0..3),
        proptest::option::of("[a-z0-9.-]{1,20}"),
    )
        .prop_map(|(inputs, steps, run_id)| Context {
            inputs,
            steps,
            run_id,
            previous: None,
            item: None,
            outcome: None,
        });
    check(
        "templates_parse_and_render_within_their_limit",
        (template_text(), ctx, 0u64..200),
        |(text, ctx, limit)| {
            let parsed = bounded({
                let text = text.clone();
                move || Template::new(&text)
            })?;
            let Ok(t) = parsed else { return Ok(()) };
            prop_assert_eq!(t.source(), text.as_str());
            prop_assert_eq!(&Template::new(t.source()).unwrap(), &t);
            let whole = t.render(&ctx);
            let within = t.render_within(&ctx, limit);
            match (whole, within) {
                (Ok(whole), Ok(part)) => {
                    prop_assert!(whole.len() as u64 <= limit);
                    prop_assert_eq!(part, whole);
                }
                (Ok(whole), Err(RenderError::TooLarge(e))) => {
                    prop_assert!(whole.len() as u64 > limit);
                    prop_assert_eq!(e.size, whole.len() as u64);
                    prop_assert_eq!(e.limit, limit);
                    let parts: u64 = e.growth.iter().map(|g| g.bytes).sum();
                    prop_assert_eq!(parts, e.size);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => return Err(TestCaseError::fail(format!("{a:?} vs {b:?}"))),
            }
            Ok(())
        },
    );
}
