//! The Custos gateway: the pipeline every tool call goes through, and the transports that feed it.
//!
//! ```text
//! agent ──► attribute (run, step) ──► classify tool ──► decide (Cedar)
//!       ──► [hold → approval request; wait for a human, decide again]
//!       ──► audit request + decision (durable) ──► forward upstream
//!       ──► audit result ──► reply to agent
//! ```
//!
//! The pipeline ([`Gateway`]) knows nothing about stdio or HTTP: a transport hands it frames from
//! either side and does what the returned [`Outcome`] says. Everything that is not a tool call
//! passes through as the same bytes; `tools/list` results are recorded in the tool inventory and,
//! by configuration, filtered to the tools the agent may call.
//!
//! # Layout
//!
//! - [`pipeline`]: [`Gateway`], the stages of one call in the order they run.
//! - [`broker`]: the credentials the gateway holds for upstreams: injection, minted tokens, the
//!   leak guard over what upstreams send.
//! - [`detect`]: the detectors around a call (quarantine, replay, abuse, first use, toxic flows,
//!   injection in results, poisoned descriptors) and what a run gathers (labels, findings).
//! - `abuse`: replay, rate limits, budgets, loops and bursts: process-wide counters.
//! - [`held`]: calls held for a human approval: waiting, progress, running once approved.
//! - [`metrics`]: what the pipeline counts and times for `/metrics`.
//! - [`pending`]: requests forwarded and not yet answered, each way, keyed by their raw id: only
//!   answers to these are relayed.
//! - [`tools_list`]: recording and filtering a `tools/list` result without re-serializing the rest.
//! - [`remote`]: a remote Streamable HTTP server as an upstream.
//! - [`stdio`]: the stdio transport of `custos run`: a child process, two ordered pumps, shutdown.

pub mod abuse;
pub mod api;
pub mod broker;
pub mod detect;
pub mod held;
pub mod metrics;
pub mod pending;
pub mod pipeline;
pub mod remote;
pub mod stdio;
pub mod tools_list;

pub use broker::{Broker, BrokerError, BrokerSources, Keys};
pub use metrics::GatewayMetrics;
pub use pipeline::{Admission, Admitted, CallInput, Ended, Ending, Gateway, GatewaySpec, Outcome};
pub use remote::RemoteUpstream;
pub use stdio::{serve_stdio, shutdown_signal, ChildUpstream, StdioError, StdioExit};

/// Milliseconds since the Unix epoch: the time stamped on events.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
