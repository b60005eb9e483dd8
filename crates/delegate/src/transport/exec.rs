//! `exec`: run a local command as the agent (DESIGN §5).
//!
//! Any program or script can act as an agent: [`ExecTransport`] runs
//! `argv[0]` with `argv[1..]` (no shell) and the command writes the handoff,
//! directly (temp file in the same directory, then rename) or with `orch
//! handoff submit`.
//!
//! # What the command gets
//!
//! - **stdin:** the whole task message, then end of file. A command that
//!   does not read it is fine: a closed pipe (`EPIPE`) is ignored, and a
//!   command that exits without reading ends the write.
//! - **environment:** the inherited one without the variables of
//!   [`ExecConfig::remove_env`] (orch's own secrets: the CLI removes every
//!   variable it reads a token from) other than those
//!   [`ExecConfig::env_passthrough`] lets through, then
//!   [`ExecConfig::env`], then the protocol variables,
//!   which config cannot override:
//!
//!   | variable              | value |
//!   |-----------------------|-------|
//!   | `ORCH_RUN_ID`         | the run id |
//!   | `ORCH_HANDOFF_PATH`   | where to write the handoff ([`Envelope::handoff_location`]) |
//!   | `ORCH_HANDOFF_SCOPE`  | `top` or `sub` (pass `--sub` to `orch handoff submit` for `sub`) |
//!   | `ORCH_TASK`           | the task message (see below) |
//!   | `ORCH_AGENT`          | the agent id the command answers as |
//!   | `ORCH_CALLER`         | who delegated |
//!   | `ORCH_PARENT_RUN`     | this run's own id: whatever the command delegates with `orch delegate` is a sub-delegation of this run |
//!   | `ORCH_ATTEMPT`        | 1, or 2, 3, … for re-asks |
//!
//!   One environment string is limited to 128 KiB on Linux, so a message
//!   over [`ENV_TASK_LIMIT`] bytes is cut (at a character boundary) in
//!   `ORCH_TASK` and `ORCH_TASK_TRUNCATED=1` is set; stdin always carries the
//!   whole message. NUL characters, which no environment string can hold,
//!   are replaced by U+FFFD in `ORCH_TASK`.
//! - **working directory:** [`ExecConfig::cwd`], else orch's own.
//! - **process group:** its own (the command leads a new group), so that
//!   killing it also kills what it started. The command therefore does not
//!   receive the terminal's Ctrl-C directly; orch kills it when it is
//!   cancelled.
//!
//! # The run
//!
//! [`ExecTransport::dispatch`] returns when the command has *exited*, with
//! an [`Ack`] whose `remote_run_id` is `pid <pid>` and whose
//! [`Completion`] says how it ended (`ok` = exit status 0; `detail` = `exit
//! status N` or `killed by signal N`, then `; stderr: <tail>`), so the
//! delegator checks the store once instead of waiting out its deadline.
//!
//! The command never outlives its run:
//!
//! - When [`Envelope::timeout`] has passed since the dispatch started, its
//!   whole process group is killed (`SIGKILL`); the completion is then not
//!   `ok` and its detail says `killed after the … timeout`.
//! - When the command exits, whatever it left running in its process group
//!   is killed too: the agent's run is over.
//! - When the dispatch future is dropped (the delegation is cancelled), the
//!   process group is killed. The delegator keeps the future alive until the
//!   run ends, so dropping it means "stop now".
//!
//! stdout is drained and discarded (its size is logged at debug level) so a
//! chatty command never blocks on a full pipe; of stderr only the last
//! [`ExecConfig::stderr_tail_bytes`] bytes are kept (UTF-8, lossy). Once the
//! command has exited and its group is killed, the pipes are read to their
//! end for at most [`PIPE_DRAIN_GRACE`] (a process that left the group could
//! keep them open forever).
//!
//! Timing uses tokio's clock, but waiting for a process is I/O: with paused
//! test time, the timeout fires as soon as the runtime is idle. Test this
//! transport in real time.
//!
//! # Errors
//!
//! A command that cannot be started because it is missing, not executable
//! or its directory is missing is [`TransportError::Config`] (not
//! retryable: a missing binary stays missing); one that cannot be started
//! for lack of resources (`EAGAIN`, `EMFILE`, `ENFILE`, `ENOMEM`) is
//! [`TransportError::Connect`], which the delegator retries. Every other
//! outcome, including a non-zero exit, is a successful dispatch whose
//! completion is not `ok`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use orch_handoff::Scope;
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use crate::{Ack, Completion, DEFAULT_MAX_TASK_BYTES, Envelope, Transport, TransportError};

/// Default of [`ExecConfig::stderr_tail_bytes`].
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 2000;

/// Largest `ORCH_TASK` value, in bytes; longer messages are cut there (the
/// whole message is on stdin).
pub const ENV_TASK_LIMIT: usize = 100 * 1024;

/// How long the pipes are read after the command exited (or was killed)
/// before giving up on their end.
pub const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Settings of an [`ExecTransport`]. `Debug` shows the names of
/// [`ExecConfig::env`] but not their values, which may be secrets.
///
/// In serde (a `kind: exec` transport of `orch.yaml`): `command` (the
/// argv, required), `env`, `cwd`, `max_task_bytes` and `env_passthrough`;
/// unknown keys are refused. `remove_env` and `stderr_tail_bytes` are not
/// read: what to remove is the composition root's to say.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The command and its arguments; `argv[0]` is looked up in `PATH` if it
    /// has no `/`. No shell is involved.
    #[serde(rename = "command")]
    pub argv: Vec<String>,
    /// Variables added to the inherited environment (before the `ORCH_*`
    /// protocol variables, which they cannot override).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables removed from the inherited environment: the ones orch
    /// reads its secrets from (hook tokens, the Discord bot token, NATS
    /// tokens), which an agent must not inherit, except those
    /// [`ExecConfig::env_passthrough`] names. [`ExecConfig::env`] can still
    /// set one explicitly.
    #[serde(skip)]
    pub remove_env: BTreeSet<String>,
    /// Working directory of the command; `None`: orch's own.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// How many bytes of the end of stderr go into the completion detail.
    /// Default [`DEFAULT_STDERR_TAIL_BYTES`]; 0 keeps none.
    #[serde(skip, default = "default_stderr_tail_bytes")]
    pub stderr_tail_bytes: usize,
    /// Largest task message delivered ([`Transport::max_task_bytes`];
    /// default [`DEFAULT_MAX_TASK_BYTES`]).
    #[serde(default = "default_max_task_bytes")]
    pub max_task_bytes: u64,
    /// Variables of [`ExecConfig::remove_env`] this command still inherits
    /// (an agent that needs one of orch's tokens). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
}

fn default_stderr_tail_bytes() -> usize {
    DEFAULT_STDERR_TAIL_BYTES
}

fn default_max_task_bytes() -> u64 {
    DEFAULT_MAX_TASK_BYTES
}

impl ExecConfig {
    /// Runs `argv`, with no extra environment, in orch's directory.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The variables taken out of what the command inherits:
    /// [`ExecConfig::remove_env`] less [`ExecConfig::env_passthrough`].
    pub fn removed_env(&self) -> impl Iterator<Item = &str> {
        self.remove_env
            .iter()
            .filter(|v| !self.env_passthrough.contains(v))
            .map(String::as_str)
    }
}

/// No command yet (which [`ExecTransport::new`] refuses), no extra or
/// removed environment, orch's directory, a [`DEFAULT_STDERR_TAIL_BYTES`]
/// tail, [`DEFAULT_MAX_TASK_BYTES`] tasks.
impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            argv: Vec::new(),
            env: BTreeMap::new(),
            remove_env: BTreeSet::new(),
            cwd: None,
            stderr_tail_bytes: DEFAULT_STDERR_TAIL_BYTES,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            env_passthrough: Vec::new(),
        }
    }
}

impl fmt::Debug for ExecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecConfig")
            .field("argv", &self.argv)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("remove_env", &self.remove_env)
            .field("cwd", &self.cwd)
            .field("stderr_tail_bytes", &self.stderr_tail_bytes)
            .field("max_task_bytes", &self.max_task_bytes)
            .field("env_passthrough", &self.env_passthrough)
            .finish()
    }
}

/// Runs a local command for each task (see the module docs).
#[derive(Debug, Clone)]
pub struct ExecTransport {
    config: ExecConfig,
}

impl ExecTransport {
    /// A transport running `config.argv`. An empty `argv` or an empty
    /// program name is a [`TransportError::Config`]; whether the program
    /// exists is found out at dispatch.
    pub fn new(config: ExecConfig) -> Result<Self, TransportError> {
        match config.argv.first() {
            None => Err(TransportError::Config {
                message: "exec transport: the command (argv) is empty".into(),
            }),
            Some(program) if program.is_empty() => Err(TransportError::Config {
                message: "exec transport: the program name (argv[0]) is empty".into(),
            }),
            Some(_) => Ok(Self { config }),
        }
    }

    /// The transport's settings.
    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    fn command(&self, envelope: &Envelope) -> Command {
        let (program, args) = match self.config.argv.split_first() {
            Some((program, args)) => (program.as_str(), args),
            None => ("", &[][..]), // refused by `new`
        };
        let mut command = Command::new(program);
        command.args(args);
        if let Some(dir) = &self.config.cwd {
            command.current_dir(dir);
        }
        for var in self.config.removed_env() {
            command.env_remove(var);
        }
        command.envs(&self.config.env);
        let (task, truncated) = env_task(&envelope.message);
        let scope = match envelope.scope {
            Scope::Top => "top",
            Scope::Sub => "sub",
            Scope::Control => "control",
        };
        command
            .env("ORCH_RUN_ID", envelope.run_id.as_str())
            .env("ORCH_HANDOFF_PATH", &envelope.handoff_location)
            .env("ORCH_HANDOFF_SCOPE", scope)
            .env("ORCH_TASK", task)
            .env("ORCH_AGENT", &envelope.agent)
            .env("ORCH_CALLER", &envelope.caller)
            .env("ORCH_PARENT_RUN", envelope.run_id.as_str())
            .env("ORCH_ATTEMPT", envelope.attempt.to_string());
        if truncated {
            command.env("ORCH_TASK_TRUNCATED", "1");
        } else {
            command.env_remove("ORCH_TASK_TRUNCATED");
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    fn spawn_error(&self, e: io::Error) -> TransportError {
        let program = self.config.argv.first().map_or("", String::as_str);
        let place = match &self.config.cwd {
            Some(dir) => format!(" in {}", dir.display()),
            None => String::new(),
        };
        let message = format!("cannot start command {program:?}{place}: {e}");
        match Errno::from_io_error(&e) {
            Some(Errno::AGAIN | Errno::MFILE | Errno::NFILE | Errno::NOMEM) => {
                TransportError::Connect { message }
            }
            _ => TransportError::Config { message },
        }
    }
}

#[async_trait]
impl Transport for ExecTransport {
    fn name(&self) -> &str {
        "exec"
    }

    /// The command runs in a process group orch kills when it ends.
    fn outlives_sender(&self) -> bool {
        false
    }

    fn max_task_bytes(&self) -> u64 {
        self.config.max_task_bytes
    }

    async fn dispatch(&self, envelope: &Envelope) -> Result<Ack, TransportError> {
        let started = Instant::now();
        let deadline = started
            .checked_add(envelope.timeout)
            .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut child = self
            .command(envelope)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let pid = child.id();
        // Kills the whole group if this future is dropped before the end.
        let mut group = GroupKill::new(pid);
        tracing::debug!(run_id = %envelope.run_id, agent = %envelope.agent, ?pid, "exec command started");

        let run = run(
            &mut child,
            envelope,
            deadline,
            self.config.stderr_tail_bytes,
        )
        .await;
        group.kill();
        let (status, mut pipes) = match run {
            Run::Exited(status, pipes) => (status, pipes),
            Run::TimedOut(pipes) => {
                // The group kill covers the command; this covers a command
                // that left its group.
                if let Err(e) = child.start_kill() {
                    tracing::debug!(error = %e, "killing the exec command");
                }
                let status = tokio::time::timeout(PIPE_DRAIN_GRACE, child.wait()).await;
                (status.ok().and_then(Result::ok), pipes)
            }
        };
        pipes.drain().await;
        let tail = pipes.tail.finish();
        tracing::debug!(
            run_id = %envelope.run_id,
            ?pid,
            ?status,
            stdout_bytes = pipes.stdout_bytes,
            "exec command ended"
        );

        let timed_out = pipes.timed_out;
        let mut detail = if timed_out {
            let end = status.map(describe).unwrap_or_default();
            let end = if end.is_empty() {
                String::new()
            } else {
                format!(" ({end})")
            };
            format!("killed after the {:?} timeout{end}", envelope.timeout)
        } else {
            match status {
                Some(status) => describe(status),
                None => "the command's exit status is unknown".to_owned(),
            }
        };
        if !tail.is_empty() {
            detail.push_str("; stderr: ");
            detail.push_str(&tail);
        }
        let ok = !timed_out && status.is_some_and(|s| s.success());
        Ok(Ack {
            remote_run_id: pid.map(|pid| format!("pid {pid}")),
            completion: Some(Completion { ok, detail }),
        })
    }
}

/// How a command run ended.
enum Run {
    /// The command exited (`None`: waiting for it failed).
    Exited(Option<ExitStatus>, Pipes),
    /// The deadline passed first.
    TimedOut(Pipes),
}

/// Feeds stdin and reads stdout and stderr until the command exits or the
/// deadline passes.
async fn run(child: &mut Child, envelope: &Envelope, deadline: Instant, tail_bytes: usize) -> Run {
    let mut pipes = Pipes {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        tail: Tail::new(tail_bytes),
        stdout_bytes: 0,
        timed_out: false,
    };
    let feed = feed_stdin(child.stdin.take(), envelope.message.as_bytes());
    tokio::pin!(feed);
    let mut fed = false;
    let mut out_buf = vec![0_u8; 8192];
    let mut err_buf = vec![0_u8; 8192];
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = match status {
                    Ok(status) => Some(status),
                    Err(e) => {
                        tracing::warn!(run_id = %envelope.run_id, error = %e, "waiting for the exec command failed");
                        None
                    }
                };
                return Run::Exited(status, pipes);
            }
            () = &mut feed, if !fed => fed = true,
            n = read_some(&mut pipes.stdout, &mut out_buf), if pipes.stdout.is_some() => {
                pipes.stdout_bytes += n as u64;
            }
            n = read_some(&mut pipes.stderr, &mut err_buf), if pipes.stderr.is_some() => {
                pipes.tail.push(&err_buf[..n]);
            }
            () = tokio::time::sleep_until(deadline) => {
                pipes.timed_out = true;
                return Run::TimedOut(pipes);
            }
        }
    }
}

/// Writes the message to stdin and closes it; a command that does not read
/// it is not an error.
async fn feed_stdin(stdin: Option<ChildStdin>, message: &[u8]) {
    let Some(mut stdin) = stdin else { return };
    match stdin.write_all(message).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            tracing::debug!("the exec command closed its stdin before reading the whole task");
        }
        Err(e) => tracing::debug!(error = %e, "writing the task to the exec command's stdin"),
    }
    // Dropping `stdin` closes the pipe: end of file for the command.
}

/// Reads one chunk; end of file or an error closes the pipe (sets it to
/// `None`) and returns 0.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> usize {
    let Some(reader) = pipe else {
        return std::future::pending().await;
    };
    match reader.read(buf).await {
        Ok(0) => {
            *pipe = None;
            0
        }
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "reading an exec command's output");
            *pipe = None;
            0
        }
    }
}

/// The command's output pipes and what was kept of them.
struct Pipes {
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    tail: Tail,
    stdout_bytes: u64,
    timed_out: bool,
}

impl Pipes {
    /// Reads both pipes to their end, for at most [`PIPE_DRAIN_GRACE`].
    async fn drain(&mut self) {
        let mut out_buf = vec![0_u8; 8192];
        let mut err_buf = vec![0_u8; 8192];
        let drained = tokio::time::timeout(PIPE_DRAIN_GRACE, async {
            while self.stdout.is_some() || self.stderr.is_some() {
                tokio::select! {
                    n = read_some(&mut self.stdout, &mut out_buf), if self.stdout.is_some() => {
                        self.stdout_bytes += n as u64;
                    }
                    n = read_some(&mut self.stderr, &mut err_buf), if self.stderr.is_some() => {
                        self.tail.push(&err_buf[..n]);
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!("an exec command's output stayed open after it ended; stopped reading");
        }
        self.stdout = None;
        self.stderr = None;
    }
}

/// The last `limit` bytes of a stream, without keeping the rest.
#[derive(Debug)]
struct Tail {
    limit: usize,
    buf: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            cut: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.limit == 0 {
            self.cut |= !bytes.is_empty();
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Trim in amortised steps: the buffer stays under 2 × limit.
        if self.buf.len() > self.limit.saturating_mul(2) {
            let excess = self.buf.len() - self.limit;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    /// The tail as text: at most `limit` bytes, starting at a character
    /// boundary, trimmed, `…` in front when something was cut.
    fn finish(&self) -> String {
        let len = self.buf.len();
        let mut start = len.saturating_sub(self.limit);
        let cut = self.cut || start > 0;
        if cut {
            // Skip the rest of a character cut in half.
            while start < len && (self.buf[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        let text = String::from_utf8_lossy(&self.buf[start..]);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else if cut {
            format!("…{text}")
        } else {
            text.to_owned()
        }
    }
}

/// `exit status N` or `killed by signal N`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The `ORCH_TASK` value for `message` and whether it was cut.
fn env_task(message: &str) -> (String, bool) {
    let mut end = message.len().min(ENV_TASK_LIMIT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let truncated = end < message.len();
    (message[..end].replace('\0', "\u{FFFD}"), truncated)
}

/// Kills a command's process group (the command leads it) once: when told,
/// or on drop.
struct GroupKill {
    group: Option<Pid>,
}

impl GroupKill {
    fn new(pid: Option<u32>) -> Self {
        let group = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw);
        Self { group }
    }

    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            match rustix::process::kill_process_group(group, Signal::KILL) {
                Ok(()) | Err(Errno::SRCH) => {}
                Err(e) => {
                    tracing::warn!(group = group.as_raw_pid(), error = %e, "killing an exec command's process group")
                }
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_commands_are_refused() {
        assert_eq!(ExecConfig::default().stderr_tail_bytes, 2000);
        let err = ExecTransport::new(ExecConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "transport configuration: exec transport: the command (argv) is empty"
        );
        let err = ExecTransport::new(ExecConfig::new(["", "x"])).unwrap_err();
        assert!(matches!(err, TransportError::Config { .. }), "{err}");
        assert!(ExecTransport::new(ExecConfig::new(["true"])).is_ok());
    }

    #[test]
    fn a_config_reads_command_as_argv_and_refuses_other_keys() {
        use serde_json::json;
        let read = |json: serde_json::Value| serde_json::from_value::<ExecConfig>(json);
        let c = read(json!({
            "command": ["/bin/agent", "--fast"],
            "env": {"A": "1"},
            "env_passthrough": ["GW_TOKEN"],
        }))
        .unwrap();
        assert_eq!(c.argv, ["/bin/agent", "--fast"]);
        assert_eq!(
            ExecConfig {
                env: BTreeMap::new(),
                env_passthrough: Vec::new(),
                ..c.clone()
            },
            ExecConfig::new(["/bin/agent", "--fast"]),
            "the rest is the default"
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"command": ["/bin/agent", "--fast"], "env": {"A": "1"}, "cwd": null, "max_task_bytes": 262144, "env_passthrough": ["GW_TOKEN"]})
        );
        let missing = read(json!({})).unwrap_err().to_string();
        assert!(missing.contains("missing field `command`"), "{missing}");
        // What only the composition root decides is no key.
        for key in ["argv", "remove_env", "stderr_tail_bytes"] {
            let e = read(json!({"command": ["x"], key: []}))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
        }
    }

    #[test]
    fn passthrough_keeps_a_variable_remove_env_names() {
        let mut c = ExecConfig::new(["x"]);
        c.remove_env = ["A", "B", "C"].map(String::from).into();
        c.env_passthrough = vec!["B".into(), "D".into()];
        assert_eq!(c.removed_env().collect::<Vec<_>>(), ["A", "C"]);
    }

    #[test]
    fn the_tail_keeps_the_end_only() {
        let mut tail = Tail::new(10);
        tail.push(b"hello");
        assert_eq!(tail.finish(), "hello");
        for _ in 0..1000 {
            tail.push(b"0123456789abcdef\n");
        }
        assert!(tail.buf.len() <= 20 + 17, "{}", tail.buf.len());
        assert_eq!(tail.finish(), "…789abcdef");
        tail.push(b"  \n");
        assert_eq!(tail.finish(), "…abcdef");
    }

    #[test]
    fn the_tail_never_starts_inside_a_character() {
        let mut tail = Tail::new(5);
        tail.push("aaaaaaaééé".as_bytes()); // é is 2 bytes: the tail's 5 bytes start mid-character
        assert_eq!(tail.finish(), "…éé");
        let mut none = Tail::new(0);
        none.push(b"secret stuff");
        assert_eq!(none.finish(), "");
    }

    #[test]
    fn long_tasks_are_cut_in_the_environment() {
        assert_eq!(env_task("short"), ("short".to_owned(), false));
        assert_eq!(env_task("a\0b"), ("a\u{FFFD}b".to_owned(), false));
        let long = "é".repeat(ENV_TASK_LIMIT);
        let (task, truncated) = env_task(&long);
        assert!(truncated);
        assert!(task.len() <= ENV_TASK_LIMIT);
        assert!(task.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_debug_output_hides_env_values() {
        let mut config = ExecConfig::new(["agent"]);
        config.env.insert("API_TOKEN".into(), "s3cr3t".into());
        let debug = format!("{config:?}");
        assert!(debug.contains("API_TOKEN"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn statuses_are_described() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
