//! Key names of the NATS store: which key holds what, and back.
//!
//! ```text
//! bucket <b>                       handoffs
//!   h/<id>                         Scope::Top handoff
//!   s/<id>                         Scope::Sub handoff
//!   q/h/<id>/<n>, q/s/<id>/<n>     quarantined (rejected) handoffs, n = 1, 2, …
//! bucket <b>-workflows             workflow records
//!   w/<wfRunId>/summary            run summary
//!   w/<wfRunId>/step/<stepId>      step record
//! ```
//!
//! `/` separates the parts because no id can contain it, so every key splits
//! back unambiguously. Inside an id, `.` is written as `=`: NATS keys are
//! subjects, `.` separates subject tokens, and valid run ids such as `a..b`
//! or `a.` would make an empty token (the server then finds no stream for
//! the subject, or the client refuses the key). `=` is allowed in keys and
//! is not in the id alphabet `[A-Za-z0-9._-]`, so the mapping is one to one
//! and every key is a single subject token. Ids are validated before any key
//! is built ([`RunId`] by construction, step ids here).

use crate::store::{HandoffKey, Scope, StoreError, WorkflowRecord};
use crate::{RunId, validate_id};

/// The step id that would name the run summary (refused in any case, like
/// the file store does).
const SUMMARY: &str = "summary";

/// Writes an id as a key part (`.` → `=`).
pub(super) fn encode(id: &str) -> String {
    id.replace('.', "=")
}

/// Reads a key part back into a valid id; `None` for anything else.
pub(super) fn decode(part: &str) -> Option<String> {
    if part.contains('.') {
        return None;
    }
    let id = part.replace('=', ".");
    validate_id(&id).ok().map(|()| id)
}

fn scope_part(scope: Scope) -> &'static str {
    match scope {
        Scope::Top => "h",
        Scope::Sub => "s",
        Scope::Control => "c",
    }
}

/// The key of a handoff.
pub(super) fn handoff(key: &HandoffKey) -> String {
    format!("{}/{}", scope_part(key.scope), encode(key.run_id.as_str()))
}

/// The run id of a handoff key in `scope`; `None` for other keys.
pub(super) fn parse_handoff(scope: Scope, key: &str) -> Option<RunId> {
    let rest = key
        .strip_prefix(scope_part(scope))
        .and_then(|r| r.strip_prefix('/'))?;
    if rest.contains('/') {
        return None;
    }
    RunId::new(decode(rest)?).ok()
}

/// The key of the `n`-th quarantined copy of a handoff.
pub(super) fn quarantined(key: &HandoffKey, n: u32) -> String {
    format!(
        "q/{}/{}/{n}",
        scope_part(key.scope),
        encode(key.run_id.as_str())
    )
}

/// The key of a workflow record. Step ids are validated here, and
/// `summary` (any case) is reserved.
pub(super) fn record(run: &RunId, record: &WorkflowRecord) -> Result<String, StoreError> {
    let run = encode(run.as_str());
    match record {
        WorkflowRecord::Summary => Ok(format!("w/{run}/{SUMMARY}")),
        WorkflowRecord::Step(id) => {
            validate_id(id).map_err(|source| StoreError::InvalidId {
                id: id.chars().take(40).collect(),
                source,
            })?;
            if id.eq_ignore_ascii_case(SUMMARY) {
                return Err(StoreError::ReservedId { id: id.clone() });
            }
            Ok(format!("w/{run}/step/{}", encode(id)))
        }
    }
}

/// What a workflow bucket key names: the run, and the step (`None` for the
/// summary). `None` for keys that are not ours.
pub(super) fn parse_record(key: &str) -> Option<(RunId, Option<String>)> {
    let mut parts = key.strip_prefix("w/")?.split('/');
    let run = RunId::new(decode(parts.next()?)?).ok()?;
    let step = match (parts.next()?, parts.next(), parts.next()) {
        (SUMMARY, None, _) => None,
        ("step", Some(step), None) => Some(decode(step)?),
        _ => return None,
    };
    Some((run, step))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(s: &str) -> RunId {
        RunId::new(s).unwrap()
    }

    #[test]
    fn handoff_keys_round_trip_and_are_one_subject_token() {
        for run in [
            "orch-20261123T224500Z-3f9a1c2b",
            "wf-x.fetch.1",
            "a..b",
            "a.",
            "A_b-c",
        ] {
            for scope in [Scope::Top, Scope::Sub] {
                let key = handoff(&HandoffKey {
                    scope,
                    run_id: id(run),
                });
                assert!(!key.contains('.'), "{key}");
                assert!(
                    key.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                    "{key}"
                );
                assert_eq!(parse_handoff(scope, &key), Some(id(run)), "{key}");
                let other = match scope {
                    Scope::Top => Scope::Sub,
                    Scope::Sub | Scope::Control => Scope::Top,
                };
                assert_eq!(parse_handoff(other, &key), None);
            }
        }
        assert_eq!(handoff(&HandoffKey::top(id("wf-x.s.1"))), "h/wf-x=s=1");
    }

    #[test]
    fn foreign_keys_are_not_handoffs() {
        for key in [
            "h/", "h", "h/a/b", "q/h/a/1", "h/.a", "h/a.b", "x/a", "h/=a", "hx/a",
        ] {
            assert_eq!(parse_handoff(Scope::Top, key), None, "{key}");
        }
    }

    #[test]
    fn record_keys_round_trip() {
        let run = id("wf-demo.1");
        let summary = record(&run, &WorkflowRecord::Summary).unwrap();
        assert_eq!(summary, "w/wf-demo=1/summary");
        assert_eq!(parse_record(&summary), Some((run.clone(), None)));
        let step = record(&run, &WorkflowRecord::Step("fetch.v2".into())).unwrap();
        assert_eq!(step, "w/wf-demo=1/step/fetch=v2");
        assert_eq!(
            parse_record(&step),
            Some((run.clone(), Some("fetch.v2".into())))
        );
        for foreign in [
            "w/x",
            "w/x/other",
            "w/x/step",
            "w/x/step/a/b",
            "h/x",
            "w//summary",
        ] {
            assert_eq!(parse_record(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn step_ids_are_checked_before_a_key_is_built() {
        let run = id("wf");
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                matches!(
                    record(&run, &WorkflowRecord::Step(bad.into())),
                    Err(StoreError::InvalidId { .. })
                ),
                "{bad:?}"
            );
        }
        for reserved in ["summary", "SUMMARY"] {
            assert!(matches!(
                record(&run, &WorkflowRecord::Step(reserved.into())),
                Err(StoreError::ReservedId { .. })
            ));
        }
    }

    #[test]
    fn quarantine_keys_are_not_handoffs() {
        let key = quarantined(&HandoffKey::sub(id("r.1")), 2);
        assert_eq!(key, "q/s/r=1/2");
        assert_eq!(parse_handoff(Scope::Sub, &key), None);
    }
}
