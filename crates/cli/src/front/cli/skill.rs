//! `orch skill install|show`: the OpenClaw skill (`skills/orch/SKILL.md`,
//! embedded) that teaches an agent how an orch task looks, how to answer
//! with a handoff and how to delegate onward.

use std::io::Write;
use std::path::Path;

use crate::app::error::{AppError, Exit};
use crate::front::cli::args::SkillCmd;
use crate::front::out;

/// The skill, as shipped in the repository's `skills/orch/`.
pub(crate) const SKILL_MD: &str = include_str!("../../../../../skills/orch/SKILL.md");

pub(crate) fn run(cmd: SkillCmd) -> Result<Exit, AppError> {
    match cmd {
        SkillCmd::Install { workspace, force } => install(&workspace, force),
        SkillCmd::Show => {
            out::print(SKILL_MD)?;
            Ok(Exit::Ok)
        }
    }
}

/// Writes `<workspace>/skills/orch/SKILL.md` atomically (temp file, fsync,
/// rename). The workspace must exist: a typo must not create a stray tree.
fn install(workspace: &Path, force: bool) -> Result<Exit, AppError> {
    if !workspace.is_dir() {
        return Err(AppError::Usage(format!(
            "--workspace {}: no such directory (pass the agent's OpenClaw workspace, \
             its `workspace` in openclaw.json)",
            workspace.display()
        )));
    }
    let dir = workspace.join("skills").join("orch");
    let target = dir.join("SKILL.md");
    match std::fs::read(&target) {
        Ok(existing) if existing == SKILL_MD.as_bytes() => {
            out::print(&format!(
                "the orch skill is already installed: {}\n",
                target.display()
            ))?;
            return Ok(Exit::Ok);
        }
        Ok(_) if !force => {
            return Err(AppError::Usage(format!(
                "{} exists and differs from this version's skill; pass --force to replace it",
                target.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AppError::Usage(format!(
                "cannot read {}: {e}",
                target.display()
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| AppError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(".SKILL.md.tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(SKILL_MD.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &target));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(AppError::Usage(format!(
            "cannot write {}: {e}",
            target.display()
        )));
    }
    out::print(&format!(
        "installed the orch skill: {}\nOpenClaw loads it for the agent's next session; \
         `openclaw skills list --agent <id>` shows it.\n",
        target.display()
    ))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skill_has_the_frontmatter_openclaw_needs() {
        let front = SKILL_MD
            .strip_prefix("---\n")
            .and_then(|rest| rest.split_once("\n---\n"))
            .map(|(f, _)| f)
            .unwrap_or_default();
        assert!(front.lines().any(|l| l == "name: orch"), "{front}");
        let description = front
            .lines()
            .find_map(|l| l.strip_prefix("description: "))
            .unwrap_or_default();
        assert!(!description.is_empty());
        assert!(description.len() < 160, "OpenClaw wants one short line");
    }
}
