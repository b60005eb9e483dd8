//! `NatsStore` specifics (the behaviour both stores share is in
//! `conformance.rs`): connection errors, credentials, sizes against the
//! server's and the bucket's limits, deletes, what other NATS tools see.
//! Every test starts its own `nats-server` on loopback (skipped with a
//! notice where it is not installed, except in CI).
#![allow(clippy::unwrap_used)]

use crate::common::{deadline, handoff, id, landed, until};
use async_nats::jetstream;
use futures_util::StreamExt;
use orch_handoff::prelude::*;
use orch_handoff::testing::{NatsServer, NatsServerOptions};
use orch_handoff::{
    HandoffError, HandoffKey, LedgerEvent, LedgerEventKind, NatsAuth, NatsStore, NatsStoreConfig,
    NatsToken, PutMode, RunId, Scope, StoreError, WaitOutcome, WorkflowRecord,
};

async fn connect(server: &NatsServer) -> NatsStore {
    NatsStore::connect(NatsStoreConfig::new(server.url()))
        .await
        .unwrap()
}

async fn raw_bucket(server: &NatsServer, bucket: &str) -> jetstream::kv::Store {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(client).get_key_value(bucket).await.unwrap()
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_credentials() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = NatsStoreConfig::new(format!("nats://127.0.0.1:{port}"));
    config.auth = NatsAuth::Token(NatsToken::new("hunter2-token"));
    let err = NatsStore::connect(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(text.contains(&format!("nats://127.0.0.1:{port}")), "{text}");
    assert!(text.contains("is nats-server running?"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let err = NatsStore::connect(NatsStoreConfig::new(format!(
        "nats://someone:secret-pw@127.0.0.1:{port}"
    )))
    .await
    .unwrap_err();
    assert!(!err.to_string().contains("secret-pw"), "{err}");

    let mut bad = NatsStoreConfig::new("nats://127.0.0.1:4222");
    bad.bucket = "my.bucket".into();
    assert!(matches!(
        NatsStore::connect(bad).await,
        Err(StoreError::Config { .. })
    ));
}

#[tokio::test]
async fn a_server_without_jetstream_says_how_to_enable_it() {
    let options = NatsServerOptions {
        jetstream: false,
        ..NatsServerOptions::default()
    };
    let Some(server) = NatsServer::start_with(&options) else {
        return;
    };
    let err = NatsStore::connect(NatsStoreConfig::new(server.url()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(text.contains("JetStream is not enabled"), "{text}");
    assert!(text.contains("-js"), "{text}");
}

#[tokio::test]
async fn tokens_open_the_store_and_never_show() {
    let token = "s3cret-Token-value";
    let options = NatsServerOptions {
        token: Some(token.into()),
        ..NatsServerOptions::default()
    };
    let Some(server) = NatsServer::start_with(&options) else {
        return;
    };
    let err = NatsStore::connect(NatsStoreConfig::new(server.url()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");

    let mut wrong = NatsStoreConfig::new(server.url());
    wrong.auth = NatsAuth::Token(NatsToken::new("wrong-Token-value"));
    let err = NatsStore::connect(wrong).await.unwrap_err();
    assert!(!err.to_string().contains("wrong-Token"), "{err}");

    let mut right = NatsStoreConfig::new(server.url());
    right.auth = NatsAuth::Token(NatsToken::new(token));
    assert!(!format!("{right:?}").contains(token));
    let store = NatsStore::connect(right).await.unwrap();
    store
        .put(Scope::Top, &handoff("t"), PutMode::Create)
        .await
        .unwrap();
    let k = HandoffKey::top(id("t"));
    assert_eq!(
        landed(store.wait(&k, deadline()).await.unwrap()).run_id,
        k.run_id
    );
    assert!(!format!("{store:?} {}", store.describe()).contains(token));
}

#[tokio::test]
async fn a_value_over_the_readers_cap_is_refused_without_parsing() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    // The first store creates the bucket with its own, larger cap.
    let mut big = NatsStoreConfig::new(server.url());
    big.bucket = "big".into();
    big.max_handoff_bytes = 6 << 20;
    let writer = NatsStore::connect(big).await.unwrap();
    let mut small = NatsStoreConfig::new(server.url());
    small.bucket = "big".into();
    let reader = NatsStore::connect(small).await.unwrap();

    let k = HandoffKey::top(id("huge"));
    let waiter = {
        let reader = reader.clone();
        let k = k.clone();
        tokio::spawn(async move { reader.wait(&k, deadline()).await })
    };
    until("waiter registered", || reader.active_waiters() == 1).await;
    writer
        .put_raw(&k, &vec![b' '; 5 << 20], PutMode::Create)
        .await
        .unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(
        matches!(got, WaitOutcome::Invalid(HandoffError::TooLarge { size, cap }) if size == 5 << 20 && cap == 4 << 20),
        "{got:?}"
    );
    let err = reader.get(&k).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    // The reader refuses to write it at all.
    let err = reader
        .put_raw(&k, &vec![b' '; 5 << 20], PutMode::Replace)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn a_value_over_the_servers_max_payload_says_what_to_change() {
    let options = NatsServerOptions {
        max_payload: 1 << 20,
        ..NatsServerOptions::default()
    };
    let Some(server) = NatsServer::start_with(&options) else {
        return;
    };
    let store = connect(&server).await;
    assert_eq!(store.server_max_payload(), 1 << 20);
    let err = store
        .put_raw(
            &HandoffKey::top(id("x")),
            &vec![b' '; 2 << 20],
            PutMode::Create,
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Remote { .. }), "{err:?}");
    assert!(text.contains("max_payload"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_purges_never_wake_a_waiter_with_garbage() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let store = connect(&server).await;
    let raw = raw_bucket(&server, store.bucket()).await;
    let k = HandoffKey::sub(id("wf-1.fetch.1"));
    let kv_key = store.key_of(&k);
    assert_eq!(kv_key, "s/wf-1=fetch=1");
    let waiter = {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move { store.wait(&k, deadline()).await })
    };
    until("waiter registered", || store.active_waiters() == 1).await;
    // The waiter registers before its subscription starts the watch; the
    // watch sees only what is written after it exists.
    until("watch started", || store.watchers_created() == 1).await;
    // Cut off: the waiter keeps waiting for the rest.
    raw.put(&kv_key, "{\"schemaVersion\": ".into())
        .await
        .unwrap();
    for step in ["delete", "purge"] {
        let before = store.last_wake_at();
        match step {
            "delete" => raw.delete(&kv_key).await.unwrap(),
            _ => raw.purge(&kv_key).await.unwrap(),
        }
        until("the watch delivered it", || store.last_wake_at() != before).await;
        assert!(!waiter.is_finished(), "woken by a {step}");
    }
    raw.put(&kv_key, handoff("wf-1.fetch.1").to_json_pretty().into())
        .await
        .unwrap();
    let h = landed(waiter.await.unwrap().unwrap());
    assert_eq!(h.run_id, k.run_id);
    assert_eq!(store.watchers_created(), 1);
}

#[tokio::test]
async fn nats_tools_see_plain_keys_a_ledger_stream_and_report_foreign_lines() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let store = connect(&server).await;
    store
        .put(Scope::Top, &handoff("a.b"), PutMode::Create)
        .await
        .unwrap();
    store
        .put(Scope::Sub, &handoff("c"), PutMode::Create)
        .await
        .unwrap();
    let run = id("wf-x");
    store
        .put_workflow_record(
            &run,
            &WorkflowRecord::Step("s.1".into()),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    store
        .put_workflow_record(&run, &WorkflowRecord::Summary, &serde_json::json!({}))
        .await
        .unwrap();
    let mut keys = Vec::new();
    for bucket in [store.bucket(), store.workflow_bucket()] {
        let mut listed = raw_bucket(&server, bucket).await.keys().await.unwrap();
        while let Some(k) = listed.next().await {
            keys.push(format!("{bucket}: {}", k.unwrap()));
        }
    }
    keys.sort();
    assert_eq!(
        keys,
        [
            "orch-workflows: w/wf-x/step/s=1",
            "orch-workflows: w/wf-x/summary",
            "orch: h/a=b",
            "orch: s/c",
        ]
    );
    assert_eq!(
        store.location(&HandoffKey::top(id("a.b"))),
        format!("{}/orch/h/a=b", server.url())
    );

    // The ledger: ours, then a foreign publisher's line, then ours.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    store
        .append_ledger(&LedgerEvent::now(LedgerEventKind::Dispatched))
        .await
        .unwrap();
    js.publish(store.ledger_subject().to_owned(), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    store
        .append_ledger(&LedgerEvent::now(LedgerEventKind::Acked))
        .await
        .unwrap();
    let read = store.read_ledger().await.unwrap();
    assert_eq!(read.events.len(), 2);
    assert_eq!(read.bad_lines.len(), 1);
    assert_eq!(read.bad_lines[0].0, 2, "{:?}", read.bad_lines);
    let raw = String::from_utf8(store.read_ledger_raw().await.unwrap()).unwrap();
    assert_eq!(raw.lines().nth(1), Some("not json"));
    assert_eq!(raw.lines().count(), 3);
}

#[tokio::test]
async fn stores_on_other_buckets_of_one_server_are_apart() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let a = connect(&server).await;
    let mut config = NatsStoreConfig::new(server.url());
    config.bucket = "team-b".into();
    let b = NatsStore::connect(config).await.unwrap();
    a.put(Scope::Top, &handoff("r"), PutMode::Create)
        .await
        .unwrap();
    a.append_ledger(&LedgerEvent::now(LedgerEventKind::Acked))
        .await
        .unwrap();
    assert_eq!(b.get(&HandoffKey::top(id("r"))).await.unwrap(), None);
    assert_eq!(b.list(Scope::Top).await.unwrap(), Vec::<RunId>::new());
    assert!(b.read_ledger().await.unwrap().events.is_empty());
    assert_eq!(a.list(Scope::Top).await.unwrap(), [id("r")]);
}
