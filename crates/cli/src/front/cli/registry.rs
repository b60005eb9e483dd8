//! `orch registry list|show`.

use orch_registry::AgentInfo;

use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{GlobalArgs, RegistryCmd};
use crate::front::out;

pub(crate) fn run(global: &GlobalArgs, cmd: RegistryCmd) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
    let registry = setup.registry()?;
    match cmd {
        RegistryCmd::List { json: true } => {
            let mut file = registry.to_file();
            for agent in &mut file.agents {
                redact_urls(&mut agent.transport);
            }
            out::print_json(&file)?;
        }
        RegistryCmd::List { json: false } => {
            let agents = registry.agents();
            let w_id = agents.iter().map(|a| a.id.len()).max().unwrap_or(0).max(2);
            let w_role = agents
                .iter()
                .map(|a| a.role.len())
                .max()
                .unwrap_or(0)
                .max(4);
            let mut s = format!(
                "{:<w_id$}  {:<w_role$}  transport  capabilities\n",
                "id", "role"
            );
            for a in agents {
                s.push_str(&format!(
                    "{:<w_id$}  {:<w_role$}  {:<9}  {}\n",
                    a.id,
                    a.role,
                    transport_label(a),
                    summary(&a.capabilities)
                ));
            }
            out::print(&s)?;
        }
        RegistryCmd::Show { id, json } => {
            let Some(agent) = registry.get(&id) else {
                return Err(AppError::Usage(format!(
                    "unknown agent {id:?}; known agents: {}",
                    registry.ids().join(", ")
                )));
            };
            if json {
                let mut agent = agent.clone();
                redact_urls(&mut agent.transport);
                out::print_json(&agent)?;
            } else {
                out::print(&render(agent, &registry))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// An inline transport spec as it may be shown: no credentials in a URL.
fn redact_urls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = orch_support::url::redact_userinfo(s) {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_urls),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_urls),
        _ => {}
    }
}

/// The first few capabilities; `registry show` has them all.
fn summary(capabilities: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = capabilities
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if capabilities.len() > SHOWN {
        s.push_str(&format!(", … (+{} more)", capabilities.len() - SHOWN));
    }
    s
}

fn transport_label(a: &AgentInfo) -> String {
    match &a.transport {
        serde_json::Value::String(name) => name.clone(),
        other => other
            .get("kind")
            .and_then(|k| k.as_str())
            .map_or_else(|| "?".to_owned(), |k| format!("{k} (inline)")),
    }
}

fn render(a: &AgentInfo, registry: &orch_registry::Registry) -> String {
    let mut s = format!("{} — {}\n", a.id, a.name);
    let mut row = |k: &str, v: &str| s.push_str(&format!("  {k:<14} {v}\n"));
    row("role", &a.role);
    row("transport", &transport_label(a));
    row("validator", a.validator.as_deref().unwrap_or("(none)"));
    row(
        "max concurrent",
        &a.max_concurrent
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
    );
    let channels: Vec<String> = a
        .channels
        .iter()
        .map(|c| match registry.channels().get(c) {
            Some(id) => format!("#{c} ({id})"),
            None => format!("#{c}"),
        })
        .collect();
    if !channels.is_empty() {
        row("channels", &channels.join(", "));
    }
    row("capabilities", &a.capabilities.join(", "));
    s.push('\n');
    s.push_str(a.description.trim_end());
    s.push('\n');
    s
}
