//! The harness shared by the end-to-end tests (`tests/e2e`) and the tests
//! against the real OpenClaw gateway (`tests/rig`): a temp store, the
//! `orch` binary with a clean environment, transcripts and redactions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temp store and the `orch` binary.
pub(crate) struct Orch {
    dir: tempfile::TempDir,
}

/// The outcome of one `orch` run.
pub(crate) struct Run {
    pub(crate) args: Vec<String>,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Orch {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The store root the binary is pointed at.
    pub(crate) fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A scratch path beside the store.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn command(&self) -> Command {
        self.command_for(env!("CARGO_BIN_EXE_orch"))
    }

    /// `program` (e.g. a shell that sets limits, then runs `orch`) with the
    /// environment `command` gives `orch`.
    pub(crate) fn command_for(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        // Agents run by the exec transport call `orch` too: put this build first.
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_orch"))
            .parent()
            .expect("binary dir")
            .to_path_buf();
        let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .expect("PATH");
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("ORCH_HANDOFF_DIR", self.store())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `orch args…` with `stdin`.
    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        self.run_env(args, stdin, &[])
    }

    /// Runs `orch args…` with `stdin` and extra environment variables.
    pub(crate) fn run_env(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn orch");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).expect("write stdin");
        }
        drop(pipe);
        let output = child.wait_with_output().expect("wait orch");
        self.finish(args, output)
    }

    /// Writes `orch.yaml` into the working directory (the binary finds it there).
    pub(crate) fn write_config(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("orch.yaml"), yaml).expect("write orch.yaml");
    }

    /// Lines of the ledger, parsed.
    pub(crate) fn ledger(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.store().join("ledger.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("ledger line"))
            .collect()
    }

    /// Appends the `dispatched` ledger line a delegation of `run_id` to
    /// `agent` writes (a sub-delegation if `parent` is set), so that
    /// `orch handoff submit` accepts answers to it as solicited.
    pub(crate) fn dispatched(&self, run_id: &str, agent: &str, parent: Option<&str>) {
        use std::io::Write as _;
        std::fs::create_dir_all(self.store()).expect("create store");
        let mut line = serde_json::json!({
            "ts": "2026-11-25T11:41:40Z",
            "event": "dispatched",
            "runId": run_id,
            "agent": agent,
            "caller": "manager",
            "attempt": 1,
            "detail": "via sim",
        });
        if let Some(parent) = parent {
            line["parent"] = parent.into();
        }
        let mut ledger = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store().join("ledger.jsonl"))
            .expect("open ledger");
        writeln!(ledger, "{line}").expect("append to ledger");
    }

    /// Runs `orch args…` with no stdin.
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args, None);
        assert_eq!(run.code, 0, "{}", run.transcript(self));
        run
    }

    pub(crate) fn finish(&self, args: &[&str], output: Output) -> Run {
        let run = Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        run.assert_terminal_safe(self);
        run.assert_no_panic(self);
        run
    }

    /// Files in the store (relative paths, sorted), for "nothing written" checks.
    pub(crate) fn store_files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.store(), &self.store(), &mut out);
        out.sort();
        out
    }
}

impl Run {
    /// Every run of every test: what `orch` writes for people (stderr
    /// always, stdout unless a machine format was asked for) holds no
    /// character that could drive a terminal (ESC, CR, NUL, BEL, bidi
    /// controls, …): hostile agent text is shown escaped.
    fn assert_terminal_safe(&self, orch: &Orch) {
        let unsafe_char = |c: char| orch_support::text::is_hazard(c) && c != '\n' && c != '\t';
        let machine = self
            .args
            .iter()
            .any(|a| a == "--json" || a == "json" || a == "prom");
        let streams = [("stderr", &self.stderr), ("stdout", &self.stdout)];
        for (name, text) in streams.into_iter().take(if machine { 1 } else { 2 }) {
            if let Some(c) = text.chars().find(|&c| unsafe_char(c)) {
                panic!(
                    "orch wrote {c:?} raw to {name}:\n{}",
                    orch_support::text::terminal(&self.transcript(orch))
                );
            }
        }
    }

    /// Every run of every test: orch never panicked, not even in a
    /// background task (its panic hook reports one as an internal error).
    fn assert_no_panic(&self, orch: &Orch) {
        assert!(
            !self.stderr.contains("internal error: a bug in orch")
                && !self.stderr.contains("panicked at")
                && !self.stderr.contains("RUST_BACKTRACE"),
            "orch panicked:\n{}",
            self.transcript(orch)
        );
    }

    /// Panics if `secret` (a token handed over in the environment) shows
    /// anywhere in the output.
    pub(crate) fn assert_hides(&self, orch: &Orch, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the token was printed:\n{}",
            self.transcript(orch)
        );
    }

    /// The run as a readable transcript with unstable parts redacted.
    pub(crate) fn transcript(&self, orch: &Orch) -> String {
        let text = format!(
            "$ orch {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
            self.args
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        redact(&text, orch)
    }
}

/// A fast sim fleet: the default agents and ACL, answers after 20 ms.
pub(crate) const FAST_SIM: &str = "
transports:
  sim: { kind: sim, delay: 20ms, slow_delay: 1h }
agents:
  manager:       { transport: sim, validator: auditor }
  tech-lead:     { transport: sim, validator: auditor }
  webster:       { transport: sim, validator: tech-lead }
  nx-expert:     { transport: sim, validator: tech-lead }
  study-builder: { transport: sim, validator: tech-lead }
  secretary:     { transport: sim, validator: manager }
  optimizer:     { transport: sim, validator: tech-lead }
  auditor:       { transport: sim, validator: manager }
";

/// Sends SIGINT to a child, as Ctrl-C at a terminal would.
pub(crate) fn interrupt(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("send SIGINT");
}

/// insta settings that redact run ids, durations and timings.
pub(crate) fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"orch-\d{8}T\d{6}Z-[0-9a-f]{8}", "[RUN]");
    s.add_filter(r"\b\d+\.\d{2}s\b", "[DUR]");
    s.add_filter(r#""(ackedMs|handoffMs|totalMs)": \d+"#, r#""$1": "[MS]""#);
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    s
}

/// Quotes an argument the way a reader would type it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c));
    if plain {
        arg.to_owned()
    } else {
        // Hostile arguments (tests pass escape sequences on purpose) are
        // shown escaped, so a transcript is safe to print too.
        format!(
            "'{}'",
            orch_support::text::one_line(&arg.replace('\'', r"'\''"))
        )
    }
}

/// Replaces the temp dir and RFC 3339 timestamps with stable markers.
pub(crate) fn redact(text: &str, orch: &Orch) -> String {
    let dir = orch.dir.path().display().to_string();
    let text = text.replace(&dir, "[TMP]");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // Timestamps look like 2026-11-25T11:41:40.123456Z.
    while let Some(pos) = rest.find("20") {
        let candidate = &rest[pos..];
        let len = timestamp_len(candidate);
        out.push_str(&rest[..pos]);
        if len > 0 {
            out.push_str("[TIMESTAMP]");
            rest = &candidate[len..];
        } else {
            out.push_str("20");
            rest = &candidate[2..];
        }
    }
    out.push_str(rest);
    out
}

fn timestamp_len(s: &str) -> usize {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() {
        return 0;
    }
    for (c, want) in b.iter().zip(shape) {
        let ok = match want {
            b'd' => c.is_ascii_digit(),
            w => c == w,
        };
        if !ok {
            return 0;
        }
    }
    let mut len = shape.len();
    if b.get(len) == Some(&b'.') {
        len += 1;
        while b.get(len).is_some_and(u8::is_ascii_digit) {
            len += 1;
        }
    }
    if b.get(len) == Some(&b'Z') {
        len += 1;
    }
    len
}
