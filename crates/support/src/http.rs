//! HTTP client bits shared by the OpenClaw transport and the Discord
//! client (feature `http`, which brings `reqwest`).

use crate::text::{shorten, squash};

/// The response body, at most `cap` bytes of it (the rest is never read).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What went wrong below reqwest: its sources without hyper's wrapper
/// layers (`client error (Connect)`), else reqwest's own message without
/// the URL; control characters removed, at most 300 characters. Callers
/// that hold a secret blank it out of this.
pub fn cause(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.starts_with("client error (") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        // reqwest's own message, without the ` for url (…)` it appends.
        let mut shown = e.to_string();
        if let Some(url) = e.url() {
            shown = shown.replace(&format!(" for url ({url})"), "");
        }
        parts.push(shown);
    }
    shorten(&squash(&parts.join(": ")), 300)
}

/// Whether `url` names this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for u in [
            "http://localhost:1/",
            "http://127.0.0.1/",
            "http://[::1]:8/",
            "http://LOCALHOST/",
        ] {
            assert!(is_loopback(&u.parse().unwrap()), "{u}");
        }
        for u in [
            "http://10.0.0.1/",
            "https://discord.com/",
            "http://localhost.example/",
        ] {
            assert!(!is_loopback(&u.parse().unwrap()), "{u}");
        }
    }
}
