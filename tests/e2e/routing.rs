//! `orch route`, `orch delegate auto` and `orch registry` through the binary.

use crate::{Orch, settings};

#[test]
fn route_ranks_only_allowed_agents() {
    let orch = Orch::new();
    let best = orch.ok(&[
        "route",
        "Find the CTE of Zerodur between 0 and 50 °C",
        "--caller",
        "manager",
    ]);
    let json = orch.ok(&[
        "route",
        "Find the CTE of Zerodur between 0 and 50 °C",
        "--caller",
        "manager",
        "--json",
    ]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["best"], "webster", "{value}");
    let nothing = orch.ok(&["route", "bake a chocolate cake", "--caller", "manager"]);
    settings().bind(|| {
        insta::assert_snapshot!(format!(
            "{}\n{}\n{}",
            best.transcript(&orch),
            json.transcript(&orch),
            nothing.transcript(&orch)
        ))
    });

    // tech-lead may not delegate to the auditor: routing never offers it.
    for task in [
        "Audit the results of last week's FEA",
        "QA review and audit of the optimisation report",
    ] {
        let run = orch.ok(&["route", task, "--caller", "tech-lead", "--json"]);
        let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let offered: Vec<&str> = value["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["agent"].as_str().unwrap())
            .collect();
        assert!(!offered.contains(&"auditor"), "{task}: {offered:?}");
        assert!(!value["allowed"].to_string().contains("auditor"), "{value}");
    }

    let nobody = orch.run(&["route", "anything", "--caller", "auditor"], None);
    assert_eq!(nobody.code, 3, "{}", nobody.transcript(&orch));
}

#[test]
fn delegate_auto_says_whom_it_chose_and_why() {
    let orch = Orch::new();
    let run = orch.run(
        &[
            "delegate",
            "auto",
            "Find the CTE of Zerodur between 0 and 50 °C",
            "--caller",
            "manager",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    assert!(
        run.stderr.starts_with("routed to webster"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.starts_with("manager → webster: complete"),
        "{}",
        run.stdout
    );
    let json = orch.run(
        &[
            "delegate",
            "auto",
            "Check the thermal margins of the mirror mount",
            "--caller",
            "manager",
            "--json",
        ],
        None,
    );
    assert_eq!(json.code, 0, "{}", json.transcript(&orch));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["agent"], value["routing"]["best"], "{value}");
    let none = orch.run(
        &[
            "delegate",
            "auto",
            "bake a chocolate cake",
            "--caller",
            "manager",
        ],
        None,
    );
    assert_eq!(none.code, 2, "{}", none.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!(none.transcript(&orch)));
}

#[test]
fn registry_list_and_show() {
    let orch = Orch::new();
    let list = orch.ok(&["registry", "list"]);
    let show = orch.ok(&["registry", "show", "webster"]);
    let unknown = orch.run(&["registry", "show", "nobody"], None);
    assert_eq!(unknown.code, 2);
    settings().bind(|| {
        insta::assert_snapshot!(format!(
            "{}\n{}\n{}",
            list.transcript(&orch),
            show.transcript(&orch),
            unknown.transcript(&orch)
        ))
    });
    let json = orch.ok(&["registry", "list", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["agents"].as_array().unwrap().len(), 8);
}

#[test]
fn a_registry_file_replaces_the_default_agents() {
    let orch = Orch::new();
    std::fs::write(
        orch.path("AGENTS_REGISTRY.json"),
        r#"{
  "agents": [
    { "id": "librarian", "name": "Librarian", "role": "research",
      "description": "Finds papers and datasheets.", "capabilities": ["literature search", "datasheets"],
      "transport": "sim" },
    { "id": "boss", "name": "Boss", "role": "coordination",
      "description": "Decides.", "capabilities": ["coordination"], "transport": "sim" }
  ]
}"#,
    )
    .unwrap();
    orch.write_config("registry: AGENTS_REGISTRY.json\nacl: { boss: ['*'] }\n");
    let list = orch.ok(&["registry", "list"]);
    assert!(list.stdout.contains("librarian"), "{}", list.stdout);
    let run = orch.run(
        &[
            "delegate",
            "auto",
            "find the datasheets of Zerodur",
            "--caller",
            "boss",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    assert!(
        run.stderr.starts_with("routed to librarian"),
        "{}",
        run.stderr
    );

    std::fs::write(
        orch.path("AGENTS_REGISTRY.json"),
        r#"{ "agents": [ { "id": "a", "name": "A", "role": "r", "description": "d", "transport": "sim", "validator": "b" } ] }"#,
    )
    .unwrap();
    let bad = orch.run(&["registry", "list"], None);
    assert_eq!(bad.code, 2, "{}", bad.transcript(&orch));
    settings().bind(|| insta::assert_snapshot!(bad.transcript(&orch)));
}
