//! Custos telemetry: an OpenTelemetry span for every governed tool call, the W3C trace context
//! taken from the client and handed to the upstream, and OTLP export of spans and metrics to a
//! collector.
//!
//! Only this crate (and custos-metrics, whose instruments are the SDK's) imports the
//! `opentelemetry` crates; the gateway sees [`CallTracer`],
//! [`CallSpan`], [`Stage`] and [`TraceHeaders`]. Telemetry is never on the fail-closed path: a
//! collector that is down or slow loses spans, never calls (export runs on its own thread,
//! behind a bounded queue), and with telemetry off every span is an empty value.
//!
//! # Layout
//!
//! - `export.rs`: [`Telemetry`]: the tracer provider and OTLP exporter from `[telemetry]`, and
//!   its flush at shutdown.
//! - `metrics.rs`: the periodic OTLP push of the registry custos-metrics keeps for `/metrics`.
//! - `client.rs`: the HTTP/protobuf client, which runs each export on the Tokio runtime.
//! - `span.rs`: [`CallTracer`] and the spans of one call: `execute_tool {tool}` with its
//!   `policy`, `approval wait`, `audit append` and upstream children; the attribute names.
//! - `context.rs`: [`TraceHeaders`]: `traceparent`/`tracestate` read from a client and written
//!   for an upstream, and the HTTP request's headers carried to the pipeline.

mod client;
mod context;
mod export;
mod metrics;
mod span;

pub use context::{with_remote_parent, TraceHeaders};
pub use export::{Telemetry, TelemetryError};
pub use span::{attributes, CallSpan, CallStart, CallTracer, Stage};
