//! The leak guard: what an upstream sends toward an agent never carries a credential.
//!
//! Agents must not hold long-lived secrets, so whatever an upstream sends back (a result that
//! echoes its API key, an error that prints its configuration, a stderr line) is searched for
//! every secret the gateway holds and for well-known credential shapes (see `shapes.rs`), and
//! each one found is replaced by `[REDACTED:secret]` or `[REDACTED:<rule>]` before the agent
//! sees it. Each [`Hit`] carries a keyed fingerprint of what was found, so the audit record can
//! say which secret leaked without containing it.
//!
//! Matching is on each held value as the receiver would decode the message (JSON escapes are
//! undone first), and on the forms an upstream hands a value back in by accident
//! (`encoded.rs`): base64 (both alphabets, padded or not, at any alignment inside a longer
//! blob), hex (either case), percent-encoding and backslash escapes (`\u0073`, `\x73`) inside
//! a string. One automaton holds every form of every value, so a message costs the same per
//! byte however many secrets are held. A secret reversed, split across strings, compressed or
//! encrypted is not found: the guard stops accidents and careless upstreams, not a determined
//! one.

mod encoded;
mod json;
mod shapes;

use std::borrow::Cow;
use std::fmt;

use crate::master::Fingerprinter;
use crate::value::SecretValue;

pub use encoded::Encoding;
pub use json::MAX_PATH_DEPTH;

/// Held values shorter than this many bytes are not searched for: they would redact ordinary
/// text (`admin`, `1234`). [`LeakGuard::too_short`] names them so the caller can warn.
pub const MIN_SECRET_LEN: usize = 8;

/// At most this many [`Hit`]s are reported for one message (or text); the rest are only
/// counted, so a hostile upstream repeating a secret cannot blow up the audit record. Every
/// occurrence is redacted regardless.
pub const MAX_HITS: usize = 32;

/// The replacement text of a held secret: the same for every secret, so the agent learns
/// nothing about which one it was.
const SECRET_LABEL: &str = "[REDACTED:secret]";

/// The `rule` of a hit on a held secret.
const SECRET_RULE: &str = "secret";

/// Finds and redacts credentials in messages and text; built once from the held secrets.
#[derive(Clone)]
pub struct LeakGuard {
    /// Longest value first, so at one position the longest held value wins and a secret that
    /// contains another is redacted whole. No two have the same value.
    held: Vec<Held>,
    /// Every form of every held value (see `encoded.rs`); `None` when nothing is held.
    forms: Option<encoded::Forms>,
    too_short: Vec<String>,
    fingerprinter: Fingerprinter,
}

#[derive(Clone)]
struct Held {
    name: String,
    value: SecretValue,
    /// Computed once: every hit on this value carries it.
    fingerprint: String,
}

impl fmt::Debug for LeakGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakGuard")
            .field("held", &self.held.iter().map(|h| h.name.as_str()).collect::<Vec<_>>())
            .field("too_short", &self.too_short)
            .finish_non_exhaustive()
    }
}

/// One credential found and redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hit {
    /// `secret` for a held secret, else the shape's rule name (`aws_access_key_id`, ...).
    pub rule: String,
    /// The held secret's name, for the audit record only: never in the redacted text.
    pub secret: Option<String>,
    /// [`Fingerprinter::fingerprint`] of the text matched (of the held value, for a secret).
    pub fingerprint: String,
    /// JSON pointer of the string it was found in (`/result/content/0/text`); for an object
    /// key, the object's pointer; `""` for plain text and the message root.
    pub path: String,
    /// For a held secret, how it was written where it was found (`plain`, `base64`,
    /// `base64url`, `hex`, `percent`, `escaped`); `None` for a credential shape.
    pub encoding: Option<&'static str>,
}

/// A message with every credential found in it redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// The message to forward instead: the original bytes with each string that held a
    /// credential re-encoded, redacted (or, when the message was not JSON, the redacted text).
    pub raw: Vec<u8>,
    /// The first [`MAX_HITS`] hits, in message order.
    pub hits: Vec<Hit>,
    /// How many more hits there were.
    pub more: usize,
}

/// Hits collected while scanning one message.
#[derive(Default)]
struct Found {
    hits: Vec<Hit>,
    more: usize,
}

/// One redaction: `start..end` of the text is replaced by what `what` says.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    what: What,
    /// The range `what` itself matched (a merged span can be wider): what is fingerprinted.
    matched: (usize, usize),
}

#[derive(Clone, Copy)]
enum What {
    /// Index into `held`, and how the value was written.
    Held(usize, Encoding),
    /// Index into the shape rules.
    Shape(usize),
}

impl What {
    /// Which of two overlapping matches names the redaction: held secrets first (the audit
    /// record then names the secret; the longest value first, then one found as written), then
    /// shapes in rule order.
    fn rank(self) -> (u8, usize, u8) {
        match self {
            What::Held(i, encoding) => (0, i, u8::from(encoding != Encoding::Plain)),
            What::Shape(r) => (1, r, 0),
        }
    }
}

impl LeakGuard {
    /// A guard for `secrets` (name, value), fingerprinting hits with `fingerprinter`. Values
    /// shorter than [`MIN_SECRET_LEN`] are not searched for (see [`LeakGuard::too_short`]);
    /// when two names share a value, hits name the first in alphabetical order.
    pub fn new(secrets: Vec<(String, SecretValue)>, fingerprinter: Fingerprinter) -> LeakGuard {
        let mut held = Vec::new();
        let mut too_short = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                too_short.push(name);
            } else {
                let fingerprint = fingerprinter.fingerprint(value.expose().as_bytes());
                held.push(Held { name, value, fingerprint });
            }
        }
        held.sort_by(|a, b| {
            b.value
                .len()
                .cmp(&a.value.len())
                .then_with(|| a.value.expose().cmp(b.value.expose()))
                .then_with(|| a.name.cmp(&b.name))
        });
        held.dedup_by(|later, earlier| later.value == earlier.value);
        too_short.sort();
        let forms = encoded::Forms::build(held.iter().map(|h| h.value.expose().as_bytes()));
        LeakGuard { held, forms, too_short, fingerprinter }
    }

    /// Names of the secrets too short to be searched for, sorted.
    pub fn too_short(&self) -> &[String] {
        &self.too_short
    }

    /// Scans one JSON-RPC message as received. `None`: nothing found, forward `raw` as it is
    /// (nothing was allocated or re-encoded). Otherwise the message to forward instead and
    /// what was found.
    ///
    /// Strings are matched as decoded, so a secret written with JSON escapes (`\u0041KIA...`,
    /// `\"`, `\n`) is found; object keys and numbers are scanned too. Safe on hostile input:
    /// any size and nesting depth, invalid UTF-8 (a lenient reader's U+FFFD), and text that is
    /// not JSON at all (then redacted as text).
    pub fn scan_message(&self, raw: &[u8]) -> Option<Cleaned> {
        // Without escapes a string's text is its bytes, so this one pass over the raw message
        // is exact: the common case ends here. A `%` may hide a percent-encoded value, which
        // only the strings holding one are decoded to look for.
        let found_raw = self.detect(raw);
        if !found_raw && !raw.contains(&b'\\') && !raw.contains(&b'%') {
            return None;
        }
        let mut found = Found::default();
        match json::walk(self, raw, !found_raw, &mut found) {
            json::Walked::Unchanged => None,
            json::Walked::Changed(raw) => Some(Cleaned { raw, hits: found.hits, more: found.more }),
            // Nobody decodes the escapes of something that is not JSON: only what is in the
            // bytes can leak.
            json::Walked::NotJson if !found_raw => None,
            json::Walked::NotJson => {
                let mut found = Found::default();
                let text = String::from_utf8_lossy(raw);
                let clean = self.redact_str(&text, &mut found, String::new)?;
                Some(Cleaned { raw: clean.into_bytes(), hits: found.hits, more: found.more })
            }
        }
    }

    /// Redacts one line of plain text (a child's stderr, a log message). `None`: nothing
    /// found. At most [`MAX_HITS`] hits are returned; every occurrence is redacted.
    pub fn redact_text(&self, text: &str) -> Option<(String, Vec<Hit>)> {
        let mut found = Found::default();
        let clean = self.redact_str(text, &mut found, String::new)?;
        Some((clean, found.hits))
    }

    /// Whether `hay` has anything to redact as it is: one pass for every form of the held
    /// values, one for the shapes.
    fn detect(&self, hay: &[u8]) -> bool {
        self.forms.as_ref().is_some_and(|f| f.is_in_bytes(hay)) || shapes::shapes().is_match(hay)
    }

    /// Whether a held value is in what `bytes` decode to (percent or backslash escapes).
    fn in_decoded(&self, bytes: &[u8]) -> bool {
        self.forms.as_ref().is_some_and(|f| f.is_in_decoded(bytes))
    }

    /// Whether `text` has anything to redact, as it is or as it decodes.
    fn detect_text(&self, text: &str) -> bool {
        self.forms.as_ref().is_some_and(|f| f.is_in(text.as_bytes())) || shapes::shapes().is_match(text.as_bytes())
    }

    /// Redacts `text`, recording a hit per redaction at `path()` (called only when a hit is
    /// recorded). `None` when there is nothing to redact.
    fn redact_str(&self, text: &str, found: &mut Found, path: impl FnOnce() -> String) -> Option<String> {
        // INVARIANT: no held value and no shape match is shorter than MIN_SECRET_LEN bytes, so
        // the many short strings of a message (keys, ids, a hostile flood of `""`) cost nothing.
        if text.len() < MIN_SECRET_LEN || !self.detect_text(text) {
            return None;
        }
        let spans = self.spans(text);
        if spans.is_empty() {
            return None;
        }
        let room = MAX_HITS.saturating_sub(found.hits.len());
        found.more += spans.len().saturating_sub(room);
        if room > 0 {
            let path = path();
            for span in spans.iter().take(room) {
                found.hits.push(self.hit(text, span, &path));
            }
        }
        Some(self.apply(text, &spans))
    }

    /// `text` redacted, without recording anything (for the keys in a hit's path).
    fn redact_quiet<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if text.len() < MIN_SECRET_LEN || !self.detect_text(text) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(self.apply(text, &self.spans(text)))
    }

    /// Everything to redact in `text`, in order, overlaps merged.
    fn spans(&self, text: &str) -> Vec<Span> {
        let hay = text.as_bytes();
        let mut found: Vec<Span> = Vec::new();
        if let Some(forms) = &self.forms {
            found.extend(forms.find(text).into_iter().map(|f| Span {
                start: f.start,
                end: f.end,
                what: What::Held(f.form.held, f.form.encoding),
                matched: (f.start, f.end),
            }));
        }
        let shapes = shapes::shapes();
        if shapes.is_match(hay) {
            for (r, rule) in shapes.rules.iter().enumerate() {
                found.extend(rule.find_iter(hay).map(|(start, end)| Span {
                    start,
                    end,
                    what: What::Shape(r),
                    matched: (start, end),
                }));
            }
        }
        found.sort_unstable_by_key(|s| (s.start, s.what.rank()));
        let mut merged: Vec<Span> = Vec::with_capacity(found.len());
        for span in found {
            match merged.last_mut() {
                Some(last) if span.start < last.end => {
                    last.end = last.end.max(span.end);
                    if span.what.rank() < last.what.rank() {
                        last.what = span.what;
                        last.matched = span.matched;
                    }
                }
                _ => merged.push(span),
            }
        }
        merged
    }

    fn label(&self, what: What) -> &str {
        match what {
            What::Held(..) => SECRET_LABEL,
            What::Shape(r) => shapes::shapes().rules.get(r).map_or(SECRET_LABEL, |rule| rule.label.as_str()),
        }
    }

    /// `text` with each span replaced by its label. Spans start and end on character
    /// boundaries: held values are whole UTF-8 strings, and shape patterns are ASCII-only.
    fn apply(&self, text: &str, spans: &[Span]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for span in spans {
            out.push_str(text.get(pos..span.start).unwrap_or_default());
            out.push_str(self.label(span.what));
            pos = span.end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    fn hit(&self, text: &str, span: &Span, path: &str) -> Hit {
        match span.what {
            What::Held(i, encoding) => {
                let held = self.held.get(i);
                Hit {
                    rule: SECRET_RULE.to_owned(),
                    secret: held.map(|h| h.name.clone()),
                    fingerprint: held.map(|h| h.fingerprint.clone()).unwrap_or_default(),
                    path: path.to_owned(),
                    encoding: Some(encoding.as_str()),
                }
            }
            What::Shape(r) => {
                let matched = text.get(span.matched.0..span.matched.1).unwrap_or_default();
                Hit {
                    rule: shapes::shapes().rules.get(r).map_or("shape", |rule| rule.name).to_owned(),
                    secret: None,
                    fingerprint: self.fingerprinter.fingerprint(matched.as_bytes()),
                    path: path.to_owned(),
                    encoding: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_encoded;
