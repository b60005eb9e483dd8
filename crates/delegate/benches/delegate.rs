//! Delegator benchmarks (DESIGN §11), on a multi-thread tokio runtime with
//! 2 workers and one `FsStore` in a temp dir:
//!
//! 1. N (default 10,000) concurrent delegations through the simulated fleet
//!    (`SimTransport`): wall time, peak RSS (`VmHWM`), peak waiters in
//!    flight, zero lost (every outcome has a valid handoff), zero
//!    duplicated (N distinct run ids and N files), one watcher.
//! 2. Engine overhead per delegation, sequentially (default 2,000 runs):
//!    `delegate()` latency p50/p99 with a zero-delay sim agent (its answer
//!    is a fsynced atomic write), with an instant in-bench agent that
//!    renames its file into place without fsync (closest to the engine's
//!    own cost: ACL, subscribe, ledger lines, message, detection), and the
//!    bare `store.put` an agent pays, for reference.
//!
//! Run: `cargo bench -p orch-delegate --bench delegate [-- --n N --seq N --delay-ms MS]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{
    Confidence, FsStore, FsStoreConfig, Handoff, HandoffKey, HandoffStore, LedgerEventKind,
    PutMode, Scope, Status,
};
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{
    Ack, AgentEntry, Delegator, DelegatorConfig, End, Envelope, Request, Transport, TransportError,
};
use tokio_util::sync::CancellationToken;

const AGENTS: [&str; 8] = [
    "tech-lead",
    "webster",
    "nx-expert",
    "study-builder",
    "secretary",
    "optimizer",
    "auditor",
    "researcher",
];

fn main() {
    let mut n = 10_000usize;
    let mut seq = 2_000usize;
    let mut delay_ms = 1_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--n" => n = value().unwrap_or(n as u64) as usize,
            "--seq" => seq = value().unwrap_or(seq as u64) as usize,
            "--delay-ms" => delay_ms = value().unwrap_or(delay_ms),
            _ => {} // cargo bench passes `--bench`
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    println!("orch-delegate delegator benchmark");
    println!(
        "  machine: {} cores, kernel {}; runtime: multi-thread, 2 workers; store on {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read_trim("/proc/sys/kernel/osrelease"),
        dir.path().display(),
    );
    println!(
        "  inotify: max_queued_events {}; RSS at start {}",
        read_trim("/proc/sys/fs/inotify/max_queued_events"),
        status_field("VmRSS"),
    );

    println!();
    println!(
        "1. {n} concurrent delegations over the sim fleet ({} agents)",
        AGENTS.len()
    );
    for delay in [Duration::from_millis(delay_ms), Duration::ZERO] {
        runtime.block_on(many(
            &dir.path().join(format!("many-{}", delay.as_millis())),
            n,
            delay,
        ));
    }

    println!();
    println!("2. Engine overhead: {seq} sequential delegate() calls");
    runtime.block_on(sequential(&dir.path().join("seq"), seq));
}

async fn many(root: &Path, n: usize, delay: Duration) {
    let fs = FsStore::open(FsStoreConfig::new(root)).unwrap();
    let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
    let sim = Arc::new(SimTransport::new(
        Arc::clone(&store),
        SimConfig {
            delay,
            ..SimConfig::default()
        },
    ));
    let delegator = Arc::new(delegator(&store, sim));
    let token = CancellationToken::new();

    // Sample how many waiters are registered at once.
    let sampler = {
        let fs = fs.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(fs.active_waiters());
                tokio::time::sleep(Duration::from_millis(5)).await;
                if peak > 0 && fs.active_waiters() == 0 {
                    return peak;
                }
            }
        })
    };

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
    let spawned = t0.elapsed();
    let mut outcomes = Vec::with_capacity(n);
    while let Some(result) = tasks.join_next().await {
        outcomes.push(result.unwrap());
    }
    let wall = t0.elapsed();
    let peak_waiters = sampler.await.unwrap();

    let mut errors = 0;
    let mut lost = 0;
    let mut ids = HashSet::with_capacity(n);
    for outcome in &outcomes {
        match outcome {
            Ok(o) if o.end == End::Handoff && o.handoff.is_some() => {
                ids.insert(o.run_id.clone());
            }
            Ok(_) => lost += 1,
            Err(_) => errors += 1,
        }
    }
    let files = store.list(Scope::Top).await.unwrap().len();
    let ledger = store.read_ledger().await.unwrap();
    let count = |k: LedgerEventKind| ledger.events.iter().filter(|e| e.event == k).count();

    println!(
        "   sim delay {:>5} ms: wall {:>8.1} ms (all spawned after {:.1} ms), peak waiters {peak_waiters}, VmHWM {}",
        delay.as_millis(),
        ms(wall),
        ms(spawned),
        status_field("VmHWM"),
    );
    println!(
        "     outcomes {} ok / {lost} lost / {errors} errors; distinct run ids {}; handoff files {files}; \
         watchers_created {}; rescans {}",
        ids.len(),
        ids.len(),
        fs.watchers_created(),
        fs.rescans(),
    );
    println!(
        "     ledger: dispatched {}, acked {}, handoff {}, bad lines {}",
        count(LedgerEventKind::Dispatched),
        count(LedgerEventKind::Acked),
        count(LedgerEventKind::Handoff),
        ledger.bad_lines.len(),
    );
    let ok = lost == 0 && errors == 0 && ids.len() == n && files == n && fs.watchers_created() == 1;
    println!(
        "     {}",
        if ok {
            "PASS: none lost, none duplicated, one watcher"
        } else {
            "FAIL"
        }
    );
}

async fn sequential(root: &Path, runs: usize) {
    // (a) zero-delay sim agent.
    {
        let fs = FsStore::open(FsStoreConfig::new(root.join("sim"))).unwrap();
        let store: Arc<dyn HandoffStore> = Arc::new(fs);
        let sim = Arc::new(SimTransport::new(
            Arc::clone(&store),
            SimConfig {
                delay: Duration::ZERO,
                ..SimConfig::default()
            },
        ));
        let d = delegator(&store, sim);
        let lat = run_sequential(&d, runs).await;
        report("sim agent, zero delay (answer = fsynced atomic put)", &lat);
    }
    // (b) instant agent: renames its file into place inside dispatch, no fsync.
    {
        let fs = FsStore::open(FsStoreConfig::new(root.join("instant"))).unwrap();
        let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
        let d = delegator(&store, Arc::new(InstantAgent(fs)));
        let lat = run_sequential(&d, runs).await;
        report("instant agent (rename, no fsync): engine overhead", &lat);
    }
    // (c) what an agent's `store.put` costs on this disk, for reference.
    {
        let fs = FsStore::open(FsStoreConfig::new(root.join("put"))).unwrap();
        let mut lat = Vec::with_capacity(runs);
        for _ in 0..runs {
            let h = Handoff::new(
                orch_delegate::orch_handoff::RunId::generate(),
                "webster",
                Status::Complete,
                "x",
            );
            let t = Instant::now();
            fs.put(Scope::Top, &h, PutMode::Create).await.unwrap();
            lat.push(t.elapsed());
        }
        report(
            "reference: one store.put (tmp, fsync, rename, fsync dir)",
            &lat,
        );
    }
}

async fn run_sequential(d: &Delegator, runs: usize) -> Vec<Duration> {
    let token = CancellationToken::new();
    let mut lat = Vec::with_capacity(runs);
    for i in 0..runs {
        let mut request = Request::new(AGENTS[i % AGENTS.len()], format!("task {i}"), "manager");
        request.timeout = Duration::from_secs(60);
        let t = Instant::now();
        let out = d.delegate(request, &token).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(out.end, End::Handoff);
    }
    lat
}

fn delegator(store: &Arc<dyn HandoffStore>, transport: Arc<dyn Transport>) -> Delegator {
    let agents = AGENTS
        .iter()
        .map(|id| AgentEntry::new(*id, Arc::clone(&transport)))
        .collect();
    Delegator::new(
        Arc::clone(store),
        Policy::atomizer_default(),
        agents,
        DelegatorConfig::default(),
    )
    .unwrap()
}

/// An agent that answers inside `dispatch`: temp file + rename, no fsync.
struct InstantAgent(FsStore);

#[async_trait]
impl Transport for InstantAgent {
    fn name(&self) -> &str {
        "instant"
    }

    async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
        let mut h = Handoff::new(env.run_id.clone(), &env.agent, Status::Complete, "done");
        h.confidence = Some(Confidence::High);
        let path = self.0.path_of(&HandoffKey {
            scope: env.scope,
            run_id: env.run_id.clone(),
        });
        let tmp = path.with_file_name(format!(".{}.tmp", env.run_id));
        std::fs::write(&tmp, h.to_json_pretty()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        Ok(Ack::default())
    }
}

fn report(what: &str, lat: &[Duration]) {
    let mut sorted = lat.to_vec();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!(
        "   {what}:\n     p50 {:>8.1} us   p90 {:>8.1} us   p99 {:>8.1} us   max {:>8.1} us",
        us(pct(0.50)),
        us(pct(0.90)),
        us(pct(0.99)),
        us(*sorted.last().unwrap()),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// A field of /proc/self/status, e.g. `VmHWM` → `123456 kB`.
fn status_field(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "?".into())
}
