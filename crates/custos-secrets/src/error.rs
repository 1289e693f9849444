//! The crate's error types: [`SecretsError`] for the master key, sealed values and signing keys,
//! [`TokenError`] for a token that does not verify.

use std::path::PathBuf;

/// Why a master key, a sealed value or a signing key could not be used. Messages are lowercase
/// one-liners naming the file, the sealing context or the key in backticks; they never carry
/// key material or secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The master key file does not exist (and was not to be created).
    #[error("master key file `{}` does not exist", .path.display())]
    KeyFileMissing { path: PathBuf },

    /// The master key file (or its directory) exists but cannot be read.
    #[error("cannot read master key file `{}`: {source}", .path.display())]
    KeyFileUnreadable { path: PathBuf, source: std::io::Error },

    /// The master key file (or a missing parent directory) cannot be created.
    #[error("cannot create master key file `{}`: {source}", .path.display())]
    KeyFileCreate { path: PathBuf, source: std::io::Error },

    /// The master key file is not one `custos-master-key-v1:<base64url>` line of 32 bytes.
    #[error("master key file `{}` is malformed: {reason}", .path.display())]
    KeyFileMalformed { path: PathBuf, reason: String },

    /// Group or other users may read or write the master key file (ssh refuses such keys too).
    #[error("`{}` is {access} by other users (mode {mode:04o}); run chmod 600 on it", .path.display())]
    KeyFilePermissions { path: PathBuf, access: &'static str, mode: u32 },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// The crypto library refused an operation that cannot fail with the inputs we give it.
    #[error("internal error: cannot {what}")]
    Internal { what: &'static str },

    /// A sealed value starts with a format version this build does not know.
    #[error("cannot decrypt `{context}`: unknown sealed format version {version}")]
    SealedVersion { context: String, version: u8 },

    /// A sealed value is shorter than a version, a nonce and a tag.
    #[error("cannot decrypt `{context}`: the sealed value is truncated")]
    SealedTruncated { context: String },

    /// Authentication failed: another master key sealed it, it was sealed for another context,
    /// or a byte changed.
    #[error("cannot decrypt `{context}`: wrong master key or the value was altered")]
    Decrypt { context: String },

    /// Sealing failed (the plaintext is beyond what the cipher can take).
    #[error("cannot seal `{context}`: the value is too large")]
    Seal { context: String },

    /// A decrypted secret is not UTF-8 text.
    #[error("secret `{context}` is not utf-8 text")]
    NotUtf8 { context: String },

    /// An algorithm name that is neither `EdDSA` nor `ES256`.
    #[error("unknown signing algorithm `{name}`; expected `EdDSA` or `ES256`")]
    UnknownAlgorithm { name: String },

    /// A private key that is not a PKCS#8 document of the algorithm it is said to be.
    #[error("not a valid pkcs#8 {alg} private key")]
    BadSigningKey { alg: &'static str },

    /// Signing a token failed.
    #[error("cannot sign a token with key `{kid}`")]
    Sign { kid: String },
}

/// Why a token did not verify. Messages are lowercase one-liners; [`TokenError::reason`] is
/// the short code for an audit record or an `error` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`crate::MAX_TOKEN_LEN`]: refused before any decoding.
    #[error("token is too long ({len} bytes; the limit is {limit})")]
    TooLong { len: usize, limit: usize },

    /// Not three base64url parts of JSON objects, or a claim of the wrong type.
    #[error("malformed token: {reason}")]
    Malformed { reason: &'static str },

    /// The header names an algorithm other than `EdDSA` and `ES256`.
    #[error("unsupported token algorithm `{alg}`")]
    UnsupportedAlgorithm { alg: String },

    /// No key in the key set has the header's `kid`.
    #[error("unknown signing key `{kid}`")]
    UnknownKey { kid: String },

    /// The key with that `kid` is of another algorithm or curve, or is not a usable public key.
    #[error("key `{kid}` cannot verify an `{alg}` token")]
    KeyMismatch { kid: String, alg: &'static str },

    /// The signature does not verify under the key.
    #[error("bad token signature")]
    BadSignature,

    /// `iss` is missing or not the expected issuer.
    #[error("token was not issued by `{expected}`")]
    WrongIssuer { expected: String },

    /// `aud` is missing or does not name the expected audience.
    #[error("token is not for audience `{expected}`")]
    WrongAudience { expected: String },

    /// `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,

    /// `nbf` (minus leeway) is still to come.
    #[error("token is not yet valid")]
    NotYetValid,
}

impl TokenError {
    /// A short, stable code for the error: `too_long`, `malformed`, `unsupported_algorithm`,
    /// `unknown_key`, `key_mismatch`, `bad_signature`, `wrong_issuer`, `wrong_audience`,
    /// `expired`, `not_yet_valid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::Malformed { .. } => "malformed",
            Self::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Self::UnknownKey { .. } => "unknown_key",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}
