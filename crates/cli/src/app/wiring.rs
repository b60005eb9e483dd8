//! Composition: configuration + flags → store, policy, transports, delegator.
//!
//! The only place that knows every concrete type. The store is chosen here
//! (`store.kind`: the file store, or the NATS store behind the cargo
//! feature `nats`) and handed on as `Arc<dyn HandoffStore>`, so commands
//! work the same on either.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use orch_delegate::transport::exec::ExecTransport;
use orch_delegate::transport::openclaw::OpenClawTransport;
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, Transport};
use orch_handoff::{FsStore, HandoffStore, WatchMode};
use orch_registry::{AgentInfo, Registry, RegistryFile};

use crate::app::config::{self, Config, Source, StoreKind, TransportRef, TransportSpec};
use crate::app::descriptor;
use crate::app::error::AppError;

/// The opened handoff store, whichever kind the config names.
pub(crate) type Store = Arc<dyn HandoffStore>;

/// Where a command finds its configuration and store, as its front end
/// was told (the CLI's global flags and their variables).
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// The config file (else the lookup order of [`config::load`]).
    pub(crate) config: Option<PathBuf>,
    /// A store descriptor (`ORCH_STORE`): wins over the config's `store`.
    pub(crate) store: Option<String>,
    /// A file store's directory: wins over both.
    pub(crate) handoff_dir: Option<PathBuf>,
    /// How the file store notices handoffs.
    pub(crate) watch: Option<WatchMode>,
}

/// The effective configuration, settings applied.
pub(crate) struct Setup {
    pub(crate) config: Config,
    pub(crate) source: Source,
}

impl Setup {
    /// Loads the config and applies the settings. A `handoff_dir` names a
    /// file store: it wins over `store.kind: nats`.
    pub(crate) fn load(global: &Settings) -> Result<Self, AppError> {
        let (mut config, source) = config::load(global.config.as_deref())
            .map_err(|e| AppError::Usage(format!("config {e}")))?;
        // `--store` / `ORCH_STORE` (what orch gives its agents) names the
        // store whatever the config file says.
        if let Some(descriptor) = global.store.as_deref().filter(|d| !d.trim().is_empty()) {
            config.store = descriptor::parse(descriptor, &config.store)
                .map_err(|e| AppError::Usage(format!("--store / ORCH_STORE: {e}")))?;
        }
        if let Some(dir) = &global.handoff_dir {
            config.store.kind = StoreKind::Fs;
            config.store.fs.root = dir.clone();
        }
        if let Some(watch) = global.watch {
            config.store.fs.watch = watch;
        }
        Ok(Self { config, source })
    }

    /// Opens the store the config names: the file store, or (`kind: nats`)
    /// the NATS store, connecting to the server. Every command that reads or
    /// writes handoffs, workflow records or the ledger comes through here.
    pub(crate) async fn open_store(&self) -> Result<Store, AppError> {
        match self.config.store.kind {
            StoreKind::Fs => Ok(Arc::new(self.open_fs_store()?)),
            StoreKind::Nats => self.open_nats_store().await,
        }
    }

    fn open_fs_store(&self) -> Result<FsStore, AppError> {
        let fs = &self.config.store.fs;
        FsStore::open(fs.clone()).map_err(|e| {
            AppError::Internal(format!(
                "cannot open the handoff store at {}: {e}",
                fs.root.display()
            ))
        })
    }

    /// Connects with the settings as the config gives them; the store
    /// reads the token the config names.
    #[cfg(feature = "nats")]
    async fn open_nats_store(&self) -> Result<Store, AppError> {
        use orch_handoff::{NatsStore, StoreError};
        match NatsStore::connect(self.config.store.nats.clone()).await {
            Ok(s) => Ok(Arc::new(s)),
            Err(e @ StoreError::Config { .. }) => {
                Err(AppError::Usage(format!("config: store: {e}")))
            }
            Err(e) => Err(AppError::Internal(format!(
                "cannot open the handoff store: {e}"
            ))),
        }
    }

    #[cfg(not(feature = "nats"))]
    async fn open_nats_store(&self) -> Result<Store, AppError> {
        Err(AppError::Usage(
            "config: `store.kind: nats` needs an orch built with the cargo feature `nats`".into(),
        ))
    }

    /// What an agent adds to `orch handoff submit` to reach this store: the
    /// file store's directory, or for NATS the store's descriptor (servers,
    /// bucket, the name of the credential; nothing that exists only on the
    /// caller's host).
    fn submit_args(&self) -> Vec<String> {
        match self.config.store.kind {
            StoreKind::Fs => {
                let path = &self.config.store.fs.root;
                let root = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                vec!["--handoff-dir".into(), root.display().to_string()]
            }
            StoreKind::Nats => vec!["--store".into(), self.store_descriptor()],
        }
    }

    /// The store's descriptor (`ORCH_STORE`), for agents.
    pub(crate) fn store_descriptor(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        descriptor::of(&self.config.store, &cwd)
    }

    /// The agents: from the `registry` file, the inline `agents`, or the
    /// embedded registry of the eight Atomizer HQ agents.
    pub(crate) fn registry(&self) -> Result<Registry, AppError> {
        let c = &self.config;
        if let Some(path) = &c.registry {
            return Registry::load(path).map_err(|e| AppError::Usage(e.to_string()));
        }
        if c.agents.is_empty() {
            return Ok(Registry::embedded_default());
        }
        let agents = c
            .agents
            .iter()
            .map(|(id, a)| {
                let transport = serde_json::to_value(&a.transport)
                    .map_err(|e| AppError::Internal(format!("agent {id}: transport spec: {e}")))?;
                Ok(AgentInfo {
                    id: id.clone(),
                    name: a.name.clone().unwrap_or_else(|| id.clone()),
                    // A registry requires a role; an agent written inline
                    // without one is described by its id (which routing
                    // then matches when a task names the agent).
                    role: if a.role.trim().is_empty() {
                        id.clone()
                    } else {
                        a.role.clone()
                    },
                    description: a.description.clone(),
                    capabilities: a.capabilities.clone(),
                    channels: a.channels.clone(),
                    transport,
                    validator: a.validator.clone(),
                    max_concurrent: a.max_concurrent,
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let file = RegistryFile {
            schema: None,
            agents,
            channels: c.channels.clone(),
        };
        let origin = match &self.source {
            Source::File { path, .. } => path.display().to_string(),
            Source::Embedded => "<embedded default>".to_owned(),
        };
        Registry::from_file(file, &origin).map_err(|e| AppError::Usage(e.to_string()))
    }

    /// Builds the delegator over `store` for the agents of `registry`: one
    /// transport per agent (a sim fleet is shared), the configured policy
    /// and limits. Exec agents inherit none of the variables orch reads a
    /// secret from ([`Config::secret_env_vars`], plus the `token_env`s of a
    /// registry file's inline transports), except those their transport's
    /// `env_passthrough` names.
    pub(crate) fn delegator(
        &self,
        store: Store,
        registry: &Registry,
    ) -> Result<Delegator, AppError> {
        let c = &self.config;
        let mut sims: std::collections::BTreeMap<String, Arc<dyn Transport>> = Default::default();
        let mut agents = Vec::new();
        // Agents written inline in orch.yaml keep the transport the config
        // parsed; a registry file's transport is opaque JSON to the
        // registry, read here once.
        let refs = registry
            .agents()
            .iter()
            .map(|info| match c.agents.get(&info.id) {
                Some(agent) => Ok((info, Cow::Borrowed(&agent.transport))),
                None => serde_json::from_value::<TransportRef>(info.transport.clone())
                    .map(|r| (info, Cow::Owned(r)))
                    .map_err(|e| AppError::Usage(format!("agent {}: transport: {e}", info.id))),
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let mut secrets = c.secret_env_vars();
        let store_descriptor = self.store_descriptor();
        for (_, r) in &refs {
            if let TransportRef::Inline(spec) = r.as_ref() {
                secrets.extend(spec.token_env().map(str::to_owned));
            }
        }
        let default_sim = TransportSpec::Sim(SimConfig::default());
        for (info, transport_ref) in &refs {
            let id = &info.id;
            let (name, transport_spec) = match transport_ref.as_ref() {
                TransportRef::Named(name) => match c.transports.get(name) {
                    Some(t) => (Some(name.as_str()), t),
                    // The embedded registry's agents use `sim`; a config that
                    // does not define it gets the default sim fleet.
                    None if name == "sim" => (Some("sim"), &default_sim),
                    None => {
                        return Err(AppError::Usage(format!(
                            "config: agent {id} uses unknown transport {name:?}"
                        )));
                    }
                },
                TransportRef::Inline(t) => (None, t),
            };
            let transport: Arc<dyn Transport> = match transport_spec {
                TransportSpec::Sim(sim) => {
                    let key = name.map_or_else(|| format!("inline:{id}"), str::to_owned);
                    if let Some(t) = sims.get(&key) {
                        t.clone()
                    } else {
                        let t: Arc<dyn Transport> =
                            Arc::new(SimTransport::new(store.clone(), sim.clone()));
                        sims.insert(key, t.clone());
                        t
                    }
                }
                TransportSpec::Exec(exec) => {
                    let mut cfg = exec.clone();
                    // The agent's `orch handoff submit` finds this store
                    // through ORCH_STORE, on any host (the config's own
                    // `env` may set another).
                    cfg.env
                        .entry("ORCH_STORE".to_owned())
                        .or_insert_with(|| store_descriptor.clone());
                    // Every secret variable; the transport keeps those its
                    // `env_passthrough` names.
                    cfg.remove_env = secrets.clone();
                    Arc::new(
                        ExecTransport::new(cfg)
                            .map_err(|e| AppError::Usage(format!("config: agent {id}: {e}")))?,
                    )
                }
                // A missing token only matters to delegations that use this
                // agent: it becomes a transport that refuses with a config
                // error, so agents on other transports keep working.
                TransportSpec::Openclaw(oc) => {
                    let mut cfg = oc.clone();
                    if cfg.agent_id.is_none() {
                        cfg.agent_id = c.agents.get(id).and_then(|a| a.remote_id.clone());
                    }
                    match OpenClawTransport::new(cfg) {
                        Ok(t) => Arc::new(t),
                        Err(error) => Arc::new(Misconfigured {
                            error,
                            max_task_bytes: oc.max_task_bytes,
                        }),
                    }
                }
            };
            agents.push(AgentEntry {
                id: id.clone(),
                transport,
                validator: info.validator.clone(),
                max_concurrent: info.max_concurrent,
            });
        }
        let d = &c.delegation;
        let config = DelegatorConfig {
            max_depth: d.max_depth,
            reasks: d.reasks,
            retry: d.retry.clone(),
            completion_grace: d.completion_grace.0,
            submit_args: self.submit_args(),
        };
        Delegator::new(store, c.acl.clone(), agents, config)
            .map_err(|e| AppError::Usage(format!("config: {e}")))
    }
}

/// Stands in for a transport whose configuration is incomplete (e.g. its
/// token variable is unset): every dispatch fails with that error (a
/// [`TransportError::Config`](orch_delegate::TransportError::Config)).
struct Misconfigured {
    error: orch_delegate::TransportError,
    max_task_bytes: u64,
}

#[async_trait::async_trait]
impl Transport for Misconfigured {
    fn name(&self) -> &str {
        "openclaw"
    }

    fn max_task_bytes(&self) -> u64 {
        self.max_task_bytes
    }

    async fn dispatch(
        &self,
        _: &orch_delegate::Envelope,
    ) -> Result<orch_delegate::Ack, orch_delegate::TransportError> {
        Err(self.error.clone())
    }
}
