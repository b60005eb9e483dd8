//! Small helpers every orch crate may use (in the spirit of
//! rust-analyzer's `stdx`): a leaf crate with no orch dependency, so crates
//! that may not depend on each other still share one implementation.
//!
//! - [`text`]: what agents write is hostile input. [`text::terminal`] and
//!   [`text::one_line`] make any string safe to print on a terminal
//!   (control characters, escape sequences and bidi overrides become
//!   visible escapes); [`text::strip`] removes them instead, for text that
//!   is rendered into a task (Discord channel context).
//! - [`id`]: the one id rule (DESIGN §3) that run ids, step ids, agent ids
//!   and callers obey.
//! - [`url`]: [`url::redact_userinfo`], applied wherever a URL from the
//!   configuration is shown (credentials in `http://user:pass@host`).
//! - [`secret`]: [`secret::Secret`], a value `Debug`/`Display` never show,
//!   [`secret::redact`] for text that might quote one, and
//!   [`secret::read_secret`], which reads one from the variable or file a
//!   config names (errors name the source, never the value).
//! - [`duration`]: the one duration syntax (`120`, `90s`, `1h 30m`) of
//!   flags, `orch.yaml` and workflow files, and for serde [`duration::Dur`]
//!   or, on a plain `Duration` field, `#[serde(with =
//!   "orch_support::duration::serde")]`.
//! - `http` (feature `http`): reading a capped response body, the cause of
//!   a reqwest error without its wrapper layers, whether a URL is loopback.
//! - `schema` (feature `schema`): a type's JSON Schema in the one shape
//!   every committed `*.schema.json` has.
#![warn(missing_docs)]

pub mod duration;
#[cfg(feature = "http")]
pub mod http;
pub mod id;
#[cfg(feature = "schema")]
pub mod schema;
pub mod secret;
pub mod text;
pub mod url;
