//! The CLI on a 3-node JetStream cluster (`testing::NatsCluster`) that
//! loses the leader of the handoff bucket's stream (`kill -9`) mid-work:
//! delegations (sim agents, and exec agents answering from a host whose
//! config names one surviving node) all succeed, none lost or duplicated; a
//! waiter sees a handoff that lands during the failover; the killed node
//! restarts and a workflow running across all of it completes.

use orch_handoff::prelude::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use orch_handoff::testing::NatsCluster;
use orch_handoff::{HandoffKey, LedgerEventKind, NatsStore, NatsStoreConfig, RunId};

use crate::{Orch, Run};

const BUCKET: &str = "e2e";

/// The caller's host: every node in `store.url`, buckets with 3 replicas,
/// sim agents and one exec agent (`secretary`) whose command runs in
/// `agent_dir` with no `ORCH_STORE`, so it answers through the config
/// there.
fn caller_config(urls: &str, agent: &str, agent_dir: &str) -> String {
    format!(
        "store:
  kind: nats
  url: '{urls}'
  bucket: {BUCKET}
  replicas: 3
transports:
  sim: {{ kind: sim, delay: 20ms, slow_delay: 1h }}
  slow: {{ kind: sim, delay: 2s }}
agents:
  manager:   {{ transport: sim }}
  webster:   {{ transport: sim }}
  tech-lead: {{ transport: slow }}
  secretary: {{ transport: {{ kind: exec, command: ['{agent}'], cwd: '{agent_dir}', env: {{ ORCH_STORE: '' }} }} }}
"
    )
}

/// Another host: its config names one node only.
fn agent_config(url: &str) -> String {
    format!("store:\n  kind: nats\n  url: '{url}'\n  bucket: {BUCKET}\n")
}

struct Fleet {
    cluster: NatsCluster,
    here: Orch,
    there: Orch,
    /// The node leading the handoff bucket's stream.
    leader: String,
}

/// A cluster, the two hosts, and the buckets created (by a first
/// delegation), so the bucket stream's leader is known; the agent host
/// names a node other than that leader.
fn fleet() -> Option<Fleet> {
    let cluster = NatsCluster::start(3)?;
    let here = Orch::new();
    let there = Orch::new();
    let agent = here.path("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/sh\ncat > /dev/null\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status complete --confidence high --result \"filed by the exec agent\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    here.write_config(&caller_config(
        &cluster.urls(),
        &agent.display().to_string(),
        &there.path("").display().to_string(),
    ));
    let first = delegate(&here, "webster");
    assert_eq!(first.code, 0, "{}", first.transcript(&here));
    let leader = cluster
        .stream_leader(&format!("KV_{BUCKET}"), None, Duration::from_secs(10))
        .expect("a leader of the bucket's stream");
    let survivor = cluster.names().into_iter().find(|n| *n != leader).unwrap();
    there.write_config(&agent_config(&cluster.url(&survivor)));
    Some(Fleet {
        cluster,
        here,
        there,
        leader,
    })
}

fn command(orch: &Orch, args: &[&str]) -> std::process::Command {
    let mut cmd = orch.command();
    cmd.env_remove("ORCH_HANDOFF_DIR")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn spawn(orch: &Orch, args: &[&str]) -> Child {
    command(orch, args).spawn().expect("spawn orch")
}

fn finish(orch: &Orch, args: &[&str], child: Child) -> Run {
    orch.finish(args, child.wait_with_output().expect("wait for orch"))
}

const DELEGATE: [&str; 4] = ["delegate", "AGENT", "Find the CTE of Zerodur", "--caller"];

fn delegate_args(agent: &str) -> Vec<&str> {
    let mut args: Vec<&str> = DELEGATE.to_vec();
    args[1] = agent;
    args.extend(["manager", "--json", "--timeout", "60s"]);
    args
}

fn delegate(orch: &Orch, agent: &str) -> Run {
    let args = delegate_args(agent);
    finish(orch, &args, spawn(orch, &args))
}

/// The caller's view of the store, read directly (on `rt`).
fn store(rt: &tokio::runtime::Runtime, cluster: &NatsCluster) -> NatsStore {
    let mut config = NatsStoreConfig::new(cluster.urls());
    config.bucket = BUCKET.into();
    rt.block_on(NatsStore::connect(config)).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_hundred_delegations_ride_out_the_loss_of_the_leader() {
    let Some(mut fleet) = fleet() else {
        return;
    };
    let mut runs: Vec<(String, Run)> = Vec::new();
    // Ten waves of ten concurrent delegations, half to the exec agent; the
    // leader dies as the fourth wave starts.
    for wave in 0..10 {
        let children: Vec<(&str, Child)> = (0..10)
            .map(|i| {
                let agent = if i % 2 == 0 { "webster" } else { "secretary" };
                (agent, spawn(&fleet.here, &delegate_args(agent)))
            })
            .collect();
        if wave == 3 {
            fleet.cluster.kill(&fleet.leader);
        }
        for (agent, child) in children {
            let run = finish(&fleet.here, &delegate_args(agent), child);
            assert_eq!(run.code, 0, "{}", run.transcript(&fleet.here));
            runs.push((agent.to_owned(), run));
        }
    }

    // Each delegation's handoff is in the store, from the agent it went to,
    // and the ledger holds exactly one dispatch of each.
    let ids: Vec<RunId> = runs
        .iter()
        .map(|(_, run)| {
            let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            assert_eq!(out["status"], "complete", "{out}");
            RunId::new(out["runId"].as_str().unwrap()).unwrap()
        })
        .collect();
    let rt = runtime();
    let store = store(&rt, &fleet.cluster);
    for ((agent, _), id) in runs.iter().zip(&ids) {
        let handoff = rt
            .block_on(store.get(&HandoffKey::top(id.clone())))
            .unwrap()
            .unwrap();
        assert_eq!(&handoff.agent, agent);
    }
    let ledger = rt.block_on(store.read_ledger()).unwrap();
    let mut dispatches: BTreeMap<RunId, usize> = BTreeMap::new();
    for event in &ledger.events {
        if event.event == LedgerEventKind::Dispatched
            && let Some(id) = &event.run_id
        {
            *dispatches.entry(id.clone()).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(dispatches.get(id), Some(&1), "{id}: {dispatches:?}");
    }
    assert_eq!(dispatches.len(), ids.len() + 1, "and the first delegation");
}

#[test]
fn a_waiter_and_a_workflow_see_the_failover_and_the_restart_through() {
    let Some(mut fleet) = fleet() else {
        return;
    };
    std::fs::write(
        fleet.here.path("long.yaml"),
        "name: long\nsteps:\n  - id: a\n    agent: tech-lead\n    task: step a\n  - id: b\n    agent: tech-lead\n    task: step b\n    needs: [a]\n  - id: c\n    agent: tech-lead\n    task: step c\n    needs: [b]\n  - id: d\n    agent: tech-lead\n    task: step d\n    needs: [c]\n  - id: e\n    agent: tech-lead\n    task: step e\n    needs: [d]\n  - id: f\n    agent: tech-lead\n    task: step f\n    needs: [e]\n  - id: g\n    agent: tech-lead\n    task: step g\n    needs: [f]\n  - id: h\n    agent: tech-lead\n    task: step h\n    needs: [g]\n",
    )
    .unwrap();
    let wf_args = [
        "workflow",
        "long.yaml",
        "--caller",
        "manager",
        "--non-interactive",
        "--json",
    ];
    let workflow = spawn(&fleet.here, &wf_args);
    let waited = "orch-20261202T060000Z-0badc0de";
    // Its own deadline bounds it: a waiter left blind by the failover would
    // come back only then, with exit 4.
    let wait_args = ["handoff", "wait", waited, "--timeout", "40s"];
    let waiter = spawn(&fleet.here, &wait_args);

    fleet.cluster.kill(&fleet.leader);
    let submit_args = [
        "handoff",
        "submit",
        "--run-id",
        waited,
        "--agent",
        "webster",
        "--status",
        "complete",
        "--result",
        "answered during the failover",
        "--unsolicited",
    ];
    let submitted = finish(
        &fleet.there,
        &submit_args,
        spawn(&fleet.there, &submit_args),
    );
    assert_eq!(submitted.code, 0, "{}", submitted.transcript(&fleet.there));
    let waited_run = finish(&fleet.here, &wait_args, waiter);
    assert_eq!(waited_run.code, 0, "{}", waited_run.transcript(&fleet.here));
    assert!(waited_run.stdout.contains("answered during the failover"));

    // The node comes back while the workflow still runs (eight steps of
    // 2 s each, one after the other).
    let mut workflow = workflow;
    assert!(
        workflow.try_wait().unwrap().is_none(),
        "the workflow ended before the restart"
    );
    fleet.cluster.restart(&fleet.leader);
    let done = finish(&fleet.here, &wf_args, workflow);
    assert_eq!(done.code, 0, "{}", done.transcript(&fleet.here));
    let summary: serde_json::Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(summary["status"], "completed", "{summary}");
    let status = command(
        &fleet.there,
        &[
            "workflow",
            "status",
            summary["runId"].as_str().unwrap(),
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}
