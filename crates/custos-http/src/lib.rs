//! `custos serve`: MCP over Streamable HTTP, through the same pipeline as `custos run`.
//!
//! Each configured server with a `command` is served at `/mcp/{server}`. An MCP session
//! (session-based revisions: `initialize`, `Mcp-Session-Id`, DELETE to end it) belongs to the
//! agent that opened it and gets its own upstream child process and its own
//! [`custos_gateway::Gateway`]: the pipeline of `custos run`, not a second copy of it. Every
//! request carries the agent's credential; a session id alone never authenticates.
//!
//! # Layout
//!
//! - [`admin`]: the admin API (agents, tools, runs, audit, OpenAPI) and `/metrics`, on their own
//!   listener with their own bearer token.
//! - [`api`]: `/api/{name}/…`, the reverse proxy for plain HTTP APIs (`[[apis]]`): each
//!   request an operation of the API, governed by the same pipeline as an MCP tool call.
//! - [`federation`]: `/mcp`, one endpoint for every served server's tools, named
//!   `SERVER__TOOL`.
//! - [`server`]: the router, the handlers for POST / GET / DELETE, and shutdown.
//! - `answer`: answering a forwarded request: JSON when the upstream's answer comes first, else
//!   an SSE stream of what it says until the answer; calls held for approval too.
//! - `listen`: the accept loop plain HTTP and TLS share: the `max_connections` cap, hyper's
//!   header timeout (slowloris), graceful drain at shutdown.
//! - [`auth`]: who is calling: API keys checked against the registry, JWTs, or the SPIFFE ID
//!   of the connection's client certificate; 401 / 403 with the
//!   `WWW-Authenticate` challenge and the protected resource metadata (RFC 9728).
//! - [`exchange`]: RFC 8693 token exchange (`/oauth/token`) and the JWKS of the gateway's own
//!   signing keys (`/.well-known/jwks.json`).
//! - [`jwks`]: the identity provider's key set for bearer tokens, from a file or fetched from
//!   a URL and refreshed (periodically, and when a token names an unknown key id).
//! - [`session`]: one MCP session: its upstream, the requests waiting for answers, and the
//!   event streams that carry what the upstream says on its own.
//! - `places`: the bounds on sessions: places among `max_sessions` and
//!   `max_sessions_per_agent`, and what keeps a session in use (requests, open streams) for
//!   `session_idle_timeout_ms`; the reaper that closes idle ones is in [`server`].
//! - `stateless`: requests of the 2026-07-28 revision, which carry no session: one upstream per
//!   agent and server, ids rewritten so independent clients cannot collide.
//! - `restart`: when a dead upstream is started again (one backoff policy for all).
//! - [`tls`]: `[serve.tls]`: the accept loop with a TLS handshake in front of each connection,
//!   and the SPIFFE ID of the client certificate attached to each of its requests.
//! - [`reply`]: HTTP responses with JSON bodies (JSON-RPC errors where the client speaks MCP).

pub mod admin;
mod answer;
pub mod api;
pub mod auth;
pub mod exchange;
pub mod federation;
pub mod jwks;
mod listen;
mod places;
pub mod reply;
mod restart;
pub mod server;
pub mod session;
mod stateless;
pub mod tls;

pub use listen::{bind, LISTEN_BACKLOG};
pub use server::{serve, AppState};
pub use tls::serve_tls;
