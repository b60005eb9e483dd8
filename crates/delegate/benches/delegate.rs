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
//!    renames its file into place without fsync, its own write timed and
//!    taken out (what is left is the engine's own cost: ACL, subscribe,
//!    ledger lines, message, detection), and the bare `store.put` an agent
//!    pays, for reference.
//!
//! 3. `--stress RUNS`: only RUNS rounds of N zero-delay delegations, each on
//!    a fresh store under `--dir DIR`, that stop at the first round losing
//!    or duplicating anything (the store is kept) and exit 1 then. The
//!    regression test of issue 12's "one delegation lost in 50,000" (two
//!    delegations given the same run id).
//!
//! Run: `cargo bench -p orch-delegate --bench delegate [-- --n N --seq N --delay-ms MS]`,
//! `cargo bench -p orch-delegate --bench delegate -- --stress 20 --n 50000 --dir /dev/shm`.
//! Exits 1 if any round lost or duplicated a delegation.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
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

fn main() -> std::process::ExitCode {
    let mut n = 10_000usize;
    let mut seq = 2_000usize;
    let mut delay_ms = 1_000u64;
    let mut stress: Option<usize> = None;
    let mut dir_arg: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n),
            "--seq" => seq = args.next().and_then(|v| v.parse().ok()).unwrap_or(seq),
            "--delay-ms" => {
                delay_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(delay_ms);
            }
            "--stress" => stress = args.next().and_then(|v| v.parse().ok()),
            "--dir" => dir_arg = args.next().map(Into::into),
            _ => {} // cargo bench passes `--bench`
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = match &dir_arg {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };

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

    if let Some(runs) = stress {
        return runtime.block_on(stress_runs(dir, runs, n));
    }

    println!();
    println!(
        "1. {n} concurrent delegations over the sim fleet ({} agents)",
        AGENTS.len()
    );
    let mut passed = true;
    for delay in [Duration::from_millis(delay_ms), Duration::ZERO] {
        let round = runtime.block_on(many(
            &dir.path().join(format!("many-{}", delay.as_millis())),
            n,
            delay,
        ));
        passed &= round.passed(n);
    }

    println!();
    println!("2. Engine overhead: {seq} sequential delegate() calls");
    runtime.block_on(sequential(&dir.path().join("seq"), seq));
    if passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// `--stress RUNS`: RUNS rounds of `--n` concurrent zero-delay delegations,
/// each on a fresh store under `--dir` (tmpfs: `/dev/shm`; disk: a directory
/// on it). A round passes when every delegation ended with its handoff,
/// with N distinct run ids, N files, exactly N `dispatched`, `acked` and
/// `handoff` ledger lines and no `invalid` or `reasked` one. The first round
/// that fails keeps its store (ledger and handoffs) for inspection, says
/// where, and makes the bench exit 1.
async fn stress_runs(dir: tempfile::TempDir, runs: usize, n: usize) -> std::process::ExitCode {
    println!();
    println!("stress: {runs} runs of {n} concurrent delegations, sim delay 0 ms");
    for run in 1..=runs {
        let root = dir.path().join(format!("run-{run}"));
        let round = many(&root, n, Duration::ZERO).await;
        if !round.passed(n) {
            round.explain();
            let kept = dir.keep();
            println!(
                "FAIL in run {run} of {runs}: store kept at {}",
                kept.join(format!("run-{run}")).display()
            );
            return std::process::ExitCode::FAILURE;
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
    println!("PASS: {runs} runs × {n} delegations, 0 lost");
    std::process::ExitCode::SUCCESS
}

/// What one round of concurrent delegations produced.
struct Round {
    lost: Vec<(String, String)>,
    errors: Vec<String>,
    distinct: usize,
    duplicated: Vec<String>,
    files: usize,
    dispatched: usize,
    acked: usize,
    handoffs: usize,
    invalid: usize,
    reasked: usize,
    watchers: usize,
}

impl Round {
    fn passed(&self, n: usize) -> bool {
        self.lost.is_empty()
            && self.errors.is_empty()
            && self.distinct == n
            && self.files == n
            && self.dispatched == n
            && self.acked == n
            && self.handoffs == n
            && self.invalid == 0
            && self.reasked == 0
            && self.watchers == 1
    }

    fn explain(&self) {
        for (run_id, end) in self.lost.iter().take(10) {
            println!("     lost {run_id}: {end}");
        }
        for e in self.errors.iter().take(10) {
            println!("     error: {e}");
        }
        for run_id in self.duplicated.iter().take(10) {
            println!("     run id used by two delegations: {run_id}");
        }
    }
}

async fn many(root: &Path, n: usize, delay: Duration) -> Round {
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

    let mut lost = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashSet::with_capacity(n);
    let mut duplicated = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Ok(o) => {
                if !ids.insert(o.run_id.clone()) {
                    duplicated.push(o.run_id.to_string());
                }
                if o.end != End::Handoff || o.handoff.is_none() {
                    lost.push((o.run_id.to_string(), format!("{:?}", o.end)));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let files = store.list(Scope::Top).await.unwrap().len();
    let ledger = store.read_ledger().await.unwrap();
    let count = |k: LedgerEventKind| ledger.events.iter().filter(|e| e.event == k).count();
    let round = Round {
        distinct: ids.len(),
        files,
        dispatched: count(LedgerEventKind::Dispatched),
        acked: count(LedgerEventKind::Acked),
        handoffs: count(LedgerEventKind::Handoff),
        invalid: count(LedgerEventKind::Invalid),
        reasked: count(LedgerEventKind::Reasked),
        watchers: fs.watchers_created(),
        lost,
        errors,
        duplicated,
    };

    println!(
        "   sim delay {:>5} ms: wall {:>8.1} ms (all spawned after {:.1} ms), peak waiters {peak_waiters}, VmHWM {}",
        delay.as_millis(),
        ms(wall),
        ms(spawned),
        status_field("VmHWM"),
    );
    println!(
        "     outcomes {} ok / {} lost / {} errors; distinct run ids {}; handoff files {files}; \
         watchers_created {}; rescans {}",
        n - round.lost.len() - round.errors.len(),
        round.lost.len(),
        round.errors.len(),
        round.distinct,
        round.watchers,
        fs.rescans(),
    );
    println!(
        "     ledger: dispatched {}, acked {}, handoff {}, invalid {}, reasked {}, bad lines {}",
        round.dispatched,
        round.acked,
        round.handoffs,
        round.invalid,
        round.reasked,
        ledger.bad_lines.len(),
    );
    println!(
        "     {}",
        if round.passed(n) {
            "PASS: none lost, none duplicated, one watcher"
        } else {
            "FAIL"
        }
    );
    round
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
        let lat = run_sequential(&d, runs, None).await;
        report("sim agent, zero delay (answer = fsynced atomic put)", &lat);
    }
    // (b) instant agent: renames its file into place inside dispatch, no
    // fsync; its own write (a new file and a rename: on a busy ext4 disk
    // hundreds of microseconds) is timed and taken out, so what is left is
    // orch's.
    {
        let fs = FsStore::open(FsStoreConfig::new(root.join("instant"))).unwrap();
        let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
        let agent = Arc::new(InstantAgent {
            store: fs,
            writes: Mutex::new(Vec::with_capacity(runs)),
        });
        let d = delegator(&store, Arc::clone(&agent) as Arc<dyn Transport>);
        let lat = run_sequential(&d, runs, Some(&agent.writes)).await;
        report(
            "instant agent (rename, no fsync): engine overhead, its own write taken out",
            &lat,
        );
        let writes = std::mem::take(&mut *agent.writes.lock().unwrap());
        report(
            "  the instant agent's own write (new file, rename)",
            &writes,
        );
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

/// Latencies of `runs` sequential delegations, less the agent's own write
/// of each when `writes` gets one per delegation.
async fn run_sequential(
    d: &Delegator,
    runs: usize,
    writes: Option<&Mutex<Vec<Duration>>>,
) -> Vec<Duration> {
    let token = CancellationToken::new();
    let mut lat = Vec::with_capacity(runs);
    for i in 0..runs {
        let mut request = Request::new(AGENTS[i % AGENTS.len()], format!("task {i}"), "manager");
        request.timeout = Duration::from_secs(60);
        let t = Instant::now();
        let out = d.delegate(request, &token).await.unwrap();
        let own = writes.and_then(|w| w.lock().unwrap().last().copied());
        lat.push(t.elapsed().saturating_sub(own.unwrap_or_default()));
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

/// An agent that answers inside `dispatch`: temp file + rename, no fsync;
/// keeps how long each of its writes took.
struct InstantAgent {
    store: FsStore,
    writes: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Transport for InstantAgent {
    fn name(&self) -> &str {
        "instant"
    }

    async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
        let mut h = Handoff::new(env.run_id.clone(), &env.agent, Status::Complete, "done");
        h.confidence = Some(Confidence::High);
        let path = self.store.path_of(&HandoffKey {
            scope: env.scope,
            run_id: env.run_id.clone(),
        });
        let tmp = path.with_file_name(format!(".{}.tmp", env.run_id));
        let bytes = h.to_json_pretty();
        let t = Instant::now();
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        self.writes.lock().unwrap().push(t.elapsed());
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
