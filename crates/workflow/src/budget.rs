//! What a step's task may take: its agent's transport limits the whole
//! message, and orch's instructions around the task take part of it.
//! Checked before a run (`check_task_sizes`) and by each step before it
//! sends.

use orch_delegate::Delegator;
use orch_delegate::orch_handoff::RunId;

use crate::error::TooLarge;
use crate::model::{Step, Target};
use crate::run::attempt_run_id;

/// Room left in a task message for a re-ask's "asked again" block, which
/// the Delegator adds around the task on a second ask.
pub(crate) const REASK_HEADROOM: u64 = 2 * 1024;

/// What a step's task may take when it goes to one agent: the agent's
/// transport limits the whole message ([`Transport::max_task_bytes`]), and
/// orch's instructions around the task take part of it.
///
/// [`Transport::max_task_bytes`]: orch_delegate::Transport::max_task_bytes
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub(crate) agent: String,
    pub(crate) transport: String,
    /// The transport's message limit.
    pub(crate) limit: u64,
    /// orch's instructions around the task, and [`REASK_HEADROOM`].
    pub(crate) overhead: u64,
}

impl Budget {
    /// Bytes left for the task.
    pub(crate) fn task(&self) -> u64 {
        self.limit.saturating_sub(self.overhead)
    }

    /// Why a task of `e.size` bytes does not fit.
    pub(crate) fn refusal(&self, what: &str, e: &TooLarge) -> String {
        format!(
            "{what} too large for `{}`: {}, over the limit of {}; made of {} ({} transport: messages up to {} bytes, {} of them for orch's instructions and a re-ask)",
            self.agent,
            if what == "task" {
                format!("it would be {}", crate::error::bytes(e.size))
            } else {
                format!("at least {}", crate::error::bytes(e.size))
            },
            crate::error::bytes(e.limit),
            e.made_of(),
            self.transport,
            self.limit,
            self.overhead
        )
    }
}

/// The budget of `step`'s task for `agent` in workflow run `wf_run`, if the
/// Delegator knows the agent. The instructions are measured with the id of
/// a late attempt, so no retry's longer id can push the message over.
pub(crate) fn budget(
    delegator: &Delegator,
    wf_run: &RunId,
    step: &str,
    agent: &str,
    caller: &str,
) -> Option<Budget> {
    let transport = delegator.transport_of(agent)?;
    let id = attempt_run_id(wf_run, step, 999_999);
    let overhead = delegator
        .message_bytes(&id, agent, caller, "", None)
        .saturating_add(REASK_HEADROOM);
    Some(Budget {
        agent: agent.to_owned(),
        transport: transport.name().to_owned(),
        limit: transport.max_task_bytes(),
        overhead,
    })
}

/// The budgets a step's task can have: its agent's, or for `route: auto`
/// every agent's, largest first.
pub(crate) fn budgets(
    delegator: &Delegator,
    wf_run: &RunId,
    step: &Step,
    caller: &str,
) -> Vec<Budget> {
    let mut out: Vec<Budget> = match &step.target {
        Target::Agent(a) => budget(delegator, wf_run, &step.id, a, caller)
            .into_iter()
            .collect(),
        Target::Route => delegator
            .agent_ids()
            .into_iter()
            .filter_map(|a| budget(delegator, wf_run, &step.id, a, caller))
            .collect(),
        // Its child run's steps have budgets of their own.
        Target::Workflow(_) => Vec::new(),
    };
    out.sort_by_key(|b| std::cmp::Reverse(b.task()));
    out
}
