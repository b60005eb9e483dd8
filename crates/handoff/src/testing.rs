//! Test support (feature `testing`): [`NatsServer`], a throwaway
//! `nats-server` with JetStream on a free loopback port.
//!
//! Tests and benchmarks of the NATS store start their own server, never
//! touch one they did not start, and stop it when the guard drops. Where the
//! binary is missing they are skipped with a notice, except in CI
//! (`CI=true`), where a missing server is a failure: `.ci/run` installs
//! Debian's `nats-server`.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable naming the `nats-server` binary to use (default:
/// the first on `PATH`, then `/usr/sbin` and `/usr/bin`).
pub const NATS_SERVER_ENV: &str = "ORCH_NATS_SERVER";

/// How long a server may take to say it is ready.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// What kind of server to start.
#[derive(Clone, Debug)]
pub struct NatsServerOptions {
    /// Enable JetStream (with its storage in the server's temp directory).
    /// Default true.
    pub jetstream: bool,
    /// Require this token from clients. Default none.
    pub token: Option<String>,
    /// The server's `max_payload`, in bytes. Default 8 MiB (the server's
    /// own default, 1 MiB, is below the 4 MiB handoff cap).
    pub max_payload: u64,
}

impl Default for NatsServerOptions {
    fn default() -> Self {
        Self {
            jetstream: true,
            token: None,
            max_payload: 8 << 20,
        }
    }
}

/// A running `nats-server` on `127.0.0.1`, killed (and waited for) on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    log: Option<JoinHandle<Vec<String>>>,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream and an 8 MiB `max_payload`. `None`
    /// (after a notice on stderr) if `nats-server` is not installed and
    /// this is not CI.
    ///
    /// # Panics
    ///
    /// If the binary is missing and `CI=true`, or the server does not start.
    pub fn start() -> Option<Self> {
        Self::start_with(&NatsServerOptions::default())
    }

    /// Starts a server with `options` (see [`NatsServer::start`]).
    ///
    /// # Panics
    ///
    /// If the binary is missing and `CI=true`, or the server does not start.
    pub fn start_with(options: &NatsServerOptions) -> Option<Self> {
        let binary = Self::binary()?;
        let mut last = String::new();
        // A free port can be taken by someone else before the server binds
        // it: try a few.
        for _ in 0..5 {
            match Self::spawn(&binary, options) {
                Ok(server) => return Some(server),
                Err(e) => last = e,
            }
        }
        #[allow(clippy::panic)]
        {
            panic!("nats-server did not start: {last}");
        }
    }

    /// The `nats-server` binary; `None` (with a notice) if it is missing
    /// outside CI.
    ///
    /// # Panics
    ///
    /// If it is missing and the environment says `CI=true`.
    #[allow(clippy::print_stderr)]
    pub fn binary() -> Option<PathBuf> {
        if let Some(found) = find_binary() {
            return Some(found);
        }
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "nats-server is not installed, and CI=true makes that a failure: \
             `apt-get install -y nats-server` (or set {NATS_SERVER_ENV})"
        );
        eprintln!(
            "note: nats-server not found (PATH, /usr/sbin, /usr/bin, ${NATS_SERVER_ENV}): \
             skipping the NATS store tests; `apt-get install -y nats-server` runs them"
        );
        None
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's configuration and JetStream storage directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(binary: &Path, options: &NatsServerOptions) -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut conf = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: {}\n",
            options.max_payload
        );
        if options.jetstream {
            let store = dir.path().join("jetstream");
            conf.push_str(&format!(
                "jetstream {{\n  store_dir: {}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n",
                quote(&store.display().to_string())
            ));
        }
        if let Some(token) = &options.token {
            conf.push_str(&format!(
                "authorization {{\n  token: {}\n}}\n",
                quote(token)
            ));
        }
        let conf_path = dir.path().join("nats-server.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("writing the config: {e}"))?;
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {}: {e}", binary.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no stderr pipe".into());
        };
        // The server logs to stderr; "Server is ready" comes once it
        // accepts clients. The thread drains the pipe until the server
        // exits, so a chatty server never blocks on a full pipe.
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server is ready") {
                    let _ = ready_tx.send(());
                }
                if lines.len() < 200 {
                    lines.push(line);
                }
            }
            lines
        });
        let mut server = Self {
            child,
            port,
            log: Some(log),
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let ready = ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let accepting = ready.is_ok()
            && TcpStream::connect_timeout(
                &addr,
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
            .is_ok();
        if accepting {
            return Ok(server);
        }
        let log = server.stop();
        Err(format!(
            "not ready on port {port} within {START_DEADLINE:?}; its log:\n{}",
            log.join("\n")
        ))
    }

    /// Kills the server, waits for it, and returns what it logged.
    fn stop(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log
            .take()
            .and_then(|log| log.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A double-quoted string for the server's configuration format.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
