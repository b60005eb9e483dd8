//! The agent registry: `AGENTS_REGISTRY.json` (DESIGN §7).
//!
//! A registry file is read in two stages, and the first failing one names
//! the error:
//!
//! 1. **JSON and shape** ([`RegistryError::Parse`]): `serde_json` driven by
//!    `serde_path_to_error`, so a wrong type, a missing or unknown field, or
//!    a duplicate key comes with its JSON path (`agents[3].role`), line and
//!    column, and serde's expected-vs-found message. Objects must be
//!    objects: serde's derive would also take an array of the fields in
//!    order, which the schema forbids ([`ObjectOnly`]).
//! 2. **Meaning** ([`RegistryError::Invalid`]): the checks serde cannot
//!    express, in this order: at least one agent; channel names and Discord
//!    ids; every agent's id (the run-id rules, unique) — other checks refer
//!    to ids, so a bad or duplicate id is reported before its consequences;
//!    then, agent by agent, name, role, capabilities (non-blank, unique
//!    ignoring case), channels (names from the top-level map), transport
//!    shape, validator (another agent of this registry) and
//!    `maxConcurrent ≥ 1`.
//!
//! [`Registry::from_file`] runs stage 2 alone, for registries that were not
//! read from JSON (the CLI's inline agents).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use orch_support::id::MAX_ID_LEN;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest registry file read: 4 MiB (a registry is a few KiB; this refuses
/// accidents).
pub const MAX_REGISTRY_BYTES: u64 = 4 * 1024 * 1024;

/// The id rules as a JSON Schema pattern.
const ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// A Discord channel id (snowflake) as a JSON Schema pattern.
const SNOWFLAKE_PATTERN: &str = r"^[0-9]{17,20}$";

/// `$id` of the published JSON Schema.
const SCHEMA_ID: &str = "https://raw.githubusercontent.com/atomizer-hq/orch/main/crates/registry/schema/registry.schema.json";

/// The embedded default registry: the eight Atomizer HQ agents.
const DEFAULT_REGISTRY_JSON: &str = include_str!("default_registry.json");

/// Longest excerpt of the file quoted in a message, in characters.
const EXCERPT_CHARS: usize = 60;

/// Longest serde message kept, in characters (serde quotes whole values).
const MAX_MESSAGE_CHARS: usize = 240;

/// The contents of an `AGENTS_REGISTRY.json` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "orch agent registry",
    description = "AGENTS_REGISTRY.json: the agents orch can delegate to (who they are, what they can do, how to reach them) and the Discord channels they talk in.",
    extend("$id" = SCHEMA_ID)
)]
pub struct RegistryFile {
    /// Optional URL or path of this schema, for editors.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The agents, in the order they are listed (ties in routing keep it).
    #[serde(deserialize_with = "deserialize_agents")]
    #[schemars(with = "Vec<AgentInfo>", length(min = 1))]
    pub agents: Vec<AgentInfo>,
    /// Channel names (e.g. `technical`) → Discord channel ids (snowflakes,
    /// 17 to 20 digits, written as strings).
    #[serde(default, deserialize_with = "deserialize_channels")]
    #[schemars(schema_with = "channels_schema")]
    pub channels: BTreeMap<String, String>,
}

/// One agent of the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentInfo {
    /// The id callers and the ACL use: ASCII letters, digits, `.`, `_`,
    /// `-`, starting with a letter or digit, at most 128 characters.
    #[schemars(pattern(ID_PATTERN))]
    pub id: String,
    /// Display name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Role in the team, in a few words (routing weighs it).
    #[schemars(length(min = 1))]
    pub role: String,
    /// What the agent does, in a sentence or two (routing reads it).
    pub description: String,
    /// Capability tags, one or a few words each (routing weighs them most);
    /// unique within the agent, ignoring case.
    #[serde(default)]
    #[schemars(inner(length(min = 1)), extend("uniqueItems" = true))]
    pub capabilities: Vec<String>,
    /// Names of the channels the agent talks in (keys of the top-level
    /// `channels` map).
    #[serde(default)]
    #[schemars(inner(pattern(ID_PATTERN)), extend("uniqueItems" = true))]
    pub channels: Vec<String>,
    /// How tasks reach the agent: a transport name (`"sim"`, or a transport
    /// defined in the CLI's config) or an object with a string `kind` and
    /// that transport's settings. The composition root interprets it; the
    /// registry checks only this shape.
    #[schemars(schema_with = "transport_schema")]
    pub transport: Value,
    /// The agent that validates this one's results (`--validate`); another
    /// agent of this registry.
    #[serde(default)]
    #[schemars(pattern(ID_PATTERN))]
    pub validator: Option<String>,
    /// Most tasks the agent runs at once (at least 1; absent: no limit).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_concurrent: Option<usize>,
}

/// A checked registry: agents in file order, channel names → ids.
///
/// Every `Registry` passed the checks of [`Registry::from_file`]: ids are
/// unique and valid, validators and channel names resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct Registry {
    schema: Option<String>,
    agents: Vec<AgentInfo>,
    channels: BTreeMap<String, String>,
}

impl Registry {
    /// Parses and checks a registry. `origin` names the source in messages
    /// (usually the file name).
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self, RegistryError> {
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > MAX_REGISTRY_BYTES {
            return Err(RegistryError::Invalid {
                origin: origin.to_owned(),
                path: String::new(),
                message: format!(
                    "the file is {size} bytes, over the {} MiB limit of a registry",
                    MAX_REGISTRY_BYTES / (1024 * 1024)
                ),
            });
        }
        let file = parse(bytes, origin)?;
        Self::from_file(file, origin)
    }

    /// Reads, parses and checks a registry file (at most
    /// [`MAX_REGISTRY_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let io = |source| RegistryError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_REGISTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Checks a registry that was built in code or read from another format
    /// (the same checks as [`Registry::from_json`] after parsing).
    pub fn from_file(file: RegistryFile, origin: &str) -> Result<Self, RegistryError> {
        check(&file).map_err(|(path, message)| RegistryError::Invalid {
            origin: origin.to_owned(),
            path,
            message,
        })?;
        Ok(Self {
            schema: file.schema,
            agents: file.agents,
            channels: file.channels,
        })
    }

    /// The embedded default registry: the eight Atomizer HQ agents on the
    /// simulated fleet (`src/default_registry.json`).
    pub fn embedded_default() -> Self {
        // The embedded file is part of this crate; a unit test proves it
        // parses, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        Self::from_json(DEFAULT_REGISTRY_JSON.as_bytes(), "default_registry.json")
            .expect("the embedded default registry is valid (tested)")
    }

    /// The agents, in file order.
    pub fn agents(&self) -> &[AgentInfo] {
        &self.agents
    }

    /// The agent with this id.
    pub fn get(&self, id: &str) -> Option<&AgentInfo> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agent ids, in file order.
    pub fn ids(&self) -> Vec<&str> {
        self.agents.iter().map(|a| a.id.as_str()).collect()
    }

    /// Channel names → Discord channel ids.
    pub fn channels(&self) -> &BTreeMap<String, String> {
        &self.channels
    }

    /// Resolves a channel given by name (`technical`, or `#technical`) or
    /// by raw Discord id (17 to 20 digits) to its name, if the registry
    /// knows one, and its id. `None` when it is neither a known name nor
    /// an id.
    pub fn resolve_channel(&self, name_or_id: &str) -> Option<(Option<&str>, String)> {
        let key = name_or_id.trim();
        let name = key.strip_prefix('#').unwrap_or(key);
        if let Some((name, id)) = self.channels.get_key_value(name) {
            return Some((Some(name.as_str()), id.clone()));
        }
        if is_snowflake(key) {
            let name = self
                .channels
                .iter()
                .find(|(_, id)| id.as_str() == key)
                .map(|(name, _)| name.as_str());
            return Some((name, key.to_owned()));
        }
        None
    }

    /// The registry as file contents (e.g. to print or save it).
    pub fn to_file(&self) -> RegistryFile {
        RegistryFile {
            schema: self.schema.clone(),
            agents: self.agents.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// The JSON Schema (draft 2020-12) of a registry file, generated from
/// [`RegistryFile`]. The repository publishes it as
/// `crates/registry/schema/registry.schema.json`.
///
/// It states what a schema can: types, required fields, the id and
/// snowflake patterns, `maxConcurrent ≥ 1`. Cross-references (validators,
/// channel names, unique ids) are checked by [`Registry::from_file`] only.
pub fn registry_json_schema() -> Value {
    orch_support::schema::published::<RegistryFile>(orch_support::schema::Direction::Deserialize)
}

fn transport_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "How tasks reach the agent: a transport name, or an object with a string `kind` and that transport's settings.",
        "oneOf": [
            { "type": "string", "minLength": 1, "description": "A transport name, e.g. \"sim\"." },
            {
                "type": "object",
                "required": ["kind"],
                "properties": { "kind": { "type": "string", "minLength": 1 } },
                "description": "A transport kind (\"openclaw\", \"exec\", \"sim\") with its settings."
            }
        ]
    })
}

fn channels_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Channel names (e.g. `technical`) → Discord channel ids (snowflakes, 17 to 20 digits, written as strings).",
        "type": "object",
        "propertyNames": { "pattern": ID_PATTERN },
        "additionalProperties": { "type": "string", "pattern": SNOWFLAKE_PATTERN },
        "default": {}
    })
}

/// Why a registry cannot be used.
///
/// Every message names the source and, for content errors, the JSON path
/// (`agents[3].validator`); parse errors add the line and column (1-based,
/// columns in bytes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read registry {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON, or not the registry's shape (wrong type, missing or
    /// unknown field, duplicate key).
    #[error("{}", parse_message(origin, path, *line, *column, message))]
    Parse {
        /// Where the registry came from (a file name).
        origin: String,
        /// JSON path of the offending value (`agents[3].capabilities`);
        /// empty at the top level.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (bytes).
        column: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// Well-formed, but wrong: duplicate or malformed id, unknown or self
    /// validator, unknown channel name, bad channel id, empty agent list,
    /// `maxConcurrent` 0, malformed transport, duplicate capability, or a
    /// file over the size limit.
    #[error("{}", invalid_message(origin, path, message))]
    Invalid {
        /// Where the registry came from (a file name).
        origin: String,
        /// JSON path of the offending value (`agents[3].validator`); empty
        /// when the problem is the whole file.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn parse_message(origin: &str, path: &str, line: usize, column: usize, message: &str) -> String {
    if path.is_empty() {
        format!("invalid registry {origin} (line {line}, column {column}): {message}")
    } else {
        format!("invalid registry {origin} at {path} (line {line}, column {column}): {message}")
    }
}

fn invalid_message(origin: &str, path: &str, message: &str) -> String {
    if path.is_empty() {
        format!("invalid registry {origin}: {message}")
    } else {
        format!("invalid registry {origin} at {path}: {message}")
    }
}

// ---------------------------------------------------------------------------
// Stage 1: JSON and shape.

fn parse(bytes: &[u8], origin: &str) -> Result<RegistryFile, RegistryError> {
    let at_start = |message: &str| RegistryError::Parse {
        origin: origin.to_owned(),
        path: String::new(),
        line: 1,
        column: 1,
        message: message.to_owned(),
    };
    if bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(at_start(
            "the file is empty: expected a JSON object such as {\"agents\": [...], \"channels\": {...}}",
        ));
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(at_start(
            "the file starts with a UTF-8 byte order mark (BOM): save it as UTF-8 without BOM",
        ));
    }
    let mut track = serde_path_to_error::Track::new();
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let parsed = RegistryFile::deserialize(ObjectOnly(serde_path_to_error::Deserializer::new(
        &mut json, &mut track,
    )))
    .and_then(|file| json.end().map(|()| file));
    parsed.map_err(|e| {
        let path = clip(&json_path(&track.path()));
        let (line, column) = position(bytes, e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full);
        RegistryError::Parse {
            origin: origin.to_owned(),
            path,
            line,
            column,
            message: tidy_serde_message(message),
        }
    })
}

/// `agents[3].capabilities`: the known part of a tracked path (serde
/// cannot name a key it failed to read).
fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    out
}

/// serde's message with Rust type names replaced by JSON words, clipped.
fn tidy_serde_message(message: &str) -> String {
    let message = message
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected an object")
        .replace(
            "expected struct RegistryFile",
            "expected a registry object such as {\"agents\": [...]}",
        )
        .replace("expected struct AgentInfo", "expected an agent object");
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message,
    }
}

/// serde_json's position, except that its "column 0" (the error was noticed
/// right after a newline) becomes the newline itself, at the end of the
/// previous line.
fn position(bytes: &[u8], line: usize, column: usize) -> (usize, usize) {
    if column > 0 || line <= 1 {
        return (line.max(1), column.max(1));
    }
    let previous = bytes
        .split(|b| *b == b'\n')
        .nth(line - 2)
        .map_or(0, <[u8]>::len);
    (line - 1, previous + 1)
}

/// `s` shortened to [`EXCERPT_CHARS`] characters, with `…` when cut.
fn clip(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// A deserializer whose structs must be JSON objects: serde's derived
/// `Deserialize` would also accept an array of the fields in order, which
/// the schema does not allow and no one writes on purpose.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, MapOnly(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A visitor that accepts only maps (everything else is an invalid type).
struct MapOnly<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for MapOnly<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }
}

/// The `agents` array, each agent an object (see [`ObjectOnly`]).
fn deserialize_agents<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<AgentInfo>, D::Error> {
    struct AgentsVisitor;
    impl<'de> Visitor<'de> for AgentsVisitor {
        type Value = Vec<AgentInfo>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of agent objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut agents = Vec::new();
            while let Some(agent) = seq.next_element_seed(AgentSeed)? {
                agents.push(agent);
            }
            Ok(agents)
        }
    }
    deserializer.deserialize_seq(AgentsVisitor)
}

struct AgentSeed;

impl<'de> DeserializeSeed<'de> for AgentSeed {
    type Value = AgentInfo;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<AgentInfo, D::Error> {
        AgentInfo::deserialize(ObjectOnly(deserializer))
    }
}

/// The top-level `channels` map, refusing duplicate names (which a plain
/// map would silently collapse) and ids written as JSON numbers.
fn deserialize_channels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct MapVisitor;
    impl<'de> Visitor<'de> for MapVisitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping channel names to Discord channel ids")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let duplicate = out.contains_key(&name);
                let id = map.next_value_seed(ChannelIdSeed { duplicate })?;
                out.insert(name, id);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(MapVisitor)
}

/// One channel id. Errors are raised inside the value, so the path names
/// the channel (`channels.technical`).
struct ChannelIdSeed {
    duplicate: bool,
}

impl<'de> DeserializeSeed<'de> for ChannelIdSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ChannelIdSeed {
    fn check<E: de::Error>(&self) -> Result<(), E> {
        if self.duplicate {
            return Err(E::custom(
                "duplicate channel name: each name may appear once in \"channels\"",
            ));
        }
        Ok(())
    }

    fn number<E: de::Error>(&self, digits: String) -> Result<String, E> {
        self.check()?;
        Err(E::custom(format_args!(
            "channel id written as a number ({}): write it as a string, \"{}\" (JSON numbers lose digits above 2^53)",
            clip(&digits),
            clip(&digits)
        )))
    }
}

impl<'de> Visitor<'de> for ChannelIdSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Discord channel id as a string of 17 to 20 digits")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check()?;
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.check()?;
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.number(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.number(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.number(v.to_string())
    }
}

// ---------------------------------------------------------------------------
// Stage 2: meaning.

/// A finding: (JSON path, message).
type Finding = (String, String);

/// Runs every semantic check in file order; the first failure wins.
fn check(file: &RegistryFile) -> Result<(), Finding> {
    if file.agents.is_empty() {
        return Err((
            "agents".to_owned(),
            "no agents: a registry lists at least one agent".to_owned(),
        ));
    }
    for (name, id) in &file.channels {
        let path = format!("channels.{}", clip(name));
        check_channel_name(name).map_err(|m| (path.clone(), m))?;
        if !is_snowflake(id) {
            return Err((
                path,
                format!(
                    "channel id \"{}\" is not a Discord channel id: expected 17 to 20 digits (Discord: right-click the channel, Copy Channel ID)",
                    clip(id).escape_debug()
                ),
            ));
        }
    }
    // Ids first: every other check refers to them. `first` maps each id
    // to its index.
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, agent) in file.agents.iter().enumerate() {
        let path = format!("agents[{i}].id");
        check_id(&agent.id, "id").map_err(|m| (path.clone(), m))?;
        if let Some(j) = first.insert(agent.id.as_str(), i) {
            return Err((
                path,
                format!(
                    "duplicate agent id \"{}\": agents[{j}] has it already",
                    agent.id
                ),
            ));
        }
    }
    for (i, agent) in file.agents.iter().enumerate() {
        check_agent(file, &first, i, agent)?;
    }
    Ok(())
}

fn check_agent(
    file: &RegistryFile,
    first: &BTreeMap<&str, usize>,
    i: usize,
    agent: &AgentInfo,
) -> Result<(), Finding> {
    let at = |field: &str| format!("agents[{i}].{field}");
    if agent.name.trim().is_empty() {
        return Err((
            at("name"),
            "name is empty: give the agent a display name".to_owned(),
        ));
    }
    if agent.role.trim().is_empty() {
        return Err((
            at("role"),
            "role is empty: say in a few words what the agent is for (routing reads it)".to_owned(),
        ));
    }
    check_capabilities(&agent.capabilities).map_err(|(k, m)| (at(&k), m))?;
    check_agent_channels(&agent.channels, &file.channels).map_err(|(k, m)| (at(&k), m))?;
    check_transport(&agent.transport).map_err(|(k, m)| (at(&k), m))?;
    if let Some(validator) = &agent.validator {
        if validator == &agent.id {
            return Err((
                at("validator"),
                format!(
                    "agent \"{}\" cannot validate its own results: name another agent or remove \"validator\"",
                    agent.id
                ),
            ));
        }
        if !first.contains_key(validator.as_str()) {
            let known: Vec<&str> = first.keys().copied().collect();
            return Err((
                at("validator"),
                format!(
                    "unknown validator \"{}\": no agent of this registry has that id{}",
                    clip(validator).escape_debug(),
                    suggestion(validator, &known)
                ),
            ));
        }
    }
    if agent.max_concurrent == Some(0) {
        return Err((
            at("maxConcurrent"),
            "maxConcurrent is 0, so the agent could never run a task: use 1 or more, or remove it for no limit"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The id rule of run ids (DESIGN §3, `orch_support::id`): `[A-Za-z0-9._-]`,
/// 1 to 128 characters, a letter or digit first. `what` names the thing in
/// messages.
fn check_id(id: &str, what: &str) -> Result<(), String> {
    use orch_support::id::{InvalidId, validate_id};
    validate_id(id).map_err(|e| match e {
        InvalidId::Empty => format!("{what} is empty"),
        InvalidId::TooLong { len } => {
            format!("{what} is {len} characters long, the limit is {MAX_ID_LEN}")
        }
        InvalidId::BadChar { ch, .. } => format!(
            "{what} \"{}\" contains {ch:?}: only ASCII letters, digits, '.', '_' and '-' are allowed",
            clip(id).escape_debug()
        ),
        _ => format!("{what} \"{id}\" must start with an ASCII letter or digit"),
    })
}

fn check_channel_name(name: &str) -> Result<(), String> {
    check_id(name, "channel name")?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "channel name \"{name}\" is all digits, which reads as a channel id: use a name with a letter (e.g. \"technical\")"
        ));
    }
    Ok(())
}

/// A Discord snowflake: 17 to 20 ASCII digits.
fn is_snowflake(s: &str) -> bool {
    (17..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Capability tags: non-empty, unique ignoring case and spacing.
fn check_capabilities(capabilities: &[String]) -> Result<(), Finding> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, capability) in capabilities.iter().enumerate() {
        let key = capability
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let path = format!("capabilities[{k}]");
        if key.is_empty() {
            return Err((
                path,
                "capability is empty: write a tag such as \"thermal margins\"".to_owned(),
            ));
        }
        if let Some(j) = seen.get(&key) {
            return Err((
                path,
                format!(
                    "duplicate capability \"{}\": capabilities[{j}] is the same tag (ignoring case)",
                    clip(capability).escape_debug()
                ),
            ));
        }
        seen.insert(key, k);
    }
    Ok(())
}

fn check_agent_channels(
    channels: &[String],
    known: &BTreeMap<String, String>,
) -> Result<(), Finding> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, name) in channels.iter().enumerate() {
        let path = format!("channels[{k}]");
        if !known.contains_key(name) {
            let name = clip(name).escape_debug().to_string();
            let message = if known.is_empty() {
                format!(
                    "unknown channel \"{name}\": the registry has no top-level \"channels\" map, add one such as \"channels\": {{\"{name}\": \"<Discord channel id>\"}}"
                )
            } else {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                format!(
                    "unknown channel \"{name}\": not a name in the top-level \"channels\" map{}",
                    suggestion(&name, &names)
                )
            };
            return Err((path, message));
        }
        if let Some(j) = seen.insert(name.as_str(), k) {
            return Err((
                path,
                format!("channel \"{name}\" is listed twice (also channels[{j}])"),
            ));
        }
    }
    Ok(())
}

fn check_transport(transport: &Value) -> Result<(), Finding> {
    let shape = "a transport is a name (a string such as \"sim\") or an object with a string \"kind\" and its settings";
    match transport {
        Value::String(name) if name.trim().is_empty() => Err((
            "transport".to_owned(),
            format!("transport name is empty: {shape}"),
        )),
        Value::String(_) => Ok(()),
        Value::Object(object) => match object.get("kind") {
            None => Err((
                "transport".to_owned(),
                format!("transport object has no \"kind\": {shape}"),
            )),
            Some(Value::String(kind)) if kind.trim().is_empty() => Err((
                "transport.kind".to_owned(),
                "transport kind is empty: write \"openclaw\", \"exec\" or \"sim\"".to_owned(),
            )),
            Some(Value::String(_)) => Ok(()),
            Some(other) => Err((
                "transport.kind".to_owned(),
                format!(
                    "transport kind must be a string, found {}: write \"openclaw\", \"exec\" or \"sim\"",
                    json_kind(other)
                ),
            )),
        },
        other => Err((
            "transport".to_owned(),
            format!("expected a transport, found {}: {shape}", json_kind(other)),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `: did you mean "x"?` for a close name, else the known names (at most
/// ten), for messages about unknown references.
fn suggestion(wrong: &str, known: &[&str]) -> String {
    let lower = wrong.to_lowercase();
    let close = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4))
        .min();
    if let Some((_, name)) = close {
        return format!(" (did you mean \"{name}\"?)");
    }
    let mut list: Vec<String> = known.iter().take(10).map(|k| format!("\"{k}\"")).collect();
    if known.len() > 10 {
        list.push("…".to_owned());
    }
    format!(" (known: {})", list.join(", "))
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let registry = Registry::from_json(DEFAULT_REGISTRY_JSON.as_bytes(), "default")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            registry.ids(),
            [
                "manager",
                "tech-lead",
                "webster",
                "nx-expert",
                "study-builder",
                "secretary",
                "optimizer",
                "auditor"
            ]
        );
    }

    #[test]
    fn ids_follow_the_run_id_rules() {
        for ok in ["a", "webster", "nx-expert", "A.b_c-9", &"x".repeat(128)] {
            assert_eq!(check_id(ok, "id"), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "_x",
            "a b",
            "a/b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(check_id(bad, "id").is_err(), "{bad}");
        }
    }

    #[test]
    fn snowflakes_are_17_to_20_digits() {
        assert!(is_snowflake("12345678901234567"));
        assert!(is_snowflake("12345678901234567890"));
        assert!(!is_snowflake("1234567890123456"));
        assert!(!is_snowflake("123456789012345678901"));
        assert!(!is_snowflake("1234567890123456x"));
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("tech-lead", "tech-lead"), 0);
        assert_eq!(edit_distance("tech_lead", "tech-lead"), 1);
        assert_eq!(edit_distance("webstr", "webster"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
