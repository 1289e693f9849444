//! Canonical JSON and SHA-256 digests.
//!
//! The canonical form is compact JSON with object keys sorted by code point (what `serde_json`
//! produces for a [`serde_json::Value`] built without `preserve_order`). It is the form that
//! descriptor digests, approval digests and the audit chain are computed over, so two peers that
//! send the same document with different key order or spacing get the same digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of the canonical JSON form of `value`.
    pub fn of_json(value: &serde_json::Value) -> Self {
        Self::of(&canonical_json(value))
    }

    /// The all-zero digest: the `prev` of the first event in a chain.
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 64 lowercase hex digits of [`Self::to_hex`], without allocating a string: for
    /// comparing a stored digest with a computed one, once per event when a log is verified.
    pub fn hex(&self) -> [u8; 64] {
        let mut out = [0; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            if let [hi, lo] = pair {
                (*hi, *lo) = (hex_char(byte >> 4), hex_char(byte & 0xf));
            }
        }
        out
    }
}

/// The lowercase hex digit of `n`, which is below 16.
fn hex_char(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' - 10 + n
    }
}

/// The value of `c` as a hex digit of either case, and whether it is one. Computed without a
/// branch per digit: a digest's digits are random, so a `match` on them mispredicts about every
/// other one, which made parsing a digest cost as much as hashing an event.
fn hex_value(c: u8) -> (u8, bool) {
    let digit = c.wrapping_sub(b'0');
    // `| 0x20` lowercases `A`..=`F` and moves no other byte into `a`..=`f`.
    let letter = (c | 0x20).wrapping_sub(b'a');
    let is_digit = digit < 10;
    (if is_digit { digit } else { letter.wrapping_add(10) }, is_digit | (letter < 6))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a sha-256 digest (64 hex digits)")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        let mut out = [0u8; 32];
        let mut valid = digits.len() == 64;
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            if let [hi, lo] = *pair {
                let ((hi, hi_ok), (lo, lo_ok)) = (hex_value(hi), hex_value(lo));
                *byte = (hi << 4) | lo;
                valid &= hi_ok & lo_ok;
            }
        }
        if !valid {
            return Err(ParseDigestError(s.to_owned()));
        }
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The canonical JSON bytes of `value`: compact, object keys sorted by code point at every level.
///
/// Keys are sorted here, not left to `serde_json`'s map type: another crate in the build may turn
/// on `serde_json/preserve_order`, which would make maps keep insertion order instead.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

/// [`canonical_json`] appended to `out`: for callers that write a canonical object field by
/// field, without building it as a [`serde_json::Value`] first.
pub fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let write_entries = |entries: &mut dyn Iterator<Item = (&String, &Value)>, out: &mut Vec<u8>| {
                out.push(b'{');
                for (i, (key, v)) in entries.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    write_canonical(v, out);
                }
                out.push(b'}');
            };
            // Sorted already unless `preserve_order` is on: then sort a copy of the entries.
            if map.keys().is_sorted() {
                write_entries(&mut map.iter(), out);
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_entries(&mut entries.into_iter(), out);
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        // Scalars have one compact form already.
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            // Writing to a `Vec` cannot fail.
            let _ = serde_json::to_writer(out, value);
        }
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it, straight into `out`.
fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing to a `Vec` cannot fail, and a `str` always serializes.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_ignores_key_order_and_spacing() {
        let a: serde_json::Value = serde_json::from_str(r#"{ "b": 1, "a": {"y": 2, "x": [3]} }"#).unwrap();
        let b = json!({"a": {"x": [3], "y": 2}, "b": 1});
        assert_eq!(canonical_json(&a), br#"{"a":{"x":[3],"y":2},"b":1}"#.to_vec());
        assert_eq!(Digest::of_json(&a), Digest::of_json(&b));
        let nested: serde_json::Value = serde_json::from_str(r#"{"z":[{"b":"\u00e9\n","a":null}],"y":1.5}"#).unwrap();
        assert_eq!(canonical_json(&nested), "{\"y\":1.5,\"z\":[{\"a\":null,\"b\":\"é\\n\"}]}".as_bytes());
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in ["", "plain", "quote \" and \\ backslash", "\u{0}\u{1f}\u{7f}\t\r\n", "é 日本 🦀", "</script>"] {
            let mut out = Vec::new();
            write_string(s, &mut out);
            assert_eq!(out, serde_json::Value::String(s.to_owned()).to_string().into_bytes(), "{s:?}");
        }
    }

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of(b"custos");
        let parsed: Digest = d.to_hex().parse().unwrap();
        assert_eq!(parsed, d);
        assert!("xyz".parse::<Digest>().is_err());
        assert_eq!(Digest::ZERO.to_hex(), "0".repeat(64));
    }

    #[test]
    fn hex_digits_are_to_hex_without_the_string() {
        for d in [Digest::ZERO, Digest::of(b"custos"), Digest::of(b""), Digest([0xff; 32])] {
            assert_eq!(d.hex().as_slice(), d.to_hex().as_bytes());
        }
    }

    #[test]
    fn parsing_accepts_exactly_what_hex_decoding_does() {
        // Every byte value at the first and the last position of an otherwise valid digest:
        // accepted, and read as the same digest, exactly when the hex crate decodes it.
        let valid = Digest::of(b"custos").to_hex().into_bytes();
        for at in [0, 63] {
            for c in 0..=255u8 {
                let mut digits = valid.clone();
                digits[at] = c;
                let Ok(s) = std::str::from_utf8(&digits) else { continue };
                let mut expected = [0u8; 32];
                let expected = hex::decode_to_slice(s, &mut expected).map(|()| Digest(expected)).ok();
                assert_eq!(s.parse::<Digest>().ok(), expected, "byte {c:#04x} at {at}");
            }
        }
        let d = Digest::of(b"custos");
        assert_eq!(d.to_hex().to_uppercase().parse::<Digest>().unwrap(), d);
        assert!(d.to_hex()[..63].parse::<Digest>().is_err());
        assert!(format!("{}0", d.to_hex()).parse::<Digest>().is_err());
        assert!(format!("{}\u{e9}", &d.to_hex()[..62]).parse::<Digest>().is_err());
        assert!("".parse::<Digest>().is_err());
    }
}
