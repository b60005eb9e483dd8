//! The corpus of bad workflow files: each file in `tests/corpus/bad/` (plus
//! the generated cases below) goes through [`check`], the only code here
//! that calls the API for a bad case, and its errors are an insta snapshot
//! (`snapshots/it__corpus__bad@<case>.snap`).
//!
//! A file whose first line is `# run: caller=NAME [inputs=k=v,k=v]` loads
//! and must then fail `check_run` with that caller and those inputs, the
//! Atomizer agents and `Policy::atomizer_default()`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orch_delegate::orch_acl::Policy;
use orch_workflow::{MAX_FILE_BYTES, check_run, load};

/// The eight Atomizer agents of the default registry.
pub(crate) const AGENTS: &[&str] = &[
    "manager",
    "tech-lead",
    "webster",
    "nx-expert",
    "study-builder",
    "secretary",
    "optimizer",
    "auditor",
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad")
}

/// `(caller, inputs)` from a `# run:` first line.
fn run_header(text: &str) -> Option<(String, BTreeMap<String, String>)> {
    let rest = text.lines().next()?.strip_prefix("# run:")?;
    let mut caller = String::new();
    let mut inputs = BTreeMap::new();
    for word in rest.split_whitespace() {
        if let Some(c) = word.strip_prefix("caller=") {
            caller = c.to_owned();
        } else if let Some(list) = word.strip_prefix("inputs=") {
            for kv in list.split(',') {
                let (k, v) = kv.split_once('=').unwrap();
                inputs.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    Some((caller, inputs))
}

/// The errors of a bad case, one per line.
fn errors(name: &str, text: &str) -> String {
    let origin = format!("bad/{name}.yaml");
    let wf = match load(text, &origin) {
        Err(e) => {
            assert!(
                run_header(text).is_none(),
                "{name}: meant to load, failed: {e}"
            );
            assert_eq!(
                e.to_string(),
                format!("{}:{}:{}: {}", e.origin, e.line, e.column, e.message)
            );
            return format!("{e}\n  kind: {:?}, path: {:?}", e.kind, e.path);
        }
        Ok(wf) => wf,
    };
    let Some((caller, inputs)) = run_header(text) else {
        panic!("{name}: loaded, but has no `# run:` header");
    };
    match check_run(&wf, AGENTS, &Policy::atomizer_default(), &caller, &inputs) {
        Ok(_) => panic!("{name}: check_run passed"),
        Err(errs) => errs
            .iter()
            .map(|e| format!("{e}\n  kind: {:?}, path: {:?}", e.kind, e.path))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn check(name: &str, text: &str) {
    let out = errors(name, text);
    insta::with_settings!({ snapshot_suffix => name.to_owned(), prepend_module_to_snapshot => true }, {
        insta::assert_snapshot!("bad", out);
    });
}

#[test]
fn bad_corpus() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 18, "the corpus shrank to {}", files.len());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        check(&name, &text);
    }
}

#[test]
fn generated_cases() {
    // Over the size cap: refused before any parsing.
    let mut big = String::from("name: big\nsteps:\n  - id: a\n    agent: webster\n    task: |\n");
    while big.len() <= MAX_FILE_BYTES {
        big.push_str("      Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n");
    }
    check("generated-too-large", &big);
    // Deep block nesting (the flow case is in the corpus).
    let mut deep = String::from("name: deep\nsteps:\n");
    for level in 0..80 {
        deep.push_str(&" ".repeat(2 * level + 2));
        deep.push_str("- \n");
    }
    check("generated-deep-block", &deep);
}

#[test]
fn a_byte_order_mark_is_accepted_and_positions_stay_those_an_editor_shows() {
    let text = "\u{feff}name: bom\nsteps:\n  - id: a\n    agent: webster\n    task: one\n";
    let wf = load(text, "bom.yaml").unwrap();
    assert_eq!(wf.name, "bom");
    assert_eq!(wf.steps.len(), 1);
    // An error on the first line is placed as if the mark were not there.
    let e = load("\u{feff}name: [x]\nsteps: []\n", "bom.yaml").unwrap_err();
    assert_eq!((e.line, e.column), (1, 7), "{e}");
}
