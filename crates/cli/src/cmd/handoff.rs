//! `orch handoff submit|validate|show|wait`.

use std::io::Read;
use std::path::Path;

use orch_handoff::{
    Artifact, DEFAULT_MAX_HANDOFF_BYTES, Existing, Expect, Handoff, HandoffKey, PutMode, RunId,
    Scope, StoreError, WaitOutcome, parse_handoff,
};
use tokio::time::Instant;

use crate::args::{GlobalArgs, HandoffCmd, ShowArgs, SubmitArgs, ValidateArgs, WaitArgs};
use crate::exit::{CliError, Exit};
use crate::out;
use crate::wiring::{Setup, Store};

pub(crate) async fn run(global: &GlobalArgs, cmd: HandoffCmd) -> Result<Exit, CliError> {
    match cmd {
        HandoffCmd::Submit(args) => submit(global, args).await,
        HandoffCmd::Validate(args) => validate(args),
        HandoffCmd::Show(args) => show(global, args).await,
        HandoffCmd::Wait(args) => wait(global, args).await,
    }
}

/// Opens the store the config and global flags name.
pub(crate) async fn open_store(global: &GlobalArgs) -> Result<Store, CliError> {
    Setup::load(global)?.open_store().await
}

fn key(run_id: &str, sub: bool) -> Result<HandoffKey, CliError> {
    let run_id =
        RunId::new(run_id).map_err(|e| CliError::Usage(format!("run id {run_id:?}: {e}")))?;
    Ok(if sub {
        HandoffKey::sub(run_id)
    } else {
        HandoffKey::top(run_id)
    })
}

async fn submit(global: &GlobalArgs, args: SubmitArgs) -> Result<Exit, CliError> {
    let expected_run = args
        .run_id
        .as_deref()
        .map(|id| RunId::new(id).map_err(|e| CliError::Usage(format!("--run-id {id:?}: {e}"))))
        .transpose()?;
    let handoff = match &args.json {
        Some(path) => {
            let bytes = read_input(path)?;
            let expect = Expect {
                run_id: expected_run.as_ref(),
                agent: args.agent.as_deref(),
            };
            parse_handoff(&bytes, &expect)
                .map_err(|e| CliError::Usage(format!("{}: {e}", shown(path))))?
        }
        None => from_flags(&args, expected_run)?,
    };
    let store = open_store(global).await?;
    let key = if args.sub {
        HandoffKey::sub(handoff.run_id.clone())
    } else {
        HandoffKey::top(handoff.run_id.clone())
    };
    let location = store.location(&key);
    if !args.unsolicited {
        check_dispatched(&store, &key).await?;
    }
    if args.force {
        // An invalid answer already there is kept for inspection, not lost.
        match store.get(&key).await {
            Ok(_) => {}
            Err(StoreError::Invalid { .. }) => {
                store.quarantine(&key).await?;
            }
            Err(e) => return Err(e.into()),
        }
        store.put(key.scope, &handoff, PutMode::Replace).await?;
    } else {
        publish(&store, &key, &handoff).await?;
    }
    out::print(&format!(
        "submitted handoff for run {} ({} by {}) to {}\n",
        handoff.run_id,
        handoff.status.as_str(),
        out::one_line(&handoff.agent),
        out::one_line(&location)
    ))?;
    Ok(Exit::Ok)
}

/// Refuses a run id nobody dispatched (a typo would otherwise be stored
/// where no caller waits), and an answer in the wrong scope (`--sub`).
async fn check_dispatched(store: &Store, key: &HandoffKey) -> Result<(), CliError> {
    let Some(dispatched) = store.dispatched(&key.run_id).await? else {
        return Err(CliError::Usage(format!(
            "run {} was never dispatched: the {} has no delegation with this run id; \
             copy the run id given in your task, and the store it names (--store, or \
             ORCH_STORE as orch sets it for its agents), or pass --unsolicited to store an \
             answer nobody asked for",
            key.run_id,
            store.describe()
        )));
    };
    match (&dispatched.parent, key.scope) {
        (Some(parent), Scope::Top) => Err(CliError::Usage(format!(
            "run {} is a sub-delegation (of run {parent}): add --sub",
            key.run_id
        ))),
        (None, Scope::Sub) => Err(CliError::Usage(format!(
            "run {} is a top-level delegation, not a sub-delegation: drop --sub",
            key.run_id
        ))),
        _ => Ok(()),
    }
}

/// Stores `handoff` unless the run already has an answer: an exclusive
/// publish, so of agents racing to answer one run exactly one succeeds. A
/// file there that is not a valid handoff is moved aside (kept, never
/// deleted) and the publish tried again.
async fn publish(store: &Store, key: &HandoffKey, handoff: &Handoff) -> Result<(), CliError> {
    // Each round moves one invalid file aside; only writers racing to plant
    // invalid files could keep this going.
    for _ in 0..5 {
        let existing = match store.put(key.scope, handoff, PutMode::Create).await {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { existing, .. }) => existing,
            Err(e) => return Err(e.into()),
        };
        // Read it again to tell a valid answer from a file to move aside.
        let existing = if existing.is_valid() {
            existing
        } else {
            match store.get(key).await {
                Ok(Some(h)) => Existing::handoff(&h),
                Ok(None) => continue,
                Err(
                    StoreError::Invalid { .. }
                    | StoreError::TooLarge { .. }
                    | StoreError::Symlink { .. },
                ) => {
                    store.quarantine(key).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        return Err(CliError::Usage(format!(
            "run {} already has an answer: {existing} at {}; nothing was written (pass --force to replace it)",
            key.run_id,
            store.location(key)
        )));
    }
    Err(CliError::Usage(format!(
        "run {}: invalid files keep appearing at {}; nothing was written",
        key.run_id,
        store.location(key)
    )))
}

/// Builds a handoff from `--run-id --agent --status --result …` and checks
/// it with the same parser every reader uses.
fn from_flags(args: &SubmitArgs, run_id: Option<RunId>) -> Result<Handoff, CliError> {
    let missing = |flag: &str| CliError::Usage(format!("{flag} is required without --json"));
    let run_id = run_id.ok_or_else(|| missing("--run-id"))?;
    let agent = args.agent.clone().ok_or_else(|| missing("--agent"))?;
    if agent.trim().is_empty() {
        return Err(CliError::Usage(
            "--agent is empty: give the id of the agent that did the task".into(),
        ));
    }
    orch_handoff::validate_id(&agent)
        .map_err(|e| CliError::Usage(format!("--agent is not an agent id: {e}")))?;
    let status = args.status.ok_or_else(|| missing("--status"))?;
    let result = match (&args.result, &args.result_file) {
        (Some(text), _) if text == "-" => read_text(Path::new("-"))?,
        (Some(text), _) => text.clone(),
        (None, Some(path)) => read_text(path)?,
        (None, None) => {
            return Err(CliError::Usage(
                "give the result with --result TEXT, --result-file FILE or --result - (stdin)"
                    .into(),
            ));
        }
    };
    let mut handoff = Handoff::new(run_id, agent, status.into(), result);
    handoff.confidence = args.confidence.map(Into::into);
    handoff.notes = args.notes.clone().unwrap_or_default();
    handoff.artifacts = args
        .artifacts
        .iter()
        .cloned()
        .map(Artifact::Plain)
        .collect();
    let bytes = handoff.to_json_pretty();
    parse_handoff(&bytes, &Expect::default())
        .map_err(|e| CliError::Usage(format!("invalid handoff: {e}")))
}

fn validate(args: ValidateArgs) -> Result<Exit, CliError> {
    let run_id = args
        .run_id
        .as_deref()
        .map(|id| RunId::new(id).map_err(|e| CliError::Usage(format!("--run-id {id:?}: {e}"))))
        .transpose()?;
    let bytes = read_input(&args.file)?;
    let expect = Expect {
        run_id: run_id.as_ref(),
        agent: args.agent.as_deref(),
    };
    let handoff = parse_handoff(&bytes, &expect)
        .map_err(|e| CliError::Usage(format!("{}: {e}", shown(&args.file))))?;
    out::print(&format!(
        "{}: valid handoff for run {} ({} by {})\n",
        out::one_line(&shown(&args.file)),
        handoff.run_id,
        handoff.status.as_str(),
        out::one_line(&handoff.agent)
    ))?;
    Ok(Exit::Ok)
}

async fn show(global: &GlobalArgs, args: ShowArgs) -> Result<Exit, CliError> {
    let key = key(&args.run_id, args.sub)?;
    let store = open_store(global).await?;
    match store.get(&key).await? {
        Some(handoff) => {
            print_handoff(&handoff, args.json)?;
            Ok(Exit::Ok)
        }
        None => Err(CliError::Usage(format!(
            "no handoff for run {} at {}",
            key.run_id,
            store.location(&key)
        ))),
    }
}

async fn wait(global: &GlobalArgs, args: WaitArgs) -> Result<Exit, CliError> {
    let key = key(&args.run_id, args.sub)?;
    let store = open_store(global).await?;
    let deadline = Instant::now() + args.timeout;
    match store.wait(&key, deadline).await? {
        WaitOutcome::Landed(handoff) => {
            print_handoff(&handoff, args.json)?;
            Ok(Exit::for_status(handoff.status))
        }
        WaitOutcome::Invalid(e) => Err(CliError::Usage(format!("{}: {e}", store.location(&key)))),
        outcome @ (WaitOutcome::TimedOut | WaitOutcome::TimedOutIncomplete(_)) => {
            let partial = match outcome {
                WaitOutcome::TimedOutIncomplete(e) => format!(": a partial file was seen ({e})"),
                _ => String::new(),
            };
            out::note(&format!(
                "timed out after {} waiting for {}{partial}",
                crate::args::format_duration(args.timeout),
                store.location(&key)
            ));
            Ok(Exit::TimedOut)
        }
    }
}

fn print_handoff(handoff: &Handoff, json: bool) -> Result<(), CliError> {
    if json {
        return out::print_json(handoff);
    }
    out::print(&render(handoff))
}

/// The human rendering of a handoff.
pub(crate) fn render(h: &Handoff) -> String {
    let mut s = format!("handoff {}\n", h.run_id);
    row(&mut s, "agent", &h.agent);
    row(&mut s, "status", h.status.as_str());
    render_details(h, &mut s);
    s
}

/// One aligned `key  value` line; the value stays on it (hostile
/// characters and line breaks escaped).
pub(crate) fn row(s: &mut String, key: &str, value: &str) {
    s.push_str(&format!("  {key:<11} {}\n", out::one_line(value)));
}

/// An aligned `key  value` entry whose value may span lines: each further
/// line is indented under the first (hostile characters escaped).
pub(crate) fn block_row(s: &mut String, key: &str, value: &str) {
    for (i, line) in out::terminal(value.trim_end()).lines().enumerate() {
        let key = if i == 0 { key } else { "" };
        s.push_str(&format!("  {key:<11} {line}\n"));
    }
}

/// Confidence, timestamp, artifacts, notes, unknown fields, then the result.
pub(crate) fn render_details(h: &Handoff, s: &mut String) {
    let confidence = h.confidence.map_or("(not stated)", |c| match c {
        orch_handoff::Confidence::High => "high",
        orch_handoff::Confidence::Medium => "medium",
        orch_handoff::Confidence::Low => "low",
    });
    row(s, "confidence", confidence);
    if let Some(ts) = &h.timestamp {
        row(s, "timestamp", ts);
    }
    for (i, artifact) in h.artifacts.iter().enumerate() {
        let text = match artifact {
            Artifact::Plain(a) => a.clone(),
            Artifact::Ref(r) => r.path.clone().or_else(|| r.url.clone()).unwrap_or_default(),
        };
        row(s, if i == 0 { "artifacts" } else { "" }, &text);
    }
    if !h.notes.trim().is_empty() {
        block_row(s, "notes", &h.notes);
    }
    // `simulated` is the sim fleet's marker, said in words instead.
    let keys: Vec<&str> = h
        .extra
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "simulated")
        .collect();
    if !keys.is_empty() {
        row(s, "extra", &keys.join(", "));
    }
    s.push('\n');
    s.push_str(&out::terminal(h.result.trim_end()));
    s.push('\n');
}

fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads a handoff document from a file or stdin (`-`), refusing anything
/// over the size cap without reading all of it.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let cap = DEFAULT_MAX_HANDOFF_BYTES;
    let mut bytes = Vec::new();
    let res = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map(drop)
    } else {
        open_regular(path)?
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map(drop)
    };
    res.map_err(|e| CliError::Usage(format!("cannot read {}: {e}", shown(path))))?;
    if bytes.len() as u64 > cap {
        return Err(CliError::Usage(format!(
            "{}: handoff is larger than the {cap}-byte limit",
            shown(path)
        )));
    }
    Ok(bytes)
}

/// Opens a file the user named, refusing at once anything that is not a
/// regular file: reading a FIFO would wait for a writer forever, a device
/// could be endless. `O_NONBLOCK` keeps the open itself from blocking on a
/// FIFO; it does not change reads of a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", shown(path)));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(CliError::Usage(format!(
            "{}: not a regular file (a FIFO, device or directory); give the handoff as a file or on stdin (`-`)",
            shown(path)
        )));
    }
    Ok(file)
}

/// Reads result text from a file or stdin (`-`); it must be UTF-8.
fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = read_input(path)?;
    String::from_utf8(bytes).map_err(|e| {
        CliError::Usage(format!(
            "{}: the result is not UTF-8 (invalid byte at offset {})",
            shown(path),
            e.utf8_error().valid_up_to()
        ))
    })
}
