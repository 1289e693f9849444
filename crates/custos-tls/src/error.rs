//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong loading or using TLS material. Messages name the file and never contain key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    /// A file was read but does not hold what it should.
    #[error("`{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// rustls refused the combination (e.g. a key that does not match its certificate).
    #[error("tls configuration: {0}")]
    Config(String),
    /// A peer's certificate that cannot be read. `reason` is fixed text, never bytes of it.
    #[error("malformed certificate: {reason}")]
    Certificate { reason: &'static str },
    /// A client's handshake failed, or its certificate cannot name it. `reason` comes from this
    /// crate or rustls and holds no key material.
    #[error("tls handshake failed: {reason}")]
    Handshake { failure: HandshakeFailure, reason: String },
}

/// Why a handshake failed, in a few fixed words (a metric label: the set is bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client did not finish the handshake in time.
    Timeout,
    /// The client presented no certificate where one is required, or one that does not verify
    /// against the client CA (untrusted, expired, wrong usage).
    ClientCertificate,
    /// The client's certificate verified but cannot name one workload: several SPIFFE IDs, or
    /// subject alternative names that cannot be read.
    PeerIdentity,
    /// Not TLS, or TLS this server does not speak (plain HTTP, garbage, no common version).
    Protocol,
    /// The connection failed or closed during the handshake.
    Connection,
}

impl HandshakeFailure {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ClientCertificate => "client_certificate",
            Self::PeerIdentity => "peer_identity",
            Self::Protocol => "protocol",
            Self::Connection => "connection",
        }
    }
}

impl TlsError {
    /// Why a handshake failed, when this is a handshake failure.
    pub fn handshake_failure(&self) -> Option<HandshakeFailure> {
        match self {
            Self::Handshake { failure, .. } => Some(*failure),
            _ => None,
        }
    }
}
