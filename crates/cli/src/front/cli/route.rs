//! `orch route "<task>" --caller X` and the choice behind `orch delegate auto`.

use crate::app::error::{AppError, Exit};
use crate::app::route::{Routing, route};
use crate::app::wiring::Setup;
use crate::front::cli::args::{GlobalArgs, RouteArgs};
use crate::front::out;

pub(crate) fn run(global: &GlobalArgs, args: RouteArgs) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
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
