//! `orch delegate <agent> "<task>" --caller X`.

use std::time::Duration;

use orch_delegate::orch_handoff::RunId;
use orch_delegate::{
    DelegateError, Delegator, End, Outcome, OutcomeStatus, Request, TransportError,
};

use crate::args::{DelegateArgs, GlobalArgs};
use crate::cmd::handoff::{block_row, render_details, row};
use crate::cmd::{context, route};
use crate::exit::{CliError, Exit};
use crate::out;
use crate::wiring::Setup;

pub(crate) async fn run(global: &GlobalArgs, args: DelegateArgs) -> Result<Exit, CliError> {
    let mut setup = Setup::load(global)?;
    let registry = setup.registry()?;
    // A store operation (a NATS cluster electing a leader) may keep trying
    // for as long as the delegation may take (at least 5 s), not for a
    // fixed time.
    setup.config.store.nats.request_timeout = args
        .timeout
        .unwrap_or(setup.config.delegation.timeout.0)
        .max(Duration::from_secs(5));
    let store = setup.open_store().await?;
    // Each retry is shown as it happens: a delegation may retry for as long
    // as its deadline allows (a gateway restarting).
    let delegator = setup.delegator(store, &registry)?.with_observer(|event| {
        out::note(&format!("retry: {}", out::one_line(&event.to_string())));
    });
    let task = if args.task == "-" {
        read_stdin_task(&delegator, &args.agent)?
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

/// How far past the limit an over-size task on stdin is counted (without
/// being kept) to report its size; beyond this it is "more than".
const MAX_COUNTED_STDIN: u64 = 1 << 30;

/// Reads the whole task from stdin, keeping at most the task limit of
/// `agent`'s transport (for `auto` or an unknown agent, the largest of
/// every agent's): a task over it is refused with its real size, counted
/// without being kept.
fn read_stdin_task(delegator: &Delegator, agent: &str) -> Result<String, CliError> {
    use std::io::Read;
    let (limit, whose) = match delegator.transport_of(agent) {
        Some(t) => (
            t.max_task_bytes(),
            format!("{agent}'s {} transport", t.name()),
        ),
        None => (
            delegator
                .agent_ids()
                .iter()
                .filter_map(|id| delegator.transport_of(id))
                .map(|t| t.max_task_bytes())
                .max()
                .unwrap_or(orch_delegate::DEFAULT_MAX_TASK_BYTES),
            "every agent's transport".to_owned(),
        ),
    };
    let failed =
        |e: std::io::Error| CliError::Usage(format!("cannot read the task from stdin: {e}"));
    let mut stdin = std::io::stdin().lock();
    let mut task = Vec::new();
    (&mut stdin)
        .take(limit.saturating_add(1))
        .read_to_end(&mut task)
        .map_err(failed)?;
    let kept = task.len() as u64;
    if kept > limit {
        let rest = std::io::copy(
            &mut (&mut stdin).take(MAX_COUNTED_STDIN),
            &mut std::io::sink(),
        )
        .map_err(failed)?;
        let size = if rest == MAX_COUNTED_STDIN {
            format!("more than {} bytes", kept + rest)
        } else {
            format!("{} bytes", kept + rest)
        };
        return Err(CliError::Usage(format!(
            "the task on stdin is {size}, larger than the {limit}-byte limit of {whose} (max_task_bytes): nothing was sent; shorten the task, or raise the transport's max_task_bytes"
        )));
    }
    String::from_utf8(task).map_err(|e| {
        CliError::Usage(format!(
            "the task on stdin is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
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
        DelegateError::UnknownAgent { .. }
        | DelegateError::Usage { .. }
        | DelegateError::TooLarge { .. } => CliError::Usage(e.to_string()),
        DelegateError::Denied(_) => CliError::Denied(format!("denied: {e}")),
        // An incomplete transport configuration is a config error, and a
        // request the transport finds too large is bad input: exit 2, as
        // no retry can help.
        DelegateError::Transport {
            source: TransportError::Config { .. } | TransportError::TooLarge { .. },
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
    // Only a file that is there: the answer, or where an invalid one went.
    match (&o.end, o.rejected.last()) {
        (End::Handoff, _) => row(&mut s, "handoff", &o.handoff_path),
        (End::Invalid { .. }, Some(moved)) => row(&mut s, "rejected", moved),
        (End::Invalid { .. }, None) => row(&mut s, "handoff", &o.handoff_path),
        (End::TimedOut | End::NoHandoff { .. }, _) => {}
    }
    if o.dispatches > 1 {
        row(&mut s, "dispatches", &o.dispatches.to_string());
    }
    if o.reasks > 0 {
        row(&mut s, "re-asks", &o.reasks.to_string());
    }
    match &o.end {
        End::Handoff => {}
        End::TimedOut => match o.timeout_reason() {
            None => row(&mut s, "outcome", "no handoff before the deadline"),
            Some(why) => row(
                &mut s,
                "outcome",
                &format!("no handoff before the deadline; {why}"),
            ),
        },
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use orch_delegate::orch_handoff::{HandoffError, Scope};
    use orch_delegate::{Timings, Unacknowledged};

    use super::*;

    fn outcome(end: End) -> Outcome {
        Outcome {
            run_id: RunId::new("orch-20261202T000000Z-00000001").unwrap(),
            agent: "webster".into(),
            caller: "manager".into(),
            parent: None,
            scope: Scope::Top,
            handoff_path: "/store/orch-20261202T000000Z-00000001.json".into(),
            rejected: Vec::new(),
            unacknowledged: None,
            partial: None,
            end,
            handoff: None,
            validation: None,
            dispatches: 4,
            reasks: 0,
            timings: Timings {
                started: jiff::Timestamp::UNIX_EPOCH,
                acked_after: None,
                handoff_after: None,
                total: Duration::from_secs(120),
            },
        }
    }

    /// A timeout whose dispatch was never acknowledged, or that saw only a
    /// partial file, says why; outcomes
    /// without an answer name no handoff file; an invalid answer is named
    /// where it was moved.
    #[test]
    fn outcomes_say_why_and_name_only_files_that_exist() {
        let mut hung = outcome(End::TimedOut);
        hung.unacknowledged = Some(Unacknowledged {
            tries: 4,
            failures: 3,
            last_error: Some(TransportError::Connect {
                message: "POST http://gw/hooks/agent: the gateway did not answer within 30s".into(),
            }),
            alike: true,
        });
        let mut invalid = outcome(End::Invalid {
            error: HandoffError::Empty,
        });
        invalid.rejected = vec![
            "/store/orch-20261202T000000Z-00000001.json.rejected-1".into(),
            "/store/orch-20261202T000000Z-00000001.json.rejected-2".into(),
        ];
        let silent = outcome(End::NoHandoff {
            detail: "exit status 0".into(),
        });
        let mut cut_off = outcome(End::TimedOut);
        cut_off.partial = Some(HandoffError::Truncated {
            line: 1,
            column: 26,
            message: "EOF while parsing an object".into(),
        });
        insta::assert_snapshot!(
            [
                render(&hung),
                render(&invalid),
                render(&silent),
                render(&cut_off)
            ]
            .join("\n")
        );
    }
}
