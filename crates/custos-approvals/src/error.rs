//! The crate's one error type, and whose fault each error is.

use std::path::PathBuf;

use custos_store::StoreError;

/// Who caused an [`ApprovalError`]: what the CLI turns into an exit code and the admin API into
/// an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The approver asked for something the rules refuse (not in the group, their own call,
    /// already decided, expired, an unknown id) or asked it wrongly (no reason for a denial).
    Approver,
    /// The call presented an approval that does not let it through (used, other digest, not
    /// approved).
    Agent,
    /// Custos itself: the store, the random number generator, the webhook settings.
    Gateway,
}

/// Why an approval operation did not happen. Messages are lowercase one-liners naming the
/// request and the approver in backticks; they never carry arguments or secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No request has this id.
    #[error("unknown approval `{id}`")]
    Unknown { id: String },

    /// The approver is in none of the groups the request's policies named.
    #[error("`{approver}` may not decide `{id}`: not a member of the approver groups {groups}")]
    NotInGroup { id: String, approver: String, groups: String },

    /// The agent that made the call (or an agent in its principal chain) tried to decide it.
    #[error("`{approver}` may not decide `{id}`: an agent cannot approve its own call")]
    SelfApproval { id: String, approver: String },

    /// The human the agent acts for tried to decide it, and the config does not allow that.
    #[error(
        "`{approver}` may not decide `{id}`: the call was made on their behalf (separation of duties; see `allow_principal_approval`)"
    )]
    PrincipalApproval { id: String, approver: String },

    /// The request was already approved, denied or used.
    #[error("approval `{id}` is already {state}")]
    AlreadyDecided { id: String, state: &'static str },

    /// The request (or the approval given to it) expired.
    #[error("approval `{id}` has expired")]
    Expired { id: String },

    /// The approval was used once already.
    #[error("approval `{id}` was already used: an approval lets one call through")]
    Replayed { id: String },

    /// The call is not the one approved: another agent, run, tool, descriptor or arguments.
    #[error("approval `{id}` does not cover this call: it is bound to another agent, run, tool or arguments")]
    Mismatch { id: String },

    /// The request is pending or was denied.
    #[error("approval `{id}` is {state}, not approved")]
    NotApproved { id: String, state: &'static str },

    /// A denial without a reason.
    #[error("a denial needs a reason")]
    ReasonRequired,

    /// The approver identity is empty or not printable.
    #[error("`{approver}` is not an approver identity")]
    InvalidApprover { approver: String },

    /// A webhook's settings cannot be used (its secret file, its URL, TLS).
    #[error("approver group `{group}`: {reason}")]
    Webhook { group: String, reason: String },

    /// The secret of a webhook cannot be read. The message names the file, never its content.
    #[error("cannot read the webhook secret `{}` of approver group `{group}`: {reason}", path.display())]
    Secret { group: String, path: PathBuf, reason: String },

    /// The operating system's random number generator failed.
    #[error("cannot generate an approval id: the random number generator failed")]
    Random,

    /// The store could not record or read it; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApprovalError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Unknown { .. }
            | Self::NotInGroup { .. }
            | Self::SelfApproval { .. }
            | Self::PrincipalApproval { .. }
            | Self::AlreadyDecided { .. }
            | Self::Expired { .. }
            | Self::ReasonRequired
            | Self::InvalidApprover { .. } => Fault::Approver,
            Self::Replayed { .. } | Self::Mismatch { .. } | Self::NotApproved { .. } => Fault::Agent,
            Self::Webhook { .. } | Self::Secret { .. } | Self::Random | Self::Store(_) => Fault::Gateway,
        }
    }

    /// Whether the approver caused it (the CLI's exit code 1, an admin API 4xx).
    pub fn is_approver_fault(&self) -> bool {
        self.fault() == Fault::Approver
    }
}
