//! `orch acl check|show`.

use orch_acl::{Grant, Policy};

use crate::app;
use crate::app::wiring::Setup;

use crate::app::error::{AppError, Exit};
use crate::front::cli::args::{AclCmd, GlobalArgs};
use crate::front::out;

pub(crate) fn run(global: &GlobalArgs, cmd: AclCmd) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
    match cmd {
        AclCmd::Check { caller, target } => {
            app::acl::check(&setup, &caller, &target)?;
            out::print(&format!("allowed: {caller} may delegate to {target}\n"))?;
            Ok(Exit::Ok)
        }
        AclCmd::Show { json: true } => {
            out::print_json(app::acl::policy(&setup))?;
            Ok(Exit::Ok)
        }
        AclCmd::Show { json: false } => {
            out::print(&render(app::acl::policy(&setup)))?;
            Ok(Exit::Ok)
        }
    }
}

/// The policy as an aligned table.
fn render(policy: &Policy) -> String {
    let rows: Vec<(&str, String)> = policy
        .rules()
        .map(|(caller, grant)| {
            let targets = match grant {
                Grant::All => "any agent except itself".to_owned(),
                Grant::Only(list) if list.is_empty() => "nobody".to_owned(),
                Grant::Only(list) => list
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            (caller, targets)
        })
        .collect();
    let width = rows
        .iter()
        .map(|(c, _)| c.len())
        .chain(["caller".len()])
        .max()
        .unwrap_or(0);
    let mut s = format!("{:<width$}  may delegate to\n", "caller");
    for (caller, targets) in rows {
        s.push_str(&format!("{caller:<width$}  {targets}\n"));
    }
    s.push_str("\nanyone else may delegate to nobody; no agent may delegate to itself\n");
    s
}
