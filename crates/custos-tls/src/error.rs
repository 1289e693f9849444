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
}
