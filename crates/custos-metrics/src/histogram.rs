//! [`Histogram`]: a family of latency distributions in seconds, and its [`Timer`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use crate::family::Family;
use crate::misuse::Misuse;
use crate::snapshot::Value;

/// Bucket upper bounds in seconds for request latencies, from half a millisecond to ten seconds.
///
/// Policy decisions and audit appends land in the low buckets, upstream tool calls anywhere.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram family: per label set, how many observations fell at or below each bucket bound,
/// their count and their sum; an SDK `Histogram<f64>` with explicit buckets, unit `s`.
///
/// Cloning is cheap and every clone updates the same series. Label values are passed in the
/// order of the label names given at registration; a call with a different number of values
/// is ignored and counted in `custos_metrics_errors_total{reason="label_count"}`. Observations
/// must be finite and not negative; others are dropped and counted as `invalid_value`.
#[derive(Debug, Clone)]
pub struct Histogram {
    family: Arc<Family<opentelemetry::metrics::Histogram<f64>>>,
}

impl Histogram {
    pub(crate) fn from_family(family: Arc<Family<opentelemetry::metrics::Histogram<f64>>>) -> Self {
        Histogram { family }
    }

    pub(crate) fn family(&self) -> &Family<opentelemetry::metrics::Histogram<f64>> {
        &self.family
    }

    /// Records one observation of `seconds` in the series of `labels`.
    pub fn observe(&self, labels: &[&str], seconds: f64) {
        if let Some(attributes) = self.family.attributes(labels) {
            self.record(&attributes, seconds);
        }
    }

    fn record(&self, attributes: &[KeyValue], seconds: f64) {
        if !valid_observation(seconds) {
            self.family.shared.misuse.record(Misuse::InvalidValue);
            return;
        }
        if let Some(histogram) = &self.family.instrument {
            histogram.record(seconds, attributes);
        }
    }

    /// Records one observation of `duration` in the series of `labels`.
    pub fn observe_duration(&self, labels: &[&str], duration: Duration) {
        self.observe(labels, duration.as_secs_f64());
    }

    /// Starts timing now; the [`Timer`] observes the elapsed time in the series of `labels`
    /// when it is stopped or dropped.
    ///
    /// The attributes are made once, here, so stopping the timer only records.
    pub fn start_timer(&self, labels: &[&str]) -> Timer {
        Timer { histogram: self.clone(), attributes: self.family.attributes(labels), start: Instant::now() }
    }

    /// Number of observations in the series of `labels`; 0 if there is no such series.
    /// Collects every family, so it is meant for tests.
    pub fn count(&self, labels: &[&str]) -> u64 {
        match self.family.point(labels).map(|p| p.value) {
            Some(Value::Histogram { buckets, .. }) => buckets.iter().sum(),
            _ => 0,
        }
    }

    /// Sum of the observations in the series of `labels`, in seconds; 0 if there is no such
    /// series. Collects every family, so it is meant for tests.
    pub fn sum(&self, labels: &[&str]) -> f64 {
        match self.family.point(labels).map(|p| p.value) {
            Some(Value::Histogram { sum, .. }) => sum,
            _ => 0.0,
        }
    }
}

fn valid_observation(seconds: f64) -> bool {
    seconds.is_finite() && seconds >= 0.0
}

/// Measures one duration into a [`Histogram`] series; made by [`Histogram::start_timer`].
///
/// Dropping the timer observes the elapsed time, so that an early return (`?`) still records the
/// stage; call [`Timer::discard`] to record nothing.
#[derive(Debug)]
#[must_use = "a timer dropped at once observes a duration of almost zero"]
pub struct Timer {
    histogram: Histogram,
    /// `None` once observed or discarded, or if the label count was wrong.
    attributes: Option<Vec<KeyValue>>,
    start: Instant,
}

impl Timer {
    /// Time since the timer started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Observes the elapsed time now and returns it.
    pub fn observe(mut self) -> Duration {
        let elapsed = self.start.elapsed();
        self.record(elapsed);
        elapsed
    }

    /// Stops the timer without observing anything.
    pub fn discard(mut self) {
        self.attributes = None;
    }

    fn record(&mut self, elapsed: Duration) {
        if let Some(attributes) = self.attributes.take() {
            self.histogram.record(&attributes, elapsed.as_secs_f64());
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.record(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    /// The cumulative `_bucket` values of one series, `+Inf` last, read from the output.
    fn bucket_values(text: &str, series_prefix: &str) -> Vec<u64> {
        text.lines()
            .filter(|line| line.starts_with(series_prefix))
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn bucket_counts_are_cumulative_and_bounds_inclusive() {
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &["stage"], &[0.01, 0.1, 1.0]);
        for v in [0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 1e9] {
            h.observe(&["s"], v);
        }
        let text = registry.render();
        assert_eq!(bucket_values(&text, "h_seconds_bucket{stage=\"s\""), [2, 4, 6, 8]);
        assert!(text.contains("h_seconds_count{stage=\"s\"} 8\n"), "{text}");
        assert_eq!(h.count(&["s"]), 8);
        assert_eq!(h.sum(&["s"]), 0.01 + 0.05 + 0.1 + 0.5 + 1.0 + 3.0 + 1e9);
    }

    #[test]
    fn latency_buckets_are_valid() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(LATENCY_BUCKETS.iter().all(|b| b.is_finite() && *b > 0.0));
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &[], LATENCY_BUCKETS);
        h.observe_duration(&[], Duration::from_millis(3));
        let text = registry.render();
        assert_eq!(text.matches("h_seconds_bucket{").count(), LATENCY_BUCKETS.len() + 1);
        assert!(text.contains("h_seconds_bucket{le=\"0.0025\"} 0\nh_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("h_seconds_sum 0.003\n"), "{text}");
        assert_eq!(registry.misuse(Misuse::InvalidBuckets), 0);
    }

    #[test]
    fn invalid_observations_are_dropped_and_counted() {
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &[], &[1.0]);
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5] {
            h.observe(&[], v);
        }
        h.observe(&[], 0.5);
        assert_eq!(h.count(&[]), 1);
        assert_eq!(h.sum(&[]), 0.5);
        assert_eq!(registry.misuse(Misuse::InvalidValue), 4);
        let text = registry.render();
        assert!(!text.contains("NaN") && !text.contains(" +Inf\n") && !text.contains("-Inf"), "{text}");
    }

    #[test]
    fn timers_observe_once_when_stopped_or_dropped() {
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &["stage"], LATENCY_BUCKETS);

        let timer = h.start_timer(&["observed"]);
        std::thread::sleep(Duration::from_millis(2));
        let elapsed = timer.observe();
        assert!(elapsed >= Duration::from_millis(2));
        assert_eq!(h.count(&["observed"]), 1);
        assert_eq!(h.sum(&["observed"]), elapsed.as_secs_f64());

        {
            let _timer = h.start_timer(&["dropped"]);
        }
        assert_eq!(h.count(&["dropped"]), 1);

        h.start_timer(&["discarded"]).discard();
        assert_eq!(h.count(&["discarded"]), 0);

        // An early return through `?` still records the stage.
        fn stage(h: &Histogram) -> Result<(), ()> {
            let _timer = h.start_timer(&["failed"]);
            Err(())?;
            Ok(())
        }
        assert!(stage(&h).is_err());
        assert_eq!(h.count(&["failed"]), 1);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &["stage"], LATENCY_BUCKETS);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let h = &h;
                scope.spawn(move || {
                    for i in 0..5_000 {
                        h.observe(&[if (t + i) % 2 == 0 { "a" } else { "b" }], 0.25);
                    }
                });
            }
        });
        assert_eq!(h.count(&["a"]) + h.count(&["b"]), 20_000);
        assert_eq!(h.sum(&["a"]) + h.sum(&["b"]), 5_000.0);
        let text = registry.render();
        assert_eq!(bucket_values(&text, "h_seconds_bucket{stage=\"a\"").last(), Some(&h.count(&["a"])));
    }
}
