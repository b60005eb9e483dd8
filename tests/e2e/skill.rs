//! `orch skill install|show`.

use crate::{Orch, settings};

#[test]
fn install_writes_the_skill_once_and_never_clobbers_a_different_one() {
    let orch = Orch::new();
    let ws = orch.path("ws-webster");
    std::fs::create_dir(&ws).unwrap();
    let ws_arg = ws.to_str().unwrap();
    let skill = ws.join("skills/orch/SKILL.md");
    let shipped = orch.ok(&["skill", "show"]).stdout;
    assert!(shipped.starts_with("---\nname: orch\n"), "{shipped}");

    let mut transcript = String::new();
    let first = orch.ok(&["skill", "install", "--workspace", ws_arg]);
    assert_eq!(std::fs::read_to_string(&skill).unwrap(), shipped);
    transcript.push_str(&first.transcript(&orch));
    let again = orch.ok(&["skill", "install", "--workspace", ws_arg]);
    transcript.push_str(&again.transcript(&orch));

    std::fs::write(
        &skill,
        "---\nname: orch\ndescription: edited by hand\n---\n",
    )
    .unwrap();
    let refused = orch.run(&["skill", "install", "--workspace", ws_arg], None);
    assert_eq!(refused.code, 2, "{}", refused.transcript(&orch));
    assert!(
        std::fs::read_to_string(&skill)
            .unwrap()
            .contains("edited by hand"),
        "kept"
    );
    transcript.push_str(&refused.transcript(&orch));
    let forced = orch.ok(&["skill", "install", "--workspace", ws_arg, "--force"]);
    assert_eq!(std::fs::read_to_string(&skill).unwrap(), shipped);
    transcript.push_str(&forced.transcript(&orch));

    let missing = orch.run(
        &[
            "skill",
            "install",
            "--workspace",
            orch.path("nope").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(missing.code, 2, "{}", missing.transcript(&orch));
    assert!(!orch.path("nope").exists(), "no stray tree");
    transcript.push_str(&missing.transcript(&orch));
    let leftovers: Vec<_> = std::fs::read_dir(ws.join("skills/orch"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["SKILL.md"], "no temp file left");
    settings().bind(|| insta::assert_snapshot!(transcript));
}
