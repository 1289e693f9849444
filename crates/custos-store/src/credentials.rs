//! The credential broker's state as the store keeps it: sealed secrets, signing keys, revoked
//! tokens, and which credentials were used where.
//!
//! Each change is made in one write transaction together with its event (`secret.set`,
//! `signing_key.created`, `token.revoked`, ...), like the approvals: the log says what happened,
//! the tables answer "what is the secret now?" and "is this token revoked?" with one indexed
//! read, from any process sharing the database. Like every projection, the tables are not part
//! of the hash chain; `audit verify` ignores them.
//!
//! The store never sees a plaintext secret or private key: it keeps what `custos-secrets`
//! sealed under a master key that lives outside the database, so a copy of the file alone
//! reveals no credential. `Debug` prints the length of sealed bytes, never the bytes, so they
//! cannot end up in a log line either.
//!
//! The use projection ([`CredentialUse`]) is fed by every appended event whose
//! `detail.credentials` names credentials (see `sqlite/credentials.rs`), whatever path appended
//! it, so it cannot drift from the log.

use std::fmt;

/// A secret kept by the gateway itself, sealed (encrypted and authenticated) under a master key
/// that lives outside the database. The store never sees the plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub name: String,
    /// The sealed value, opaque to the store.
    pub sealed: Vec<u8>,
    /// A short, non-reversible fingerprint of the plaintext, so the audit log and `secrets
    /// list` can tell versions apart without the value.
    pub fingerprint: String,
    /// When this value was set. A replaced secret is a rotated secret, not an edited one: the
    /// caller gives the replacement the time of the replace here, as in `updated_ms`.
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("sealed", &SealedLen(self.sealed.len()))
            .field("fingerprint", &self.fingerprint)
            .field("created_ms", &self.created_ms)
            .field("updated_ms", &self.updated_ms)
            .finish()
    }
}

/// One of the gateway's signing keys for the tokens it mints. The private key is sealed.
#[derive(Clone, PartialEq)]
pub struct SigningKeyRecord {
    /// The key id tokens name in their header; unique in the store.
    pub kid: String,
    /// `EdDSA` or `ES256`, as in a JWS header.
    pub algorithm: String,
    /// The sealed private key, opaque to the store.
    pub sealed_private: Vec<u8>,
    /// The public key as published in the JWKS.
    pub public_jwk: serde_json::Value,
    pub created_ms: i64,
    /// When a newer key replaced it for minting; `None` while it is the active key.
    pub retired_ms: Option<i64>,
    /// Until when it stays published in the JWKS (tokens it signed must keep verifying until
    /// they expire).
    pub publish_until_ms: Option<i64>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("sealed_private", &SealedLen(self.sealed_private.len()))
            .field("public_jwk", &self.public_jwk)
            .field("created_ms", &self.created_ms)
            .field("retired_ms", &self.retired_ms)
            .field("publish_until_ms", &self.publish_until_ms)
            .finish()
    }
}

/// Shows sealed bytes as their length only: `<sealed: 48 bytes>`.
struct SealedLen(usize);

impl fmt::Debug for SealedLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<sealed: {} bytes>", self.0)
    }
}

/// How one credential has been used: a projection of the events that name it.
///
/// One row per (credential, server, agent). An event counts when its `detail.credentials` is a
/// list of `{"name": …, "fingerprint": …}` objects; the server is the event's tool's server,
/// else `detail.server`, else empty; the agent is the event's agent, else empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialUse {
    /// The credential's name, as the events give it.
    pub credential: String,
    /// The fingerprint named by the latest event (by time, then by position in the log): after
    /// a rotation, it shows whether the new value is the one in use.
    pub fingerprint: String,
    pub server: String,
    pub agent: String,
    /// How many events named it; an event naming it twice counts once.
    pub uses: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_of_sealed_bytes_never_the_bytes() {
        let secret = StoredSecret {
            name: "github".into(),
            sealed: vec![0xAB; 5],
            fingerprint: "fp".into(),
            created_ms: 1,
            updated_ms: 1,
        };
        let key = SigningKeyRecord {
            kid: "k1".into(),
            algorithm: "EdDSA".into(),
            sealed_private: vec![0xCD; 7],
            public_jwk: serde_json::json!({"kty": "OKP"}),
            created_ms: 1,
            retired_ms: None,
            publish_until_ms: None,
        };
        let (secret, key) = (format!("{secret:?}"), format!("{key:?}"));
        assert!(secret.contains("<sealed: 5 bytes>") && secret.contains("github"), "{secret}");
        assert!(key.contains("<sealed: 7 bytes>") && key.contains("EdDSA"), "{key}");
        for shown in [&secret, &key] {
            assert!(!shown.contains("171") && !shown.contains("205"), "a byte leaked: {shown}");
        }
    }
}
