//! Store descriptors: one string that says where a store is, for an agent
//! on another host (`ORCH_STORE`, `--store`). It carries no secret, only
//! the *name* of the variable or file that holds one:
//!
//! ```text
//! nats://host1:4222,host2:4222/orch?token_env=NATS_TOKEN   NATS store, bucket orch
//! tls://host1:4222/team-b?credentials=/etc/orch/agent.creds
//! file:///srv/orch/handoffs                                file store at an absolute path
//! ```
//!
//! A NATS descriptor names every server of the cluster the caller knows
//! (comma-separated, the first one's scheme applies to hosts without one)
//! and the bucket (default `orch`). Query keys: `token_env`, `token_file`,
//! `credentials` (at most one). Anything else is refused with what is
//! allowed.

use std::path::{Path, PathBuf};

use orch_handoff::{NatsAuth, NatsStoreConfig};

use crate::app::config::{StoreKind, StoreSection};

/// The store `descriptor` names, over `base` (whose other settings, such
/// as the handoff cap, it keeps).
pub(crate) fn parse(descriptor: &str, base: &StoreSection) -> Result<StoreSection, String> {
    let d = descriptor.trim();
    let shown = orch_support::url::redact_userinfo(d);
    let bad = |why: &str| format!("store descriptor {shown:?}: {why}");
    if let Some(path) = d.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad(
                "a file store needs an absolute path (file:///srv/orch/handoffs)",
            ));
        }
        let mut store = base.clone();
        store.kind = StoreKind::Fs;
        store.fs.root = PathBuf::from(path);
        return Ok(store);
    }
    let Some((scheme, rest)) = d.split_once("://") else {
        return Err(bad("start it with nats://, tls:// or file://"));
    };
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Err(bad("start it with nats://, tls:// or file://"));
    }
    if rest.contains('@') {
        // Not quoted further: the part before `@` is a secret.
        return Err(
            "a store descriptor must not hold credentials: name them with ?token_env=VAR, ?token_file=PATH or ?credentials=PATH"
                .into(),
        );
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    // The bucket is the part after the last host: `/bucket` at the end.
    let (hosts, bucket) = match rest.rsplit_once('/') {
        Some((hosts, bucket)) if !hosts.ends_with(':') => (hosts, bucket),
        _ => (rest, ""),
    };
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains("://") {
                h.to_owned()
            } else {
                format!("{scheme}://{h}")
            }
        })
        .collect();
    if urls.is_empty() {
        return Err(bad("no server named"));
    }
    let (mut token_env, mut token_file, mut credentials) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if value.is_empty() {
            return Err(bad(&format!("`{key}` needs a value")));
        }
        match key {
            "token_env" => token_env = Some(value.to_owned()),
            "token_file" => token_file = Some(PathBuf::from(value)),
            "credentials" => credentials = Some(PathBuf::from(value)),
            other => {
                return Err(bad(&format!(
                    "unknown key `{other}` (known: token_env, token_file, credentials)"
                )));
            }
        }
    }
    // The other settings (replicas, timeouts, the cap) stay the base's.
    let nats = NatsStoreConfig {
        url: urls.join(","),
        bucket: if bucket.is_empty() {
            NatsStoreConfig::default().bucket
        } else {
            bucket.to_owned()
        },
        auth: NatsAuth::None,
        ..base.nats.clone()
    };
    nats.check().map_err(|e| bad(&e))?;
    let mut store = base.clone();
    store.kind = StoreKind::Nats;
    store.nats = NatsStoreConfig {
        auth: NatsAuth::named(token_env, token_file, credentials).map_err(|e| bad(&e))?,
        ..nats
    };
    Ok(store)
}

/// The descriptor of `store` (the file store's root made absolute against
/// `cwd`): what an agent needs to reach it.
pub(crate) fn of(store: &StoreSection, cwd: &Path) -> String {
    match store.kind {
        StoreKind::Fs => {
            let root = &store.fs.root;
            let path = if root.is_absolute() {
                root.clone()
            } else {
                cwd.join(root)
            };
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            format!("file://{}", path.display())
        }
        StoreKind::Nats => {
            let n = &store.nats;
            // Hosts after the first keep their own scheme only if it
            // differs from the first one's.
            let first = format!("{}://", n.url.split("://").next().unwrap_or("nats"));
            let mut out = String::new();
            for (i, url) in n.url.split(',').map(str::trim).enumerate() {
                let url = url.trim_end_matches('/');
                if i > 0 {
                    out.push(',');
                    out.push_str(url.strip_prefix(first.as_str()).unwrap_or(url));
                } else {
                    out.push_str(url);
                }
            }
            out.push('/');
            out.push_str(&n.bucket);
            // The credential by name; a token value has none (and is
            // never written).
            let query = match &n.auth {
                NatsAuth::TokenEnv(v) => Some(format!("token_env={v}")),
                NatsAuth::TokenFile(p) => Some(format!("token_file={}", p.display())),
                NatsAuth::CredentialsFile(p) => Some(format!("credentials={}", p.display())),
                _ => None,
            };
            if let Some(query) = query {
                out.push('?');
                out.push_str(&query);
            }
            out
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nats(d: &str) -> StoreSection {
        parse(d, &StoreSection::default()).unwrap()
    }

    #[test]
    fn a_nats_descriptor_names_every_server_the_bucket_and_the_secret_by_name() {
        let s = nats("nats://h1:4222,h2:4222,tls://h3:4333/team-b?token_env=NATS_TOKEN");
        assert_eq!(s.kind, StoreKind::Nats);
        assert_eq!(s.nats.url, "nats://h1:4222,nats://h2:4222,tls://h3:4333");
        assert_eq!(s.nats.bucket, "team-b");
        assert_eq!(s.nats.auth, NatsAuth::TokenEnv("NATS_TOKEN".into()));
        assert_eq!(nats("nats://h1:4222").nats.bucket, "orch");
        assert_eq!(nats("nats://h1:4222/").nats.bucket, "orch");
        let creds = nats("tls://h:1/b?credentials=/etc/a.creds");
        assert_eq!(
            creds.nats.auth,
            NatsAuth::CredentialsFile(PathBuf::from("/etc/a.creds"))
        );
    }

    #[test]
    fn a_descriptor_round_trips() {
        for d in [
            "nats://h1:4222,h2:4222/orch?token_env=NATS_TOKEN",
            "tls://h1:4222/team-b?credentials=/etc/orch/agent.creds",
            "nats://127.0.0.1:4222/orch",
            "file:///srv/orch/handoffs",
        ] {
            let store = parse(d, &StoreSection::default()).unwrap();
            assert_eq!(of(&store, Path::new("/")), d);
        }
    }

    #[test]
    fn bad_descriptors_say_what_is_wrong_and_never_echo_a_secret() {
        let base = StoreSection::default();
        let err = |d: &str| parse(d, &base).unwrap_err();
        assert!(err("redis://h/x").contains("nats://, tls:// or file://"));
        assert!(err("file://relative/dir").contains("absolute path"));
        let e = err("nats://user:hunter2@h:4222/orch");
        assert!(
            e.contains("must not hold credentials") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(err("nats://h:4222/orch?token=abc").contains("unknown key `token`"));
        assert!(err("nats://h:4222/orch?token_env=").contains("needs a value"));
        assert!(err("nats://h:4222/bad.bucket").contains("store.bucket"));
        assert!(err("nats:///orch").contains("no server"));
        assert!(err("nats://h/o?token_env=A&credentials=/c").contains("only one of"));
    }
}
