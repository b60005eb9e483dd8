//! Task messages and handoff instructions.
//!
//! [`task_message`] is what an agent receives: a one-line header naming the
//! run and the absolute handoff path, an optional re-ask block quoting why
//! the previous answer was refused, the task, the optional channel-context
//! block, and the instructions (schema, allowed values, atomic write, the
//! equivalent `orch handoff submit` command, how to delegate onward).
//!
//! The header is deliberately first and carries the handoff path as the
//! first absolute path ending in `.json` of the whole message, at the end
//! of its line: simple agents (and the OpenClaw test rig's fake model)
//! write to the first such path they find. Nothing before it may contain
//! one, which is why the task text comes after the header.
//!
//! [`validation_task`] is the task text given to a validator agent: it
//! quotes the original task and the result and says how to answer
//! (`complete` approves, `failed` or `blocked` rejects).

use std::fmt::Write as _;

use orch_handoff::{Artifact, Handoff, Scope};

use super::Identity;

/// Everything [`task_message`] needs; borrowed, so building a message for a
/// re-ask costs nothing but the string.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageInput<'a> {
    /// The run: its id, agent (the handoff's `agent`), caller, scope
    /// (`orch handoff submit --sub` for [`Scope::Sub`]) and handoff path
    /// (for the file store, the absolute path of `<root>/[sub/]<runId>.json`,
    /// [`orch_handoff::Handoffs::location`]).
    pub who: &'a Identity<'a>,
    /// The task text, verbatim.
    pub task: &'a str,
    /// Already rendered context (e.g. recent channel history), if any.
    pub context: Option<&'a str>,
    /// Extra arguments the agent must pass to `orch handoff submit` and
    /// `orch delegate` (e.g. `--handoff-dir /abs/store`).
    pub submit_args: &'a [String],
    /// Set on a re-ask: the exact validation error(s) of the refused
    /// handoff, or why there was none.
    pub reask: Option<&'a str>,
}

/// The full task message for one dispatch (see the module docs for its
/// shape).
pub(crate) fn task_message(input: &MessageInput<'_>) -> String {
    let MessageInput {
        who,
        task,
        context,
        submit_args,
        reask,
    } = *input;
    let (run_id, agent, caller) = (who.run_id(), who.agent, who.caller);
    let (scope, handoff_path) = (who.scope(), who.handoff_path.as_str());
    let mut m = String::with_capacity(task.len() + context.map_or(0, str::len) + 2048);
    // A delegation is never in `Control` (requests to workflow runs).
    let kind = match scope {
        Scope::Top | Scope::Control => "task",
        Scope::Sub => "sub-task",
    };
    // A file store hands out an absolute path the agent can write; another
    // store (NATS) a URL that only `orch handoff submit` can reach.
    let is_file = handoff_path.starts_with('/');
    // Header: the handoff path is the last thing on the line.
    if is_file {
        let _ = writeln!(
            m,
            "orch {kind} {run_id} for {agent} from {caller}; write your handoff to {handoff_path}"
        );
    } else {
        let _ = writeln!(
            m,
            "orch {kind} {run_id} for {agent} from {caller}; hand off with `orch handoff submit` \
             (the handoff goes to {handoff_path})"
        );
    }

    if let Some(reason) = reask {
        m.push_str("\n## Asked again\n\n");
        m.push_str("This task was sent to you before and no valid handoff came back:\n\n");
        push_indented(&mut m, reason, "    ");
        m.push_str(if is_file {
            "\nFinish the task if needed and write a valid handoff to the same path, \
             as described below. The refused file was moved aside.\n"
        } else {
            "\nFinish the task if needed and hand off again, as described below \
             (`--force` is not needed: the refused handoff was moved aside).\n"
        });
    }

    m.push_str("\n## Task\n\n");
    m.push_str(task.trim_end());
    m.push('\n');

    if let Some(context) = context.filter(|c| !c.trim().is_empty()) {
        m.push_str("\n## Context\n\n");
        m.push_str("<context>\n");
        m.push_str(context.trim_end());
        m.push_str("\n</context>\n");
    }

    let (dir, _) = handoff_path.rsplit_once('/').unwrap_or((".", handoff_path));
    let extra: String = submit_args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    let sub_flag = if scope == Scope::Sub { " --sub" } else { "" };
    let agent_q = shell_quote(agent);

    let submit = format!(
        "    orch handoff submit --run-id {run_id} --agent {agent_q} --status complete \
         --confidence high --result \"…\"{sub_flag}{extra}\n"
    );
    m.push_str("\n## How to hand off\n\n");
    if is_file {
        m.push_str(
            "When you are done, or cannot go on, write your handoff: one JSON object \
             (UTF-8, no BOM) in the file\n\n",
        );
        let _ = writeln!(m, "    {handoff_path}\n");
        let _ = writeln!(
            m,
            "Write it atomically: first write a temporary file in the same directory \
             whose name starts with a dot (e.g. `{dir}/.{run_id}.tmp`), then rename it \
             to `{run_id}.json`. Never write the final file in place: the caller reads \
             it the moment it appears.\n"
        );
    } else {
        m.push_str(
            "When you are done, or cannot go on, hand off with orch (the store is \
             shared, not a file you can write):\n\n",
        );
        m.push_str(&submit);
        m.push_str(
            "\n(`--result-file FILE` reads a long result from a file; `--notes` and \
             `--artifact` are optional; `--json FILE` submits a whole handoff object \
             as below.)\n\n",
        );
    }
    m.push_str("Fields:\n\n");
    let _ = writeln!(m, "- `schemaVersion`: \"1.0\" (required)");
    let _ = writeln!(m, "- `runId`: \"{run_id}\" (required, exactly this)");
    let _ = writeln!(
        m,
        "- `agent`: {} (required, exactly this)",
        json_string(agent)
    );
    m.push_str(
        "- `status`: \"complete\", \"partial\", \"blocked\" or \"failed\" (required)\n\
         - `result`: your result as text, Markdown welcome (required)\n\
         - `confidence`: \"high\", \"medium\" or \"low\"\n\
         - `artifacts`: files or links you produced, as strings or objects with \
         `path` or `url` (default: none)\n\
         - `notes`: caveats, what is missing, what to do next (default: empty)\n\
         - `timestamp`: when you wrote it, RFC 3339 (e.g. 2026-11-23T22:47:10Z)\n\n",
    );
    m.push_str(
        "Status: `complete` = the task is done; `partial` = part of it is done \
         (say in `notes` what is missing); `blocked` = you cannot proceed (say why \
         in `notes`); `failed` = you tried and failed.\n\n",
    );
    m.push_str("Example:\n\n");
    let _ = writeln!(
        m,
        "    {{\"schemaVersion\": \"1.0\", \"runId\": \"{run_id}\", \"agent\": {}, \
         \"status\": \"complete\", \"result\": \"…\", \"confidence\": \"high\", \
         \"artifacts\": [], \"notes\": \"\"}}\n",
        json_string(agent)
    );
    if !is_file {
        // The example ends the section.
        m.pop();
    }
    if is_file {
        m.push_str("Or let orch write it for you:\n\n");
        m.push_str(&submit);
        m.push_str(
            "\n(`--result-file FILE` reads a long result from a file; `--notes` and \
             `--artifact` are optional.)\n",
        );
    }

    m.push_str("\n## Delegating part of this task\n\n");
    m.push_str(
        "If the ACL allows you, you may hand part of this task to another agent; \
         this blocks until that agent hands off and prints its result:\n\n",
    );
    let _ = writeln!(
        m,
        "    orch delegate <agent> \"<task>\" --caller {agent_q} --parent {run_id}{extra}"
    );
    m
}

/// Longest stretch of a result (or task) quoted in a validation task, in
/// characters; the rest is left in the handoff file the task points at.
pub(crate) const VALIDATION_QUOTE_LIMIT: usize = 64 * 1024;

/// The task text for a validator agent judging `handoff`, the answer
/// `agent` gave to `task`, stored at `handoff_path`. Quotes the task and
/// the result (with status, confidence, notes and artifacts; each cut at
/// [`VALIDATION_QUOTE_LIMIT`] characters) and says how to answer: status
/// `complete` approves, `failed` or `blocked` rejects, reasons in `notes`.
/// Goes through [`task_message`] like any task.
pub(crate) fn validation_task(
    agent: &str,
    task: &str,
    handoff: &Handoff,
    handoff_path: &str,
) -> String {
    let mut m = String::with_capacity(task.len() + handoff.result.len() + 1024);
    let _ = writeln!(
        m,
        "Validate the result that {agent} returned for run {}.\n",
        handoff.run_id
    );
    let _ = writeln!(m, "### The task given to {agent}\n");
    push_indented(&mut m, &cut(task, handoff_path), "> ");
    let confidence = handoff.confidence.map_or("not stated", |c| match c {
        orch_handoff::Confidence::High => "high",
        orch_handoff::Confidence::Medium => "medium",
        orch_handoff::Confidence::Low => "low",
    });
    let _ = writeln!(
        m,
        "\n### The result (status {}, confidence {confidence})\n",
        handoff.status.as_str()
    );
    push_indented(&mut m, &cut(&handoff.result, handoff_path), "> ");
    if !handoff.notes.trim().is_empty() {
        let _ = writeln!(m, "\n### Notes from {agent}\n");
        push_indented(&mut m, &cut(&handoff.notes, handoff_path), "> ");
    }
    if !handoff.artifacts.is_empty() {
        m.push_str("\n### Artifacts\n\n");
        for artifact in &handoff.artifacts {
            let text = match artifact {
                Artifact::Plain(s) => s.clone(),
                Artifact::Ref(r) => match (&r.path, &r.url) {
                    (Some(p), Some(u)) => format!("{p} ({u})"),
                    (Some(p), None) => p.clone(),
                    (None, Some(u)) => u.clone(),
                    (None, None) => String::from("(empty reference)"),
                },
            };
            let _ = writeln!(m, "- {text}");
        }
    }
    m.push_str(
        "\n### Your verdict\n\n\
         Check whether the result answers the task correctly and completely. \
         Answer with your own handoff:\n\n\
         - status `complete`: you approve the result;\n\
         - status `failed` or `blocked`: you reject it.\n\n\
         Put your assessment in `result` and, when you reject, your reasons in `notes`.\n",
    );
    m
}

/// `text`, cut at [`VALIDATION_QUOTE_LIMIT`] characters with a pointer to
/// the full handoff.
fn cut(text: &str, handoff_path: &str) -> String {
    match text.char_indices().nth(VALIDATION_QUOTE_LIMIT) {
        None => text.to_owned(),
        Some((i, _)) => format!(
            "{}\n[… cut after {VALIDATION_QUOTE_LIMIT} characters; the full handoff is {handoff_path}]",
            &text[..i]
        ),
    }
}

/// Appends `text` with every line prefixed (empty lines get the prefix
/// trimmed of trailing spaces), ending with a newline.
fn push_indented(m: &mut String, text: &str, prefix: &str) {
    let text = text.trim_end();
    if text.is_empty() {
        m.push_str(prefix.trim_end());
        m.push_str(" (empty)\n");
        return;
    }
    for line in text.lines() {
        if line.trim().is_empty() {
            m.push_str(prefix.trim_end());
        } else {
            m.push_str(prefix);
            m.push_str(line);
        }
        m.push('\n');
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `s` quoted for a POSIX shell if it needs quoting.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_handoff::{HandoffKey, RunId, Status};

    fn run_id() -> RunId {
        RunId::new("orch-20261123T224500Z-3f9a1c2b").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run [`run_id`] of webster for manager, in a file store.
    fn who() -> Identity<'static> {
        Identity {
            key: HandoffKey::top(run_id()),
            agent: "webster",
            caller: "manager",
            parent: None,
            handoff_path: "/srv/orch/handoffs/orch-20261123T224500Z-3f9a1c2b.json".to_owned(),
        }
    }

    fn input<'a>(who: &'a Identity<'a>, submit_args: &'a [String]) -> MessageInput<'a> {
        MessageInput {
            who,
            task: "Find the CTE of Zerodur between 0 and 50 °C.",
            context: None,
            submit_args,
            reask: None,
        }
    }

    /// The first absolute path ending in `.json`, as the OpenClaw rig's
    /// fake model finds it.
    fn first_json_path(m: &str) -> Option<&str> {
        m.split(|c: char| c.is_whitespace() || c == '`' || c == '"')
            .find(|w| w.starts_with('/') && w.ends_with(".json"))
    }

    #[test]
    fn top_level_message() {
        let who = who();
        let m = task_message(&input(&who, &[]));
        assert_eq!(
            first_json_path(&m),
            Some("/srv/orch/handoffs/orch-20261123T224500Z-3f9a1c2b.json")
        );
        insta::assert_snapshot!(m);
    }

    #[test]
    fn a_store_that_is_not_a_file_asks_for_orch_handoff_submit() {
        let mut who = who();
        who.handoff_path = "nats://10.0.0.5:4222/orch/h/orch-20261123T224500Z-3f9a1c2b".to_owned();
        let args = vec!["--config".to_owned(), "/etc/orch/orch.yaml".to_owned()];
        let mut i = input(&who, &args);
        i.reask = Some("missing required field `status`: add it to the handoff object");
        let m = task_message(&i);
        assert!(!m.contains("rename"), "no file to write: {m}");
        assert!(
            m.contains(
                "orch handoff submit --run-id orch-20261123T224500Z-3f9a1c2b --agent webster \
                 --status complete --confidence high --result \"…\" --config /etc/orch/orch.yaml"
            ),
            "{m}"
        );
        insta::assert_snapshot!(m);
    }

    #[test]
    fn sub_delegation_with_context_and_submit_args() {
        let mut who = who();
        who.key = HandoffKey::sub(run_id());
        who.caller = "tech-lead";
        who.handoff_path = "/srv/orch/handoffs/sub/orch-20261123T224500Z-3f9a1c2b.json".to_owned();
        let args = vec![
            "--handoff-dir".to_owned(),
            "/srv/orch dir/handoffs".to_owned(),
        ];
        let mut i = input(&who, &args);
        i.context = Some("[2026-11-23 22:40] antoine: we need CTE numbers\n");
        i.task = "Look up /data/materials.json and report.\n\nBe brief.";
        let m = task_message(&i);
        // The header's path wins over the one in the task text.
        assert_eq!(
            first_json_path(&m),
            Some("/srv/orch/handoffs/sub/orch-20261123T224500Z-3f9a1c2b.json")
        );
        assert!(
            m.contains("--sub --handoff-dir '/srv/orch dir/handoffs'"),
            "{m}"
        );
        insta::assert_snapshot!(m);
    }

    #[test]
    fn reask_quotes_the_error() {
        let who = who();
        let mut i = input(&who, &[]);
        i.reask = Some("missing required field `status`: add it to the handoff object");
        let m = task_message(&i);
        assert!(m.contains("    missing required field `status`"), "{m}");
        assert_eq!(
            first_json_path(&m),
            Some("/srv/orch/handoffs/orch-20261123T224500Z-3f9a1c2b.json")
        );
        insta::assert_snapshot!(m);
    }

    #[test]
    fn validation_task_quotes_task_and_result() {
        let mut h = Handoff::new(
            run_id(),
            "webster",
            Status::Complete,
            "Zerodur CTE is 0 ± 0.007 ppm/K (0–50 °C, class 0).\n\nSource: SCHOTT datasheet.",
        );
        h.confidence = Some(orch_handoff::Confidence::High);
        h.notes = "Class 1 is ± 0.02.".to_owned();
        h.artifacts = vec![Artifact::Plain("https://example.com/zerodur.pdf".into())];
        let t = validation_task(
            "webster",
            "Find the CTE of Zerodur.",
            &h,
            "/srv/orch/handoffs/orch-20261123T224500Z-3f9a1c2b.json",
        );
        insta::assert_snapshot!(t);
    }

    #[test]
    fn validation_task_cuts_huge_results() {
        let h = Handoff::new(run_id(), "webster", Status::Complete, "x".repeat(200_000));
        let t = validation_task("webster", "t", &h, "/s/r.json");
        assert!(t.len() < 70_000, "{}", t.len());
        assert!(t.contains("cut after 65536 characters; the full handoff is /s/r.json"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("webster"), "webster");
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
