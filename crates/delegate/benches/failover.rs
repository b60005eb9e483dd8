//! The NATS store on a 3-node JetStream cluster losing a node (issue 13;
//! DESIGN §10), on a multi-thread tokio runtime with 2 workers:
//!
//! 1. Delegation latency with every node up, one delegation at a time
//!    through the sim fleet (instant agents answering through a second
//!    connection): p50/p99 on a single server vs on the cluster (R3).
//! 2. A leader kill under load: 4 delegation loops run for `--secs`
//!    (default 20); after 3 s the leader of the handoff bucket's stream is
//!    killed with SIGKILL. Delegations failed (goal 0), latency p50/p99/max
//!    before and after the kill, lost or duplicated handoffs (goal 0).
//! 3. How long a waiter stays blind: 40 waiters, one key each; a writer
//!    on another connection puts one handoff every 250 ms, through a kill
//!    of the stream leader. For each, from the put's ack to its waiter
//!    waking: max (goal < 5 s), p99, and the time from the kill to the new
//!    stream leader (the cluster's own election).
//!
//! Run: `cargo bench -p orch-delegate --bench failover [-- --n N --secs S]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use orch_delegate::orch_acl::Policy;
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, End, Request};
use orch_handoff::testing::{NatsCluster, NatsServer};
use orch_handoff::{
    Handoff, HandoffKey, HandoffStore, NatsStore, NatsStoreConfig, PutMode, RunId, Scope, Status,
    WaitOutcome,
};
use tokio_util::sync::CancellationToken;

const AGENTS: [&str; 3] = ["tech-lead", "webster", "auditor"];

fn main() {
    let mut n = 200usize;
    let mut secs = 20u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--n" => n = value().unwrap_or(n as u64) as usize,
            "--secs" => secs = value().unwrap_or(secs),
            _ => {} // cargo bench passes `--bench`
        }
    }
    println!("orch-delegate bench failover: the NATS store through a failover");
    let Some(server) = NatsServer::start() else {
        println!("  nats-server is not installed: nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "  machine: {} cores; runtime: multi-thread, 2 workers; nats-server {} on loopback",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        nats_version()
    );
    runtime.block_on(async {
        println!();
        println!("1. {n} delegations one at a time, every node up (sim fleet, instant agents)");
        let single = Fleet::open(&server.url(), &server.url(), 1, "latency").await;
        let (p50, p99) = sequential(&single, n).await;
        println!("   single server:    p50 {p50:>7.2} ms, p99 {p99:>7.2} ms");
        let cluster = NatsCluster::start(3).unwrap();
        let fleet = Fleet::open(&cluster.urls(), &cluster.urls(), 3, "latency").await;
        let (p50, p99) = sequential(&fleet, n).await;
        println!("   3-node cluster R3: p50 {p50:>7.2} ms, p99 {p99:>7.2} ms");
        drop(fleet);
        drop(cluster);

        println!();
        println!("2. 4 delegation loops for {secs} s; the bucket stream's leader killed (SIGKILL) after 3 s");
        under_kill(secs).await;

        println!();
        println!("3. 40 waiters; a handoff put every 250 ms from another connection, through a leader kill");
        blind().await;
    });
}

fn nats_version() -> String {
    let Some(binary) = NatsServer::binary() else {
        return "?".into();
    };
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn open(urls: &str, replicas: usize, bucket: &str) -> Arc<NatsStore> {
    let mut config = NatsStoreConfig::new(urls);
    config.bucket = bucket.to_owned();
    config.replicas = replicas;
    Arc::new(NatsStore::connect(config).await.unwrap())
}

/// A caller's store and delegator; the sim agents answer through another
/// connection (`agent_urls`), as a remote agent would.
struct Fleet {
    store: Arc<NatsStore>,
    delegator: Arc<Delegator>,
}

impl Fleet {
    async fn open(urls: &str, agent_urls: &str, replicas: usize, bucket: &str) -> Self {
        let store = open(urls, replicas, bucket).await;
        let agent = open(agent_urls, replicas, bucket).await;
        let sim = Arc::new(SimTransport::new(
            agent as Arc<dyn HandoffStore>,
            SimConfig {
                delay: Duration::ZERO,
                ..SimConfig::default()
            },
        ));
        let agents = AGENTS
            .iter()
            .map(|id| AgentEntry::new(*id, sim.clone()))
            .collect();
        let delegator = Arc::new(
            Delegator::new(
                Arc::clone(&store) as Arc<dyn HandoffStore>,
                Policy::atomizer_default(),
                agents,
                DelegatorConfig::default(),
            )
            .unwrap(),
        );
        Self { store, delegator }
    }

    /// One delegation: its latency, or what went wrong.
    async fn delegate(&self, i: usize) -> Result<(Duration, RunId), String> {
        let mut request = Request::new(AGENTS[i % AGENTS.len()], format!("task {i}"), "manager");
        request.timeout = Duration::from_secs(60);
        let t = Instant::now();
        match self
            .delegator
            .delegate(request, &CancellationToken::new())
            .await
        {
            Ok(o) if o.end == End::Handoff && o.handoff.is_some() => Ok((t.elapsed(), o.run_id)),
            Ok(o) => Err(format!("ended {:?}", o.end)),
            Err(e) => Err(e.to_string()),
        }
    }
}

async fn sequential(fleet: &Fleet, n: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        times.push(fleet.delegate(i).await.unwrap().0);
    }
    times.sort();
    (ms(percentile(&times, 0.5)), ms(percentile(&times, 0.99)))
}

async fn under_kill(secs: u64) {
    let mut cluster = NatsCluster::start(3).unwrap();
    let fleet = Arc::new(Fleet::open(&cluster.urls(), &cluster.urls(), 3, "kill").await);
    let leader = cluster
        .stream_leader("KV_kill", None, Duration::from_secs(10))
        .unwrap();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut loops = tokio::task::JoinSet::new();
    for l in 0..4 {
        let fleet = Arc::clone(&fleet);
        loops.spawn(async move {
            let mut out = Vec::new();
            let mut i = l;
            while Instant::now() < end {
                let began = Instant::now();
                out.push((began, fleet.delegate(i).await));
                i += 4;
            }
            out
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    let killer = tokio::task::spawn_blocking(move || {
        cluster.kill(&leader);
        let new = cluster.stream_leader("KV_kill", Some(&leader), Duration::from_secs(60));
        (cluster, leader, new, Instant::now())
    });
    let mut results = Vec::new();
    while let Some(r) = loops.join_next().await {
        results.extend(r.unwrap());
    }
    let (_cluster, old, new, elected_at) = killer.await.unwrap();
    let (mut before, mut after, mut failed, mut ids) = (vec![], vec![], vec![], HashSet::new());
    let mut window = Vec::new();
    for (began, r) in &results {
        match r {
            Ok((d, id)) => {
                ids.insert(id.clone());
                // In flight at the kill, or started before the new leader.
                if *began + *d >= killed_at && *began <= elected_at {
                    window.push(*d);
                }
                if *began < killed_at {
                    before.push(*d)
                } else {
                    after.push(*d)
                }
            }
            Err(e) => failed.push(e.clone()),
        }
    }
    before.sort();
    after.sort();
    window.sort();
    let listed = fleet.store.list(Scope::Top).await.unwrap().len();
    println!(
        "   leader {old} killed at {:.1} s; new stream leader {} after {:.1} s",
        ms(killed_at - start) / 1e3,
        new.as_deref().unwrap_or("(none)"),
        ms(elected_at - killed_at) / 1e3
    );
    println!(
        "   {} delegations: {} failed (goal 0){}; {} distinct run ids, {listed} handoffs stored ({})",
        results.len(),
        failed.len(),
        failed
            .first()
            .map(|e| format!(", e.g. {e}"))
            .unwrap_or_default(),
        ids.len(),
        if listed == ids.len() && ids.len() == results.len() - failed.len() {
            "0 lost, 0 duplicated"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "   latency before the kill: p50 {:.1} ms, p99 {:.1} ms ({} delegations)",
        ms(percentile(&before, 0.5)),
        ms(percentile(&before, 0.99)),
        before.len()
    );
    println!(
        "   latency after the kill:  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} delegations)",
        ms(percentile(&after, 0.5)),
        ms(percentile(&after, 0.99)),
        ms(after.last().copied().unwrap_or_default()),
        after.len()
    );
    println!(
        "   in flight during the election: {} delegations, p50 {:.1} ms, p99 {:.1} ms (the extra latency is the election)",
        window.len(),
        ms(percentile(&window, 0.5)),
        ms(percentile(&window, 0.99)),
    );
    println!(
        "   {}",
        if failed.is_empty() {
            "PASS: no command failed"
        } else {
            "FAIL: commands failed"
        }
    );
}

async fn blind() {
    let mut cluster = NatsCluster::start(3).unwrap();
    let waiters_store = open(&cluster.urls(), 3, "blind").await;
    let leader = cluster
        .stream_leader("KV_blind", None, Duration::from_secs(10))
        .unwrap();
    let survivor = cluster.names().into_iter().find(|n| *n != leader).unwrap();
    let writer = open(&cluster.url(&survivor), 3, "blind").await;
    let n = 40;
    let mut waits = tokio::task::JoinSet::new();
    for i in 0..n {
        let key = HandoffKey::top(RunId::new(format!("blind-{i}")).unwrap());
        let mut sub = waiters_store.subscribe(&key).await.unwrap();
        waits.spawn(async move {
            let outcome = sub
                .wait(tokio::time::Instant::now() + Duration::from_secs(120))
                .await;
            (i, Instant::now(), outcome)
        });
    }
    let killed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let kill_flag = Arc::clone(&killed);
    let killer = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        let at = Instant::now();
        cluster.kill(&leader);
        kill_flag.store(true, Ordering::Release);
        let new = cluster.stream_leader("KV_blind", Some(&leader), Duration::from_secs(60));
        (cluster, at, new, Instant::now())
    });
    let mut acked = vec![None; n];
    for (i, slot) in acked.iter_mut().enumerate() {
        let h = Handoff::new(
            RunId::new(format!("blind-{i}")).unwrap(),
            "webster",
            Status::Complete,
            "ok",
        );
        writer.put(Scope::Top, &h, PutMode::Create).await.unwrap();
        *slot = Some(Instant::now());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut blind = Vec::new();
    let mut landed = 0;
    while let Some(r) = waits.join_next().await {
        let (i, seen, outcome) = r.unwrap();
        if matches!(outcome, Ok(WaitOutcome::Landed(_))) {
            landed += 1;
        }
        blind.push(seen.saturating_duration_since(acked[i].unwrap()));
    }
    let (_cluster, killed_at, new, elected_at) = killer.await.unwrap();
    blind.sort();
    println!(
        "   killed at {:.1} s; new stream leader {} after {:.1} s (the cluster's election)",
        ms(killed_at - start) / 1e3,
        new.as_deref().unwrap_or("(none)"),
        ms(elected_at - killed_at) / 1e3
    );
    println!(
        "   {landed}/{n} waiters woken with their handoff; put ack → waiter woken: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&blind, 0.5)),
        ms(percentile(&blind, 0.99)),
        ms(blind.last().copied().unwrap_or_default())
    );
    let longest = blind.last().copied().unwrap_or_default();
    println!(
        "   {}",
        if landed == n && longest < Duration::from_secs(5) {
            "PASS: no waiter blind for 5 s or more"
        } else {
            "FAIL"
        }
    );
}
