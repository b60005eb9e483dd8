//! `orch delegate <agent> "<task>" --caller X`.

use std::time::Duration;

use orch_delegate::orch_handoff::RunId;
use orch_delegate::{DelegateError, End, Outcome, OutcomeStatus, Request, TransportError};

use crate::args::{DelegateArgs, GlobalArgs};
use crate::cmd::handoff::{block_row, render_details, row};
use crate::cmd::{context, route};
use crate::exit::{CliError, Exit};
use crate::out;
use crate::wiring::Setup;

pub(crate) async fn run(global: &GlobalArgs, args: DelegateArgs) -> Result<Exit, CliError> {
    let setup = Setup::load(global)?;
    let registry = setup.registry()?;
    let task = if args.task == "-" {
        read_stdin_task()?
    } else {
        args.task.clone()
    };
    if task.trim().is_empty() {
        return Err(CliError::Usage("the task is empty".into()));
    }
    // `auto`: the router picks among the agents the caller may use (unless
    // an agent is really called "auto").
    let routing = if args.agent == "auto" && registry.get("auto").is_none() {
        let routing = route::route(&registry, &setup.config.acl, &task, &args.caller)?;
        if routing.best.is_none() {
            return Err(CliError::Usage(format!(
                "no agent {} may delegate to matches this task (allowed: {}); name the agent instead of `auto`",
                args.caller,
                routing.allowed.join(", ")
            )));
        }
        out::note(&route::explain_choice(&routing));
        Some(routing)
    } else {
        None
    };
    let agent = routing
        .as_ref()
        .and_then(|r| r.best.clone())
        .unwrap_or_else(|| args.agent.clone());
    let context = match &args.channel_context {
        Some(channel) => {
            Some(context::channel_context(&setup, &registry, channel, args.channel_messages).await?)
        }
        None => None,
    };
    let store = setup.open_store().await?;
    let delegator = setup.delegator(store, &registry)?;
    let mut request = Request::new(&agent, task, &args.caller);
    request.context = context;
    request.timeout = args.timeout.unwrap_or(setup.config.delegation.timeout.0);
    request.parent = args
        .parent
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| RunId::new(p).map_err(|e| CliError::Usage(format!("--parent {p:?}: {e}"))))
        .transpose()?;
    request.validate = args.validate || args.validator.is_some();
    request.validator = args.validator.clone();

    let result =
        super::with_ctrl_c(|cancel| async move { delegator.delegate(request, &cancel).await })
            .await;
    match result {
        Ok(outcome) => {
            if args.json {
                let mut value = serde_json::to_value(&outcome)
                    .map_err(|e| CliError::Internal(format!("serializing the outcome: {e}")))?;
                if let (Some(routing), Some(map)) = (&routing, value.as_object_mut()) {
                    let routing = serde_json::to_value(routing)
                        .map_err(|e| CliError::Internal(format!("serializing the routing: {e}")))?;
                    map.insert("routing".into(), routing);
                }
                out::print_json(&value)?;
            } else {
                out::print(&render(&outcome))?;
            }
            Ok(exit_for(outcome.status()))
        }
        Err(e) => Err(map_error(e)),
    }
}

fn read_stdin_task() -> Result<String, CliError> {
    use std::io::Read;
    let mut task = String::new();
    std::io::stdin()
        .lock()
        .take(256 * 1024 + 1)
        .read_to_string(&mut task)
        .map_err(|e| CliError::Usage(format!("cannot read the task from stdin: {e}")))?;
    Ok(task)
}

pub(crate) fn exit_for(status: OutcomeStatus) -> Exit {
    match status {
        OutcomeStatus::Complete => Exit::Ok,
        OutcomeStatus::Partial => Exit::Partial,
        OutcomeStatus::Blocked => Exit::Blocked,
        OutcomeStatus::Failed => Exit::Failed,
        OutcomeStatus::TimedOut => Exit::TimedOut,
    }
}

/// Maps a delegation error to the CLI's error (and so its exit code).
pub(crate) fn map_error(e: DelegateError) -> CliError {
    match &e {
        DelegateError::UnknownAgent { .. } | DelegateError::Usage { .. } => {
            CliError::Usage(e.to_string())
        }
        DelegateError::Denied(_) => CliError::Denied(format!("denied: {e}")),
        // An incomplete transport configuration is a config error (exit 2).
        DelegateError::Transport {
            source: TransportError::Config { .. },
            ..
        } => CliError::Usage(e.to_string()),
        DelegateError::Transport { .. } => CliError::Transport(e.to_string()),
        DelegateError::Cancelled { .. } => CliError::Cancelled(e.to_string()),
        _ => CliError::Internal(e.to_string()),
    }
}

fn status_word(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Complete => "complete",
        OutcomeStatus::Partial => "partial",
        OutcomeStatus::Blocked => "blocked",
        OutcomeStatus::Failed => "failed",
        OutcomeStatus::TimedOut => "timed out",
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The human rendering of an outcome.
pub(crate) fn render(o: &Outcome) -> String {
    let simulated = o
        .handoff
        .as_ref()
        .is_some_and(|h| h.extra.get("simulated") == Some(&serde_json::Value::Bool(true)));
    let mut s = format!(
        "{} → {}: {} in {}{}\n",
        out::one_line(&o.caller),
        out::one_line(&o.agent),
        status_word(o.status()),
        secs(o.timings.total),
        if simulated { " (simulated fleet)" } else { "" }
    );
    row(&mut s, "run", o.run_id.as_str());
    if let Some(p) = &o.parent {
        row(&mut s, "parent", p.as_str());
    }
    row(&mut s, "handoff", &o.handoff_path);
    if o.dispatches > 1 {
        row(&mut s, "dispatches", &o.dispatches.to_string());
    }
    if o.reasks > 0 {
        row(&mut s, "re-asks", &o.reasks.to_string());
    }
    match &o.end {
        End::Handoff => {}
        End::TimedOut => row(&mut s, "outcome", "no handoff before the deadline"),
        End::NoHandoff { detail } => row(
            &mut s,
            "outcome",
            &format!("the run ended without a handoff ({detail})"),
        ),
        End::Invalid { error } => row(&mut s, "outcome", &format!("invalid handoff: {error}")),
    }
    if let Some(v) = &o.validation {
        let verdict = if v.approved { "approved" } else { "rejected" };
        let notes = v
            .outcome
            .handoff
            .as_ref()
            .map(|h| h.notes.trim())
            .filter(|n| !n.is_empty())
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        block_row(
            &mut s,
            "validation",
            &format!("{verdict} by {}{notes}", v.validator),
        );
    }
    if let Some(h) = &o.handoff {
        render_details(h, &mut s);
    }
    s
}
