//! The settings of a `NatsStore` (feature `nats`): plain data, compiled
//! without the feature too, so a configuration that names a NATS store
//! reads the same in any build (only opening one needs the feature).
//!
//! In serde the settings are the keys of `orch.yaml`'s `store:` section
//! for `kind: nats` ([`NatsStoreConfig::KEYS`]), with the credential only
//! *named* (`token_env`, `token_file` or `credentials`): a token value is
//! never read from or written to a configuration. Reading one checks it
//! ([`NatsStoreConfig::check`]); the messages name the keys as `orch.yaml`
//! writes them (`store.url`).

use std::path::PathBuf;
use std::time::Duration;

use orch_support::duration;
use orch_support::secret::{SecretError, read_secret};
use orch_support::url::redact_userinfo;
use serde::{Deserialize, Serialize};

use crate::DEFAULT_MAX_HANDOFF_BYTES;

/// A NATS token: `Debug` and `Display` print `[redacted]`; the value goes
/// only to the connection.
pub type NatsToken = orch_support::secret::Secret;

/// How the store authenticates to the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// A token (`authorization { token: … }` on the server).
    Token(NatsToken),
    /// A token read from this environment variable when the store
    /// connects (`token_env`).
    TokenEnv(String),
    /// A token read from this file when the store connects (`token_file`).
    TokenFile(PathBuf),
    /// A `.creds` file (user JWT and NKey seed), read at connect time
    /// (`credentials`).
    CredentialsFile(PathBuf),
}

impl NatsAuth {
    /// The credential a configuration names: a token variable, a token
    /// file or a `.creds` file, at most one of them.
    pub fn named(
        token_env: Option<String>,
        token_file: Option<PathBuf>,
        credentials: Option<PathBuf>,
    ) -> Result<Self, String> {
        match (token_env, token_file, credentials) {
            (None, None, None) => Ok(Self::None),
            (Some(var), None, None) => Ok(Self::TokenEnv(var)),
            (None, Some(file), None) => Ok(Self::TokenFile(file)),
            (None, None, Some(file)) => Ok(Self::CredentialsFile(file)),
            _ => Err("`store`: set only one of `token_env`, `token_file` and `credentials`".into()),
        }
    }

    /// The token to send: the one given, or the one the variable or file
    /// holds (read now); `None` without a token. Errors name the variable
    /// or the file, never a value.
    pub fn token(&self) -> Result<Option<NatsToken>, SecretError> {
        match self {
            Self::Token(token) => Ok(Some(token.clone())),
            Self::TokenEnv(var) => read_secret(Some(var), None, "NATS token").map(Some),
            Self::TokenFile(file) => read_secret(None, Some(file), "NATS token").map(Some),
            Self::None | Self::CredentialsFile(_) => Ok(None),
        }
    }
}

/// Settings of a `NatsStore`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Keys", into = "Keys")]
pub struct NatsStoreConfig {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://host:4222`.
    /// Credentials do not belong here (see [`NatsStoreConfig::auth`]).
    pub url: String,
    /// The handoff bucket; also names the workflow bucket
    /// (`<bucket>-workflows`) and the ledger stream (`ORCH_LEDGER_<bucket>`).
    /// `[A-Za-z0-9_-]`, 1 to 64 characters. Default `orch`.
    pub bucket: String,
    /// Credentials. Default none.
    pub auth: NatsAuth,
    /// Replicas of the buckets and the ledger when they are created (1 on a
    /// single server, 3 in a cluster). Default 1.
    pub replicas: usize,
    /// Values kept per key when the buckets are created. Default 1 (the
    /// current value; rejected handoffs are kept by quarantine).
    pub history: i64,
    /// Largest handoff, in bytes; also the handoff bucket's max value size.
    /// Workflow records may be four times this. Default
    /// [`DEFAULT_MAX_HANDOFF_BYTES`] (4 MiB).
    pub max_handoff_bytes: u64,
    /// How long connecting may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long one store operation (open, get, put, watch, ledger append
    /// or read) may take, tries after timeouts and leader elections
    /// included. Default 30 s. A delegation sets its own timeout here.
    pub request_timeout: Duration,
    /// How long one JetStream request may take before it is tried again
    /// (within `request_timeout`). Default 5 s. Not a configuration key.
    pub attempt_timeout: Duration,
    /// The longest wait between two tries (the waits double from 100 ms up
    /// to this). Default 2 s.
    pub retry_max_delay: Duration,
}

/// The server a configuration that names none connects to.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl NatsStoreConfig {
    /// The keys of the serde form, in the order it writes them.
    pub const KEYS: &'static [&'static str] = &[
        "url",
        "bucket",
        "token_env",
        "token_file",
        "credentials",
        "replicas",
        "history",
        "connect_timeout",
        "request_timeout",
        "retry_max_delay",
        "max_handoff_bytes",
    ];

    /// Defaults for a store on the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            bucket: "orch".to_owned(),
            auth: NatsAuth::None,
            replicas: 1,
            history: 1,
            max_handoff_bytes: DEFAULT_MAX_HANDOFF_BYTES,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(2),
        }
    }

    /// What the settings need that their types cannot say: `nats://`,
    /// `tls://`, `ws://` or `wss://` URLs without credentials in them, a
    /// bucket NATS accepts, 1 to 5 replicas, a history of 1 to 64, a
    /// `request_timeout` of at least 1 s and a `retry_max_delay` within it.
    /// Reading the serde form and connecting check it.
    pub fn check(&self) -> Result<(), String> {
        check_urls(&self.url)?;
        check_bucket(&self.bucket)?;
        if !(1..=5).contains(&self.replicas) {
            return Err("`store.replicas` must be 1 to 5".into());
        }
        if !(1..=64).contains(&self.history) {
            return Err("`store.history` must be 1 to 64 (the most NATS KV keeps)".into());
        }
        if self.request_timeout < Duration::from_secs(1) {
            return Err("`store.request_timeout` must be at least 1s".into());
        }
        if self.retry_max_delay.is_zero() || self.retry_max_delay > self.request_timeout {
            return Err(
                "`store.retry_max_delay` must be more than 0 and at most `store.request_timeout`"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A store on [`DEFAULT_NATS_URL`], a local server.
impl Default for NatsStoreConfig {
    fn default() -> Self {
        Self::new(DEFAULT_NATS_URL)
    }
}

fn check_urls(urls: &str) -> Result<(), String> {
    for url in urls.split(',').map(str::trim) {
        let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(format!(
                "`store.url` {:?} must start with nats:// or tls:// (several: comma-separated)",
                redact_userinfo(url)
            ));
        }
        if url.contains('@') {
            // Refused without quoting it: the part before `@` is a secret.
            return Err(
                "`store.url` must not hold credentials: name a token with `token_env` or `token_file`, or a `.creds` file with `credentials`"
                    .into(),
            );
        }
    }
    Ok(())
}

/// NATS bucket names: `[A-Za-z0-9_-]+` (they become stream names and
/// subject tokens).
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 64
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`store.bucket` {bucket:?}: use 1 to 64 ASCII letters, digits, '_' or '-'"
        ))
    }
}

/// The serde form: the keys of `store:` (the credential flattened into
/// the key that names it).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Keys {
    url: String,
    bucket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<PathBuf>,
    replicas: usize,
    history: i64,
    #[serde(with = "duration::serde")]
    connect_timeout: Duration,
    #[serde(with = "duration::serde")]
    request_timeout: Duration,
    #[serde(with = "duration::serde")]
    retry_max_delay: Duration,
    max_handoff_bytes: u64,
}

impl Default for Keys {
    fn default() -> Self {
        NatsStoreConfig::default().into()
    }
}

/// The credential is written as the key that names it; a token value has
/// no key and is never written.
impl From<NatsStoreConfig> for Keys {
    fn from(c: NatsStoreConfig) -> Self {
        let (mut token_env, mut token_file, mut credentials) = (None, None, None);
        match c.auth {
            NatsAuth::TokenEnv(var) => token_env = Some(var),
            NatsAuth::TokenFile(file) => token_file = Some(file),
            NatsAuth::CredentialsFile(file) => credentials = Some(file),
            NatsAuth::None | NatsAuth::Token(_) => {}
        }
        Self {
            url: c.url,
            bucket: c.bucket,
            token_env,
            token_file,
            credentials,
            replicas: c.replicas,
            history: c.history,
            connect_timeout: c.connect_timeout,
            request_timeout: c.request_timeout,
            retry_max_delay: c.retry_max_delay,
            max_handoff_bytes: c.max_handoff_bytes,
        }
    }
}

impl TryFrom<Keys> for NatsStoreConfig {
    type Error = String;

    fn try_from(k: Keys) -> Result<Self, String> {
        // In the order a reader fixes them: where, then who, then how.
        check_urls(&k.url)?;
        check_bucket(&k.bucket)?;
        let config = Self {
            auth: NatsAuth::named(k.token_env, k.token_file, k.credentials)?,
            url: k.url,
            bucket: k.bucket,
            replicas: k.replicas,
            history: k.history,
            max_handoff_bytes: k.max_handoff_bytes,
            connect_timeout: k.connect_timeout,
            request_timeout: k.request_timeout,
            retry_max_delay: k.retry_max_delay,
            ..Self::default()
        };
        config.check()?;
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn read(json: Value) -> Result<NatsStoreConfig, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_keys_of_store_read_into_the_config() {
        let c = read(json!({
            "url": "nats://10.0.0.5:4222, nats://10.0.0.6:4222",
            "bucket": "team-a",
            "credentials": "/etc/orch/orch.creds",
            "replicas": 3,
            "request_timeout": "1m",
            "max_handoff_bytes": 1_048_576,
        }))
        .unwrap();
        assert_eq!(
            c,
            NatsStoreConfig {
                bucket: "team-a".into(),
                auth: NatsAuth::CredentialsFile("/etc/orch/orch.creds".into()),
                replicas: 3,
                request_timeout: Duration::from_secs(60),
                max_handoff_bytes: 1 << 20,
                ..NatsStoreConfig::new("nats://10.0.0.5:4222, nats://10.0.0.6:4222")
            }
        );
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(
            shown,
            json!({
                "url": "nats://10.0.0.5:4222, nats://10.0.0.6:4222",
                "bucket": "team-a",
                "credentials": "/etc/orch/orch.creds",
                "replicas": 3,
                "history": 1,
                "connect_timeout": "5s",
                "request_timeout": "1m",
                "retry_max_delay": "2s",
                "max_handoff_bytes": 1_048_576,
            })
        );
        assert_eq!(read(shown).unwrap(), c);
        assert_eq!(read(json!({})).unwrap(), NatsStoreConfig::default());
        let env = read(json!({"token_env": "NATS_TOKEN"})).unwrap();
        assert_eq!(env.auth, NatsAuth::TokenEnv("NATS_TOKEN".into()));
        let file = read(json!({"token_file": "/run/nats-token"})).unwrap();
        assert_eq!(file.auth, NatsAuth::TokenFile("/run/nats-token".into()));
    }

    /// `KEYS` is the serde form's key list, in its order (what an error
    /// on an unknown key lists).
    #[test]
    fn keys_are_the_serde_keys_and_others_are_refused() {
        let e = read(json!({"bucekt": "x"})).unwrap_err();
        let listed: Vec<String> = NatsStoreConfig::KEYS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect();
        assert_eq!(
            e,
            format!(
                "unknown field `bucekt`, expected one of {}",
                listed.join(", ")
            )
        );
        for key in ["attempt_timeout", "auth", "token"] {
            let e = read(json!({key: "x"})).unwrap_err();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
        }
        let soon = read(json!({"connect_timeout": "soon"})).unwrap_err();
        assert!(soon.contains("is not a duration"), "{soon}");
    }

    #[test]
    fn a_token_value_is_never_written() {
        let c = NatsStoreConfig {
            auth: NatsAuth::Token(NatsToken::new("hunter2-token")),
            ..NatsStoreConfig::default()
        };
        let shown = serde_json::to_string(&c).unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("token"),
            "{shown}"
        );
    }

    #[test]
    fn checks_say_which_key_and_never_quote_credentials() {
        let cases = [
            (
                json!({"url": "nats://me:hunter2@h:4222"}),
                "must not hold credentials",
            ),
            (
                json!({"url": "http://h:4222"}),
                "`store.url` \"http://h:4222\" must start with nats://",
            ),
            (
                json!({"url": "nats://h:1,"}),
                "`store.url` \"\" must start with",
            ),
            (
                json!({"bucket": "a.b"}),
                "`store.bucket` \"a.b\": use 1 to 64",
            ),
            (
                json!({"token_env": "T", "credentials": "c.creds"}),
                "`store`: set only one of",
            ),
            (
                json!({"token_env": "T", "token_file": "t"}),
                "`store`: set only one of",
            ),
            (json!({"replicas": 0}), "`store.replicas` must be 1 to 5"),
            (json!({"history": 100}), "`store.history` must be 1 to 64"),
            (
                json!({"request_timeout": "500ms"}),
                "`store.request_timeout` must be at least 1s",
            ),
            (
                json!({"retry_max_delay": "1m"}),
                "`store.retry_max_delay` must be more than 0",
            ),
            (
                json!({"retry_max_delay": 0}),
                "`store.retry_max_delay` must be more than 0",
            ),
        ];
        for (json, expected) in cases {
            let e = read(json.clone()).unwrap_err();
            assert!(e.contains(expected), "{json}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // Where before who: a bad url is reported before two credentials.
        let e = read(json!({"url": "http://h", "token_env": "T", "token_file": "t"})).unwrap_err();
        assert!(e.contains("`store.url`"), "{e}");
        let with_bucket = |bucket: &str| NatsStoreConfig {
            bucket: bucket.into(),
            ..NatsStoreConfig::default()
        };
        for bucket in ["orch", "orch_prod-2"] {
            assert_eq!(with_bucket(bucket).check(), Ok(()));
        }
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(65)] {
            let e = with_bucket(bad).check();
            assert!(e.is_err_and(|e| e.contains("store.bucket")), "{bad:?}");
        }
    }

    #[test]
    fn a_named_token_is_read_when_asked_and_errors_name_the_source() {
        let unset = "ORCH_HANDOFF_TEST_SURELY_UNSET_NATS_TOKEN";
        let e = NatsAuth::TokenEnv(unset.into()).token().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the NATS token variable {unset} is not set")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let e = NatsAuth::TokenFile(file.clone()).token().unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot read the NATS token file {}",
                file.display()
            )),
            "{e}"
        );
        std::fs::write(&file, "hunter2-token\n").unwrap();
        let token = NatsAuth::TokenFile(file).token().unwrap().unwrap();
        assert_eq!(token.expose(), "hunter2-token");
        assert_eq!(NatsAuth::None.token().unwrap(), None);
        let creds = NatsAuth::CredentialsFile("/etc/orch/orch.creds".into());
        assert_eq!(creds.token().unwrap(), None);
    }
}
