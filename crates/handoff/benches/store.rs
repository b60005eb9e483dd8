//! `FsStore` benchmarks (DESIGN §11): handoff detection latency, 10,000
//! concurrent waiters on one store, the cost of the store's basic
//! operations (which backs the inline-vs-blocking-pool decisions), and the
//! `dispatched` lookup `orch handoff submit` makes on a large ledger.
//!
//! Run: `cargo bench -p orch-handoff --bench store [-- --samples N --waiters N --ledger-mb N]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orch_handoff::{
    FsStore, FsStoreConfig, Handoff, HandoffKey, LedgerEvent, LedgerEventKind, PutMode, RunId,
    Status, WaitOutcome, WatchMode,
};

fn main() {
    let mut samples = 10_000usize;
    let mut waiters = 10_000usize;
    let mut ledger_mb = 500usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ledger-mb" => {
                ledger_mb = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(ledger_mb);
            }
            "--samples" => samples = args.next().and_then(|v| v.parse().ok()).unwrap_or(samples),
            "--waiters" => waiters = args.next().and_then(|v| v.parse().ok()).unwrap_or(waiters),
            _ => {} // cargo bench passes `--bench`
        }
    }

    let dir = tempfile::tempdir().unwrap();
    println!("orch-handoff store benchmark");
    println!(
        "  machine: {} cores, kernel {}, store on {} ({})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        dir.path().display(),
        fs_type(dir.path()),
    );
    println!(
        "  inotify: max_queued_events {}, max_user_instances {}",
        read_trim("/proc/sys/fs/inotify/max_queued_events"),
        read_trim("/proc/sys/fs/inotify/max_user_instances"),
    );

    println!();
    println!("1. Detection latency: rename() into place -> wait() returns Landed");
    println!("   ({samples} sequential samples; subscribe before each write; target p99 < 200 us)");
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        detection_latency(&dir.path().join(format!("lat-{flavor:?}")), flavor, samples);
    }

    println!();
    println!("2. {waiters} concurrent waiters on one store (multi-thread runtime, 2 workers)");
    many_waiters(&dir.path().join("many"), waiters);

    println!();
    println!("3. Operation costs (decides what runs inline and what goes to spawn_blocking)");
    operation_costs(&dir.path().join("ops"));

    println!();
    println!("4. `dispatched` on a {ledger_mb} MB ledger (what every `orch handoff submit` asks)");
    dispatched_lookup(&dir.path().join("ledger"), ledger_mb);
}

/// A ledger of about `mb` MB in orch's own shape (dispatched, acked,
/// handoff lines per run), then `dispatched` for the newest run, one in the
/// middle, the oldest and one never dispatched, against a full
/// `read_ledger` for comparison.
fn dispatched_lookup(root: &Path, mb: usize) {
    let store = open(root);
    let path = store.root().join("ledger.jsonl");
    let mut out = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    let mut runs = 0usize;
    let mut written = 0usize;
    while written < mb << 20 {
        let id = run_id("ledger", runs);
        for kind in [
            LedgerEventKind::Dispatched,
            LedgerEventKind::Acked,
            LedgerEventKind::Handoff,
        ] {
            let mut e = LedgerEvent::now(kind);
            e.run_id = Some(id.clone());
            e.agent = Some("webster".into());
            e.caller = Some("manager".into());
            e.attempt = Some(1);
            e.detail = Some("via sim".into());
            let mut line = serde_json::to_vec(&e).unwrap();
            line.push(b'\n');
            written += line.len();
            out.write_all(&line).unwrap();
        }
        runs += 1;
    }
    drop(out);
    let rt = runtime(Flavor::MultiThread);
    println!(
        "   {} runs, {} lines, {:.0} MB (page cache warm)",
        runs,
        runs * 3,
        written as f64 / 1e6
    );
    let cases = [
        ("newest run", run_id("ledger", runs - 1), true),
        ("a run in the middle", run_id("ledger", runs / 2), true),
        ("oldest run", run_id("ledger", 0), true),
        ("never dispatched", run_id("typo", 0), false),
    ];
    for (what, id, found) in cases {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let got = rt.block_on(store.dispatched(&id)).unwrap();
            times.push(t.elapsed());
            assert_eq!(got.is_some(), found, "{what}");
        }
        report(&format!("dispatched: {what}"), &mut times);
    }
    let t = Instant::now();
    let read = rt.block_on(store.read_ledger()).unwrap();
    println!(
        "   for comparison, read_ledger (parses every line): {:.0} ms for {} events",
        ms(t.elapsed()),
        read.events.len()
    );
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    CurrentThread,
    MultiThread,
}

fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    }
}

fn open(root: &Path) -> FsStore {
    let mut config = FsStoreConfig::new(root);
    config.watch = WatchMode::Inotify;
    FsStore::open(config).unwrap()
}

fn run_id(prefix: &str, i: usize) -> RunId {
    RunId::new(format!("orch-{prefix}-{i:06}")).unwrap()
}

fn handoff_bytes(id: &RunId) -> Vec<u8> {
    let mut h = Handoff::new(id.clone(), "webster", Status::Complete, "x".repeat(400));
    h.notes = "benchmark".into();
    h.to_json_pretty()
}

/// What an agent does: temp file next to the target (written and closed
/// beforehand), then the measured rename.
struct Prepared {
    tmp: PathBuf,
    target: PathBuf,
}

impl Prepared {
    fn new(target: PathBuf, bytes: &[u8]) -> Self {
        let name = target.file_name().unwrap().to_str().unwrap().to_owned();
        let tmp = target.with_file_name(format!(".{name}.bench-tmp"));
        fs::write(&tmp, bytes).unwrap();
        Self { tmp, target }
    }

    /// Renames into place; returns the instant taken just before the syscall.
    fn land(self) -> Instant {
        let t0 = Instant::now();
        fs::rename(&self.tmp, &self.target).unwrap();
        t0
    }
}

fn detection_latency(root: &Path, flavor: Flavor, samples: usize) {
    let store = open(root);
    let rt = runtime(flavor);

    // The writer: an OS thread standing in for the agent process.
    let (jobs, job_rx) = mpsc::channel::<(PathBuf, Vec<u8>)>();
    let (done_tx, done) = mpsc::channel::<Instant>();
    let writer = std::thread::spawn(move || {
        for (target, bytes) in job_rx {
            let prepared = Prepared::new(target, &bytes);
            // Give the waiter time to do its first check and park, so the
            // sample measures the watcher path, not the initial check.
            spin(Duration::from_micros(30));
            done_tx.send(prepared.land()).unwrap();
        }
    });

    let warmup = samples / 20;
    let mut total = Vec::with_capacity(samples);
    let mut to_handler = Vec::with_capacity(samples);
    let mut handler_to_return = Vec::with_capacity(samples);
    let mut by_check = 0usize;
    rt.block_on(async {
        for i in 0..warmup + samples {
            let key = HandoffKey::top(run_id("lat", i));
            let path = store.path_of(&key);
            let bytes = handoff_bytes(&key.run_id);
            let mut sub = store.subscribe(&key).await.unwrap();
            jobs.send((path.clone(), bytes)).unwrap();
            let outcome = sub
                .wait(tokio::time::Instant::now() + Duration::from_secs(10))
                .await
                .unwrap();
            let t1 = Instant::now();
            let t0 = done.recv().unwrap();
            assert!(matches!(outcome, WaitOutcome::Landed(_)), "{outcome:?}");
            drop(sub);
            fs::remove_file(&path).unwrap();
            if i < warmup {
                continue;
            }
            total.push(t1.saturating_duration_since(t0));
            match store.last_wake_at() {
                Some(w) if w >= t0 => {
                    to_handler.push(w - t0);
                    handler_to_return.push(t1.saturating_duration_since(w));
                }
                _ => by_check += 1,
            }
        }
    });
    drop(jobs);
    writer.join().unwrap();

    println!();
    println!("   runtime {flavor:?}:");
    report("rename -> wait returns Landed", &mut total);
    report("  rename -> handler wakes waiter", &mut to_handler);
    report(
        "  handler -> wait returns (wake, read, parse)",
        &mut handler_to_return,
    );
    println!(
        "     ({by_check} samples found by the initial check, not by an event; watchers_created = {}, rescans = {})",
        store.watchers_created(),
        store.rescans()
    );
}

fn many_waiters(root: &Path, n: usize) {
    let rss_before = proc_status_kib("VmRSS");
    let hwm_before = proc_status_kib("VmHWM");
    let store = open(root);
    let rt = runtime(Flavor::MultiThread);
    let keys: Vec<HandoffKey> = (0..n).map(|i| HandoffKey::top(run_id("many", i))).collect();
    // Prepare every agent's temp file up front: the measured part is
    // rename + detection only.
    let prepared: Vec<Prepared> = keys
        .iter()
        .map(|k| Prepared::new(store.path_of(k), &handoff_bytes(&k.run_id)))
        .collect();

    let t_subscribe = Instant::now();
    let tasks: Vec<_> = rt.block_on(async {
        keys.iter()
            .cloned()
            .map(|key| {
                let store = store.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
                    let outcome = store.wait(&key, deadline).await;
                    (key, outcome, Instant::now())
                })
            })
            .collect()
    });
    while store.active_waiters() < n {
        std::thread::yield_now();
    }
    let subscribe_time = t_subscribe.elapsed();
    let rss_waiting = proc_status_kib("VmRSS");

    let t_write = Instant::now();
    let renamed: Vec<Instant> = prepared.into_iter().map(Prepared::land).collect();
    let write_time = t_write.elapsed();

    let results = rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let all_time = t_write.elapsed();

    let mut ok = 0usize;
    let mut latencies = Vec::with_capacity(n);
    for (i, (key, outcome, at)) in results.into_iter().enumerate() {
        match outcome {
            Ok(WaitOutcome::Landed(h)) if h.run_id == key.run_id && key == keys[i] => ok += 1,
            other => println!("   waiter {i} ({}): {other:?}", key.run_id),
        }
        latencies.push(at.saturating_duration_since(renamed[i]));
    }
    let rss_after = proc_status_kib("VmRSS");
    let hwm_after = proc_status_kib("VmHWM");

    println!(
        "   woken correctly: {ok}/{n}, each with its own handoff; watchers_created = {}; active_waiters after = {}",
        store.watchers_created(),
        store.active_waiters()
    );
    println!(
        "   rescans (inotify queue overflow -> wake all) = {}, incomplete reads = {}",
        store.rescans(),
        store.incomplete_reads()
    );
    println!(
        "   subscribe {n}: {:.1} ms; rename all {n}: {:.1} ms; rename first -> last waiter returned: {:.1} ms",
        ms(subscribe_time),
        ms(write_time),
        ms(all_time)
    );
    report("per waiter: its rename -> its wait returns", &mut latencies);
    println!(
        "   RSS: before {} MiB, with {n} waiting {} MiB (+{:.1} MiB), after {} MiB; peak (VmHWM) {} -> {} MiB (+{:.1} MiB)",
        mib(rss_before),
        mib(rss_waiting),
        (rss_waiting as f64 - rss_before as f64) / 1024.0,
        mib(rss_after),
        mib(hwm_before),
        mib(hwm_after),
        (hwm_after as f64 - hwm_before as f64) / 1024.0,
    );
}

fn operation_costs(root: &Path) {
    let store = open(root);
    let rt = runtime(Flavor::MultiThread);
    rt.block_on(async {
        let n = 200;
        let mut put = Vec::with_capacity(n);
        for i in 0..n {
            let key = HandoffKey::top(run_id("put", i));
            let bytes = handoff_bytes(&key.run_id);
            let t = Instant::now();
            store.put_raw(&key, &bytes, PutMode::Create).await.unwrap();
            put.push(t.elapsed());
        }
        report(
            "put_raw (atomic: write, fsync, rename, fsync dir)",
            &mut put,
        );

        let mut get = Vec::with_capacity(2000);
        for i in 0..2000 {
            let key = HandoffKey::top(run_id("put", i % n));
            let t = Instant::now();
            let h = store.get(&key).await.unwrap();
            get.push(t.elapsed());
            assert!(h.is_some());
        }
        report("get (inline: open, fstat, read, parse)", &mut get);

        let mut get_pool = Vec::with_capacity(2000);
        for i in 0..2000 {
            let store = store.clone();
            let key = HandoffKey::top(run_id("put", i % n));
            let t = Instant::now();
            let h = tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current().block_on(store.get(&key))
            })
            .await
            .unwrap()
            .unwrap();
            get_pool.push(t.elapsed());
            assert!(h.is_some());
        }
        report(
            "get via spawn_blocking (the hop it would add)",
            &mut get_pool,
        );

        let mut append = Vec::with_capacity(5000);
        for i in 0..5000 {
            let mut e = LedgerEvent::now(LedgerEventKind::Handoff);
            e.run_id = Some(run_id("led", i));
            e.agent = Some("webster".into());
            let t = Instant::now();
            store.append_ledger(&e).await.unwrap();
            append.push(t.elapsed());
        }
        report("append_ledger (open, flock, write; no fsync)", &mut append);

        let mut append_sync = Vec::with_capacity(200);
        let path = root.join("fsync-ledger.jsonl");
        for i in 0..200 {
            let line = format!("{{\"ts\":\"x\",\"event\":\"acked\",\"n\":{i}}}\n");
            let t = Instant::now();
            let mut f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .unwrap();
            f.lock().unwrap();
            f.write_all(line.as_bytes()).unwrap();
            f.sync_data().unwrap();
            append_sync.push(t.elapsed());
        }
        report(
            "  the same line with fsync (rejected design)",
            &mut append_sync,
        );

        let mut subscribe = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let key = HandoffKey::top(run_id("sub", i));
            let t = Instant::now();
            let sub = store.subscribe(&key).await.unwrap();
            drop(sub);
            subscribe.push(t.elapsed());
        }
        report("subscribe + drop (watcher exists)", &mut subscribe);

        let t = Instant::now();
        let read = store.read_ledger().await.unwrap();
        println!(
            "   read_ledger of {} lines: {:.2} ms",
            read.events.len(),
            ms(t.elapsed())
        );
    });
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn report(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("   {what:<48} (no samples)");
        return;
    }
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    println!(
        "   {what:<48} n={:<6} p50 {:>8}  p90 {:>8}  p99 {:>8}  max {:>8}",
        samples.len(),
        us(pct(0.50)),
        us(pct(0.90)),
        us(pct(0.99)),
        us(samples[samples.len() - 1]),
    );
}

fn us(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 10_000.0 {
        format!("{:.1}ms", micros / 1000.0)
    } else {
        format!("{micros:.1}us")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn proc_status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The file system type of the mount holding `path`, from /proc/mounts.
fn fs_type(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt).then(|| (mnt.len(), ty.to_owned()))
        })
        .max()
        .map_or_else(|| "?".into(), |(_, ty)| ty)
}
