//! `orch workflow validate|graph|list|show` through the binary.

use crate::{Orch, settings};

#[test]
fn list_show_and_graph_the_shipped_workflows() {
    let orch = Orch::new();
    let mut transcript = orch.ok(&["workflow", "list"]).transcript(&orch);
    for name in ["quick-research", "material-trade-study", "design-review"] {
        transcript.push_str(&orch.ok(&["workflow", "show", name]).transcript(&orch));
        transcript.push_str(&orch.ok(&["workflow", "graph", name]).transcript(&orch));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn validate_checks_file_agents_acl_and_inputs() {
    let orch = Orch::new();
    std::fs::create_dir_all(orch.path("workflows")).unwrap();
    std::fs::write(
        orch.path("workflows/loop.yaml"),
        "name: loop\nsteps:\n  - id: a\n    agent: webster\n    task: \"{{ steps.b.result }}\"\n  - id: b\n    agent: webster\n    task: \"{{ steps.a.result }}\"\n",
    )
    .unwrap();
    let cases: &[(&str, &[&str], i32)] = &[
        ("file only", &["workflow", "validate", "design-review"], 0),
        (
            "full check",
            &[
                "workflow",
                "validate",
                "material-trade-study",
                "--caller",
                "manager",
                "--input",
                "materials=Zerodur, ULE",
            ],
            0,
        ),
        (
            "denied steps and a missing input",
            &[
                "workflow",
                "validate",
                "material-trade-study",
                "--caller",
                "optimizer",
            ],
            2,
        ),
        (
            "only denials",
            &[
                "workflow",
                "validate",
                "design-review",
                "--caller",
                "tech-lead",
                "--input",
                "design=mirror mount rev C",
            ],
            3,
        ),
        (
            "a cycle in ./workflows/",
            &["workflow", "validate", "loop"],
            2,
        ),
        ("unknown workflow", &["workflow", "validate", "nope"], 2),
    ];
    let mut transcript = String::new();
    for (name, args, code) in cases {
        let run = orch.run(args, None);
        assert_eq!(run.code, *code, "{name}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}
