//! The web console of `custos serve`: where approvers sign in and decide held calls, and
//! security reviews agents, runs and calls.
//!
//! Server-rendered pages (templates compiled into the binary with `askama`, escaped by
//! default), one stylesheet and one small script embedded with them: nothing to build but the
//! crate, and every page reads and decides with JavaScript off. With it, live views update from
//! Server-Sent Events.
//!
//! Approvers are who the identity provider says they are (OpenID Connect, `oidc.rs`), or, where
//! there is none, who a one-time link made on the gateway host says (`link.rs`). A decision
//! records the approver's name, how they signed in (issuer, subject) and the session.
//!
//! # Layout
//!
//! - `console.rs`: [`Console`], what the handlers share, and [`ConsoleParts`], what the serving
//!   process hands it.
//! - `router.rs`: [`router`], every route under `/console`.
//! - `session.rs`: sessions (cookie tokens kept as digests, idle and absolute timeouts, CSRF
//!   tokens) and begun sign-ins.
//! - `auth.rs`: the session cookie read and checked; the CSRF and origin check of form posts.
//! - `sign_in.rs`: the sign-in page, one-time links, the OpenID Connect code flow, sign-out.
//! - `link.rs`: one-time sign-in links, made by `custos console login-link`.
//! - [`oidc`]: the OpenID Connect relying party approvers sign in through: discovery, the
//!   authorization code flow with PKCE, ID token verification ([`oidc::OidcClient`]).
//! - `approvals.rs`: the inbox, one request, the decision.
//! - `calls.rs`: live calls (newest first, filtered), and what the list pages share: query
//!   parameters checked, the newest events of the log read back from its head.
//! - `stream.rs`: the live list's Server-Sent Events (`row` events, polled, capped in number).
//! - `runs.rs`: the runs, and one run as an SVG timeline over its ordered steps.
//! - [`story`]: one run's story from its events, shared with `custos report run`.
//! - `agents.rs`: agents with their keys, last use and drift.
//! - [`drift`]: access drift (granted against used), shared with `custos report drift`.
//! - `tools.rs`: the inventory, quarantined tools with their diff, acceptance by an approver.
//! - `findings.rs`: recorded findings, filtered.
//! - `audit.rs`: the chain's head and verification, a search of the events.
//! - `explain.rs`: what the policies would decide for a call, and why (records nothing).
//! - `page.rs`: security headers (a strict Content-Security-Policy), error pages, the frame.
//! - `templates/`, `static/`: the pages, the stylesheet, the script.

mod agents;
mod approvals;
mod audit;
mod auth;
mod calls;
mod console;
pub mod drift;
mod error;
pub mod explain;
mod findings;
pub mod link;
pub mod oidc;
mod page;
mod router;
mod runs;
mod session;
mod sign_in;
pub mod story;
mod stream;
mod tools;

pub use console::{now_ms, Console, ConsoleParts};
pub use error::ConsoleError;
pub use page::time;
pub use router::router;
