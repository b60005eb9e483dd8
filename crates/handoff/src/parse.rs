//! Parsing and validating handoff files with errors that point at the place.
//!
//! [`parse_handoff`] runs the bytes through a fixed pipeline, and the first
//! failing step names the error:
//!
//! 1. size cap ([`HandoffError::TooLarge`]), nothing but whitespace
//!    ([`HandoffError::Empty`]), a UTF-8 byte order mark
//!    ([`HandoffError::Bom`]), invalid UTF-8 ([`HandoffError::NotUtf8`]);
//! 2. JSON through `serde_json` driven by `serde_path_to_error`, with the
//!    hand-written visitors below: cut off ([`HandoffError::Truncated`]),
//!    malformed ([`HandoffError::Syntax`]), not an object
//!    ([`HandoffError::NotAnObject`]), a field of the wrong type or value
//!    ([`HandoffError::Field`], with its path, line and column);
//! 3. schema major ([`HandoffError::UnsupportedSchema`]; it wins over any
//!    field error, since a schema-2 file may legitimately differ), required
//!    fields ([`HandoffError::Missing`]);
//! 4. the reader's expectation ([`HandoffError::Mismatch`]).
//!
//! Error messages quote at most a short excerpt of the file, so a hostile
//! file cannot flood a log or a re-ask prompt.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor,
};
use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::{Artifact, ArtifactRef, Confidence, Handoff, RunId, Status};

/// What the reader expected the handoff to answer. A mismatch is its own
/// error ([`HandoffError::Mismatch`]), distinct from a malformed file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect<'a> {
    /// The run id the handoff must carry.
    pub run_id: Option<&'a RunId>,
    /// The agent that must have written it.
    pub agent: Option<&'a str>,
}

/// Why bytes are not a valid handoff.
///
/// Lines and columns are 1-based; columns count bytes, as `serde_json` does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HandoffError {
    /// Larger than the configured cap.
    #[error(
        "handoff is {size} bytes ({}), over the {} limit: move large content into a file and list it in `artifacts`",
        human_size(*.size),
        human_size(*.cap)
    )]
    TooLarge {
        /// Size seen.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The file is empty or holds only whitespace (possibly still being
    /// written).
    #[error("handoff is empty: the file holds no JSON object (yet)")]
    Empty,
    /// The file starts with a UTF-8 byte order mark.
    #[error(
        "handoff starts with a UTF-8 byte order mark (BOM): save the file as UTF-8 without BOM"
    )]
    Bom,
    /// The bytes are not UTF-8.
    #[error(
        "handoff is not valid UTF-8: byte {byte:#04x} at line {line}, column {column} (offset {offset}) is not part of a UTF-8 character: save the file as UTF-8"
    )]
    NotUtf8 {
        /// 1-based line of the first bad byte.
        line: usize,
        /// 1-based column (in bytes) of the first bad byte.
        column: usize,
        /// 0-based byte offset of the first bad byte.
        offset: usize,
        /// The first bad byte.
        byte: u8,
    },
    /// The JSON is cut off (possibly still being written).
    #[error(
        "handoff is truncated at line {line}, column {column} ({message}): the JSON object is not complete"
    )]
    Truncated {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// Not valid JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said, with a hint where one helps.
        message: String,
    },
    /// Valid JSON, but the top level is not an object.
    #[error(
        "expected a JSON object at the top level, found {found}: a handoff is one object such as {{\"schemaVersion\": \"1.0\", \"runId\": …}}"
    )]
    NotAnObject {
        /// What was found: `an array`, `a string`, `a number`, `a boolean`
        /// or `null`.
        found: &'static str,
    },
    /// Valid JSON, but a field is wrong.
    #[error("field `{path}` (line {line}, column {column}): {message}")]
    Field {
        /// JSON path of the field, e.g. `artifacts[1].path`.
        path: String,
        /// 1-based line where the problem was noticed (the end of the value).
        line: usize,
        /// 1-based column where the problem was noticed.
        column: usize,
        /// Expected vs found.
        message: String,
    },
    /// Required fields are absent.
    #[error("{}", missing_message(.fields))]
    Missing {
        /// The absent fields, in schema order.
        fields: Vec<&'static str>,
    },
    /// `schemaVersion` has a major other than 1.
    #[error(
        "unsupported schemaVersion {found:?}: this orch reads schema 1.x, write \"schemaVersion\": \"1.0\" or upgrade orch"
    )]
    UnsupportedSchema {
        /// The version found (shortened if long).
        found: String,
    },
    /// Valid handoff, but for another run or from another agent.
    #[error(
        "handoff {field} is {found:?}, expected {expected:?}: {}",
        mismatch_hint(.field)
    )]
    Mismatch {
        /// `runId` or `agent`.
        field: &'static str,
        /// What was asked.
        expected: String,
        /// What the file says (shortened if long).
        found: String,
    },
}

impl HandoffError {
    /// True when the bytes may be a handoff that is still being written
    /// (empty or cut off): a reader should look again before giving up.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Self::Empty | Self::Truncated { .. })
    }
}

fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn missing_message(fields: &[&'static str]) -> String {
    let list = fields
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if fields.len() == 1 {
        format!("missing required field {list}: add it to the handoff object")
    } else {
        format!("missing required fields {list}: add them to the handoff object")
    }
}

fn mismatch_hint(field: &str) -> &'static str {
    if field == "runId" {
        "the handoff answers another run; write the runId given in the task"
    } else {
        "the handoff was written by another agent; write your own agent id"
    }
}

/// Longest excerpt of the file quoted in an error, in characters.
const EXCERPT_CHARS: usize = 60;

/// `s` shortened to [`EXCERPT_CHARS`] characters, with `…` when cut.
fn clip(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// [`clip`], with control characters escaped, for messages that quote
/// without escaping (serde's backtick quotes).
fn clip_escaped(s: &str) -> String {
    clip(s).escape_debug().to_string()
}

/// Parses and validates a handoff, checking it against `expect`.
pub fn parse_handoff(bytes: &[u8], expect: &Expect<'_>) -> Result<Handoff, HandoffError> {
    parse_handoff_capped(bytes, expect, crate::DEFAULT_MAX_HANDOFF_BYTES)
}

/// [`parse_handoff`] with an explicit size cap (in bytes).
pub fn parse_handoff_capped(
    bytes: &[u8],
    expect: &Expect<'_>,
    cap: u64,
) -> Result<Handoff, HandoffError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > cap {
        return Err(HandoffError::TooLarge { size, cap });
    }
    if bytes.iter().all(|b| is_json_whitespace(*b)) {
        return Err(HandoffError::Empty);
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(HandoffError::Bom);
    }
    check_utf8(bytes)?;
    let handoff = parse_json(bytes)?;
    check_expect(&handoff, expect)?;
    Ok(handoff)
}

impl Handoff {
    /// Parses and validates a handoff with no expectation and the default
    /// size cap ([`crate::DEFAULT_MAX_HANDOFF_BYTES`]).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HandoffError> {
        parse_handoff(bytes, &Expect::default())
    }
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// 1-based line and byte column of `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

fn check_utf8(bytes: &[u8]) -> Result<(), HandoffError> {
    let Err(e) = std::str::from_utf8(bytes) else {
        return Ok(());
    };
    let offset = e.valid_up_to();
    let (line, column) = line_column(bytes, offset);
    match e.error_len() {
        // The bytes end inside a multi-byte character: a writer may be
        // half-way through it.
        None => Err(HandoffError::Truncated {
            line,
            column,
            message: "the file ends inside a UTF-8 character".to_owned(),
        }),
        Some(_) => Err(HandoffError::NotUtf8 {
            line,
            column,
            offset,
            byte: bytes.get(offset).copied().unwrap_or_default(),
        }),
    }
}

fn check_expect(handoff: &Handoff, expect: &Expect<'_>) -> Result<(), HandoffError> {
    if let Some(run_id) = expect.run_id
        && handoff.run_id != *run_id
    {
        return Err(HandoffError::Mismatch {
            field: "runId",
            expected: run_id.to_string(),
            found: handoff.run_id.to_string(),
        });
    }
    if let Some(agent) = expect.agent
        && handoff.agent != agent
    {
        return Err(HandoffError::Mismatch {
            field: "agent",
            expected: clip(agent),
            found: clip(&handoff.agent),
        });
    }
    Ok(())
}

fn parse_json(bytes: &[u8]) -> Result<Handoff, HandoffError> {
    let top = Cell::new(None);
    let mut track = serde_path_to_error::Track::new();
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let parsed = HandoffVisitor { top: Some(&top) }.deserialize(
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
    );
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let path = track.path();
            return Err(json_error(&e, bytes, top.get(), Some(&path)));
        }
    };
    if let Err(e) = json.end() {
        return Err(json_error(&e, bytes, None, None));
    }
    raw.finish()
}

/// Maps a `serde_json` error to the matching [`HandoffError`].
fn json_error(
    e: &serde_json::Error,
    bytes: &[u8],
    top: Option<&'static str>,
    path: Option<&serde_path_to_error::Path>,
) -> HandoffError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let (line, column) = position(bytes, e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    match e.classify() {
        Category::Eof => HandoffError::Truncated {
            line,
            column,
            message,
        },
        Category::Syntax | Category::Io => HandoffError::Syntax {
            line,
            column,
            message: syntax_hint(message, bytes, line, column),
        },
        Category::Data => {
            if let Some(found) = top {
                return HandoffError::NotAnObject { found };
            }
            if let Some(found) = unsupported_version_in(bytes) {
                return HandoffError::UnsupportedSchema { found };
            }
            let path = match path {
                Some(p) if p.iter().next().is_some() => clip(&p.to_string()),
                _ => "(top level)".to_owned(),
            };
            HandoffError::Field {
                path,
                line,
                column,
                message,
            }
        }
    }
}

/// serde_json's position, except that its "column 0" (the error was noticed
/// right after a newline) becomes the newline itself, at the end of the
/// previous line.
fn position(bytes: &[u8], line: usize, column: usize) -> (usize, usize) {
    if column > 0 || line <= 1 {
        return (line, column.max(1));
    }
    let previous = bytes
        .split(|b| *b == b'\n')
        .nth(line - 2)
        .map_or(0, <[u8]>::len);
    (line - 1, previous + 1)
}

/// Adds a hint to the `serde_json` messages that leave a writer guessing.
fn syntax_hint(message: String, bytes: &[u8], line: usize, column: usize) -> String {
    if bytes
        .iter()
        .position(|b| !is_json_whitespace(*b))
        .is_some_and(|i| bytes[i..].starts_with(b"```"))
    {
        return format!(
            "{message}: the file starts with a Markdown code fence, write only the JSON object"
        );
    }
    // `column` is the 1-based column of the byte the parser stopped at.
    let at = bytes
        .split(|b| *b == b'\n')
        .nth(line.saturating_sub(1))
        .and_then(|l| l.get(column.saturating_sub(1)..))
        .unwrap_or_default();
    let hint = if at.starts_with(b"NaN")
        || at.starts_with(b"Infinity")
        || at.starts_with(b"-Infinity")
        || at.starts_with(b"nan")
        || at.starts_with(b"inf")
    {
        "NaN and Infinity are not JSON numbers, write null or a string"
    } else if at.starts_with(b"'") {
        "strings and field names need double quotes, not single quotes"
    } else if at.starts_with(b"//") || at.starts_with(b"/*") || at.starts_with(b"#") {
        "comments are not allowed in JSON"
    } else {
        match message.as_str() {
            "recursion limit exceeded" => {
                return "arrays and objects are nested more than 127 levels deep".to_owned();
            }
            "trailing characters" => {
                return "unexpected characters after the end of the handoff object: write one JSON object and nothing else".to_owned();
            }
            "key must be a string" => "put the field name in double quotes",
            "trailing comma" => "remove the comma after the last element",
            "expected value" => {
                "write a string in double quotes, a number, true, false, null, an object or an array"
            }
            "invalid escape" => {
                "a backslash in a string starts an escape such as \\n or \\\", write \\\\ for a backslash"
            }
            m if m.starts_with("control character") => {
                "write a newline inside a string as \\n and a tab as \\t"
            }
            m if m.contains("surrogate") || m.contains("hex escape") => {
                "a \\u escape must be four hex digits, and surrogates must come in pairs"
            }
            _ => return message,
        }
    };
    format!("{message}: {hint}")
}

/// The `schemaVersion` of a file whose major is not 1, if it has one.
///
/// Used when a field error occurs: a schema-2 file may well differ in its
/// fields, so "unsupported schema" is the more useful report.
fn unsupported_version_in(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    probe
        .schema_version
        .filter(|v| is_other_major(v))
        .map(|v| clip(&v))
}

/// `1.<minor>`: a version this crate reads.
fn is_supported_version(s: &str) -> bool {
    s.strip_prefix("1.")
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

/// `<major>` or `<major>.<anything>` with a major other than 1.
fn is_other_major(s: &str) -> bool {
    let major = s.split('.').next().unwrap_or_default();
    !major.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && major.trim_start_matches('0') != "1"
}

// ---------------------------------------------------------------------------
// Deserialization. Every visitor below controls its own messages, quotes at
// most a clipped excerpt of the input, and validates strings in `visit_str`,
// so serde_json reports the position right after the offending value.

/// Field names of the handoff object, in schema order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    SchemaVersion,
    RunId,
    Agent,
    Status,
    Result,
    Artifacts,
    Confidence,
    Notes,
    Timestamp,
}

impl Key {
    const ALL: [Key; 9] = [
        Key::SchemaVersion,
        Key::RunId,
        Key::Agent,
        Key::Status,
        Key::Result,
        Key::Artifacts,
        Key::Confidence,
        Key::Notes,
        Key::Timestamp,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::SchemaVersion => "schemaVersion",
            Key::RunId => "runId",
            Key::Agent => "agent",
            Key::Status => "status",
            Key::Result => "result",
            Key::Artifacts => "artifacts",
            Key::Confidence => "confidence",
            Key::Notes => "notes",
            Key::Timestamp => "timestamp",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The fields of a handoff object as read, before the required ones are
/// checked.
#[derive(Default)]
struct RawHandoff {
    schema_version: Option<String>,
    run_id: Option<RunId>,
    agent: Option<String>,
    status: Option<Status>,
    result: Option<String>,
    artifacts: Vec<Artifact>,
    confidence: Option<Confidence>,
    notes: String,
    timestamp: Option<String>,
    extra: Map<String, Value>,
}

impl RawHandoff {
    fn finish(self) -> Result<Handoff, HandoffError> {
        if let Some(v) = &self.schema_version
            && !is_supported_version(v)
        {
            return Err(HandoffError::UnsupportedSchema { found: clip(v) });
        }
        match (
            self.schema_version,
            self.run_id,
            self.agent,
            self.status,
            self.result,
        ) {
            (Some(schema_version), Some(run_id), Some(agent), Some(status), Some(result)) => {
                Ok(Handoff {
                    schema_version,
                    run_id,
                    agent,
                    status,
                    result,
                    artifacts: self.artifacts,
                    confidence: self.confidence,
                    notes: self.notes,
                    timestamp: self.timestamp,
                    extra: self.extra,
                })
            }
            (schema_version, run_id, agent, status, result) => {
                let present = [
                    schema_version.is_some(),
                    run_id.is_some(),
                    agent.is_some(),
                    status.is_some(),
                    result.is_some(),
                ];
                let fields = Key::ALL
                    .iter()
                    .zip(present)
                    .filter(|(_, present)| !present)
                    .map(|(k, _)| k.name())
                    .collect();
                Err(HandoffError::Missing { fields })
            }
        }
    }
}

/// Reads the top-level object. With `top` set, a non-object records what it
/// found there, so the parser can report [`HandoffError::NotAnObject`].
struct HandoffVisitor<'a> {
    top: Option<&'a Cell<Option<&'static str>>>,
}

impl HandoffVisitor<'_> {
    fn not_object<E: de::Error>(self, found: &'static str, unexpected: Unexpected<'_>) -> E {
        if let Some(top) = self.top {
            top.set(Some(found));
        }
        E::invalid_type(unexpected, &self)
    }
}

impl<'de> DeserializeSeed<'de> for HandoffVisitor<'_> {
    type Value = RawHandoff;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawHandoff, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HandoffVisitor<'_> {
    type Value = RawHandoff;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a handoff JSON object")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawHandoff, E> {
        Err(self.not_object("a boolean", Unexpected::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawHandoff, E> {
        Err(self.not_object("a number", Unexpected::Signed(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawHandoff, E> {
        Err(self.not_object("a number", Unexpected::Unsigned(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawHandoff, E> {
        Err(self.not_object("a number", Unexpected::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHandoff, E> {
        Err(self.not_object("a string", Unexpected::Str(&clip_escaped(v))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawHandoff, E> {
        Err(self.not_object("null", Unexpected::Unit))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawHandoff, E> {
        Err(self.not_object("null", Unexpected::Option))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<RawHandoff, A::Error> {
        // Not reading the elements also defuses nesting bombs.
        Err(self.not_object("an array", Unexpected::Seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHandoff, A::Error> {
        let mut raw = RawHandoff::default();
        let mut seen = 0u16;
        while let Some(name) = map.next_key::<String>()? {
            let Some(key) = Key::from_name(&name) else {
                if raw.extra.contains_key(&name) {
                    return map.next_value_seed(Duplicate::new(&name));
                }
                let value = map.next_value_seed(StrictValue)?;
                raw.extra.insert(name, value);
                continue;
            };
            if seen & key.bit() != 0 {
                return map.next_value_seed(Duplicate::new(key.name()));
            }
            seen |= key.bit();
            match key {
                Key::SchemaVersion => {
                    raw.schema_version = Some(map.next_value_seed(Text::VERSION)?);
                }
                Key::RunId => raw.run_id = Some(map.next_value_seed(RunIdSeed)?),
                Key::Agent => raw.agent = Some(map.next_value_seed(Text::AGENT)?),
                Key::Status => raw.status = Some(map.next_value::<Status>()?),
                Key::Result => raw.result = Some(map.next_value_seed(Text::RESULT)?),
                Key::Artifacts => {
                    raw.artifacts = map
                        .next_value_seed(Nullable(Artifacts))?
                        .unwrap_or_default();
                }
                Key::Confidence => {
                    raw.confidence = map.next_value_seed(Nullable(PhantomData::<Confidence>))?;
                }
                Key::Notes => {
                    raw.notes = map
                        .next_value_seed(Nullable(Text::NOTES))?
                        .unwrap_or_default();
                }
                Key::Timestamp => {
                    raw.timestamp = map.next_value_seed(Nullable(Text::TIMESTAMP))?;
                }
            }
        }
        Ok(raw)
    }
}

impl<'de> Deserialize<'de> for Handoff {
    /// Reads and validates a handoff (everything [`parse_handoff`] checks
    /// except the size cap and the expectation).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HandoffVisitor { top: None }
            .deserialize(d)?
            .finish()
            .map_err(de::Error::custom)
    }
}

/// Fails on a key seen before. Used as the seed of the repeated key's value,
/// so the error carries that key's path and the position of its value.
struct Duplicate<T> {
    name: String,
    value: PhantomData<T>,
}

impl<T> Duplicate<T> {
    fn new(name: &str) -> Self {
        Self {
            name: clip_escaped(name),
            value: PhantomData,
        }
    }
}

impl<'de, T> DeserializeSeed<'de> for Duplicate<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T> Duplicate<T> {
    fn error<E: de::Error>(&self) -> E {
        E::custom(format_args!(
            "duplicate field `{}`: each field may appear only once, keep one of them",
            self.name
        ))
    }
}

/// Reads past the repeated value, then fails: the error is raised inside the
/// value's own deserialization, so its position is the end of that value,
/// as for every other field error.
impl<'de, T> Visitor<'de> for Duplicate<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Err(self.error())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Err(self.error())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Err(self.error())
    }
}

/// Any JSON value, as `serde_json::Value` reads it, except that an object
/// with a key twice is refused (at any depth) instead of keeping the last
/// one: unknown fields are kept and written back, so what a reader sees in
/// them must be what the writer meant. Read through the path tracker, so
/// the error names the path (`meta.approved`, `x[2].y`) and the position.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(value) = seq.next_element_seed(StrictValue)? {
            out.push(value);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if out.contains_key(&name) {
                return map.next_value_seed(Duplicate::new(&name));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(name, value);
        }
        Ok(Value::Object(out))
    }
}

/// `null` reads as `None`, anything else through the inner seed.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A string field, checked as it is read.
#[derive(Clone, Copy)]
struct Text {
    expecting: &'static str,
    check: fn(&str) -> Result<(), String>,
}

impl Text {
    const RESULT: Text = Text {
        expecting: "a string (the result as text)",
        check: |_| Ok(()),
    };
    const NOTES: Text = Text {
        expecting: "a string",
        check: |_| Ok(()),
    };
    const VERSION: Text = Text {
        expecting: "a version string such as \"1.0\" (in double quotes)",
        check: check_version,
    };
    const AGENT: Text = Text {
        expecting: "a string (the id of the agent that did the task)",
        check: |s| {
            if s.is_empty() {
                Err("agent is empty: write the id of the agent that did the task".to_owned())
            } else if s.trim().is_empty() {
                Err("agent is blank: write the id of the agent that did the task".to_owned())
            } else {
                // The id rule of registry ids: an agent id is also a file
                // name, a NATS key token and a string shown on terminals.
                crate::validate_id(s).map_err(|e| {
                    format!(
                        "agent is not an agent id: {e}; write the id of the agent that did the task"
                    )
                })
            }
        },
    };
    const TIMESTAMP: Text = Text {
        expecting: "an RFC 3339 timestamp string such as \"2026-11-23T22:47:10Z\"",
        check: check_timestamp,
    };
    const LOCATOR: Text = Text {
        expecting: "a non-empty string",
        check: |s| {
            if s.is_empty() {
                Err("empty string: write the path or URL, or leave the field out".to_owned())
            } else {
                Ok(())
            }
        },
    };
}

fn check_version(s: &str) -> Result<(), String> {
    // A different major passes here and is reported by `RawHandoff::finish`
    // as unsupported, ahead of any other problem of the file.
    if is_supported_version(s) || is_other_major(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid schemaVersion {:?}: expected \"1.<minor>\" such as \"1.0\"",
            clip(s)
        ))
    }
}

fn check_timestamp(s: &str) -> Result<(), String> {
    match s.parse::<jiff::Timestamp>() {
        Ok(_) => Ok(()),
        // jiff's message quotes the input; only include it for short ones.
        Err(e) if s.len() <= EXCERPT_CHARS => Err(format!(
            "invalid RFC 3339 timestamp {s:?} ({e}): write it like \"2026-11-23T22:47:10Z\""
        )),
        Err(_) => Err(format!(
            "invalid RFC 3339 timestamp {:?}: write it like \"2026-11-23T22:47:10Z\"",
            clip(s)
        )),
    }
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.check)(v).map_err(E::custom)?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        (self.check)(&v).map_err(E::custom)?;
        Ok(v)
    }
}

/// `runId`: a string that is a valid [`RunId`].
struct RunIdSeed;

impl<'de> DeserializeSeed<'de> for RunIdSeed {
    type Value = RunId;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RunId, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RunIdSeed {
    type Value = RunId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a run id string such as \"orch-20261123T224500Z-3f9a1c2b\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RunId, E> {
        RunId::new(v).map_err(|e| E::custom(format_args!("{e}: copy the runId given in the task")))
    }
}

/// One of a fixed set of lowercase names.
struct Choice<T: 'static> {
    table: &'static [(&'static str, T)],
    names: &'static [&'static str],
    expecting: &'static str,
}

impl<'de, T: Copy> Visitor<'de> for Choice<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.table
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, value)| *value)
            .ok_or_else(|| E::unknown_variant(&clip_escaped(v), self.names))
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Choice {
            table: &[
                ("complete", Status::Complete),
                ("partial", Status::Partial),
                ("blocked", Status::Blocked),
                ("failed", Status::Failed),
            ],
            names: &["complete", "partial", "blocked", "failed"],
            expecting: "one of `complete`, `partial`, `blocked`, `failed`",
        })
    }
}

impl<'de> Deserialize<'de> for Confidence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Choice {
            table: &[
                ("high", Confidence::High),
                ("medium", Confidence::Medium),
                ("low", Confidence::Low),
            ],
            names: &["high", "medium", "low"],
            expecting: "one of `high`, `medium`, `low`",
        })
    }
}

/// The `artifacts` array.
struct Artifacts;

impl<'de> DeserializeSeed<'de> for Artifacts {
    type Value = Vec<Artifact>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Artifact>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Artifacts {
    type Value = Vec<Artifact>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of artifacts (strings, or objects with `path` or `url`)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<Artifact>, E> {
        Err(E::invalid_type(Unexpected::Str(&clip_escaped(v)), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Artifact>, A::Error> {
        let mut out = Vec::new();
        while let Some(artifact) = seq.next_element::<Artifact>()? {
            out.push(artifact);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Artifact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArtifactVisitor)
    }
}

impl<'de> Deserialize<'de> for ArtifactRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArtifactRefVisitor)
    }
}

/// An artifact: a string or an object with `path` or `url`.
struct ArtifactVisitor;

impl<'de> Visitor<'de> for ArtifactVisitor {
    type Value = Artifact;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an object with `path` or `url`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Artifact, E> {
        if v.is_empty() {
            return Err(E::custom(
                "artifact is an empty string: write a path or URL, or remove the entry",
            ));
        }
        Ok(Artifact::Plain(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Artifact, A::Error> {
        read_artifact_ref(map).map(Artifact::Ref)
    }
}

/// An artifact object on its own.
struct ArtifactRefVisitor;

impl<'de> Visitor<'de> for ArtifactRefVisitor {
    type Value = ArtifactRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `path` or `url`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ArtifactRef, E> {
        Err(E::invalid_type(Unexpected::Str(&clip_escaped(v)), &self))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ArtifactRef, A::Error> {
        read_artifact_ref(map)
    }
}

fn read_artifact_ref<'de, A: MapAccess<'de>>(mut map: A) -> Result<ArtifactRef, A::Error> {
    let mut out = ArtifactRef::default();
    while let Some(name) = map.next_key::<String>()? {
        let slot = match name.as_str() {
            "path" => &mut out.path,
            "url" => &mut out.url,
            _ => {
                if out.extra.contains_key(&name) {
                    return map.next_value_seed(Duplicate::new(&name));
                }
                let value = map.next_value_seed(StrictValue)?;
                out.extra.insert(name, value);
                continue;
            }
        };
        if slot.is_some() {
            return map.next_value_seed(Duplicate::new(&name));
        }
        *slot = Some(map.next_value_seed(Text::LOCATOR)?);
    }
    if out.path.is_none() && out.url.is_none() {
        return Err(de::Error::custom(
            "artifact object has neither `path` nor `url`: add at least one of them",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Handoff {
        let mut h = Handoff::new(
            RunId::new("orch-20261123T224500Z-3f9a1c2b").unwrap(),
            "webster",
            Status::Partial,
            "Zerodur CTE is 0 ± 0.007 ppm/K",
        );
        h.confidence = Some(Confidence::Medium);
        h.notes = "only class 0 checked".to_owned();
        let mut object = ArtifactRef {
            path: Some("out/table.csv".to_owned()),
            ..ArtifactRef::default()
        };
        object.extra.insert("zeta".to_owned(), Value::from(1));
        object
            .extra
            .insert("alpha".to_owned(), serde_json::json!({"nested": [1, 2]}));
        h.artifacts = vec![
            Artifact::Plain("https://example.org/a".to_owned()),
            Artifact::Ref(object),
        ];
        h.extra.insert("zz-last".to_owned(), Value::from("x"));
        h.extra
            .insert("aa-first".to_owned(), serde_json::json!([true, null]));
        h
    }

    #[test]
    fn round_trips_with_unknown_fields_in_order() {
        let h = sample();
        let again = parse_handoff(&h.to_json_pretty(), &Expect::default()).unwrap();
        assert_eq!(again, h);
        let keys: Vec<_> = again.extra.keys().cloned().collect();
        assert_eq!(keys, ["zz-last", "aa-first"]);
        let Artifact::Ref(object) = &again.artifacts[1] else {
            panic!("artifact 1 is not an object");
        };
        let keys: Vec<_> = object.extra.keys().cloned().collect();
        assert_eq!(keys, ["zeta", "alpha"]);
        // Written again, the bytes are the same.
        assert_eq!(again.to_json_pretty(), h.to_json_pretty());
    }

    #[test]
    fn serde_deserialize_validates_like_the_parser() {
        let h = sample();
        let value = serde_json::to_value(&h).unwrap();
        assert_eq!(serde_json::from_value::<Handoff>(value.clone()).unwrap(), h);
        let mut bad = value;
        bad["schemaVersion"] = Value::from("2.0");
        let err = serde_json::from_value::<Handoff>(bad).unwrap_err();
        assert!(
            err.to_string().contains("unsupported schemaVersion"),
            "{err}"
        );
    }

    #[test]
    fn expectation_is_checked() {
        let h = sample();
        let bytes = h.to_json_pretty();
        let other = RunId::new("orch-other").unwrap();
        let err = parse_handoff(
            &bytes,
            &Expect {
                run_id: Some(&other),
                agent: None,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, HandoffError::Mismatch { field: "runId", .. }),
            "{err}"
        );
        let ok = parse_handoff(
            &bytes,
            &Expect {
                run_id: Some(&h.run_id),
                agent: Some("webster"),
            },
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn versions() {
        for ok in ["1.0", "1.3", "1.10"] {
            assert!(is_supported_version(ok), "{ok}");
        }
        for other in ["2.0", "2", "10.1", "0.9", "3.x"] {
            assert!(
                !is_supported_version(other) && is_other_major(other),
                "{other}"
            );
        }
        for junk in ["one", "", "1", "1.", "1.0.1", "v1.0", "01.0", ".1"] {
            assert!(!is_supported_version(junk), "{junk}");
            assert!(check_version(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn incomplete_utf8_at_the_end_is_truncation() {
        let mut bytes = br#"{"result": "caf"#.to_vec();
        bytes.push(0xC3);
        let err = Handoff::from_slice(&bytes).unwrap_err();
        assert!(err.is_incomplete(), "{err}");
    }
}
