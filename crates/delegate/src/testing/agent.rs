//! The fake gateway's agents: what the rig's fake model
//! (`shared/rigs/openclaw/fake_model.py`) makes a real OpenClaw agent do,
//! without a model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

/// What one run does, decided when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Act {
    /// End without writing anything (`[fake:silent]`, or no `.json` path
    /// in the message).
    Nothing,
    /// End with `completion.status` `error` and write nothing
    /// (`[fake:error]`, an addition of this fake).
    Error(String),
    /// Write a handoff.
    Write {
        /// Where (the first absolute `.json` path of the message).
        path: PathBuf,
        /// What.
        body: Body,
    },
}

/// The content of a written handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body {
    /// `{not json`.
    Malformed,
    /// A schema-1.0 handoff.
    Handoff {
        run_id: String,
        agent: String,
        status: &'static str,
        confidence: &'static str,
        result: String,
    },
}

/// Decides what a run of `agent` does for `message`. `runs_of` counts the
/// runs of a handoff file name so far, including this one (for
/// `[fake:malformed-once]`).
pub(super) fn plan(message: &str, agent: &str, runs_of: impl FnOnce(&str) -> u32) -> Act {
    let Some(path) = first_json_path(message) else {
        return Act::Nothing;
    };
    if message.contains("[fake:silent]") {
        return Act::Nothing;
    }
    if message.contains("[fake:error]") {
        return Act::Error("the fake agent failed ([fake:error])".to_owned());
    }
    let run_id = path
        .rsplit_once('/')
        .map_or(path, |(_, name)| name)
        .trim_end_matches(".json")
        .to_owned();
    let runs = runs_of(&run_id);
    let malformed = message.contains("[fake:malformed]")
        || (message.contains("[fake:malformed-once]") && runs <= 1);
    let body = if malformed {
        Body::Malformed
    } else {
        let status = ["partial", "blocked", "failed"]
            .into_iter()
            .find(|s| message.contains(&format!("[fake:{s}]")))
            .unwrap_or("complete");
        let confidence = if message.contains("[fake:low]") {
            "low"
        } else {
            "high"
        };
        let first_line = message.trim().lines().next().unwrap_or("");
        let first_line: String = first_line.chars().take(200).collect();
        Body::Handoff {
            run_id,
            agent: agent.to_owned(),
            status,
            confidence,
            result: format!("Fake gateway answer to: {first_line}"),
        }
    };
    Act::Write {
        path: PathBuf::from(path),
        body,
    }
}

impl Body {
    /// The bytes written.
    pub(super) fn render(&self) -> Vec<u8> {
        match self {
            Self::Malformed => b"{not json".to_vec(),
            Self::Handoff {
                run_id,
                agent,
                status,
                confidence,
                result,
            } => {
                let value = json!({
                    "schemaVersion": "1.0",
                    "runId": run_id,
                    "agent": agent,
                    "status": status,
                    "result": result,
                    "artifacts": [],
                    "confidence": confidence,
                    "notes": "written by orch's fake OpenClaw gateway",
                    "timestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                });
                value.to_string().into_bytes()
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: a hidden temp file in the same
/// directory (created if missing, as OpenClaw's `write` tool does), then a
/// rename.
pub(super) async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.fake-gateway-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    tokio::fs::create_dir_all(dir).await?;
    tokio::fs::write(&temp, bytes).await?;
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    Ok(())
}

/// The first absolute path ending in `.json` in `text`, as the rig's fake
/// model finds it: the leftmost match of `/[^\s"'`<>()]+\.json`, greedy.
pub(super) fn first_json_path(text: &str) -> Option<&str> {
    let allowed =
        |c: char| !(c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '(' | ')'));
    let mut rest = text;
    let mut offset = 0;
    loop {
        // The next run of allowed characters.
        let start = rest.find(allowed)?;
        let run_len = rest[start..]
            .find(|c| !allowed(c))
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + run_len];
        // The regex's match in this run, if any, starts at its first `/`
        // followed by at least one character before the run's last `.json`.
        if let Some(dot) = run.rfind(".json")
            && let Some(slash) = run[..dot].find('/')
            && slash + 1 < dot
        {
            let from = offset + start + slash;
            return Some(&text[from..offset + start + dot + 5]);
        }
        let consumed = start + run_len;
        offset += consumed;
        rest = &rest[consumed..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_path_like_the_rig() {
        let cases = [
            ("run r1: write /tmp/s/r1.json now", Some("/tmp/s/r1.json")),
            ("see \"/a/b.json\" and /c/d.json", Some("/a/b.json")),
            ("relative a/b.json counts from its slash", Some("/b.json")),
            ("/x.json.bak/y.json.", Some("/x.json.bak/y.json")),
            ("no path here, only x.json", None),
            ("/.json is too short, /ok/.json is not", Some("/ok/.json")),
            ("(/in/parens.json)", Some("/in/parens.json")),
            ("/dir/ then /f.jsonl", Some("/f.json")),
            ("ünïcode /tmp/é/r.json", Some("/tmp/é/r.json")),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(first_json_path(text), want, "{text:?}");
        }
    }

    #[test]
    fn markers() {
        let once = |_: &str| 1;
        let msg = |m: &str| format!("Run r1 → /s/r1.json\nTask {m}");
        let body = |m: &str| match plan(&msg(m), "webster", once) {
            Act::Write { body, .. } => Some(body),
            _ => None,
        };
        assert_eq!(
            body(""),
            Some(Body::Handoff {
                run_id: "r1".to_owned(),
                agent: "webster".to_owned(),
                status: "complete",
                confidence: "high",
                result: "Fake gateway answer to: Run r1 → /s/r1.json".to_owned(),
            })
        );
        assert!(matches!(
            body("[fake:blocked] [fake:low]"),
            Some(Body::Handoff {
                status: "blocked",
                confidence: "low",
                ..
            })
        ));
        assert_eq!(body("[fake:malformed]"), Some(Body::Malformed));
        assert_eq!(body("[fake:malformed-once]"), Some(Body::Malformed));
        assert!(matches!(
            plan(&msg("[fake:malformed-once]"), "a", |_| 2),
            Act::Write {
                body: Body::Handoff { .. },
                ..
            }
        ));
        assert_eq!(plan(&msg("[fake:silent]"), "a", once), Act::Nothing);
        assert!(matches!(
            plan(&msg("[fake:error]"), "a", once),
            Act::Error(_)
        ));
        assert_eq!(plan("no path", "a", once), Act::Nothing);
    }
}
