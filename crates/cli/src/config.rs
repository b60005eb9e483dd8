//! `orch.yaml`: where it is found, what it says, and the embedded default.
//!
//! Lookup order: `--config`, `ORCH_CONFIG`, `./orch.yaml`, then
//! `$XDG_CONFIG_HOME/orch/orch.yaml` (or `~/.config/orch/orch.yaml`); with
//! none, the embedded default (`default.yaml`: the simulated fleet, the
//! team's ACL, store `./.orch/handoffs`; the agents come from the embedded
//! registry of the eight Atomizer HQ agents).
//!
//! Secrets never live in this file: an OpenClaw token is named by
//! `token_env` (an environment variable) or `token_file`, read only when a
//! transport is built, and never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_acl::Policy;
use orch_delegate::transport::sim::Behaviour;
use orch_handoff::{DEFAULT_MAX_HANDOFF_BYTES, WatchMode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The embedded default configuration.
pub(crate) const DEFAULT_YAML: &str = include_str!("default.yaml");
/// The commented example `orch config init` writes.
pub(crate) const EXAMPLE_YAML: &str = include_str!("orch.example.yaml");

/// Largest config file read (a config is a few KiB; this refuses accidents).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where the effective configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file (and how it was found).
    File { path: PathBuf, how: &'static str },
    /// The embedded default.
    Embedded,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path, how } => write!(f, "{} ({how})", path.display()),
            Self::Embedded => f.write_str("embedded default"),
        }
    }
}

/// The parsed configuration, relative paths already resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The handoff store.
    #[serde(default)]
    pub(crate) store: StoreSection,
    /// Delegation defaults.
    #[serde(default)]
    pub(crate) delegation: DelegationSection,
    /// Who may delegate to whom (caller → list, `*` for all).
    #[serde(default = "Policy::atomizer_default")]
    pub(crate) acl: Policy,
    /// Named transports agents can refer to.
    #[serde(default)]
    pub(crate) transports: BTreeMap<String, TransportSpec>,
    /// An `AGENTS_REGISTRY.json` with the agents (relative: to this file's
    /// directory). Give either this or `agents`; with neither, the embedded
    /// registry of the eight Atomizer HQ agents is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) registry: Option<PathBuf>,
    /// The agents, by id (instead of a registry file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) agents: BTreeMap<String, AgentSpec>,
    /// Discord channel names → ids, for agents given inline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) channels: BTreeMap<String, String>,
    /// Channel context from Discord.
    #[serde(default)]
    pub(crate) discord: DiscordSection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DiscordSection {
    /// The REST API base, up to and including the version.
    pub(crate) base_url: String,
    /// Environment variable that holds the bot token.
    pub(crate) token_env: String,
    /// File that holds the bot token (used when the variable is unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_file: Option<PathBuf>,
    /// Character budget of a rendered channel context.
    pub(crate) max_chars: usize,
    /// Longest total wait on Discord rate limits before giving up.
    pub(crate) max_retry_wait: Dur,
}

impl Default for DiscordSection {
    fn default() -> Self {
        Self {
            base_url: "https://discord.com/api/v10".to_owned(),
            token_env: "DISCORD_BOT_TOKEN".to_owned(),
            token_file: None,
            max_chars: 4000,
            max_retry_wait: Dur(Duration::from_secs(30)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// Root of the file store (relative: to the config file's directory;
    /// for the embedded default, to the working directory).
    #[serde(default = "default_store_path")]
    pub(crate) path: PathBuf,
    /// auto | inotify | poll
    #[serde(default)]
    pub(crate) watch: WatchMode,
    /// Handoff files larger than this are refused.
    #[serde(default = "default_max_handoff_bytes")]
    pub(crate) max_handoff_bytes: u64,
}

fn default_store_path() -> PathBuf {
    PathBuf::from("./.orch/handoffs")
}

fn default_max_handoff_bytes() -> u64 {
    DEFAULT_MAX_HANDOFF_BYTES
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            watch: WatchMode::default(),
            max_handoff_bytes: DEFAULT_MAX_HANDOFF_BYTES,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DelegationSection {
    /// Default `--timeout`.
    pub(crate) timeout: Dur,
    /// Longest chain of sub-delegations.
    pub(crate) max_depth: u32,
    /// How often an invalid handoff is re-asked.
    pub(crate) reasks: u32,
    /// Dispatch retries.
    pub(crate) retry: RetrySection,
    /// After a transport reports the agent's run ended, how long to look
    /// for a handoff still in flight.
    pub(crate) completion_grace: Dur,
}

impl Default for DelegationSection {
    fn default() -> Self {
        let d = orch_delegate::DelegatorConfig::default();
        Self {
            timeout: Dur(Duration::from_secs(120)),
            max_depth: d.max_depth,
            reasks: d.reasks,
            retry: RetrySection::default(),
            completion_grace: Dur(d.completion_grace),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetrySection {
    pub(crate) attempts: u32,
    pub(crate) base_delay: Dur,
    pub(crate) max_delay: Dur,
    pub(crate) max_retry_after: Dur,
}

impl Default for RetrySection {
    fn default() -> Self {
        let r = orch_delegate::RetryPolicy::default();
        Self {
            attempts: r.max_attempts,
            base_delay: Dur(r.base_delay),
            max_delay: Dur(r.max_delay),
            max_retry_after: Dur(r.max_retry_after),
        }
    }
}

/// A transport, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum TransportSpec {
    /// The simulated fleet.
    Sim(SimSpec),
    /// A local command per agent.
    Exec(ExecSpec),
    /// OpenClaw Gateway HTTP hooks.
    Openclaw(OpenClawSpec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimSpec {
    /// How long a simulated agent takes to answer.
    #[serde(default = "default_sim_delay")]
    pub(crate) delay: Dur,
    /// How long a `slow` one takes.
    #[serde(default = "default_sim_slow_delay")]
    pub(crate) slow_delay: Dur,
    /// Scripted behaviour per agent (default: complete).
    #[serde(default)]
    pub(crate) agents: BTreeMap<String, Behaviour>,
}

impl Default for SimSpec {
    fn default() -> Self {
        Self {
            delay: default_sim_delay(),
            slow_delay: default_sim_slow_delay(),
            agents: BTreeMap::new(),
        }
    }
}

fn default_sim_delay() -> Dur {
    Dur(orch_delegate::transport::sim::SimConfig::default().delay)
}

fn default_sim_slow_delay() -> Dur {
    Dur(orch_delegate::transport::sim::SimConfig::default().slow_delay)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecSpec {
    /// argv of the command (no shell).
    pub(crate) command: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
    /// Working directory (relative: to the config file's directory).
    #[serde(default)]
    pub(crate) cwd: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenClawSpec {
    /// Gateway base URL, e.g. `http://127.0.0.1:18789`.
    pub(crate) url: String,
    /// Hooks path.
    #[serde(default = "default_hooks_path")]
    pub(crate) path: String,
    /// Environment variable that holds the hook token.
    #[serde(default)]
    pub(crate) token_env: Option<String>,
    /// File that holds the hook token.
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    /// Ask the gateway to answer when the agent's run has ended, so a run
    /// that ends without a handoff is noticed at once.
    #[serde(default)]
    pub(crate) wait_for_completion: bool,
    /// The agent's id on the gateway, when it differs from orch's (for a
    /// transport written inline for one agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) agent_id: Option<String>,
}

fn default_hooks_path() -> String {
    "/hooks".to_owned()
}

/// One agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentSpec {
    /// The transport: a name from `transports`, or an inline spec.
    pub(crate) transport: TransportRef,
    /// Agent that validates this one's results (`--validate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) validator: Option<String>,
    /// Most delegations in flight to this agent at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrent: Option<usize>,
    /// The agent's id on its OpenClaw gateway, if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remote_id: Option<String>,
    /// Display name (default: the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// One-line role, used by routing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) role: String,
    /// What the agent does, used by routing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) description: String,
    /// Capability tags, used by routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) capabilities: Vec<String>,
    /// Discord channel names the agent works in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) channels: Vec<String>,
}

/// `transport: sim` or `transport: { kind: exec, command: [...] }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum TransportRef {
    Named(String),
    Inline(TransportSpec),
}

// Hand-written so that a mistake inside an inline spec is reported as
// itself ("unknown field `token`") instead of serde's untagged "data did
// not match any variant".
impl<'de> Deserialize<'de> for TransportRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(name) => Ok(Self::Named(name)),
            value @ serde_norway::Value::Mapping(_) => serde_norway::from_value(value)
                .map(Self::Inline)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "expected the name of a transport or an inline spec like { kind: sim }",
            )),
        }
    }
}

/// A duration written as seconds (`120`) or friendly (`90s`, `10m`, `1h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => crate::args::parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::args::format_duration(self.0))
    }
}

/// A configuration error: the file, and where in it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub(crate) struct ConfigError {
    pub(crate) file: String,
    pub(crate) message: String,
}

/// Finds and loads the effective configuration.
pub(crate) fn load(explicit: Option<&Path>) -> Result<(Config, Source), ConfigError> {
    let Some((path, how)) = locate(explicit) else {
        let config = parse(DEFAULT_YAML, "<embedded default>", Path::new("."))?;
        return Ok((config, Source::Embedded));
    };
    let text = read_capped(&path)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config = parse(&text, &path.display().to_string(), base)?;
    Ok((config, Source::File { path, how }))
}

fn locate(explicit: Option<&Path>) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), "--config"));
    }
    if let Some(p) = std::env::var_os("ORCH_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), "ORCH_CONFIG"));
    }
    let local = PathBuf::from("orch.yaml");
    if local.is_file() {
        return Some((local, "./orch.yaml"));
    }
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|dir| dir.join("orch").join("orch.yaml"))?;
    user.is_file().then_some((user, "user config"))
}

fn read_capped(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |message: String| ConfigError {
        file: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!(
            "larger than {MAX_CONFIG_BYTES} bytes; this is not a config file"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses and checks a config document; `base` resolves relative paths.
pub(crate) fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
    let err = |message: String| ConfigError {
        file: file.to_owned(),
        message,
    };
    let de = serde_norway::Deserializer::from_str(text);
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let location = inner
            .location()
            .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        let message = strip_location(&inner.to_string());
        // serde_norway often names the enclosing path itself.
        let first = path.split(['.', '[']).next().unwrap_or_default();
        if path == "." || path.is_empty() || message.starts_with(first) {
            err(format!("{location}{message}"))
        } else {
            err(format!("{location}`{path}`: {message}"))
        }
    })?;
    check(&config).map_err(err)?;
    if file != "<embedded default>" {
        if config.store.path.is_relative() {
            config.store.path = base.join(&config.store.path);
        }
        if let Some(r) = config.registry.as_mut().filter(|r| r.is_relative()) {
            *r = base.join(&*r);
        }
        if let Some(t) = config
            .discord
            .token_file
            .as_mut()
            .filter(|t| t.is_relative())
        {
            *t = base.join(&*t);
        }
    }
    for spec in config
        .transports
        .values_mut()
        .chain(
            config
                .agents
                .values_mut()
                .filter_map(|a| match &mut a.transport {
                    TransportRef::Inline(spec) => Some(spec),
                    TransportRef::Named(_) => None,
                }),
        )
    {
        let relative = match spec {
            TransportSpec::Exec(exec) => exec.cwd.as_mut(),
            TransportSpec::Openclaw(oc) => oc.token_file.as_mut(),
            TransportSpec::Sim(_) => None,
        };
        if let Some(path) = relative.filter(|p| p.is_relative()) {
            *path = base.join(&*path);
        }
    }
    Ok(config)
}

/// serde_norway appends " at line X column Y" to messages; we print the
/// location first, once.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

/// Cross-field checks serde cannot express.
fn check(config: &Config) -> Result<(), String> {
    if config.registry.is_some() && !config.agents.is_empty() {
        return Err(
            "give the agents either in `agents` or in the `registry` file, not both".into(),
        );
    }
    for (id, agent) in &config.agents {
        orch_handoff::validate_id(id)
            .map_err(|e| format!("`agents.{id}`: invalid agent id: {e}"))?;
        if let TransportRef::Named(name) = &agent.transport
            && !config.transports.contains_key(name)
        {
            let known: Vec<&str> = config.transports.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(format!(
                "`agents.{id}.transport`: no transport named {name:?} (defined: {known})"
            ));
        }
        if let Some(v) = &agent.validator {
            if !config.agents.contains_key(v) {
                return Err(format!("`agents.{id}.validator`: unknown agent {v:?}"));
            }
            if v == id {
                return Err(format!(
                    "`agents.{id}.validator`: an agent cannot validate itself"
                ));
            }
        }
        if agent.max_concurrent == Some(0) {
            return Err(format!("`agents.{id}.max_concurrent`: must be at least 1"));
        }
    }
    for (name, spec) in &config.transports {
        check_transport(spec).map_err(|m| format!("`transports.{name}`: {m}"))?;
    }
    for (id, agent) in &config.agents {
        if let TransportRef::Inline(spec) = &agent.transport {
            check_transport(spec).map_err(|m| format!("`agents.{id}.transport`: {m}"))?;
        }
    }
    Ok(())
}

fn check_transport(spec: &TransportSpec) -> Result<(), String> {
    match spec {
        TransportSpec::Sim(_) => Ok(()),
        TransportSpec::Exec(e) if e.command.is_empty() || e.command[0].is_empty() => {
            Err("`command` is empty: give the program and its arguments as a list".into())
        }
        TransportSpec::Exec(_) => Ok(()),
        TransportSpec::Openclaw(oc) => {
            if !(oc.url.starts_with("http://") || oc.url.starts_with("https://")) {
                return Err(format!(
                    "`url` {:?} must start with http:// or https://",
                    oc.url
                ));
            }
            match (&oc.token_env, &oc.token_file) {
                (None, None) => Err(
                    "no hook token: set `token_env` (an environment variable) or `token_file`"
                        .into(),
                ),
                (Some(_), Some(_)) => Err("set only one of `token_env` and `token_file`".into()),
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_and_example_parse() {
        let d = parse(DEFAULT_YAML, "default", Path::new(".")).unwrap();
        assert!(
            d.agents.is_empty() && d.registry.is_none(),
            "agents come from the registry"
        );
        assert!(d.transports.contains_key("sim"));
        assert_eq!(d.acl, Policy::atomizer_default());
        assert_eq!(d.store.path, PathBuf::from("./.orch/handoffs"));
        let e = parse(EXAMPLE_YAML, "example", Path::new("/etc/orch")).unwrap();
        assert_eq!(e.agents.len(), 8);
        assert!(
            e.transports
                .values()
                .any(|t| matches!(t, TransportSpec::Openclaw(_)))
        );
        assert_eq!(e.store.path, PathBuf::from("/etc/orch/./.orch/handoffs"));
    }

    #[test]
    fn errors_name_the_place() {
        let cases = [
            (
                "typo",
                "agents:\n  webster: { transport: sim, validatr: x }\ntransports: { sim: { kind: sim } }\n",
            ),
            (
                "unknown transport",
                "agents:\n  webster: { transport: gateway }\n",
            ),
            (
                "bad duration",
                "delegation: { timeout: soon }\nagents: { a: { transport: { kind: sim } } }\n",
            ),
            (
                "inline token",
                "agents:\n  a:\n    transport: { kind: openclaw, url: 'http://x', token: abc }\n",
            ),
            (
                "no token",
                "agents:\n  a:\n    transport: { kind: openclaw, url: 'http://x' }\n",
            ),
            (
                "empty command",
                "agents:\n  a:\n    transport: { kind: exec, command: [] }\n",
            ),
            (
                "bad acl",
                "acl: { manager: webster }\nagents: { a: { transport: { kind: sim } } }\n",
            ),
            (
                "registry and agents",
                "registry: r.json\nagents: { a: { transport: { kind: sim } } }\n",
            ),
            (
                "bad agent id",
                "agents: { '../x': { transport: { kind: sim } } }\n",
            ),
            (
                "unknown validator",
                "agents: { a: { transport: { kind: sim }, validator: b } }\n",
            ),
            ("not yaml", "agents: [\n"),
        ];
        let mut out = String::new();
        for (name, text) in cases {
            let e = parse(text, "orch.yaml", Path::new(".")).unwrap_err();
            out.push_str(&format!("{name}: {e}\n"));
        }
        insta::assert_snapshot!(out);
    }
}
