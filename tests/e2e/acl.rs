//! `orch acl …` through the binary.

use crate::Orch;

#[test]
fn check_allowed_and_denied() {
    let orch = Orch::new();
    let cases: &[(&str, &str, i32)] = &[
        ("manager", "auditor", 0),
        ("tech-lead", "webster", 0),
        ("tech-lead", "auditor", 3),
        ("optimizer", "nx-expert", 3),
        ("auditor", "webster", 3),
        ("manager", "manager", 3),
    ];
    let mut transcript = String::new();
    for (caller, target, code) in cases {
        let run = orch.run(&["acl", "check", caller, target], None);
        assert_eq!(run.code, *code, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
        transcript.push('\n');
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn show_text_and_json() {
    let orch = Orch::new();
    insta::assert_snapshot!("acl_show", orch.ok(&["acl", "show"]).stdout);
    let json = orch.ok(&["acl", "show", "--json"]).stdout;
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(value.get("manager").is_some(), "{json}");
    insta::assert_snapshot!("acl_show_json", json);
}
