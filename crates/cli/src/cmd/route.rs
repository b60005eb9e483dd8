//! `orch route "<task>" --caller X` and the choice behind `orch delegate auto`.

use orch_acl::Policy;
use orch_registry::{Bm25Router, Ranked, Registry, Router};
use serde::Serialize;

use crate::args::{GlobalArgs, RouteArgs};
use crate::exit::{CliError, Exit};
use crate::out;
use crate::wiring::Setup;

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
) -> Result<Routing, CliError> {
    let allowed = policy.allowed_targets(caller, registry.ids());
    if allowed.is_empty() {
        return Err(CliError::Denied(format!(
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

pub(crate) fn run(global: &GlobalArgs, args: RouteArgs) -> Result<Exit, CliError> {
    let setup = Setup::load(global)?;
    let registry = setup.registry()?;
    let routing = route(&registry, &setup.config.acl, &args.task, &args.caller)?;
    if args.json {
        out::print_json(&routing)?;
    } else {
        out::print(&render(&routing))?;
    }
    Ok(Exit::Ok)
}

fn render(r: &Routing) -> String {
    let mut s = format!(
        "routing for {} (may delegate to: {})\n",
        r.caller,
        r.allowed.join(", ")
    );
    if r.ranking.is_empty() {
        s.push_str("  no allowed agent matches this task; name the agent yourself\n");
        return s;
    }
    let width = r.ranking.iter().map(|c| c.agent.len()).max().unwrap_or(0);
    for (i, c) in r.ranking.iter().enumerate() {
        s.push_str(&format!(
            "  {}. {:<width$}  {:>6.2}  {}\n",
            i + 1,
            c.agent,
            c.score,
            c.reasons.join("; ")
        ));
    }
    if let Some(best) = &r.best {
        s.push_str(&format!("best: {best}\n"));
    }
    s
}

/// One line saying what `delegate auto` chose and why.
pub(crate) fn explain_choice(r: &Routing) -> String {
    match r.ranking.first() {
        Some(c) => format!(
            "routed to {} (score {:.2}): {}",
            c.agent,
            c.score,
            c.reasons.join("; ")
        ),
        None => "no agent matched".to_owned(),
    }
}
