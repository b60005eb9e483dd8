//! NATS store vs file store, in the same run (DESIGN §10, §11), on a
//! multi-thread tokio runtime with 2 workers:
//!
//! 1. N (default 1,000) concurrent delegations through the simulated fleet
//!    (`orch-delegate`'s `Delegator` + `SimTransport`, answers after
//!    `--delay-ms`, default 50): wall time, and zero lost (every outcome a
//!    valid handoff), zero duplicated (N distinct run ids, N handoffs listed,
//!    N `handoff` ledger lines).
//! 2. Detection latency, put → waiter woken: N waiters subscribed at once,
//!    then another handle (another process's connection or file handle)
//!    puts the N handoffs one after the other; each latency runs from just
//!    before the `put` call to the moment its waiter's `wait` returned.
//!    p50/p99/max, and the `put` call itself for reference (the file
//!    store's includes two fsyncs; the NATS put waits for JetStream's ack).
//!
//! The NATS server is started here (`testing::NatsServer`: loopback,
//! JetStream in a temp dir); without `nats-server` the bench says so and
//! measures nothing.
//!
//! Run: `cargo bench -p orch-delegate --bench nats [-- --n N --delay-ms MS]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_delegate::orch_acl::Policy;
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, End, Request};
use orch_handoff::testing::NatsServer;
use orch_handoff::{
    FsStore, FsStoreConfig, Handoff, HandoffKey, HandoffStore, LedgerEventKind, NatsStore,
    NatsStoreConfig, PutMode, RunId, Scope, Status, WaitOutcome,
};
use tokio_util::sync::CancellationToken;

const AGENTS: [&str; 7] = [
    "tech-lead",
    "webster",
    "nx-expert",
    "study-builder",
    "secretary",
    "optimizer",
    "auditor",
];

fn main() {
    let mut n = 1_000usize;
    let mut delay_ms = 50u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--n" => n = value().unwrap_or(n as u64) as usize,
            "--delay-ms" => delay_ms = value().unwrap_or(delay_ms),
            _ => {} // cargo bench passes `--bench`
        }
    }
    println!("orch-delegate bench nats: NATS store vs file store");
    let Some(server) = NatsServer::start() else {
        println!(
            "  nats-server is not installed: nothing measured (apt-get install -y nats-server)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "  machine: {} cores; runtime: multi-thread, 2 workers; nats-server on {} (JetStream, file storage in {}); file store in {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        server.url(),
        server.dir().display(),
        dir.path().display(),
    );
    runtime.block_on(async {
        println!();
        println!(
            "1. {n} concurrent delegations through the sim fleet (delay {delay_ms} ms, {} agents)",
            AGENTS.len()
        );
        let delay = Duration::from_millis(delay_ms);
        let fs = Stores::fs(&dir.path().join("delegations"));
        delegations("file", &fs, n, delay).await;
        let nats = Stores::nats(&server, "delegations").await;
        delegations("NATS", &nats, n, delay).await;

        println!();
        println!(
            "2. detection latency, put → waiter woken ({n} waiters, puts from another handle)"
        );
        let fs = Stores::fs(&dir.path().join("detection"));
        detection("file", &fs, n).await;
        let nats = Stores::nats(&server, "detection").await;
        detection("NATS", &nats, n).await;
    });
}

/// The caller's store and another handle on it ("another host").
struct Stores {
    caller: Arc<dyn HandoffStore>,
    agent: Arc<dyn HandoffStore>,
}

impl Stores {
    fn fs(root: &std::path::Path) -> Self {
        let open = || Arc::new(FsStore::open(FsStoreConfig::new(root)).unwrap());
        Self {
            caller: open(),
            agent: open(),
        }
    }

    async fn nats(server: &NatsServer, bucket: &str) -> Self {
        let open = || async {
            let mut config = NatsStoreConfig::new(server.url());
            config.bucket = bucket.to_owned();
            Arc::new(NatsStore::connect(config).await.unwrap())
        };
        Self {
            caller: open().await,
            agent: open().await,
        }
    }
}

async fn delegations(name: &str, stores: &Stores, n: usize, delay: Duration) {
    let store = Arc::clone(&stores.caller);
    // The sim fleet answers through the other handle, as a remote agent would.
    let sim = Arc::new(SimTransport::new(
        Arc::clone(&stores.agent),
        SimConfig {
            delay,
            ..SimConfig::default()
        },
    ));
    let agents = AGENTS
        .iter()
        .map(|id| AgentEntry::new(*id, sim.clone()))
        .collect();
    let delegator = Arc::new(
        Delegator::new(
            Arc::clone(&store),
            Policy::atomizer_default(),
            agents,
            DelegatorConfig::default(),
        )
        .unwrap(),
    );
    let token = CancellationToken::new();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let delegator = Arc::clone(&delegator);
        let token = token.clone();
        let agent = AGENTS[i % AGENTS.len()];
        tasks.spawn(async move {
            let mut request = Request::new(agent, format!("bench task {i}"), "manager");
            request.timeout = Duration::from_secs(300);
            delegator.delegate(request, &token).await
        });
    }
    let (mut ok, mut lost, mut errors) = (0, 0, 0);
    let mut ids = HashSet::with_capacity(n);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(o) if o.end == End::Handoff && o.handoff.is_some() => {
                ok += 1;
                ids.insert(o.run_id.clone());
            }
            Ok(_) => lost += 1,
            Err(e) => {
                errors += 1;
                eprintln!("   {name}: {e}");
            }
        }
    }
    let wall = t0.elapsed();
    let listed = store.list(Scope::Top).await.unwrap().len();
    let ledger = store.read_ledger().await.unwrap();
    let handoff_lines = ledger
        .events
        .iter()
        .filter(|e| e.event == LedgerEventKind::Handoff)
        .count();
    let duplicated = (handoff_lines + listed).saturating_sub(2 * ids.len());
    println!(
        "   {name:>4} store: wall {:>8.1} ms; {ok} ok, {lost} lost, {errors} errors, {duplicated} duplicated \
         ({} distinct run ids, {listed} handoffs listed, {handoff_lines} handoff ledger lines) {}",
        ms(wall),
        ids.len(),
        if ok == n && ids.len() == n && listed == n && handoff_lines == n {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

async fn detection(name: &str, stores: &Stores, n: usize) {
    let ids: Vec<RunId> = (0..n)
        .map(|i| RunId::new(format!("orch-detect-{i:05}")).unwrap())
        .collect();
    let mut waiters = Vec::with_capacity(n);
    for id in &ids {
        let key = HandoffKey::top(id.clone());
        // Subscribed before any put, as a delegator does before dispatch.
        let mut sub = stores.caller.subscribe(&key).await.unwrap();
        waiters.push(tokio::spawn(async move {
            let outcome = sub
                .wait(tokio::time::Instant::now() + Duration::from_secs(120))
                .await
                .unwrap();
            (Instant::now(), outcome)
        }));
    }
    let mut started = Vec::with_capacity(n);
    let mut put_times = Vec::with_capacity(n);
    for id in &ids {
        let handoff = Handoff::new(id.clone(), "webster", Status::Complete, "detected");
        let t0 = Instant::now();
        stores
            .agent
            .put(Scope::Top, &handoff, PutMode::Create)
            .await
            .unwrap();
        put_times.push(t0.elapsed());
        started.push(t0);
    }
    let mut latencies = Vec::with_capacity(n);
    let mut lost = 0;
    for (waiter, t0) in waiters.into_iter().zip(started) {
        let (woken, outcome) = waiter.await.unwrap();
        match outcome {
            WaitOutcome::Landed(_) => latencies.push(woken.saturating_duration_since(t0)),
            _ => lost += 1,
        }
    }
    latencies.sort_unstable();
    put_times.sort_unstable();
    println!(
        "   {name:>4} store: detection p50 {:>7.1} µs, p99 {:>7.1} µs, max {:>8.1} µs; put call p50 {:>7.1} µs; {lost} lost",
        us(pct(&latencies, 50.0)),
        us(pct(&latencies, 99.0)),
        us(latencies.last().copied().unwrap_or_default()),
        us(pct(&put_times, 50.0)),
    );
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
