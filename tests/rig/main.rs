//! `orch` against the real OpenClaw gateway (`../shared/rigs/openclaw`:
//! npm `openclaw` on Node 24, hooks enabled, a scripted fake model), so a
//! delegation goes through OpenClaw's own hook admission, agent runtime and
//! `write` tool. Fakes we write ourselves can agree with our own mistakes.
//!
//! One rig is started for the whole binary (it takes ~10 s) and stopped
//! through its `stop.sh`; a recording proxy sits between `orch` and the
//! gateway. The cases run one after another, because several count what
//! reached the gateway. A custom harness (`harness = false`): libtest has
//! no hook to stop the rig after the last test.
//!
//! A rig that cannot start (no npm registry, no `../shared`) skips the
//! binary with a notice, except under `CI=true`, where it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;
mod rig;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Instant;

use harness::{Orch, Run, settings};
use rig::{Exchange, Proxy, Rig};

/// The rig's agents: `secretary` is left out, so the gateway does not know
/// it (a 400 "unknown agentId").
const AGENTS: [&str; 6] = [
    "manager",
    "webster",
    "tech-lead",
    "optimizer",
    "auditor",
    "study-builder",
];

const TOKEN_VAR: &str = "OPENCLAW_HOOKS_TOKEN";

/// A named test case.
type Case = (&'static str, fn(&Ctx));

struct Ctx {
    rig: Rig,
    proxy: Proxy,
}

impl Ctx {
    /// A store and config with every agent on the gateway (through the
    /// proxy) with `waitForCompletion`, except `webster_transport`'s.
    fn orch_with(&self, webster_transport: &str) -> Orch {
        let orch = Orch::new();
        orch.write_config(&format!(
            "
delegation: {{ retry: {{ base_delay: 10ms, max_delay: 50ms }} }}
transports:
  gw:      {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR} }}
  gw-wait: {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR}, wait_for_completion: true }}
agents:
  manager:   {{ transport: gw-wait }}
  webster:   {{ transport: {webster_transport} }}
  tech-lead: {{ transport: gw-wait }}
  optimizer: {{ transport: gw-wait }}
  auditor:   {{ transport: gw-wait }}
  secretary: {{ transport: gw-wait }}
  study-builder: {{ transport: gw-wait }}
",
            url = self.proxy.url()
        ));
        orch
    }

    fn orch(&self) -> Orch {
        self.orch_with("gw-wait")
    }

    /// Runs `orch args…` with the hook token in the environment (never on
    /// the command line) and checks it was not printed.
    fn run(&self, orch: &Orch, args: &[&str], stdin: Option<&[u8]>, token: &str) -> Run {
        let run = orch.run_env(args, stdin, &[(TOKEN_VAR, token)]);
        run.assert_hides(orch, token);
        run
    }

    fn orch_ok(&self, orch: &Orch, args: &[&str]) -> serde_json::Value {
        let run = self.run(orch, args, None, &self.rig.token);
        assert_eq!(run.code, 0, "{}", run.transcript(orch));
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// (model runs, gateway runs, proxy exchanges) so far.
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.rig.model_runs(),
            self.rig.gateway_runs(),
            self.proxy.exchanges().len(),
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: [Case; 14] = [
        // First: nothing has reached the gateway yet.
        (
            "an_acl_denial_reaches_the_gateway_zero_times",
            an_acl_denial_reaches_the_gateway_zero_times,
        ),
        ("a_delegation_completes", a_delegation_completes),
        (
            "partial_blocked_and_low_confidence_outcomes",
            partial_blocked_and_low_confidence_outcomes,
        ),
        (
            "a_silent_run_is_reasked_once_then_failed_not_waited_out",
            a_silent_run_is_reasked_once_then_failed_not_waited_out,
        ),
        (
            "a_malformed_handoff_is_reasked_with_the_exact_error",
            a_malformed_handoff_is_reasked_with_the_exact_error,
        ),
        ("refusals_say_what_to_fix", refusals_say_what_to_fix),
        (
            "a_dropped_response_does_not_start_a_second_run",
            a_dropped_response_does_not_start_a_second_run,
        ),
        (
            "quick_research_runs_through_the_gateway",
            quick_research_runs_through_the_gateway,
        ),
        (
            "design_review_runs_its_reviews_in_parallel",
            design_review_runs_its_reviews_in_parallel,
        ),
        (
            "design_review_until_confident_asks_again_through_the_gateway",
            design_review_until_confident_asks_again_through_the_gateway,
        ),
        (
            "a_trade_study_fans_out_one_run_per_material",
            a_trade_study_fans_out_one_run_per_material,
        ),
        (
            "a_research_brief_runs_quick_research_as_a_child_run",
            a_research_brief_runs_quick_research_as_a_child_run,
        ),
        (
            "the_skill_is_accepted_by_openclaw",
            the_skill_is_accepted_by_openclaw,
        ),
        (
            "an_openclaw_agent_delegates_through_orchs_mcp_server",
            an_openclaw_agent_delegates_through_orchs_mcp_server,
        ),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &cases {
            println!("rig::{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        return ExitCode::SUCCESS;
    }

    let scripts = rig::scripts();
    let started = Instant::now();
    let rig = match Rig::start(&scripts, &AGENTS) {
        Ok(rig) => rig,
        Err(e) if rig::in_ci() => {
            eprintln!(
                "rig: the OpenClaw rig did not start, and CI=true makes that a failure:\n{e}"
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "rig: SKIPPED, the OpenClaw rig did not start ({}):\n{e}\n\
                 (run {}/install.sh once; CI=true makes this a failure)",
                scripts.display(),
                scripts.display()
            );
            return ExitCode::SUCCESS;
        }
    };
    println!(
        "rig: gateway up in {:.1} s at {}",
        started.elapsed().as_secs_f64(),
        rig.url
    );
    let proxy = Proxy::start(&rig.url);
    let ctx = Ctx { rig, proxy };

    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, case) in &chosen {
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| case(&ctx)));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test rig::{name} ... {verdict} ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    drop(ctx); // stop.sh
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for name in failed {
            println!("    rig::{name}");
        }
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------
// Cases.

fn an_acl_denial_reaches_the_gateway_zero_times(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.counts();
    let run = ctx.run(
        &orch,
        &[
            "delegate",
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "auditor",
        ],
        None,
        &ctx.rig.token,
    );
    assert_eq!(run.code, 3, "{}", run.transcript(&orch));
    assert!(run.stderr.contains("may not delegate"), "{}", run.stderr);
    assert_eq!(ctx.counts(), before, "(model runs, gateway runs, requests)");
}

fn a_delegation_completes(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "delegate",
            "webster",
            "Find the CTE of Zerodur between 0 and 50 °C",
            "--caller",
            "manager",
            "--json",
        ],
    );
    assert_eq!(out["status"], "complete", "{out}");
    let h = &out["handoff"];
    assert_eq!(h["agent"], "webster");
    assert_eq!(h["runId"], out["runId"]);
    assert!(
        h["result"]
            .as_str()
            .unwrap()
            .starts_with("Fake model answer to:"),
        "written by the agent's own write tool: {h}"
    );
    let path = out["handoffPath"].as_str().unwrap();
    assert!(std::path::Path::new(path).is_file(), "{path}");
    let sent = &ctx.proxy.exchanges()[before..];
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(body["agentId"], "webster");
    assert_eq!(body["waitForCompletion"], true);
    assert!(body["timeoutSeconds"].as_u64().is_some(), "{body}");
    assert_eq!(sent[0].header("idempotency-key"), out["runId"].as_str());
}

fn partial_blocked_and_low_confidence_outcomes(ctx: &Ctx) {
    let orch = ctx.orch();
    for (task, code, status, confidence) in [
        ("Find CTE of ULE [fake:partial]", 10, "partial", "high"),
        ("Find CTE of ULE [fake:blocked]", 11, "blocked", "high"),
        ("Find CTE of ULE [fake:low]", 0, "complete", "low"),
    ] {
        let run = ctx.run(
            &orch,
            &["delegate", "webster", task, "--caller", "manager", "--json"],
            None,
            &ctx.rig.token,
        );
        assert_eq!(run.code, code, "{task}: {}", run.transcript(&orch));
        let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(out["handoff"]["status"], status, "{task}");
        assert_eq!(out["handoff"]["confidence"], confidence, "{task}");
    }
}

fn a_silent_run_is_reasked_once_then_failed_not_waited_out(ctx: &Ctx) {
    let orch = ctx.orch();
    let sent = ctx.proxy.exchanges().len();
    let t = Instant::now();
    let run = ctx.run(
        &orch,
        &[
            "delegate",
            "tech-lead",
            "Review the margins [fake:silent]",
            "--caller",
            "manager",
            "--timeout",
            "10m",
            "--json",
        ],
        None,
        &ctx.rig.token,
    );
    let took = t.elapsed();
    assert_eq!(run.code, 12, "{}", run.transcript(&orch));
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["end"]["kind"], "no-handoff", "not a timeout: {out}");
    assert_eq!(out["reasks"], 1, "{out}");
    // With waitForCompletion the gateway answered each send once its run
    // had settled: two runs, the second the re-ask.
    let sent = &ctx.proxy.exchanges()[sent..];
    assert_eq!(sent.len(), 2, "{sent:?}");
    let answers: Vec<_> = sent.iter().map(Exchange::response_json).collect();
    for a in &answers {
        assert_eq!(a["completion"]["status"], "ok", "{a}");
    }
    assert_ne!(answers[0]["runId"], answers[1]["runId"], "{answers:?}");
    assert!(
        sent[1].json()["message"]
            .as_str()
            .unwrap()
            .contains("## Asked again")
    );
    println!(
        "    (a silent run was reported failed after {:.1} s)",
        took.as_secs_f64()
    );
}

fn a_malformed_handoff_is_reasked_with_the_exact_error(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let run = ctx.run(
        &orch,
        &[
            "delegate",
            "tech-lead",
            "Review the margins [fake:malformed]",
            "--caller",
            "manager",
            "--timeout",
            "2m",
        ],
        None,
        &ctx.rig.token,
    );
    assert_eq!(run.code, 12, "{}", run.transcript(&orch));
    let sent = &ctx.proxy.exchanges()[before..];
    assert_eq!(sent.len(), 2, "the dispatch and one re-ask");
    let reask = sent[1].json()["message"].as_str().unwrap().to_owned();
    assert!(reask.contains("## Asked again"), "{reask}");
    assert!(
        reask.contains("invalid JSON at line 1, column 2"),
        "the exact parse error of `{{not json`: {reask}"
    );
    assert_ne!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key"),
        "a re-ask is a new run"
    );
    let invalid: Vec<_> = orch
        .ledger()
        .into_iter()
        .filter(|l| l["event"] == "invalid")
        .collect();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
}

fn refusals_say_what_to_fix(ctx: &Ctx) {
    let orch = ctx.orch();
    let mut transcript = String::new();
    let (runs, _, _) = ctx.counts();
    let wrong = ctx.run(
        &orch,
        &["delegate", "webster", "Find CTE", "--caller", "manager"],
        None,
        "not-the-hooks-token",
    );
    assert_eq!(wrong.code, 4, "{}", wrong.transcript(&orch));
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);
    transcript.push_str(&format!("# wrong token\n{}\n", wrong.transcript(&orch)));

    let unknown = ctx.run(
        &orch,
        &[
            "delegate",
            "secretary",
            "File the notes",
            "--caller",
            "manager",
        ],
        None,
        &ctx.rig.token,
    );
    assert_eq!(unknown.code, 4, "{}", unknown.transcript(&orch));
    assert!(
        unknown.stderr.contains("unknown agentId"),
        "{}",
        unknown.stderr
    );
    transcript.push_str(&format!(
        "# an agent the gateway does not know\n{}\n",
        unknown.transcript(&orch)
    ));

    let sent = ctx.proxy.exchanges().len();
    let huge = "x".repeat(300 * 1024);
    let oversize = ctx.run(
        &orch,
        &["delegate", "webster", "-", "--caller", "manager"],
        Some(huge.as_bytes()),
        &ctx.rig.token,
    );
    // Refused with its real size before anything is sent: bad input (2),
    // not a transport failure (4).
    assert_eq!(oversize.code, 2, "{}", oversize.transcript(&orch));
    assert_eq!(ctx.proxy.exchanges().len(), sent, "refused before sending");
    transcript.push_str(&format!(
        "# an over-size task\n{}\n",
        oversize.transcript(&orch)
    ));
    assert_eq!(ctx.rig.model_runs(), runs, "no refusal started a run");
    settings().bind(|| insta::assert_snapshot!(transcript));
}

fn a_dropped_response_does_not_start_a_second_run(ctx: &Ctx) {
    // webster without waitForCompletion: the gateway answers as soon as the
    // run is admitted; that answer is lost, orch retries within ~10 ms with
    // the same Idempotency-Key while the agent is still at work.
    let orch = ctx.orch_with("gw");
    let (runs, _, before) = ctx.counts();
    ctx.proxy.drop_next_response();
    let out = ctx.orch_ok(
        &orch,
        &[
            "delegate",
            "webster",
            "Find the density of Clearceram-Z HS",
            "--caller",
            "manager",
            "--json",
        ],
    );
    let sent = &ctx.proxy.exchanges()[before..];
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(sent[0].dropped && sent[0].status == 200, "{sent:?}");
    // Model requests that start a run happen before the handoff is written,
    // so they are all in the log by now (the gateway logs a run only once
    // it is over).
    let key = sent[0].header("idempotency-key");
    assert!(sent.iter().all(|e| e.header("idempotency-key") == key));
    assert_eq!(out["dispatches"].as_u64(), Some(sent.len() as u64), "{out}");
    let run_ids: Vec<_> = sent
        .iter()
        .map(|e| e.response_json()["runId"].clone())
        .collect();
    assert!(run_ids[0].is_string(), "{run_ids:?}");
    assert!(
        run_ids.iter().all(|r| r == &run_ids[0]),
        "one run, replayed: {run_ids:?}"
    );
    assert_eq!(
        ctx.rig.model_runs() - runs,
        1,
        "one run, however many sends"
    );
}

fn quick_research_runs_through_the_gateway(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "workflow",
            "quick-research",
            "--input",
            "query=What is the CTE of Zerodur between 0 and 50 °C?",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    assert_eq!(out["status"], "completed", "{out}");
    for step in ["research", "validate"] {
        assert_eq!(out["steps"][step]["status"], "completed", "{step}: {out}");
    }
    let agents: Vec<_> = ctx.proxy.exchanges()[before..]
        .iter()
        .map(|e| e.json()["agentId"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(agents, ["webster", "tech-lead"]);
    assert!(
        out["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("Fake model answer to:")),
        "{out}"
    );
}

/// `research-brief` runs the shipped quick-research as a child run: its
/// two delegations go out under the child run's ids, then the brief reads
/// the child's validated answer.
fn a_research_brief_runs_quick_research_as_a_child_run(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "workflow",
            "research-brief",
            "--input",
            "topic=What is the CTE of ULE at 20 °C?",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    assert_eq!(out["status"], "completed", "{out}");
    let child = &out["childRuns"]["background"];
    assert_eq!(child["status"], "completed", "{out}");
    assert_eq!(child["parent"]["step"], "background", "{out}");
    for step in ["research", "validate"] {
        assert_eq!(child["steps"][step]["status"], "completed", "{step}: {out}");
    }
    let exchanges = &ctx.proxy.exchanges()[before..];
    let agents: Vec<_> = exchanges
        .iter()
        .map(|e| e.json()["agentId"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(agents, ["webster", "tech-lead", "study-builder"]);
    // The child's delegations carry its run id; the brief read its output.
    let child_id = child["runId"].as_str().unwrap();
    let key = |e: &Exchange| e.json()["message"].as_str().unwrap_or("").to_owned();
    assert!(
        key(&exchanges[0]).contains(&format!("{child_id}.research.1")),
        "{}",
        key(&exchanges[0])
    );
    assert!(
        key(&exchanges[2]).contains("Fake model answer to:"),
        "{}",
        key(&exchanges[2])
    );
}

/// orch as an OpenClaw agent's native tool: a gateway of its own whose
/// `mcp.servers` registers `orch mcp --as manager` (over the store this
/// case uses; webster is a sim agent of that server's config). The manager,
/// a real OpenClaw agent delegated to by `operator`, is scripted to call the
/// offered tool ending in `delegate`: OpenClaw's MCP client calls orch's,
/// and orch delegates to webster as a sub-delegation of the manager's run.
///
/// What it cannot check here: that the manager then hands off webster's
/// answer. After the tool call, OpenClaw 2026.9.6 sends the model the hook's
/// user message again after the tool result (roles system, user, assistant,
/// tool, user), and the rig's fake model writes its handoff only when the
/// tool result is the last message; so the manager's run ends without a
/// handoff. The tool's answer did reach the agent (the session transcript
/// has it); see the closing note of this stop.
fn an_openclaw_agent_delegates_through_orchs_mcp_server(ctx: &Ctx) {
    let orch = Orch::new();
    let store = orch.store();
    std::fs::create_dir_all(&store).unwrap();
    let server_config = orch.path("orch-mcp.yaml");
    std::fs::write(
        &server_config,
        "transports:\n  sim: { kind: sim, delay: 20ms }\nagents:\n  manager: { transport: sim }\n  webster: { transport: sim }\n",
    )
    .unwrap();
    let extra = orch.path("extra.json");
    std::fs::write(
        &extra,
        serde_json::to_vec(&serde_json::json!({
            // Tool Search (on by default) offers a model `tool_search` and
            // `tool_call` instead of the MCP tools themselves; the fake
            // model calls only tools it is offered by name.
            "tools": { "toolSearch": { "enabled": false } },
            "mcp": { "servers": { "orch": {
                "command": env!("CARGO_BIN_EXE_orch"),
                "args": ["mcp", "--as", "manager"],
                "env": {
                    "ORCH_CONFIG": server_config,
                    "ORCH_HANDOFF_DIR": store,
                },
                "requestTimeoutMs": 120_000,
            } } }
        }))
        .unwrap(),
    )
    .unwrap();
    let rig = Rig::start_with(&rig::scripts(), &["manager"], Some(&extra))
        .unwrap_or_else(|e| panic!("the MCP gateway did not start: {e}"));
    orch.write_config(&format!(
        "
transports:
  gw: {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR}, wait_for_completion: true }}
agents:
  manager: {{ transport: gw }}
acl:
  operator: [manager]
  manager: ['*']
",
        url = rig.url
    ));
    let task = r#"Find the CTE of Zerodur; ask webster. [fake:tool delegate {"agent":"webster","task":"Find CTE of Zerodur"}]"#;
    let run = ctx.run(
        &orch,
        &[
            "delegate",
            "manager",
            task,
            "--caller",
            "operator",
            "--json",
            "--timeout",
            "120s",
        ],
        None,
        &rig.token,
    );
    let out: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", run.transcript(&orch)));
    let manager_run = out["runId"].as_str().unwrap();
    // The ledger: operator → manager, then, through the MCP tool, manager →
    // webster as a sub-delegation of the manager's run, answered.
    let ledger = orch.ledger();
    let sub = ledger
        .iter()
        .find(|l| l["event"] == "dispatched" && l["agent"] == "webster")
        .unwrap_or_else(|| {
            panic!(
                "no delegation to webster: {ledger:?}\n{}",
                run.transcript(&orch)
            )
        });
    assert_eq!(sub["caller"], "manager", "{sub}");
    assert_eq!(sub["parent"], manager_run, "{sub}");
    assert!(
        ledger.iter().any(|l| l["event"] == "handoff"
            && l["runId"] == sub["runId"]
            && l["status"] == "complete"),
        "webster's answer: {ledger:?}"
    );
    // OpenClaw offered orch's tools to the model, by the server's name.
    let log = std::fs::read_to_string(rig.dir().join("log/model.jsonl")).unwrap_or_default();
    assert!(
        log.contains("orch__delegate") && log.contains("orch__handoff_submit"),
        "the model was not offered orch's tools: {}",
        &log[..log.len().min(2000)]
    );
}

/// `[fake:low]` in the design makes every review answer low: the repeat
/// step is asked `max` (3) times, each a run of its own on the gateway,
/// then the last answer goes on to the sign-off.
fn design_review_until_confident_asks_again_through_the_gateway(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "workflow",
            "design-review-until-confident",
            "--input",
            "design=M1 mirror mount [fake:low]",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["steps"]["review"]["iterations"], 3, "{out}");
    assert_eq!(out["steps"]["review"]["attempts"], 3, "{out}");
    let agents: Vec<_> = ctx.proxy.exchanges()[before..]
        .iter()
        .map(|e| e.json()["agentId"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(agents, ["tech-lead", "tech-lead", "tech-lead", "auditor"]);
    let messages: Vec<String> = ctx.proxy.exchanges()[before..]
        .iter()
        .map(|e| e.json()["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        messages[1].contains("Why it was asked again: until `status == complete and confidence >= high` is false: status complete, confidence low"),
        "{}",
        messages[1]
    );
    assert!(
        messages[1].contains("Fake model answer to:"),
        "the second round carries the first answer: {}",
        messages[1]
    );
}

/// `material-trade-study` fans its research out over `materials`: one
/// webster run on the gateway per material, each its own delegation,
/// in flight together; the evaluation reads every answer under its
/// material's heading.
fn a_trade_study_fans_out_one_run_per_material(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "workflow",
            "material-trade-study",
            "--input",
            "materials=Zerodur, ULE, Invar 36",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["steps"]["research"]["instances"]["total"], 3, "{out}");
    assert_eq!(
        out["steps"]["research"]["instances"]["completed"], 3,
        "{out}"
    );
    let exchanges = &ctx.proxy.exchanges()[before..];
    let agents: Vec<String> = exchanges
        .iter()
        .map(|e| e.json()["agentId"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        agents,
        ["webster", "webster", "webster", "tech-lead", "auditor"],
        "{agents:?}"
    );
    // Each material went out once, in its own message.
    let messages: Vec<String> = exchanges
        .iter()
        .map(|e| e.json()["message"].as_str().unwrap_or("").to_owned())
        .collect();
    for material in ["Zerodur", "ULE", "Invar 36"] {
        let n = messages[..3]
            .iter()
            .filter(|m| m.contains(&format!("Candidate: {material}\n")))
            .count();
        assert_eq!(n, 1, "{material}: {messages:?}");
    }
    // The research was in flight together: every webster run was
    // dispatched before the first one's handoff came back.
    let ledger = orch.ledger();
    let ts = |l: &serde_json::Value| {
        l["ts"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let dispatched: Vec<_> = ledger
        .iter()
        .filter(|l| l["event"] == "dispatched" && l["agent"] == "webster")
        .map(ts)
        .collect();
    let first_back = ledger
        .iter()
        .filter(|l| l["event"] == "handoff" && l["agent"] == "webster")
        .map(ts)
        .min()
        .unwrap();
    assert_eq!(dispatched.len(), 3);
    assert!(dispatched.iter().all(|d| *d < first_back), "{ledger:?}");
    // The evaluation read each answer under its material.
    for material in ["Zerodur", "ULE", "Invar 36"] {
        assert!(
            messages[3].contains(&format!("### {material}\nFake model answer to:")),
            "{material}: {}",
            messages[3]
        );
    }
}

fn design_review_runs_its_reviews_in_parallel(ctx: &Ctx) {
    let orch = ctx.orch();
    let before = ctx.proxy.exchanges().len();
    let out = ctx.orch_ok(
        &orch,
        &[
            "workflow",
            "design-review",
            "--input",
            "design=M1 mirror mount, Invar flexures, 3-point kinematic",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    assert_eq!(out["status"], "completed", "{out}");
    let agents: Vec<_> = ctx.proxy.exchanges()[before..]
        .iter()
        .map(|e| e.json()["agentId"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(agents.len(), 3, "{agents:?}");
    assert_eq!(agents[2], "auditor", "{agents:?}");
    // From orch's ledger: when each delegation went out and when its
    // handoff came back.
    let ledger = orch.ledger();
    let at = |event: &str, agent: &str| -> String {
        ledger
            .iter()
            .find(|l| l["event"] == event && l["agent"] == agent)
            .and_then(|l| l["ts"].as_str())
            .unwrap_or_else(|| panic!("no {event} for {agent}: {ledger:?}"))
            .to_owned()
    };
    let ts = |s: String| s.parse::<jiff::Timestamp>().unwrap();
    let (eng_out, eng_back) = (
        ts(at("dispatched", "tech-lead")),
        ts(at("handoff", "tech-lead")),
    );
    let (opt_out, opt_back) = (
        ts(at("dispatched", "optimizer")),
        ts(at("handoff", "optimizer")),
    );
    assert!(
        eng_out < opt_back && opt_out < eng_back,
        "the two reviews were in flight together: tech-lead {eng_out}..{eng_back}, \
         optimizer {opt_out}..{opt_back}"
    );
    assert!(
        ts(at("dispatched", "auditor")) >= eng_back.max(opt_back),
        "the consolidation waits for both"
    );
}

fn the_skill_is_accepted_by_openclaw(ctx: &Ctx) {
    let orch = ctx.orch();
    let ws = ctx.rig.dir().join("ws-webster");
    let run = orch.run(
        &["skill", "install", "--workspace", ws.to_str().unwrap()],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let out = ctx
        .rig
        .openclaw(&["skills", "list", "--agent", "webster", "--json"]);
    assert!(
        out.status.success(),
        "openclaw skills list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skill = list["skills"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "orch"))
        .unwrap_or_else(|| panic!("orch is not in webster's skills: {list}"));
    assert_eq!(skill["source"], "openclaw-workspace", "{skill}");
    assert_eq!(skill["eligible"], true, "{skill}");
    assert_eq!(
        skill["modelVisible"], true,
        "in the agent's prompt: {skill}"
    );
    assert_eq!(
        skill["description"].as_str(),
        orch.ok(&["skill", "show"])
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("description: "))
    );
}
