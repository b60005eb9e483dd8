//! The handoff record, schema 1.0 (DESIGN §3).
//!
//! The types serialize with derives; deserialization is hand-written in
//! `parse.rs` so that every error names the field, and the JSON Schema is
//! generated from these types by [`handoff_json_schema`].

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::RunId;

/// Schema version written by this crate.
pub const SCHEMA_VERSION: &str = "1.0";

/// Default cap on the size of a handoff file (DESIGN §4): 4 MiB.
pub const DEFAULT_MAX_HANDOFF_BYTES: u64 = 4 * 1024 * 1024;

/// `$id` of the published JSON Schema.
const SCHEMA_ID: &str = "https://raw.githubusercontent.com/atomizer-hq/orch/main/crates/handoff/schema/handoff.schema.json";

/// How the agent's work ended.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The task is done.
    Complete,
    /// Part of the task is done; `notes` should say what is missing.
    Partial,
    /// The agent could not proceed (missing input, access, decision).
    Blocked,
    /// The agent tried and failed.
    Failed,
}

impl Status {
    /// The status as written in a handoff: `complete`, `partial`, `blocked`
    /// or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
        }
    }
}

/// How sure the agent is of its result. Ordered low < medium < high.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Unverified or partly guessed.
    Low,
    /// Plausible, partly checked.
    Medium,
    /// Checked against sources or by test.
    High,
}

impl Confidence {
    /// The confidence as written in a handoff: `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One artifact the agent produced: a bare string (a path or URL) or an
/// object with at least `path` or `url`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Artifact {
    /// A path or URL as a plain string.
    Plain(String),
    /// A structured reference.
    Ref(ArtifactRef),
}

/// A structured artifact reference: at least one of `path` and `url` is
/// set. Unknown fields are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[schemars(
    description = "A structured artifact reference: at least one of `path` and `url`; other fields are kept.",
    extend("anyOf" = [{ "required": ["path"] }, { "required": ["url"] }])
)]
pub struct ArtifactRef {
    /// Local path of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub path: Option<String>,
    /// URL of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub url: Option<String>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A handoff: the structured answer an agent writes when it finishes a task.
///
/// Required: `schemaVersion` (major 1), `runId`, `agent`, `status`,
/// `result`. Defaults of the optional fields: `artifacts` = `[]`,
/// `notes` = `""`, `confidence` and `timestamp` absent (not stated; gates
/// treat an absent confidence as `low`). An optional field written as
/// `null` reads as absent. Unknown top-level fields are kept in `extra` and
/// written back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "orch handoff",
    description = "The structured answer an agent writes when it finishes a task delegated by orch (schema 1.x). Unknown fields are allowed and kept.",
    extend("$id" = SCHEMA_ID)
)]
pub struct Handoff {
    /// Schema version, `"1.<minor>"`; any other major is rejected.
    #[schemars(regex(pattern = r"^1\.[0-9]+$"), extend("examples" = ["1.0"]))]
    pub schema_version: String,
    /// The run this handoff answers.
    pub run_id: RunId,
    /// The agent that wrote it: an agent id (`[A-Za-z0-9._-]`, letter or digit first, ≤ 128).
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    )]
    pub agent: String,
    /// How the work ended.
    pub status: Status,
    /// The result itself (free text, usually Markdown).
    pub result: String,
    /// Produced files or links (default: none).
    #[serde(default)]
    #[schemars(extend("type" = ["array", "null"]))]
    pub artifacts: Vec<Artifact>,
    /// How sure the agent is (default: not stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Caveats, what is missing, what to do next (default: empty).
    #[serde(default)]
    #[schemars(extend("type" = ["string", "null"]))]
    pub notes: String,
    /// When the handoff was written (RFC 3339, default: not stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Handoff {
    /// A new schema-1.0 handoff stamped with the current time.
    pub fn new(
        run_id: RunId,
        agent: impl Into<String>,
        status: Status,
        result: impl Into<String>,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            run_id,
            agent: agent.into(),
            status,
            result: result.into(),
            artifacts: Vec::new(),
            confidence: None,
            notes: String::new(),
            timestamp: Some(jiff::Timestamp::now().to_string()),
            extra: Map::new(),
        }
    }

    /// Pretty JSON, as written to disk (with a trailing newline).
    pub fn to_json_pretty(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every key is a string and
        // every value is plain data.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

impl JsonSchema for Artifact {
    fn schema_name() -> Cow<'static, str> {
        "Artifact".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let object = generator.subschema_for::<ArtifactRef>();
        json_schema!({
            "description": "An artifact: a path or URL as a string, or an object with at least `path` or `url`.",
            "oneOf": [
                { "type": "string", "minLength": 1, "description": "A path or URL." },
                object
            ]
        })
    }
}

/// The JSON Schema (draft 2020-12) of a handoff, generated from the Rust
/// types. The repository publishes it as `crates/handoff/schema/handoff.schema.json`.
pub fn handoff_json_schema() -> Value {
    orch_support::schema::published::<Handoff>(orch_support::schema::Direction::Deserialize)
}
