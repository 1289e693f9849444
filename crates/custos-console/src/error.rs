//! [`ConsoleError`]: what can go wrong in the console itself.

/// An error of the console; pages show its message, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The operating system gave no random bytes.
    #[error("no randomness available")]
    Random,
    /// The audit log or the store failed; the request is refused (fail closed).
    #[error("the audit log is unavailable: {0}")]
    Store(#[from] custos_store::StoreError),
    #[error(transparent)]
    Approval(#[from] custos_approvals::ApprovalError),
    /// A page could not be rendered.
    #[error("a page could not be rendered: {0}")]
    Render(String),
    /// The console's configuration cannot be used.
    #[error("{0}")]
    Config(String),
}
