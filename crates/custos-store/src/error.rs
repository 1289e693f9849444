//! The store's one error type.

use std::path::PathBuf;

/// Why the audit store could not do what was asked.
///
/// Every variant means the write or read did not happen. On the request path the caller refuses
/// the tool call: a call that cannot be audited is not forwarded (fail closed). Messages are
/// lowercase one-liners that name the database file, so an operator knows which file to look at.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or created: a missing directory, permissions, a lock held
    /// too long, a journal mode the file system does not support.
    #[error("cannot open audit database `{}`: {reason}", path.display())]
    Open { path: PathBuf, reason: String },

    /// The file is not a Custos audit database, or its content cannot be read back.
    #[error("audit database `{}` is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The file was written by a newer Custos; reading it with this one could misinterpret it.
    #[error(
        "audit database `{}` has schema version {found}, newer than {supported} which this custos understands: upgrade custos",
        path.display()
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },

    /// A transaction failed or could not be made durable; nothing of it was recorded.
    #[error("cannot write to audit database `{}`: {reason}", path.display())]
    Write { path: PathBuf, reason: String },

    /// A query or the integrity walk failed before it could finish.
    #[error("cannot read audit database `{}`: {reason}", path.display())]
    Read { path: PathBuf, reason: String },

    /// The event cannot be stored as given (a value out of the database's range).
    #[error("cannot record audit event: {reason}")]
    InvalidEvent { reason: String },

    /// A record with this identity is already stored (a signing key's `kid`); nothing was
    /// written.
    #[error("{what} `{id}` already exists")]
    AlreadyExists { what: &'static str, id: String },

    /// No tool by this `server/name` was ever listed; nothing was written.
    #[error("unknown tool `{tool}`: it was never listed by its server")]
    UnknownTool { tool: String },

    /// A tool to accept is not quarantined: its latest descriptor is its pinned one (or it has
    /// no pin); nothing was written.
    #[error("tool `{tool}` is not quarantined: its latest descriptor is the pinned one, nothing to accept")]
    NothingToAccept { tool: String },

    /// A descriptor to pin came with a digest that is not its own; nothing was written.
    #[error("the digest given for `{tool}` is not the digest of its descriptor")]
    PinMismatch { tool: String },

    /// The writer thread could not be started.
    #[error("cannot start the audit log writer: {reason}")]
    WriterStart { reason: String },

    /// The writer thread has stopped (shut down or died); nothing more can be recorded.
    #[error("the audit log writer has stopped")]
    Closed,

    /// A store broke its own contract; a bug, reported rather than panicking.
    #[error("internal audit store error: {reason}")]
    Internal { reason: String },
}
