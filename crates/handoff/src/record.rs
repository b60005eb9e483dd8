//! The handoff record, schema 1.0 (DESIGN §3).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::RunId;

/// Schema version written by this crate.
pub const SCHEMA_VERSION: &str = "1.0";

/// Default cap on the size of a handoff file (DESIGN §4): 4 MiB.
pub const DEFAULT_MAX_HANDOFF_BYTES: u64 = 4 * 1024 * 1024;

/// How the agent's work ended.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
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

/// How sure the agent is of its result. Ordered `Low < Medium < High`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
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

/// One artifact the agent produced: a bare string (a path or URL) or an
/// object with at least `path` or `url`.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Artifact {
    /// A path or URL as a plain string.
    Plain(String),
    /// A structured reference.
    Ref(ArtifactRef),
}

/// A structured artifact reference. Unknown fields are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactRef {
    /// Local path of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// URL of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
/// treat an absent confidence as `low`). Unknown top-level fields are kept
/// in `extra` and written back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// `"1.<minor>"`; any other major is rejected.
    pub schema_version: String,
    /// The run this handoff answers.
    pub run_id: RunId,
    /// The agent that wrote it.
    pub agent: String,
    /// How the work ended.
    pub status: Status,
    /// The result itself (free text, usually Markdown).
    pub result: String,
    /// Produced files or links.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// How sure the agent is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Caveats, what is missing, what to do next.
    #[serde(default)]
    pub notes: String,
    /// When the handoff was written (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
