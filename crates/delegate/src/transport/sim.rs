//! `sim`: the built-in simulated fleet (DESIGN §5), for demos and tests.
//!
//! [`SimTransport::dispatch`] admits every task at once (`Ack` with
//! `remote_run_id` `sim-<runId>` and no completion) and schedules the answer
//! on a task owned by the transport. That task sleeps [`SimConfig::delay`]
//! (`tokio::time::sleep`, so tests can pause time) and then writes the
//! handoff through the *real* store the transport was built with:
//! [`orch_handoff::Handoffs::put`] with [`Envelope::scope`] for valid answers,
//! [`orch_handoff::Handoffs::put_raw`] for malformed ones, both
//! [`PutMode::Create`] as `orch handoff submit` writes (an answer never
//! replaces one already there; a late answer to an earlier ask that finds
//! the re-ask's answer in place is dropped with a warning). So a simulated delegation
//! exercises exactly the path of a real one: subscribe, dispatch, watcher,
//! parse. [`Envelope::handoff_location`] is not used: the store built with
//! the transport must be the one the delegator waits on.
//!
//! # Which behaviour
//!
//! [`SimConfig::behaviour_for`]: the first of [`SimConfig::keywords`] (in
//! list order) that occurs in the task message wins, else the agent's entry
//! in [`SimConfig::agents`], else [`Behaviour::Complete`]. The default
//! keywords are `[sim:<name>]` for every behaviour, so a task containing
//! `[sim:blocked]` is answered `blocked` by any simulated agent.
//!
//! # What the answers look like
//!
//! Every answer is visibly simulated: its `result` starts with
//! `[simulated] `, names the agent and the behaviour and echoes one line of
//! the task, its `notes` say it is simulated, and it carries the extra
//! top-level field `"simulated": true` (kept by [`Handoff::extra`]). The
//! echoed line is the first line under the message's `## Task` heading, or
//! else the first non-blank line of the message that does not
//! mention the run id or the handoff location (the message's header line
//! does), without a leading Markdown heading marker or `Task:` label, cut to
//! 120 characters.
//!
//! # Attempts
//!
//! A re-ask ([`Envelope::attempt`] ≥ 2) is answered like the first dispatch,
//! except that [`Behaviour::MalformedOnce`] answers validly from attempt 2 on.
//! A silent agent stays silent and a malformed one stays malformed.
//!
//! # Ownership of the answer tasks
//!
//! The scheduled answers live in a [`JoinSet`] inside the transport's shared
//! state; finished ones are reaped on every dispatch. [`SimTransport`] is a
//! handle (`clone` is cheap and clones share the tasks): dropping the last
//! handle aborts every answer not yet written. An answer whose write has
//! already started may still land (writes are atomic, so never half).

use orch_support::text::shorten_within;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orch_handoff::{Confidence, Handoff, HandoffKey, HandoffStore, PutMode, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::{Ack, DEFAULT_MAX_TASK_BYTES, Envelope, Transport, TransportError};

/// How a simulated agent answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// `complete`: status `complete`, confidence `high`.
    Complete,
    /// `partial`: status `partial`, confidence `medium`; the notes say what
    /// is missing.
    Partial,
    /// `blocked`: status `blocked`; the notes say why.
    Blocked,
    /// `failed`: status `failed`.
    Failed,
    /// `low-confidence`: status `complete`, confidence `low`.
    LowConfidence,
    /// `silent`: never answers, not even when re-asked.
    Silent,
    /// `malformed`: writes a complete but invalid handoff (`"status":
    /// "done"`) on every attempt.
    Malformed,
    /// `malformed-once`: invalid on attempt 1, valid (`complete`, `high`)
    /// from the first re-ask on.
    MalformedOnce,
    /// `slow`: answers `complete` after [`SimConfig::slow_delay`] instead of
    /// [`SimConfig::delay`].
    Slow,
}

impl Behaviour {
    /// Every behaviour, in documentation order.
    pub const ALL: [Behaviour; 9] = [
        Self::Complete,
        Self::Partial,
        Self::Blocked,
        Self::Failed,
        Self::LowConfidence,
        Self::Silent,
        Self::Malformed,
        Self::MalformedOnce,
        Self::Slow,
    ];

    /// The behaviour's name in config and keywords (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::LowConfidence => "low-confidence",
            Self::Silent => "silent",
            Self::Malformed => "malformed",
            Self::MalformedOnce => "malformed-once",
            Self::Slow => "slow",
        }
    }

    /// The default keyword that selects this behaviour: `[sim:<name>]`.
    pub fn keyword(self) -> String {
        format!("[sim:{}]", self.as_str())
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Behaviour`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown sim behaviour {name:?}: expected one of complete, partial, blocked, failed, low-confidence, silent, malformed, malformed-once, slow"
)]
pub struct UnknownBehaviour {
    /// The rejected name (shortened to 40 characters).
    pub name: String,
}

impl FromStr for Behaviour {
    type Err = UnknownBehaviour;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBehaviour {
                name: s.chars().take(40).collect(),
            })
    }
}

/// Settings of a [`SimTransport`]. In serde (a `kind: sim` transport of
/// `orch.yaml`): `delay`, `slow_delay` (durations: `200ms`, `30s`),
/// `agents` and `max_task_bytes`, every one optional, unknown keys refused;
/// the keywords are not configurable there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// How long an agent "works" before answering. Default 200 ms.
    #[serde(with = "orch_support::duration::serde")]
    pub delay: Duration,
    /// How long a [`Behaviour::Slow`] agent works. Default 30 s.
    #[serde(with = "orch_support::duration::serde")]
    pub slow_delay: Duration,
    /// Behaviour per agent id; agents not listed answer
    /// [`Behaviour::Complete`]. Default empty.
    pub agents: BTreeMap<String, Behaviour>,
    /// Keywords checked in the task message before the per-agent behaviour,
    /// in order; the first one found wins. Default: `[sim:<name>]` for every
    /// behaviour ([`Behaviour::keyword`]).
    #[serde(skip)]
    pub keywords: Vec<(String, Behaviour)>,
    /// Largest task message accepted ([`Transport::max_task_bytes`]).
    /// Default [`DEFAULT_MAX_TASK_BYTES`], like a real gateway's, so a
    /// workflow that works on the simulated fleet fits a real one.
    pub max_task_bytes: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(200),
            slow_delay: Duration::from_secs(30),
            agents: BTreeMap::new(),
            keywords: Behaviour::ALL.map(|b| (b.keyword(), b)).to_vec(),
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
        }
    }
}

impl SimConfig {
    /// The behaviour `agent` shows for a task `message`: the first keyword
    /// (in list order) contained in `message`, else the agent's configured
    /// behaviour, else [`Behaviour::Complete`].
    pub fn behaviour_for(&self, agent: &str, message: &str) -> Behaviour {
        self.keywords
            .iter()
            .find(|(keyword, _)| !keyword.is_empty() && message.contains(keyword.as_str()))
            .map(|(_, behaviour)| *behaviour)
            .or_else(|| self.agents.get(agent).copied())
            .unwrap_or(Behaviour::Complete)
    }
}

/// The simulated fleet: answers every task through the real store after a
/// configurable delay, with scripted [`Behaviour`]s (see the module docs).
///
/// A handle: clones share the scheduled answers; dropping the last handle
/// aborts those not yet written.
#[derive(Clone)]
pub struct SimTransport {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn HandoffStore>,
    config: SimConfig,
    answers: Mutex<JoinSet<()>>,
}

impl fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTransport")
            .field("store", &self.inner.store.describe())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl SimTransport {
    /// A simulated fleet answering through `store`, which must be the store
    /// the delegator waits on.
    pub fn new(store: Arc<dyn HandoffStore>, config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                answers: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// The fleet's settings.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Answers scheduled and not yet written (a diagnostic for tests and
    /// demos).
    pub fn pending(&self) -> usize {
        let mut answers = self.inner.answers();
        reap(&mut answers);
        answers.len()
    }
}

impl Inner {
    fn answers(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops finished answer tasks (logging a panicked one).
fn reap(answers: &mut JoinSet<()>) {
    while let Some(result) = answers.try_join_next() {
        if let Err(e) = result
            && e.is_panic()
        {
            tracing::error!(error = %e, "a simulated answer panicked");
        }
    }
}

#[async_trait]
impl Transport for SimTransport {
    fn name(&self) -> &str {
        "sim"
    }

    /// The simulated agents are tasks of the sending process.
    fn outlives_sender(&self) -> bool {
        false
    }

    fn max_task_bytes(&self) -> u64 {
        self.inner.config.max_task_bytes
    }

    async fn dispatch(&self, envelope: &Envelope) -> Result<Ack, TransportError> {
        let config = &self.inner.config;
        let behaviour = config.behaviour_for(&envelope.agent, &envelope.message);
        let ack = Ack {
            remote_run_id: Some(format!("sim-{}", envelope.run_id)),
            completion: None,
        };
        tracing::debug!(
            run_id = %envelope.run_id,
            agent = %envelope.agent,
            attempt = envelope.attempt,
            %behaviour,
            "simulated dispatch"
        );
        let Some(answer) = Answer::build(behaviour, envelope) else {
            return Ok(ack);
        };
        let delay = match behaviour {
            Behaviour::Slow => config.slow_delay,
            _ => config.delay,
        };
        let store = Arc::clone(&self.inner.store);
        let key = HandoffKey {
            scope: envelope.scope,
            run_id: envelope.run_id.clone(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(TransportError::Config {
                message: "the sim transport needs a tokio runtime".into(),
            });
        };
        let mut answers = self.inner.answers();
        reap(&mut answers);
        answers.spawn_on(
            async move {
                // A zero delay answers at once, not at the next timer tick.
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let written = match answer {
                    Answer::Valid(mut handoff) => {
                        // Stamped when written, not when scheduled.
                        handoff.timestamp = Some(jiff::Timestamp::now().to_string());
                        store.put(key.scope, &handoff, PutMode::Create).await
                    }
                    Answer::Raw(bytes) => store.put_raw(&key, &bytes, PutMode::Create).await,
                };
                if let Err(e) = written {
                    tracing::warn!(run_id = %key.run_id, error = %e, "simulated answer not written");
                }
            },
            &runtime,
        );
        Ok(ack)
    }
}

/// What a simulated agent writes.
enum Answer {
    /// A valid handoff, written with `put`.
    Valid(Box<Handoff>),
    /// Complete but invalid bytes, written with `put_raw`.
    Raw(Vec<u8>),
}

impl Answer {
    /// The answer of `behaviour` to `envelope`; `None` for silence.
    fn build(behaviour: Behaviour, envelope: &Envelope) -> Option<Self> {
        let agent = envelope.agent.as_str();
        let result = format!(
            "[simulated] {agent} (sim fleet, behaviour {behaviour}) answers: {}",
            task_line(envelope)
        );
        const SIMULATED: &str = "simulated answer from the built-in sim fleet; no agent ran";
        let malformed = match behaviour {
            Behaviour::Silent => return None,
            Behaviour::Malformed => true,
            Behaviour::MalformedOnce => envelope.attempt <= 1,
            _ => false,
        };
        if malformed {
            // Complete JSON with a status that is not allowed: the store
            // reports it as invalid at once (a cut-off file would be taken
            // for one still being written and waited on until the deadline).
            let mut object = serde_json::Map::new();
            object.insert("schemaVersion".into(), "1.0".into());
            object.insert("runId".into(), envelope.run_id.as_str().into());
            object.insert("agent".into(), agent.into());
            object.insert("status".into(), "done".into());
            object.insert("result".into(), result.into());
            object.insert(
                "notes".into(),
                format!("{SIMULATED}; deliberately malformed: `status` is not an allowed value")
                    .into(),
            );
            object.insert("simulated".into(), Value::Bool(true));
            let mut bytes = serde_json::to_vec_pretty(&Value::Object(object))
                .unwrap_or_else(|_| b"{\"status\": \"done\"}".to_vec());
            bytes.push(b'\n');
            return Some(Self::Raw(bytes));
        }
        let (status, confidence, notes) = match behaviour {
            Behaviour::Silent | Behaviour::Malformed => return None, // handled above
            Behaviour::MalformedOnce => (
                Status::Complete,
                Some(Confidence::High),
                format!(
                    "{SIMULATED}; valid answer after a re-ask (attempt {})",
                    envelope.attempt
                ),
            ),
            Behaviour::Complete | Behaviour::Slow => (
                Status::Complete,
                Some(Confidence::High),
                SIMULATED.to_owned(),
            ),
            Behaviour::Partial => (
                Status::Partial,
                Some(Confidence::Medium),
                format!(
                    "{SIMULATED}; partial: only the first part of the task is covered, sources and verification are missing"
                ),
            ),
            Behaviour::Blocked => (
                Status::Blocked,
                Some(Confidence::Low),
                format!(
                    "{SIMULATED}; blocked: the agent needs input it was not given (a decision or access to the data)"
                ),
            ),
            Behaviour::Failed => (
                Status::Failed,
                Some(Confidence::Low),
                format!("{SIMULATED}; failed: the simulated work ran into an error"),
            ),
            Behaviour::LowConfidence => (
                Status::Complete,
                Some(Confidence::Low),
                format!("{SIMULATED}; low confidence: the result is unverified"),
            ),
        };
        let mut handoff = Handoff::new(envelope.run_id.clone(), agent, status, result);
        handoff.confidence = confidence;
        handoff.notes = notes;
        handoff.extra.insert("simulated".into(), Value::Bool(true));
        Some(Self::Valid(Box::new(handoff)))
    }
}

/// Longest echo of the task in a simulated result, in characters.
const ECHO_CHARS: usize = 120;

/// The task line a simulated answer echoes (see the module docs).
fn task_line(envelope: &Envelope) -> String {
    let run_id = envelope.run_id.as_str();
    let location = envelope.handoff_location.as_str();
    // orch's own messages put the task under a `## Task` heading: echo its
    // first line rather than a heading or the re-ask preamble.
    let mut lines = envelope.message.lines();
    if lines.any(|l| l.trim() == "## Task")
        && let Some(line) = lines.map(str::trim).find(|l| !l.is_empty())
    {
        return shorten_within(line, ECHO_CHARS);
    }
    let line = envelope
        .message
        .lines()
        .filter(|line| !line.contains(run_id) && (location.is_empty() || !line.contains(location)))
        .map(|line| {
            let line = line.trim().trim_start_matches('#').trim_start();
            strip_label(line).trim()
        })
        .find(|line| !line.is_empty())
        .unwrap_or("(empty task)");
    shorten_within(line, ECHO_CHARS)
}

/// `line` without a leading `Task:` label (any case).
fn strip_label(line: &str) -> &str {
    match line.get(..5) {
        Some(head) if head.eq_ignore_ascii_case("task:") => &line[5..],
        _ => line,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use orch_handoff::{RunId, Scope};
    use serde_json::json;

    use super::*;

    #[test]
    fn a_config_reads_its_keys_and_refuses_others() {
        let read = |json: Value| serde_json::from_value::<SimConfig>(json);
        let c = read(json!({"delay": "1s", "agents": {"webster": "slow"}})).unwrap();
        assert_eq!(c.delay, Duration::from_secs(1));
        assert_eq!(c.agents["webster"], Behaviour::Slow);
        // What is not given is the default, keywords included.
        assert_eq!(
            SimConfig {
                delay: Duration::from_millis(200),
                agents: BTreeMap::new(),
                ..c.clone()
            },
            SimConfig::default()
        );
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(
            shown,
            json!({"delay": "1s", "slow_delay": "30s", "agents": {"webster": "slow"}, "max_task_bytes": 262144})
        );
        assert_eq!(read(shown).unwrap(), c);
        let typo = read(json!({"dealy": 5})).unwrap_err().to_string();
        assert!(typo.contains("unknown field `dealy`"), "{typo}");
        let keywords = read(json!({"keywords": []})).unwrap_err().to_string();
        assert!(keywords.contains("unknown field `keywords`"), "{keywords}");
        let soon = read(json!({"slow_delay": "soon"})).unwrap_err().to_string();
        assert!(soon.contains("is not a duration"), "{soon}");
    }

    fn envelope(message: &str, attempt: u32) -> Envelope {
        Envelope {
            run_id: RunId::new("orch-20261123T224500Z-3f9a1c2b").unwrap(),
            agent: "webster".into(),
            caller: "manager".into(),
            message: message.into(),
            handoff_location: "/srv/orch/orch-20261123T224500Z-3f9a1c2b.json".into(),
            timeout: Duration::from_secs(120),
            parent: None,
            scope: Scope::Top,
            attempt,
        }
    }

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for b in Behaviour::ALL {
            assert_eq!(b.to_string().parse::<Behaviour>(), Ok(b));
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{b}\""));
            assert_eq!(serde_json::from_str::<Behaviour>(&json).unwrap(), b);
        }
        assert!("Complete".parse::<Behaviour>().is_err());
        assert!(serde_json::from_str::<Behaviour>("\"low_confidence\"").is_err());
    }

    #[test]
    fn the_error_lists_every_behaviour() {
        let err = "done".parse::<Behaviour>().unwrap_err().to_string();
        for b in Behaviour::ALL {
            assert!(err.contains(b.as_str()), "{err}");
        }
    }

    #[test]
    fn keywords_come_first_in_list_order() {
        let mut config = SimConfig::default();
        config.agents.insert("webster".into(), Behaviour::Failed);
        assert_eq!(
            config.behaviour_for("webster", "look it up"),
            Behaviour::Failed
        );
        assert_eq!(
            config.behaviour_for("auditor", "look it up"),
            Behaviour::Complete
        );
        assert_eq!(
            config.behaviour_for("webster", "[sim:partial] look it up"),
            Behaviour::Partial
        );
        // `[sim:malformed]` is not a substring of `[sim:malformed-once]`.
        assert_eq!(
            config.behaviour_for("webster", "x [sim:malformed-once]"),
            Behaviour::MalformedOnce
        );
        // Two keywords: the one listed first wins, wherever it occurs.
        assert_eq!(
            config.behaviour_for("webster", "[sim:slow] and [sim:blocked]"),
            Behaviour::Blocked
        );
        config.keywords = vec![(String::new(), Behaviour::Silent)];
        assert_eq!(config.behaviour_for("webster", "x"), Behaviour::Failed);
    }

    #[test]
    fn the_echo_skips_the_header_and_labels() {
        let header = "orch run orch-20261123T224500Z-3f9a1c2b: write your handoff to /srv/orch/orch-20261123T224500Z-3f9a1c2b.json";
        let e = envelope(
            &format!("{header}\n\n## Task:\nFind the CTE of Zerodur.\nMore."),
            1,
        );
        assert_eq!(task_line(&e), "Find the CTE of Zerodur.");
        let e = envelope("Task: summarise the thread", 1);
        assert_eq!(task_line(&e), "summarise the thread");
        let e = envelope(&format!("{header}\n"), 1);
        assert_eq!(task_line(&e), "(empty task)");
        let long = "é".repeat(300);
        let echoed = task_line(&envelope(&long, 1));
        assert_eq!(echoed.chars().count(), ECHO_CHARS);
        assert!(echoed.ends_with('…'));
    }

    #[test]
    fn answers_are_marked_simulated() {
        let Some(Answer::Valid(h)) = Answer::build(Behaviour::Partial, &envelope("do it", 1))
        else {
            panic!("expected a valid answer");
        };
        assert_eq!(h.status, Status::Partial);
        assert_eq!(h.confidence, Some(Confidence::Medium));
        assert_eq!(
            h.result,
            "[simulated] webster (sim fleet, behaviour partial) answers: do it"
        );
        assert!(h.notes.contains("simulated"), "{}", h.notes);
        assert_eq!(h.extra.get("simulated"), Some(&Value::Bool(true)));
        assert!(Answer::build(Behaviour::Silent, &envelope("x", 2)).is_none());
        assert!(matches!(
            Answer::build(Behaviour::Malformed, &envelope("x", 2)),
            Some(Answer::Raw(_))
        ));
        assert!(matches!(
            Answer::build(Behaviour::MalformedOnce, &envelope("x", 2)),
            Some(Answer::Valid(_))
        ));
    }

    #[test]
    fn malformed_bytes_are_complete_but_invalid() {
        let Some(Answer::Raw(bytes)) = Answer::build(Behaviour::Malformed, &envelope("x", 1))
        else {
            panic!("expected raw bytes");
        };
        let err =
            orch_handoff::parse_handoff(&bytes, &orch_handoff::Expect::default()).unwrap_err();
        assert!(!err.is_incomplete(), "{err}");
        assert!(err.to_string().contains("status"), "{err}");
    }
}
