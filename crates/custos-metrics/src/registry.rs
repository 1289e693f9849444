//! [`Registry`]: registration of families by name, limits, and what `/metrics` and the OTLP push
//! read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableCounter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Stream};
use opentelemetry_sdk::Resource;

use crate::counter::Counter;
use crate::family::{Family, Kind, Meta, Shared, OVERFLOW_LABEL_VALUE};
use crate::gauge::Gauge;
use crate::histogram::Histogram;
use crate::misuse::{self, Misuse, MisuseCounts};
use crate::reader::SharedReader;
use crate::snapshot::{self, Value};
use crate::text;

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default of [`Limits::max_series_per_family`].
pub const DEFAULT_MAX_SERIES_PER_FAMILY: usize = 1000;

/// Default of [`Limits::max_label_value_bytes`]. MCP tool names are at most 128 characters.
pub const DEFAULT_MAX_LABEL_VALUE_BYTES: usize = 128;

/// The highest [`Limits::max_series_per_family`] kept; the SDK sizes its map from it.
const MAX_SERIES_LIMIT: usize = 1 << 20;

/// The instrumentation scope of the gateway's instruments.
const SCOPE: &str = "custos";

/// Bounds on what label values can make a registry hold, since agents choose some of them
/// (tool names, for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most label sets one family keeps (the SDK's cardinality limit). Past it, updates for a
    /// new label set go to one series, shown on `/metrics` with [`OVERFLOW_LABEL_VALUE`] for
    /// every label and sent over OTLP as `otel.metric.overflow=true`; label sets already
    /// present keep their own series. A family holds at most this many series plus that one.
    /// At least 1 (raised if lower).
    pub max_series_per_family: usize,
    /// Longest label value kept, in bytes; longer values are cut on a character boundary, and
    /// values that agree up to the cut share a series. Raised to the length of
    /// [`OVERFLOW_LABEL_VALUE`] if lower.
    pub max_label_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_family: DEFAULT_MAX_SERIES_PER_FAMILY,
            max_label_value_bytes: DEFAULT_MAX_LABEL_VALUE_BYTES,
        }
    }
}

/// A set of metric families: OpenTelemetry SDK instruments of one meter provider, read on
/// demand through one cumulative reader, rendered together in the Prometheus text format and
/// collected for an OTLP push.
///
/// Cloning is cheap: clones share the same families. Registering never fails and never panics:
///
/// - registering a name again with the same type, label names (and buckets) returns the
///   family already registered; its first help text stays;
/// - registering a name again with anything else, or a name whose samples would collide with
///   another family's (a counter `x_count` beside a histogram `x`), returns a family that takes
///   updates and keeps nothing, and counts a `conflict`;
/// - an invalid metric or label name is sanitized (see [`Registry::counter`]) and counted as
///   `invalid_name`.
///
/// Every registry renders `custos_metrics_errors_total{reason}`, which counts these repairs
/// and the updates that were ignored; that name is reserved. The OTLP push carries it too, as an
/// observable counter over the same counts.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with every family: the reader, the limits and the misuse counts.
    shared: Arc<Shared>,
    /// Owns the instruments' aggregations; dropped with the last clone of the registry.
    _provider: SdkMeterProvider,
    /// `custos_metrics_errors_total` as the SDK sees it, so that OTLP carries it.
    _misuse: ObservableCounter<u64>,
    meter: Meter,
    /// By name, so that rendering lists families sorted by name.
    families: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug, Clone)]
enum Entry {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    /// The registry's own `custos_metrics_errors_total`.
    Misuse,
}

impl Entry {
    fn meta(&self) -> Option<&Meta> {
        match self {
            Entry::Counter(c) => Some(&c.family().meta),
            Entry::Gauge(g) => Some(&g.family().meta),
            Entry::Histogram(h) => Some(&h.family().meta),
            Entry::Misuse => None,
        }
    }

    fn sample_names(&self, name: &str) -> Vec<String> {
        let suffixes = self.meta().map_or(&[""][..], |meta| meta.kind.sample_suffixes());
        suffixes.iter().map(|suffix| format!("{name}{suffix}")).collect()
    }
}

/// What [`Registry::register`] needs from each handle type.
trait Metric: Clone {
    type Instrument;
    fn instrument(meter: &Meter, meta: &Meta) -> Self::Instrument;
    fn from_family(family: Family<Self::Instrument>) -> Self;
    fn meta(&self) -> &Meta;
    fn from_entry(entry: &Entry) -> Option<Self>;
    fn into_entry(self) -> Entry;
}

impl Metric for Counter {
    type Instrument = opentelemetry::metrics::Counter<u64>;
    fn instrument(meter: &Meter, meta: &Meta) -> Self::Instrument {
        meter.u64_counter(meta.name.clone()).with_description(meta.help).build()
    }
    fn from_family(family: Family<Self::Instrument>) -> Self {
        Counter::from_family(Arc::new(family))
    }
    fn meta(&self) -> &Meta {
        &self.family().meta
    }
    fn from_entry(entry: &Entry) -> Option<Self> {
        match entry {
            Entry::Counter(c) => Some(c.clone()),
            _ => None,
        }
    }
    fn into_entry(self) -> Entry {
        Entry::Counter(self)
    }
}

impl Metric for Gauge {
    type Instrument = opentelemetry::metrics::UpDownCounter<i64>;
    fn instrument(meter: &Meter, meta: &Meta) -> Self::Instrument {
        meter.i64_up_down_counter(meta.name.clone()).with_description(meta.help).build()
    }
    fn from_family(family: Family<Self::Instrument>) -> Self {
        Gauge::from_family(Arc::new(family))
    }
    fn meta(&self) -> &Meta {
        &self.family().meta
    }
    fn from_entry(entry: &Entry) -> Option<Self> {
        match entry {
            Entry::Gauge(g) => Some(g.clone()),
            _ => None,
        }
    }
    fn into_entry(self) -> Entry {
        Entry::Gauge(self)
    }
}

impl Metric for Histogram {
    type Instrument = opentelemetry::metrics::Histogram<f64>;
    fn instrument(meter: &Meter, meta: &Meta) -> Self::Instrument {
        let bounds = match &meta.kind {
            Kind::Histogram(bounds) => bounds.to_vec(),
            Kind::Counter | Kind::Gauge => Vec::new(),
        };
        meter
            .f64_histogram(meta.name.clone())
            .with_description(meta.help)
            .with_unit("s")
            .with_boundaries(bounds)
            .build()
    }
    fn from_family(family: Family<Self::Instrument>) -> Self {
        Histogram::from_family(Arc::new(family))
    }
    fn meta(&self) -> &Meta {
        &self.family().meta
    }
    fn from_entry(entry: &Entry) -> Option<Self> {
        match entry {
            Entry::Histogram(h) => Some(h.clone()),
            _ => None,
        }
    }
    fn into_entry(self) -> Entry {
        Entry::Histogram(self)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry with the default [`Limits`], whose OTLP resource is named `custos`.
    pub fn new() -> Self {
        Registry::build(Limits::default(), SCOPE)
    }

    /// An empty registry with `limits` for every family.
    pub fn with_limits(limits: Limits) -> Self {
        Registry::build(limits, SCOPE)
    }

    /// An empty registry with the default [`Limits`] whose metrics carry `service.name =
    /// service_name` over OTLP (the `[telemetry] service_name` the spans carry).
    pub fn for_service(service_name: &str) -> Self {
        Registry::build(Limits::default(), service_name)
    }

    fn build(limits: Limits, service_name: &str) -> Self {
        let limits = Limits {
            max_series_per_family: limits.max_series_per_family.clamp(1, MAX_SERIES_LIMIT),
            max_label_value_bytes: limits.max_label_value_bytes.max(OVERFLOW_LABEL_VALUE.len()),
        };
        let reader = SharedReader::new();
        let cap = limits.max_series_per_family;
        let resource = Resource::builder_empty()
            .with_service_name(service_name.to_owned())
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(resource)
            // Every instrument gets the same cap on label sets; the SDK folds the rest into its
            // overflow series.
            .with_view(move |_: &opentelemetry_sdk::metrics::Instrument| {
                Stream::builder().with_cardinality_limit(cap).build().ok()
            })
            .build();
        let meter = provider.meter(SCOPE);
        let mut families = BTreeMap::new();
        families.insert(misuse::NAME.to_owned(), Entry::Misuse);
        let misuse = Arc::new(MisuseCounts::default());
        let misuse_instrument = misuse.observe_on(&meter);
        let shared = Arc::new(Shared { reader, limits, misuse });
        let inner =
            Inner { shared, _provider: provider, _misuse: misuse_instrument, meter, families: Mutex::new(families) };
        Registry { inner: Arc::new(inner) }
    }

    /// The limits every family of this registry has.
    pub fn limits(&self) -> Limits {
        self.inner.shared.limits
    }

    /// Registers (or finds) the counter family `name`, with `label_names` in the order label
    /// values will be passed.
    ///
    /// Names should match `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric) and `[a-zA-Z_][a-zA-Z0-9_]*`
    /// (label). Otherwise, as a programming error that must not take the gateway down, every
    /// other character becomes `_`, a leading digit gets a `_` before it, leading `__` in a
    /// label name (reserved by Prometheus) becomes `_`, and a repeated label name gets `_`
    /// appended; each repair counts `invalid_name`. (The SDK refuses instrument names that do
    /// not start with a letter: such a family renders no series.)
    pub fn counter(&self, name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Counter {
        self.register(name, help, label_names, Kind::Counter)
    }

    /// Registers (or finds) the gauge family `name`; names as for [`Registry::counter`].
    pub fn gauge(&self, name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Gauge {
        self.register(name, help, label_names, Kind::Gauge)
    }

    /// Registers (or finds) the histogram family `name`, with `buckets` as upper bounds in
    /// seconds (`+Inf` is implied); names as for [`Registry::counter`], and `le` is reserved.
    ///
    /// Buckets should be finite and strictly increasing, like [`crate::LATENCY_BUCKETS`];
    /// otherwise non-finite bounds are dropped, the rest sorted and deduplicated, and
    /// `invalid_buckets` is counted.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Histogram {
        let mut bounds: Vec<f64> = buckets.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        if bounds.as_slice() != buckets {
            self.inner.shared.misuse.record(Misuse::InvalidBuckets);
        }
        self.register(name, help, label_names, Kind::Histogram(bounds.into_boxed_slice()))
    }

    fn register<M: Metric>(&self, name: &str, help: &'static str, label_names: &[&str], kind: Kind) -> M {
        let misuse = &self.inner.shared.misuse;
        let (name, bad_name) = text::sanitize_metric_name(name);
        let reserved: &[&str] = match kind {
            Kind::Histogram(_) => &["le"],
            Kind::Counter | Kind::Gauge => &[],
        };
        let (label_names, bad_labels) = text::sanitize_label_names(label_names, reserved);
        if bad_name || bad_labels {
            misuse.record(Misuse::InvalidName);
        }
        let meta = Meta { name, help, label_names, kind };

        let mut families = self.inner.families.lock().unwrap_or_else(PoisonError::into_inner);
        let conflict = match families.get(&meta.name) {
            Some(entry) => match M::from_entry(entry) {
                Some(existing) if same_shape(existing.meta(), &meta) => return existing,
                _ => true,
            },
            None => collides(&families, &meta),
        };
        let shared = Arc::clone(&self.inner.shared);
        if conflict {
            // No instrument: the SDK would merge it with the family that holds the name.
            misuse.record(Misuse::Conflict);
            return M::from_family(Family::new(meta, None, shared));
        }
        let instrument = M::instrument(&self.inner.meter, &meta);
        let name = meta.name.clone();
        let metric = M::from_family(Family::new(meta, Some(instrument), shared));
        families.insert(name, metric.clone().into_entry());
        metric
    }

    /// Everything the registry's instruments hold now (cumulative since start), for an OTLP
    /// push; `None` once the provider is shut down.
    pub fn collect(&self) -> Option<ResourceMetrics> {
        self.inner.shared.collect()
    }

    /// Renders every family in the Prometheus text format, version 0.0.4 (see
    /// [`CONTENT_TYPE`]): families sorted by name, each with `# HELP` and `# TYPE` lines, then
    /// its series sorted by label values.
    pub fn render(&self) -> String {
        let entries: Vec<Entry> = {
            let families = self.inner.families.lock().unwrap_or_else(PoisonError::into_inner);
            families.values().cloned().collect()
        };
        let rm = self.collect().unwrap_or_default();
        let mut out = String::new();
        for entry in entries {
            match entry.meta() {
                Some(meta) => render_family(&mut out, meta, &snapshot::points(&rm, meta)),
                None => self.inner.shared.misuse.render(&mut out),
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn misuse(&self, reason: Misuse) -> u64 {
        self.inner.shared.misuse.get(reason)
    }
}

/// Writes one family: its header, then each series' samples.
fn render_family(out: &mut String, meta: &Meta, points: &[snapshot::Point]) {
    let (name, labels) = (meta.name.as_str(), &meta.label_names);
    text::write_header(out, name, meta.help, meta.kind.type_name());
    let bounds: &[f64] = match &meta.kind {
        Kind::Histogram(bounds) => bounds,
        Kind::Counter | Kind::Gauge => &[],
    };
    for point in points {
        let values = &point.values;
        match &point.value {
            Value::Counter(n) => text::write_sample(out, name, "", labels, values, None, n),
            Value::Gauge(n) => text::write_sample(out, name, "", labels, values, None, n),
            Value::Histogram { buckets, sum } => {
                // The count is the buckets' total, so `+Inf` and `_count` always agree.
                let mut cumulative = 0_u64;
                for (bound, bucket) in bounds.iter().zip(buckets) {
                    cumulative += bucket;
                    let le = text::format_float(*bound);
                    text::write_sample(out, name, "_bucket", labels, values, Some(("le", &le)), cumulative);
                }
                cumulative += buckets.last().copied().unwrap_or(0);
                text::write_sample(out, name, "_bucket", labels, values, Some(("le", "+Inf")), cumulative);
                text::write_sample(out, name, "_sum", labels, values, None, text::format_float(*sum));
                text::write_sample(out, name, "_count", labels, values, None, cumulative);
            }
        }
    }
}

/// Whether a second registration may share the family of the first. Help text may differ.
fn same_shape(a: &Meta, b: &Meta) -> bool {
    a.kind == b.kind && a.label_names == b.label_names
}

/// Whether any sample name of a new family `meta` is a sample name of a registered family.
fn collides(families: &BTreeMap<String, Entry>, meta: &Meta) -> bool {
    let new: Vec<String> = meta.kind.sample_suffixes().iter().map(|suffix| format!("{}{suffix}", meta.name)).collect();
    families.iter().any(|(name, entry)| entry.sample_names(name).iter().any(|taken| new.contains(taken)))
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let families = self.inner.families.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Registry")
            .field("limits", &self.inner.shared.limits)
            .field("families", &families.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LATENCY_BUCKETS;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn handles_are_send_sync_and_cheap_to_share() {
        assert_send_sync::<Registry>();
        assert_send_sync::<Counter>();
        assert_send_sync::<Gauge>();
        assert_send_sync::<Histogram>();
        fn assert_send<T: Send>() {}
        assert_send::<crate::Timer>();
    }

    #[test]
    fn renders_a_small_registry_exactly() {
        let registry = Registry::new();
        let calls = registry.counter("custos_calls_total", "Tool calls by agent and decision.", &["agent", "decision"]);
        let sessions = registry.gauge("custos_sessions", "Open sessions.", &[]);
        let duration =
            registry.histogram("custos_call_duration_seconds", "Time per stage.", &["stage"], &[0.25, 0.5, 1.0]);
        let idle = registry.counter("custos_idle_total", "Never updated, labelled.", &["x"]);
        let _ = idle;

        calls.inc(&["b", "deny"]);
        calls.add(&["a", "allow"], 3);
        sessions.inc(&[]);
        sessions.inc(&[]);
        sessions.dec(&[]);
        duration.observe(&["upstream"], 0.75);
        duration.observe(&["policy"], 0.125);
        duration.observe(&["policy"], 0.25);
        duration.observe(&["policy"], 2.0);

        let expected = "\
# HELP custos_call_duration_seconds Time per stage.
# TYPE custos_call_duration_seconds histogram
custos_call_duration_seconds_bucket{stage=\"policy\",le=\"0.25\"} 2
custos_call_duration_seconds_bucket{stage=\"policy\",le=\"0.5\"} 2
custos_call_duration_seconds_bucket{stage=\"policy\",le=\"1\"} 2
custos_call_duration_seconds_bucket{stage=\"policy\",le=\"+Inf\"} 3
custos_call_duration_seconds_sum{stage=\"policy\"} 2.375
custos_call_duration_seconds_count{stage=\"policy\"} 3
custos_call_duration_seconds_bucket{stage=\"upstream\",le=\"0.25\"} 0
custos_call_duration_seconds_bucket{stage=\"upstream\",le=\"0.5\"} 0
custos_call_duration_seconds_bucket{stage=\"upstream\",le=\"1\"} 1
custos_call_duration_seconds_bucket{stage=\"upstream\",le=\"+Inf\"} 1
custos_call_duration_seconds_sum{stage=\"upstream\"} 0.75
custos_call_duration_seconds_count{stage=\"upstream\"} 1
# HELP custos_calls_total Tool calls by agent and decision.
# TYPE custos_calls_total counter
custos_calls_total{agent=\"a\",decision=\"allow\"} 3
custos_calls_total{agent=\"b\",decision=\"deny\"} 1
# HELP custos_idle_total Never updated, labelled.
# TYPE custos_idle_total counter
# HELP custos_metrics_errors_total Misuses of the metrics API that were absorbed instead of panicking, by reason.
# TYPE custos_metrics_errors_total counter
custos_metrics_errors_total{reason=\"conflict\"} 0
custos_metrics_errors_total{reason=\"invalid_buckets\"} 0
custos_metrics_errors_total{reason=\"invalid_name\"} 0
custos_metrics_errors_total{reason=\"invalid_value\"} 0
custos_metrics_errors_total{reason=\"label_count\"} 0
# HELP custos_sessions Open sessions.
# TYPE custos_sessions gauge
custos_sessions 1
";
        assert_eq!(registry.render(), expected);
        check_exposition(&registry.render()).unwrap();
    }

    #[test]
    fn families_without_labels_render_zero_before_any_update() {
        let registry = Registry::new();
        registry.counter("c_total", "c", &[]);
        registry.histogram("h_seconds", "h", &[], &[1.0]);
        let text = registry.render();
        assert!(text.contains("\nc_total 0\n"), "{text}");
        assert!(text.contains(
            "\nh_seconds_bucket{le=\"1\"} 0\nh_seconds_bucket{le=\"+Inf\"} 0\nh_seconds_sum 0\nh_seconds_count 0\n"
        ));
    }

    #[test]
    fn label_values_and_help_are_escaped_in_the_output() {
        let registry = Registry::new();
        let calls = registry.counter("calls_total", "Help with \\ and\nnewline and \"quotes\".", &["tool"]);
        calls.inc(&["evil\"} 1\nfake_metric 999\\"]);
        let text = registry.render();
        assert!(text.contains("# HELP calls_total Help with \\\\ and\\nnewline and \"quotes\".\n"), "{text}");
        assert!(text.contains("calls_total{tool=\"evil\\\"} 1\\nfake_metric 999\\\\\"} 1\n"), "{text}");
        assert!(!text.contains("\nfake_metric"));
        check_exposition(&text).unwrap();
    }

    #[test]
    fn registering_a_name_again_returns_the_same_family() {
        let registry = Registry::new();
        let first = registry.counter("calls_total", "first help", &["agent"]);
        let second = registry.counter("calls_total", "other help is ignored", &["agent"]);
        first.inc(&["a"]);
        second.inc(&["a"]);
        assert_eq!(first.get(&["a"]), 2);
        let text = registry.render();
        assert_eq!(text.matches("# TYPE calls_total").count(), 1);
        assert!(text.contains("# HELP calls_total first help\n"));

        let h1 = registry.histogram("h_seconds", "h", &["stage"], LATENCY_BUCKETS);
        let h2 = registry.histogram("h_seconds", "h", &["stage"], LATENCY_BUCKETS);
        h1.observe(&["x"], 0.1);
        assert_eq!(h2.count(&["x"]), 1);
        assert_eq!(registry.misuse(Misuse::Conflict), 0);
    }

    #[test]
    fn conflicting_registrations_get_a_detached_family() {
        let registry = Registry::new();
        let counter = registry.counter("thing", "a counter", &["a"]);
        counter.inc(&["x"]);

        // Same name, other type: takes updates, keeps nothing, is never rendered.
        let gauge = registry.gauge("thing", "a gauge", &["a"]);
        gauge.add(&["x"], 42);
        assert_eq!(gauge.get(&["x"]), 0);
        // Same name and type, other labels.
        let other_labels = registry.counter("thing", "a counter", &["b"]);
        other_labels.inc(&["y"]);
        // Same name, other buckets.
        registry.histogram("lat", "l", &[], &[1.0]);
        registry.histogram("lat", "l", &[], &[2.0]);
        // Sample names that collide with a histogram's, both ways round.
        registry.counter("lat_count", "c", &[]);
        registry.gauge("x_sum", "g", &[]);
        registry.histogram("x", "h", &[], &[1.0]);
        // The registry's own family is reserved.
        registry.counter("custos_metrics_errors_total", "mine", &["reason"]).inc(&["oops"]);

        assert_eq!(registry.misuse(Misuse::Conflict), 6);
        let text = registry.render();
        assert!(text.contains("thing{a=\"x\"} 1\n"), "{text}");
        assert!(!text.contains("42"), "{text}");
        assert!(!text.contains("thing{b="), "{text}");
        assert!(!text.contains("le=\"2\""), "{text}");
        assert!(!text.contains("# TYPE lat_count"), "{text}");
        assert!(!text.contains("# TYPE x "), "{text}");
        assert!(!text.contains("oops"), "{text}");
        assert!(text.contains("custos_metrics_errors_total{reason=\"conflict\"} 6\n"), "{text}");
        check_exposition(&text).unwrap();
    }

    #[test]
    fn invalid_names_are_sanitized_and_counted() {
        let registry = Registry::new();
        let c = registry.counter("bad name-x", "h", &["a b", "__name__", "ok"]);
        c.inc(&["1", "2", "3"]);
        let h = registry.histogram("h.seconds", "h", &["le"], &[1.0]);
        h.observe(&["x"], 0.5);
        assert_eq!(registry.misuse(Misuse::InvalidName), 2);
        let text = registry.render();
        assert!(text.contains("bad_name_x{a_b=\"1\",_name__=\"2\",ok=\"3\"} 1\n"), "{text}");
        // The SDK refuses a name that does not start with a letter: the family stays at zero.
        registry.counter("9lives_total", "h", &[]).inc(&[]);
        let text = registry.render();
        assert!(text.contains("# TYPE _9lives_total counter\n_9lives_total 0\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le_=\"x\",le=\"1\"} 1\n"), "{text}");
        check_exposition(&text).unwrap();
    }

    #[test]
    fn invalid_buckets_are_repaired_and_counted() {
        let registry = Registry::new();
        let h = registry.histogram("h_seconds", "h", &[], &[1.0, f64::NAN, 0.5, 1.0, f64::INFINITY]);
        h.observe(&[], 0.75);
        assert_eq!(registry.misuse(Misuse::InvalidBuckets), 1);
        let text = registry.render();
        assert!(
            text.contains(
                "h_seconds_bucket{le=\"0.5\"} 0\nh_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n"
            ),
            "{text}"
        );
        check_exposition(&text).unwrap();
    }

    #[test]
    fn wrong_label_counts_are_ignored_and_counted() {
        let registry = Registry::new();
        let c = registry.counter("c_total", "c", &["a", "b"]);
        let g = registry.gauge("g", "g", &[]);
        let h = registry.histogram("h_seconds", "h", &["stage"], LATENCY_BUCKETS);
        c.inc(&["only-one"]);
        c.add(&["1", "2", "3"], 5);
        g.add(&["unexpected"], 3);
        h.observe(&[], 1.0);
        drop(h.start_timer(&["a", "b"]));
        assert_eq!(c.get(&["x"]), 0);
        assert_eq!(registry.misuse(Misuse::LabelCount), 6);
        let text = registry.render();
        assert!(!text.contains("c_total{"), "{text}");
        assert!(text.contains("\ng 0\n"), "{text}");
        assert!(text.contains("custos_metrics_errors_total{reason=\"label_count\"} 6\n"), "{text}");
    }

    #[test]
    fn the_collection_for_otlp_carries_the_misuse_counts_for_every_reason() {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let registry = Registry::new();
        registry.counter("c_total", "c", &["a"]).inc(&[]);
        registry.counter("c_total", "c", &["other"]);
        let rm = registry.collect().unwrap();
        let metric = rm.scope_metrics().flat_map(|s| s.metrics()).find(|m| m.name() == misuse::NAME).unwrap();
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else { panic!("{:?}", metric.data()) };
        assert!(sum.is_monotonic());
        let mut points: Vec<(String, u64)> = sum
            .data_points()
            .map(|p| (p.attributes().map(|kv| kv.value.as_str().into_owned()).collect(), p.value()))
            .collect();
        points.sort();
        let expected =
            [("conflict", 1), ("invalid_buckets", 0), ("invalid_name", 0), ("invalid_value", 0), ("label_count", 1)];
        assert_eq!(points, expected.map(|(r, n)| (r.to_owned(), n)));
        // `/metrics` renders the family once, from the same counts.
        assert_eq!(registry.render().matches("# TYPE custos_metrics_errors_total").count(), 1);
    }

    #[test]
    fn render_passes_the_exposition_checker() {
        let registry = Registry::with_limits(Limits { max_series_per_family: 5, ..Limits::default() });
        let calls = registry.counter("custos_calls_total", "Calls.", &["agent", "decision"]);
        let sessions = registry.gauge("custos_sessions", "Sessions.", &["server"]);
        let duration = registry.histogram("custos_call_duration_seconds", "Stages.", &["stage"], LATENCY_BUCKETS);
        let plain = registry.histogram("plain_seconds", "No labels.", &[], LATENCY_BUCKETS);
        for i in 0..20 {
            calls.inc(&[&format!("agent \"{i}\"\\\n"), if i % 2 == 0 { "allow" } else { "deny" }]);
            sessions.dec(&[&format!("srv{i}")]);
            duration.observe(&[["whole", "policy", "audit", "upstream"][i % 4]], i as f64 / 7.0);
            plain.observe(&[], 1e-9 * i as f64);
        }
        calls.inc(&["x"]);
        let text = registry.render();
        let samples = check_exposition(&text).unwrap();
        // 6 counter series, 6 gauge series, 4 + 1 histogram series of 17 lines, 5 misuse series.
        assert_eq!(samples, 6 + 6 + 5 * 17 + 5, "{text}");
    }

    #[test]
    fn the_checker_rejects_malformed_text() {
        let good = "# HELP a h\n# TYPE a counter\na{x=\"1\"} 1\n";
        assert_eq!(check_exposition(good), Ok(1));
        for bad in [
            "# HELP a h\n# TYPE a counter\na{x=\"1\"} 1",     // no final newline
            "a 1\n",                                          // no HELP/TYPE
            "# TYPE a counter\n# HELP a h\na 1\n",            // TYPE before HELP
            "# HELP a h\n# TYPE a counter\nb 1\n",            // sample of another family
            "# HELP a h\n# TYPE a counter\na{x=\"1} 1\n",     // unterminated value
            "# HELP a h\n# TYPE a counter\na{x=\"\\t\"} 1\n", // unknown escape
            "# HELP a h\n# TYPE a counter\na{x=\"1\"}  1\n",  // two spaces
            "# HELP a h\n# TYPE a counter\na{x=\"1\"} one\n", // not a number
            "# HELP a h\n# TYPE a counter\na 1\na 2\n",       // duplicate series
            "# HELP a h\n# TYPE a counter\na 1\n# HELP a h\n# TYPE a counter\n", // family twice
            "# HELP a h\n# TYPE a histogram\na_bucket 1\n",   // bucket without le
        ] {
            assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
        }
    }

    /// A small checker of the text format, stricter than Prometheus where our output allows:
    /// every family opens with `# HELP` then `# TYPE`, appears once, and every sample line is
    /// `name{label="value",...} value` with a name of the open family and no repeated series.
    /// Returns the number of samples.
    fn check_exposition(text: &str) -> Result<usize, String> {
        use std::collections::HashSet;

        if !text.is_empty() && !text.ends_with('\n') {
            return Err("text does not end with a line feed".into());
        }
        let mut families: HashSet<String> = HashSet::new();
        let mut series: HashSet<String> = HashSet::new();
        // (name, type) of the open family, and whether its TYPE line was seen.
        let mut open: Option<(String, Option<String>)> = None;
        let mut samples = 0;
        for (n, line) in text.lines().enumerate() {
            let err = |what: &str| Err(format!("line {}: {what}: {line:?}", n + 1));
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_name(name, true) || !families.insert(name.to_owned()) {
                    return err("invalid or repeated family");
                }
                open = Some((name.to_owned(), None));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let Some((name, kind)) = rest.split_once(' ') else { return err("TYPE without a type") };
                match &mut open {
                    Some((open_name, ty @ None)) if open_name == name => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                            return err("unknown type");
                        }
                        *ty = Some(kind.to_owned());
                    }
                    _ => return err("TYPE not right after the family's HELP"),
                }
            } else if line.starts_with('#') {
                return err("unexpected comment");
            } else {
                let Some((family, Some(kind))) = &open else { return err("sample before HELP and TYPE") };
                let name_end = line.find(['{', ' ']).unwrap_or(line.len());
                let name = &line[..name_end];
                let suffix = name.strip_prefix(family.as_str());
                let allowed: &[&str] = if kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
                if !valid_name(name, true) || !suffix.is_some_and(|s| allowed.contains(&s)) {
                    return err("sample name not of the open family");
                }
                let mut rest = &line[name_end..];
                let mut labels = Vec::new();
                if let Some(after) = rest.strip_prefix('{') {
                    rest = after;
                    loop {
                        let Some((label, after)) = rest.split_once("=\"") else { return err("label without =\"") };
                        if !valid_name(label, false) {
                            return err("invalid label name");
                        }
                        let mut value = String::new();
                        let mut chars = after.char_indices();
                        let end = loop {
                            match chars.next() {
                                Some((i, '"')) => break i,
                                Some((_, '\\')) => match chars.next() {
                                    Some((_, '\\')) => value.push('\\'),
                                    Some((_, '"')) => value.push('"'),
                                    Some((_, 'n')) => value.push('\n'),
                                    _ => return err("invalid escape"),
                                },
                                Some((_, c)) => value.push(c),
                                None => return err("unterminated label value"),
                            }
                        };
                        labels.push((label.to_owned(), value));
                        rest = &after[end + 1..];
                        if let Some(after) = rest.strip_prefix(',') {
                            rest = after;
                        } else if let Some(after) = rest.strip_prefix('}') {
                            rest = after;
                            break;
                        } else {
                            return err("expected , or }");
                        }
                    }
                }
                let Some(value) = rest.strip_prefix(' ') else { return err("no space before the value") };
                let parsed = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    v if !v.is_empty() && !v.contains(' ') => match v.parse::<f64>() {
                        Ok(p) => p,
                        Err(_) => return err("value is not a number"),
                    },
                    _ => return err("value is not a number"),
                };
                if kind == "counter" && (parsed.is_nan() || parsed < 0.0) {
                    return err("negative or NaN counter");
                }
                if name.ends_with("_bucket") && kind == "histogram" && !labels.iter().any(|(l, _)| l == "le") {
                    return err("bucket without le");
                }
                let mut names: Vec<&str> = labels.iter().map(|(l, _)| l.as_str()).collect();
                names.sort_unstable();
                if names.windows(2).any(|w| w[0] == w[1]) {
                    return err("repeated label name");
                }
                if !series.insert(format!("{name}{labels:?}")) {
                    return err("repeated series");
                }
                samples += 1;
            }
        }
        Ok(samples)
    }

    fn valid_name(name: &str, colon: bool) -> bool {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        name.chars().next().is_some_and(|c| ok(c) && !c.is_ascii_digit()) && name.chars().all(ok)
    }
}
