//! `orch context` and `orch delegate --channel-context` against a local fake
//! Discord REST server (orch_discord::testing).

use std::collections::BTreeMap;

use orch_discord::testing::{FakeDiscord, FakeDiscordOptions};

use crate::{Orch, settings};

const TOKEN: &str = "discord-e2e-token-5d1e";
const CHANNEL: &str = "1183729461029384756";

async fn discord() -> FakeDiscord {
    let mut channels = BTreeMap::new();
    channels.insert(
        CHANNEL.to_owned(),
        FakeDiscord::generate_messages(30, 1183729461029384000),
    );
    FakeDiscord::start(FakeDiscordOptions {
        token: TOKEN.to_owned(),
        channels,
        ..FakeDiscordOptions::default()
    })
    .await
    .expect("fake discord")
}

/// webster answers through a script that keeps the task it was given.
fn setup(discord: &FakeDiscord) -> Orch {
    let orch = Orch::new();
    let script = orch.path("keep-task.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat > \"$CAPTURE\"\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status complete --result summarised\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    orch.write_config(&format!(
        "
discord: {{ base_url: '{url}' }}
channels: {{ technical: '{CHANNEL}' }}
agents:
  webster:
    transport: {{ kind: exec, command: ['{script}'], env: {{ CAPTURE: '{capture}' }} }}
    role: research
    channels: [technical]
  manager: {{ transport: {{ kind: sim }} }}
",
        url = discord.url(),
        script = script.display(),
        capture = orch.path("task.txt").display(),
    ));
    orch
}

fn run(orch: &Orch, args: &[&str], token: Option<&str>) -> crate::Run {
    let env: Vec<(&str, &str)> = token
        .map(|t| ("DISCORD_BOT_TOKEN", t))
        .into_iter()
        .collect();
    let run = orch.run_env(args, None, &env);
    run.assert_hides(orch, TOKEN);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_prints_the_newest_messages_oldest_first() {
    let discord = discord().await;
    let orch = setup(&discord);
    let by_name = run(
        &orch,
        &["context", "technical", "--messages", "5"],
        Some(TOKEN),
    );
    assert_eq!(by_name.code, 0, "{}", by_name.transcript(&orch));
    let by_id = run(&orch, &["context", CHANNEL, "--messages", "5"], Some(TOKEN));
    assert_eq!(by_id.code, 0, "{}", by_id.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!(by_name.transcript(&orch)));
    assert!(discord.requests().iter().all(|r| r.auth_valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegate_attaches_the_channel_context_to_the_task() {
    let discord = discord().await;
    let orch = setup(&discord);
    let run = run(
        &orch,
        &[
            "delegate",
            "webster",
            "Summarise the thread",
            "--caller",
            "manager",
            "--channel-context",
            "technical",
            "--channel-messages",
            "3",
        ],
        Some(TOKEN),
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let task = std::fs::read_to_string(orch.path("task.txt")).unwrap();
    let context = run_context(&orch);
    assert!(
        task.contains(context.trim_end()),
        "task:\n{task}\ncontext:\n{context}"
    );
}

fn run_context(orch: &Orch) -> String {
    run(
        orch,
        &["context", "technical", "--messages", "3"],
        Some(TOKEN),
    )
    .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_problems_say_what_to_fix() {
    let discord = discord().await;
    let orch = setup(&discord);
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("no token", &["context", "technical"], None),
        (
            "wrong token",
            &["context", "technical"],
            Some("wrong-token"),
        ),
        ("unknown channel name", &["context", "random"], Some(TOKEN)),
        (
            "unknown channel id",
            &["context", "1000000000000000001"],
            Some(TOKEN),
        ),
    ];
    let mut transcript = String::new();
    for (name, args, token) in cases {
        let r = run(&orch, args, *token);
        assert_eq!(r.code, 2, "{name}: {}", r.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", r.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}
