//! Handoff records: the corpus of bad and good handoffs, and the published
//! JSON Schema.
//!
//! Bad cases are data: files in `tests/corpus/bad/` plus the generated
//! table in [`generated_bad_cases`]. Each goes through [`check`], the only
//! code here that calls the parser for a bad case, and its exact message is
//! an insta snapshot (`snapshots/it__record__bad@<case>.snap`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use orch_handoff::{Expect, Handoff, HandoffError, RunId, handoff_json_schema, parse_handoff};
use serde_json::Value;

/// Run id and agent every corpus file is written for.
const RUN_ID: &str = "orch-20261123T224500Z-3f9a1c2b";
const AGENT: &str = "webster";

/// Most quoted file content any message may carry, plus the fixed text.
const MAX_MESSAGE_BYTES: usize = 400;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(name, bytes)` of every file in `tests/corpus/<dir>`, sorted by name.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = crate_dir().join("tests/corpus").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn with_expectation<T>(f: impl FnOnce(&Expect<'_>) -> T) -> T {
    let run_id = RunId::new(RUN_ID).unwrap();
    f(&Expect {
        run_id: Some(&run_id),
        agent: Some(AGENT),
    })
}

/// The variant name of an error, e.g. `Field`.
fn kind(err: &HandoffError) -> String {
    format!("{err:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Parses a bad case and snapshots its error.
fn check(name: &str, bytes: &[u8], expect: &Expect<'_>) {
    let err = match parse_handoff(bytes, expect) {
        Ok(h) => panic!("bad case {name} parsed: {h:?}"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{name}: message of {} bytes: {message}",
        message.len()
    );
    assert!(
        message.starts_with(|c: char| !c.is_uppercase()) && !message.ends_with('.'),
        "{name}: message style (lowercase start, no trailing period): {message}"
    );
    insta::with_settings!({ snapshot_suffix => name, prepend_module_to_snapshot => true }, {
        insta::assert_snapshot!(
            "bad",
            format!("{} (incomplete: {})\n{message}", kind(&err), err.is_incomplete())
        );
    });
}

/// A valid handoff in pretty JSON with `result` replaced.
fn valid_with_result(result: &str) -> Vec<u8> {
    let mut h = Handoff::new(
        RunId::new(RUN_ID).unwrap(),
        AGENT,
        orch_handoff::Status::Complete,
        result,
    );
    h.timestamp = Some("2026-11-23T22:47:10Z".to_owned());
    h.to_json_pretty()
}

/// Bad cases built in code: too big, too deep, or not text.
fn generated_bad_cases() -> Vec<(&'static str, Vec<u8>)> {
    let valid = valid_with_result("Zerodur CTE is 0 ± 0.007 ppm/K.");
    let deep = 100_000;
    let mut cases = vec![
        ("generated-empty", Vec::new()),
        ("generated-whitespace-only", b" \n\t\r\n  \n".to_vec()),
        ("generated-bom", [b"\xEF\xBB\xBF".as_slice(), &valid].concat()),
        (
            "generated-over-cap-5mib",
            valid_with_result(&"x".repeat(5 * 1024 * 1024)),
        ),
        ("generated-nesting-bomb-top", "[".repeat(deep).into_bytes()),
        (
            "generated-nesting-bomb-in-unknown-field",
            format!(
                "{{\"schemaVersion\": \"1.0\", \"trace\": {}",
                "[".repeat(deep)
            )
            .into_bytes(),
        ),
        (
            "generated-nesting-bomb-objects",
            format!(
                "{{\"schemaVersion\": \"1.0\", \"x\": {}",
                "{\"a\": ".repeat(deep)
            )
            .into_bytes(),
        ),
        (
            "generated-nesting-bomb-in-artifacts",
            format!("{{\"artifacts\": {}", "[".repeat(deep)).into_bytes(),
        ),
        (
            "generated-huge-unknown-status",
            format!("{{\"status\": \"{}\"}}", "done".repeat(50_000)).into_bytes(),
        ),
        (
            "generated-huge-artifacts-string",
            format!("{{\"artifacts\": \"{}\"}}", "a/".repeat(50_000)).into_bytes(),
        ),
        (
            "generated-huge-top-level-string",
            format!("\"{}\"", "z".repeat(100_000)).into_bytes(),
        ),
        (
            "generated-huge-duplicate-key",
            {
                let key = "k".repeat(10_000);
                format!("{{\"{key}\": 1, \"{key}\": 2}}").into_bytes()
            },
        ),
        (
            "generated-huge-bad-version",
            format!("{{\"schemaVersion\": \"v{}\"}}", "9".repeat(10_000)).into_bytes(),
        ),
        (
            "generated-huge-other-major",
            format!(
                "{{\"schemaVersion\": \"{}.0\", \"runId\": \"{RUN_ID}\", \"agent\": \"{AGENT}\", \"status\": \"complete\", \"result\": \"\"}}",
                "7".repeat(10_000)
            )
            .into_bytes(),
        ),
        (
            "generated-huge-timestamp",
            format!("{{\"timestamp\": \"2026-{}\"}}", "1".repeat(10_000)).into_bytes(),
        ),
        (
            "generated-huge-agent",
            String::from_utf8(valid.clone())
                .unwrap()
                .replace("\"webster\"", &format!("\"{}\"", "w".repeat(10_000)))
                .into_bytes(),
        ),
        (
            "generated-longest-agent-mismatch",
            String::from_utf8(valid.clone())
                .unwrap()
                .replace("\"webster\"", &format!("\"{}\"", "w".repeat(128)))
                .into_bytes(),
        ),
        (
            "generated-control-characters-in-status",
            b"{\"status\": \"done\\n\\u0000`x`\"}".to_vec(),
        ),
    ];
    // Latin-1 instead of UTF-8: "é" as the single byte 0xE9.
    let mut latin1 = String::from_utf8(valid.clone())
        .unwrap()
        .replace("Zerodur", "Z\u{1}rodur")
        .into_bytes();
    let at = latin1.iter().position(|b| *b == 1).unwrap();
    latin1[at] = 0xE9;
    cases.push(("generated-not-utf8", latin1));
    // Cut inside the two bytes of "±": still being written.
    let plus_minus = valid.windows(2).position(|w| w == "±".as_bytes()).unwrap();
    cases.push((
        "generated-truncated-mid-utf8",
        valid[..=plus_minus].to_vec(),
    ));
    cases
}

#[test]
fn bad_corpus_files() {
    let cases = corpus("bad");
    assert!(cases.len() >= 30, "only {} bad files", cases.len());
    with_expectation(|expect| {
        for (name, bytes) in &cases {
            check(name, bytes, expect);
        }
    });
}

#[test]
fn bad_generated_cases() {
    with_expectation(|expect| {
        for (name, bytes) in generated_bad_cases() {
            check(name, &bytes, expect);
        }
    });
}

#[test]
fn incomplete_means_still_being_written() {
    // Every prefix of a valid handoff is either incomplete or, once the
    // closing brace is there, valid: a reader waiting on a growing file
    // never sees a final error.
    let full = valid_with_result("Zerodur CTE is 0 ± 0.007 ppm/K.");
    for len in 0..full.len() {
        let prefix = &full[..len];
        if let Err(e) = Handoff::from_slice(prefix) {
            let complete_object = prefix.trim_ascii_end().ends_with(b"}");
            assert!(
                e.is_incomplete() || complete_object,
                "prefix of {len} bytes: {e}"
            );
        }
    }
}

#[test]
fn size_cap_is_inclusive() {
    let bytes = valid_with_result("ok");
    let len = bytes.len() as u64;
    let expect = Expect::default();
    assert!(orch_handoff::parse_handoff_capped(&bytes, &expect, len).is_ok());
    let err = orch_handoff::parse_handoff_capped(&bytes, &expect, len - 1).unwrap_err();
    assert!(matches!(err, HandoffError::TooLarge { .. }), "{err}");
}

#[test]
fn good_corpus_parses_and_round_trips() {
    let cases = corpus("good");
    assert!(cases.len() >= 5, "only {} good files", cases.len());
    with_expectation(|expect| {
        for (name, bytes) in &cases {
            let h = parse_handoff(bytes, expect).unwrap_or_else(|e| panic!("{name}: {e}"));
            let written = h.to_json_pretty();
            let again = parse_handoff(&written, expect).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again, h, "{name}: round trip");
            assert_eq!(again.to_json_pretty(), written, "{name}: stable output");

            // Every non-null value of the file is written back, unknown
            // fields in their original order after the known ones.
            let input: Value = serde_json::from_slice(bytes).unwrap();
            let output: Value = serde_json::from_slice(&written).unwrap();
            for (key, value) in input.as_object().unwrap() {
                if !value.is_null() || h.extra.contains_key(key) {
                    assert_eq!(output.get(key), Some(value), "{name}: field {key}");
                }
            }
            let unknown_in: Vec<_> = input
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| h.extra.contains_key(*k))
                .collect();
            let unknown_out: Vec<_> = output
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| h.extra.contains_key(*k))
                .collect();
            assert_eq!(unknown_in, unknown_out, "{name}: order of unknown fields");
        }
    });
}

#[test]
fn schema_file_is_up_to_date() {
    let path = crate_dir().join("schema/handoff.schema.json");
    let mut generated = serde_json::to_string_pretty(&handoff_json_schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("ORCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `ORCH_BLESS=1 cargo test -p orch-handoff` and commit it",
        path.display()
    );
}

#[test]
fn good_corpus_matches_the_schema() {
    let schema = handoff_json_schema();
    for (name, bytes) in corpus("good") {
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        if let Err(why) = schema_check(&schema, &schema, &value, "") {
            panic!("{name}: {why}");
        }
    }
}

/// Bad files the schema cannot reject: rules it states as `pattern` or
/// `format` (which [`schema_check`] does not evaluate), duplicate keys
/// (invisible once parsed into a `Value`), and mismatches with the task.
const SCHEMA_BLIND: &[&str] = &[
    "agent-bidi-override",
    "agent-blank",
    "agent-escape",
    "agent-mismatch",
    "agent-newline",
    "agent-nul",
    "agent-space",
    "duplicate-artifact-path",
    "duplicate-field-deep",
    "duplicate-field-in-array",
    "duplicate-field-in-artifact",
    "duplicate-nested-field",
    "duplicate-status",
    "duplicate-unknown-field",
    "run-id-empty",
    "run-id-hidden",
    "run-id-mismatch",
    "run-id-traversal",
    "schema-version-2",
    "schema-version-no-minor",
    "schema-version-one",
    "timestamp-no-offset",
    "timestamp-words",
];

#[test]
fn schema_rejects_what_the_parser_rejects() {
    let schema = handoff_json_schema();
    for (name, bytes) in corpus("bad") {
        // Only files that are JSON at all say anything about the schema.
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let verdict = schema_check(&schema, &schema, &value, "");
        if SCHEMA_BLIND.contains(&name.as_str()) {
            assert!(
                verdict.is_ok(),
                "{name}: now rejected by the schema, update SCHEMA_BLIND"
            );
        } else {
            assert!(
                verdict.is_err(),
                "{name}: the schema accepts what the parser rejects"
            );
        }
    }
}

/// A small JSON Schema checker for the keywords `handoff.schema.json` uses
/// (`$ref`, `type`, `required`, `properties`, `additionalProperties`,
/// `items`, `enum`, `const`, `oneOf`, `anyOf`, `minLength`). `pattern` and
/// `format` are not evaluated.
fn schema_check(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{at}: schema `false`")),
        };
    };
    if let Some(Value::String(reference)) = schema.get("$ref") {
        let target = root
            .pointer(reference.trim_start_matches('#'))
            .ok_or_else(|| format!("{at}: dangling $ref {reference}"))?;
        schema_check(root, target, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad `type` keyword")),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            return Err(format!("{at}: {actual} is not of type {types:?}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in enum"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: {value} is not {constant}"));
    }
    if let (Some(min), Value::String(s)) = (schema.get("minLength").and_then(Value::as_u64), value)
        && (s.chars().count() as u64) < min
    {
        return Err(format!("{at}: string shorter than {min}"));
    }
    if let Some(Value::Array(options)) = schema.get("oneOf") {
        let matching = options
            .iter()
            .filter(|s| schema_check(root, s, value, at).is_ok())
            .count();
        if matching != 1 {
            return Err(format!("{at}: {matching} of oneOf match"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("anyOf")
        && !options
            .iter()
            .any(|s| schema_check(root, s, value, at).is_ok())
    {
        return Err(format!("{at}: no anyOf matches"));
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    return Err(format!("{at}: missing {key}"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let at = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(property) => schema_check(root, property, item, &at)?,
                None => {
                    if let Some(extra) = schema.get("additionalProperties") {
                        schema_check(root, extra, item, &at)?;
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            schema_check(root, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn schema_states_the_contract() {
    let schema = handoff_json_schema();
    let required: Vec<_> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        ["schemaVersion", "runId", "agent", "status", "result"]
    );
    assert_eq!(
        schema["properties"]["schemaVersion"]["pattern"],
        r"^1\.[0-9]+$"
    );
    assert_ne!(
        schema.get("additionalProperties"),
        Some(&Value::Bool(false))
    );
    assert!(
        schema["$id"]
            .as_str()
            .unwrap()
            .ends_with("handoff.schema.json")
    );
    assert!(schema["title"].is_string() && schema["description"].is_string());
}
