//! The command line: clap arguments (`args`) and one module per command
//! group, each translating its arguments into an application operation
//! and rendering the result as text or `--json`.

pub(crate) mod acl;
pub(crate) mod args;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod delegate;
pub(crate) mod handoff;
pub(crate) mod metrics;
pub(crate) mod registry;
pub(crate) mod route;
pub(crate) mod skill;
pub(crate) mod workflow;

use tokio_util::sync::CancellationToken;

/// Runs `f` with a token that Ctrl-C cancels (the libraries record the
/// cancellation: a `cancelled` ledger line, a run stored as cancelled).
pub(crate) async fn with_ctrl_c<F, Fut, T>(f: F) -> T
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let cancel = CancellationToken::new();
    // Registered here, before `f` sends anything: a listener created inside
    // the spawned task would be registered only once that task first ran,
    // and a Ctrl-C right after the dispatch would kill orch with the
    // default action, leaving no `cancelled` line.
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let on_ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if let Some(mut interrupt) = interrupt
                && interrupt.recv().await.is_some()
            {
                cancel.cancel();
            }
        })
    };
    let result = f(cancel).await;
    on_ctrl_c.abort();
    result
}
