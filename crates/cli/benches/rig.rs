//! Round trip of `orch delegate` through the real OpenClaw gateway
//! (`../shared/rigs/openclaw`, fake model): p50/p99 over N sequential
//! delegations (default 24, after 2 warm-ups), and how long a silent run
//! (the agent's run ends without a handoff) takes to be reported.
//!
//! Run: `cargo bench -p orch-cli --bench rig [-- --n N]`. Each delegation is
//! a fresh `orch` process, as an agent or a script would run it.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

#[path = "../../../tests/rig/rig.rs"]
#[allow(dead_code)]
mod rig;

use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut n = 24usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--n" {
            n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        }
    }
    let scripts = rig::scripts();
    let t = Instant::now();
    let rig = match rig::Rig::start(&scripts, &["manager", "webster", "tech-lead"]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rig bench: the OpenClaw rig did not start: {e}");
            std::process::exit(if rig::in_ci() { 1 } else { 0 });
        }
    };
    println!("orch delegate through the real OpenClaw gateway (openclaw rig, fake model)");
    println!(
        "  machine: {} cores; gateway up in {:.1} s",
        cores(),
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orch.yaml"),
        format!(
            "transports:\n  gw: {{ kind: openclaw, url: '{}', token_env: OPENCLAW_HOOKS_TOKEN, wait_for_completion: true }}\n\
             agents:\n  manager: {{ transport: gw }}\n  webster: {{ transport: gw }}\n  tech-lead: {{ transport: gw }}\n",
            rig.url
        ),
    )
    .unwrap();
    let delegate = |agent: &str, task: &str| -> (Duration, i32) {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args([
                "delegate",
                agent,
                task,
                "--caller",
                "manager",
                "--timeout",
                "5m",
            ])
            .current_dir(dir.path())
            .env("OPENCLAW_HOOKS_TOKEN", &rig.token)
            .env("ORCH_HANDOFF_DIR", dir.path().join("store"))
            .output()
            .expect("run orch");
        (t.elapsed(), out.status.code().unwrap_or(-1))
    };

    let mut warm = Vec::new();
    for i in 0..2 {
        warm.push(delegate(
            "webster",
            &format!("Warm-up {i}: find the CTE of Zerodur"),
        ));
    }
    println!(
        "  warm-up: first {:.2} s, second {:.2} s (exit {}, {})",
        warm[0].0.as_secs_f64(),
        warm[1].0.as_secs_f64(),
        warm[0].1,
        warm[1].1
    );
    let mut times = Vec::new();
    let mut failed = 0;
    for i in 0..n {
        let (d, code) = delegate(
            "webster",
            &format!("Find the CTE of candidate #{i} between 0 and 50 °C"),
        );
        if code != 0 {
            failed += 1;
        }
        times.push(d);
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "  round trip over {n} delegations (process start → handoff read → exit): \
         p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s; {failed} not complete",
        pct(0.5).as_secs_f64(),
        pct(0.99).as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
    );
    let mut silent = Vec::new();
    for i in 0..3 {
        let (d, code) = delegate("tech-lead", &format!("Review #{i} [fake:silent]"));
        silent.push(format!("{:.2} s (exit {code})", d.as_secs_f64()));
    }
    println!(
        "  a silent run (no handoff; re-asked once, then failed), --timeout 5m: {}",
        silent.join(", ")
    );
    drop(rig);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
