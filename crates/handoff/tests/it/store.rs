//! Store tests: `FsStore` layout, waiting (inotify and polling), hostile
//! input, workflow records and the ledger.
//!
//! Waiting tests run in real time with generous deadlines that only bound a
//! failure: the file event is what ends every successful wait. "After the
//! wait started" is made exact by running on a current-thread runtime: once
//! the test task sees the subscription registered, the waiter task has run
//! until its first real suspension, which is the wait for a wake-up.
#![allow(clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use orch_handoff::{
    FsStore, FsStoreConfig, Handoff, HandoffError, HandoffKey, LedgerEvent, PutMode, RunId, Scope,
    StoreError, WaitOutcome, WatchMode, WorkflowRecord,
};
use tokio::time::Instant;

use crate::common::{deadline, handoff, id, key, landed, ledger_event, tree, until};

// ---------------------------------------------------------------- helpers

fn store_with(mode: WatchMode) -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FsStoreConfig::new(dir.path());
    config.watch = mode;
    config.poll_interval = Duration::from_millis(20);
    let store = FsStore::open(config).unwrap();
    (dir, store)
}

fn store() -> (tempfile::TempDir, FsStore) {
    store_with(WatchMode::Inotify)
}

/// Writes like a well-behaved agent: temp file, rename into place.
fn agent_write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.agent-tmp",
        path.file_name().unwrap().to_str().unwrap()
    ));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

// ------------------------------------------------ waiting: when it lands

#[derive(Clone, Copy, Debug)]
enum When {
    /// Before `subscribe`.
    BeforeSubscribe,
    /// After `subscribe`, before `wait`.
    BeforeWait,
    /// While the waiter is parked in `wait`.
    WhileWaiting,
}

/// The one function these cases go through.
async fn check_lands(mode: WatchMode, scope: Scope, when: When) {
    let (_dir, store) = store_with(mode);
    let k = key(scope, "run-1");
    let path = store.path_of(&k);
    let bytes = handoff("run-1").to_json_pretty();
    let case = format!("{mode:?} {scope:?} {when:?}");
    let got = match when {
        When::BeforeSubscribe => {
            agent_write(&path, &bytes);
            store.wait(&k, deadline()).await.unwrap()
        }
        When::BeforeWait => {
            let mut sub = store.subscribe(&k).await.unwrap();
            agent_write(&path, &bytes);
            sub.wait(deadline()).await.unwrap()
        }
        When::WhileWaiting => {
            let waiter = {
                let store = store.clone();
                let k = k.clone();
                tokio::spawn(async move { store.wait(&k, deadline()).await })
            };
            until("waiter registered", || store.active_waiters() == 1).await;
            agent_write(&path, &bytes);
            waiter.await.unwrap().unwrap()
        }
    };
    let h = landed(got);
    assert_eq!(h.run_id, k.run_id, "{case}");
    assert_eq!(h.result, "result of run-1", "{case}");
    assert_eq!(store.active_waiters(), 0, "{case}");
    assert!(store.watchers_created() <= 1, "{case}");
}

#[tokio::test]
async fn a_handoff_is_seen_whenever_it_lands() {
    for mode in [WatchMode::Inotify, WatchMode::Poll, WatchMode::Auto] {
        for scope in [Scope::Top, Scope::Sub] {
            for when in [When::BeforeSubscribe, When::BeforeWait, When::WhileWaiting] {
                check_lands(mode, scope, when).await;
            }
        }
    }
}

#[tokio::test]
async fn watcher_is_created_lazily_once_and_reports_its_mode() {
    let (_dir, store) = store();
    store
        .put(Scope::Top, &handoff("a"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        store.get(&key(Scope::Top, "a")).await.unwrap(),
        Some(handoff_read(&store, "a").await)
    );
    assert_eq!(
        store.watchers_created(),
        0,
        "put/get must not create a watcher"
    );
    assert_eq!(store.watch_mode_in_use(), None);
    let s1 = store.subscribe(&key(Scope::Top, "b")).await.unwrap();
    let s2 = store
        .clone()
        .subscribe(&key(Scope::Top, "b"))
        .await
        .unwrap();
    assert_eq!(store.watchers_created(), 1);
    assert_eq!(store.watch_mode_in_use(), Some(WatchMode::Inotify));
    assert_eq!(store.active_waiters(), 2);
    assert_eq!(s1.key(), &key(Scope::Top, "b"));
    drop(s1);
    assert_eq!(store.active_waiters(), 1);
    drop(s2);
    assert_eq!(store.active_waiters(), 0);

    let (_dir, polling) = store_with(WatchMode::Poll);
    let _s = polling.subscribe(&key(Scope::Sub, "b")).await.unwrap();
    assert_eq!(polling.watch_mode_in_use(), Some(WatchMode::Poll));
    assert_eq!(polling.watchers_created(), 1);
}

async fn handoff_read(store: &FsStore, run: &str) -> Handoff {
    store.get(&key(Scope::Top, run)).await.unwrap().unwrap()
}

// ------------------------------------------- waiting: files being written

/// How the first half of the file becomes visible.
#[derive(Clone, Copy, Debug)]
enum FirstHalf {
    /// `open(O_CREAT)`, write, flush: the waiter may also see it empty.
    Created,
    /// Renamed into place: the half is the first thing the waiter can see,
    /// so waiting for one incomplete read proves it saw exactly the half.
    Renamed,
}

async fn check_two_chunk_write(mode: WatchMode, first: FirstHalf) {
    let (_dir, store) = store_with(mode);
    let k = key(Scope::Top, "chunky");
    let path = store.path_of(&k);
    let bytes = handoff("chunky").to_json_pretty();
    let (head, tail) = bytes.split_at(bytes.len() / 2);

    let waiter = {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move { store.wait(&k, deadline()).await })
    };
    until("waiter registered", || store.active_waiters() == 1).await;
    let mut file = match first {
        FirstHalf::Created => {
            let mut f = fs::File::create_new(&path).unwrap();
            f.write_all(head).unwrap();
            f.flush().unwrap();
            f
        }
        FirstHalf::Renamed => {
            agent_write(&path, head);
            fs::OpenOptions::new().append(true).open(&path).unwrap()
        }
    };
    until("waiter saw the incomplete file", || {
        store.incomplete_reads() >= 1
    })
    .await;
    assert!(
        !waiter.is_finished(),
        "{mode:?} {first:?}: gave up on a half-written file"
    );
    file.write_all(tail).unwrap();
    file.flush().unwrap();
    drop(file);
    let h = landed(waiter.await.unwrap().unwrap());
    assert_eq!(
        h,
        handoff_read(&store, "chunky").await,
        "{mode:?} {first:?}"
    );
    assert_eq!(h.result, "result of chunky");
}

#[tokio::test]
async fn a_file_written_in_two_chunks_is_not_reported_broken() {
    for mode in [WatchMode::Inotify, WatchMode::Poll] {
        for first in [FirstHalf::Renamed, FirstHalf::Created] {
            check_two_chunk_write(mode, first).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_file_still_cut_off_at_the_deadline_times_out_incomplete() {
    let (_dir, store) = store();
    let k = key(Scope::Top, "cut");
    let bytes = handoff("cut").to_json_pretty();
    agent_write(&store.path_of(&k), &bytes[..bytes.len() / 2]);
    let start = Instant::now();
    let got = store
        .wait(&k, start + Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        matches!(&got, WaitOutcome::TimedOutIncomplete(e) if e.is_incomplete()),
        "{got:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(120));
}

/// inotify watches inodes: a store directory removed (or moved away) and
/// recreated while a waiter waits must be watched again, or a handoff
/// written into the new directory is never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_directory_removed_and_recreated_is_watched_again() {
    for moved in [false, true] {
        for scope in [Scope::Top, Scope::Sub] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("store");
            let mut config = FsStoreConfig::new(&root);
            config.watch = WatchMode::Inotify;
            config.poll_interval = Duration::from_millis(5);
            let store = FsStore::open(config).unwrap();
            let k = key(scope, "back");
            // A file cut off, there before the waiter subscribes: it reads
            // it once and parks with no wake-up pending; from then on only
            // the watcher can make it read again.
            let bytes = handoff("back").to_json_pretty();
            agent_write(&store.path_of(&k), &bytes[..10]);
            let waiter = {
                let store = store.clone();
                let k = k.clone();
                // The deadline only bounds a failure.
                tokio::spawn(async move { store.wait(&k, deadline()).await })
            };
            until("the waiter read the cut-off file", || {
                store.incomplete_reads() == 1
            })
            .await;
            if moved {
                fs::rename(&root, dir.path().join("old")).unwrap();
            } else {
                fs::remove_dir_all(&root).unwrap();
            }
            fs::create_dir_all(root.join("sub")).unwrap();
            agent_write(&store.path_of(&k), &bytes);
            let h = landed(waiter.await.unwrap().unwrap());
            assert_eq!(h.run_id, k.run_id, "moved {moved}, {scope:?}");
            assert!(store.rearms() >= 1, "moved {moved}, {scope:?}");
            // And the new directory stays watched.
            let next = key(scope, "after");
            let waiter = {
                let store = store.clone();
                let k = next.clone();
                tokio::spawn(async move { store.wait(&k, deadline()).await })
            };
            until("waiter registered", || store.active_waiters() == 1).await;
            agent_write(&store.path_of(&next), &handoff("after").to_json_pretty());
            assert_eq!(landed(waiter.await.unwrap().unwrap()).run_id, next.run_id);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_landing_times_out_at_the_deadline() {
    for mode in [WatchMode::Inotify, WatchMode::Poll] {
        let (_dir, store) = store_with(mode);
        let start = Instant::now();
        let got = store
            .wait(&key(Scope::Top, "never"), start + Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(got, WaitOutcome::TimedOut);
        assert!(start.elapsed() >= Duration::from_secs(600));
        assert_eq!(store.active_waiters(), 0);
    }
}

// --------------------------------------------------- waiting: bad files

#[derive(Debug)]
enum Expected {
    Invalid(fn(&HandoffError) -> bool),
    Error(fn(&StoreError) -> bool),
}

/// Plants `plant` at the key's path (before waiting and while waiting) and
/// checks the outcome.
async fn check_bad_file(name: &str, plant: fn(&Path), expected: Expected) {
    for while_waiting in [false, true] {
        let (_dir, store) = store();
        let k = key(Scope::Top, "bad");
        let path = store.path_of(&k);
        let got = if while_waiting {
            let waiter = {
                let store = store.clone();
                let k = k.clone();
                tokio::spawn(async move { store.wait(&k, deadline()).await })
            };
            until("waiter registered", || store.active_waiters() == 1).await;
            plant(&path);
            waiter.await.unwrap()
        } else {
            plant(&path);
            store.wait(&k, deadline()).await
        };
        let ok = match (&got, &expected) {
            (Ok(WaitOutcome::Invalid(e)), Expected::Invalid(f)) => f(e),
            (Err(e), Expected::Error(f)) => f(e),
            _ => false,
        };
        assert!(ok, "{name} (while waiting: {while_waiting}): got {got:?}");
    }
}

#[tokio::test]
async fn bad_files_end_the_wait_at_once() {
    check_bad_file(
        "not JSON",
        |p| agent_write(p, b"this is not json\n"),
        Expected::Invalid(|e| matches!(e, HandoffError::Syntax { .. })),
    )
    .await;
    check_bad_file(
        "another run's handoff",
        |p| agent_write(p, &handoff("other").to_json_pretty()),
        Expected::Invalid(|e| matches!(e, HandoffError::Mismatch { field: "runId", .. })),
    )
    .await;
    check_bad_file(
        "5 MiB",
        |p| agent_write(p, &vec![b' '; 5 << 20]),
        Expected::Invalid(|e| matches!(e, HandoffError::TooLarge { size, .. } if *size == 5 << 20)),
    )
    .await;
    check_bad_file(
        "5 GiB sparse",
        |p| fs::File::create(p).unwrap().set_len(5 << 30).unwrap(),
        Expected::Invalid(|e| matches!(e, HandoffError::TooLarge { size, .. } if *size == 5 << 30)),
    )
    .await;
    check_bad_file(
        "symlink to /etc/passwd",
        |p| std::os::unix::fs::symlink("/etc/passwd", p).unwrap(),
        Expected::Error(|e| matches!(e, StoreError::Symlink { .. })),
    )
    .await;
    check_bad_file(
        "directory",
        |p| fs::create_dir(p).unwrap(),
        Expected::Error(|e| matches!(e, StoreError::Io { .. })),
    )
    .await;
}

#[tokio::test]
async fn get_reports_what_is_wrong_with_the_file() {
    let (_dir, store) = store();
    let k = key(Scope::Top, "g");
    let path = store.path_of(&k);
    assert_eq!(store.get(&k).await.unwrap(), None);

    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    let err = store.get(&k).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Symlink { path: p } if *p == path),
        "{err:?}"
    );
    fs::remove_file(&path).unwrap();

    fs::write(&path, vec![b' '; 5 << 20]).unwrap();
    let err = store.get(&k).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::TooLarge { size, cap, .. } if *size == 5 << 20 && *cap == 4 << 20),
        "{err:?}"
    );

    fs::write(&path, b"{\"schemaVersion\": ").unwrap();
    let err = store.get(&k).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { path: p, source } if *p == path && source.is_incomplete()),
        "{err:?}"
    );
    assert!(err.to_string().contains("g.json"), "{err}");

    agent_write(&path, &handoff("g").to_json_pretty());
    assert_eq!(store.get(&k).await.unwrap().unwrap().result, "result of g");
}

/// Validation and scopes are in `conformance.rs`; here: the bytes on disk
/// are what was put, and no temp file is left behind.
#[tokio::test]
async fn puts_write_atomically() {
    let (dir, store) = store();
    let h = handoff("p");
    store.put(Scope::Sub, &h, PutMode::Create).await.unwrap();
    store.put(Scope::Sub, &h, PutMode::Replace).await.unwrap();
    assert!(matches!(
        store.put(Scope::Sub, &h, PutMode::Create).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    store
        .put_raw(&key(Scope::Top, "raw"), b"garbage", PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        fs::read(store.path_of(&key(Scope::Top, "raw"))).unwrap(),
        b"garbage"
    );
    assert!(store.path_of(&key(Scope::Sub, "p")).is_file());
    assert_no_temp_files(dir.path());
}

fn assert_no_temp_files(root: &Path) {
    let hidden: Vec<_> = tree(root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(hidden.is_empty(), "temp files left: {hidden:?}");
}

#[tokio::test]
async fn quarantine_then_a_fresh_write_lands_on_the_same_subscription() {
    for mode in [WatchMode::Inotify, WatchMode::Poll] {
        let (_dir, store) = store_with(mode);
        let k = key(Scope::Top, "q");
        let path = store.path_of(&k);
        assert_eq!(store.quarantine(&k).await.unwrap(), None);

        let mut sub = store.subscribe(&k).await.unwrap();
        agent_write(&path, b"{ broken");
        agent_write(&path, b"not json");
        let got = sub.wait(deadline()).await.unwrap();
        assert!(matches!(got, WaitOutcome::Invalid(_)), "{mode:?}: {got:?}");

        let moved = store.quarantine(&k).await.unwrap().unwrap();
        assert_eq!(moved, format!("{}.rejected-1", path.display()));
        assert_eq!(fs::read(&moved).unwrap(), b"not json");
        assert!(!path.exists());

        // The re-asked agent answers while the same subscription waits.
        let writer = {
            let path = path.clone();
            let store = store.clone();
            tokio::spawn(async move {
                // Runs once the waiter below is parked (current-thread runtime).
                assert_eq!(store.active_waiters(), 1);
                agent_write(&path, &handoff("q").to_json_pretty());
            })
        };
        let h = landed(sub.wait(deadline()).await.unwrap());
        writer.await.unwrap();
        assert_eq!(h.result, "result of q");

        let again = store.quarantine(&k).await.unwrap().unwrap();
        assert!(again.ends_with("q.json.rejected-2"), "{again}");
        assert_eq!(
            store.list(Scope::Top).await.unwrap(),
            Vec::<RunId>::new(),
            "quarantined files are not handoffs"
        );
    }
}

#[tokio::test]
async fn a_symlink_is_quarantined_as_a_link() {
    let (_dir, store) = store();
    let k = key(Scope::Top, "s");
    std::os::unix::fs::symlink("/etc/passwd", store.path_of(&k)).unwrap();
    let moved = store.quarantine(&k).await.unwrap().unwrap();
    assert!(
        fs::symlink_metadata(&moved)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(Path::new("/etc/passwd").exists());
}

// ------------------------------------------------------------ many waiters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_waiters_share_one_watcher() {
    const N: usize = 2000;
    let (_dir, store) = store();
    let ids: Vec<String> = (0..N).map(|i| format!("orch-many-{i:05}")).collect();
    let mut tasks = Vec::with_capacity(N);
    for (i, run) in ids.iter().enumerate() {
        let store = store.clone();
        let scope = if i % 2 == 0 { Scope::Top } else { Scope::Sub };
        let k = key(scope, run);
        tasks.push(tokio::spawn(async move {
            let got = store.wait(&k, deadline()).await;
            (k, got)
        }));
    }
    until("all subscribed", || store.active_waiters() == N).await;
    // A few land through `put`, the rest as agents write them.
    for (i, run) in ids.iter().enumerate() {
        let scope = if i % 2 == 0 { Scope::Top } else { Scope::Sub };
        if i % 100 == 0 {
            store
                .put(scope, &handoff(run), PutMode::Create)
                .await
                .unwrap();
        } else {
            agent_write(
                &store.path_of(&key(scope, run)),
                &handoff(run).to_json_pretty(),
            );
        }
    }
    for task in tasks {
        let (k, got) = task.await.unwrap();
        let h = landed(got.unwrap());
        assert_eq!(h.run_id, k.run_id);
        assert_eq!(h.result, format!("result of {}", k.run_id));
    }
    assert_eq!(store.watchers_created(), 1);
    assert_eq!(store.active_waiters(), 0);
}

// (Hostile ids: `conformance.rs`, which checks the disk stays as it was.)

// -------------------------------------------------------------- listings

#[tokio::test]
async fn list_returns_valid_handoff_ids_sorted() {
    let (dir, store) = store();
    for run in ["c", "a", "b"] {
        store
            .put(Scope::Top, &handoff(run), PutMode::Create)
            .await
            .unwrap();
    }
    store
        .put(Scope::Sub, &handoff("s"), PutMode::Create)
        .await
        .unwrap();
    let root = dir.path();
    fs::write(root.join(".x.json.tmp-1-1"), b"{}").unwrap();
    fs::write(root.join("notes.txt"), b"").unwrap();
    fs::write(root.join("a.json.rejected-1"), b"").unwrap();
    fs::create_dir(root.join("dir.json")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link.json")).unwrap();
    let top: Vec<String> = store
        .list(Scope::Top)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(top, ["a", "b", "c"]);
    assert_eq!(store.list(Scope::Sub).await.unwrap(), [id("s")]);
    // The same ids in any order, from the file store and from the default.
    for unordered in [
        store.list_unordered(Scope::Top).await.unwrap(),
        Plain(store.clone())
            .list_unordered(Scope::Top)
            .await
            .unwrap(),
    ] {
        let mut unordered: Vec<String> = unordered.iter().map(ToString::to_string).collect();
        unordered.sort();
        assert_eq!(unordered, top);
    }
}

// ------------------------------------------------------- workflow records

/// The round trip itself is in `conformance.rs`; here what only the file
/// store has: pretty JSON files, no temp file left, a corrupt file named.
#[tokio::test]
async fn workflow_records_are_pretty_files_and_a_corrupt_one_is_named() {
    let (dir, store) = store();
    let run = id("wf-demo-20261123T224500Z-3f9a1c2b");
    let sum = serde_json::json!({"status": "complete", "steps": {"fetch": "ok"}});
    store
        .put_workflow_record(&run, &WorkflowRecord::Summary, &sum)
        .await
        .unwrap();
    let on_disk = fs::read_to_string(
        dir.path()
            .join("workflows")
            .join(run.as_str())
            .join("summary.json"),
    )
    .unwrap();
    assert!(
        on_disk.starts_with("{\n  \"status\""),
        "pretty JSON: {on_disk}"
    );
    assert_no_temp_files(dir.path());

    // A record that does not parse is Corrupt, with its path.
    let bad = dir
        .path()
        .join("workflows")
        .join(run.as_str())
        .join("broken.json");
    fs::write(&bad, b"{ nope").unwrap();
    let err = store
        .get_workflow_record(&run, &WorkflowRecord::Step("broken".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if *path == bad),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_symlinked_workflow_run_directory_is_not_followed() {
    let (dir, store) = store();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("summary.json"), b"{}").unwrap();
    let run = id("wf-evil");
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("workflows/wf-evil")).unwrap();
    let err = store
        .get_workflow_record(&run, &WorkflowRecord::Summary)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Symlink { .. }), "{err:?}");
    let err = store
        .put_workflow_record(&run, &WorkflowRecord::Summary, &serde_json::json!({"x": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Symlink { .. }), "{err:?}");
    assert_eq!(
        fs::read(elsewhere.path().join("summary.json")).unwrap(),
        b"{}"
    );
    assert_eq!(store.list_workflow_runs().await.unwrap(), []);
}

// ------------------------------------------------------------------ ledger

fn check_ledger_whole(events: &[LedgerEvent], writers: &[(String, usize)]) {
    for e in events {
        let detail = e.detail.as_deref().unwrap();
        let mut parts = detail.splitn(3, ':');
        let (w, n) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(e.run_id.as_ref().unwrap().as_str(), format!("orch-{w}-{n}"));
    }
    for (writer, count) in writers {
        let mine: BTreeSet<usize> = events
            .iter()
            .filter_map(|e| {
                let d = e.detail.as_deref()?;
                let (w, rest) = d.split_once(':')?;
                (w == writer).then(|| rest.split_once(':').unwrap().0.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..*count).collect(), "writer {writer}");
    }
}

/// Child side of the multi-process ledger test: appends when told to.
#[test]
fn ledger_child_appender() {
    let (Ok(root), Ok(name)) = (
        std::env::var("ORCH_TEST_LEDGER_ROOT"),
        std::env::var("ORCH_TEST_LEDGER_WRITER"),
    ) else {
        return;
    };
    let store = FsStore::open(FsStoreConfig::new(root)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for n in 0..1000 {
            store.append_ledger(&ledger_event(&name, n)).await.unwrap();
        }
    });
}

#[test]
fn ledger_appends_from_tasks_threads_and_processes_land_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let mut writers = Vec::new();

    // Processes: this test binary, running only the child test above.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|p| {
            let name = format!("proc{p}");
            writers.push((name.clone(), 1000));
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "store::ledger_child_appender",
                    "--test-threads=1",
                ])
                .env("ORCH_TEST_LEDGER_ROOT", &root)
                .env("ORCH_TEST_LEDGER_WRITER", &name)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();

    // Threads, each with its own store (own file descriptions).
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let name = format!("thread{t}");
            writers.push((name.clone(), 1000));
            let root = root.clone();
            std::thread::spawn(move || {
                let store = FsStore::open(FsStoreConfig::new(root)).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for n in 0..1000 {
                        store.append_ledger(&ledger_event(&name, n)).await.unwrap();
                    }
                });
            })
        })
        .collect();

    // Tasks sharing one store on a multi-threaded runtime.
    let store = FsStore::open(FsStoreConfig::new(&root)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..250 {
                        store
                            .append_ledger(&ledger_event(&format!("task{t}"), n))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    writers.extend((0..8).map(|t| (format!("task{t}"), 250)));

    for t in threads {
        t.join().unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let read = rt.block_on(store.read_ledger()).unwrap();
    assert_eq!(read.bad_lines, []);
    assert_eq!(read.events.len(), 3 * 1000 + 4 * 1000 + 8 * 250);
    check_ledger_whole(&read.events, &writers);
}

#[tokio::test]
async fn a_torn_last_ledger_line_is_reported_not_fatal() {
    let (dir, store) = store();
    assert_eq!(store.read_ledger().await.unwrap().events, []);
    for n in 0..3 {
        store.append_ledger(&ledger_event("w", n)).await.unwrap();
    }
    let ledger = dir.path().join("ledger.jsonl");
    let mut f = fs::OpenOptions::new().append(true).open(&ledger).unwrap();
    f.write_all(b"\n   \n{\"ts\":\"2026-11-23T22:47:10Z\",\"event\":\"hand")
        .unwrap();
    drop(f);
    let read = store.read_ledger().await.unwrap();
    assert_eq!(read.events.len(), 3);
    assert_eq!(read.events[0], ledger_event_ts(&read.events[0], "w", 0));
    assert_eq!(read.bad_lines.len(), 1);
    assert_eq!(read.bad_lines[0].0, 6, "{:?}", read.bad_lines);

    // The next append starts a line of its own: the torn line stays bad,
    // nothing after it is lost.
    store.append_ledger(&ledger_event("w", 3)).await.unwrap();
    store.append_ledger(&ledger_event("w", 4)).await.unwrap();
    let read = store.read_ledger().await.unwrap();
    assert_eq!(read.events.len(), 5);
    assert_eq!(read.bad_lines.len(), 1);
    assert_eq!(read.bad_lines[0].0, 6);
}

/// `ledger_event(w, n)` with the timestamp of `like` (they are stamped now).
fn ledger_event_ts(like: &LedgerEvent, w: &str, n: usize) -> LedgerEvent {
    let mut e = ledger_event(w, n);
    e.ts = like.ts.clone();
    e
}

#[tokio::test]
async fn a_symlinked_ledger_is_not_followed() {
    let (dir, store) = store();
    let target = dir.path().join("elsewhere.txt");
    fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("ledger.jsonl")).unwrap();
    let err = store
        .append_ledger(&ledger_event("w", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Symlink { .. }), "{err:?}");
    assert!(matches!(
        store.read_ledger().await,
        Err(StoreError::Symlink { .. })
    ));
    assert_eq!(fs::read(&target).unwrap(), b"");
}

#[tokio::test]
async fn the_raw_ledger_is_the_file_and_the_default_rebuilds_its_lines() {
    let (dir, store) = store();
    assert!(store.read_ledger_raw().await.unwrap().is_empty());
    for n in 0..3 {
        store.append_ledger(&ledger_event("w", n)).await.unwrap();
    }
    let ledger = dir.path().join("ledger.jsonl");
    let mut f = fs::OpenOptions::new().append(true).open(&ledger).unwrap();
    f.write_all(b"{\"ts\":\"2026-11-23T22:47:10Z\",\"event\":\"hand")
        .unwrap();
    drop(f);
    // The file store hands over the bytes as they are, torn tail included.
    assert_eq!(
        store.read_ledger_raw().await.unwrap(),
        fs::read(&ledger).unwrap()
    );

    // The default: the parsed events, one line each, the torn line left out.
    let plain = Plain(store.clone());
    let raw = plain.read_ledger_raw().await.unwrap();
    let events: Vec<LedgerEvent> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events, store.read_ledger().await.unwrap().events);
    assert!(raw.ends_with(b"\n"));

    fs::remove_file(&ledger).unwrap();
    std::os::unix::fs::symlink(dir.path().join("x"), &ledger).unwrap();
    assert!(matches!(
        store.read_ledger_raw().await,
        Err(StoreError::Symlink { .. })
    ));
}

/// A store that only has the required methods (so the defaults run).
struct Plain(FsStore);

#[async_trait::async_trait]
impl Handoffs for Plain {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn location(&self, key: &HandoffKey) -> String {
        self.0.location(key)
    }
    async fn put(&self, scope: Scope, handoff: &Handoff, mode: PutMode) -> Result<(), StoreError> {
        self.0.put(scope, handoff, mode).await
    }
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        self.0.put_raw(key, bytes, mode).await
    }
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError> {
        self.0.get(key).await
    }
    async fn subscribe(
        &self,
        key: &HandoffKey,
    ) -> Result<Box<dyn orch_handoff::Subscription>, StoreError> {
        self.0.subscribe(key).await
    }
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError> {
        self.0.quarantine(key).await
    }
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        self.0.list(scope).await
    }
}

#[async_trait::async_trait]
impl WorkflowRecords for Plain {
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.0.put_workflow_record(run, record, value).await
    }
    async fn get_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.0.get_workflow_record(run, record).await
    }
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.0.list_workflow_runs().await
    }
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError> {
        self.0.list_workflow_steps(run).await
    }
}

#[async_trait::async_trait]
impl Ledger for Plain {
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        self.0.append_ledger(event).await
    }
    async fn read_ledger(&self) -> Result<orch_handoff::LedgerRead, StoreError> {
        self.0.read_ledger().await
    }
}

/// The journal is the durable truth of a run's records and the per-record
/// files are views: a view lost or left behind by a crash (here: removed,
/// and rolled back to an older value) is rebuilt from the journal, and a
/// journal whose last append was cut off still gives every acknowledged
/// record.
/// A progress view is written but not journalled: the journal holds only
/// the durable records, so it grows with them, and a rebuild after a crash
/// puts back the last durable value.
#[tokio::test]
async fn a_progress_view_is_not_journalled_and_a_rebuild_puts_back_the_durable_one() {
    let (dir, store) = store();
    let run = id("wf-progress");
    let summary = WorkflowRecord::Summary;
    store
        .put_workflow_record(&run, &summary, &serde_json::json!({ "status": "running" }))
        .await
        .unwrap();
    let journal = dir
        .path()
        .join("workflows")
        .join(run.as_str())
        .join("journal.jsonl");
    let durable = fs::read(&journal).unwrap();
    for n in 0..20 {
        store
            .put_workflow_view(&run, &summary, &serde_json::json!({ "done": n }))
            .await
            .unwrap();
    }
    assert_eq!(
        fs::read(&journal).unwrap(),
        durable,
        "views are not journalled"
    );
    assert_eq!(
        store.get_workflow_record(&run, &summary).await.unwrap(),
        Some(serde_json::json!({ "done": 19 }))
    );
    // Views are capped like records.
    let big =
        serde_json::json!({ "x": "y".repeat(usize::try_from(store.max_record_bytes()).unwrap()) });
    assert!(matches!(
        store.put_workflow_view(&run, &summary, &big).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(store.rebuild_workflow_views(&run).await.unwrap(), 1);
    assert_eq!(
        store.get_workflow_record(&run, &summary).await.unwrap(),
        Some(serde_json::json!({ "status": "running" }))
    );
}

#[tokio::test]
async fn workflow_views_are_rebuilt_from_the_run_journal() {
    let (dir, store) = store();
    let run = id("wf-journal");
    let step = WorkflowRecord::Step("research".into());
    for n in 1..=3 {
        store
            .put_workflow_record(&run, &step, &serde_json::json!({ "n": n }))
            .await
            .unwrap();
    }
    store
        .put_workflow_record(
            &run,
            &WorkflowRecord::Summary,
            &serde_json::json!({ "s": 1 }),
        )
        .await
        .unwrap();
    let run_dir = dir.path().join("workflows").join(run.as_str());
    assert!(run_dir.join("journal.jsonl").is_file());
    assert_eq!(store.rebuild_workflow_views(&run).await.unwrap(), 0);

    // A crash before the views were written: one is missing, one is old.
    fs::remove_file(run_dir.join("summary.json")).unwrap();
    fs::write(run_dir.join("research.json"), b"{\n  \"n\": 1\n}\n").unwrap();
    // …and the last append was cut off mid-line (never acknowledged).
    let mut journal = fs::OpenOptions::new()
        .append(true)
        .open(run_dir.join("journal.jsonl"))
        .unwrap();
    journal
        .write_all(b"{\"file\":\"research.json\",\"value\":{\"n\":")
        .unwrap();
    drop(journal);

    assert_eq!(store.rebuild_workflow_views(&run).await.unwrap(), 2);
    assert_eq!(
        store.get_workflow_record(&run, &step).await.unwrap(),
        Some(serde_json::json!({ "n": 3 }))
    );
    assert_eq!(
        store
            .get_workflow_record(&run, &WorkflowRecord::Summary)
            .await
            .unwrap(),
        Some(serde_json::json!({ "s": 1 }))
    );
    assert_eq!(
        store.list_workflow_steps(&run).await.unwrap(),
        vec!["research"]
    );
    // A run with no journal (written before journals existed) has nothing
    // to rebuild.
    assert_eq!(
        store.rebuild_workflow_views(&id("wf-none")).await.unwrap(),
        0
    );
}

/// After a crash cut an append off, the next record is appended after the
/// last complete line, so the journal stays readable.
#[tokio::test]
async fn an_append_after_a_cut_off_line_keeps_the_journal_readable() {
    let (dir, store) = store();
    let run = id("wf-torn");
    let step = WorkflowRecord::Step("a".into());
    store
        .put_workflow_record(&run, &step, &serde_json::json!({ "n": 1 }))
        .await
        .unwrap();
    let journal = dir.path().join("workflows/wf-torn/journal.jsonl");
    let mut f = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(b"{\"file\":\"a.json\",\"val").unwrap();
    drop(f);
    // Another process (a resume) opens the journal afresh.
    let (_, other) = {
        let mut config = FsStoreConfig::new(dir.path());
        config.watch = WatchMode::Inotify;
        ((), FsStore::open(config).unwrap())
    };
    other
        .put_workflow_record(&run, &step, &serde_json::json!({ "n": 2 }))
        .await
        .unwrap();
    fs::remove_file(dir.path().join("workflows/wf-torn/a.json")).unwrap();
    assert_eq!(other.rebuild_workflow_views(&run).await.unwrap(), 1);
    assert_eq!(
        other.get_workflow_record(&run, &step).await.unwrap(),
        Some(serde_json::json!({ "n": 2 }))
    );
    let text = fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

/// A store checks for a run's directory once: a directory removed under a
/// live run makes the run's next write fail, not quietly start a new one.
#[tokio::test]
async fn a_run_directory_removed_under_a_live_run_fails_its_next_write() {
    let (dir, store) = store();
    let run = id("wf-removed");
    let step = WorkflowRecord::Step("a".into());
    store
        .put_workflow_record(&run, &step, &serde_json::json!({ "n": 1 }))
        .await
        .unwrap();
    assert_eq!(
        store.get_workflow_record(&run, &step).await.unwrap(),
        Some(serde_json::json!({ "n": 1 })),
        "the view is in place when the put returns"
    );
    fs::remove_dir_all(dir.path().join("workflows/wf-removed")).unwrap();
    assert!(
        store
            .put_workflow_record(&run, &step, &serde_json::json!({ "n": 2 }))
            .await
            .is_err()
    );
}
