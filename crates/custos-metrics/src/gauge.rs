//! [`Gauge`]: a family of integers that go up and down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::family::{Family, Meta, Series};
use crate::text;

/// A gauge family: one `i64` per label set, set or moved up and down.
///
/// Cloning is cheap and every clone updates the same series. Label values are passed in the
/// order of the label names given at registration; a call with a different number of values
/// is ignored and counted in `custos_metrics_errors_total{reason="label_count"}`.
#[derive(Debug, Clone)]
pub struct Gauge {
    family: Arc<Family<GaugeSeries>>,
}

#[derive(Debug)]
pub(crate) struct GaugeSeries(AtomicI64);

impl Series for GaugeSeries {
    fn new(_meta: &Meta) -> Self {
        GaugeSeries(AtomicI64::new(0))
    }
}

impl Gauge {
    pub(crate) fn from_family(family: Arc<Family<GaugeSeries>>) -> Self {
        Gauge { family }
    }

    pub(crate) fn family(&self) -> &Family<GaugeSeries> {
        &self.family
    }

    /// Sets the series of `labels` to `v`.
    pub fn set(&self, labels: &[&str], v: i64) {
        self.family.with_series(labels, |series| series.0.store(v, Ordering::Relaxed));
    }

    /// Adds `delta` (which may be negative) to the series of `labels`.
    pub fn add(&self, labels: &[&str], delta: i64) {
        self.family.with_series(labels, |series| {
            series.0.fetch_add(delta, Ordering::Relaxed);
        });
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
    /// overflow series). Meant for tests.
    pub fn get(&self, labels: &[&str]) -> i64 {
        self.family.existing(labels).map_or(0, |series| series.0.load(Ordering::Relaxed))
    }

    pub(crate) fn render(&self, out: &mut String) {
        let meta = &self.family.meta;
        text::write_header(out, &meta.name, meta.help, meta.kind.type_name());
        for (values, series) in self.family.snapshot() {
            let value = series.0.load(Ordering::Relaxed);
            text::write_sample(out, &meta.name, "", &meta.label_names, &values, None, value);
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
        sessions.set(&["a"], 10);
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
