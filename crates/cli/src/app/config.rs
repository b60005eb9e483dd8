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
//! transport is built (by the transport itself), and never printed. The
//! same goes for the NATS store (`store: { kind: nats, url, bucket,
//! token_env | token_file | credentials }`): its token or `.creds` file is
//! read only when the store connects. The variables secrets are read from
//! ([`Config::secret_env_vars`]) are taken out of what exec agents inherit,
//! and a URL is shown without its credentials ([`Config::redacted`]).
//!
//! The transports' and stores' sections are the libraries' own settings
//! types (`SimConfig`, `ExecConfig`, `OpenClawConfig`, `FsStoreConfig`,
//! `NatsStoreConfig`), whose serde shape is these keys: nothing is copied
//! across. Only `store:` is read by hand here, because it is one map for
//! two stores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_acl::Policy;
use orch_delegate::RetryPolicy;
use orch_delegate::transport::exec::ExecConfig;
use orch_delegate::transport::openclaw::OpenClawConfig;
use orch_delegate::transport::sim::SimConfig;
use orch_handoff::{FsStoreConfig, NatsAuth, NatsStoreConfig, WatchMode};
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
    /// Workflow settings.
    #[serde(default)]
    pub(crate) workflows: WorkflowsSection,
}

/// `workflows:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WorkflowsSection {
    /// The agents that may approve or reject a workflow step through a
    /// tool call (`orch mcp`'s `workflow_approve`); people approve with
    /// `orch workflow approve`.
    pub(crate) approvers: Vec<String>,
}

impl Default for WorkflowsSection {
    fn default() -> Self {
        Self {
            approvers: vec!["manager".to_owned()],
        }
    }
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
        if let NatsAuth::TokenEnv(var) = &self.store.nats.auth {
            vars.insert(var.clone());
        }
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
///
/// The keys are the stores' own settings: `path` and `watch` of the file
/// store ([`FsStoreConfig`]), every key of [`NatsStoreConfig::KEYS`] (its
/// serde form, checked as it is read), and `max_handoff_bytes` for both.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoreSection {
    pub(crate) kind: StoreKind,
    /// The file store (`kind: fs`): root (relative: to the config file's
    /// directory; for the embedded default, to the working directory),
    /// watch mode, handoff cap.
    pub(crate) fs: FsStoreConfig,
    /// The NATS store (`kind: nats`), credentials only *named*. Its
    /// handoff cap is the file store's.
    pub(crate) nats: NatsStoreConfig,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            kind: StoreKind::Fs,
            fs: FsStoreConfig::new("./.orch/handoffs"),
            nats: NatsStoreConfig::default(),
        }
    }
}

/// The keys of `store:`, in the order an unknown key's error lists them.
fn store_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        ["kind", "path", "watch"]
            .into_iter()
            .chain(NatsStoreConfig::KEYS.iter().copied())
            .collect()
    })
}

/// Shown as written: the file store's keys for `kind: fs` (without
/// `kind`), else `kind: nats` and the NATS store's.
impl Serialize for StoreSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Fs<'a> {
            path: &'a Path,
            watch: WatchMode,
            max_handoff_bytes: u64,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum Tagged<'a> {
            Nats(&'a NatsStoreConfig),
        }
        match self.kind {
            StoreKind::Fs => Fs {
                path: &self.fs.root,
                watch: self.fs.watch,
                max_handoff_bytes: self.fs.max_handoff_bytes,
            }
            .serialize(s),
            StoreKind::Nats => Tagged::Nats(&self.nats).serialize(s),
        }
    }
}

/// Read in one pass, so every error of a key or value keeps its place:
/// `kind`, `path` and `watch` are taken out here and every other key goes
/// on to [`NatsStoreConfig`]'s own deserializer. Checks of the whole
/// section (a key of the other kind, then the NATS store's checks) have no
/// place; they are reported once the map is read, naming their key
/// (`store.url`).
impl<'de> Deserialize<'de> for StoreSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("StoreSection", store_keys(), StoreVisitor)?
            .map_err(serde::de::Error::custom)
    }
}

struct StoreVisitor;

impl<'de> serde::de::Visitor<'de> for StoreVisitor {
    /// The section, or what a check of the whole section found.
    type Value = Result<StoreSection, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store settings (a map)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut fs = FsKeys::default();
        let keys = StoreKeys {
            map,
            fs: &mut fs,
            nats_keys: Vec::new(),
        };
        let nats = match NatsStoreConfig::deserialize(serde::de::value::MapAccessDeserializer::new(
            keys,
        )) {
            Ok(nats) => nats,
            Err(SectionError::Read(e)) => return Err(e),
            Err(SectionError::Check(message)) => return Ok(Err(message)),
        };
        let defaults = StoreSection::default();
        Ok(Ok(StoreSection {
            kind: fs.kind.unwrap_or_default(),
            fs: FsStoreConfig {
                root: fs.path.unwrap_or(defaults.fs.root),
                watch: fs.watch.unwrap_or_default(),
                max_handoff_bytes: nats.max_handoff_bytes,
                ..defaults.fs
            },
            nats,
        }))
    }
}

/// The keys of `store:` that are not the NATS store's.
#[derive(Default)]
struct FsKeys {
    kind: Option<StoreKind>,
    path: Option<PathBuf>,
    watch: Option<WatchMode>,
}

/// `store:`'s map as the NATS store's deserializer sees it: without
/// `kind`, `path` and `watch`, which it stores in `fs`.
struct StoreKeys<'a, A> {
    map: A,
    fs: &'a mut FsKeys,
    /// The NATS keys given, for the check at the end.
    nats_keys: Vec<&'static str>,
}

impl<A> StoreKeys<'_, A> {
    /// A key the kind does not take, once the whole map is read.
    fn misplaced(&self) -> Option<String> {
        let misplaced =
            |key: &str, applies: &str| format!("`store.{key}` applies to `kind: {applies}` only");
        match self.fs.kind.unwrap_or_default() {
            StoreKind::Fs => NatsStoreConfig::KEYS
                .iter()
                .filter(|k| **k != "max_handoff_bytes")
                .find(|k| self.nats_keys.contains(k))
                .map(|key| misplaced(key, "nats")),
            StoreKind::Nats => [
                ("path", self.fs.path.is_some()),
                ("watch", self.fs.watch.is_some()),
            ]
            .into_iter()
            .find(|(_, given)| *given)
            .map(|(key, _)| misplaced(key, "fs")),
        }
    }
}

/// An error while reading `store:`: the reader's (a key or value, which
/// has a place in the file), or a check of the whole section (serde's
/// `custom`: what `try_from` and the end of the map report).
#[derive(Debug)]
enum SectionError<E> {
    Read(E),
    Check(String),
}

impl<E: std::fmt::Display> std::fmt::Display for SectionError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(e) => e.fmt(f),
            Self::Check(message) => f.write_str(message),
        }
    }
}

impl<E: std::error::Error> std::error::Error for SectionError<E> {}

impl<E: serde::de::Error> serde::de::Error for SectionError<E> {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Self::Check(message.to_string())
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        Self::Read(E::invalid_type(unexp, exp))
    }

    fn invalid_value(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        Self::Read(E::invalid_value(unexp, exp))
    }

    fn invalid_length(len: usize, exp: &dyn serde::de::Expected) -> Self {
        Self::Read(E::invalid_length(len, exp))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::Read(E::unknown_variant(variant, expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::Read(E::unknown_field(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Read(E::missing_field(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::Read(E::duplicate_field(field))
    }
}

/// One key of `store:`, known or refused as it is read (so the error has
/// its line and column).
enum StoreKey {
    Kind,
    Path,
    Watch,
    Nats(&'static str),
}

struct StoreKeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for StoreKeySeed {
    type Value = StoreKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StoreKey, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl serde::de::Visitor<'_> for StoreKeySeed {
    type Value = StoreKey;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a store setting")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<StoreKey, E> {
        match key {
            "kind" => Ok(StoreKey::Kind),
            "path" => Ok(StoreKey::Path),
            "watch" => Ok(StoreKey::Watch),
            _ => match NatsStoreConfig::KEYS.iter().find(|k| **k == key) {
                Some(k) => Ok(StoreKey::Nats(k)),
                None => Err(E::unknown_field(key, store_keys())),
            },
        }
    }
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for StoreKeys<'_, A> {
    type Error = SectionError<A::Error>;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        use serde::de::Error;
        use serde::de::value::BorrowedStrDeserializer;
        loop {
            let key = self
                .map
                .next_key_seed(StoreKeySeed)
                .map_err(SectionError::Read)?;
            let read = |e| SectionError::Read(e);
            match key {
                None => {
                    return match self.misplaced() {
                        Some(message) => Err(SectionError::Check(message)),
                        None => Ok(None),
                    };
                }
                Some(StoreKey::Kind) if self.fs.kind.is_some() => {
                    return Err(Self::Error::duplicate_field("kind"));
                }
                Some(StoreKey::Kind) => self.fs.kind = Some(self.map.next_value().map_err(read)?),
                Some(StoreKey::Path) if self.fs.path.is_some() => {
                    return Err(Self::Error::duplicate_field("path"));
                }
                Some(StoreKey::Path) => self.fs.path = Some(self.map.next_value().map_err(read)?),
                Some(StoreKey::Watch) if self.fs.watch.is_some() => {
                    return Err(Self::Error::duplicate_field("watch"));
                }
                Some(StoreKey::Watch) => {
                    self.fs.watch = Some(self.map.next_value().map_err(read)?);
                }
                Some(StoreKey::Nats(key)) => {
                    self.nats_keys.push(key);
                    return seed
                        .deserialize(BorrowedStrDeserializer::<Self::Error>::new(key))
                        .map(Some);
                }
            }
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.map.next_value_seed(seed).map_err(SectionError::Read)
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
    pub(crate) retry: RetryPolicy,
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
            retry: RetryPolicy::default(),
            completion_grace: Dur(d.completion_grace),
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
        if config.store.fs.root.is_relative() {
            config.store.fs.root = rebase(base, &config.store.fs.root);
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
        if let NatsAuth::TokenFile(file) | NatsAuth::CredentialsFile(file) =
            &mut config.store.nats.auth
            && file.is_relative()
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
    for (i, a) in config.workflows.approvers.iter().enumerate() {
        orch_handoff::validate_id(a)
            .map_err(|e| format!("`workflows.approvers[{i}]`: not an agent id: {e}"))?;
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
    use orch_delegate::transport::sim::Behaviour;

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
        assert_eq!(d.store.fs.root, PathBuf::from("./.orch/handoffs"));
        let e = parse(EXAMPLE_YAML, "example", Path::new("/etc/orch")).unwrap();
        assert_eq!(e.agents.len(), 8);
        assert!(
            e.transports
                .values()
                .any(|t| matches!(t, TransportSpec::Openclaw(_)))
        );
        assert_eq!(e.store.fs.root, PathBuf::from("/etc/orch/./.orch/handoffs"));
    }

    #[test]
    fn the_nats_store_is_one_map_with_named_credentials() {
        let text = "store:\n  kind: nats\n  url: nats://10.0.0.5:4222, nats://10.0.0.6:4222\n  bucket: team-a\n  credentials: secrets/orch.creds\n  max_handoff_bytes: 1048576\n";
        let c = parse(text, "orch.yaml", Path::new("/etc/orch")).unwrap();
        assert_eq!(c.store.kind, StoreKind::Nats);
        assert_eq!(c.store.nats.bucket, "team-a");
        assert_eq!(c.store.nats.replicas, 1);
        assert_eq!(
            c.store.nats.auth,
            NatsAuth::CredentialsFile(PathBuf::from("/etc/orch/secrets/orch.creds"))
        );
        assert_eq!(c.store.nats.max_handoff_bytes, 1 << 20);
        assert_eq!(c.store.fs.max_handoff_bytes, 1 << 20);
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

    /// The sections are the libraries' own settings types: no copy in
    /// between.
    #[test]
    fn transports_and_the_store_parse_into_the_library_types() {
        let text = "
store: { kind: nats, token_file: secrets/nats, request_timeout: 1m }
transports:
  fleet: { kind: sim, delay: 1s, agents: { webster: slow } }
  local: { kind: exec, command: [/bin/agent, --fast], cwd: work, env_passthrough: [GW_TOKEN] }
  gw: { kind: openclaw, url: 'http://gw:18789', token_env: GW_TOKEN, request_timeout: 10 }
";
        let c = parse(text, "orch.yaml", Path::new("/etc/orch")).unwrap();
        let nats: &NatsStoreConfig = &c.store.nats;
        assert_eq!(
            nats.auth,
            NatsAuth::TokenFile(PathBuf::from("/etc/orch/secrets/nats"))
        );
        assert_eq!(nats.request_timeout, Duration::from_secs(60));
        let TransportSpec::Sim(sim) = &c.transports["fleet"] else {
            panic!("{:?}", c.transports["fleet"]);
        };
        assert_eq!(
            sim,
            &SimConfig {
                delay: Duration::from_secs(1),
                agents: [("webster".to_owned(), Behaviour::Slow)].into(),
                ..SimConfig::default()
            }
        );
        let TransportSpec::Exec(exec) = &c.transports["local"] else {
            panic!("{:?}", c.transports["local"]);
        };
        assert_eq!(exec.argv, ["/bin/agent", "--fast"]);
        assert_eq!(exec.cwd.as_deref(), Some(Path::new("/etc/orch/work")));
        assert_eq!(exec.env_passthrough, ["GW_TOKEN"]);
        let TransportSpec::Openclaw(gw) = &c.transports["gw"] else {
            panic!("{:?}", c.transports["gw"]);
        };
        assert_eq!(gw.token_env.as_deref(), Some("GW_TOKEN"));
        assert_eq!(gw.token, None, "read by the transport, not the config");
        assert_eq!(gw.request_timeout, Duration::from_secs(10));
    }

    /// A wrong value inside `store:` keeps its line, column and key (the
    /// section is read in one pass, whichever kind).
    #[test]
    fn store_values_keep_their_place() {
        let e = |text: &str| {
            parse(text, "orch.yaml", Path::new("."))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("store:\n  kind: nats\n  replicas: many\n"),
            "orch.yaml: line 3, column 13: store.replicas: invalid type: string \"many\", expected usize"
        );
        assert_eq!(
            e("store:\n  watch: sometimes\n"),
            "orch.yaml: line 2, column 10: store.watch: unknown variant `sometimes`, expected one of `auto`, `inotify`, `poll`"
        );
        // `kind` may come last; a key of the other kind is still refused.
        assert_eq!(
            e("store: { bucket: b, url: 'nats://h:1' }\n"),
            "orch.yaml: `store.url` applies to `kind: nats` only"
        );
        let last = parse(
            "store: { url: 'nats://h:1', kind: nats }\n",
            "orch.yaml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(last.store.kind, StoreKind::Nats);
        assert_eq!(last.store.nats.url, "nats://h:1");
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
