//! The `sim` and `exec` transports against a real `FsStore` in a temp dir.
//!
//! sim tests run in paused time: the answer task's `sleep` and the waiter's
//! deadline are tokio timers, so time jumps to whichever comes first once
//! the runtime is idle. The store's watcher may wake a waiter earlier, but a
//! wait also reads the file one last time at its deadline, so every
//! outcome is the same whichever wakes it. exec tests run in real time
//! (waiting for a process is I/O, which paused time does not wait for).

use orch_handoff::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::{
    Confidence, FsStore, FsStoreConfig, Handoff, HandoffKey, HandoffStore, RunId, Scope, Status,
    WaitOutcome,
};
use orch_delegate::transport::exec::{ExecConfig, ExecTransport};
use orch_delegate::transport::sim::{Behaviour, SimConfig, SimTransport};
use orch_delegate::{Ack, Envelope, Transport, TransportError};
use serde_json::Value;
use tokio::time::Instant;

const RUN: &str = "orch-20261123T224500Z-3f9a1c2b";

struct Rig {
    _dir: tempfile::TempDir,
    store: FsStore,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(FsStoreConfig::new(dir.path().join("store"))).unwrap();
        Self { _dir: dir, store }
    }

    fn shared(&self) -> Arc<dyn HandoffStore> {
        Arc::new(self.store.clone())
    }

    fn envelope(&self, agent: &str, message: &str, scope: Scope, attempt: u32) -> Envelope {
        let run_id = RunId::new(RUN).unwrap();
        let key = HandoffKey {
            scope,
            run_id: run_id.clone(),
        };
        Envelope {
            handoff_location: self.store.location(&key),
            run_id,
            agent: agent.into(),
            caller: "manager".into(),
            message: message.into(),
            timeout: Duration::from_secs(60),
            parent: match scope {
                Scope::Top | Scope::Control => None,
                Scope::Sub => Some(RunId::new("orch-20261123T224400Z-00000001").unwrap()),
            },
            scope,
            attempt,
        }
    }
}

fn key(scope: Scope) -> HandoffKey {
    HandoffKey {
        scope,
        run_id: RunId::new(RUN).unwrap(),
    }
}

/// A task message shaped like the delegator's: a header naming the run and
/// the handoff path, then the task.
fn message(rig: &Rig, task: &str) -> String {
    format!(
        "orch run {RUN}: write your handoff to {}\n\n{task}\n\nInstructions: …",
        rig.store.location(&key(Scope::Top))
    )
}

// ---------------------------------------------------------------- sim

fn sim(rig: &Rig, config: SimConfig) -> SimTransport {
    SimTransport::new(rig.shared(), config)
}

/// Subscribes, dispatches `envelope` and waits up to 60 s (paused time).
async fn ask(rig: &Rig, sim: &SimTransport, envelope: &Envelope) -> WaitOutcome {
    let mut sub = rig.store.subscribe(&key(envelope.scope)).await.unwrap();
    let ack = sim.dispatch(envelope).await.unwrap();
    assert_eq!(
        ack,
        Ack {
            remote_run_id: Some(format!("sim-{RUN}")),
            completion: None,
        }
    );
    sub.wait(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
}

fn landed(outcome: WaitOutcome) -> Handoff {
    match outcome {
        WaitOutcome::Landed(handoff) => handoff,
        other => panic!("expected a handoff, got {other:?}"),
    }
}

/// One behaviour, selected through the agent's config: what lands.
async fn check_answer(behaviour: Behaviour, status: Status, confidence: Confidence) {
    let rig = Rig::new();
    let mut config = SimConfig::default();
    config.agents.insert("webster".into(), behaviour);
    let sim = sim(&rig, config);
    let started = Instant::now();
    let envelope = rig.envelope(
        "webster",
        &message(&rig, "Find the CTE of Zerodur."),
        Scope::Top,
        1,
    );
    let handoff = landed(ask(&rig, &sim, &envelope).await);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{behaviour}"
    );
    assert_eq!(
        (handoff.status, handoff.confidence),
        (status, Some(confidence)),
        "{behaviour}"
    );
    assert_eq!(handoff.agent, "webster");
    assert_eq!(
        handoff.result,
        format!(
            "[simulated] webster (sim fleet, behaviour {behaviour}) answers: Find the CTE of Zerodur."
        )
    );
    assert!(
        handoff.notes.starts_with("simulated answer"),
        "{}",
        handoff.notes
    );
    assert_eq!(handoff.extra.get("simulated"), Some(&Value::Bool(true)));
}

#[tokio::test(start_paused = true)]
async fn sim_behaviours_land_with_their_status_and_confidence() {
    for (behaviour, status, confidence) in [
        (Behaviour::Complete, Status::Complete, Confidence::High),
        (Behaviour::Partial, Status::Partial, Confidence::Medium),
        (Behaviour::Blocked, Status::Blocked, Confidence::Low),
        (Behaviour::Failed, Status::Failed, Confidence::Low),
        (Behaviour::LowConfidence, Status::Complete, Confidence::Low),
    ] {
        check_answer(behaviour, status, confidence).await;
    }
}

#[tokio::test(start_paused = true)]
async fn sim_notes_say_what_is_missing_or_why() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let partial = rig.envelope("webster", "[sim:partial] research", Scope::Top, 1);
    let notes = landed(ask(&rig, &sim, &partial).await).notes;
    assert!(notes.contains("missing"), "{notes}");
    rig.store.quarantine(&key(Scope::Top)).await.unwrap();
    let blocked = rig.envelope("webster", "[sim:blocked] research", Scope::Top, 1);
    let notes = landed(ask(&rig, &sim, &blocked).await).notes;
    assert!(notes.contains("needs input"), "{notes}");
}

#[tokio::test(start_paused = true)]
async fn sim_agents_default_to_complete() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let envelope = rig.envelope("auditor", "audit it", Scope::Top, 1);
    let handoff = landed(ask(&rig, &sim, &envelope).await);
    assert_eq!(handoff.status, Status::Complete);
    assert_eq!(handoff.agent, "auditor");
}

#[tokio::test(start_paused = true)]
async fn a_sim_keyword_beats_the_agent_behaviour() {
    let rig = Rig::new();
    let mut config = SimConfig::default();
    config.agents.insert("webster".into(), Behaviour::Failed);
    let sim = sim(&rig, config);
    let task = message(&rig, "[sim:partial] Find the CTE of Zerodur.");
    let handoff = landed(ask(&rig, &sim, &rig.envelope("webster", &task, Scope::Top, 1)).await);
    assert_eq!(handoff.status, Status::Partial);
    assert_eq!(
        handoff.result,
        "[simulated] webster (sim fleet, behaviour partial) answers: [sim:partial] Find the CTE of Zerodur."
    );
}

#[tokio::test(start_paused = true)]
async fn sim_answers_a_sub_delegation_under_sub() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let envelope = rig.envelope("webster", "look it up", Scope::Sub, 1);
    landed(ask(&rig, &sim, &envelope).await);
    assert!(rig.store.get(&key(Scope::Top)).await.unwrap().is_none());
    assert!(
        rig.store
            .root()
            .join("sub")
            .join(format!("{RUN}.json"))
            .is_file()
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_sim_agent_times_out_even_when_re_asked() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let mut sub = rig.store.subscribe(&key(Scope::Top)).await.unwrap();
    for attempt in [1, 2] {
        let envelope = rig.envelope("webster", "[sim:silent] hello?", Scope::Top, attempt);
        sim.dispatch(&envelope).await.unwrap();
        assert_eq!(sim.pending(), 0, "nothing is scheduled");
        let outcome = sub
            .wait(Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(outcome, WaitOutcome::TimedOut, "attempt {attempt}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_malformed_sim_agent_is_invalid_on_every_attempt() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    for attempt in [1, 2] {
        let envelope = rig.envelope("webster", "[sim:malformed] x", Scope::Top, attempt);
        match ask(&rig, &sim, &envelope).await {
            WaitOutcome::Invalid(e) => {
                assert!(!e.is_incomplete(), "{e}");
                assert!(e.to_string().contains("status"), "{e}");
            }
            other => panic!("attempt {attempt}: expected an invalid handoff, got {other:?}"),
        }
        assert!(
            rig.store
                .quarantine(&key(Scope::Top))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_malformed_once_sim_agent_answers_validly_when_re_asked() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let mut sub = rig.store.subscribe(&key(Scope::Top)).await.unwrap();
    // Each wait gets its own deadline: in paused time a wait may end at its
    // deadline rather than when the file lands (time jumps while the
    // watcher's wake-up is on its way), leaving no time for a later wait.
    let deadline = || Instant::now() + Duration::from_secs(60);

    let first = rig.envelope("webster", "[sim:malformed-once] x", Scope::Top, 1);
    sim.dispatch(&first).await.unwrap();
    let outcome = sub.wait(deadline()).await.unwrap();
    assert!(matches!(outcome, WaitOutcome::Invalid(_)), "{outcome:?}");

    rig.store.quarantine(&key(Scope::Top)).await.unwrap();
    let reask = rig.envelope("webster", "[sim:malformed-once] x", Scope::Top, 2);
    sim.dispatch(&reask).await.unwrap();
    let handoff = landed(sub.wait(deadline()).await.unwrap());
    assert_eq!(handoff.status, Status::Complete);
    assert!(handoff.notes.contains("re-ask"), "{}", handoff.notes);
}

#[tokio::test(start_paused = true)]
async fn a_slow_sim_agent_takes_the_slow_delay() {
    let rig = Rig::new();
    let config = SimConfig {
        delay: Duration::from_millis(10),
        slow_delay: Duration::from_secs(30),
        ..SimConfig::default()
    };
    let sim = sim(&rig, config);
    let started = Instant::now();
    let mut sub = rig.store.subscribe(&key(Scope::Top)).await.unwrap();
    sim.dispatch(&rig.envelope("webster", "[sim:slow] x", Scope::Top, 1))
        .await
        .unwrap();
    assert_eq!(sim.pending(), 1);
    let early = sub.wait(started + Duration::from_secs(20)).await.unwrap();
    assert_eq!(early, WaitOutcome::TimedOut);
    let handoff = landed(sub.wait(started + Duration::from_secs(40)).await.unwrap());
    assert_eq!(handoff.status, Status::Complete);
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_sim_transport_aborts_pending_answers() {
    let rig = Rig::new();
    let sim = sim(&rig, SimConfig::default());
    let clone = sim.clone();
    let mut sub = rig.store.subscribe(&key(Scope::Top)).await.unwrap();
    sim.dispatch(&rig.envelope("webster", "x", Scope::Top, 1))
        .await
        .unwrap();
    drop(sim);
    assert_eq!(clone.pending(), 1, "a clone keeps the answers alive");
    drop(clone);
    let outcome = sub
        .wait(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(outcome, WaitOutcome::TimedOut);
}

#[test]
fn an_unknown_behaviour_names_the_valid_ones() {
    let err = "done".parse::<Behaviour>().unwrap_err();
    insta::assert_snapshot!(err, @r#"unknown sim behaviour "done": expected one of complete, partial, blocked, failed, low-confidence, silent, malformed, malformed-once, slow"#);
}

// ---------------------------------------------------------------- exec

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exec")
        .join(name)
        .display()
        .to_string()
}

fn exec(script: &str) -> ExecTransport {
    ExecTransport::new(ExecConfig::new(["/bin/sh".to_owned(), fixture(script)])).unwrap()
}

fn completion(ack: &Ack) -> (bool, &str) {
    let completion = ack
        .completion
        .as_ref()
        .expect("exec always reports a completion");
    (completion.ok, completion.detail.as_str())
}

/// The `NAME=value` lines of the `answer.sh` result.
fn variables(handoff: &Handoff) -> BTreeMap<String, String> {
    handoff
        .result
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn an_exec_agent_answers_through_the_store() {
    let rig = Rig::new();
    let transport = exec("answer.sh");
    let envelope = rig.envelope("webster", "Find the CTE of Zerodur.", Scope::Top, 1);
    let ack = transport.dispatch(&envelope).await.unwrap();
    assert_eq!(completion(&ack), (true, "exit status 0"));
    let handoff = rig.store.get(&key(Scope::Top)).await.unwrap().unwrap();
    let pid = handoff.extra["pid"].as_u64().unwrap();
    assert_eq!(ack.remote_run_id, Some(format!("pid {pid}")));
    assert_eq!(handoff.agent, "webster");
    assert_eq!(handoff.extra["stdin"], "Find the CTE of Zerodur.");
}

#[tokio::test]
async fn an_exec_agent_gets_the_protocol_environment() {
    let rig = Rig::new();
    let cwd = tempfile::tempdir().unwrap();
    let mut config = ExecConfig::new(["/bin/sh".to_owned(), fixture("answer.sh")]);
    config.cwd = Some(cwd.path().to_owned());
    config.env.insert("EXEC_TEST_SETTING".into(), "42".into());
    config
        .env
        .insert("ORCH_RUN_ID".into(), "not-the-run".into());
    let transport = ExecTransport::new(config).unwrap();
    let envelope = rig.envelope("webster", "one-line task", Scope::Sub, 2);
    let ack = transport.dispatch(&envelope).await.unwrap();
    assert!(completion(&ack).0, "{ack:?}");

    let handoff = rig.store.get(&key(Scope::Sub)).await.unwrap().unwrap();
    let vars = variables(&handoff);
    let expected: BTreeMap<String, String> = [
        ("ORCH_RUN_ID", RUN.to_owned()),
        ("ORCH_HANDOFF_PATH", envelope.handoff_location.clone()),
        ("ORCH_HANDOFF_SCOPE", "sub".to_owned()),
        ("ORCH_TASK", "one-line task".to_owned()),
        ("ORCH_AGENT", "webster".to_owned()),
        ("ORCH_CALLER", "manager".to_owned()),
        ("ORCH_PARENT_RUN", RUN.to_owned()),
        ("ORCH_ATTEMPT", "2".to_owned()),
        ("ORCH_TASK_TRUNCATED", "<unset>".to_owned()),
        ("EXEC_TEST_SETTING", "42".to_owned()),
        ("PATH", std::env::var("PATH").unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(vars, expected);
    let cwd_seen = PathBuf::from(handoff.extra["cwd"].as_str().unwrap());
    assert_eq!(
        cwd_seen.canonicalize().unwrap(),
        cwd.path().canonicalize().unwrap()
    );
}

/// `remove_env` takes variables (orch's secrets) out of what the command
/// inherits; `env` can still set one explicitly.
#[tokio::test]
async fn an_exec_agent_does_not_inherit_removed_variables() {
    let rig = Rig::new();
    let mut config = ExecConfig::new(["/bin/sh".to_owned(), fixture("env.sh")]);
    // Both set by cargo for every test run.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    config.remove_env = ["CARGO_PKG_NAME", "EXEC_TEST_SETTING", "NOT_SET_ANYWHERE"]
        .map(String::from)
        .into();
    config.env.insert("EXEC_TEST_SETTING".into(), "42".into());
    let (transport, env) = dump_env(&rig, config).await;
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(!names.contains(&"CARGO_PKG_NAME"), "{names:?}");
    assert!(names.contains(&"CARGO_MANIFEST_DIR"), "{names:?}");
    assert!(env.lines().any(|l| l == "EXEC_TEST_SETTING=42"));
    assert!(format!("{:?}", transport.config()).contains("CARGO_PKG_NAME"));
}

/// Runs the `env.sh` fixture agent under `config` and returns the
/// transport and the environment it saw (`NAME=value` lines).
async fn dump_env(rig: &Rig, config: ExecConfig) -> (ExecTransport, String) {
    let transport = ExecTransport::new(config).unwrap();
    let ack = transport
        .dispatch(&rig.envelope("webster", "dump env", Scope::Top, 1))
        .await
        .unwrap();
    assert!(completion(&ack).0, "{ack:?}");
    let handoff = rig.store.get(&key(Scope::Top)).await.unwrap().unwrap();
    (transport, handoff.result)
}

/// `env_passthrough` lets a variable of `remove_env` through (an agent
/// that needs one of orch's tokens); the others stay removed.
#[tokio::test]
async fn env_passthrough_keeps_a_removed_variable() {
    let rig = Rig::new();
    let mut config = ExecConfig::new(["/bin/sh".to_owned(), fixture("env.sh")]);
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    config.remove_env = ["CARGO_PKG_NAME", "CARGO_MANIFEST_DIR"]
        .map(String::from)
        .into();
    config.env_passthrough = vec!["CARGO_MANIFEST_DIR".into()];
    let (_, env) = dump_env(&rig, config).await;
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(!names.contains(&"CARGO_PKG_NAME"), "{names:?}");
    assert!(names.contains(&"CARGO_MANIFEST_DIR"), "{names:?}");
}

#[tokio::test]
async fn an_exec_agent_reads_the_whole_message_on_stdin() {
    let rig = Rig::new();
    let transport = exec("answer.sh");
    let task = "line one\n\"quoted\" and \\backslashed\\\n\tindented line three";
    let ack = transport
        .dispatch(&rig.envelope("webster", task, Scope::Top, 1))
        .await
        .unwrap();
    assert!(completion(&ack).0, "{ack:?}");
    let handoff = rig.store.get(&key(Scope::Top)).await.unwrap().unwrap();
    assert_eq!(handoff.extra["stdin"], task);
}

#[tokio::test]
async fn a_huge_task_is_cut_in_the_environment_only() {
    let rig = Rig::new();
    let transport = exec("answer.sh");
    let task = "x".repeat(300 * 1024);
    let ack = transport
        .dispatch(&rig.envelope("webster", &task, Scope::Top, 1))
        .await
        .unwrap();
    assert!(completion(&ack).0, "{ack:?}");
    let handoff = rig.store.get(&key(Scope::Top)).await.unwrap().unwrap();
    assert_eq!(
        handoff.extra["stdin"].as_str().map(str::len),
        Some(task.len())
    );
    let vars = variables(&handoff);
    assert_eq!(vars["ORCH_TASK_TRUNCATED"], "1");
    assert_eq!(vars["ORCH_TASK"].len(), 100 * 1024);
}

#[tokio::test]
async fn a_failing_exec_agent_reports_its_exit_status_and_stderr_tail() {
    let rig = Rig::new();
    let mut config = ExecConfig::new(["/bin/sh".to_owned(), fixture("fail.sh")]);
    config.stderr_tail_bytes = 60;
    let transport = ExecTransport::new(config).unwrap();
    let ack = transport
        .dispatch(&rig.envelope("webster", "x", Scope::Top, 1))
        .await
        .unwrap();
    let (ok, detail) = completion(&ack);
    assert!(!ok);
    insta::assert_snapshot!(detail, @r"
    exit status 3; stderr: …97
    noise line 498
    noise line 499
    fatal: no model configured
    ");
    assert!(rig.store.get(&key(Scope::Top)).await.unwrap().is_none());
}

#[tokio::test]
async fn an_exec_agent_may_ignore_its_stdin() {
    let rig = Rig::new();
    let big = "task ".repeat(200_000); // 1 MB: far more than a pipe buffer
    for transport in [
        exec("ignore-stdin.sh"),
        ExecTransport::new(ExecConfig::new(["/bin/sh", "-c", "exit 0"])).unwrap(),
    ] {
        let ack = transport
            .dispatch(&rig.envelope("webster", &big, Scope::Top, 1))
            .await
            .unwrap();
        assert_eq!(completion(&ack), (true, "exit status 0"));
    }
    let handoff = rig.store.get(&key(Scope::Top)).await.unwrap().unwrap();
    assert_eq!(handoff.result, "answered without reading stdin");
}

#[tokio::test]
async fn an_exec_agent_past_its_timeout_is_killed() {
    let rig = Rig::new();
    let transport = exec("sleep.sh");
    let mut envelope = rig.envelope("webster", "x", Scope::Top, 1);
    envelope.timeout = Duration::from_millis(300);
    let ack = transport.dispatch(&envelope).await.unwrap();
    let (ok, detail) = completion(&ack);
    assert!(!ok);
    assert!(
        detail.starts_with("killed after the 300ms timeout (killed by signal 9)"),
        "{detail}"
    );
}

#[tokio::test]
async fn what_an_exec_agent_leaves_running_is_killed_when_it_exits() {
    let rig = Rig::new();
    let cwd = tempfile::tempdir().unwrap();
    let mut config = ExecConfig::new(["/bin/sh".to_owned(), fixture("leftover.sh")]);
    config.cwd = Some(cwd.path().to_owned());
    let transport = ExecTransport::new(config).unwrap();
    let ack = transport
        .dispatch(&rig.envelope("webster", "x", Scope::Top, 1))
        .await
        .unwrap();
    assert_eq!(completion(&ack), (true, "exit status 0"));
    let pid = std::fs::read_to_string(cwd.path().join("leftover.pid")).unwrap();
    wait_until_gone(pid.trim().parse().unwrap()).await;
}

#[tokio::test]
async fn dropping_an_exec_dispatch_kills_the_command_and_its_children() {
    let rig = Rig::new();
    let transport = exec("answer-then-hang.sh");
    let mut sub = rig.store.subscribe(&key(Scope::Top)).await.unwrap();
    let envelope = rig.envelope("webster", "x", Scope::Top, 1);
    let handoff = tokio::select! {
        ack = transport.dispatch(&envelope) => panic!("the command ended on its own: {ack:?}"),
        outcome = sub.wait(Instant::now() + Duration::from_secs(60)) => landed(outcome.unwrap()),
    };
    // The dispatch future is dropped here: the command and its child die.
    let pids = handoff.extra["pids"].as_str().unwrap().to_owned();
    for pid in pids.split_whitespace() {
        wait_until_gone(pid.parse().unwrap()).await;
    }
}

#[tokio::test]
async fn a_missing_exec_command_is_a_config_error() {
    let rig = Rig::new();
    let transport =
        ExecTransport::new(ExecConfig::new(["/nonexistent/orch-test-agent", "--flag"])).unwrap();
    let err = transport
        .dispatch(&rig.envelope("webster", "x", Scope::Top, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
    assert!(!err.is_retryable());
    insta::assert_snapshot!(err, @r#"transport configuration: cannot start command "/nonexistent/orch-test-agent": No such file or directory (os error 2)"#);
}

#[tokio::test]
async fn a_command_that_is_not_executable_is_a_config_error() {
    let rig = Rig::new();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let transport = ExecTransport::new(ExecConfig::new([script.display().to_string()])).unwrap();
    let err = transport
        .dispatch(&rig.envelope("webster", "x", Scope::Top, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
}

/// Waits (at most 10 s) until process `pid` has terminated: `poll(2)` on a
/// pidfd, which becomes readable when the process ends. A process already
/// gone is fine.
async fn wait_until_gone(pid: i32) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    let pid = Pid::from_raw(pid).unwrap();
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return,
        Err(e) => panic!("pidfd_open({pid:?}): {e}"),
    };
    let ready = tokio::task::spawn_blocking(move || {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&timeout)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        ready, 1,
        "process {pid:?} still runs 10 s after it should have been killed"
    );
}

/// Each transport says the limit its config gives (default 256 KiB).
#[test]
fn transports_report_their_configured_task_limit() {
    let rig = Rig::new();
    let default = orch_delegate::DEFAULT_MAX_TASK_BYTES;
    assert_eq!(default, 256 * 1024);
    let sim = SimTransport::new(rig.shared(), SimConfig::default());
    assert_eq!(sim.max_task_bytes(), default);
    let sim = SimTransport::new(
        rig.shared(),
        SimConfig {
            max_task_bytes: 1 << 20,
            ..SimConfig::default()
        },
    );
    assert_eq!(sim.max_task_bytes(), 1 << 20);
    assert_eq!(exec("answer.sh").max_task_bytes(), default);
    let mut config = ExecConfig::new(["/bin/true"]);
    config.max_task_bytes = 4096;
    assert_eq!(ExecTransport::new(config).unwrap().max_task_bytes(), 4096);
}
