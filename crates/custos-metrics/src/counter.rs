//! [`Counter`]: a family of monotonically increasing integers.

use std::sync::Arc;

use crate::family::Family;
use crate::snapshot::Value;

/// A counter family: one `u64` per label set, that only goes up; an SDK `Counter<u64>` (a
/// monotonic sum over OTLP).
///
/// Cloning is cheap and every clone updates the same series. Label values are passed in the
/// order of the label names given at registration; a call with a different number of values
/// is ignored and counted in `custos_metrics_errors_total{reason="label_count"}`.
#[derive(Debug, Clone)]
pub struct Counter {
    family: Arc<Family<opentelemetry::metrics::Counter<u64>>>,
}

impl Counter {
    pub(crate) fn from_family(family: Arc<Family<opentelemetry::metrics::Counter<u64>>>) -> Self {
        Counter { family }
    }

    pub(crate) fn family(&self) -> &Family<opentelemetry::metrics::Counter<u64>> {
        &self.family
    }

    /// Adds one to the series of `labels`.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    /// Adds `n` to the series of `labels`.
    pub fn add(&self, labels: &[&str], n: u64) {
        if let (Some(counter), Some(attributes)) = (&self.family.instrument, self.family.attributes(labels)) {
            counter.add(n, &attributes);
        }
    }

    /// The value of the series of `labels`; 0 if it was never updated (or was folded into the
    /// overflow series). Collects every family, so it is meant for tests.
    pub fn get(&self, labels: &[&str]) -> u64 {
        match self.family.point(labels).map(|p| p.value) {
            Some(Value::Counter(n)) => n,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Registry;

    #[test]
    fn concurrent_increments_from_threads_sum_correctly() {
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 10_000;
        let registry = Registry::new();
        let calls = registry.counter("calls_total", "c", &["agent", "decision"]);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let calls = calls.clone();
                let registry = registry.clone();
                scope.spawn(move || {
                    let own = format!("agent-{t}");
                    for i in 0..PER_THREAD {
                        calls.inc(&["shared", "allow"]);
                        // New series appear while others update and render.
                        calls.add(&[&own, "deny"], 2);
                        if i % 2_500 == 0 {
                            let _ = registry.render();
                        }
                    }
                });
            }
        });
        assert_eq!(calls.get(&["shared", "allow"]), THREADS * PER_THREAD);
        for t in 0..THREADS {
            assert_eq!(calls.get(&[&format!("agent-{t}"), "deny"]), 2 * PER_THREAD);
        }
    }
}
