//! Audit events before the store numbers and chains them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentId, RunId};
use crate::tool::ToolRef;

/// What happened. The dotted names are what the log stores and `audit query` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "run.started")]
    RunStarted,
    #[serde(rename = "run.ended")]
    RunEnded,
    #[serde(rename = "call.requested")]
    CallRequested,
    #[serde(rename = "call.decided")]
    CallDecided,
    #[serde(rename = "call.finished")]
    CallFinished,
    #[serde(rename = "tool.seen")]
    ToolSeen,
    #[serde(rename = "tool.changed")]
    ToolChanged,
    #[serde(rename = "protocol.error")]
    ProtocolError,
    #[serde(rename = "upstream.exited")]
    UpstreamExited,
    #[serde(rename = "upstream.restarted")]
    UpstreamRestarted,
    #[serde(rename = "agent.key_issued")]
    AgentKeyIssued,
    #[serde(rename = "agent.key_revoked")]
    AgentKeyRevoked,
    #[serde(rename = "auth.failed")]
    AuthFailed,
    /// A held call asked for a human's approval; detail: the request (arguments redacted).
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    #[serde(rename = "approval.approved")]
    ApprovalApproved,
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    /// An approved call went through; the approval cannot be used again.
    #[serde(rename = "approval.used")]
    ApprovalUsed,
    /// An approval already used (or not approved) was presented again.
    #[serde(rename = "approval.replay_refused")]
    ApprovalReplayRefused,
    /// An approver's decision was refused (not in the group, self approval, already decided…).
    #[serde(rename = "approval.refused")]
    ApprovalRefused,
    /// A request passed its expiry without being decided or used.
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
    /// One webhook delivery attempt to an approver group; detail: status, attempt, error.
    #[serde(rename = "approval.notified")]
    ApprovalNotified,
    /// A secret was stored or replaced in the encrypted store; detail: name, fingerprint, never the value.
    #[serde(rename = "secret.set")]
    SecretSet,
    /// A secret was removed from the encrypted store.
    #[serde(rename = "secret.removed")]
    SecretRemoved,
    /// A signing key for minted tokens was created; detail: kid, algorithm.
    #[serde(rename = "signing_key.created")]
    SigningKeyCreated,
    /// A signing key stopped minting; it stays published until the tokens it signed expire.
    #[serde(rename = "signing_key.retired")]
    SigningKeyRetired,
    /// A short-lived token was minted; detail: jti, audience, scope, expiry, kid, never the token.
    #[serde(rename = "token.minted")]
    TokenMinted,
    /// A minted token's `jti` was revoked; the gateway refuses it from the next use.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// An RFC 8693 token exchange issued a token.
    #[serde(rename = "token.exchanged")]
    TokenExchanged,
    /// An RFC 8693 token exchange was refused (authentication, policy, bad request).
    #[serde(rename = "token.exchange_refused")]
    TokenExchangeRefused,
    /// A detector saw something; detail: finding kind, severity, rule, evidence with secrets redacted.
    #[serde(rename = "finding.recorded")]
    FindingRecorded,
    /// A tool's descriptor was pinned (ahead of time, or on first sight); detail: digest.
    #[serde(rename = "tool.pinned")]
    ToolPinned,
    /// An operator accepted a changed tool's new descriptor; its quarantine ends.
    #[serde(rename = "tool.accepted")]
    ToolAccepted,
    /// A label joined the run (`untrusted_input`, `read_sensitive`), and what put it there.
    #[serde(rename = "run.labeled")]
    RunLabeled,
    /// `custos console login-link` made a one-time sign-in link; detail: who it signs in, its
    /// expiry and a fingerprint of its token (never the token).
    #[serde(rename = "console.link_issued")]
    ConsoleLinkIssued,
    /// Someone signed in to the console; detail: approver, method, issuer, subject, session
    /// fingerprint, groups.
    #[serde(rename = "console.signed_in")]
    ConsoleSignedIn,
    /// A console session ended: sign-out, idle or absolute timeout.
    #[serde(rename = "console.signed_out")]
    ConsoleSignedOut,
    /// The console refused a request: a failed sign-in (wrong audience, nonce, signature,
    /// state; a used or expired link), a missing or wrong CSRF token, a forged session cookie.
    #[serde(rename = "console.refused")]
    ConsoleRefused,
}

impl EventKind {
    pub const ALL: [EventKind; 37] = [
        Self::RunStarted,
        Self::RunEnded,
        Self::CallRequested,
        Self::CallDecided,
        Self::CallFinished,
        Self::ToolSeen,
        Self::ToolChanged,
        Self::ProtocolError,
        Self::UpstreamExited,
        Self::UpstreamRestarted,
        Self::AgentKeyIssued,
        Self::AgentKeyRevoked,
        Self::AuthFailed,
        Self::ApprovalRequested,
        Self::ApprovalApproved,
        Self::ApprovalDenied,
        Self::ApprovalUsed,
        Self::ApprovalReplayRefused,
        Self::ApprovalRefused,
        Self::ApprovalExpired,
        Self::ApprovalNotified,
        Self::SecretSet,
        Self::SecretRemoved,
        Self::SigningKeyCreated,
        Self::SigningKeyRetired,
        Self::TokenMinted,
        Self::TokenRevoked,
        Self::TokenExchanged,
        Self::TokenExchangeRefused,
        Self::FindingRecorded,
        Self::ToolPinned,
        Self::ToolAccepted,
        Self::RunLabeled,
        Self::ConsoleLinkIssued,
        Self::ConsoleSignedIn,
        Self::ConsoleSignedOut,
        Self::ConsoleRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunStarted => "run.started",
            Self::RunEnded => "run.ended",
            Self::CallRequested => "call.requested",
            Self::CallDecided => "call.decided",
            Self::CallFinished => "call.finished",
            Self::ToolSeen => "tool.seen",
            Self::ToolChanged => "tool.changed",
            Self::ProtocolError => "protocol.error",
            Self::UpstreamExited => "upstream.exited",
            Self::UpstreamRestarted => "upstream.restarted",
            Self::AgentKeyIssued => "agent.key_issued",
            Self::AgentKeyRevoked => "agent.key_revoked",
            Self::AuthFailed => "auth.failed",
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalApproved => "approval.approved",
            Self::ApprovalDenied => "approval.denied",
            Self::ApprovalUsed => "approval.used",
            Self::ApprovalReplayRefused => "approval.replay_refused",
            Self::ApprovalRefused => "approval.refused",
            Self::ApprovalExpired => "approval.expired",
            Self::ApprovalNotified => "approval.notified",
            Self::SecretSet => "secret.set",
            Self::SecretRemoved => "secret.removed",
            Self::SigningKeyCreated => "signing_key.created",
            Self::SigningKeyRetired => "signing_key.retired",
            Self::TokenMinted => "token.minted",
            Self::TokenRevoked => "token.revoked",
            Self::TokenExchanged => "token.exchanged",
            Self::TokenExchangeRefused => "token.exchange_refused",
            Self::FindingRecorded => "finding.recorded",
            Self::ToolPinned => "tool.pinned",
            Self::ToolAccepted => "tool.accepted",
            Self::RunLabeled => "run.labeled",
            Self::ConsoleLinkIssued => "console.link_issued",
            Self::ConsoleSignedIn => "console.signed_in",
            Self::ConsoleSignedOut => "console.signed_out",
            Self::ConsoleRefused => "console.refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to append. The store adds the sequence number, the previous event's digest and
/// this event's digest.
///
/// The attribution fields are columns so the log can be searched by them; `detail` carries the
/// rest (decision reasons, sizes, digests, errors). Secrets never go in any of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch, taken by the caller (the core has no clock).
    pub time_ms: i64,
    pub agent: Option<AgentId>,
    pub run: Option<RunId>,
    pub step: Option<u64>,
    pub tool: Option<ToolRef>,
    /// `allow` or `deny` on decision events, for searching.
    pub decision: Option<String>,
    pub detail: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: EventKind, time_ms: i64) -> Self {
        Self {
            kind,
            time_ms,
            agent: None,
            run: None,
            step: None,
            tool: None,
            decision: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
