//! The series of one family as the SDK collected them, keyed by label values in the family's
//! order, ready to render.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

use crate::family::{Kind, Meta, OVERFLOW_LABEL_VALUE};

/// The attribute the SDK puts on the series that absorbs label sets past the cardinality limit.
const OTEL_OVERFLOW_KEY: &str = "otel.metric.overflow";

/// One series: its label values and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) values: Vec<String>,
    pub(crate) value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Counter(u64),
    Gauge(i64),
    /// Observations per bucket, not cumulative: one more than the family's bounds, the last
    /// above the highest bound (`+Inf`). Their total is the count.
    Histogram {
        buckets: Vec<u64>,
        sum: f64,
    },
}

impl Value {
    fn zero(kind: &Kind) -> Self {
        match kind {
            Kind::Counter => Value::Counter(0),
            Kind::Gauge => Value::Gauge(0),
            Kind::Histogram(bounds) => Value::Histogram { buckets: vec![0; bounds.len() + 1], sum: 0.0 },
        }
    }

    /// Adds `other` into `self`: two series that render with the same label values (a literal
    /// [`OVERFLOW_LABEL_VALUE`] beside the overflow series) are shown as one.
    fn merge(&mut self, other: Value) {
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) => *a = a.saturating_add(b),
            (Value::Gauge(a), Value::Gauge(b)) => *a = a.saturating_add(b),
            (Value::Histogram { buckets, sum }, Value::Histogram { buckets: more, sum: more_sum }) => {
                for (bucket, n) in buckets.iter_mut().zip(more) {
                    *bucket = bucket.saturating_add(n);
                }
                *sum += more_sum;
            }
            _ => {}
        }
    }
}

/// The series of `meta`'s family in `rm`, sorted by label values. A family without labels has
/// exactly one series, zero before its first update.
pub(crate) fn points(rm: &ResourceMetrics, meta: &Meta) -> Vec<Point> {
    let mut merged: BTreeMap<Vec<String>, Value> = BTreeMap::new();
    let mut add = |attributes: &mut dyn Iterator<Item = &KeyValue>, value: Value| {
        let values = label_values(attributes, &meta.label_names);
        match merged.get_mut(&values) {
            Some(existing) => existing.merge(value),
            None => {
                merged.insert(values, value);
            }
        }
    };
    let metrics = rm.scope_metrics().flat_map(|scope| scope.metrics()).filter(|m| m.name() == meta.name);
    for metric in metrics {
        match (&meta.kind, metric.data()) {
            (Kind::Counter, AggregatedMetrics::U64(MetricData::Sum(sum))) => {
                for point in sum.data_points() {
                    add(&mut point.attributes(), Value::Counter(point.value()));
                }
            }
            (Kind::Gauge, AggregatedMetrics::I64(MetricData::Sum(sum))) => {
                for point in sum.data_points() {
                    add(&mut point.attributes(), Value::Gauge(point.value()));
                }
            }
            (Kind::Histogram(bounds), AggregatedMetrics::F64(MetricData::Histogram(histogram))) => {
                for point in histogram.data_points() {
                    let mut buckets: Vec<u64> = point.bucket_counts().collect();
                    // The SDK's buckets are the family's bounds; pad or cut if they ever differ.
                    buckets.resize(bounds.len() + 1, 0);
                    add(&mut point.attributes(), Value::Histogram { buckets, sum: point.sum() });
                }
            }
            _ => {}
        }
    }
    if meta.label_names.is_empty() && merged.is_empty() {
        merged.insert(Vec::new(), Value::zero(&meta.kind));
    }
    merged.into_iter().map(|(values, value)| Point { values, value }).collect()
}

/// The value of each of `names` in `attributes`, in order; the overflow series has
/// [`OVERFLOW_LABEL_VALUE`] for every label.
fn label_values(attributes: &mut dyn Iterator<Item = &KeyValue>, names: &[String]) -> Vec<String> {
    let attributes: Vec<&KeyValue> = attributes.collect();
    if attributes.iter().any(|kv| kv.key.as_str() == OTEL_OVERFLOW_KEY) {
        return names.iter().map(|_| OVERFLOW_LABEL_VALUE.to_owned()).collect();
    }
    names
        .iter()
        .map(|name| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == name)
                .map(|kv| kv.value.as_str().into_owned())
                .unwrap_or_default()
        })
        .collect()
}
