//! `orch metrics` benchmark (DESIGN §11: 100,000 delegations in ≤ 0.3 s on
//! 2 cores; `--rescan` within 1.2× of the raw read floor).
//!
//! For each size it generates a store (handoff files and the matching
//! ledger in the exact format orch writes, a few workflow runs, some
//! corrupt files: `tests/it/generator.rs`), then measures on a warm page
//! cache, in the same run:
//!
//! - the `cat` floor: `find <store> -type f -exec cat {} + > /dev/null`,
//!   every file of the store read once;
//! - the library: `orch_metrics::scan`, ledger index and rescan, on a
//!   2-worker tokio runtime as the CLI uses;
//! - the real binary: `orch metrics json [--rescan] > /dev/null`, wall time
//!   and peak RSS (with `/usr/bin/time` when present). Build it first:
//!   `cargo build --release -p orch-cli`.
//!
//! Run: `cargo bench -p orch-metrics --bench scan [-- --sizes 10000,100000
//! --runs 5 --orch target/release/orch --dir /tmp/x --keep]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

#[path = "../tests/it/generator.rs"]
#[allow(dead_code)]
mod generator;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_metrics::{Mode, Options};

struct Args {
    sizes: Vec<usize>,
    runs: usize,
    orch: PathBuf,
    dir: Option<PathBuf>,
    keep: bool,
}

fn args() -> Args {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let mut a = Args {
        sizes: vec![10_000, 100_000],
        runs: 5,
        orch: target.join("release/orch"),
        dir: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                a.sizes = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().unwrap())
                    .collect();
            }
            "--runs" => a.runs = it.next().unwrap().parse().unwrap(),
            "--orch" => a.orch = PathBuf::from(it.next().unwrap()),
            "--dir" => a.dir = Some(PathBuf::from(it.next().unwrap())),
            "--keep" => a.keep = true,
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

/// Min and median of `runs` timings (after one warm-up run).
fn measure(runs: usize, mut f: impl FnMut() -> Duration) -> (Duration, Duration) {
    f();
    let mut t: Vec<Duration> = (0..runs.max(1)).map(|_| f()).collect();
    t.sort();
    (t[0], t[t.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the binary; wall time, and peak RSS in KiB when `/usr/bin/time`
/// can tell.
fn run_binary(orch: &Path, root: &Path, rescan: bool) -> (Duration, Option<u64>) {
    run_with(
        orch,
        root,
        if rescan {
            &["--rescan"]
        } else {
            &["--no-index"]
        },
    )
}

/// Runs `orch metrics json ARGS`; wall time and peak RSS (KiB).
fn run_with(orch: &Path, root: &Path, args: &[&str]) -> (Duration, Option<u64>) {
    let time = Path::new("/usr/bin/time");
    let rss_file = root.with_extension("rss");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(orch);
        c
    } else {
        Command::new(orch)
    };
    cmd.arg("--handoff-dir")
        .arg(root)
        .args(["metrics", "json"])
        .args(args);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("NO_COLOR", "1");
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let wall = t.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    let rss = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse().ok());
    let _ = std::fs::remove_file(&rss_file);
    (wall, rss)
}

fn main() {
    let args = args();
    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    };
    println!("orch-metrics scan benchmark");
    println!(
        "  machine: {} cores, kernel {}; stores under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        tmp.path().display()
    );
    let have_orch = args.orch.is_file();
    if !have_orch {
        println!(
            "  no binary at {} (build it: cargo build --release -p orch-cli); binary rows skipped",
            args.orch.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = jiff::Timestamp::now();

    struct Row {
        n: usize,
        cat: Duration,
        fast: Duration,
        rescan: Duration,
        bin_fast: Option<(Duration, Option<u64>)>,
        bin_rescan: Option<(Duration, Option<u64>)>,
    }
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let root = tmp.path().join(format!("store-{n}"));
        println!();
        println!("{n} delegations");
        let t = Instant::now();
        let truth = generator::generate(
            &root,
            &generator::Spec {
                delegations: n,
                denials: n / 100,
                workflow_runs: 20,
                seed: 1,
                corrupt: true,
                shape: &generator::random_shape,
                // A year of the fleet's work, whatever the size.
                spacing_ms: 31_536_000_000 / n as u64,
            },
        );
        let ledger = std::fs::metadata(root.join("ledger.jsonl")).unwrap().len();
        println!(
            "  generated in {:.1} s: {} handoff files, ledger {:.1} MB, {} workflow runs",
            t.elapsed().as_secs_f64(),
            truth.handoff_files,
            ledger as f64 / 1e6,
            truth.runs.len()
        );

        let (cat_min, cat) = measure(args.runs, || {
            let t = Instant::now();
            let ok = Command::new("sh")
                .arg("-c")
                .arg("find . -type f -exec cat {} + > /dev/null")
                .current_dir(&root)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            t.elapsed()
        });
        println!(
            "  cat floor (every file)        min {:>7}  median {:>7}",
            ms(cat_min),
            ms(cat)
        );

        let store: Arc<dyn HandoffStore> =
            Arc::new(FsStore::open(FsStoreConfig::new(&root)).unwrap());
        let lib = |mode: Mode| {
            let options = Options {
                mode,
                ..Options::new(now)
            };
            measure(args.runs, || {
                let t = Instant::now();
                let report = rt
                    .block_on(orch_metrics::scan(Arc::clone(&store), &options))
                    .unwrap();
                let took = t.elapsed();
                assert_eq!(report.totals.delegations, truth.delegations.len() as u64);
                took
            })
        };
        let (fast_min, fast) = lib(Mode::Ledger);
        println!(
            "  library, ledger index         min {:>7}  median {:>7}",
            ms(fast_min),
            ms(fast)
        );
        let (rescan_min, rescan) = lib(Mode::Rescan);
        println!(
            "  library, rescan               min {:>7}  median {:>7}  ({:.2}x cat)",
            ms(rescan_min),
            ms(rescan),
            rescan.as_secs_f64() / cat.as_secs_f64()
        );

        let binary = |rescan: bool| {
            if !have_orch {
                return None;
            }
            let mut rss = None;
            let (min, median) = measure(args.runs, || {
                let (wall, r) = run_binary(&args.orch, &root, rescan);
                rss = rss.max(r);
                wall
            });
            let label = if rescan {
                "orch metrics json --rescan"
            } else {
                "orch metrics json --no-index"
            };
            println!(
                "  {label:<28}  min {:>7}  median {:>7}  peak RSS {}",
                ms(min),
                ms(median),
                rss.map_or_else(
                    || "?".to_owned(),
                    |k| format!("{:.1} MB", k as f64 / 1024.0)
                ),
            );
            Some((median, rss))
        };
        let bin_fast = binary(false);
        let bin_rescan = binary(true);
        if have_orch {
            index_rows(&args, &root, n);
        }
        rows.push(Row {
            n,
            cat,
            fast,
            rescan,
            bin_fast,
            bin_rescan,
        });
    }

    println!();
    println!(
        "summary (medians; goals: `orch metrics json` <= 300 ms at 100,000; rescan <= 1.2x cat)"
    );
    println!(
        "  {:>8}  {:>9}  {:>9}  {:>9}  {:>16}  {:>16}  {:>12}",
        "n", "cat", "lib fast", "lib scan", "orch json", "orch --rescan", "rescan/cat"
    );
    for r in &rows {
        let bin = |b: &Option<(Duration, Option<u64>)>| match b {
            None => "-".to_owned(),
            Some((d, rss)) => format!(
                "{} / {}",
                ms(*d),
                rss.map_or_else(|| "?".to_owned(), |k| format!("{} MB", k / 1024))
            ),
        };
        let ratio = r.bin_rescan.map_or(r.rescan, |(d, _)| d).as_secs_f64() / r.cat.as_secs_f64();
        println!(
            "  {:>8}  {:>9}  {:>9}  {:>9}  {:>16}  {:>16}  {:>11.2}x",
            r.n,
            ms(r.cat),
            ms(r.fast),
            ms(r.rescan),
            bin(&r.bin_fast),
            bin(&r.bin_rescan),
            ratio
        );
    }
    if let [a, .., b] = rows.as_slice() {
        let growth = |x: Duration, y: Duration| y.as_secs_f64() / x.as_secs_f64();
        println!(
            "  growth {}x store: cat {:.1}x, ledger index {:.1}x, rescan {:.1}x",
            b.n / a.n.max(1),
            growth(a.cat, b.cat),
            growth(a.fast, b.fast),
            growth(a.rescan, b.rescan)
        );
    }
    if args.keep {
        let kept = tmp.keep();
        println!("stores kept in {}", kept.display());
    }
}

/// The index's rows: first call (no index), warm index, warm index and
/// 1,000 new delegations, and `--since` the last day; median wall time and
/// peak RSS of the binary.
fn index_rows(args: &Args, root: &Path, n: usize) {
    let ledger_path = root.join("ledger.jsonl");
    let index = root.join(".index/metrics-v1.json");
    let full = std::fs::read(&ledger_path).unwrap();
    let show = |label: &str, goal: &str, (median, rss): (Duration, Option<u64>)| {
        println!(
            "  {label:<44}  median {:>7}  peak RSS {:>8}   goal {goal}",
            ms(median),
            rss.map_or_else(
                || "?".to_owned(),
                |k| format!("{:.1} MB", k as f64 / 1024.0)
            ),
        );
    };
    let timed = |prepare: &dyn Fn(), extra: &[&str]| {
        let mut rss = None;
        let mut times = Vec::new();
        for _ in 0..args.runs.max(1) {
            prepare();
            let (wall, r) = run_with(&args.orch, root, extra);
            rss = rss.max(r);
            times.push(wall);
        }
        times.sort();
        (times[times.len() / 2], rss)
    };
    let big = n >= 1_000_000;
    show(
        "first call, no index (builds it)",
        if big { "<= 5 s, < 200 MB" } else { "-" },
        timed(&|| drop(std::fs::remove_file(&index)), &[]),
    );
    // Built: now warm.
    run_with(&args.orch, root, &[]);
    show(
        "warm index",
        if big { "-" } else { "<= 50 ms, < 30 MB" },
        timed(&|| {}, &[]),
    );
    // The index as it was 1,000 delegations ago, and the ledger since.
    let mut dispatched = 0;
    let finder = memchr::memmem::Finder::new(b"\"event\":\"dispatched\"");
    let mut cut = full.len();
    for i in memchr::memrchr_iter(b'\n', &full[..full.len().saturating_sub(1)]) {
        if finder.find(&full[i + 1..cut.min(full.len())]).is_some() {
            dispatched += 1;
        }
        cut = i + 1;
        if dispatched >= 1000 {
            break;
        }
    }
    std::fs::write(&ledger_path, &full[..cut]).unwrap();
    let _ = std::fs::remove_file(&index);
    run_with(&args.orch, root, &[]);
    let older = std::fs::read(&index).unwrap();
    std::fs::write(&ledger_path, &full).unwrap();
    show(
        "warm index + 1,000 new delegations",
        if big { "<= 100 ms, < 50 MB" } else { "-" },
        timed(&|| std::fs::write(&index, &older).unwrap(), &[]),
    );
    // The last day of the generated year.
    let last = full[..full.len() - 1]
        .rsplit(|&b| b == b'\n')
        .find_map(|l| {
            let s = std::str::from_utf8(l).ok()?;
            let v: serde_json::Value = serde_json::from_str(s).ok()?;
            v["ts"].as_str()?.parse::<jiff::Timestamp>().ok()
        })
        .unwrap();
    let since = (last - jiff::SignedDuration::from_hours(24)).to_string();
    show(
        "--since the last day (~2,700 delegations)",
        if big { "<= 50 ms" } else { "-" },
        timed(&|| {}, &["--since", &since]),
    );
}
