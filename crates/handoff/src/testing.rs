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
        Some(first_start(5, "nats-server", || {
            Self::spawn(&binary, options)
        }))
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
        let (child, log, ready_rx) = spawn_logged(binary, &conf_path, |_| {})?;
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

/// Runs `start` up to `tries` times and returns what the first success
/// started: a free port can be taken by someone else before the server
/// binds it.
///
/// # Panics
///
/// If every try fails, with the last reason.
fn first_start<T>(tries: usize, what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..tries {
        match start() {
            Ok(started) => return started,
            Err(e) => last = e,
        }
    }
    #[allow(clippy::panic)]
    {
        panic!("{what} did not start: {last}");
    }
}

/// Starts `nats-server -c conf` with its stderr drained by a thread (so a
/// chatty server never blocks on a full pipe) that hands every line to
/// `on_line`, keeps the first 400, and says on the receiver when "Server is
/// ready" (it accepts clients) was logged.
#[allow(clippy::type_complexity)]
fn spawn_logged(
    binary: &Path,
    conf: &Path,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> Result<(Child, JoinHandle<Vec<String>>, mpsc::Receiver<()>), String> {
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(conf)
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
    let (ready_tx, ready_rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Server is ready") {
                let _ = ready_tx.send(());
            }
            on_line(&line);
            if lines.len() < 400 {
                lines.push(line);
            }
        }
        lines
    });
    Ok((child, log, ready_rx))
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

/// A JetStream cluster of `nats-server` processes on loopback: each with
/// its own client port, route port and store directory, routes to all the
/// others, and `server_name` `n1`, `n2`, …. Nodes can be killed (`SIGKILL`,
/// as `kill -9`) and restarted with the same ports and storage. Every node
/// still running is killed (and waited for) on drop.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<ClusterNode>,
    /// What the nodes' logs said about leaders.
    leaders: std::sync::Arc<(std::sync::Mutex<Leaders>, std::sync::Condvar)>,
    dir: tempfile::TempDir,
}

/// The newest leaders the nodes' logs named.
#[derive(Debug, Default)]
struct Leaders {
    meta: Option<String>,
    /// Stream name → the node that last logged it became its leader.
    streams: std::collections::HashMap<String, String>,
}

#[derive(Debug)]
struct ClusterNode {
    name: String,
    port: u16,
    route_port: u16,
    child: Option<Child>,
    log: Option<JoinHandle<Vec<String>>>,
}

impl NatsCluster {
    /// Starts `size` nodes (3 for a quorum that survives one loss) and
    /// waits until the cluster has a JetStream metadata leader. `None`
    /// (after a notice) if `nats-server` is missing and this is not CI.
    ///
    /// # Panics
    ///
    /// If the binary is missing and `CI=true`, or the cluster does not come
    /// up.
    pub fn start(size: usize) -> Option<Self> {
        let binary = NatsServer::binary()?;
        Some(first_start(3, "the nats-server cluster", || {
            Self::try_start(&binary, size)
        }))
    }

    fn try_start(binary: &Path, size: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut nodes = Vec::with_capacity(size);
        // Hold every listener until all ports are chosen, so no two nodes
        // get the same one.
        let mut held = Vec::new();
        for i in 1..=size {
            let client = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
            let route = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
            nodes.push(ClusterNode {
                name: format!("n{i}"),
                port: client.local_addr().map_err(|e| e.to_string())?.port(),
                route_port: route.local_addr().map_err(|e| e.to_string())?.port(),
                child: None,
                log: None,
            });
            held.push((client, route));
        }
        drop(held);
        let mut cluster = Self {
            binary: binary.to_owned(),
            nodes,
            leaders: std::sync::Arc::default(),
            dir,
        };
        let mut ready = Vec::new();
        for i in 0..size {
            ready.push(cluster.spawn(i)?);
        }
        let deadline = Instant::now() + START_DEADLINE;
        for (i, rx) in ready.into_iter().enumerate() {
            if rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                let log = cluster.stop_node(i);
                return Err(format!(
                    "node n{} was not ready within {START_DEADLINE:?}; its log:\n{}",
                    i + 1,
                    log.join("\n")
                ));
            }
        }
        if cluster.wait_for_meta_leader(START_DEADLINE).is_none() {
            let log = cluster.stop_node(0);
            return Err(format!(
                "no JetStream metadata leader within {START_DEADLINE:?}; n1's log:\n{}",
                log.join("\n")
            ));
        }
        Ok(cluster)
    }

    /// Starts node `i` (again) with its config; the receiver says when it
    /// accepts clients.
    fn spawn(&mut self, i: usize) -> Result<mpsc::Receiver<()>, String> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| quote(&format!("nats-route://127.0.0.1:{}", n.route_port)))
            .collect();
        let node = &self.nodes[i];
        let store = self.dir.path().join(&node.name);
        let conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nmax_payload: {payload}\n\
             jetstream {{\n  store_dir: {store}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n\
             cluster {{\n  name: orch-test\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
            name = node.name,
            port = node.port,
            payload = 8 << 20,
            store = quote(&store.display().to_string()),
            route = node.route_port,
            routes = routes.join(", "),
        );
        let conf_path = self.dir.path().join(format!("{}.conf", node.name));
        std::fs::write(&conf_path, conf).map_err(|e| format!("writing the config: {e}"))?;
        let leaders = std::sync::Arc::clone(&self.leaders);
        let own = node.name.clone();
        let (child, log, ready_rx) = spawn_logged(&self.binary, &conf_path, move |line| {
            let meta = meta_leader_in(line, &own);
            let stream = stream_led_in(line);
            if meta.is_some() || stream.is_some() {
                let (lock, changed) = &*leaders;
                let mut leaders = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(name) = meta {
                    leaders.meta = Some(name);
                }
                if let Some(stream) = stream {
                    leaders.streams.insert(stream, own.clone());
                }
                changed.notify_all();
            }
        })?;
        let node = &mut self.nodes[i];
        node.child = Some(child);
        node.log = Some(log);
        Ok(ready_rx)
    }

    fn index(&self, name: &str) -> usize {
        #[allow(clippy::panic)]
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the cluster"))
    }

    fn stop_node(&mut self, i: usize) -> Vec<String> {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.log
            .take()
            .and_then(|log| log.join().ok())
            .unwrap_or_default()
    }

    /// Every node's client URL, comma-separated (for `store.url`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of one node.
    pub fn url(&self, name: &str) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[self.index(name)].port)
    }

    /// The node names, `n1`, `n2`, ….
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Kills node `name` with `SIGKILL` (as `kill -9`) and waits for it to
    /// exit. Returns its log.
    pub fn kill(&mut self, name: &str) -> Vec<String> {
        let i = self.index(name);
        self.stop_node(i)
    }

    /// Starts a killed node again with its ports and storage, and waits
    /// until it accepts clients.
    ///
    /// # Panics
    ///
    /// If it does not come up.
    pub fn restart(&mut self, name: &str) {
        let i = self.index(name);
        self.stop_node(i);
        #[allow(clippy::panic)]
        let ready = self
            .spawn(i)
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        if ready.recv_timeout(START_DEADLINE).is_err() {
            let log = self.stop_node(i);
            #[allow(clippy::panic)]
            {
                panic!("{name} did not restart; its log:\n{}", log.join("\n"));
            }
        }
    }

    /// The node that leads `stream` (e.g. `KV_orch`), as the newest log line
    /// about it says, waiting up to `timeout` for a leader other than
    /// `not` (a node just killed). `None` if there is none by then.
    pub fn stream_leader(
        &self,
        stream: &str,
        not: Option<&str>,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_leader(timeout, |l| {
            l.streams
                .get(stream)
                .filter(|n| Some(n.as_str()) != not)
                .cloned()
        })
    }

    /// Waits up to `timeout` for `pick` to find a leader in what the logs
    /// said (woken by each log line about a leader).
    fn wait_for_leader(
        &self,
        timeout: Duration,
        pick: impl Fn(&Leaders) -> Option<String>,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.leaders;
        let mut leaders = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(name) = pick(&leaders) {
                return Some(name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            leaders = changed
                .wait_timeout(leaders, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The newest JetStream metadata leader the nodes' logs named, waiting
    /// up to `timeout` for one. It may name a node that was killed since;
    /// see [`NatsCluster::wait_for_new_meta_leader`].
    pub fn wait_for_meta_leader(&self, timeout: Duration) -> Option<String> {
        self.wait_for_meta_leader_other_than(None, timeout)
    }

    /// Waits up to `timeout` until the logs name a metadata leader other
    /// than `old` (after `old` was killed).
    pub fn wait_for_new_meta_leader(&self, old: &str, timeout: Duration) -> Option<String> {
        self.wait_for_meta_leader_other_than(Some(old), timeout)
    }

    fn wait_for_meta_leader_other_than(
        &self,
        old: Option<&str>,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_leader(timeout, |l| {
            l.meta.clone().filter(|n| Some(n.as_str()) != old)
        })
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}

/// The stream whose new leader is the node logging
/// `… JetStream cluster new stream leader for '$G > KV_orch'`.
fn stream_led_in(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("new stream leader for '")?;
    let (_, stream) = rest.split_once(" > ")?;
    let stream = stream.split('\'').next()?.trim();
    (!stream.is_empty()).then(|| stream.to_owned())
}

/// The node a log line of node `own` names as the new JetStream metadata
/// leader: `… JetStream cluster new metadata leader: n2/orch-test` on the
/// others, `… Self is new JetStream cluster metadata leader` on the leader.
fn meta_leader_in(line: &str, own: &str) -> Option<String> {
    if line.contains("Self is new JetStream cluster metadata leader") {
        return Some(own.to_owned());
    }
    let (_, rest) = line.split_once("new metadata leader: ")?;
    let name = rest.split('/').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}
