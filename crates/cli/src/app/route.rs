//! Routing: which agent a caller should delegate a task to, among those
//! the ACL lets it use (`orch route`, `delegate auto`, `route: auto` steps).

use std::sync::Arc;

use orch_acl::Policy;
use orch_registry::{Bm25Router, Ranked, Registry, Router};
use orch_workflow::StepRouter;
use serde::Serialize;

use crate::app::error::AppError;

/// A ranking for one caller, ready to print.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Routing {
    pub(crate) task: String,
    pub(crate) caller: String,
    /// The agents the caller may delegate to: the only candidates.
    pub(crate) allowed: Vec<String>,
    pub(crate) ranking: Vec<Choice>,
    /// The best agent, if any matched.
    pub(crate) best: Option<String>,
}

/// One ranked agent.
#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    pub(crate) agent: String,
    pub(crate) score: f64,
    pub(crate) reasons: Vec<String>,
}

/// Ranks the agents `caller` may delegate to for `task`. A caller who may
/// delegate to nobody is denied (exit 3): routing never proposes an agent
/// the ACL refuses.
pub(crate) fn route(
    registry: &Registry,
    policy: &Policy,
    task: &str,
    caller: &str,
) -> Result<Routing, AppError> {
    let allowed = policy.allowed_targets(caller, registry.ids());
    if allowed.is_empty() {
        return Err(AppError::Denied(format!(
            "denied: {caller} may not delegate to any agent, so there is nothing to route to"
        )));
    }
    let ranking: Vec<Choice> = Bm25Router::new(registry)
        .rank(task, &allowed)
        .into_iter()
        .map(
            |Ranked {
                 agent,
                 score,
                 reasons,
             }| Choice {
                agent,
                // Two decimals are what a person compares; more is noise that
                // would make the JSON unstable across platforms.
                score: (score * 100.0).round() / 100.0,
                reasons,
            },
        )
        .collect();
    Ok(Routing {
        task: task.to_owned(),
        caller: caller.to_owned(),
        allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
        best: ranking.first().map(|c| c.agent.clone()),
        ranking,
    })
}

/// `route: auto` in a workflow: the agent [`route`] would pick.
pub(crate) struct AclRouter {
    pub(crate) registry: Arc<Registry>,
    pub(crate) policy: Policy,
}

impl StepRouter for AclRouter {
    fn route(&self, task: &str, caller: &str) -> Option<String> {
        route(&self.registry, &self.policy, task, caller)
            .ok()
            .and_then(|r| r.best)
    }
}
