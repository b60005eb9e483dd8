//! Routing benchmark: `Bm25Router::rank` over the embedded default registry
//! (eight agents), and the cost of building the index.
//!
//! Run: `cargo bench -p orch-registry --bench route [-- --samples N]`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use orch_registry::{Bm25Router, Registry, Router};

const TASKS: &[&str] = &[
    "Find the CTE of Zerodur between 0 and 50 °C",
    "Check the thermal margins of the mirror mount",
    "Mesh the bracket and run a modal analysis in NX",
    "Set up a design-of-experiments study for the truss",
    "Run the optimization of the mirror thickness",
    "Audit the results of last week's FEA",
    "Write the minutes of today's meeting",
    "Coordinate the team and prioritise next week's work",
    "bake a chocolate cake",
];

fn main() {
    let mut samples = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--samples" {
            samples = args.next().and_then(|v| v.parse().ok()).unwrap_or(samples);
        } // cargo bench passes `--bench`
    }
    let registry = Registry::embedded_default();
    println!("orch-registry routing benchmark ({samples} samples each)");

    let build = measure(samples / 10, || {
        black_box(Bm25Router::new(black_box(&registry)));
    });
    report("build the index (8 agents)", &build);

    let router = Bm25Router::new(&registry);
    let candidates = registry.ids();
    let mut i = 0;
    let rank = measure(samples, || {
        let task = TASKS[i % TASKS.len()];
        i += 1;
        black_box(router.rank(black_box(task), black_box(&candidates)));
    });
    report("rank one task over 8 candidates", &rank);

    let long: String = TASKS.join(" ").repeat(20);
    let rank_long = measure(samples / 10, || {
        black_box(router.rank(black_box(&long), black_box(&candidates)));
    });
    report(
        &format!("rank a {}-character task", long.chars().count()),
        &rank_long,
    );
}

/// Sorted durations of `n` runs of `f` (after a short warm-up).
fn measure(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n.min(1000) {
        f();
    }
    let mut times: Vec<Duration> = (0..n.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

fn report(what: &str, sorted: &[Duration]) {
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[i].as_secs_f64() * 1e6
    };
    println!(
        "  {what:<40} p50 {:8.1} µs   p99 {:8.1} µs   max {:8.1} µs",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
