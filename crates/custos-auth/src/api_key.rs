//! API keys: `cst_<key id>_<secret>`, shown once, stored only as a hash.
//!
//! The key id is 8 characters of lowercase base32 (40 random bits), public, so a store finds
//! the one hash to compare without scanning. The secret is 32 bytes from the operating
//! system's RNG, base64url without padding (43 characters). Only a hash of the secret part is
//! kept: SHA-256, or HMAC-SHA256 keyed with a deployment pepper so that a stolen table of hashes
//! alone cannot be used to test guesses. Comparison is constant-time.
//!
//! Keeping the hashes, and revoking them, is the caller's job; this file only makes, parses,
//! hashes and compares.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::AuthError;

/// What every API key starts with, so a bearer value can be told from a JWT at a glance.
pub const API_KEY_PREFIX: &str = "cst_";
/// Length of the public key id, in characters.
pub const KEY_ID_LEN: usize = 8;
/// Random bytes in the secret part.
pub const SECRET_BYTES: usize = 32;
/// Length of the secret part once encoded (base64url, no padding), in characters.
pub const SECRET_LEN: usize = 43;
/// Length of a whole key, in characters.
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + KEY_ID_LEN + 1 + SECRET_LEN;
/// Shortest pepper accepted, in bytes.
pub const MIN_PEPPER_BYTES: usize = 16;

const KEY_ID_BYTES: usize = 5;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A whole API key as presented or as just generated. Its `Debug` shows the key id only.
///
/// INVARIANT: `text` is `cst_` + 8 base32 characters + `_` + 43 base64url characters that
/// decode to exactly 32 bytes.
#[derive(Clone)]
pub struct ApiKey {
    /// The whole key; wiped from memory when dropped.
    text: Zeroizing<String>,
}

impl ApiKey {
    /// A new key: 40 random bits of key id and 256 random bits of secret from the OS RNG.
    pub fn generate() -> Result<ApiKey, AuthError> {
        let mut random = Zeroizing::new([0u8; KEY_ID_BYTES + SECRET_BYTES]);
        getrandom::fill(random.as_mut_slice()).map_err(|_| AuthError::RandomUnavailable)?;
        let (id_bytes, secret_bytes) = random.split_at(KEY_ID_BYTES);
        let mut text = Zeroizing::new(String::with_capacity(API_KEY_LEN));
        text.push_str(API_KEY_PREFIX);
        text.push_str(&base32_40(id_bytes));
        text.push('_');
        URL_SAFE_NO_PAD.encode_string(secret_bytes, &mut text);
        // INVARIANT holds by construction; parse again rather than trust it.
        ApiKey::parse(&text)
    }

    /// Parses a key as presented. A malformed key gives an error that never repeats the input.
    pub fn parse(text: &str) -> Result<ApiKey, AuthError> {
        let malformed = |reason| AuthError::Malformed { reason };
        let rest = text.strip_prefix(API_KEY_PREFIX).ok_or(malformed("api key does not start with `cst_`"))?;
        if text.len() != API_KEY_LEN {
            return Err(malformed("api key has the wrong length"));
        }
        let (id, rest) = rest.split_at_checked(KEY_ID_LEN).ok_or(malformed("api key has the wrong length"))?;
        if !id.bytes().all(|b| BASE32.contains(&b)) {
            return Err(malformed("api key id is not lowercase base32"));
        }
        let secret = rest.strip_prefix('_').ok_or(malformed("api key has no `_` after its id"))?;
        let mut decoded = Zeroizing::new(Vec::with_capacity(SECRET_BYTES + 2));
        URL_SAFE_NO_PAD.decode_vec(secret, &mut decoded).map_err(|_| malformed("api key secret is not base64url"))?;
        if decoded.len() != SECRET_BYTES {
            return Err(malformed("api key secret has the wrong length"));
        }
        Ok(ApiKey { text: Zeroizing::new(text.to_owned()) })
    }

    /// The public key id, to find the stored hash by.
    pub fn key_id(&self) -> &str {
        self.text.get(API_KEY_PREFIX.len()..API_KEY_PREFIX.len() + KEY_ID_LEN).unwrap_or_default()
    }

    /// The whole key, to show once to whoever asked for it. Never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The secret part: the only thing hashed.
    fn secret(&self) -> &[u8] {
        self.text.as_bytes().get(API_KEY_LEN - SECRET_LEN..).unwrap_or_default()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("key_id", &self.key_id()).field("secret", &"<redacted>").finish()
    }
}

impl FromStr for ApiKey {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiKey::parse(text)
    }
}

/// A deployment-wide secret mixed into every key hash (HMAC key). Its `Debug` shows nothing.
#[derive(Clone)]
pub struct Pepper(Zeroizing<Vec<u8>>);

impl Pepper {
    /// A pepper of at least [`MIN_PEPPER_BYTES`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Pepper, AuthError> {
        if bytes.len() < MIN_PEPPER_BYTES {
            return Err(AuthError::PepperTooShort { min: MIN_PEPPER_BYTES });
        }
        Ok(Pepper(Zeroizing::new(bytes.to_vec())))
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// How a [`KeyHash`] was made; written into its stored form so a pepper cannot be added or
/// dropped unnoticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// SHA-256 of the secret part.
    Sha256,
    /// HMAC-SHA256 of the secret part, keyed with the deployment pepper.
    HmacSha256,
}

impl HashScheme {
    fn label(self) -> &'static str {
        match self {
            HashScheme::Sha256 => "sha256",
            HashScheme::HmacSha256 => "hmac-sha256",
        }
    }
}

/// The stored form of a key: `sha256:<64 hex>` or `hmac-sha256:<64 hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    scheme: HashScheme,
    digest: [u8; 32],
}

impl KeyHash {
    /// Parses the form [`KeyHash::encode`] writes.
    pub fn parse(text: &str) -> Result<KeyHash, AuthError> {
        let malformed = |reason| AuthError::MalformedKeyHash { reason };
        let (label, hex_digest) = text.split_once(':').ok_or(malformed("expected `scheme:hex`"))?;
        let scheme = match label {
            "sha256" => HashScheme::Sha256,
            "hmac-sha256" => HashScheme::HmacSha256,
            _ => return Err(malformed("unknown scheme; expected `sha256` or `hmac-sha256`")),
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| malformed("expected 64 hex digits"))?;
        Ok(KeyHash { scheme, digest })
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.scheme.label(), hex::encode(self.digest))
    }

    /// How it was made.
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHash").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl FromStr for KeyHash {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        KeyHash::parse(text)
    }
}

/// Hashes and checks keys, with the deployment pepper if there is one.
#[derive(Clone, Debug, Default)]
pub struct KeyHasher {
    pepper: Option<Pepper>,
}

impl KeyHasher {
    /// A hasher; `None` for plain SHA-256.
    pub fn new(pepper: Option<Pepper>) -> KeyHasher {
        KeyHasher { pepper }
    }

    /// The hash to store for `key`.
    pub fn hash(&self, key: &ApiKey) -> KeyHash {
        match &self.pepper {
            None => KeyHash { scheme: HashScheme::Sha256, digest: Sha256::digest(key.secret()).into() },
            Some(pepper) => KeyHash { scheme: HashScheme::HmacSha256, digest: hmac_sha256(pepper, key.secret()) },
        }
    }

    /// Whether `presented` is the key `stored` was made from. Constant-time in the digest; a
    /// hash made with another scheme (pepper added or dropped) never matches.
    pub fn verify(&self, presented: &ApiKey, stored: &KeyHash) -> bool {
        let mut computed = self.hash(presented);
        let same = computed.scheme == stored.scheme && bool::from(computed.digest.ct_eq(&stored.digest));
        computed.digest.zeroize();
        same
    }
}

/// The SHA-256 hash to store for `key` (no pepper).
pub fn hash(key: &ApiKey) -> KeyHash {
    KeyHasher::default().hash(key)
}

/// Whether `presented` is the key `stored` was made from (no pepper; see [`KeyHasher`]).
pub fn verify(presented: &ApiKey, stored: &KeyHash) -> bool {
    KeyHasher::default().verify(presented, stored)
}

fn hmac_sha256(pepper: &Pepper, message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so the error arm cannot happen; the SHA-256 of the pepper
    // and message is a safe fallback that still never equals an HMAC by accident.
    match Hmac::<Sha256>::new_from_slice(&pepper.0) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().into()
        }
        Err(_) => Sha256::new().chain_update(pepper.0.as_slice()).chain_update(message).finalize().into(),
    }
}

/// Lowercase RFC 4648 base32 of exactly 5 bytes: 8 characters, no padding.
fn base32_40(bytes: &[u8]) -> String {
    let mut acc: u64 = 0;
    for &b in bytes.iter().take(KEY_ID_BYTES) {
        acc = (acc << 8) | u64::from(b);
    }
    (0..KEY_ID_LEN)
        .rev()
        .map(|i| {
            let index = usize::try_from((acc >> (i * 5)) & 0x1f).unwrap_or_default();
            BASE32.get(index).copied().map(char::from).unwrap_or('a')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = ApiKey::generate().unwrap();
        let text = key.expose();
        assert_eq!(text.len(), API_KEY_LEN);
        assert!(text.starts_with("cst_"));
        assert_eq!(key.key_id().len(), KEY_ID_LEN);
        assert!(key.key_id().bytes().all(|b| BASE32.contains(&b)));
        assert_eq!(&text[12..13], "_");
        assert_eq!(ApiKey::parse(text).unwrap().expose(), text);
        assert_ne!(ApiKey::generate().unwrap().expose(), text, "two keys must differ");
    }

    #[test]
    fn round_trip_through_the_stored_hash() {
        let key = ApiKey::generate().unwrap();
        let stored = KeyHash::parse(&hash(&key).encode()).unwrap();
        assert_eq!(stored.scheme(), HashScheme::Sha256);
        let presented = ApiKey::parse(key.expose()).unwrap();
        assert!(verify(&presented, &stored));
    }

    #[test]
    fn a_different_key_does_not_verify() {
        let key = ApiKey::generate().unwrap();
        let other = ApiKey::generate().unwrap();
        assert!(!verify(&other, &hash(&key)));
        // Same id, the first secret character changed (it carries no padding bits).
        let text = key.expose();
        let changed = if &text[13..14] == "A" { "B" } else { "A" };
        let tampered = ApiKey::parse(&format!("{}{changed}{}", &text[..13], &text[14..])).unwrap();
        assert_eq!(tampered.key_id(), key.key_id());
        assert!(!verify(&tampered, &hash(&key)));
    }

    #[test]
    fn pepper_changes_the_hash_and_must_match() {
        let key = ApiKey::generate().unwrap();
        let peppered = KeyHasher::new(Some(Pepper::new(&[7u8; 32]).unwrap()));
        let stored = peppered.hash(&key);
        assert_eq!(stored.scheme(), HashScheme::HmacSha256);
        assert!(stored.encode().starts_with("hmac-sha256:"));
        assert!(peppered.verify(&key, &stored));
        assert!(!verify(&key, &stored), "a peppered hash must not verify without the pepper");
        let other_pepper = KeyHasher::new(Some(Pepper::new(&[8u8; 32]).unwrap()));
        assert!(!other_pepper.verify(&key, &stored));
        assert!(!peppered.verify(&key, &hash(&key)), "a plain hash must not verify with a pepper");
    }

    #[test]
    fn short_pepper_is_refused() {
        assert_eq!(Pepper::new(b"short").unwrap_err(), AuthError::PepperTooShort { min: 16 });
    }

    #[test]
    fn malformed_keys_are_refused_without_echo() {
        let good = ApiKey::generate().unwrap();
        let good = good.expose();
        let cases = [
            String::new(),
            "cst_".to_owned(),
            good.replacen("cst_", "cs_", 1),
            good.replacen("cst_", "CST_", 1),
            format!("{good}A"),
            good[..good.len() - 1].to_owned(),
            format!("cst_ABCDEFGH_{}", &good[13..]),
            format!("{}-{}", &good[..12], &good[13..]),
            format!("{}*{}", &good[..20], &good[21..]),
            format!("cst_abcdefgh_{}A", "é".repeat(21)),
            // 43 base64url characters whose last one carries non-zero trailing bits.
            format!("cst_abcdefgh_{}B", "A".repeat(42)),
        ];
        for case in &cases {
            let err = ApiKey::parse(case).unwrap_err();
            assert!(matches!(err, AuthError::Malformed { .. }), "{case:?} gave {err:?}");
            let shown = format!("{err} {err:?}");
            if case.len() > 4 {
                assert!(!shown.contains(case.as_str()), "error repeats the input: {shown}");
                assert!(!shown.contains(&case[4..]), "error repeats the input: {shown}");
            }
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let key = ApiKey::generate().unwrap();
        let secret = &key.expose()[13..];
        for shown in [format!("{key:?}"), format!("{key:#?}"), format!("{:?}", hash(&key))] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!shown.contains(key.expose()), "{shown}");
        }
        assert!(format!("{key:?}").contains(key.key_id()));
        let pepper = Pepper::new(b"0123456789abcdef-pepper").unwrap();
        assert!(!format!("{pepper:?}").contains("pepper-"));
        assert!(!format!("{:?}", KeyHasher::new(Some(pepper))).contains("0123456789"));
    }

    #[test]
    fn stored_hash_parsing() {
        let key = ApiKey::generate().unwrap();
        let encoded = hash(&key).encode();
        assert_eq!(encoded.len(), "sha256:".len() + 64);
        assert_eq!(KeyHash::parse(&encoded).unwrap(), hash(&key));
        assert_eq!(encoded.parse::<KeyHash>().unwrap().to_string(), encoded);
        for bad in ["", "sha256", "md5:00", "sha256:zz", "sha256:00", &encoded.replace("sha256", "SHA256")] {
            assert!(matches!(KeyHash::parse(bad), Err(AuthError::MalformedKeyHash { .. })), "{bad}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 test vector: BASE32("fooba") = "MZXW6YTB".
        assert_eq!(base32_40(b"fooba"), "mzxw6ytb");
        assert_eq!(base32_40(&[0; 5]), "aaaaaaaa");
        assert_eq!(base32_40(&[0xff; 5]), "77777777");
    }
}
