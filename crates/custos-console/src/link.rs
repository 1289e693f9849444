//! One-time sign-in links (`custos console login-link --as EMAIL`), for deployments without an
//! identity provider, like a notebook server's token.
//!
//! The command, run on the gateway host against the data directory, appends
//! `console.link_issued` with who the link signs in, its expiry and the SHA-256 of its token
//! (never the token), and prints the link. The console finds the link by that digest in the
//! log, and a link is used once: its sign-in (`console.signed_in`) names the link's digest, and
//! a second redemption finds it. The log is the only state, so the command and a running
//! `custos serve` need nothing but the shared database.

use custos_core::{EventKind, NewEvent};
use custos_store::{EventQuery, Store};
use serde_json::json;

use crate::error::ConsoleError;
use crate::session::{hash, random_token};

/// The path a link opens, under the console's base URL.
pub const LOGIN_PATH: &str = "/console/login";

/// A link made by [`issue`]: the token to put in it (shown once) and the event recording it.
#[derive(Debug)]
pub struct NewLink {
    pub token: String,
    pub event: NewEvent,
    pub expires_ms: i64,
}

/// A link for `approver`, valid `ttl_secs` from `now_ms`. The caller appends `event` (durably)
/// before it shows the link.
pub fn issue(approver: &str, ttl_secs: u64, now_ms: i64) -> Result<NewLink, ConsoleError> {
    let approver = approver.trim();
    if approver.is_empty() || approver.chars().any(char::is_control) || approver.len() > 320 {
        return Err(ConsoleError::Config(format!("`{}` is not an approver identity", approver.escape_debug())));
    }
    let token = random_token()?;
    let expires_ms = now_ms.saturating_add(i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let mut event = NewEvent::new(EventKind::ConsoleLinkIssued, now_ms);
    event.detail = json!({
        "approver": approver,
        "link": hex::encode(hash(&token)),
        "expires_ms": expires_ms,
    });
    Ok(NewLink { token, event, expires_ms })
}

/// The URL of a link: `base` (the console's public URL) and the token.
pub fn url(base: &str, token: &str) -> String {
    format!("{}{LOGIN_PATH}?token={token}", base.trim_end_matches('/'))
}

/// A link found in the log and still usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLink {
    pub approver: String,
    /// The hex SHA-256 of its token: what its sign-in records.
    pub link: String,
    pub expires_ms: i64,
}

/// Why a presented link does not sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// No link with this token was issued (in the longest time a link may live).
    Unknown,
    Expired,
    /// It signed in once already.
    Used,
}

impl LinkRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_link",
            Self::Expired => "expired_link",
            Self::Used => "used_link",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Unknown => {
                "this sign-in link is not known: ask for a new one (`custos console login-link --as EMAIL`)"
            }
            Self::Expired => {
                "this sign-in link has expired: ask for a new one (`custos console login-link --as EMAIL`)"
            }
            Self::Used => "this sign-in link was used already: a link signs in once",
        }
    }
}

/// The longest a link may live (`[console] login_link_ttl_secs` is at most an hour): how far
/// back the log is searched.
const LONGEST_LINK_MS: i64 = 3_600_000;

/// Finds the link of `token` in the log and checks it is unexpired and unused at `now_ms`. The
/// caller serializes redemptions and records the sign-in (naming `link`) before it answers.
pub fn find(store: &dyn Store, token: &str, now_ms: i64) -> Result<FoundLink, Result<LinkRefusal, ConsoleError>> {
    let link = hex::encode(hash(token));
    let since = now_ms.saturating_sub(LONGEST_LINK_MS);
    let issued =
        EventQuery { kind: Some(EventKind::ConsoleLinkIssued), since_ms: Some(since), ..EventQuery::default() };
    let issued = store.query(&issued).map_err(|e| Err(e.into()))?;
    let Some(found) = issued.iter().rev().find(|e| e.event.detail.get("link").and_then(|l| l.as_str()) == Some(&link))
    else {
        return Err(Ok(LinkRefusal::Unknown));
    };
    let detail = &found.event.detail;
    let approver = detail.get("approver").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
    let expires_ms = detail.get("expires_ms").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let signed_in =
        EventQuery { kind: Some(EventKind::ConsoleSignedIn), after_seq: Some(found.seq), ..EventQuery::default() };
    let used = store
        .query(&signed_in)
        .map_err(|e| Err(e.into()))?
        .iter()
        .any(|e| e.event.detail.get("link").and_then(|l| l.as_str()) == Some(&link));
    if used {
        return Err(Ok(LinkRefusal::Used));
    }
    if now_ms >= expires_ms || approver.is_empty() {
        return Err(Ok(LinkRefusal::Expired));
    }
    Ok(FoundLink { approver, link, expires_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_store::SqlStore;

    fn store() -> (tempfile::TempDir, SqlStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(dir.path().join("audit.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_link_is_found_by_its_token_until_it_expires_or_is_used() {
        let (_dir, mut store) = store();
        let link = issue("carol@example.com", 60, 1_000).unwrap();
        assert!(!serde_json::to_string(&link.event).unwrap().contains(&link.token), "the log keeps a digest only");
        store.append(&[link.event]).unwrap();

        let found = find(&store, &link.token, 2_000).unwrap();
        assert_eq!((found.approver.as_str(), found.expires_ms), ("carol@example.com", 61_000));
        assert_eq!(find(&store, "another-token", 2_000).unwrap_err().unwrap(), LinkRefusal::Unknown);
        assert_eq!(find(&store, &link.token, 61_000).unwrap_err().unwrap(), LinkRefusal::Expired);

        let mut signed_in = NewEvent::new(EventKind::ConsoleSignedIn, 3_000);
        signed_in.detail = json!({ "approver": "carol@example.com", "link": found.link });
        store.append(&[signed_in]).unwrap();
        assert_eq!(find(&store, &link.token, 4_000).unwrap_err().unwrap(), LinkRefusal::Used, "once");
    }

    #[test]
    fn a_link_names_an_approver() {
        for bad in ["", "  ", "a\nb"] {
            assert!(issue(bad, 60, 0).is_err(), "{bad:?}");
        }
        assert_eq!(url("http://127.0.0.1:9091/", "t"), "http://127.0.0.1:9091/console/login?token=t");
    }
}
