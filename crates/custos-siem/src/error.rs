//! What can go wrong delivering evidence. Messages never hold a token or an event's content.

/// A sink's failure; the batch is retried.
#[derive(Debug, thiserror::Error)]
pub enum SiemError {
    /// The receiver answered, but not with an acknowledgement (an HTTP status, a HEC error code).
    #[error("`{target}` refused the batch: {reason}")]
    Refused { target: String, reason: String },
    /// The receiver could not be reached, or the connection failed.
    #[error("cannot reach `{target}`: {reason}")]
    Unreachable { target: String, reason: String },
    /// A local file (the JSON lines file, the cursor, a token or CA file).
    #[error("`{path}`: {reason}")]
    File { path: String, reason: String },
    /// A setting that cannot be used (a bad url, an unusable CA file).
    #[error("{0}")]
    Config(String),
    /// The log could not be read.
    #[error("cannot read the audit log: {0}")]
    Log(String),
}

impl SiemError {
    pub(crate) fn file(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::File { path: path.display().to_string(), reason: e.to_string() }
    }
}
