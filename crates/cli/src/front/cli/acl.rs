//! `orch acl check|show`.

use orch_acl::{Grant, Policy};

use crate::wiring::Setup;

use crate::app::error::{CliError, Exit};
use crate::front::cli::args::{AclCmd, GlobalArgs};
use crate::front::out;

pub(crate) fn run(global: &GlobalArgs, cmd: AclCmd) -> Result<Exit, CliError> {
    let policy = Setup::load(global)?.config.acl;
    match cmd {
        AclCmd::Check { caller, target } => match policy.check(&caller, &target) {
            Ok(()) => {
                out::print(&format!("allowed: {caller} may delegate to {target}\n"))?;
                Ok(Exit::Ok)
            }
            Err(e) => Err(CliError::Denied(format!("denied: {e}"))),
        },
        AclCmd::Show { json: true } => {
            out::print_json(&policy)?;
            Ok(Exit::Ok)
        }
        AclCmd::Show { json: false } => {
            out::print(&render(&policy))?;
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
