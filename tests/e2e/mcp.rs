//! `orch mcp`: the MCP server over stdio, driven by a real MCP client (the
//! official Python SDK, `tests/mcp/client.py`) and by raw JSON-RPC lines
//! (malformed input, the tools' schemas).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;

use crate::{FAST_SIM, Orch, settings};

/// The Python with the `mcp` SDK: `$ORCH_MCP_PYTHON`, else the venv `.ci/run`
/// makes (`target/mcp-venv`). `None` (the test is skipped, saying why)
/// unless CI=true, where a missing one fails.
#[allow(clippy::print_stderr)]
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("ORCH_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-venv/bin/python3")
        });
    if path.exists() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "no Python with the MCP SDK at {} (.ci/run makes it: python3 -m venv target/mcp-venv && target/mcp-venv/bin/pip install mcp==2.3.0)",
        path.display()
    );
    eprintln!(
        "SKIPPED: no Python with the MCP SDK at {} (see .ci/run); CI=true makes this a failure",
        path.display()
    );
    None
}

#[test]
fn the_python_mcp_sdk_delegates_cancels_submits_and_runs_workflows() {
    let Some(python) = python() else { return };
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::create_dir_all(orch.store()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/client.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_orch"))
        .arg(orch.path(""))
        .arg(orch.store())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{stderr}"
    );
}

/// A server over pipes, spoken to line by line.
struct Raw {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Raw {
    fn start(orch: &Orch, agent: &str) -> Self {
        let mut child = orch
            .command()
            .args(["mcp", "--as", agent])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        let mut raw = Self { child, lines };
        raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}"#);
        assert_eq!(raw.answer()["result"]["serverInfo"]["name"], "orch");
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message from the server.
    fn answer(&mut self) -> serde_json::Value {
        let mut line = String::new();
        assert!(
            self.lines.read_line(&mut line).unwrap() > 0,
            "the server closed stdout"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn malformed_json_rpc_gets_an_error_and_the_server_keeps_serving() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let mut raw = Raw::start(&orch, "manager");
    // Not JSON: ignored (as the other official SDKs do); JSON that is no
    // request: a JSON-RPC error. Then it serves on.
    raw.send("this is not json");
    raw.send(r#"{"jsonrpc":"2.0","id":7,"bogus":true}"#);
    let e = raw.answer();
    assert_eq!(e["error"]["code"], -32600, "{e}");
    raw.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"delegate","arguments":{"agent":"webster"}}}"#);
    let missing = raw.answer();
    assert_eq!(missing["id"], 8);
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    raw.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delegate","arguments":{"agent":"webster","task":"still here?"}}}"#);
    let ok = raw.answer();
    assert_eq!(ok["id"], 9);
    assert_eq!(
        ok["result"]["structuredContent"]["status"], "complete",
        "{ok}"
    );
}

#[test]
fn the_tools_and_their_schemas() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let mut raw = Raw::start(&orch, "manager");
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let tools = raw.answer()["result"]["tools"].clone();
    settings().bind(|| insta::assert_json_snapshot!(tools));
}

#[test]
fn an_identity_that_is_no_agent_is_refused_at_start() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let run = orch.run(&["mcp", "--as", "operator"], Some(b""));
    assert_eq!(run.code, 2, "{}", run.transcript(&orch));
    assert!(
        run.stderr
            .contains("--as operator: not an agent of the registry"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "nothing but protocol on stdout");
    // The OpenClaw block for this agent: this binary, the store, a timeout
    // a delegation fits in.
    let printed = orch.ok(&["mcp", "--as", "webster", "--print-config", "openclaw"]);
    let block: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    let server = &block["mcp"]["servers"]["orch-webster"];
    assert_eq!(server["command"], env!("CARGO_BIN_EXE_orch"));
    assert_eq!(
        server["args"],
        serde_json::json!(["mcp", "--as", "webster"])
    );
    assert_eq!(
        server["env"]["ORCH_STORE"],
        format!("file://{}", orch.store().display())
    );
    assert!(
        server["requestTimeoutMs"].as_u64().unwrap() > 60_000,
        "{block}"
    );
}
