//! The forms a held secret takes when an upstream hands it back encoded, and one automaton over
//! all of them.
//!
//! For every held value the automaton holds: the value itself; its hex, lower and upper case;
//! and its base64 in the standard and the URL-safe alphabet at each of the three byte
//! alignments it can sit at inside a longer encoded blob (`user:secret` in a Basic header is
//! the secret at an alignment). Base64 is matched by its *stable core*, the characters that
//! depend on the secret's bytes alone, so padding and whatever is encoded around it do not
//! matter; the redaction then covers the whole run of base64 characters around the match, so
//! the few bits of the secret in the characters beside the core do not leak either.
//!
//! Encodings that let a writer choose what to encode (percent-encoding: any byte may be
//! `%XX`, in either case) or how (backslash escapes: `\u0073`, `\x73`, `\"`) are not
//! enumerated: text that holds a `%` or a `\` is also searched as it decodes ([`views`]), each
//! decoded byte mapped back to where it was written.
//!
//! One search over all forms of all secrets costs the same per byte however many secrets are
//! held (Aho-Corasick); the overlapping search used to find spans reports every form that
//! matches, so secrets that overlap in a text are redacted together.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

/// How a held secret was written where it was found: recorded with the hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// As it is (after the JSON decoding every message gets).
    Plain,
    Base64,
    Base64Url,
    Hex,
    /// `%XX` escapes, any of its bytes.
    Percent,
    /// Backslash escapes (`\u0073`, `\x73`) inside a string, e.g. JSON text in a JSON string.
    Escaped,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Base64 => "base64",
            Self::Base64Url => "base64url",
            Self::Hex => "hex",
            Self::Percent => "percent",
            Self::Escaped => "escaped",
        }
    }

    fn is_base64(self) -> bool {
        matches!(self, Self::Base64 | Self::Base64Url)
    }
}

/// One pattern of the automaton: which held value, written how.
#[derive(Clone, Copy, Debug)]
pub(super) struct Form {
    pub(super) held: usize,
    pub(super) encoding: Encoding,
}

/// Every form of every held value, searched at once.
#[derive(Clone, Debug)]
pub(super) struct Forms {
    automaton: AhoCorasick,
    forms: Vec<Form>,
}

/// One occurrence of a form in a text: the form and the range of the text it covers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Occurrence {
    pub(super) form: Form,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Forms {
    /// The automaton for `values` (index = the held value's index); `None` when none is held or
    /// it cannot be built.
    pub(super) fn build<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Self> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut forms = Vec::new();
        for (held, value) in values.enumerate() {
            for (pattern, encoding) in forms_of(value) {
                patterns.push(pattern);
                forms.push(Form { held, encoding });
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let automaton = AhoCorasick::new(&patterns).ok()?;
        Some(Self { automaton, forms })
    }

    /// Whether any form of any held value is in `text` or in what it decodes to.
    pub(super) fn is_in(&self, text: &[u8]) -> bool {
        views(text, false).iter().any(|view| self.automaton.is_match(view.bytes.as_ref()))
    }

    /// Whether any form is in what `text` decodes to (not in `text` as it is, which the caller
    /// has searched already).
    pub(super) fn is_in_decoded(&self, text: &[u8]) -> bool {
        views(text, false).iter().skip(1).any(|view| self.automaton.is_match(view.bytes.as_ref()))
    }

    /// Whether any form is in `bytes` as they are (no decoding): the one pass over a message.
    pub(super) fn is_in_bytes(&self, bytes: &[u8]) -> bool {
        self.automaton.is_match(bytes)
    }

    /// Every occurrence of a form in `text` and in what it decodes to, as ranges of `text`
    /// on character boundaries.
    pub(super) fn find(&self, text: &str) -> Vec<Occurrence> {
        let mut found = Vec::new();
        for view in views(text.as_bytes(), true) {
            for m in self.automaton.find_overlapping_iter(view.bytes.as_ref()) {
                let Some(&form) = self.forms.get(m.pattern().as_usize()) else { continue };
                let (mut start, mut end) = view.original(m.start(), m.end(), text.len());
                if form.encoding.is_base64() {
                    (start, end) = base64_run(text.as_bytes(), start, end);
                }
                let encoding = match (form.encoding, view.decoded) {
                    (Encoding::Plain, Some(how)) => how,
                    (encoding, _) => encoding,
                };
                let (start, end) = on_char_boundaries(text, start, end);
                found.push(Occurrence { form: Form { held: form.held, encoding }, start, end });
            }
        }
        found
    }
}

/// The patterns `value` is searched for, with how each is written.
fn forms_of(value: &[u8]) -> Vec<(Vec<u8>, Encoding)> {
    let mut out: Vec<(Vec<u8>, Encoding)> = vec![
        (value.to_vec(), Encoding::Plain),
        (hex::encode(value).into_bytes(), Encoding::Hex),
        (hex::encode_upper(value).into_bytes(), Encoding::Hex),
    ];
    for alignment in 0..3 {
        let standard = base64_core(value, alignment, &STANDARD_NO_PAD);
        let url = base64_core(value, alignment, &URL_SAFE_NO_PAD);
        if url != standard {
            out.push((url, Encoding::Base64Url));
        }
        out.push((standard, Encoding::Base64));
    }
    // A value made only of hex digits is its own lower- or upper-case hex form's text only by
    // coincidence; identical patterns would be reported twice, so keep the first of each.
    let mut seen: Vec<Vec<u8>> = Vec::with_capacity(out.len());
    out.retain(|(p, _)| {
        let fresh = !p.is_empty() && !seen.contains(p);
        seen.push(p.clone());
        fresh
    });
    out
}

/// The characters of the base64 of `value`, preceded by `alignment` other bytes, that depend on
/// `value`'s bytes alone: whatever comes before or after it in an encoded blob, they are there.
fn base64_core(value: &[u8], alignment: usize, engine: &impl Engine) -> Vec<u8> {
    let mut input = vec![0u8; alignment];
    input.extend_from_slice(value);
    let encoded = engine.encode(&input).into_bytes();
    // Character i carries bits [6i, 6i + 6); the value's bits are [8a, 8(a + len)).
    let first = (8 * alignment).div_ceil(6);
    let last = 8 * (alignment + value.len()) / 6;
    encoded.get(first..last).map(<[u8]>::to_vec).unwrap_or_default()
}

/// `start..end` widened to the whole run of base64 characters (either alphabet, and padding
/// after it) it sits in.
fn base64_run(text: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
    while start > 0 && text.get(start - 1).copied().is_some_and(b64) {
        start -= 1;
    }
    while text.get(end).copied().is_some_and(b64) {
        end += 1;
    }
    while text.get(end) == Some(&b'=') {
        end += 1;
    }
    (start, end)
}

/// `start..end` widened to the characters it touches, so a redaction never splits one.
fn on_char_boundaries(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    end = end.min(text.len());
    start = start.min(end);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    (start, end)
}

/// A text, or what it decodes to with the position in the text of each decoded byte.
pub(super) struct View<'t> {
    bytes: Cow<'t, [u8]>,
    /// For a decoded view: where each byte of it was written in the text.
    map: Option<Vec<usize>>,
    /// How the view was decoded (`None`: the text itself).
    decoded: Option<Encoding>,
}

impl View<'_> {
    /// The range of the text that `start..end` of this view was decoded from.
    fn original(&self, start: usize, end: usize, text_len: usize) -> (usize, usize) {
        let Some(map) = &self.map else { return (start, end) };
        let at = |i: usize| map.get(i).copied().unwrap_or(text_len);
        (at(start), at(end))
    }
}

/// `text` itself, and what it decodes to when it holds percent or backslash escapes (each
/// alone, and both, percent first as a URL carried in a string would be). With `mapped`, each
/// decoded view says where each of its bytes was written; without, only the bytes are made
/// (for a yes-or-no search, which is all most texts get).
pub(super) fn views(text: &[u8], mapped: bool) -> Vec<View<'_>> {
    let mut out = vec![View { bytes: Cow::Borrowed(text), map: None, decoded: None }];
    let has_backslash = text.contains(&b'\\');
    if has_backslash {
        if let Some((bytes, map)) = decode(text, None, mapped, escape_at) {
            out.push(View { bytes: Cow::Owned(bytes), map, decoded: Some(Encoding::Escaped) });
        }
    }
    if !text.contains(&b'%') {
        return out;
    }
    if let Some((bytes, map)) = decode(text, None, mapped, percent_at) {
        if bytes.contains(&b'\\') {
            if let Some((both, both_map)) = decode(&bytes, map.as_deref(), mapped, escape_at) {
                out.push(View { bytes: Cow::Owned(both), map: both_map, decoded: Some(Encoding::Escaped) });
            }
        }
        out.push(View { bytes: Cow::Owned(bytes), map, decoded: Some(Encoding::Percent) });
    }
    out
}

/// A decoded view of `text`: its bytes, and with `mapped` where each came from in the text
/// (through `map`, when `text` is itself decoded). `None` when no escape decodes.
type Decoded = Option<(Vec<u8>, Option<Vec<usize>>)>;

/// Reads the escape at the start of a text, if there is one: its bytes and how much it took.
type Escape = fn(&[u8]) -> Option<(Vec<u8>, usize)>;

/// `text` with every escape `escape` recognises (it gives the bytes and how much it took)
/// decoded.
fn decode(text: &[u8], map: Option<&[usize]>, mapped: bool, escape: Escape) -> Decoded {
    let mut bytes = Vec::with_capacity(text.len());
    let mut out_map = mapped.then(|| Vec::with_capacity(text.len()));
    let mut changed = false;
    let mut i = 0;
    while let Some(rest) = text.get(i..).filter(|r| !r.is_empty()) {
        let at = map.and_then(|m| m.get(i).copied()).unwrap_or(i);
        let (decoded, used) = match escape(rest) {
            Some((decoded, used)) => {
                changed = true;
                (decoded, used)
            }
            None => {
                // Copy up to the next possible escape in one go.
                let run = rest.iter().skip(1).position(|&c| c == b'%' || c == b'\\').map_or(rest.len(), |p| p + 1);
                let plain = rest.get(..run).unwrap_or_default();
                bytes.extend_from_slice(plain);
                if let Some(m) = &mut out_map {
                    m.extend((i..i + run).map(|j| map.and_then(|m| m.get(j).copied()).unwrap_or(j)));
                }
                i += run;
                continue;
            }
        };
        if let Some(m) = &mut out_map {
            m.extend(std::iter::repeat_n(at, decoded.len()));
        }
        bytes.extend(decoded);
        i += used;
    }
    changed.then_some((bytes, out_map))
}

/// The byte of the `%XX` escape (either case) at the start of `s`, and the 3 bytes it took.
fn percent_at(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    if s.first() != Some(&b'%') {
        return None;
    }
    Some((vec![hex_byte(s.get(1..3)?)?], 3))
}

/// The bytes of the backslash escape (`\\uXXXX` with surrogate pairs joined, `\\xHH`, and the
/// one-letter escapes of JSON) at the start of `s`, and how many bytes of `s` it took.
fn escape_at(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    if s.first() != Some(&b'\\') {
        return None;
    }
    let simple = match s.get(1)? {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        b'/' => Some(b'/'),
        b'\'' => Some(b'\''),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'b' => Some(0x08),
        b'f' => Some(0x0c),
        _ => None,
    };
    if let Some(b) = simple {
        return Some((vec![b], 2));
    }
    match s.get(1)? {
        b'x' => Some((vec![hex_byte(s.get(2..4)?)?], 4)),
        b'u' => {
            let hi = hex_u16(s.get(2..6)?)?;
            let (code, used) = if (0xD800..0xDC00).contains(&hi) && s.get(6..8) == Some(b"\\u") {
                let lo = hex_u16(s.get(8..12)?)?;
                if (0xDC00..0xE000).contains(&lo) {
                    (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), 12)
                } else {
                    (hi, 6)
                }
            } else {
                (hi, 6)
            };
            let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            Some((c.encode_utf8(&mut buf).as_bytes().to_vec(), used))
        }
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let [hi, lo] = two else { return None };
    Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?)
}

fn hex_u16(four: &[u8]) -> Option<u32> {
    four.iter().try_fold(0u32, |n, &d| Some(n << 4 | u32::from(hex_digit(d)?))).filter(|_| four.len() == 4)
}

fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_cores_are_in_every_encoding_of_the_secret_at_any_alignment() {
        let secret = b"s3cr3t-value!";
        for before in [&b""[..], b"a", b"ab", b"abc", b"user:", b"\xff\x00"] {
            for after in [&b""[..], b"x", b"xy", b"\n-rest"] {
                let blob = [before, &secret[..], after].concat();
                for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                    let encoded = engine.encode(&blob);
                    let core = base64_core(secret, before.len() % 3, engine);
                    assert!(core.len() >= secret.len(), "{core:?}");
                    assert!(encoded.as_bytes().windows(core.len()).any(|w| w == core), "{encoded} lacks core");
                }
            }
        }
    }

    #[test]
    fn decoded_views_map_back_to_where_each_byte_was_written() {
        let text = b"k=%73%65cret&x\\u0041\\x42";
        let views = views(text, true);
        assert_eq!(views.len(), 4, "the text, unescaped, percent then unescaped, percent-decoded");
        let percent = views.iter().find(|v| v.decoded == Some(Encoding::Percent)).unwrap();
        assert_eq!(percent.bytes.as_ref(), b"k=secret&x\\u0041\\x42");
        assert_eq!(percent.original(2, 8, text.len()), (2, 12), "`%73%65cret` is bytes 2..12");
        let both = views.iter().rfind(|v| v.decoded == Some(Encoding::Escaped)).unwrap();
        assert_eq!(both.bytes.as_ref(), b"k=secret&xAB");
        assert_eq!(both.original(10, 12, text.len()), (14, text.len()));
        assert!(decode(b"100% sure %zz", None, true, percent_at).is_none());
        assert_eq!(super::views(b"plain text", true).len(), 1);
    }

    #[test]
    fn forms_are_distinct_and_labelled() {
        let forms = forms_of(b"abcdef12");
        let labels: Vec<&str> = forms.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(labels.first(), Some(&"plain"));
        assert!(labels.contains(&"hex") && labels.contains(&"base64"));
        let patterns: Vec<&Vec<u8>> = forms.iter().map(|(p, _)| p).collect();
        for (i, p) in patterns.iter().enumerate() {
            assert!(!patterns[..i].contains(p), "duplicate pattern {p:?}");
        }
    }
}
