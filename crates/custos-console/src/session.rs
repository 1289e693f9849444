//! Console sessions: who is signed in, held in memory by the serving process.
//!
//! A session is a random 256-bit token in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`, with
//! the `__Host-` prefix, when the console is reached over TLS). The server keeps only the token's
//! SHA-256, so a memory dump does not hand out live sessions, and records a short fingerprint of
//! it in the audit log (which session decided what). Each session carries its own CSRF token,
//! which every state-changing form repeats. Sessions end on sign-out, after the idle timeout and
//! after the absolute timeout; a restart of the gateway ends them all.

use std::collections::HashMap;

use custos_approvals::Approver;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConsoleError;

/// Most sessions held at once; past it, the session used longest ago is ended.
pub const MAX_SESSIONS: usize = 10_000;
/// Most OpenID Connect sign-ins begun and not finished held at once.
pub const MAX_PENDING: usize = 1_000;
/// How long a begun OpenID Connect sign-in may take.
pub const PENDING_TTL_MS: i64 = 600_000;

/// One signed-in approver.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who signed in and how; its `session` is this session's fingerprint.
    pub approver: Approver,
    /// What every state-changing form of this session must carry.
    pub csrf: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

/// Why a presented session cookie found no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// No session has this token: forged, or from before a restart.
    Unknown,
    /// Unused for longer than the idle timeout.
    Idle,
    /// Older than the absolute timeout.
    Expired,
}

impl Ended {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_session",
            Self::Idle => "idle_timeout",
            Self::Expired => "absolute_timeout",
        }
    }
}

/// The sessions of one console, and the sign-ins begun with the identity provider.
#[derive(Debug)]
pub struct Sessions {
    by_hash: HashMap<[u8; 32], Session>,
    idle_ms: i64,
    max_ms: i64,
    /// Begun sign-ins by `state`, with their start time: what the callback needs to finish.
    pub(crate) pending: HashMap<String, (i64, crate::oidc::PendingSignIn)>,
}

impl Sessions {
    pub fn new(idle_secs: u64, max_secs: u64) -> Self {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self { by_hash: HashMap::new(), idle_ms: ms(idle_secs), max_ms: ms(max_secs), pending: HashMap::new() }
    }

    /// Opens a session for `approver`; returns the cookie token (shown once, never kept) and
    /// the session (whose approver carries the fingerprint).
    pub fn open(&mut self, mut approver: Approver, now_ms: i64) -> Result<(String, Session), ConsoleError> {
        let token = random_token()?;
        let hash = hash(&token);
        approver.session = Some(fingerprint(&hash));
        let session = Session { approver, csrf: random_token()?, created_ms: now_ms, last_seen_ms: now_ms };
        self.sweep(now_ms);
        if self.by_hash.len() >= MAX_SESSIONS {
            let oldest = self.by_hash.iter().min_by_key(|(_, s)| s.last_seen_ms).map(|(h, _)| *h);
            if let Some(oldest) = oldest {
                self.by_hash.remove(&oldest);
            }
        }
        self.by_hash.insert(hash, session.clone());
        Ok((token, session))
    }

    /// The session of cookie token `token`, marked used now; or why there is none (an ended
    /// session is removed).
    pub fn touch(&mut self, token: &str, now_ms: i64) -> Result<Session, (Ended, Option<Box<Session>>)> {
        let hash = hash(token);
        let Some(session) = self.by_hash.get_mut(&hash) else { return Err((Ended::Unknown, None)) };
        let ended = if now_ms.saturating_sub(session.created_ms) >= self.max_ms {
            Some(Ended::Expired)
        } else if now_ms.saturating_sub(session.last_seen_ms) >= self.idle_ms {
            Some(Ended::Idle)
        } else {
            None
        };
        if let Some(ended) = ended {
            let gone = self.by_hash.remove(&hash).map(Box::new);
            return Err((ended, gone));
        }
        session.last_seen_ms = now_ms;
        Ok(session.clone())
    }

    /// Ends the session of `token`; returns it if there was one.
    pub fn close(&mut self, token: &str) -> Option<Session> {
        self.by_hash.remove(&hash(token))
    }

    /// Keeps a begun sign-in until its callback (bounded: the oldest go first).
    pub(crate) fn begin(&mut self, pending: crate::oidc::PendingSignIn, now_ms: i64) {
        self.pending.retain(|_, (at, _)| now_ms.saturating_sub(*at) < PENDING_TTL_MS);
        if self.pending.len() >= MAX_PENDING {
            let oldest = self.pending.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(pending.state.clone(), (now_ms, pending));
    }

    /// Takes the begun sign-in of `state` (once).
    pub(crate) fn take_pending(&mut self, state: &str, now_ms: i64) -> Option<crate::oidc::PendingSignIn> {
        let (at, pending) = self.pending.remove(state)?;
        (now_ms.saturating_sub(at) < PENDING_TTL_MS).then_some(pending)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn sweep(&mut self, now_ms: i64) {
        let (idle, max) = (self.idle_ms, self.max_ms);
        self.by_hash
            .retain(|_, s| now_ms.saturating_sub(s.last_seen_ms) < idle && now_ms.saturating_sub(s.created_ms) < max);
    }
}

/// Whether `presented` is `expected` (constant time); an empty token never matches.
pub fn same_token(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// 256 random bits, base64url without padding.
pub fn random_token() -> Result<String, ConsoleError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ConsoleError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the log records of a session: the first 16 hex digits of its token's SHA-256.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    hex::encode(hash.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_approvals::ApproverMethod;

    fn alice() -> Approver {
        Approver::asserted("alice@example.com", ApproverMethod::LoginLink)
    }

    #[test]
    fn a_session_is_found_by_its_token_only_and_carries_its_fingerprint() {
        let mut s = Sessions::new(60, 600);
        let (token, session) = s.open(alice(), 0).unwrap();
        assert_eq!(session.approver.session.as_deref(), Some(fingerprint(&hash(&token)).as_str()));
        assert_eq!(s.touch(&token, 1000).unwrap().approver.name, "alice@example.com");
        let forged = format!("{token}x");
        assert_eq!(s.touch(&forged, 1000).unwrap_err().0, Ended::Unknown);
        assert_ne!(session.csrf, token);
    }

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() {
        let mut s = Sessions::new(60, 600);
        let (token, _) = s.open(alice(), 0).unwrap();
        assert_eq!(s.touch(&token, 60_000).unwrap_err().0, Ended::Idle);
        assert_eq!(s.touch(&token, 60_001).unwrap_err().0, Ended::Unknown, "an ended session is gone");

        let (token, _) = s.open(alice(), 0).unwrap();
        for t in (50_000..600_000).step_by(50_000) {
            s.touch(&token, t).unwrap();
        }
        assert_eq!(s.touch(&token, 600_000).unwrap_err().0, Ended::Expired, "kept busy, it still ends");
    }

    #[test]
    fn sign_out_closes_the_session() {
        let mut s = Sessions::new(60, 600);
        let (token, _) = s.open(alice(), 0).unwrap();
        assert!(s.close(&token).is_some());
        assert!(s.touch(&token, 1).is_err());
        assert!(s.is_empty());
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("", ""), "an empty expected token never matches");
    }
}
