//! A family: one metric name, its label names, and the SDK instrument its series live in.
//!
//! The series themselves (one aggregation per label set, the cap on label sets, the overflow
//! series past it) are the OpenTelemetry SDK's; a family only turns label values, passed in the
//! order of its label names, into the SDK's attributes, after checking their number and cutting
//! them to the length limit.

use std::sync::Arc;

use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::metrics::data::ResourceMetrics;

use crate::misuse::{Misuse, MisuseCounts};
use crate::reader::SharedReader;
use crate::registry::Limits;
use crate::snapshot::{self, Point};

/// The label value of every label of the series that absorbs label sets past the limit.
///
/// The SDK marks that series with the attribute `otel.metric.overflow=true` (what OTLP carries);
/// `/metrics` shows it with this value for every label, as it always has.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// What kind of metric a family holds, with what the kind needs to know.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    /// Upper bounds of the finite buckets, sorted, finite and distinct; `+Inf` is implied.
    Histogram(Box<[f64]>),
}

impl Kind {
    /// The `# TYPE` word.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }

    /// Suffixes of the sample names the family writes, appended to its name.
    pub(crate) fn sample_suffixes(&self) -> &'static [&'static str] {
        match self {
            Kind::Counter | Kind::Gauge => &[""],
            Kind::Histogram(_) => &["_bucket", "_sum", "_count"],
        }
    }
}

/// Everything about a family but its series. Names are already sanitized.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Meta {
    pub(crate) name: String,
    pub(crate) help: &'static str,
    pub(crate) label_names: Box<[String]>,
    pub(crate) kind: Kind,
}

/// What every family of a registry shares: where to collect from, the limits, the misuse counts.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) reader: SharedReader,
    pub(crate) limits: Limits,
    pub(crate) misuse: Arc<MisuseCounts>,
}

impl Shared {
    /// Everything the SDK holds now; `None` once the provider is shut down.
    pub(crate) fn collect(&self) -> Option<ResourceMetrics> {
        use opentelemetry_sdk::metrics::reader::MetricReader as _;
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm).ok().map(|()| rm)
    }
}

pub(crate) struct Family<I> {
    pub(crate) meta: Meta,
    /// The label names as attribute keys, shared (not copied) by every update's attributes.
    keys: Box<[Key]>,
    /// `None` for a family that lost a conflicting registration: it takes updates and keeps
    /// nothing.
    pub(crate) instrument: Option<I>,
    pub(crate) shared: Arc<Shared>,
}

impl<I> Family<I> {
    pub(crate) fn new(meta: Meta, instrument: Option<I>, shared: Arc<Shared>) -> Self {
        let keys = meta.label_names.iter().map(|name| Key::from(Arc::<str>::from(name.as_str()))).collect();
        Family { meta, keys, instrument, shared }
    }

    /// The attributes of one update; `None` (counted) for a wrong number of label values.
    pub(crate) fn attributes(&self, values: &[&str]) -> Option<Vec<KeyValue>> {
        if !self.arity_ok(values) {
            return None;
        }
        let max = self.shared.limits.max_label_value_bytes;
        Some(
            self.keys
                .iter()
                .zip(values)
                .map(|(key, value)| KeyValue::new(key.clone(), truncate(value, max).to_owned()))
                .collect(),
        )
    }

    /// The series of `values` as collected now; `None` if it has none (or the count is wrong).
    /// Collects everything, so it is meant for tests.
    pub(crate) fn point(&self, values: &[&str]) -> Option<Point> {
        if !self.arity_ok(values) {
            return None;
        }
        let max = self.shared.limits.max_label_value_bytes;
        let rm = self.shared.collect()?;
        snapshot::points(&rm, &self.meta)
            .into_iter()
            .find(|point| point.values.iter().map(String::as_str).eq(values.iter().map(|v| truncate(v, max))))
    }

    fn arity_ok(&self, values: &[&str]) -> bool {
        let ok = values.len() == self.keys.len();
        if !ok {
            self.shared.misuse.record(Misuse::LabelCount);
        }
        ok
    }
}

impl<I> std::fmt::Debug for Family<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.meta.name)
            .field("kind", &self.meta.kind.type_name())
            .field("label_names", &self.meta.label_names)
            .finish_non_exhaustive()
    }
}

/// Cuts `value` to at most `max_bytes` bytes, on a character boundary.
pub(crate) fn truncate(value: &str, max_bytes: usize) -> &str {
    if value.len() <= max_bytes {
        return value;
    }
    let mut end = max_bytes;
    while !value.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    value.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Registry, DEFAULT_MAX_SERIES_PER_FAMILY};

    fn small(max_series_per_family: usize) -> Registry {
        Registry::with_limits(Limits { max_series_per_family, ..Limits::default() })
    }

    fn series(text: &str, name: &str) -> usize {
        text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count()
    }

    #[test]
    fn new_label_sets_past_the_limit_fold_into_the_overflow_series() {
        let registry = small(3);
        let calls = registry.counter("calls_total", "c", &["agent", "tool"]);
        for tool in ["a", "b", "c", "d", "e"] {
            calls.inc(&["bot", tool]);
        }
        // Label sets that got their own series keep it after the family is full.
        calls.inc(&["bot", "a"]);
        calls.inc(&["bot", "f"]);

        assert_eq!(calls.get(&["bot", "a"]), 2);
        assert_eq!(calls.get(&["bot", "d"]), 0);
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]), 3);
        let text = registry.render();
        assert!(
            text.contains(concat!(
                "calls_total{agent=\"__overflow__\",tool=\"__overflow__\"} 3\n",
                "calls_total{agent=\"bot\",tool=\"a\"} 2\n",
                "calls_total{agent=\"bot\",tool=\"b\"} 1\n",
                "calls_total{agent=\"bot\",tool=\"c\"} 1\n",
            )),
            "{text}"
        );
        assert_eq!(series(&text, "calls_total"), 4, "{text}");
    }

    #[test]
    fn an_attacker_choosing_label_values_cannot_grow_a_family_past_its_limit() {
        let registry = Registry::new();
        let calls = registry.counter("calls_total", "c", &["tool"]);
        let duration = registry.histogram("d_seconds", "d", &["tool"], crate::LATENCY_BUCKETS);
        for i in 0..(3 * DEFAULT_MAX_SERIES_PER_FAMILY) {
            let tool = format!("unknown-tool-{i}");
            calls.inc(&[&tool]);
            duration.observe(&[&tool], 0.001);
        }
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE]), 2 * DEFAULT_MAX_SERIES_PER_FAMILY as u64);
        assert_eq!(duration.count(&[OVERFLOW_LABEL_VALUE]), 2 * DEFAULT_MAX_SERIES_PER_FAMILY as u64);
        let text = registry.render();
        assert_eq!(series(&text, "calls_total"), DEFAULT_MAX_SERIES_PER_FAMILY + 1);
        assert_eq!(series(&text, "d_seconds_count"), DEFAULT_MAX_SERIES_PER_FAMILY + 1);
        // What OTLP would carry is bounded the same way: the collection itself.
        let rm = registry.collect().unwrap();
        let points: usize = rm
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .filter(|m| m.name() == "calls_total")
            .map(|m| match m.data() {
                opentelemetry_sdk::metrics::data::AggregatedMetrics::U64(
                    opentelemetry_sdk::metrics::data::MetricData::Sum(sum),
                ) => sum.data_points().count(),
                _ => 0,
            })
            .sum();
        assert_eq!(points, DEFAULT_MAX_SERIES_PER_FAMILY + 1);
    }

    #[test]
    fn a_gauge_moved_through_the_overflow_series_stays_balanced() {
        let registry = small(1);
        let sessions = registry.gauge("sessions", "s", &["server"]);
        sessions.inc(&["first"]);
        for server in ["x", "y", "z"] {
            sessions.inc(&[server]);
        }
        assert_eq!(sessions.get(&[OVERFLOW_LABEL_VALUE]), 3);
        for server in ["x", "y", "z"] {
            sessions.dec(&[server]);
        }
        assert_eq!(sessions.get(&[OVERFLOW_LABEL_VALUE]), 0);
        assert_eq!(sessions.get(&["first"]), 1);
    }

    #[test]
    fn a_limit_of_zero_is_raised_to_one() {
        let registry = small(0);
        assert_eq!(registry.limits().max_series_per_family, 1);
        let calls = registry.counter("calls_total", "c", &["tool"]);
        calls.inc(&["a"]);
        calls.inc(&["b"]);
        calls.inc(&["c"]);
        assert_eq!(calls.get(&["a"]), 1);
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE]), 2);
    }

    #[test]
    fn literal_overflow_values_share_the_overflow_series() {
        let registry = small(2);
        let calls = registry.counter("calls_total", "c", &["tool"]);
        calls.inc(&[OVERFLOW_LABEL_VALUE]);
        calls.inc(&["a"]);
        calls.inc(&["b"]);
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE]), 2);
        assert_eq!(registry.render().matches("tool=\"__overflow__\"").count(), 1);
    }

    #[test]
    fn long_label_values_are_cut_and_share_a_series() {
        let registry = Registry::with_limits(Limits { max_label_value_bytes: 16, ..Limits::default() });
        let calls = registry.counter("calls_total", "c", &["tool"]);
        let long = "t".repeat(10_000);
        calls.inc(&[&long]);
        calls.inc(&[&format!("{long}-other")]);
        assert_eq!(calls.get(&["tttttttttttttttt"]), 2);
        assert_eq!(calls.get(&[&long]), 2);
        assert!(registry.render().contains("calls_total{tool=\"tttttttttttttttt\"} 2\n"));

        // A limit below the overflow marker's length is raised to it.
        let tiny = Registry::with_limits(Limits { max_label_value_bytes: 1, ..Limits::default() });
        assert_eq!(tiny.limits().max_label_value_bytes, OVERFLOW_LABEL_VALUE.len());
    }

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // 'é' is two bytes: cutting after one byte would split it.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("éé", 0), "");
    }
}
