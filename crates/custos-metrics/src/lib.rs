//! Custos metrics: counters, gauges and latency histograms for the gateway's `/metrics`
//! endpoint and for OTLP, one set of instruments for both.
//!
//! A [`Registry`] holds metric families by name; registering returns a cheap, cloneable handle
//! ([`Counter`], [`Gauge`], [`Histogram`]) that the request path keeps and updates with label
//! values, in the order of the family's label names. Each family is an OpenTelemetry SDK
//! instrument (`Counter<u64>`, `UpDownCounter<i64>`, `Histogram<f64>`): the SDK keeps the
//! series, one aggregation per label set. [`Registry::render`] collects them through one
//! cumulative reader and writes the Prometheus text format to serve with [`CONTENT_TYPE`];
//! [`Registry::collect`] hands the same collection to an OTLP exporter (custos-telemetry).
//! Nothing is measured twice.
//!
//! Nothing here panics or returns an error: a misuse (wrong number of label values, invalid
//! name, conflicting registration, invalid observation) is repaired or ignored, and counted in
//! `custos_metrics_errors_total{reason}`, which every registry renders.
//!
//! Label values are bounded, since agents choose some of them (an unknown tool name, for one):
//! each family keeps at most [`Limits::max_series_per_family`] label sets (the SDK's
//! cardinality limit), after which new ones are folded into the SDK's overflow series, shown
//! with [`OVERFLOW_LABEL_VALUE`] for every label; values are cut to
//! [`Limits::max_label_value_bytes`] before they reach the SDK.
//!
//! # Layout
//!
//! - `registry.rs`: [`Registry`], [`Limits`], registration rules, the meter provider, rendering.
//! - `family.rs`: one family: its names, its instrument, label values to attributes.
//! - `counter.rs`, `gauge.rs`, `histogram.rs`: the handles; `histogram.rs` also has [`Timer`]
//!   and [`LATENCY_BUCKETS`].
//! - `reader.rs`: the SDK's `ManualReader`, shared between the provider and the registry.
//! - `snapshot.rs`: a family's series from a collection, by label values, overflow mapped.
//! - `misuse.rs`: the absorbed misuses and `custos_metrics_errors_total`.
//! - `text.rs`: the exposition format: name rules, escaping, float spelling, lines.
//!
//! # Metrics the gateway should register
//!
//! A suggestion, for the crates that own each stage. Prefer label values from bounded sets
//! (configured agent ids and server names, fixed stage and reason words); the limits above are a
//! backstop, not a reason to label by tool name or request id.
//!
//! - `custos_calls_total{agent,decision}`, counter: `tools/call` requests by agent and decision
//!   (`allow`, `deny`, `error`).
//! - `custos_call_duration_seconds{stage}`, histogram: latency of the `whole` call and of the
//!   `policy`, `audit` (append) and `upstream` stages.
//! - `custos_upstream_errors_total{server}`, counter: upstream failures (exits, unreadable
//!   frames, timeouts).
//! - `custos_sessions{server}`, gauge: open sessions (HTTP) or running upstreams (stdio).
//! - `custos_auth_failures_total{reason}`, counter: rejected credentials, by the audit reason of
//!   the authentication error.
//! - `custos_protocol_errors_total{from}`, counter: malformed or oversized frames from the
//!   `client` or the `upstream`.
//! - `custos_tls_handshake_failures_total{reason}`, counter: TLS handshakes `custos serve`
//!   refused (`protocol`, `client_certificate`, `peer_identity`, `timeout`, `connection`).
//! - `custos_connections`, gauge, and `custos_connections_refused_total{reason}`, counter: open
//!   client connections of `custos serve`, and those cut off by a limit (`max_connections`,
//!   `header_timeout`, `body_timeout`).
//!
//! Histograms of latencies use [`LATENCY_BUCKETS`] and [`Histogram::start_timer`].
//!
//! ```
//! use custos_metrics::{Registry, LATENCY_BUCKETS};
//!
//! let registry = Registry::new();
//! let calls = registry.counter("custos_calls_total", "Tool calls by agent and decision.", &["agent", "decision"]);
//! let duration = registry.histogram(
//!     "custos_call_duration_seconds",
//!     "Time spent per call and per stage.",
//!     &["stage"],
//!     LATENCY_BUCKETS,
//! );
//!
//! let whole = duration.start_timer(&["whole"]);
//! duration.observe(&["policy"], 0.0003);
//! calls.inc(&["ci-bot", "allow"]);
//! whole.observe();
//!
//! assert!(registry.render().contains("custos_calls_total{agent=\"ci-bot\",decision=\"allow\"} 1\n"));
//! ```

mod counter;
mod family;
mod gauge;
mod histogram;
mod misuse;
mod reader;
mod registry;
mod snapshot;
mod text;

pub use counter::Counter;
pub use family::OVERFLOW_LABEL_VALUE;
pub use gauge::Gauge;
pub use histogram::{Histogram, Timer, LATENCY_BUCKETS};
pub use registry::{Limits, Registry, CONTENT_TYPE, DEFAULT_MAX_LABEL_VALUE_BYTES, DEFAULT_MAX_SERIES_PER_FAMILY};
