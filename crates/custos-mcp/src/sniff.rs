//! Best-effort recovery of `id` and `method` from the start of a frame too large to parse.
//!
//! An oversized request still deserves an error reply the client can match to its request, so
//! the frame reader keeps a bounded prefix and this scanner walks it, tracking strings and
//! nesting, to find the top-level `"id"` and `"method"` members if they come early enough.

use serde_json::value::RawValue;

/// What the prefix revealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sniffed {
    pub id: Option<String>,
    pub method: Option<String>,
}

impl Sniffed {
    /// The id as raw JSON, when it was a string or a number.
    pub fn raw_id(&self) -> Option<Box<RawValue>> {
        RawValue::from_string(self.id.clone()?).ok()
    }
}

/// Scans `prefix` (possibly cut mid-value) for top-level `id` and `method`.
pub fn sniff(prefix: &[u8]) -> Sniffed {
    let mut out = Sniffed::default();
    let mut depth = 0usize;
    let mut i = 0usize;
    let mut expecting_key = false;
    let mut pending_key: Option<Vec<u8>> = None;
    while let Some(&b) = prefix.get(i) {
        match b {
            b'{' | b'[' => {
                depth += 1;
                expecting_key = b == b'{' && depth == 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                expecting_key = depth == 1;
                i += 1;
            }
            b':' => {
                i += 1;
                if let Some(key) = pending_key.take() {
                    let rest = prefix.get(i..).unwrap_or_default();
                    let start = rest.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(rest.len());
                    let value = scalar(rest.get(start..).unwrap_or_default());
                    match (key.as_slice(), value) {
                        (b"id", Some(v)) => out.id = Some(v),
                        (b"method", Some(v)) if v.starts_with('"') => {
                            out.method = serde_json::from_str(&v).ok();
                        }
                        _ => {}
                    }
                }
            }
            b'"' => {
                let end = string_end(prefix, i);
                if depth == 1 && expecting_key {
                    pending_key = prefix.get(i + 1..end.saturating_sub(1)).map(<[u8]>::to_vec);
                    expecting_key = false;
                }
                i = end;
            }
            _ => i += 1,
        }
        if out.id.is_some() && out.method.is_some() {
            break;
        }
    }
    out
}

/// Index just past the string starting at `start` (a quote), or the end of input.
fn string_end(s: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// A complete string or number at the start of `s`, as JSON text.
fn scalar(s: &[u8]) -> Option<String> {
    let end = match s.first()? {
        b'"' => {
            let end = string_end(s, 0);
            if end > s.len() || s.get(end - 1) != Some(&b'"') || end < 2 {
                return None;
            }
            end
        }
        b'-' | b'0'..=b'9' => {
            let len = s.iter().position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))?;
            len
        }
        _ => return None,
    };
    let text = std::str::from_utf8(s.get(..end)?).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_id_and_method_in_a_cut_prefix() {
        let s =
            sniff(br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"x","arguments":{"blob":"aaaa"#);
        assert_eq!(s, Sniffed { id: Some("42".into()), method: Some("tools/call".into()) });
        let s = sniff(br#"{"params":{"id":1,"method":"evil"},"method":"tools/call","id":"r-1","x":"#);
        assert_eq!(s, Sniffed { id: Some("\"r-1\"".into()), method: Some("tools/call".into()) });
    }

    #[test]
    fn gives_up_quietly_on_garbage() {
        assert_eq!(sniff(b"xxxxxxxx"), Sniffed::default());
        assert_eq!(sniff(br#"{"id":"unterminated"#), Sniffed::default());
        assert_eq!(sniff(br#"{"id":12"#), Sniffed::default());
        assert_eq!(sniff(br#"{"a\"id":1}"#), Sniffed::default());
    }
}
