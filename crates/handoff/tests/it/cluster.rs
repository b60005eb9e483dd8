//! `NatsStore` on a 3-node JetStream cluster (`testing::NatsCluster`):
//! losing the leader of the bucket's stream (`kill -9`) while operations
//! and waiters are in flight costs time, never an error, a lost or a
//! duplicated write, and a restarted node rejoins with orch still running.
#![allow(clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::time::Duration;

use async_nats::jetstream;
use orch_handoff::testing::NatsCluster;
use orch_handoff::{
    HandoffKey, LedgerEvent, LedgerEventKind, NatsStore, NatsStoreConfig, PutMode, Scope,
    WaitOutcome,
};

use crate::common::{handoff, id};

async fn connect(urls: String) -> NatsStore {
    let mut config = NatsStoreConfig::new(urls);
    config.replicas = 3;
    NatsStore::connect(config).await.unwrap()
}

/// The node leading `stream`, asked of a node that is up.
async fn stream_leader(url: &str, stream: &str) -> String {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap();
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap()
}

/// A node other than `down`.
fn other(cluster: &NatsCluster, down: &str) -> String {
    cluster.names().into_iter().find(|n| n != down).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_sees_a_handoff_that_lands_while_the_leader_is_down() {
    let Some(mut cluster) = NatsCluster::start(3) else {
        return;
    };
    let waiter_side = connect(cluster.urls()).await;
    let leader = stream_leader(&cluster.url("n1"), "KV_orch").await;
    let survivor = other(&cluster, &leader);
    // The writer talks to one surviving node only, as an agent on another
    // host whose config names one.
    let writer = connect(cluster.url(&survivor)).await;

    let key = HandoffKey::top(id("failover-1"));
    let mut sub = waiter_side.subscribe(&key).await.unwrap();
    cluster.kill(&leader);
    writer
        .put(Scope::Top, &handoff("failover-1"), PutMode::Create)
        .await
        .unwrap();
    // Bounded by the wait's own deadline: a blind watch would time out.
    let outcome = sub
        .wait(tokio::time::Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();
    assert!(matches!(outcome, WaitOutcome::Landed(_)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ride_out_a_leader_kill_and_a_restart_without_loss_or_duplicates() {
    let Some(mut cluster) = NatsCluster::start(3) else {
        return;
    };
    let store = connect(cluster.urls()).await;
    let leader = stream_leader(&cluster.url("n1"), "ORCH_LEDGER_orch").await;
    let n = 60;
    for i in 0..n {
        if i == 20 {
            cluster.kill(&leader);
        }
        if i == 40 {
            cluster.restart(&leader);
        }
        let run = format!("w-{i}");
        let mut event = LedgerEvent::now(LedgerEventKind::Dispatched);
        event.run_id = Some(id(&run));
        store.append_ledger(&event).await.unwrap();
        store
            .put(Scope::Top, &handoff(&run), PutMode::Create)
            .await
            .unwrap();
        let got = store.get(&HandoffKey::top(id(&run))).await.unwrap();
        assert_eq!(got.map(|h| h.run_id), Some(id(&run)));
    }
    let read = store.read_ledger().await.unwrap();
    let mut runs: Vec<String> = read
        .events
        .iter()
        .filter_map(|e| e.run_id.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(runs.len(), n, "every append stored exactly once");
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), n);
    assert_eq!(store.list(Scope::Top).await.unwrap().len(), n);
}
