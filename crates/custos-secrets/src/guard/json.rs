//! Finding and rewriting the strings of one JSON message without building a tree.
//!
//! The walker reads the message once, left to right, keeping only a stack of the containers it
//! is in (for the JSON pointer of a hit). Each string (object keys included) and each number is
//! decoded and handed to the guard; a string that changes is written back re-encoded, and every
//! other byte of the message is copied as it came. So a cleaned message keeps its key order,
//! its number spellings and its whitespace, no nesting depth can exhaust the stack, and when
//! nothing changes nothing is allocated but the container stack.

use std::borrow::Cow;

use super::{Found, LeakGuard};

/// Containers deeper than this are still walked and their strings still scanned, but a hit in
/// them names the deepest tracked ancestor as its path: it keeps the stack small on hostile
/// input (a message of four million `[`).
pub const MAX_PATH_DEPTH: usize = 128;

/// What the walk made of a message.
pub(super) enum Walked {
    /// Valid JSON, nothing to redact.
    Unchanged,
    /// Valid JSON with these bytes as the cleaned message.
    Changed(Vec<u8>),
    /// Not JSON: a stray byte, an unterminated string, brackets that do not match.
    NotJson,
}

/// Where a string literal sits in the raw message.
#[derive(Clone, Copy)]
struct Lit {
    /// Index of the opening quote.
    open: usize,
    /// Index of the closing quote.
    close: usize,
    /// Whether it contains a backslash, i.e. whether its text differs from its bytes.
    escaped: bool,
    /// Whether it contains a `%`: its text may hide a percent-encoded value.
    percent: bool,
}

/// One container being walked.
enum Frame {
    /// `key`: the key of the member being read, for the path; `expect_key`: the next string is a
    /// key (after `{` or `,`), not a value (after `:`).
    Object { key: Option<Lit>, expect_key: bool },
    /// `index`: the item being read.
    Array { index: usize },
}

struct Walker<'a> {
    guard: &'a LeakGuard,
    raw: &'a [u8],
    frames: Vec<Frame>,
    /// How many containers deeper than [`MAX_PATH_DEPTH`] the walk is.
    untracked: usize,
    /// The cleaned message, started at the first change.
    out: Option<Vec<u8>>,
    /// How much of `raw` is already in `out`.
    copied: usize,
}

/// Walks `raw`, redacting every string and number the guard finds something in. `raw_clean`
/// says the guard already found nothing in the raw bytes, which is exact for the strings
/// without escapes (their text is their bytes): only escaped strings, and those with a `%`
/// (which may decode to a value), then need a look.
pub(super) fn walk(guard: &LeakGuard, raw: &[u8], raw_clean: bool, found: &mut Found) -> Walked {
    let mut w = Walker { guard, raw, frames: Vec::new(), untracked: 0, out: None, copied: 0 };
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' | b'[' => {
                if w.untracked == 0 && w.frames.len() < MAX_PATH_DEPTH {
                    w.frames.push(if b == b'{' {
                        Frame::Object { key: None, expect_key: true }
                    } else {
                        Frame::Array { index: 0 }
                    });
                } else {
                    w.untracked += 1;
                }
                i += 1;
            }
            b'}' | b']' => {
                if w.untracked > 0 {
                    w.untracked -= 1;
                } else {
                    match (w.frames.pop(), b) {
                        (Some(Frame::Object { .. }), b'}') | (Some(Frame::Array { .. }), b']') => {}
                        _ => return Walked::NotJson,
                    }
                }
                i += 1;
            }
            b':' => {
                if let (0, Some(Frame::Object { expect_key, .. })) = (w.untracked, w.frames.last_mut()) {
                    *expect_key = false;
                }
                i += 1;
            }
            b',' => {
                if w.untracked == 0 {
                    match w.frames.last_mut() {
                        Some(Frame::Object { key, expect_key }) => {
                            *key = None;
                            *expect_key = true;
                        }
                        Some(Frame::Array { index }) => *index += 1,
                        None => return Walked::NotJson,
                    }
                }
                i += 1;
            }
            b'"' => {
                let Some(lit) = literal_at(raw, i) else { return Walked::NotJson };
                let is_key =
                    w.untracked == 0 && matches!(w.frames.last(), Some(Frame::Object { expect_key: true, .. }));
                // A string without escapes whose bytes held nothing can still decode to a
                // held value when it has a `%`: only then is it read as text.
                let hides = || lit.percent && guard.in_decoded(raw.get(lit.open + 1..lit.close).unwrap_or_default());
                if lit.escaped || !raw_clean || hides() {
                    let text = decode(raw, lit);
                    if let Some(clean) = guard.redact_str(&text, found, || w.pointer(is_key)) {
                        w.splice(lit.open, lit.close + 1, &clean);
                    }
                }
                if is_key {
                    if let Some(Frame::Object { key, .. }) = w.frames.last_mut() {
                        *key = Some(lit);
                    }
                }
                i = lit.close + 1;
            }
            b'-' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                let len = raw
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
                    .count();
                let token = raw.get(i..i + len).unwrap_or_default();
                match token {
                    b"true" | b"false" | b"null" => {}
                    _ if is_number(token) => {
                        // A held secret made of digits (a PIN, an account number) can be sent
                        // as a number: it is replaced by the redaction string.
                        if !raw_clean {
                            let text = String::from_utf8_lossy(token);
                            if let Some(clean) = guard.redact_str(&text, found, || w.pointer(false)) {
                                w.splice(i, i + len, &clean);
                            }
                        }
                    }
                    _ => return Walked::NotJson,
                }
                i += len;
            }
            _ => return Walked::NotJson,
        }
    }
    if w.untracked > 0 || !w.frames.is_empty() {
        return Walked::NotJson;
    }
    match w.out {
        None => Walked::Unchanged,
        Some(mut out) => {
            out.extend_from_slice(raw.get(w.copied..).unwrap_or_default());
            Walked::Changed(out)
        }
    }
}

impl Walker<'_> {
    /// Replaces `raw[start..end]` by `text` as a JSON string in the output.
    fn splice(&mut self, start: usize, end: usize, text: &str) {
        let raw = self.raw;
        let out = self.out.get_or_insert_with(|| Vec::with_capacity(raw.len() + 64));
        out.extend_from_slice(raw.get(self.copied..start).unwrap_or_default());
        write_json_string(out, text);
        self.copied = end;
    }

    /// The JSON pointer of the value being read, or for a key, of the object it is in. Keys on
    /// the way are redacted too: the path goes to the audit log, and a secret used as a key
    /// must not reach it that way.
    fn pointer(&self, is_key: bool) -> String {
        let depth = if is_key { self.frames.len().saturating_sub(1) } else { self.frames.len() };
        let mut path = String::new();
        for frame in self.frames.iter().take(depth) {
            match frame {
                Frame::Object { key: Some(lit), .. } => {
                    path.push('/');
                    let key = decode(self.raw, *lit);
                    for c in self.guard.redact_quiet(&key).chars() {
                        match c {
                            '~' => path.push_str("~0"),
                            '/' => path.push_str("~1"),
                            c => path.push(c),
                        }
                    }
                }
                // A value with no key before it: not JSON, and nothing to name.
                Frame::Object { key: None, .. } => {}
                Frame::Array { index } => {
                    path.push('/');
                    path.push_str(&index.to_string());
                }
            }
        }
        path
    }
}

/// The string literal whose opening quote is at `open`, or `None` when it never ends.
fn literal_at(raw: &[u8], open: usize) -> Option<Lit> {
    let mut j = open + 1;
    let (mut escaped, mut percent) = (false, false);
    loop {
        match raw.get(j)? {
            b'"' => return Some(Lit { open, close: j, escaped, percent }),
            b'%' => {
                percent = true;
                j += 1;
            }
            // The escaped byte can be a quote: skip it with the backslash.
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
}

/// Whether a bare token is a number (loosely: a peer's parser decides the fine points; what
/// matters here is that it is not text).
fn is_number(token: &[u8]) -> bool {
    matches!(token.first(), Some(b'-' | b'0'..=b'9'))
        && token.iter().all(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// The text of a literal, as a JSON parser on the other side would decode it. Invalid UTF-8
/// and lone surrogates become U+FFFD rather than failing: the guard must see what a lenient
/// reader would see.
fn decode(raw: &[u8], lit: Lit) -> Cow<'_, str> {
    let inner = raw.get(lit.open + 1..lit.close).unwrap_or_default();
    if lit.escaped {
        Cow::Owned(unescape(inner))
    } else {
        String::from_utf8_lossy(inner)
    }
}

fn unescape(inner: &[u8]) -> String {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while let Some(rest) = inner.get(i..).filter(|r| !r.is_empty()) {
        let run = rest.iter().position(|&c| c == b'\\').unwrap_or(rest.len());
        if run > 0 {
            out.extend_from_slice(rest.get(..run).unwrap_or_default());
            i += run;
            continue;
        }
        let simple = match rest.get(1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if let Some((c, used)) = unicode_escape(rest) {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += used;
            continue;
        }
        // An escape JSON does not have: kept as written.
        out.push(b'\\');
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

/// The character of a `\uXXXX` escape (or surrogate pair) at the start of `s`, and how many
/// bytes it took.
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    if s.get(1) != Some(&b'u') {
        return None;
    }
    let hi = hex4(s.get(2..6)?)?;
    if (0xD800..0xDC00).contains(&hi) {
        let low = s.get(6..8).filter(|p| *p == b"\\u").and_then(|_| hex4(s.get(8..12)?));
        if let Some(lo) = low.filter(|lo| (0xDC00..0xE000).contains(lo)) {
            let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?;
            return Some((c, 12));
        }
    }
    Some((char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER), 6))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    if digits.len() != 4 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Appends `text` as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(hex::encode([b]).as_bytes());
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_what_json_does() {
        let cases: &[(&str, &str)] = &[
            (r#"plain"#, "plain"),
            (r#"a\"b\\c\/d\b\f\n\r\t"#, "a\"b\\c/d\u{8}\u{c}\n\r\t"),
            (r#"\u0041KIA"#, "AKIA"),
            (r#"\u00e9\u20AC"#, "é€"),
            (r#"\ud83d\ude00"#, "😀"),
            (r#"\ud800x"#, "\u{fffd}x"),
            (r#"\udc00"#, "\u{fffd}"),
            (r#"\ud800\u0041"#, "\u{fffd}A"),
            (r#"\x"#, r#"\x"#),
            (r#"\u12"#, r#"\u12"#),
            (r#"\u+123"#, r#"\u+123"#),
            ("trailing\\", "trailing\\"),
        ];
        for (raw, text) in cases {
            assert_eq!(unescape(raw.as_bytes()), *text, "{raw}");
        }
    }

    #[test]
    fn unescape_agrees_with_serde_json_on_valid_strings() {
        let text = "quote \" backslash \\ newline \n tab \t nul \u{0} unicode é € 😀 ctrl \u{1f}";
        let encoded = serde_json::to_string(text).unwrap();
        let inner = &encoded.as_bytes()[1..encoded.len() - 1];
        assert_eq!(unescape(inner), text);

        let mut ours = Vec::new();
        write_json_string(&mut ours, text);
        assert_eq!(serde_json::from_slice::<String>(&ours).unwrap(), text);
    }
}
