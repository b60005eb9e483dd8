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
//! transport is built, and never printed. The same goes for the NATS store
//! (`store: { kind: nats, url, bucket, token_env | token_file | credentials }`):
//! its token or `.creds` file is read only when the store is opened. The
//! variables secrets are read from ([`Config::secret_env_vars`]) are taken
//! out of what exec agents inherit, and a URL is shown without its
//! credentials ([`Config::redacted`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_acl::Policy;
use orch_delegate::transport::exec::ExecConfig;
use orch_delegate::transport::openclaw::OpenClawConfig;
use orch_delegate::transport::sim::SimConfig;
use orch_handoff::{DEFAULT_MAX_HANDOFF_BYTES, WatchMode};
use orch_support::url::redact_userinfo;
use serde::{Deserialize, Deserializer, Serialize};

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

/// Variables orch reads a secret from by default, whatever the config
/// says: the names `orch config init` writes and the docs use. Exec agents
/// never inherit them (unless a transport's `env_passthrough` lets one
/// through).
pub(crate) const DEFAULT_SECRET_VARS: [&str; 3] =
    ["OPENCLAW_HOOKS_TOKEN", "DISCORD_BOT_TOKEN", "NATS_TOKEN"];

impl Config {
    /// Every environment variable orch may read a secret from: the
    /// [`DEFAULT_SECRET_VARS`], the Discord bot token's, the NATS store's
    /// and every OpenClaw transport's `token_env` (named or inline). A
    /// registry file's inline transports add theirs where the transports
    /// are built.
    pub(crate) fn secret_env_vars(&self) -> BTreeSet<String> {
        let mut vars: BTreeSet<String> = DEFAULT_SECRET_VARS.map(String::from).into();
        vars.insert(self.discord.token_env.clone());
        vars.extend(self.store.nats.token_env.clone());
        let inline = self.agents.values().filter_map(|a| match &a.transport {
            TransportRef::Inline(spec) => Some(spec),
            TransportRef::Named(_) => None,
        });
        for spec in self.transports.values().chain(inline) {
            vars.extend(spec.token_env().map(str::to_owned));
        }
        vars.retain(|v| !v.is_empty());
        vars
    }

    /// The config as it may be shown: every URL without its userinfo
    /// (`http://user:pass@host` → `http://[redacted]@host`).
    pub(crate) fn redacted(&self) -> Config {
        let mut shown = self.clone();
        let redact = |url: &mut String| {
            if let std::borrow::Cow::Owned(clean) = redact_userinfo(url) {
                *url = clean;
            }
        };
        redact(&mut shown.discord.base_url);
        redact(&mut shown.store.nats.url);
        let inline = shown
            .agents
            .values_mut()
            .filter_map(|a| match &mut a.transport {
                TransportRef::Inline(spec) => Some(spec),
                TransportRef::Named(_) => None,
            });
        for spec in shown.transports.values_mut().chain(inline) {
            if let TransportSpec::Openclaw(oc) = spec {
                redact(&mut oc.url);
            }
        }
        shown
    }
}

impl TransportSpec {
    /// The variable this transport reads its token from, if any.
    pub(crate) fn token_env(&self) -> Option<&str> {
        match self {
            Self::Openclaw(oc) => oc.token_env.as_deref(),
            Self::Sim(_) | Self::Exec(_) => None,
        }
    }
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

/// Which handoff store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// Files under `path`, waited for with inotify or polling (one host).
    #[default]
    Fs,
    /// NATS JetStream: KV buckets and a ledger stream (several hosts).
    Nats,
}

/// `store:`. One map for both kinds (`kind: fs`, the default, or
/// `kind: nats`); a key of the other kind is an error, so a typo or a
/// half-converted config cannot silently use the wrong store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStore", into = "RawStore")]
pub(crate) struct StoreSection {
    pub(crate) kind: StoreKind,
    /// Root of the file store (relative: to the config file's directory;
    /// for the embedded default, to the working directory).
    pub(crate) path: PathBuf,
    /// auto | inotify | poll
    pub(crate) watch: WatchMode,
    /// Handoffs larger than this are refused (both kinds).
    pub(crate) max_handoff_bytes: u64,
    /// The NATS settings (used with `kind: nats`).
    pub(crate) nats: NatsSection,
}

/// The NATS store's settings. Like the transports' tokens, credentials are
/// only *named* here (a variable or a file), never written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NatsSection {
    /// Server URL(s), comma-separated (`nats://host:4222`, `tls://…`).
    pub(crate) url: String,
    /// The handoff bucket (`<bucket>-workflows` and `ORCH_LEDGER_<bucket>`
    /// go with it).
    pub(crate) bucket: String,
    /// Environment variable that holds a token.
    pub(crate) token_env: Option<String>,
    /// File that holds a token.
    pub(crate) token_file: Option<PathBuf>,
    /// A `.creds` file (user JWT + NKey seed).
    pub(crate) credentials: Option<PathBuf>,
    /// Replicas of the buckets and the ledger when orch creates them.
    pub(crate) replicas: usize,
    /// Values kept per key when orch creates the buckets.
    pub(crate) history: i64,
    /// How long connecting may take.
    pub(crate) connect_timeout: Dur,
    /// How long one store operation may take, tries after timeouts and
    /// leader elections included (a delegation waits its own timeout).
    pub(crate) request_timeout: Dur,
    /// The longest wait between two tries.
    pub(crate) retry_max_delay: Dur,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            bucket: "orch".to_owned(),
            token_env: None,
            token_file: None,
            credentials: None,
            replicas: 1,
            history: 1,
            connect_timeout: Dur(Duration::from_secs(5)),
            request_timeout: Dur(Duration::from_secs(30)),
            retry_max_delay: Dur(Duration::from_secs(2)),
        }
    }
}

/// `store:` as written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// fs (default) | nats
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<StoreKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watch: Option<WatchMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replicas: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_max_delay: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_handoff_bytes: Option<u64>,
}

impl TryFrom<RawStore> for StoreSection {
    type Error = String;

    fn try_from(raw: RawStore) -> Result<Self, String> {
        let kind = raw.kind.unwrap_or_default();
        let misplaced =
            |key: &str, applies: &str| format!("`store.{key}` applies to `kind: {applies}` only");
        match kind {
            StoreKind::Fs => {
                let nats_keys = [
                    ("url", raw.url.is_some()),
                    ("bucket", raw.bucket.is_some()),
                    ("token_env", raw.token_env.is_some()),
                    ("token_file", raw.token_file.is_some()),
                    ("credentials", raw.credentials.is_some()),
                    ("replicas", raw.replicas.is_some()),
                    ("history", raw.history.is_some()),
                    ("connect_timeout", raw.connect_timeout.is_some()),
                    ("request_timeout", raw.request_timeout.is_some()),
                    ("retry_max_delay", raw.retry_max_delay.is_some()),
                ];
                if let Some((key, _)) = nats_keys.iter().find(|(_, set)| *set) {
                    return Err(misplaced(key, "nats"));
                }
            }
            StoreKind::Nats => {
                if raw.path.is_some() {
                    return Err(misplaced("path", "fs"));
                }
                if raw.watch.is_some() {
                    return Err(misplaced("watch", "fs"));
                }
            }
        }
        let defaults = NatsSection::default();
        let nats = NatsSection {
            url: raw.url.unwrap_or(defaults.url),
            bucket: raw.bucket.unwrap_or(defaults.bucket),
            token_env: raw.token_env,
            token_file: raw.token_file,
            credentials: raw.credentials,
            replicas: raw.replicas.unwrap_or(defaults.replicas),
            history: raw.history.unwrap_or(defaults.history),
            connect_timeout: raw.connect_timeout.unwrap_or(defaults.connect_timeout),
            request_timeout: raw.request_timeout.unwrap_or(defaults.request_timeout),
            retry_max_delay: raw.retry_max_delay.unwrap_or(defaults.retry_max_delay),
        };
        if kind == StoreKind::Nats {
            check_nats(&nats)?;
        }
        Ok(Self {
            kind,
            path: raw.path.unwrap_or_else(default_store_path),
            watch: raw.watch.unwrap_or_default(),
            max_handoff_bytes: raw.max_handoff_bytes.unwrap_or(DEFAULT_MAX_HANDOFF_BYTES),
            nats,
        })
    }
}

impl From<StoreSection> for RawStore {
    fn from(s: StoreSection) -> Self {
        let max_handoff_bytes = Some(s.max_handoff_bytes);
        match s.kind {
            StoreKind::Fs => Self {
                path: Some(s.path),
                watch: Some(s.watch),
                max_handoff_bytes,
                ..Self::default()
            },
            StoreKind::Nats => Self {
                kind: Some(StoreKind::Nats),
                url: Some(s.nats.url),
                bucket: Some(s.nats.bucket),
                token_env: s.nats.token_env,
                token_file: s.nats.token_file,
                credentials: s.nats.credentials,
                replicas: Some(s.nats.replicas),
                history: Some(s.nats.history),
                connect_timeout: Some(s.nats.connect_timeout),
                request_timeout: Some(s.nats.request_timeout),
                retry_max_delay: Some(s.nats.retry_max_delay),
                max_handoff_bytes,
                ..Self::default()
            },
        }
    }
}

/// What `kind: nats` needs that serde cannot check.
pub(crate) fn check_nats(n: &NatsSection) -> Result<(), String> {
    for url in n.url.split(',').map(str::trim) {
        let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(format!(
                "`store.url` {:?} must start with nats:// or tls:// (several: comma-separated)",
                redact_userinfo(url)
            ));
        }
        if url.contains('@') {
            // Refused without quoting it: the part before `@` is a secret.
            return Err(
                "`store.url` must not hold credentials: name a token with `token_env` or `token_file`, or a `.creds` file with `credentials`"
                    .into(),
            );
        }
    }
    let bucket_ok = !n.bucket.is_empty()
        && n.bucket.len() <= 64
        && n.bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !bucket_ok {
        return Err(format!(
            "`store.bucket` {:?}: use 1 to 64 ASCII letters, digits, '_' or '-'",
            n.bucket
        ));
    }
    let credentials = [
        n.token_env.is_some(),
        n.token_file.is_some(),
        n.credentials.is_some(),
    ];
    if credentials.iter().filter(|set| **set).count() > 1 {
        return Err("`store`: set only one of `token_env`, `token_file` and `credentials`".into());
    }
    if !(1..=5).contains(&n.replicas) {
        return Err("`store.replicas` must be 1 to 5".into());
    }
    if !(1..=64).contains(&n.history) {
        return Err("`store.history` must be 1 to 64 (the most NATS KV keeps)".into());
    }
    if n.request_timeout.0 < Duration::from_secs(1) {
        return Err("`store.request_timeout` must be at least 1s".into());
    }
    if n.retry_max_delay.0.is_zero() || n.retry_max_delay.0 > n.request_timeout.0 {
        return Err(
            "`store.retry_max_delay` must be more than 0 and at most `store.request_timeout`"
                .into(),
        );
    }
    Ok(())
}

fn default_store_path() -> PathBuf {
    PathBuf::from("./.orch/handoffs")
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            kind: StoreKind::Fs,
            path: default_store_path(),
            watch: WatchMode::default(),
            max_handoff_bytes: DEFAULT_MAX_HANDOFF_BYTES,
            nats: NatsSection::default(),
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
    /// A cap on tries; unset (the default): retry until the deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempts: Option<u32>,
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

/// A transport, by kind: the transports' own settings types, whose serde
/// shape is the `orch.yaml` keys (unknown keys refused; tokens only named).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum TransportSpec {
    /// The simulated fleet.
    Sim(SimConfig),
    /// A local command per agent.
    Exec(ExecConfig),
    /// OpenClaw Gateway HTTP hooks.
    Openclaw(OpenClawConfig),
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
pub(crate) use orch_support::duration::Dur;

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

/// `path` relative to `base`, without the `./` a plain join repeats
/// (`./` + `./.orch` would read `././.orch`).
fn rebase(base: &Path, path: &Path) -> PathBuf {
    base.join(path).components().collect()
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
        // Checks of a whole section (`store`) name their field themselves;
        // serde has no position for them.
        if !path.is_empty() && path != "." && message.starts_with(&format!("`{path}")) {
            return err(message);
        }
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
            config.store.path = rebase(base, &config.store.path);
        }
        if let Some(r) = config.registry.as_mut().filter(|r| r.is_relative()) {
            *r = rebase(base, r);
        }
        if let Some(t) = config
            .discord
            .token_file
            .as_mut()
            .filter(|t| t.is_relative())
        {
            *t = rebase(base, t);
        }
        let nats = &mut config.store.nats;
        for file in [nats.token_file.as_mut(), nats.credentials.as_mut()]
            .into_iter()
            .flatten()
            .filter(|f| f.is_relative())
        {
            *file = rebase(base, file);
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
            *path = rebase(base, path);
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
    let limit = match spec {
        TransportSpec::Sim(s) => s.max_task_bytes,
        TransportSpec::Exec(e) => e.max_task_bytes,
        TransportSpec::Openclaw(oc) => oc.max_task_bytes,
    };
    if limit == 0 {
        return Err("`max_task_bytes` must be at least 1".into());
    }
    match spec {
        TransportSpec::Sim(_) => Ok(()),
        TransportSpec::Exec(e) if e.argv.first().is_none_or(String::is_empty) => {
            Err("`command` is empty: give the program and its arguments as a list".into())
        }
        TransportSpec::Exec(e) => {
            match e
                .env_passthrough
                .iter()
                .find(|v| v.is_empty() || v.contains(['=', '\0']))
            {
                Some(bad) => Err(format!(
                    "`env_passthrough`: {bad:?} is not an environment variable name"
                )),
                None => Ok(()),
            }
        }
        TransportSpec::Openclaw(oc) => {
            if !(oc.url.starts_with("http://") || oc.url.starts_with("https://")) {
                return Err(format!(
                    "`url` {:?} must start with http:// or https://",
                    redact_userinfo(&oc.url)
                ));
            }
            if oc.request_timeout.is_zero() {
                return Err("`request_timeout` must be more than 0".into());
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
    fn the_nats_store_is_one_map_with_named_credentials() {
        let text = "store:\n  kind: nats\n  url: nats://10.0.0.5:4222, nats://10.0.0.6:4222\n  bucket: team-a\n  credentials: secrets/orch.creds\n  max_handoff_bytes: 1048576\n";
        let c = parse(text, "orch.yaml", Path::new("/etc/orch")).unwrap();
        assert_eq!(c.store.kind, StoreKind::Nats);
        assert_eq!(c.store.nats.bucket, "team-a");
        assert_eq!(c.store.nats.replicas, 1);
        assert_eq!(
            c.store.nats.credentials.as_deref(),
            Some(Path::new("/etc/orch/secrets/orch.creds"))
        );
        assert_eq!(c.store.max_handoff_bytes, 1 << 20);
        // Shown as written, with the defaults filled in, and read back the same.
        let shown = serde_norway::to_string(&c.store).unwrap();
        insta::assert_snapshot!(shown, @r"
        kind: nats
        url: nats://10.0.0.5:4222, nats://10.0.0.6:4222
        bucket: team-a
        credentials: /etc/orch/secrets/orch.creds
        replicas: 1
        history: 1
        connect_timeout: 5s
        request_timeout: 30s
        retry_max_delay: 2s
        max_handoff_bytes: 1048576
        ");
        let back: StoreSection = serde_norway::from_str(&shown).unwrap();
        assert_eq!((back.kind, &back.nats), (c.store.kind, &c.store.nats));
        // The file store is still the default, shown as before.
        let d = parse(
            "agents: { a: { transport: { kind: sim } } }\n",
            "orch.yaml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(d.store.kind, StoreKind::Fs);
        assert!(!serde_norway::to_string(&d.store).unwrap().contains("kind"));
    }

    #[test]
    fn store_errors_name_the_place() {
        let cases = [
            (
                "nats key on fs",
                "store: { path: x, url: 'nats://h:4222' }\n",
            ),
            ("fs key on nats", "store:\n  kind: nats\n  path: ./x\n"),
            ("unknown kind", "store: { kind: redis }\n"),
            ("typo", "store:\n  kind: nats\n  bucekt: x\n"),
            (
                "token in url",
                "store: { kind: nats, url: 'nats://me:hunter2@h:4222' }\n",
            ),
            (
                "bad scheme",
                "store: { kind: nats, url: 'http://h:4222' }\n",
            ),
            ("bad bucket", "store: { kind: nats, bucket: 'a.b' }\n"),
            (
                "two credentials",
                "store: { kind: nats, token_env: T, credentials: c.creds }\n",
            ),
            ("history", "store: { kind: nats, history: 100 }\n"),
        ];
        let mut out = String::new();
        for (name, text) in cases {
            let e = parse(text, "orch.yaml", Path::new(".")).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            out.push_str(&format!("{name}: {e}\n"));
        }
        insta::assert_snapshot!(out);
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
            (
                "no task fits",
                "agents: { a: { transport: { kind: sim, max_task_bytes: 0 } } }\n",
            ),
            (
                "bad passthrough",
                "agents: { a: { transport: { kind: exec, command: [x], env_passthrough: ['A=B'] } } }\n",
            ),
            (
                "credentials in a bad url",
                "agents:\n  a:\n    transport: { kind: openclaw, url: 'ftp://me:hunter2@gw', token_env: T }\n",
            ),
        ];
        let mut out = String::new();
        for (name, text) in cases {
            let e = parse(text, "orch.yaml", Path::new(".")).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            out.push_str(&format!("{name}: {e}\n"));
        }
        insta::assert_snapshot!(out);
    }

    /// Every variable a secret is read from, whatever reads it, plus the
    /// default names.
    #[test]
    fn secret_variables_are_every_token_env() {
        let text = "
transports:
  gw: { kind: openclaw, url: 'http://gw', token_env: GW_TOKEN }
  local: { kind: exec, command: [x], env_passthrough: [GW_TOKEN] }
agents:
  a: { transport: gw }
  b: { transport: { kind: openclaw, url: 'http://other', token_env: OTHER_TOKEN } }
  c: { transport: { kind: openclaw, url: 'http://third', token_file: /run/t } }
discord: { token_env: MY_DISCORD }
";
        let c = parse(text, "orch.yaml", Path::new(".")).unwrap();
        let vars: Vec<String> = c.secret_env_vars().into_iter().collect();
        assert_eq!(
            vars,
            [
                "DISCORD_BOT_TOKEN",
                "GW_TOKEN",
                "MY_DISCORD",
                "NATS_TOKEN",
                "OPENCLAW_HOOKS_TOKEN",
                "OTHER_TOKEN"
            ]
        );
        let nats = parse(
            "store: { kind: nats, token_env: ORCH_NATS }\n",
            "orch.yaml",
            Path::new("."),
        )
        .unwrap();
        assert!(nats.secret_env_vars().contains("ORCH_NATS"));
    }

    /// What `config show` prints: no credentials in any URL, the rest as is.
    #[test]
    fn the_shown_config_has_no_credentials_in_urls() {
        let text = "
transports:
  gw: { kind: openclaw, url: 'http://me:hunter2@gw:18789', token_env: T }
agents:
  a: { transport: gw }
  b: { transport: { kind: openclaw, url: 'https://tok3n@other', token_env: T } }
discord: { base_url: 'https://bot:s3cret@discord.example/api/v10' }
";
        let c = parse(text, "orch.yaml", Path::new(".")).unwrap();
        let shown = c.redacted();
        let yaml = serde_norway::to_string(&shown).unwrap();
        for secret in ["hunter2", "tok3n", "s3cret", "me:"] {
            assert!(!yaml.contains(secret), "{secret}: {yaml}");
        }
        assert!(yaml.contains("http://[redacted]@gw:18789"), "{yaml}");
        assert!(yaml.contains("https://[redacted]@other"), "{yaml}");
        assert!(
            yaml.contains("https://[redacted]@discord.example/api/v10"),
            "{yaml}"
        );
        // The config itself keeps them (the transport refuses them).
        assert_eq!(
            c.transports["gw"],
            parse(text, "x", Path::new(".")).unwrap().transports["gw"]
        );
    }
}
