//! What policy said about one call.

use serde::{Deserialize, Serialize};

/// The outcome of policy evaluation for one tool call.
///
/// `policies` are the ids of the policies that decided it: the permits that allowed it, or the
/// forbids (or errors) that denied it. An empty list on a deny means nothing permitted the call:
/// default deny.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    Allow { policies: Vec<String> },
    Deny { policies: Vec<String>, reason: String },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// `allow` or `deny`: the word recorded and queried in the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Deny { .. } => "deny",
        }
    }

    pub fn policies(&self) -> &[String] {
        match self {
            Self::Allow { policies } | Self::Deny { policies, .. } => policies,
        }
    }

    /// A one-line reason for people: which policies decided and why.
    pub fn explain(&self) -> String {
        match self {
            Self::Allow { policies } => format!("allowed by {}", policies.join(", ")),
            Self::Deny { policies, reason } if policies.is_empty() => reason.clone(),
            Self::Deny { policies, reason } => format!("{reason} (policies: {})", policies.join(", ")),
        }
    }
}
