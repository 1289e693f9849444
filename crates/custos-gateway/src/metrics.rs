//! What the pipeline counts and times, for `/metrics`.

use custos_metrics::{Counter, Histogram, Registry, LATENCY_BUCKETS};

/// The pipeline's metric families. Cheap to clone: each is a handle into the registry.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// Tool calls decided, by agent and decision.
    pub calls: Counter,
    /// Seconds per stage of a call: `policy`, `audit` (each durable append), `upstream` (forward
    /// to answer) and `whole` (request received to answer recorded).
    pub duration: Histogram,
    /// Calls that failed upstream (an error answer or the upstream exiting), by server.
    pub upstream_errors: Counter,
    /// Malformed, oversized or refused messages, by which side sent them.
    pub protocol_errors: Counter,
    /// What detectors saw, by finding kind and severity.
    pub findings: Counter,
}

impl GatewayMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            calls: registry.counter(
                "custos_calls_total",
                "Tool calls decided, by agent and decision.",
                &["agent", "decision"],
            ),
            duration: registry.histogram(
                "custos_call_duration_seconds",
                "Seconds per stage of a tool call: policy, audit, upstream, whole.",
                &["stage"],
                LATENCY_BUCKETS,
            ),
            upstream_errors: registry.counter(
                "custos_upstream_errors_total",
                "Tool calls that failed upstream, by server.",
                &["server"],
            ),
            protocol_errors: registry.counter(
                "custos_protocol_errors_total",
                "Malformed, oversized or refused messages, by the side that sent them.",
                &["from"],
            ),
            findings: registry.counter(
                "custos_findings_total",
                "Findings recorded by the gateway's detectors, by kind and severity.",
                &["kind", "severity"],
            ),
        }
    }
}
