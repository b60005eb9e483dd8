//! Registry files: the corpus of bad and good registries, loading, the
//! embedded default, and the published JSON Schema.
//!
//! Bad cases are data: files in `tests/corpus/bad/`. Each goes through
//! [`check`], the only code here that parses a bad case, and its exact
//! message is an insta snapshot (`snapshots/it__registry__bad@<case>.snap`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use orch_registry::{Registry, RegistryError, RegistryFile, registry_json_schema};
use serde_json::Value;

/// Longest message any case may produce.
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

/// The variant name of an error, e.g. `Invalid`.
fn kind(err: &RegistryError) -> String {
    format!("{err:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Asserts the house style of a message and that it names the file.
#[track_caller]
fn assert_style(name: &str, origin: &str, message: &str) {
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{name}: message of {} bytes: {message}",
        message.len()
    );
    assert!(
        message.starts_with(|c: char| !c.is_uppercase()) && !message.ends_with('.'),
        "{name}: message style (lowercase start, no trailing period): {message}"
    );
    assert!(message.contains(origin), "{name}: names no file: {message}");
}

/// Parses a bad case and snapshots its error.
fn check(name: &str, bytes: &[u8]) {
    let origin = format!("{name}.json");
    let err = match Registry::from_json(bytes, &origin) {
        Ok(r) => panic!("bad case {name} loaded: {:?}", r.ids()),
        Err(e) => e,
    };
    let message = err.to_string();
    assert_style(name, &origin, &message);
    // Content errors name the JSON path they are about.
    match &err {
        RegistryError::Invalid { path, .. } | RegistryError::Parse { path, .. }
            if !path.is_empty() =>
        {
            assert!(message.contains(path.as_str()), "{name}: {message}");
        }
        _ => {}
    }
    insta::with_settings!({ snapshot_suffix => name, prepend_module_to_snapshot => true }, {
        insta::assert_snapshot!("bad", format!("{}\n{message}", kind(&err)));
    });
}

#[test]
fn bad_corpus() {
    let cases = corpus("bad");
    assert!(cases.len() >= 12, "only {} bad cases", cases.len());
    for (name, bytes) in &cases {
        check(name, bytes);
    }
}

#[test]
fn good_corpus_loads_and_round_trips() {
    let default = (
        "default_registry".to_owned(),
        include_bytes!("../../src/default_registry.json").to_vec(),
    );
    for (name, bytes) in corpus("good").into_iter().chain([default]) {
        let registry = Registry::from_json(&bytes, &name).unwrap_or_else(|e| panic!("{e}"));
        let file = registry.to_file();
        let again = serde_json::to_vec_pretty(&file).unwrap();
        let reread = Registry::from_json(&again, &name).unwrap();
        assert_eq!(reread, registry, "{name}");
        // The same checks run on a file built in code.
        assert_eq!(Registry::from_file(file, &name).unwrap(), registry);
    }
}

#[test]
fn from_file_runs_the_semantic_checks() {
    let mut file = Registry::embedded_default().to_file();
    file.agents[1].validator = Some("nobody".to_owned());
    let err = Registry::from_file(file, "orch.yaml").unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"invalid registry orch.yaml at agents[1].validator: unknown validator "nobody": no agent of this registry has that id (known: "auditor", "manager", "nx-expert", "optimizer", "secretary", "study-builder", "tech-lead", "webster")"#);
    let empty = RegistryFile {
        schema: None,
        agents: Vec::new(),
        channels: Default::default(),
    };
    let err = Registry::from_file(empty, "inline").unwrap_err();
    assert!(matches!(err, RegistryError::Invalid { ref path, .. } if path == "agents"));
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("AGENTS_REGISTRY.json");
    std::fs::write(&path, include_bytes!("../../src/default_registry.json")).unwrap();
    assert_eq!(Registry::load(&path).unwrap(), Registry::embedded_default());

    let missing = dir.path().join("missing.json");
    let err = Registry::load(&missing).unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }));
    let message = err
        .to_string()
        .replace(&*dir.path().to_string_lossy(), "[dir]");
    insta::assert_snapshot!(message, @"cannot read registry [dir]/missing.json: No such file or directory (os error 2)");

    let err = Registry::load(dir.path()).unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }), "{err}");

    // Over the 4 MiB cap: refused without reading it all.
    let big = dir.path().join("big.json");
    let padding = " ".repeat(5 * 1024 * 1024);
    std::fs::write(&big, format!("{{\"agents\": []{padding}}}")).unwrap();
    let err = Registry::load(&big).unwrap_err();
    let message = err
        .to_string()
        .replace(&*dir.path().to_string_lossy(), "[dir]");
    insta::assert_snapshot!(message, @"invalid registry [dir]/big.json: the file is 4194305 bytes, over the 4 MiB limit of a registry");
}

#[test]
fn errors_point_at_line_and_column() {
    let err = Registry::from_json(
        &corpus("bad")
            .into_iter()
            .find(|(n, _)| n == "max-concurrent-string")
            .unwrap()
            .1,
        "AGENTS_REGISTRY.json",
    )
    .unwrap_err();
    let RegistryError::Parse {
        path, line, column, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (path.as_str(), line, column),
        ("agents[0].maxConcurrent", 18, 26)
    );
}

#[test]
fn resolve_channel_by_name_or_id() {
    let registry = Registry::embedded_default();
    let technical = registry.channels()["technical"].clone();
    assert_eq!(
        registry.resolve_channel("technical"),
        Some((Some("technical"), technical.clone()))
    );
    assert_eq!(
        registry.resolve_channel("#technical"),
        Some((Some("technical"), technical.clone()))
    );
    // A raw id: named when the registry knows it.
    assert_eq!(
        registry.resolve_channel(&technical),
        Some((Some("technical"), technical.clone()))
    );
    assert_eq!(
        registry.resolve_channel("12345678901234567890"),
        Some((None, "12345678901234567890".to_owned()))
    );
    assert_eq!(registry.resolve_channel("lunch"), None);
    assert_eq!(registry.resolve_channel("1234"), None);
    assert_eq!(registry.resolve_channel(""), None);
}

#[test]
fn embedded_default_describes_the_team() {
    let registry = Registry::embedded_default();
    let ids: BTreeSet<&str> = registry.ids().into_iter().collect();
    let team: BTreeSet<&str> = [
        "manager",
        "tech-lead",
        "webster",
        "nx-expert",
        "study-builder",
        "secretary",
        "optimizer",
        "auditor",
    ]
    .into();
    assert_eq!(ids, team);
    let validators = [
        ("webster", "tech-lead"),
        ("nx-expert", "tech-lead"),
        ("study-builder", "tech-lead"),
        ("optimizer", "tech-lead"),
        ("tech-lead", "auditor"),
        ("manager", "auditor"),
        ("secretary", "manager"),
        ("auditor", "manager"),
    ];
    for (agent, validator) in validators {
        let info = registry.get(agent).unwrap();
        assert_eq!(info.validator.as_deref(), Some(validator), "{agent}");
        assert_eq!(info.transport, Value::from("sim"), "{agent}");
        let expected = if agent == "manager" { 2 } else { 4 };
        assert_eq!(info.max_concurrent, Some(expected), "{agent}");
        assert!(
            (8..=15).contains(&info.capabilities.len()),
            "{agent}: {} capabilities",
            info.capabilities.len()
        );
        assert!(!info.channels.is_empty(), "{agent}: no channels");
        assert!(info.description.len() > 80, "{agent}: thin description");
    }
    assert!(registry.get("nobody").is_none());
    assert!(registry.channels().len() >= 5);
}

#[test]
fn schema_file_is_up_to_date() {
    let path = crate_dir().join("schema/registry.schema.json");
    let mut generated = serde_json::to_string_pretty(&registry_json_schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("ORCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `ORCH_BLESS=1 cargo test -p orch-registry` and commit it",
        path.display()
    );
}

#[test]
fn good_corpus_matches_the_schema() {
    let schema = registry_json_schema();
    let default = (
        "default_registry".to_owned(),
        include_bytes!("../../src/default_registry.json").to_vec(),
    );
    for (name, bytes) in corpus("good").into_iter().chain([default]) {
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        if let Err(why) = schema_check(&schema, &schema, &value, "") {
            panic!("{name}: {why}");
        }
    }
}

/// Bad files the schema cannot reject: rules it states as `pattern` (which
/// [`schema_check`] does not evaluate), duplicate keys (invisible once
/// parsed into a `Value`), whitespace-only strings, case-insensitive
/// duplicates, and cross-references (ids, validators, channel names).
const SCHEMA_BLIND: &[&str] = &[
    "agent-channel-without-map",
    "capability-blank",
    "channel-id-short",
    "channel-id-url",
    "channel-name-digits",
    "channel-name-space",
    "duplicate-capability",
    "duplicate-capability-spacing",
    "duplicate-channel-name",
    "duplicate-field",
    "duplicate-id",
    "id-empty",
    "id-hidden",
    "id-path-traversal",
    "id-too-long",
    "id-with-space",
    "name-blank",
    "self-validator",
    "transport-empty-string",
    "unknown-channel",
    "unknown-channel-far",
    "unknown-validator",
    "unknown-validator-far",
];

#[test]
fn schema_rejects_what_the_loader_rejects() {
    let schema = registry_json_schema();
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
                "{name}: the schema accepts what the loader rejects"
            );
        }
    }
}

/// A small JSON Schema checker for the keywords `registry.schema.json`
/// uses (`$ref`, `type`, `required`, `properties`, `additionalProperties`,
/// `items`, `oneOf`, `minLength`, `minItems`, `minimum`, `uniqueItems`).
/// `pattern`, `propertyNames` and `format` are not evaluated.
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
    if let (Some(min), Value::String(s)) = (schema.get("minLength").and_then(Value::as_u64), value)
        && (s.chars().count() as u64) < min
    {
        return Err(format!("{at}: string shorter than {min}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(format!("{at}: {n} below the minimum {min}"));
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
    if let Value::Array(items) = value {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Err(format!("{at}: fewer than {min} items"));
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    return Err(format!("{at}[{i}]: duplicate item"));
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                schema_check(root, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    return Err(format!("{at}: missing `{key}`"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let path = format!("{at}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => schema_check(root, property, item, &path)?,
                (None, Some(additional)) => schema_check(root, additional, item, &path)?,
                (None, None) => {}
            }
        }
    }
    Ok(())
}
