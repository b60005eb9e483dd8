//! Command-line arguments (clap derive). Only the CLI knows these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// orch: synchronous delegation, routing, workflows and metrics for a team of AI agents.
#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Synchronous delegation, routing and channel context for a team of AI agents",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Config file (default: $ORCH_CONFIG, ./orch.yaml, ~/.config/orch/orch.yaml,
    /// else the embedded default)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub(crate) config: Option<PathBuf>,

    /// Root of the handoff store [default: store.path of the config, ./.orch/handoffs]
    #[arg(
        long,
        global = true,
        env = "ORCH_HANDOFF_DIR",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "DIR"
    )]
    pub(crate) handoff_dir: Option<PathBuf>,

    /// The handoff store as a descriptor (what orch gives its agents):
    /// nats://HOST:PORT[,HOST:PORT…]/BUCKET[?token_env=VAR|token_file=PATH|credentials=PATH]
    /// or file:///ABS/DIR. Wins over the config's `store`; --handoff-dir wins over it
    #[arg(
        long,
        global = true,
        env = "ORCH_STORE",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "DESCRIPTOR"
    )]
    pub(crate) store: Option<String>,

    /// How to notice handoffs: inotify, polling (for NFS and some container
    /// mounts), or auto (inotify, falling back to polling) [default: store.watch
    /// of the config, auto]
    #[arg(
        long,
        global = true,
        env = "ORCH_WATCH",
        hide_env_values = true,
        help_heading = "Global options",
        value_enum
    )]
    pub(crate) watch: Option<WatchArg>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// `--watch` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum WatchArg {
    /// inotify, falling back to polling if it is unavailable
    Auto,
    /// inotify only
    Inotify,
    /// poll the store directory
    Poll,
}

impl GlobalArgs {
    /// What the application layer needs of these flags.
    pub(crate) fn settings(&self) -> crate::app::wiring::Settings {
        crate::app::wiring::Settings {
            config: self.config.clone(),
            store: self.store.clone(),
            handoff_dir: self.handoff_dir.clone(),
            watch: self.watch.map(|w| match w {
                WatchArg::Auto => orch_handoff::WatchMode::Auto,
                WatchArg::Inotify => orch_handoff::WatchMode::Inotify,
                WatchArg::Poll => orch_handoff::WatchMode::Poll,
            }),
        }
    }
}

/// `--status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusArg {
    /// the task is done
    Complete,
    /// part of it is done; say what is missing in --notes
    Partial,
    /// you could not proceed (missing input, access, decision)
    Blocked,
    /// you tried and failed
    Failed,
}

impl From<StatusArg> for orch_handoff::Status {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Complete => Self::Complete,
            StatusArg::Partial => Self::Partial,
            StatusArg::Blocked => Self::Blocked,
            StatusArg::Failed => Self::Failed,
        }
    }
}

/// `--confidence` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConfidenceArg {
    /// checked against sources or by test
    High,
    /// plausible, partly checked
    Medium,
    /// unverified or partly guessed
    Low,
}

impl From<ConfidenceArg> for orch_handoff::Confidence {
    fn from(c: ConfidenceArg) -> Self {
        match c {
            ConfidenceArg::High => Self::High,
            ConfidenceArg::Medium => Self::Medium,
            ConfidenceArg::Low => Self::Low,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Send a task to an agent and wait for its handoff
    Delegate(DelegateArgs),
    /// Write, check, show and wait for handoffs (what agents answer with)
    #[command(subcommand)]
    Handoff(HandoffCmd),
    /// Check and show who may delegate to whom
    #[command(subcommand)]
    Acl(AclCmd),
    /// Rank the agents a caller may delegate to for a task
    Route(RouteArgs),
    /// Print the recent messages of a Discord channel as task context
    Context(ContextArgs),
    /// List the agents and what they can do
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Run workflows (`orch workflow <NAME> --caller X`), resume and inspect runs
    Workflow(WorkflowArgs),
    /// Show the effective configuration, or write an example orch.yaml
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Metrics over delegations and workflow runs: text, JSON or Prometheus
    Metrics(MetricsArgs),
    /// The OpenClaw skill that teaches agents orch's protocol
    #[command(subcommand)]
    Skill(SkillCmd),
    /// Serve orch's operations as MCP tools over stdio, for an agent's MCP
    /// client (OpenClaw's `mcp.servers`)
    Mcp(McpArgs),
}

/// `orch mcp --as AGENT`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// The agent every tool call acts as (its ACL, its answers); never taken
    /// from a tool's arguments. Must be an agent of the registry
    #[arg(long = "as", env = "ORCH_AGENT", value_name = "AGENT")]
    pub(crate) agent: String,
    /// The run this agent is working on when the server runs inside an orch
    /// task: its delegations are sub-delegations of it (orch sets it for
    /// its agents)
    #[arg(long, env = "ORCH_PARENT_RUN", value_name = "RUN_ID")]
    pub(crate) parent: Option<String>,
    /// Print the client configuration that starts this server as this agent
    /// (for OpenClaw: the `mcp` block of openclaw.json), and exit
    #[arg(long, value_enum, value_name = "CLIENT")]
    pub(crate) print_config: Option<McpClient>,
}

/// `orch mcp --print-config` clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum McpClient {
    /// OpenClaw's `mcp.servers`
    Openclaw,
}

/// `orch metrics [text|json|prom] [--since …] [--agent …] [--workflow …] [--rescan]`.
#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Output format
    #[arg(value_enum, default_value_t = MetricsFormat::Text)]
    pub(crate) format: MetricsFormat,
    /// Only what happened since WHEN: a duration back from now (24h, 7d, 2w,
    /// 90m), an RFC 3339 time (2026-11-20T08:00:00Z) or a date (2026-11-20, UTC)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub(crate) since: Option<orch_metrics::Since>,
    /// Only delegations to this agent, and the workflow steps it ran (repeatable)
    #[arg(long = "agent", value_name = "ID")]
    pub(crate) agents: Vec<String>,
    /// Only this workflow (a name or a workflow run id) and its delegations
    /// (repeatable)
    #[arg(long = "workflow", value_name = "NAME")]
    pub(crate) workflows: Vec<String>,
    /// Read every handoff file instead of trusting the ledger as the index
    /// (when the ledger is missing or suspect; slower)
    #[arg(long)]
    pub(crate) rescan: bool,
    /// Read the whole ledger and list the store instead of using the index
    /// kept beside the ledger (which `orch metrics` keeps up to date)
    #[arg(long, conflicts_with = "rescan")]
    pub(crate) no_index: bool,
}

/// `orch metrics` output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum MetricsFormat {
    /// aligned tables for a person (colour on a terminal)
    Text,
    /// the report as JSON (schema 1, see docs/metrics.md)
    Json,
    /// the Prometheus text exposition format
    Prom,
}

fn parse_since(s: &str) -> Result<orch_metrics::Since, String> {
    s.parse()
        .map_err(|e: orch_metrics::SinceError| e.to_string())
}

/// `orch workflow <NAME> [run options]` or `orch workflow <SUBCOMMAND>`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct WorkflowArgs {
    #[command(subcommand)]
    pub(crate) cmd: Option<WorkflowCmd>,
    #[command(flatten)]
    pub(crate) run: Option<WorkflowRunArgs>,
}

/// How to run a workflow.
#[derive(Debug, Args)]
pub(crate) struct WorkflowRunArgs {
    /// A workflow file, a name in ./workflows/, or a built-in template (a
    /// workflow named like a subcommand: `orch workflow run <NAME>`)
    #[arg(value_name = "WORKFLOW")]
    pub(crate) workflow: String,
    /// An input, name=value (repeatable)
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub(crate) inputs: Vec<String>,
    /// Who runs it (every step is checked against the ACL as this caller);
    /// defaults to $ORCH_AGENT
    #[arg(long, env = "ORCH_AGENT", hide_env_values = true, value_name = "ID")]
    pub(crate) caller: String,
    /// Check everything, print the plan and every rendered task, send nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Never ask on the terminal: a step with an approval gate pauses the run
    /// (exit 20) until `orch workflow approve` and `orch workflow resume`
    #[arg(long)]
    pub(crate) non_interactive: bool,
    /// Print the run summary (or the dry-run plan) as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCmd {
    /// Run a workflow (the same as `orch workflow <NAME>`)
    Run(WorkflowRunArgs),
    /// List the stored workflow runs
    Runs {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a stored run: status, steps, output
    Status {
        /// The workflow run id
        run_id: String,
        /// The stored summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Continue a killed, cancelled or paused run (finished steps are not run again)
    Resume {
        /// The workflow run id
        run_id: String,
        /// Also start again the steps that failed or were rejected (and
        /// those skipped because of them), with a fresh retry budget;
        /// completed steps are still not run again
        #[arg(long)]
        retry_failed: bool,
        /// Never ask on the terminal (approval gates pause the run again)
        #[arg(long)]
        non_interactive: bool,
        /// Print the run summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Record a decision on a step awaiting approval (then `orch workflow resume`)
    Approve {
        /// The workflow run id
        run_id: String,
        /// The step awaiting approval
        step: String,
        /// Reject the step's result instead (the step fails)
        #[arg(long)]
        reject: bool,
        /// Why it was rejected
        #[arg(long, value_name = "TEXT", requires = "reject")]
        reason: Option<String>,
    },
    /// Cancel a run: the process running it stops its delegations (each a
    /// `cancelled` ledger line) and ends it as cancelled, saying who and
    /// why; a paused run is ended here
    Cancel {
        /// The workflow run id
        run_id: String,
        /// Why (stored in the run summary)
        #[arg(
            long,
            value_name = "TEXT",
            default_value = "cancelled from the command line"
        )]
        reason: String,
        /// Who cancels (default $ORCH_AGENT, else `cli`)
        #[arg(long, env = "ORCH_AGENT", hide_env_values = true, value_name = "ID")]
        caller: Option<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check a workflow: the file alone, or with --caller also its agents,
    /// the ACL of every step and the inputs
    Validate {
        /// A workflow file, a name in ./workflows/, or a built-in template
        workflow: String,
        /// Also check agents, ACL and inputs for this caller
        #[arg(long, value_name = "ID")]
        caller: Option<String>,
        /// An input, name=value (repeatable; with --caller)
        #[arg(long = "input", value_name = "NAME=VALUE", requires = "caller")]
        inputs: Vec<String>,
    },
    /// Print the workflow's dependency graph as a Mermaid flowchart
    Graph {
        /// A workflow file, a name in ./workflows/, or a built-in template
        workflow: String,
    },
    /// List the workflows in ./workflows/ and the built-in templates
    List,
    /// Describe a workflow: inputs, steps, dependencies, gates, parallel levels
    Show {
        /// A workflow file, a name in ./workflows/, or a built-in template
        workflow: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RouteArgs {
    /// The task text
    pub(crate) task: String,
    /// Who would delegate; only agents it may delegate to are ranked
    #[arg(long, env = "ORCH_AGENT", hide_env_values = true, value_name = "ID")]
    pub(crate) caller: String,
    /// Print the ranking as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ContextArgs {
    /// A channel name from the registry's channels map, or a channel id
    pub(crate) channel: String,
    /// How many of the newest messages
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) messages: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCmd {
    /// All agents: role, transport, capabilities
    List {
        /// As AGENTS_REGISTRY.json
        #[arg(long)]
        json: bool,
    },
    /// One agent in full
    Show {
        /// The agent id
        id: String,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DelegateArgs {
    /// The agent that gets the task, or `auto` to let the router choose the
    /// best agent the caller may delegate to
    pub(crate) agent: String,
    /// The task (`-` reads it from stdin)
    pub(crate) task: String,
    /// Who delegates (an agent id, or a human's id such as `alice`); defaults
    /// to $ORCH_AGENT, which orch sets for agents it runs
    #[arg(long, env = "ORCH_AGENT", hide_env_values = true, value_name = "ID")]
    pub(crate) caller: String,
    /// How long to wait for the handoff [default: delegation.timeout of the config, 120s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// Have the result checked by the agent's validator
    #[arg(long)]
    pub(crate) validate: bool,
    /// Validate with this agent instead (implies --validate)
    #[arg(long, value_name = "AGENT")]
    pub(crate) validator: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Put the recent messages of this Discord channel (a registry channel
    /// name or an id) into the task
    #[arg(long, value_name = "CHANNEL")]
    pub(crate) channel_context: Option<String>,
    /// How many messages --channel-context attaches
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        requires = "channel_context"
    )]
    pub(crate) channel_messages: usize,
    /// This is a sub-delegation of run ID (the caller's own run); defaults to
    /// $ORCH_PARENT_RUN, which orch sets for agents it runs
    #[arg(
        long,
        env = "ORCH_PARENT_RUN",
        hide_env_values = true,
        value_name = "ID"
    )]
    pub(crate) parent: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCmd {
    /// Print the effective configuration (tokens are never shown)
    Show {
        /// As JSON instead of YAML
        #[arg(long)]
        json: bool,
    },
    /// Write a commented example orch.yaml
    Init {
        /// Where to write it
        #[arg(long, value_name = "FILE", default_value = "orch.yaml")]
        path: PathBuf,
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SkillCmd {
    /// Copy the skill into an agent's OpenClaw workspace (`<DIR>/skills/orch/SKILL.md`)
    Install {
        /// The agent's workspace directory (as in openclaw.json)
        #[arg(long, value_name = "DIR")]
        workspace: PathBuf,
        /// Replace a SKILL.md there that differs from this version's
        #[arg(long)]
        force: bool,
    },
    /// Print the skill (SKILL.md) to stdout
    Show,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HandoffCmd {
    /// Write a handoff into the store (what an agent runs to answer a task)
    Submit(SubmitArgs),
    /// Check a handoff file without writing anything
    Validate(ValidateArgs),
    /// Print the handoff of a run
    Show(ShowArgs),
    /// Block until the handoff of a run lands, then print it
    Wait(WaitArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("result_source").args(["result", "result_file"])))]
pub(crate) struct SubmitArgs {
    /// The run id given in the task (with --json: the id the file must carry)
    #[arg(long, value_name = "ID", required_unless_present = "json")]
    pub(crate) run_id: Option<String>,
    /// Your agent id (with --json: the agent the file must name)
    #[arg(long, value_name = "AGENT", required_unless_present = "json")]
    pub(crate) agent: Option<String>,
    /// complete | partial | blocked | failed
    #[arg(
        long,
        value_name = "STATUS",
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    pub(crate) status: Option<StatusArg>,
    /// The result text; `-` reads it from stdin
    #[arg(long, value_name = "TEXT", conflicts_with = "json")]
    pub(crate) result: Option<String>,
    /// Read the result text from a file (`-` for stdin)
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub(crate) result_file: Option<PathBuf>,
    /// high | medium | low
    #[arg(long, value_name = "LEVEL", conflicts_with = "json")]
    pub(crate) confidence: Option<ConfidenceArg>,
    /// Caveats, what is missing, what to do next
    #[arg(long, value_name = "TEXT", conflicts_with = "json")]
    pub(crate) notes: Option<String>,
    /// A produced file or link (repeatable)
    #[arg(long = "artifact", value_name = "PATH|URL", conflicts_with = "json")]
    pub(crate) artifacts: Vec<String>,
    /// Submit a complete handoff JSON document instead of flags (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// The task was a sub-delegation: write under sub/
    #[arg(long)]
    pub(crate) sub: bool,
    /// Replace a handoff already stored for this run
    #[arg(long)]
    pub(crate) force: bool,
    /// Store it although no delegation with this run id was dispatched (the
    /// ledger has no `dispatched` line for it); without this, such a run id
    /// is refused as a probable typo
    #[arg(long)]
    pub(crate) unsolicited: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The handoff file (`-` for stdin)
    pub(crate) file: PathBuf,
    /// Also require this run id
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: Option<String>,
    /// Also require this agent
    #[arg(long, value_name = "AGENT")]
    pub(crate) agent: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The run id
    pub(crate) run_id: String,
    /// Look under sub/ (a sub-delegation)
    #[arg(long)]
    pub(crate) sub: bool,
    /// Print the handoff as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// The run id
    pub(crate) run_id: String,
    /// How long to wait: seconds, or a duration such as 90s, 10m, 1h
    #[arg(long, value_name = "DURATION", default_value = "120", value_parser = parse_duration)]
    pub(crate) timeout: std::time::Duration,
    /// Wait under sub/ (a sub-delegation)
    #[arg(long)]
    pub(crate) sub: bool,
    /// Print the handoff as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AclCmd {
    /// Say whether CALLER may delegate to TARGET (exit 0 allowed, 3 denied)
    Check {
        /// The delegating agent
        caller: String,
        /// The agent that would receive the task
        target: String,
    },
    /// Print the policy
    Show {
        /// Print it as JSON (the config shape: caller -> list)
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Refuses caller and agent names (flags, arguments, `$ORCH_AGENT`)
    /// that break the id rule (DESIGN §3, `orch_support::id`), before
    /// anything uses them: they end up in the ledger, in task messages and
    /// on terminals. Exit 2, and the message shows the value escaped.
    pub(crate) fn check_ids(&self) -> Result<(), crate::app::error::AppError> {
        let mut ids: Vec<(&str, &str)> = Vec::new();
        match &self.command {
            Command::Delegate(a) => {
                ids.push(("--caller", &a.caller));
                if a.agent != "auto" {
                    ids.push(("the agent", &a.agent));
                }
                ids.extend(a.validator.as_deref().map(|v| ("--validator", v)));
            }
            Command::Route(a) => ids.push(("--caller", &a.caller)),
            Command::Acl(AclCmd::Check { caller, target }) => {
                ids.extend([
                    ("the caller", caller.as_str()),
                    ("the target", target.as_str()),
                ]);
            }
            // `handoff submit --agent` is checked where the handoff is built.
            Command::Handoff(HandoffCmd::Validate(a)) => {
                ids.extend(a.agent.as_deref().map(|v| ("--agent", v)));
            }
            Command::Workflow(w) => match (&w.cmd, &w.run) {
                (Some(WorkflowCmd::Run(r)), _) | (None, Some(r)) => {
                    ids.push(("--caller", &r.caller));
                }
                (Some(WorkflowCmd::Validate { caller, .. }), _)
                | (Some(WorkflowCmd::Cancel { caller, .. }), _) => {
                    ids.extend(caller.as_deref().map(|v| ("--caller", v)));
                }
                _ => {}
            },
            Command::Mcp(a) => ids.push(("--as", &a.agent)),
            _ => {}
        }
        for (what, id) in ids {
            orch_handoff::validate_id(id).map_err(|e| {
                crate::app::error::AppError::Usage(match e {
                    orch_handoff::InvalidId::Empty => format!("{what} is empty: give an agent id"),
                    e => format!("{what} is not an agent id: {e}"),
                })
            })?;
        }
        Ok(())
    }
}

pub(crate) use orch_support::duration::{format as format_duration, parse as parse_duration};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
