//! The values that cross the crate's API: the call to hold, the request it makes, its state.

use custos_core::{Agent, AgentId, RunId, ToolRef};
use custos_store::{ApprovalRecord, ApprovalStatus};
use serde_json::{json, Value};

/// A call that policy held for approval, as the pipeline knows it.
#[derive(Clone, Debug)]
pub struct CallToApprove<'a> {
    pub agent: &'a Agent,
    /// Who the call is for: the human first, then the agents acting for them (may be empty).
    pub principal: &'a [String],
    pub run: &'a RunId,
    pub step: u64,
    pub tool: &'a ToolRef,
    /// The digest of the tool's descriptor as last listed, when known; part of what is
    /// approved, so a tool changed since (a rug pull) needs a new approval.
    pub descriptor_sha256: Option<String>,
    /// The arguments exactly as sent; digested as they are, stored redacted.
    pub arguments: &'a Value,
    /// The policies that asked for the approval.
    pub policies: &'a [String],
    /// The approver groups those policies named.
    pub groups: &'a [String],
}

/// An approver's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// Where a request stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for an approver.
    Pending,
    /// Approved and not used yet: the exact call may go through once.
    Approved {
        by: String,
        at_ms: i64,
        reason: Option<String>,
    },
    Denied {
        by: String,
        at_ms: i64,
        reason: Option<String>,
    },
    /// The approved call went through.
    Used {
        at_ms: i64,
        approved_by: Option<String>,
    },
    /// Passed its expiry undecided or unused.
    Expired,
}

impl ApprovalState {
    /// `pending`, `approved`, `denied`, `used` or `expired`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Used { .. } => "used",
            Self::Expired => "expired",
        }
    }

    /// The stored status this state corresponds to.
    pub fn status(&self) -> ApprovalStatus {
        match self {
            Self::Pending => ApprovalStatus::Pending,
            Self::Approved { .. } => ApprovalStatus::Approved,
            Self::Denied { .. } => ApprovalStatus::Denied,
            Self::Used { .. } => ApprovalStatus::Used,
            Self::Expired => ApprovalStatus::Expired,
        }
    }
}

/// One approval request: the held call (arguments redacted), who may decide it, and its state.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRequest {
    /// `apr_` and 128 random bits in hex.
    pub id: String,
    pub agent: AgentId,
    pub principal: Vec<String>,
    pub run: RunId,
    pub step: u64,
    pub tool: ToolRef,
    pub descriptor_sha256: Option<String>,
    /// Redacted: what an approver is shown.
    pub arguments: Value,
    pub policies: Vec<String>,
    pub groups: Vec<String>,
    /// The digest the approval is bound to (see [`crate::call_digest`]).
    pub digest: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub state: ApprovalState,
}

impl ApprovalRequest {
    /// The request as stored, with its state judged at `now_ms`.
    pub(crate) fn from_record(r: ApprovalRecord, now_ms: i64) -> Self {
        let decided = |r: &ApprovalRecord| (r.decided_by.clone().unwrap_or_default(), r.decided_ms.unwrap_or_default());
        let state = match r.status_at(now_ms) {
            ApprovalStatus::Pending => ApprovalState::Pending,
            ApprovalStatus::Approved => {
                let (by, at_ms) = decided(&r);
                ApprovalState::Approved { by, at_ms, reason: r.reason.clone() }
            }
            ApprovalStatus::Denied => {
                let (by, at_ms) = decided(&r);
                ApprovalState::Denied { by, at_ms, reason: r.reason.clone() }
            }
            ApprovalStatus::Used => {
                ApprovalState::Used { at_ms: r.used_ms.unwrap_or_default(), approved_by: r.decided_by.clone() }
            }
            ApprovalStatus::Expired => ApprovalState::Expired,
        };
        Self {
            id: r.id,
            agent: r.agent,
            principal: r.principal,
            run: r.run,
            step: r.step,
            tool: r.tool,
            descriptor_sha256: r.descriptor_sha256,
            arguments: r.arguments,
            policies: r.policies,
            groups: r.groups,
            digest: r.digest,
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            state,
        }
    }

    /// The request as JSON, the same for `custos approvals show --json` and the admin API.
    pub fn to_json(&self) -> Value {
        let (decided_by, decided_ms, reason, used_ms) = match &self.state {
            ApprovalState::Approved { by, at_ms, reason } | ApprovalState::Denied { by, at_ms, reason } => {
                (Some(by.clone()), Some(*at_ms), reason.clone(), None)
            }
            ApprovalState::Used { at_ms, approved_by } => (approved_by.clone(), None, None, Some(*at_ms)),
            ApprovalState::Pending | ApprovalState::Expired => (None, None, None, None),
        };
        let mut v = self.summary_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("state".into(), json!(self.state.name()));
            o.insert("descriptor_sha256".into(), json!(self.descriptor_sha256));
            o.insert("decided_by".into(), json!(decided_by));
            o.insert("decided_ms".into(), json!(decided_ms));
            o.insert("reason".into(), json!(reason));
            o.insert("used_ms".into(), json!(used_ms));
        }
        v
    }

    /// The fields a webhook announces (no state: a new request is pending).
    pub(crate) fn summary_json(&self) -> Value {
        json!({
            "id": self.id,
            "agent": self.agent,
            "principal": self.principal,
            "run": self.run,
            "step": self.step,
            "tool": self.tool,
            "arguments": self.arguments,
            "policies": self.policies,
            "groups": self.groups,
            "digest": self.digest,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        })
    }
}

/// Which requests [`crate::Approvals::list`] returns, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only requests in this state now; `None`: all.
    pub status: Option<ApprovalStatus>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl ApprovalFilter {
    /// The requests waiting for an approver.
    pub fn pending() -> Self {
        Self { status: Some(ApprovalStatus::Pending), limit: None }
    }
}
