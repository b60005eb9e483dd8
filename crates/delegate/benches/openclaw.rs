//! `openclaw` transport round trips through the fake OpenClaw gateway on
//! loopback: what the transport and its HTTP client cost per delegation
//! (the real gateway adds its own agent runtime, ~1.4 s per delegation in
//! the rig).
//!
//! Run: `cargo bench -p orch-delegate --bench openclaw --features testing [-- --samples N]`.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use orch_delegate::orch_handoff::{RunId, Scope};
use orch_delegate::testing::{FakeGateway, FakeGatewayOptions};
use orch_delegate::transport::openclaw::{OpenClawConfig, OpenClawTransport};
use orch_delegate::{Envelope, Secret, Transport};

const TOKEN: &str = "bench-hook-token";
const WARMUP: usize = 100;

fn main() {
    let mut samples = 2_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--samples" {
            samples = args.next().and_then(|v| v.parse().ok()).unwrap_or(samples);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(samples));
}

async fn run(samples: usize) {
    let dir = tempfile::tempdir().unwrap();
    let gw = FakeGateway::start(FakeGatewayOptions::new(TOKEN, ["webster"]))
        .await
        .unwrap();
    let transport = |wait: bool| {
        let mut config = OpenClawConfig::new(gw.url(), Secret::new(TOKEN));
        config.wait_for_completion = wait;
        OpenClawTransport::new(config).unwrap()
    };
    println!("orch-delegate openclaw transport benchmark");
    println!(
        "  machine: {} cores; fake gateway on {}; multi-thread runtime, 2 workers",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        gw.url()
    );
    println!("  {samples} sequential requests per case after {WARMUP} warm-up; ~2 KiB messages");
    println!();
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9}",
        "case", "p50", "p99", "max", "req/s"
    );

    let admit = transport(false);
    let times = measure(samples, |i| {
        let env = envelope(dir.path(), &format!("ack-{i}"));
        let admit = &admit;
        async move {
            let ack = admit.dispatch(&env).await.unwrap();
            assert!(ack.remote_run_id.is_some());
        }
    })
    .await;
    report("dispatch -> ack (admission)", &times);

    let wait = transport(true);
    let times = measure(samples, |i| {
        let env = envelope(dir.path(), &format!("done-{i}"));
        let wait = &wait;
        async move {
            let ack = wait.dispatch(&env).await.unwrap();
            assert!(ack.completion.is_some_and(|c| c.ok));
            assert!(Path::new(&env.handoff_location).exists());
        }
    })
    .await;
    report("dispatch -> handoff file present (wait)", &times);

    let replayed = envelope(dir.path(), "done-0");
    let times = measure(samples, |_| {
        let env = replayed.clone();
        let wait = &wait;
        async move {
            wait.dispatch(&env).await.unwrap();
        }
    })
    .await;
    report("retry of a known Idempotency-Key (replay)", &times);

    println!();
    println!(
        "  runs started: {} (expected {}: replays start none)",
        gw.runs_started(),
        2 * (samples + WARMUP)
    );
    gw.shutdown().await;
}

async fn measure<F, Fut>(samples: usize, mut one: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..WARMUP {
        one(samples + i).await;
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        one(i).await;
        times.push(start.elapsed());
    }
    times
}

fn report(case: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    let total: Duration = times.iter().sum();
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9.0}",
        case,
        fmt(at(0.50)),
        fmt(at(0.99)),
        fmt(sorted[sorted.len() - 1]),
        times.len() as f64 / total.as_secs_f64()
    );
}

fn fmt(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

fn envelope(dir: &Path, run: &str) -> Envelope {
    let handoff = dir.join(format!("{run}.json"));
    let task = "Summarise the design of the handoff store in five bullet points. ".repeat(30);
    Envelope {
        run_id: RunId::new(run).unwrap(),
        agent: "webster".to_owned(),
        caller: "main".to_owned(),
        message: format!(
            "[orch run {run}] write your handoff to {}\n\n{task}",
            handoff.display()
        ),
        handoff_location: handoff.display().to_string(),
        timeout: Duration::from_secs(120),
        parent: None,
        scope: Scope::Top,
        attempt: 1,
    }
}
