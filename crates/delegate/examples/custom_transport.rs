//! A [`Transport`] of your own: an agent that lives in this process and
//! answers inside `dispatch` by writing its handoff through the store, as
//! `orch handoff submit` would. It is busy on its first call, to show how a
//! retryable [`TransportError`] makes the delegator try again with the same
//! envelope (the same run id, so the same idempotency key).
//!
//! Run: `cargo run -p orch-delegate --example custom_transport`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{
    Confidence, FsStore, FsStoreConfig, Handoff, HandoffStore, PutMode, Status,
};
use orch_delegate::{
    Ack, AgentEntry, Completion, Delegator, DelegatorConfig, Envelope, Request, Transport,
    TransportError,
};
use tokio_util::sync::CancellationToken;

/// An agent run by the transport itself.
struct InProcessAgent {
    store: Arc<dyn HandoffStore>,
    calls: AtomicU32,
}

#[async_trait]
impl Transport for InProcessAgent {
    /// Required: the kind, as logs and the ledger name it.
    fn name(&self) -> &str {
        "in-process"
    }

    /// Optional (default `true`): this agent dies with the process, so a
    /// resumed run must send its task again rather than wait for it.
    fn outlives_sender(&self) -> bool {
        false
    }

    // `max_task_bytes` keeps its default (256 KiB, the OpenClaw body cap).

    /// Required: deliver the envelope and return once the agent took it.
    async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        println!(
            "dispatch #{call}: {} -> {}, attempt {}, key {}, {} bytes, handoff at {}",
            env.caller,
            env.agent,
            env.attempt,
            env.idempotency_key(),
            env.message.len(),
            env.handoff_location,
        );
        if env.agent != "webster" {
            // Not retryable: the delegation fails at once with this error.
            return Err(TransportError::Rejected {
                status: 404,
                message: format!("no in-process agent `{}`", env.agent),
            });
        }
        if call == 1 {
            // Retryable: the delegator waits (at least this long) and sends
            // the same envelope again.
            return Err(TransportError::Unavailable {
                message: "busy with another task".into(),
                retry_after: Some(Duration::from_millis(300)),
            });
        }
        // The answer goes where every answer goes: the store, at the
        // envelope's run id and scope. `Create` never replaces an answer.
        let mut handoff = Handoff::new(
            env.run_id.clone(),
            &env.agent,
            Status::Complete,
            "Ti-6Al-4V (annealed): yield strength about 880 MPa",
        );
        handoff.confidence = Some(Confidence::Medium);
        self.store
            .put(env.scope, &handoff, PutMode::Create)
            .await
            .map_err(|e| TransportError::Unavailable {
                message: format!("could not write the handoff: {e}"),
                retry_after: None,
            })?;
        // The agent's run has ended: the delegator looks in the store once
        // instead of waiting for its deadline.
        Ok(Ack {
            remote_run_id: Some(format!("in-process-{call}")),
            completion: Some(Completion {
                ok: true,
                detail: "answered in process".into(),
            }),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn HandoffStore> = Arc::new(FsStore::open(FsStoreConfig::new(dir.path()))?);
    let agent = Arc::new(InProcessAgent {
        store: Arc::clone(&store),
        calls: AtomicU32::new(0),
    });
    let delegator = Delegator::new(
        store,
        Policy::atomizer_default(),
        vec![AgentEntry::new("webster", agent)],
        DelegatorConfig::default(),
    )?;

    let request = Request::new("webster", "Find the yield strength of Ti-6Al-4V", "manager");
    let outcome = delegator
        .delegate(request, &CancellationToken::new())
        .await?;

    println!("status:     {}", outcome.status());
    println!("dispatches: {}", outcome.dispatches);
    if let Some(handoff) = &outcome.handoff {
        println!("result:     {}", handoff.result);
    }
    Ok(())
}
