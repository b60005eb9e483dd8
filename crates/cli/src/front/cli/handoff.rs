//! `orch handoff submit|validate|show|wait`.

use std::io::Read;
use std::path::Path;

use orch_handoff::{
    Artifact, DEFAULT_MAX_HANDOFF_BYTES, Expect, Handoff, HandoffKey, RunId, parse_handoff,
};

use crate::app;
use crate::app::handoff::{HandoffFields, SubmitRequest, Waited};

use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{
    GlobalArgs, HandoffCmd, ShowArgs, SubmitArgs, ValidateArgs, WaitArgs,
};
use crate::front::out;

pub(crate) async fn run(global: &GlobalArgs, cmd: HandoffCmd) -> Result<Exit, AppError> {
    match cmd {
        HandoffCmd::Submit(args) => submit(global, args).await,
        HandoffCmd::Validate(args) => validate(args),
        HandoffCmd::Show(args) => show(global, args).await,
        HandoffCmd::Wait(args) => wait(global, args).await,
    }
}

fn key(run_id: &str, sub: bool) -> Result<HandoffKey, AppError> {
    let run_id =
        RunId::new(run_id).map_err(|e| AppError::Usage(format!("run id {run_id:?}: {e}")))?;
    Ok(app::handoff::key_of(run_id, sub))
}

async fn submit(global: &GlobalArgs, args: SubmitArgs) -> Result<Exit, AppError> {
    let expected_run = args
        .run_id
        .as_deref()
        .map(|id| RunId::new(id).map_err(|e| AppError::Usage(format!("--run-id {id:?}: {e}"))))
        .transpose()?;
    let handoff = match &args.json {
        Some(path) => {
            let bytes = read_input(path)?;
            let expect = Expect {
                run_id: expected_run.as_ref(),
                agent: args.agent.as_deref(),
            };
            parse_handoff(&bytes, &expect)
                .map_err(|e| AppError::Usage(format!("{}: {e}", shown(path))))?
        }
        None => from_flags(&args, expected_run)?,
    };
    let request = SubmitRequest {
        handoff,
        sub: args.sub,
        force: args.force,
        unsolicited: args.unsolicited,
    };
    let submitted = app::handoff::submit(&Setup::load(&global.settings())?, request).await?;
    out::print(&format!(
        "submitted handoff for run {} ({} by {}) to {}\n",
        submitted.run_id,
        submitted.status.as_str(),
        out::one_line(&submitted.agent),
        out::one_line(&submitted.location)
    ))?;
    Ok(Exit::Ok)
}

/// Builds a handoff from `--run-id --agent --status --result …` and checks
/// it with the same parser every reader uses.
fn from_flags(args: &SubmitArgs, run_id: Option<RunId>) -> Result<Handoff, AppError> {
    let missing = |flag: &str| AppError::Usage(format!("{flag} is required without --json"));
    let run_id = run_id.ok_or_else(|| missing("--run-id"))?;
    let agent = args.agent.clone().ok_or_else(|| missing("--agent"))?;
    app::handoff::check_agent(&agent)?;
    let status = args.status.ok_or_else(|| missing("--status"))?;
    let result = match (&args.result, &args.result_file) {
        (Some(text), _) if text == "-" => read_text(Path::new("-"))?,
        (Some(text), _) => text.clone(),
        (None, Some(path)) => read_text(path)?,
        (None, None) => {
            return Err(AppError::Usage(
                "give the result with --result TEXT, --result-file FILE or --result - (stdin)"
                    .into(),
            ));
        }
    };
    HandoffFields {
        run_id,
        agent,
        status: status.into(),
        result,
        confidence: args.confidence.map(Into::into),
        notes: args.notes.clone().unwrap_or_default(),
        artifacts: args.artifacts.clone(),
    }
    .build()
}

fn validate(args: ValidateArgs) -> Result<Exit, AppError> {
    let run_id = args
        .run_id
        .as_deref()
        .map(|id| RunId::new(id).map_err(|e| AppError::Usage(format!("--run-id {id:?}: {e}"))))
        .transpose()?;
    let bytes = read_input(&args.file)?;
    let expect = Expect {
        run_id: run_id.as_ref(),
        agent: args.agent.as_deref(),
    };
    let handoff = parse_handoff(&bytes, &expect)
        .map_err(|e| AppError::Usage(format!("{}: {e}", shown(&args.file))))?;
    out::print(&format!(
        "{}: valid handoff for run {} ({} by {})\n",
        out::one_line(&shown(&args.file)),
        handoff.run_id,
        handoff.status.as_str(),
        out::one_line(&handoff.agent)
    ))?;
    Ok(Exit::Ok)
}

async fn show(global: &GlobalArgs, args: ShowArgs) -> Result<Exit, AppError> {
    let key = key(&args.run_id, args.sub)?;
    let handoff = app::handoff::show(&Setup::load(&global.settings())?, &key).await?;
    print_handoff(&handoff, args.json)?;
    Ok(Exit::Ok)
}

async fn wait(global: &GlobalArgs, args: WaitArgs) -> Result<Exit, AppError> {
    let key = key(&args.run_id, args.sub)?;
    match app::handoff::wait(&Setup::load(&global.settings())?, &key, args.timeout).await? {
        Waited::Landed(handoff) => {
            print_handoff(&handoff, args.json)?;
            Ok(Exit::for_status(handoff.status))
        }
        Waited::TimedOut { location, partial } => {
            let partial = partial
                .map(|e| format!(": a partial file was seen ({e})"))
                .unwrap_or_default();
            out::note(&format!(
                "timed out after {} waiting for {location}{partial}",
                crate::front::cli::args::format_duration(args.timeout),
            ));
            Ok(Exit::TimedOut)
        }
    }
}

fn print_handoff(handoff: &Handoff, json: bool) -> Result<(), AppError> {
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
fn read_input(path: &Path) -> Result<Vec<u8>, AppError> {
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
    res.map_err(|e| AppError::Usage(format!("cannot read {}: {e}", shown(path))))?;
    if bytes.len() as u64 > cap {
        return Err(AppError::Usage(format!(
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
fn open_regular(path: &Path) -> Result<std::fs::File, AppError> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| AppError::Usage(format!("cannot read {}: {e}", shown(path)));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(AppError::Usage(format!(
            "{}: not a regular file (a FIFO, device or directory); give the handoff as a file or on stdin (`-`)",
            shown(path)
        )));
    }
    Ok(file)
}

/// Reads result text from a file or stdin (`-`); it must be UTF-8.
fn read_text(path: &Path) -> Result<String, AppError> {
    let bytes = read_input(path)?;
    String::from_utf8(bytes).map_err(|e| {
        AppError::Usage(format!(
            "{}: the result is not UTF-8 (invalid byte at offset {})",
            shown(path),
            e.utf8_error().valid_up_to()
        ))
    })
}
