//! `orch config show|init`.

use std::io::Write;
use std::path::Path;

use orch_handoff::NatsAuth;

use crate::app::config::{EXAMPLE_YAML, StoreKind, TransportRef, TransportSpec};
use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{ConfigCmd, GlobalArgs};
use crate::front::out;

pub(crate) fn run(global: &GlobalArgs, cmd: ConfigCmd) -> Result<Exit, AppError> {
    match cmd {
        ConfigCmd::Show { json } => show(global, json),
        ConfigCmd::Init { path, force } => init(&path, force),
    }
}

/// Prints the effective config. It never holds a secret (tokens are only
/// *named*, and a URL is shown without credentials); whether each named
/// token is available is said in a comment.
fn show(global: &GlobalArgs, json: bool) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
    let shown = setup.config.redacted();
    if json {
        out::print_json(&shown)?;
        return Ok(Exit::Ok);
    }
    let yaml = serde_norway::to_string(&shown)
        .map_err(|e| AppError::Internal(format!("rendering the config: {e}")))?;
    let mut text = format!("# effective config from: {}\n", setup.source);
    let specs = setup
        .config
        .transports
        .iter()
        .map(|(n, t)| (n.clone(), t))
        .chain(
            setup
                .config
                .agents
                .iter()
                .filter_map(|(id, a)| match &a.transport {
                    TransportRef::Inline(t) => Some((format!("agents.{id}"), t)),
                    TransportRef::Named(_) => None,
                }),
        );
    for (name, spec) in specs {
        if let TransportSpec::Openclaw(oc) = spec {
            let state = match (&oc.token_env, &oc.token_file) {
                (Some(var), _) if std::env::var_os(var).is_some_and(|v| !v.is_empty()) => {
                    format!("${var} is set")
                }
                (Some(var), _) => format!("${var} is NOT set"),
                (None, Some(f)) if f.is_file() => format!("{} exists", f.display()),
                (None, Some(f)) => format!("{} is missing", f.display()),
                (None, None) => "none configured".to_owned(),
            };
            text.push_str(&format!(
                "# {name}: hook token {state} (value never shown)\n"
            ));
        }
    }
    let store = &setup.config.store;
    if store.kind == StoreKind::Nats {
        let state = match &store.nats.auth {
            NatsAuth::CredentialsFile(f) if f.is_file() => {
                format!("credentials file {} exists", f.display())
            }
            NatsAuth::CredentialsFile(f) => format!("credentials file {} is missing", f.display()),
            NatsAuth::TokenEnv(var) if std::env::var_os(var).is_some_and(|v| !v.is_empty()) => {
                format!("token ${var} is set")
            }
            NatsAuth::TokenEnv(var) => format!("token ${var} is NOT set"),
            NatsAuth::TokenFile(f) if f.is_file() => format!("token file {} exists", f.display()),
            NatsAuth::TokenFile(f) => format!("token file {} is missing", f.display()),
            NatsAuth::None => "no credentials configured".to_owned(),
            // A config names its credential; nothing else reaches here.
            _ => "credentials given".to_owned(),
        };
        text.push_str(&format!("# store: NATS {state} (value never shown)\n"));
    }
    text.push_str(&yaml);
    out::print(&text)?;
    Ok(Exit::Ok)
}

/// Writes the commented example, never over an existing file unless asked.
fn init(path: &Path, force: bool) -> Result<Exit, AppError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AppError::Usage(format!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            ))
        } else {
            AppError::Usage(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    file.write_all(EXAMPLE_YAML.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AppError::Internal(format!("writing {}: {e}", path.display())))?;
    out::print(&format!(
        "wrote {}: point the `gateway` transport at your OpenClaw gateway, export the hook token as $OPENCLAW_HOOKS_TOKEN, then `orch config show`\n",
        path.display()
    ))?;
    Ok(Exit::Ok)
}
