//! orch-metrics tests: a generated store whose every figure is known, the
//! fixed fixture store (snapshots of the three renderers), unreadable
//! input, the empty store, the published JSON Schema, and workflow run
//! records in `orch-workflow`'s exact shape.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod fixture;
mod generated;
#[allow(dead_code)]
mod generator;
mod index;
mod problems;
mod schema;
mod workflow_records;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_metrics::{Mode, Options, Report};

/// "Now" of every test report.
pub(crate) fn now() -> Timestamp {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

pub(crate) fn open(root: &Path) -> Arc<dyn HandoffStore> {
    Arc::new(FsStore::open(FsStoreConfig::new(root)).unwrap())
}

pub(crate) fn options() -> Options {
    Options::new(now())
}

pub(crate) fn rescan() -> Options {
    Options {
        mode: Mode::Rescan,
        ..options()
    }
}

/// Scans on a multi-thread runtime (as the CLI does).
pub(crate) fn scan(root: &Path, options: &Options) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(orch_metrics::scan(open(root), options))
        .unwrap()
}

pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of `tests/fixture/store` in a temp dir, with the store's path
/// replaced by `[STORE]` in reports (see [`stable`]).
pub(crate) fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&crate_dir().join("tests/fixture/store"), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The report with the temp store path made stable.
pub(crate) fn stable(mut report: Report) -> Report {
    report.source.store = "file store at [STORE]".to_owned();
    report
}
