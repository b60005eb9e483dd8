//! `orch delegate` through the binary, on the simulated fleet and the exec
//! transport. (The OpenClaw transport is exercised in `openclaw.rs`.)

use crate::{FAST_SIM, Orch, settings};

fn delegate(orch: &Orch, args: &[&str]) -> crate::Run {
    let mut full = vec!["delegate"];
    full.extend_from_slice(args);
    orch.run(&full, None)
}

#[test]
fn embedded_default_delegation_human_and_json() {
    let orch = Orch::new();
    let run = delegate(
        &orch,
        &["webster", "Find CTE of Zerodur", "--caller", "manager"],
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!("human", run.transcript(&orch)));
    let json = delegate(
        &orch,
        &[
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--json",
        ],
    );
    assert_eq!(json.code, 0, "{}", json.transcript(&orch));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["status"], "complete");
    assert_eq!(value["handoff"]["simulated"], true);
    settings().bind(|| insta::assert_snapshot!("json", json.transcript(&orch)));
}

/// Every scripted sim behaviour, end to end, with its exit code.
#[test]
fn sim_behaviours_and_exit_codes() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let cases: &[(&str, &str, i32)] = &[
        ("complete", "Summarise the review", 0),
        ("partial", "[sim:partial] Summarise the review", 10),
        ("blocked", "[sim:blocked] Summarise the review", 11),
        ("failed", "[sim:failed] Summarise the review", 12),
        (
            "low confidence",
            "[sim:low-confidence] Summarise the review",
            0,
        ),
        (
            "malformed twice",
            "[sim:malformed] Summarise the review",
            12,
        ),
        (
            "malformed once",
            "[sim:malformed-once] Summarise the review",
            0,
        ),
        ("silent", "[sim:silent] Summarise the review", 13),
    ];
    let mut transcript = String::new();
    for (name, task, code) in cases {
        let run = delegate(
            &orch,
            &["secretary", task, "--caller", "manager", "--timeout", "2s"],
        );
        assert_eq!(run.code, *code, "{name}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
    let reasked = orch
        .ledger()
        .iter()
        .filter(|e| e["event"] == "reasked")
        .count();
    assert_eq!(
        reasked, 2,
        "one re-ask each for malformed and malformed-once"
    );
}

#[test]
fn acl_denial_sends_nothing() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let run = delegate(&orch, &["auditor", "Audit this", "--caller", "tech-lead"]);
    assert_eq!(run.code, 3, "{}", run.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!(run.transcript(&orch)));
    let events: Vec<String> = orch
        .ledger()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, ["denied"]);
    assert!(
        !orch.store_files().iter().any(|f| f.ends_with(".json")),
        "{:?}",
        orch.store_files()
    );
}

#[test]
fn usage_errors() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let cases: &[(&str, &[&str])] = &[
        ("unknown agent", &["nobody", "x", "--caller", "manager"]),
        ("empty task", &["webster", " ", "--caller", "manager"]),
        (
            "bad parent",
            &["webster", "x", "--caller", "manager", "--parent", "../x"],
        ),
        (
            "unknown parent",
            &[
                "webster",
                "x",
                "--caller",
                "tech-lead",
                "--parent",
                "orch-20260101T000000Z-00000000",
            ],
        ),
        (
            "unknown validator",
            &[
                "webster",
                "x",
                "--caller",
                "manager",
                "--validator",
                "nobody",
            ],
        ),
    ];
    let mut transcript = String::new();
    for (name, args) in cases {
        let run = delegate(&orch, args);
        assert_eq!(run.code, 2, "{name}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn validation_approves_and_rejects() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let ok = delegate(
        &orch,
        &[
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--validate",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.transcript(&orch));
    assert!(ok.stdout.contains("approved by tech-lead"), "{}", ok.stdout);

    let strict = Orch::new();
    strict.write_config(&FAST_SIM.replace(
        "sim: { kind: sim, delay: 20ms, slow_delay: 1h }",
        "sim: { kind: sim, delay: 20ms, slow_delay: 1h, agents: { auditor: failed } }",
    ));
    let rejected = delegate(
        &strict,
        &[
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--validator",
            "auditor",
        ],
    );
    assert_eq!(rejected.code, 12, "{}", rejected.transcript(&strict));
    assert!(
        rejected.stdout.contains("rejected by auditor"),
        "{}",
        rejected.stdout
    );
    let validated: Vec<_> = strict
        .ledger()
        .into_iter()
        .filter(|e| e["event"] == "validated")
        .collect();
    assert_eq!(validated.len(), 1, "{validated:?}");
}

#[test]
fn sub_delegation_lands_in_sub_and_the_depth_limit_stops_a_loop() {
    let orch = Orch::new();
    orch.write_config(
        "
acl: { ping: [pong], pong: [ping], manager: ['*'] }
transports: { sim: { kind: sim, delay: 10ms } }
agents: { ping: { transport: sim }, pong: { transport: sim }, manager: { transport: sim } }
",
    );
    let first = delegate(&orch, &["ping", "start", "--caller", "manager", "--json"]);
    assert_eq!(first.code, 0, "{}", first.transcript(&orch));
    let mut parent = run_id(&first.stdout);
    let mut caller = "ping";
    // manager→ping is depth 0; each hop adds one; the default limit is 3.
    for depth in 1..=3 {
        let target = if caller == "ping" { "pong" } else { "ping" };
        let run = delegate(
            &orch,
            &[
                target, "bounce", "--caller", caller, "--parent", &parent, "--json",
            ],
        );
        assert_eq!(run.code, 0, "depth {depth}: {}", run.transcript(&orch));
        let id = run_id(&run.stdout);
        assert!(
            orch.store()
                .join("sub")
                .join(format!("{id}.json"))
                .is_file()
        );
        parent = id;
        caller = target;
    }
    let target = if caller == "ping" { "pong" } else { "ping" };
    let too_deep = delegate(
        &orch,
        &[target, "bounce", "--caller", caller, "--parent", &parent],
    );
    assert_eq!(too_deep.code, 3, "{}", too_deep.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!(too_deep.transcript(&orch)));

    // The ACL of a sub-delegation is the parent's agent's.
    let wrong_caller = delegate(
        &orch,
        &["pong", "x", "--caller", "manager", "--parent", &parent],
    );
    assert_eq!(wrong_caller.code, 2, "{}", wrong_caller.transcript(&orch));
}

fn run_id(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["runId"].as_str().unwrap().to_owned()
}

/// Agents that are local programs: one writes the handoff file itself, one
/// answers with `orch handoff submit`, one fails without answering.
#[test]
fn exec_agents() {
    let orch = Orch::new();
    let writer = orch.path("writer.sh");
    std::fs::write(
        &writer,
        r#"#!/bin/sh
task=$(cat)
tmp="$ORCH_HANDOFF_PATH.tmp"
printf '{"schemaVersion":"1.0","runId":"%s","agent":"%s","status":"complete","result":"read %s bytes of task","confidence":"medium"}' \
  "$ORCH_RUN_ID" "$ORCH_AGENT" "${#task}" > "$tmp"
mv "$tmp" "$ORCH_HANDOFF_PATH"
"#,
    )
    .unwrap();
    let submitter = orch.path("submitter.sh");
    std::fs::write(
        &submitter,
        r#"#!/bin/sh
scope=""
[ "$ORCH_HANDOFF_SCOPE" = sub ] && scope="--sub"
exec orch handoff submit --run-id "$ORCH_RUN_ID" --agent "$ORCH_AGENT" --status partial \
  --result "caller $ORCH_CALLER, parent run $ORCH_PARENT_RUN" --notes "via orch handoff submit" $scope
"#,
    )
    .unwrap();
    let failer = orch.path("failer.sh");
    std::fs::write(
        &failer,
        "#!/bin/sh\necho 'model quota exhausted' >&2\nexit 3\n",
    )
    .unwrap();
    for script in [&writer, &submitter, &failer] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    orch.write_config(&format!(
        "
agents:
  webster:   {{ transport: {{ kind: exec, command: ['{}'] }} }}
  secretary: {{ transport: {{ kind: exec, command: ['{}'] }} }}
  auditor:   {{ transport: {{ kind: exec, command: ['{}'] }} }}
  manager:   {{ transport: {{ kind: sim }} }}
",
        writer.display(),
        submitter.display(),
        failer.display()
    ));
    let mut transcript = String::new();
    for (agent, code) in [("webster", 0), ("secretary", 10), ("auditor", 12)] {
        let run = orch.run(
            &[
                "delegate",
                agent,
                "Write the minutes",
                "--caller",
                "manager",
                "--timeout",
                "30s",
            ],
            None,
        );
        assert_eq!(run.code, code, "{agent}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {agent}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// Ctrl-C (SIGINT) cancels the delegation: exit 130 and a `cancelled`
/// ledger line after the `dispatched` one.
#[test]
fn ctrl_c_cancels_and_the_ledger_records_it() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let child = orch
        .command()
        .args([
            "delegate",
            "secretary",
            "[sim:silent] wait for me",
            "--caller",
            "manager",
            "--timeout",
            "10m",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt only once the task is out: the ledger's `dispatched` line says so.
    let ledger = orch.store().join("ledger.jsonl");
    let notify = std::time::Instant::now();
    while !std::fs::read_to_string(&ledger).is_ok_and(|t| t.contains("\"dispatched\"")) {
        assert!(notify.elapsed().as_secs() < 60, "never dispatched");
        std::thread::yield_now();
    }
    crate::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<String> = orch
        .ledger()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        events.last().map(String::as_str),
        Some("cancelled"),
        "{events:?}"
    );
}

/// Writes an executable script into the test's directory.
fn script(orch: &Orch, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = orch.path(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An exec agent that reports how much of its task it got on stdin and
/// whether the task's last line arrived.
const COUNTER: &str = r#"#!/bin/sh
task=$(cat)
bytes=$(printf '%s' "$task" | wc -c | tr -d ' ')
case "$task" in *END-OF-TASK*) tail=seen ;; *) tail=missing ;; esac
tmp="$ORCH_HANDOFF_PATH.tmp"
printf '{"schemaVersion":"1.0","runId":"%s","agent":"%s","status":"complete","result":"got %s bytes, end marker %s"}' \
  "$ORCH_RUN_ID" "$ORCH_AGENT" "$bytes" "$tail" > "$tmp"
mv "$tmp" "$ORCH_HANDOFF_PATH"
"#;

/// 300 KB of task lines, then `END-OF-TASK`.
fn big_task() -> String {
    let mut task = String::new();
    while task.len() < 300 * 1024 {
        task.push_str("Measure the CTE of sample 42 between 20 and 80 degrees C.\n");
    }
    task.push_str("END-OF-TASK\n");
    task
}

/// `orch delegate AGENT -` reads all of stdin: a 300 KB task reaches an
/// exec agent whole when its transport allows it.
#[test]
fn a_task_on_stdin_is_read_whole() {
    let orch = Orch::new();
    let counter = script(&orch, "counter.sh", COUNTER);
    orch.write_config(&format!(
        "
agents:
  secretary: {{ transport: {{ kind: exec, command: ['{}'], max_task_bytes: 1048576 }} }}
  manager:   {{ transport: {{ kind: sim }} }}
",
        counter.display()
    ));
    let task = big_task();
    let run = orch.run(
        &[
            "delegate",
            "secretary",
            "-",
            "--caller",
            "manager",
            "--json",
        ],
        Some(task.as_bytes()),
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let result = value["handoff"]["result"].as_str().unwrap();
    assert!(result.ends_with("end marker seen"), "{result}");
    let got: usize = result
        .trim_start_matches("got ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(got > task.len(), "the message holds the whole task: {got}");
}

/// A task over the transport's `max_task_bytes` is refused with its real
/// size (exit 2): from stdin before anything else, and in the delegator
/// for one given on the command line. Nothing reaches the agent.
#[test]
fn a_task_over_the_limit_is_refused_with_its_real_size() {
    let orch = Orch::new();
    let counter = script(&orch, "counter.sh", COUNTER);
    orch.write_config(&format!(
        "
agents:
  secretary: {{ transport: {{ kind: exec, command: ['{0}'] }} }}
  webster:   {{ transport: {{ kind: exec, command: ['{0}'], max_task_bytes: 3000 }} }}
  manager:   {{ transport: {{ kind: sim }} }}
",
        counter.display()
    ));
    let task = big_task();
    let stdin = orch.run(
        &["delegate", "secretary", "-", "--caller", "manager"],
        Some(task.as_bytes()),
    );
    assert_eq!(stdin.code, 2, "{}", stdin.transcript(&orch));
    assert!(
        stdin
            .stderr
            .contains(&format!("the task on stdin is {} bytes", task.len())),
        "{}",
        stdin.stderr
    );
    assert!(orch.ledger().is_empty(), "nothing was asked");

    let argv_task = "Find the CTE of Zerodur. ".repeat(100);
    let argv = orch.run(
        &["delegate", "webster", &argv_task, "--caller", "manager"],
        None,
    );
    assert_eq!(argv.code, 2, "{}", argv.transcript(&orch));
    let ledger = orch.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["event"], "failed");
    assert!(
        !orch.store_files().iter().any(|f| f.ends_with(".json")),
        "the agent never ran: {:?}",
        orch.store_files()
    );
    let mut s = settings();
    // The instructions' size depends on the temp dir's path.
    s.add_filter(
        r"message for webster is \d+ bytes",
        "message for webster is [N] bytes",
    );
    s.add_filter(r"instructions \d+", "instructions [N]");
    s.add_filter(r"delegate webster '[^']+'", "delegate webster '[TASK]'");
    s.bind(|| {
        insta::assert_snapshot!(format!(
            "{}\n{}",
            stdin.transcript(&orch),
            argv.transcript(&orch)
        ))
    });
}

/// Name only files that exist: a silent run names no handoff file, and an
/// invalid answer (the last one too) is moved aside and named there.
#[test]
fn outcomes_name_only_files_that_exist() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let silent = delegate(
        &orch,
        &[
            "secretary",
            "[sim:silent] x",
            "--caller",
            "manager",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(silent.code, 13, "{}", silent.transcript(&orch));
    assert!(
        !silent
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("handoff ")),
        "{}",
        silent.stdout
    );

    let malformed = delegate(
        &orch,
        &[
            "secretary",
            "[sim:malformed] x",
            "--caller",
            "manager",
            "--timeout",
            "5s",
            "--json",
        ],
    );
    assert_eq!(malformed.code, 12, "{}", malformed.transcript(&orch));
    let value: serde_json::Value = serde_json::from_str(&malformed.stdout).unwrap();
    let final_path = value["handoffPath"].as_str().unwrap();
    assert!(
        !std::path::Path::new(final_path).exists(),
        "the invalid answer stayed at {final_path}"
    );
    let rejected: Vec<&str> = value["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 2, "{value}");
    assert!(rejected.iter().all(|p| std::path::Path::new(p).is_file()));
    assert!(rejected[1].ends_with(".json.rejected-2"), "{rejected:?}");
    let shown = orch.run(&["handoff", "show", value["runId"].as_str().unwrap()], None);
    assert_ne!(
        shown.code,
        0,
        "no answer is stored: {}",
        shown.transcript(&orch)
    );
}

/// Exec agents never inherit the variables orch reads its secrets from
/// (the config's `token_env`s and the default names), unless their
/// transport lets one through with `env_passthrough`.
#[test]
fn exec_agents_do_not_inherit_orch_secrets() {
    let orch = Orch::new();
    let dumper = script(
        &orch,
        "dump-env.sh",
        r#"#!/bin/sh
cat >/dev/null
env | sort > "$ORCH_HANDOFF_PATH.env"
orch handoff submit --run-id "$ORCH_RUN_ID" --agent "$ORCH_AGENT" --status complete \
  --result-file "$ORCH_HANDOFF_PATH.env"
"#,
    );
    orch.write_config(&format!(
        "
transports:
  gateway: {{ kind: openclaw, url: 'http://127.0.0.1:9', token_env: TEAM_GW_TOKEN }}
  other:   {{ kind: openclaw, url: 'http://127.0.0.1:9', token_env: OTHER_GW_TOKEN }}
  dump:    {{ kind: exec, command: ['{0}'] }}
  dump-gw: {{ kind: exec, command: ['{0}'], env_passthrough: [OTHER_GW_TOKEN] }}
discord: {{ token_env: TEAM_DISCORD }}
agents:
  webster:   {{ transport: gateway }}
  tech-lead: {{ transport: other }}
  secretary: {{ transport: dump }}
  auditor:   {{ transport: dump-gw }}
  manager:   {{ transport: {{ kind: sim }} }}
",
        dumper.display()
    ));
    let secrets = [
        ("OPENCLAW_HOOKS_TOKEN", "s3cret-hooks"),
        ("DISCORD_BOT_TOKEN", "s3cret-discord"),
        ("NATS_TOKEN", "s3cret-nats"),
        ("TEAM_GW_TOKEN", "s3cret-team-gw"),
        ("TEAM_DISCORD", "s3cret-team-discord"),
        ("OTHER_GW_TOKEN", "s3cret-other-gw"),
        ("HARMLESS_SETTING", "kept"),
    ];
    let env_of = |agent: &str| -> String {
        let run = orch.run_env(
            &[
                "delegate", agent, "dump env", "--caller", "manager", "--json",
            ],
            None,
            &secrets,
        );
        assert_eq!(run.code, 0, "{}", run.transcript(&orch));
        let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        value["handoff"]["result"].as_str().unwrap().to_owned()
    };
    let plain = env_of("secretary");
    for (var, value) in &secrets[..6] {
        assert!(!plain.contains(value), "{var} inherited:\n{plain}");
    }
    assert!(plain.contains("HARMLESS_SETTING=kept"), "{plain}");
    assert!(plain.contains("ORCH_RUN_ID="), "{plain}");
    let passed = env_of("auditor");
    assert!(
        passed.contains("OTHER_GW_TOKEN=s3cret-other-gw"),
        "{passed}"
    );
    assert!(!passed.contains("s3cret-team-gw"), "{passed}");
}
