//! [`Gauge`]: a family of integers that go up and down.

use std::sync::Arc;

use crate::family::Family;
use crate::snapshot::Value;

/// A gauge family: one `i64` per label set, moved up and down; an SDK `UpDownCounter<i64>` (a
/// non-monotonic sum over OTLP). There is no `set`: every gauge of the gateway counts things
/// that open and close, and an up-down counter adds across label sets and processes, which a
/// last-value gauge does not.
///
/// Cloning is cheap and every clone updates the same series. Label values are passed in the
/// order of the label names given at registration; a call with a different number of values
/// is ignored and counted in `custos_metrics_errors_total{reason="label_count"}`.
#[derive(Debug, Clone)]
pub struct Gauge {
    family: Arc<Family<opentelemetry::metrics::UpDownCounter<i64>>>,
}

impl Gauge {
    pub(crate) fn from_family(family: Arc<Family<opentelemetry::metrics::UpDownCounter<i64>>>) -> Self {
        Gauge { family }
    }

    pub(crate) fn family(&self) -> &Family<opentelemetry::metrics::UpDownCounter<i64>> {
        &self.family
    }

    /// Adds `delta` (which may be negative) to the series of `labels`.
    pub fn add(&self, labels: &[&str], delta: i64) {
        if let (Some(gauge), Some(attributes)) = (&self.family.instrument, self.family.attributes(labels)) {
            gauge.add(delta, &attributes);
        }
    }

    /// Adds one to the series of `labels`.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    /// Subtracts one from the series of `labels`.
    pub fn dec(&self, labels: &[&str]) {
        self.add(labels, -1);
    }

    /// The value of the series of `labels`; 0 if it was never updated (or was folded into the
    /// overflow series). Collects every family, so it is meant for tests.
    pub fn get(&self, labels: &[&str]) -> i64 {
        match self.family.point(labels).map(|p| p.value) {
            Some(Value::Gauge(n)) => n,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Registry;

    #[test]
    fn gauges_set_add_inc_and_dec() {
        let registry = Registry::new();
        let sessions = registry.gauge("sessions", "s", &["server"]);
        sessions.add(&["a"], 10);
        sessions.inc(&["a"]);
        sessions.dec(&["a"]);
        sessions.dec(&["a"]);
        sessions.add(&["a"], -20);
        sessions.dec(&["b"]);
        assert_eq!(sessions.get(&["a"]), -11);
        assert_eq!(sessions.get(&["b"]), -1);
        assert!(registry.render().contains("sessions{server=\"a\"} -11\nsessions{server=\"b\"} -1\n"));
    }

    #[test]
    fn concurrent_inc_and_dec_balance() {
        let registry = Registry::new();
        let sessions = registry.gauge("sessions", "s", &["server"]);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        sessions.inc(&["s"]);
                        sessions.dec(&["s"]);
                    }
                });
            }
        });
        assert_eq!(sessions.get(&["s"]), 0);
    }
}
