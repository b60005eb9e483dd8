//! Helpers shared by the store test modules (`store.rs`, `conformance.rs`,
//! `nats.rs`).
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_handoff::{
    Handoff, HandoffKey, LedgerEvent, LedgerEventKind, RunId, Scope, Status, WaitOutcome,
};
use tokio::time::Instant;

pub(crate) fn id(s: &str) -> RunId {
    RunId::new(s).unwrap()
}

pub(crate) fn key(scope: Scope, s: &str) -> HandoffKey {
    HandoffKey {
        scope,
        run_id: id(s),
    }
}

pub(crate) fn handoff(run: &str) -> Handoff {
    Handoff::new(
        id(run),
        "webster",
        Status::Complete,
        format!("result of {run}"),
    )
}

/// Far enough that only a bug reaches it.
pub(crate) fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

pub(crate) fn landed(outcome: WaitOutcome) -> Handoff {
    match outcome {
        WaitOutcome::Landed(h) => h,
        other => panic!("expected Landed, got {other:?}"),
    }
}

/// Yields until `cond` holds (other tasks run meanwhile); no sleeping.
pub(crate) async fn until(what: &str, cond: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        tokio::task::yield_now().await;
    }
}

/// Every path under `dir`, relative, sorted.
pub(crate) fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.strip_prefix(base).unwrap().to_owned());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// A ledger line from `writer`, long enough that a torn write would show.
pub(crate) fn ledger_event(writer: &str, n: usize) -> LedgerEvent {
    let mut e = LedgerEvent::now(LedgerEventKind::Handoff);
    e.run_id = Some(id(&format!("orch-{writer}-{n}")));
    e.agent = Some("webster".into());
    e.detail = Some(format!("{writer}:{n}:{}", "x".repeat(300)));
    e
}
