//! Metrics: the report over every delegation and workflow run in the store.

use orch_metrics::{Mode, Options, Report, Since};

use crate::app::config::StoreKind;
use crate::app::error::AppError;
use crate::app::wiring::Setup;

/// Which part of the store to report on, and how to read it.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetricsRequest {
    /// Only delegations dispatched since then.
    pub(crate) since: Option<Since>,
    /// Only these agents (empty: all).
    pub(crate) agents: Vec<String>,
    /// Only these workflows (empty: all).
    pub(crate) workflows: Vec<String>,
    /// Read every handoff file instead of trusting the ledger.
    pub(crate) rescan: bool,
    /// Read the whole ledger and list the store, without the index.
    pub(crate) no_index: bool,
}

/// Where a file store keeps the metrics index: beside the ledger, in a
/// directory no run id can name (ids never start with a dot).
pub(crate) const INDEX_FILE: &str = ".index/metrics-v1.json";

/// Scans the store into a report, "now" being this second.
pub(crate) async fn report(setup: &Setup, request: MetricsRequest) -> Result<Report, AppError> {
    let store = setup.open_store().await?;
    // Whole seconds: the report says "until 2026-11-25T14:18:17Z".
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let options = Options {
        mode: if request.rescan {
            Mode::Rescan
        } else {
            Mode::Ledger
        },
        since: request.since.map(|s| s.resolve(now)),
        agents: request.agents,
        workflows: request.workflows,
        now,
        threads: 0,
        // A file store keeps the index beside its ledger; a NATS store's
        // ledger is a stream, read whole.
        index: (!request.no_index && setup.config.store.kind == StoreKind::Fs)
            .then(|| setup.config.store.fs.root.join(INDEX_FILE)),
    };
    orch_metrics::scan(store, &options)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))
}
