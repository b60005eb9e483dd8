//! `orch delegate <agent> "<task>" --caller X`.

use std::time::Duration;

use orch_delegate::{End, Outcome, OutcomeStatus};

use crate::app::delegate::{DelegateRequest, Delegating};

use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{DelegateArgs, GlobalArgs};
use crate::front::cli::handoff::{block_row, render_details, row};
use crate::front::cli::route;
use crate::front::out;

pub(crate) async fn run(global: &GlobalArgs, args: DelegateArgs) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
    // Each retry is shown as it happens: a delegation may retry for as long
    // as its deadline allows (a gateway restarting).
    let delegating = Delegating::open(setup, args.timeout, |event| {
        // The terminal shows the retries; that the agent has the task is
        // what it expects.
        if let orch_delegate::DelegationEvent::Retrying(_) = event {
            out::note(&format!("retry: {}", out::one_line(&event.to_string())));
        }
    })
    .await?;
    let task = if args.task == "-" {
        read_stdin_task(delegating.task_limit(&args.agent))?
    } else {
        args.task.clone()
    };
    let request = DelegateRequest {
        agent: args.agent,
        task,
        caller: args.caller,
        timeout: args.timeout,
        parent: args.parent,
        validate: args.validate,
        validator: args.validator,
        channel_context: args.channel_context,
        channel_messages: args.channel_messages,
        run_id: None,
    };
    let routing = delegating.route(&request)?;
    if let Some(routing) = &routing {
        out::note(&route::explain_choice(routing));
    }
    let delegation =
        super::with_ctrl_c(|cancel| async move { delegating.run(request, routing, &cancel).await })
            .await?;
    if args.json {
        out::print_json(&delegation)?;
    } else {
        out::print(&render(&delegation.outcome))?;
    }
    Ok(exit_for(delegation.outcome.status()))
}

/// How far past the limit an over-size task on stdin is counted (without
/// being kept) to report its size; beyond this it is "more than".
const MAX_COUNTED_STDIN: u64 = 1 << 30;

/// Reads the whole task from stdin, keeping at most `limit` bytes (the
/// task limit of `whose` transport): a task over it is refused with its
/// real size, counted without being kept.
fn read_stdin_task((limit, whose): (u64, String)) -> Result<String, AppError> {
    use std::io::Read;
    let failed =
        |e: std::io::Error| AppError::Usage(format!("cannot read the task from stdin: {e}"));
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
        return Err(AppError::Usage(format!(
            "the task on stdin is {size}, larger than the {limit}-byte limit of {whose} (max_task_bytes): nothing was sent; shorten the task, or raise the transport's max_task_bytes"
        )));
    }
    String::from_utf8(task).map_err(|e| {
        AppError::Usage(format!(
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

    use orch_delegate::orch_handoff::{HandoffError, RunId, Scope};
    use orch_delegate::{Timings, TransportError, Unacknowledged};

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
