//! Unreadable input is counted and listed, never fatal; an empty store
//! gives an empty, well-formed report in every format.

use std::fs;

use orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_metrics::{Problems, TextOptions, render_json, render_prometheus, render_text};

use crate::{options, rescan, scan, stable};

#[test]
fn corrupt_partial_and_foreign_files_are_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    FsStore::open(FsStoreConfig::new(root)).unwrap();
    let good = r#"{"schemaVersion":"1.0","runId":"good","agent":"webster","status":"complete","result":"ok","confidence":"high"}"#;
    let files: &[(&str, &[u8])] = &[
        ("good.json", good.as_bytes()),
        ("not-json.json", b"hello, world"),
        ("empty.json", b""),
        (
            "cut.json",
            br#"{"schemaVersion":"1.0","runId":"cut","agent":"web"#,
        ),
        ("foreign.json", br#"{"name": "package", "version": 3}"#),
        (
            "schema2.json",
            br#"{"schemaVersion":"2.0","runId":"schema2","agent":"a","status":"complete","result":"x"}"#,
        ),
        (
            "wrong-id.json",
            br#"{"schemaVersion":"1.0","runId":"other","agent":"a","status":"complete","result":"x"}"#,
        ),
        ("bom.json", b"\xef\xbb\xbf{}"),
        ("latin1.json", b"{\"result\": \"caf\xe9\"}"),
        ("sub/big.json", &[b' '; 3000]),
        ("workflows/wf-a/summary.json", b"[1, 2, 3]"),
        ("workflows/wf-b/summary.json", b"{\"workflow\": "),
        // A summary that reads (in orch-workflow's shape) whose step
        // record does not.
        (
            "workflows/wf-c/summary.json",
            br#"{"schema":1,"runId":"wf-c","workflow":"w","origin":"w.yaml","source":"","status":"failed","caller":"manager","inputs":{},"steps":{"s":{"status":"failed","agent":"webster","attempts":2,"durationMs":null,"reason":null}},"started":"2026-11-20T10:00:00Z","finished":null,"output":null}"#,
        ),
        ("workflows/wf-c/s.json", b"{\"attempts\": 7}"),
    ];
    for (path, bytes) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    fs::create_dir(root.join("workflows/wf-d")).unwrap();
    // Not listed by the store at all: a symlink, a directory, hidden and
    // temp files, names that are not run ids.
    std::os::unix::fs::symlink("/etc/passwd", root.join("link.json")).unwrap();
    fs::create_dir(root.join("dir.json")).unwrap();
    fs::write(root.join(".hidden.json"), b"{").unwrap();
    fs::write(root.join("bad name.json"), b"{").unwrap();
    // A ledger with a bad line in the middle, a non-UTF-8 line and a torn end.
    fs::write(
        root.join("ledger.jsonl"),
        b"{\"ts\":\"2026-11-20T10:00:00Z\",\"event\":\"dispatched\",\"runId\":\"good\",\"agent\":\"webster\",\"caller\":\"manager\"}\n\
          {\"ts\":\"2026-11-20T10:00:01Z\"}\n\
          \xff\xfe\n\
          {\"ts\":\"2026-11-20T10:00:02Z\",\"event\":\"handoff\",\"runId\":\"good\",\"agent\":\"webster\",\"caller\":\"manager\",\"status\":\"complete\",\"confidence\":\"high\",\"latencyMs\":1200}\n\
          {\"ts\":\"2026-11-20T10:00:03Z\",\"event\":\"handoff\",\"runId\":\"torn\",\"ag",
    )
    .unwrap();

    let small_cap = |mode| {
        let mut cfg = FsStoreConfig::new(root);
        cfg.max_handoff_bytes = 2048;
        let store: std::sync::Arc<dyn HandoffStore> =
            std::sync::Arc::new(FsStore::open(cfg).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        stable(rt.block_on(orch_metrics::scan(store, &mode)).unwrap())
    };
    let report = small_cap(options());
    assert_eq!(report.totals.delegations, 1);
    assert_eq!(report.totals.outcomes.complete, 1);
    assert_eq!(report.agents[0].latency.max_ms, Some(1200));
    insta::assert_json_snapshot!("corrupt_problems", report.problems);
    let text = render_text(&report, &TextOptions::default());
    insta::assert_snapshot!("corrupt_text", text);
    // Rescan lists the same problems and counts the same.
    let full = small_cap(rescan());
    assert_eq!(full.problems, report.problems);
    assert_eq!(full.totals, report.totals);
}

#[test]
fn a_symlinked_ledger_is_a_problem_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("ledger.jsonl")).unwrap();
    let report = scan(dir.path(), &options());
    assert_eq!(report.problems.unreadable_files, 1);
    assert_eq!(report.problems.files[0].path, "ledger.jsonl");
    assert_eq!(
        report.problems.files[0].reason,
        "a symlink (never followed)"
    );
    assert_eq!(report.totals.delegations, 0);
}

#[test]
fn long_problem_lists_are_cut_but_counted() {
    let dir = tempfile::tempdir().unwrap();
    FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
    let mut ledger = Vec::new();
    for i in 0..150 {
        fs::write(dir.path().join(format!("bad-{i:03}.json")), b"{").unwrap();
        ledger.extend_from_slice(b"nope\n");
    }
    fs::write(dir.path().join("ledger.jsonl"), ledger).unwrap();
    let p = scan(dir.path(), &options()).problems;
    assert_eq!(p.unreadable_files, 150);
    assert_eq!(p.files.len(), 100);
    assert_eq!(p.files[0].path, "bad-000.json");
    assert_eq!(p.ledger_bad_lines, 150);
    assert_eq!(p.ledger_lines.len(), 100);
    assert_eq!(p.ledger_lines[99].line, 100);
}

#[test]
fn an_empty_store_gives_an_empty_well_formed_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = stable(scan(dir.path(), &options()));
    assert_eq!(
        report.totals,
        orch_metrics::Totals {
            latency: orch_metrics::Distribution::of(&mut [], orch_metrics::LATENCY_BUCKETS_MS),
            ..Default::default()
        }
    );
    assert!(report.agents.is_empty() && report.callers.is_empty() && report.workflows.is_empty());
    assert_eq!(report.problems, Problems::default());
    assert_eq!(stable(scan(dir.path(), &rescan())).totals, report.totals);

    let json = render_json(&report);
    let back: orch_metrics::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let prom = render_prometheus(&report);
    openmetrics_parser::prometheus::parse_prometheus(&prom)
        .unwrap_or_else(|e| panic!("{e:?}\n{prom}"));
    crate::fixture::promtool_check(&prom);
    let text = render_text(&report, &TextOptions::default());
    insta::assert_snapshot!("empty_text", text);
    insta::assert_snapshot!("empty_json", json);
    insta::assert_snapshot!("empty_prom", prom);
}

/// Without a tokio runtime the scan runs inline and drives the store's
/// futures by parking its thread.
#[test]
fn scans_without_a_runtime() {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let dir = crate::fixture();
    let store = crate::open(dir.path());
    let options = options();
    let mut future = std::pin::pin!(orch_metrics::scan(store, &options));
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let report = loop {
        if let Poll::Ready(r) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            break r.unwrap();
        }
        std::thread::park();
    };
    assert_eq!(stable(report), stable(scan(dir.path(), &options)));
}
