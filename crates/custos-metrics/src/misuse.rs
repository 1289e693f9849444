//! Misuses of this crate's API that are absorbed instead of panicking, and the
//! `custos_metrics_errors_total{reason}` family that counts them.
//!
//! Metrics must never take the gateway down, so a wrong label count, an invalid name or a
//! conflicting registration is repaired or ignored, and counted here where an alert can see it:
//! on `/metrics`, and over OTLP through an observable counter that reads the same counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::{Meter, ObservableCounter};
use opentelemetry::KeyValue;

use crate::text;

/// Name of the family that counts absorbed misuses; reserved in every registry.
pub(crate) const NAME: &str = "custos_metrics_errors_total";
const HELP: &str = "Misuses of the metrics API that were absorbed instead of panicking, by reason.";

/// Why a call was repaired or ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misuse {
    /// A name was registered again with another type, other label names or other buckets, or
    /// collides with the samples of another family; the caller got a detached family.
    Conflict,
    /// Histogram buckets were unsorted, duplicated or not finite; they were sorted and filtered.
    InvalidBuckets,
    /// A metric or label name was not valid; it was sanitized.
    InvalidName,
    /// A histogram observation was negative, infinite or NaN; it was dropped.
    InvalidValue,
    /// An update or read passed a different number of label values than the family has label
    /// names; it was ignored.
    LabelCount,
}

impl Misuse {
    /// Every reason, in the order they are rendered (sorted by label value).
    const ALL: [Misuse; 5] =
        [Misuse::Conflict, Misuse::InvalidBuckets, Misuse::InvalidName, Misuse::InvalidValue, Misuse::LabelCount];

    fn label(self) -> &'static str {
        match self {
            Misuse::Conflict => "conflict",
            Misuse::InvalidBuckets => "invalid_buckets",
            Misuse::InvalidName => "invalid_name",
            Misuse::InvalidValue => "invalid_value",
            Misuse::LabelCount => "label_count",
        }
    }
}

/// One counter per [`Misuse`], shared by a registry and all of its families.
#[derive(Debug, Default)]
pub(crate) struct MisuseCounts {
    conflict: AtomicU64,
    invalid_buckets: AtomicU64,
    invalid_name: AtomicU64,
    invalid_value: AtomicU64,
    label_count: AtomicU64,
}

impl MisuseCounts {
    fn slot(&self, reason: Misuse) -> &AtomicU64 {
        match reason {
            Misuse::Conflict => &self.conflict,
            Misuse::InvalidBuckets => &self.invalid_buckets,
            Misuse::InvalidName => &self.invalid_name,
            Misuse::InvalidValue => &self.invalid_value,
            Misuse::LabelCount => &self.label_count,
        }
    }

    pub(crate) fn record(&self, reason: Misuse) {
        self.slot(reason).fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn get(&self, reason: Misuse) -> u64 {
        self.slot(reason).load(Ordering::Relaxed)
    }

    /// Registers the family on `meter` as an observable counter that reports these counts at
    /// each collection, every reason included, so that the OTLP push carries it too.
    pub(crate) fn observe_on(self: &Arc<Self>, meter: &Meter) -> ObservableCounter<u64> {
        let counts = Arc::clone(self);
        meter
            .u64_observable_counter(NAME)
            .with_description(HELP)
            .with_callback(move |observer| {
                for reason in Misuse::ALL {
                    let value = counts.slot(reason).load(Ordering::Relaxed);
                    observer.observe(value, &[KeyValue::new("reason", reason.label())]);
                }
            })
            .build()
    }

    /// Renders the family with every reason, zero or not, so that alerts have a series to watch.
    pub(crate) fn render(&self, out: &mut String) {
        text::write_header(out, NAME, HELP, "counter");
        let label_names = ["reason".to_owned()];
        for reason in Misuse::ALL {
            let value = self.slot(reason).load(Ordering::Relaxed);
            text::write_sample(out, NAME, "", &label_names, &[reason.label().to_owned()], None, value);
        }
    }
}
