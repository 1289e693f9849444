//! A family: one metric name, its label names, and a bounded map from label values to series.
//!
//! The hot path (an update to a series that exists) takes a read lock, hashes the label values
//! with the family's keyed hasher and touches one atomic; it allocates nothing. Only the first
//! update of a new label set takes the write lock.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use crate::misuse::{Misuse, MisuseCounts};
use crate::registry::Limits;

/// The label value of every label of the series that absorbs label sets past the limit.
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

/// The state of one label set, created on first use.
pub(crate) trait Series: Send + Sync + Sized {
    fn new(meta: &Meta) -> Self;
}

/// A label set as stored: values already cut to the length limit.
pub(crate) type Key = Arc<[String]>;

pub(crate) struct Family<S> {
    pub(crate) meta: Meta,
    /// Copied from the registry; fixed for the family's life.
    limits: Limits,
    /// Where absorbed misuses are counted; shared with the registry.
    pub(crate) misuse: Arc<MisuseCounts>,
    /// Keyed per family, so that label values chosen by an attacker cannot be made to collide.
    hasher: RandomState,
    /// The label values of the overflow series: [`OVERFLOW_LABEL_VALUE`] for every label.
    overflow_values: Box<[&'static str]>,
    /// Hash of `overflow_values`, so that a full family finds its overflow series under the
    /// read lock and an attacker sending new label values never reaches the write lock.
    overflow_hash: u64,
    series: RwLock<SeriesMap<S>>,
}

struct SeriesMap<S> {
    /// Series by the hash of their label values; a `Vec` holds the rare collisions.
    by_hash: HashMap<u64, Vec<(Key, Arc<S>)>>,
    /// Number of series, the overflow series included.
    len: usize,
}

impl<S> SeriesMap<S> {
    fn find(&self, hash: u64, values: &[&str], max_bytes: usize) -> Option<&Arc<S>> {
        let candidates = self.by_hash.get(&hash)?;
        candidates.iter().find(|(key, _)| same_values(key, values, max_bytes)).map(|(_, series)| series)
    }
}

fn same_values(key: &[String], values: &[&str], max_bytes: usize) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(k, v)| k == truncate(v, max_bytes))
}

fn hash_values(hasher: &RandomState, values: &[&str], max_bytes: usize) -> u64 {
    let mut hasher = hasher.build_hasher();
    for value in values {
        truncate(value, max_bytes).hash(&mut hasher);
    }
    hasher.finish()
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

impl<S: Series> Family<S> {
    pub(crate) fn new(meta: Meta, limits: Limits, misuse: Arc<MisuseCounts>) -> Self {
        let hasher = RandomState::new();
        let overflow_values: Box<[&'static str]> = meta.label_names.iter().map(|_| OVERFLOW_LABEL_VALUE).collect();
        let overflow_hash = hash_values(&hasher, &overflow_values, limits.max_label_value_bytes);
        let family = Family {
            meta,
            limits,
            misuse,
            hasher,
            overflow_values,
            overflow_hash,
            series: RwLock::new(SeriesMap { by_hash: HashMap::new(), len: 0 }),
        };
        // A family without labels has exactly one series; create it now so that it renders as
        // zero before its first update.
        if family.meta.label_names.is_empty() {
            family.get_or_create(&[]);
        }
        family
    }

    /// Runs `f` on the series of `values`, creating it (or folding it into the overflow series)
    /// if needed. Ignores and counts a wrong number of values.
    pub(crate) fn with_series(&self, values: &[&str], f: impl FnOnce(&S)) {
        if !self.arity_ok(values) {
            return;
        }
        let hash = self.hash(values);
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = self.lookup(&map, hash, values) {
                f(series);
                return;
            }
        }
        f(&self.insert(hash, values));
    }

    /// The series of `values`, created if needed; `None` (counted) for a wrong number of values.
    pub(crate) fn series(&self, values: &[&str]) -> Option<Arc<S>> {
        if !self.arity_ok(values) {
            return None;
        }
        Some(self.get_or_create(values))
    }

    /// The series of `values` if it exists; never creates one.
    pub(crate) fn existing(&self, values: &[&str]) -> Option<Arc<S>> {
        if !self.arity_ok(values) {
            return None;
        }
        let hash = self.hash(values);
        let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
        map.find(hash, values, self.limits.max_label_value_bytes).cloned()
    }

    /// Every series with its label values, sorted by label values.
    pub(crate) fn snapshot(&self) -> Vec<(Key, Arc<S>)> {
        let mut all: Vec<(Key, Arc<S>)> = {
            // Clone out under the lock and sort after: a long read would hold back the write
            // lock of a new series, and with it every update queued behind that writer.
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            map.by_hash.values().flatten().map(|(key, series)| (Arc::clone(key), Arc::clone(series))).collect()
        };
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.read().unwrap_or_else(PoisonError::into_inner).len
    }

    fn arity_ok(&self, values: &[&str]) -> bool {
        let ok = values.len() == self.meta.label_names.len();
        if !ok {
            self.misuse.record(Misuse::LabelCount);
        }
        ok
    }

    fn hash(&self, values: &[&str]) -> u64 {
        hash_values(&self.hasher, values, self.limits.max_label_value_bytes)
    }

    fn is_full(&self, map: &SeriesMap<S>) -> bool {
        map.len >= self.limits.max_series_per_family
    }

    /// The series that updates for `values` go to, if it exists: its own, or the overflow series
    /// when the family is full.
    fn lookup<'m>(&self, map: &'m SeriesMap<S>, hash: u64, values: &[&str]) -> Option<&'m Arc<S>> {
        let max_bytes = self.limits.max_label_value_bytes;
        map.find(hash, values, max_bytes).or_else(|| {
            if self.is_full(map) {
                map.find(self.overflow_hash, &self.overflow_values, max_bytes)
            } else {
                None
            }
        })
    }

    fn get_or_create(&self, values: &[&str]) -> Arc<S> {
        let hash = self.hash(values);
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = self.lookup(&map, hash, values) {
                return Arc::clone(series);
            }
        }
        self.insert(hash, values)
    }

    /// Inserts the series of `values` (whose hash is `hash`), or the overflow series if the
    /// family is full. Another thread may have inserted either since the caller's read lock.
    fn insert(&self, hash: u64, values: &[&str]) -> Arc<S> {
        let max_bytes = self.limits.max_label_value_bytes;
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = self.lookup(&map, hash, values) {
            return Arc::clone(series);
        }
        // INVARIANT: series are never removed, so a label set that found the family full will
        // find it full again, and a gauge incremented and later decremented through the overflow
        // series stays balanced. The overflow series may take the family one past its limit.
        let (hash, values) =
            if self.is_full(&map) { (self.overflow_hash, &*self.overflow_values) } else { (hash, values) };
        let key: Key = values.iter().map(|v| truncate(v, max_bytes).to_owned()).collect();
        let series = Arc::new(S::new(&self.meta));
        map.by_hash.entry(hash).or_default().push((key, Arc::clone(&series)));
        map.len += 1;
        series
    }
}

impl<S> fmt::Debug for Family<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.meta.name)
            .field("kind", &self.meta.kind.type_name())
            .field("label_names", &self.meta.label_names)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Registry, DEFAULT_MAX_SERIES_PER_FAMILY};

    fn small(max_series_per_family: usize) -> Registry {
        Registry::with_limits(Limits { max_series_per_family, ..Limits::default() })
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
        assert_eq!(calls.family().len(), 4);
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
    }

    #[test]
    fn an_attacker_choosing_label_values_cannot_grow_a_family_past_its_limit() {
        let registry = Registry::new();
        let calls = registry.counter("calls_total", "c", &["tool"]);
        for i in 0..(3 * DEFAULT_MAX_SERIES_PER_FAMILY) {
            calls.inc(&[&format!("unknown-tool-{i}")]);
        }
        assert_eq!(calls.family().len(), DEFAULT_MAX_SERIES_PER_FAMILY + 1);
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE]), 2 * DEFAULT_MAX_SERIES_PER_FAMILY as u64);
        let samples = registry.render().lines().filter(|l| l.starts_with("calls_total{")).count();
        assert_eq!(samples, DEFAULT_MAX_SERIES_PER_FAMILY + 1);
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
    fn a_limit_of_zero_folds_every_label_set() {
        let registry = small(0);
        let calls = registry.counter("calls_total", "c", &["tool"]);
        calls.inc(&["a"]);
        calls.inc(&["b"]);
        assert_eq!(calls.get(&[OVERFLOW_LABEL_VALUE]), 2);
        assert_eq!(calls.family().len(), 1);
    }

    #[test]
    fn literal_overflow_values_share_the_overflow_series() {
        let registry = small(1);
        let calls = registry.counter("calls_total", "c", &["tool"]);
        calls.inc(&["a"]);
        calls.inc(&["b"]);
        calls.inc(&[OVERFLOW_LABEL_VALUE]);
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
