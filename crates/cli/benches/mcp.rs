//! `orch mcp`: the tool-call overhead of `delegate` over stdio against a
//! zero-delay sim agent (p50/p99 over N sequential calls, default 1,000),
//! beside the same delegation as a fresh `orch delegate` process (p50/p99
//! over 50), and the server's memory idle and with 1,000 delegations in
//! flight (`delegate_start` of a slow sim agent).
//!
//! Run: `cargo bench -p orch-cli --bench mcp [-- --n N]`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "
transports:
  sim: { kind: sim, delay: 0ms, slow_delay: 1h }
agents:
  manager: { transport: sim }
  webster: { transport: sim }
";

struct Server {
    child: Child,
    stdin: ChildStdin,
    lines: BufReader<ChildStdout>,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["mcp", "--as", "manager"])
            .current_dir(dir)
            .env("ORCH_HANDOFF_DIR", dir.join("store"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        let mut s = Self {
            child,
            stdin,
            lines,
        };
        s.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#);
        s.read();
        s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        s
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// VmRSS and VmHWM of the server, in kB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(id: usize, tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    )
}

fn percentiles(mut xs: Vec<Duration>) -> (f64, f64) {
    xs.sort();
    let at = |q: f64| {
        let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
        xs[i].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.99))
}

/// `delegate` through the server, `n` sequential calls, beside a fresh
/// `orch delegate` process 50 times, on the store under `dir`.
fn compare(server: &mut Server, dir: &std::path::Path, n: usize) {
    // Warm-up: the first delegation starts the store's watcher.
    for i in 0..10 {
        server.send(&call(
            i + 1,
            "delegate",
            r#"{"agent":"webster","task":"warm up"}"#,
        ));
        server.read();
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        server.send(&call(
            100 + i,
            "delegate",
            r#"{"agent":"webster","task":"CTE of ULE at 20 C?"}"#,
        ));
        let answer = server.read();
        times.push(t.elapsed());
        assert_eq!(
            answer["result"]["structuredContent"]["status"], "complete",
            "{answer}"
        );
    }
    let (p50, p99) = percentiles(times);
    println!("  MCP tool call `delegate`, {n} sequential calls: p50 {p50:.3} ms, p99 {p99:.3} ms");

    let fresh_n = 50;
    let mut fresh = Vec::with_capacity(fresh_n);
    for _ in 0..fresh_n {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args([
                "delegate",
                "webster",
                "CTE of ULE at 20 C?",
                "--caller",
                "manager",
            ])
            .current_dir(dir)
            .env("ORCH_HANDOFF_DIR", dir.join("store"))
            .output()
            .unwrap();
        fresh.push(t.elapsed());
        assert!(out.status.success(), "{out:?}");
    }
    let (f50, f99) = percentiles(fresh);
    println!(
        "  fresh `orch delegate` process, {fresh_n} runs: p50 {f50:.3} ms, p99 {f99:.3} ms: the MCP path is {:.1}× faster at p50 (goal ≥ 10×: {})",
        f50 / p50,
        if f50 / p50 >= 10.0 { "PASS" } else { "FAIL" }
    );
}

fn main() {
    let mut n = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--n" {
            n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orch.yaml"), CONFIG).unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();

    println!(
        "orch mcp: `delegate` over stdio against a zero-delay sim agent (2 cores, this machine's disk)"
    );
    let mut server = Server::start(dir.path());
    let (idle_rss, _) = server.memory();
    compare(&mut server, dir.path(), n);

    // The same on a store in tmpfs, where `fsync` costs nothing: the sim
    // agent's answer is a durable write (two fsyncs), the floor of both
    // paths on a disk; without it, what is left is orch's own overhead
    // (process start and config load against one tool call).
    if std::path::Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        std::fs::write(shm.path().join("orch.yaml"), CONFIG).unwrap();
        std::fs::create_dir_all(shm.path().join("store")).unwrap();
        println!("the same with the store in tmpfs (/dev/shm: fsync free; orch's own overhead)");
        let mut shm_server = Server::start(shm.path());
        compare(&mut shm_server, shm.path(), n);
    }

    // 1,000 delegations in flight: slow sim agents that answer in an hour.
    let inflight = 1000;
    for i in 0..inflight {
        server.send(&call(
            10_000 + i,
            "delegate_start",
            r#"{"agent":"webster","task":"[sim:slow] held"}"#,
        ));
    }
    for _ in 0..inflight {
        let answer = server.read();
        assert!(
            answer["result"]["structuredContent"]["runId"].is_string(),
            "{answer}"
        );
    }
    let (rss, hwm) = server.memory();
    println!(
        "  memory: idle {:.1} MB; with {inflight} delegations in flight {:.1} MB (peak {:.1} MB)",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
