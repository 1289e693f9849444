//! Approval requests as the store keeps them: a projection of the `approval.*` events.
//!
//! The log is the source of truth: every change of a request is an event (`approval.requested`,
//! `.approved`, `.denied`, `.used`, `.expired`, and the refusals), appended in the same
//! transaction that updates the `approvals` table. The table only makes "is there an open
//! request for this digest?" and "is this one still unused?" one indexed read, and lets the
//! state check and the event of a decision or a use be one atomic write, even when several
//! processes share the database. The table is not part of the hash chain; `audit verify`
//! ignores it.
//!
//! The rules of who may decide live in `custos-approvals`; the store only enforces what must be
//! atomic: a request is decided once, while pending and unexpired, and used once, while
//! approved and unexpired, for exactly its digest.

use std::fmt;

use custos_core::{AgentId, RunId, ToolRef};

/// Where a request stands, as stored. A pending or approved request whose `expires_ms` has
/// passed is expired even before a write marks it so: see [`ApprovalRecord::status_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Used,
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 5] = [Self::Pending, Self::Approved, Self::Denied, Self::Used, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Pending or approved: it can still let a call through, until it expires.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Approved)
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approval request and its outcome so far.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRecord {
    /// Unguessable (`apr_` and 128 random bits in hex): knowing it is not a credential, but it
    /// should not be enumerable either.
    pub id: String,
    /// The canonical digest of (agent, run, tool, descriptor digest, arguments) the request
    /// covers; an approval lets through only a call with the same digest.
    pub digest: String,
    pub agent: AgentId,
    /// Who the call is for: the human first, then the agents acting for them.
    pub principal: Vec<String>,
    pub run: RunId,
    pub step: u64,
    pub tool: ToolRef,
    /// The tool descriptor's digest when the call was held, when the gateway knew it.
    pub descriptor_sha256: Option<String>,
    /// The call's arguments with secrets redacted: what an approver is shown. Never the raw ones.
    pub arguments: serde_json::Value,
    /// The policies that asked for the approval.
    pub policies: Vec<String>,
    /// The approver groups those policies named; a member of any one may decide.
    pub groups: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub reason: Option<String>,
    pub used_ms: Option<i64>,
}

impl ApprovalRecord {
    /// The status at `now_ms`: a pending or approved request past its expiry is expired.
    pub fn status_at(&self, now_ms: i64) -> ApprovalStatus {
        if self.status.is_open() && now_ms >= self.expires_ms {
            ApprovalStatus::Expired
        } else {
            self.status
        }
    }

    /// The request as the detail of its `approval.requested` event: everything but the
    /// attribution columns (agent, run, step, tool).
    pub fn request_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "digest": self.digest,
            "principal": self.principal,
            "descriptor_sha256": self.descriptor_sha256,
            "arguments": self.arguments,
            "policies": self.policies,
            "groups": self.groups,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        })
    }
}

/// A search of the requests, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalQuery {
    /// Only requests in this status at `now_ms` (expired ones included under
    /// [`ApprovalStatus::Expired`] even before a write marked them).
    pub status: Option<ApprovalStatus>,
    /// The time the status is judged at; required with `status`.
    pub now_ms: i64,
    /// At most this many, the newest first.
    pub limit: Option<usize>,
}

/// A change to the approvals, applied with its event in one write transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalWrite {
    /// Opens `record` (which must be pending) and appends `approval.requested`, unless a
    /// request with the same digest is still open at `record.created_ms`: then that one is
    /// returned and nothing is written. Open requests for the digest that have expired are
    /// marked so, with `approval.expired`.
    Request(Box<ApprovalRecord>),
    /// Approves or denies request `id` if it is pending and unexpired at `now_ms`, appending
    /// `approval.approved` or `approval.denied`; otherwise appends `approval.refused`.
    /// `identity` (a JSON object: how the approver was identified) goes into the event as is.
    Decide {
        id: String,
        approver: String,
        identity: serde_json::Value,
        approve: bool,
        reason: Option<String>,
        now_ms: i64,
    },
    /// Marks approved request `id` used if its digest is `digest` and it is unexpired at
    /// `now_ms`, appending `approval.used`; otherwise appends `approval.replay_refused`.
    Consume { id: String, digest: String, now_ms: i64 },
    /// Records that the caller's rules refused `approver`'s decision on `id` (`approval.refused`
    /// with `reason`); the request does not change.
    Refuse { id: String, approver: String, identity: serde_json::Value, reason: String, now_ms: i64 },
    /// Marks request `id` expired (with `approval.expired`) if it is open and past its expiry
    /// at `now_ms`; otherwise does nothing.
    Expire { id: String, now_ms: i64 },
}

/// Why an [`ApprovalWrite`] changed nothing; the refusal event is recorded all the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalRefusal {
    /// No request has this id.
    Unknown,
    /// The request is no longer pending (decide) or is not approved (consume); its current
    /// status is in the record.
    NotPending,
    /// The request expired before the decision or the use.
    Expired,
    /// The approval was already used: a replay.
    Replayed,
    /// The call presented does not have the approved digest.
    Mismatch,
    /// The caller's rules refused it ([`ApprovalWrite::Refuse`]).
    Rule,
}

/// The result of one [`ApprovalWrite`].
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalOutcome {
    /// The open request for the digest; `created` when this write opened it.
    Requested { record: ApprovalRecord, created: bool },
    /// The request after the decision.
    Decided(ApprovalRecord),
    /// The request after its use.
    Consumed(ApprovalRecord),
    /// The request after an [`ApprovalWrite::Expire`] (changed or not).
    Checked(ApprovalRecord),
    /// Nothing changed; the request as it stands, when there is one.
    Refused { record: Option<ApprovalRecord>, refusal: ApprovalRefusal },
}
