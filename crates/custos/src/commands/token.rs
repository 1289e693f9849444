//! `custos token mint / revoke`: short-lived tokens by hand.
//!
//! The gateway mints tokens for upstreams on its own; minting here is for what it cannot do:
//! a token an agent presents to the gateway itself, or one for testing an upstream. The token
//! is printed alone on stdout so a script can capture it; the audit log records its `jti`, kid,
//! audience and expiry, never the token, and the record is written before the token is shown.

use custos_core::{AgentId, EventKind, NewEvent, RunId};
use custos_gateway::broker::{rotate_key, Minting};
use custos_gateway::{now_ms, Keys};
use custos_store::{AgentRegistry, CredentialStore, EventQuery, SqlStore, Store};
use serde_json::{json, Value};

use crate::cli::{Location, TokenCommand, TokenMintArgs};
use crate::context;
use crate::credentials;
use crate::Failure;

/// Longest `jti` accepted: ours are 22 characters; this leaves room for other issuers' without
/// letting a pasted document through.
const MAX_JTI_LEN: usize = 128;

/// Events read at once while looking for the event that issued a token.
const SEARCH_PAGE: usize = 1000;

pub fn run(cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Mint(args) => mint(&args),
        TokenCommand::Revoke { location, jti } => revoke(&location, &jti),
    }
}

fn mint(args: &TokenMintArgs) -> Result<(), Failure> {
    let config = context::load_config(&args.location)?;
    let ttl_secs = ttl_secs(args.ttl.as_deref(), config.credentials.token_ttl_secs, config.max_token_ttl_secs())?;
    let scope = words("--scope", &args.scope)?;
    let (audience, server) = audience(&config, &args.audience)?;
    for who in &args.principal {
        if who.trim().is_empty() || who.chars().any(char::is_control) {
            return Err(Failure::usage(format!("`{}` is not a principal", who.escape_debug())));
        }
    }
    if let Some(run) = &args.run {
        if run.trim().is_empty() || run.chars().any(char::is_control) {
            return Err(Failure::usage(format!("`{}` is not a run id", run.escape_debug())));
        }
    }

    // Checked before anything is created: an unknown agent must not leave a log or a key behind.
    check_agent(&config, super::open_existing(&config)?.as_ref(), &args.agent)?;
    let mut store = context::open_for_writing(&config)?;
    let master = credentials::master_key(&config, true)?;
    if !store.signing_keys().map_err(Failure::runtime)?.iter().any(|k| k.retired_ms.is_none()) {
        let event = NewEvent::new(EventKind::SigningKeyCreated, now_ms());
        let alg = credentials::algorithm(&config);
        let kid = rotate_key(&mut store, &master, alg, credentials::publish_overlap_ms(&config), 0, event)
            .map_err(|e| Failure::runtime(e.to_string()))?;
        eprintln!("custos: created signing key `{kid}` ({alg}): there was none to mint with");
    }
    let keys = Keys::load(&store, &master, &config, now_ms()).map_err(|e| Failure::runtime(e.to_string()))?;
    let who = Minting { agent: &args.agent, principal: &args.principal, run: args.run.as_deref(), scope: &scope };
    let minted = keys.mint(&audience, ttl_secs, &who).map_err(|e| Failure::runtime(e.to_string()))?;

    let mut event = NewEvent::new(EventKind::TokenMinted, now_ms());
    event.agent = Some(AgentId(args.agent.clone()));
    event.run = args.run.clone().map(RunId);
    event.detail = json!({
        "audience": audience,
        "scope": scope,
        "jti": minted.jti,
        "kid": minted.kid,
        "expires_at": minted.expires_at,
        "principal": args.principal,
        "credentials": [{ "name": format!("signing_key:{}", minted.kid), "fingerprint": minted.kid }],
        "by": "cli",
    });
    if let (Some(server), Some(detail)) = (server, event.detail.as_object_mut()) {
        // Counts the use against that upstream in the credential inventory.
        detail.insert("server".to_owned(), Value::from(server));
    }
    // Recorded first: a token nobody can account for is not handed out.
    store.append(&[event]).map_err(|e| Failure::runtime(format!("the token was not issued: {e}")))?;
    if args.json {
        let line = json!({
            "token": minted.token,
            "jti": minted.jti,
            "kid": minted.kid,
            "expires_at": minted.expires_at,
            "audience": audience,
            "scope": scope,
        });
        println!("{line}");
    } else {
        println!("{}", minted.token);
    }
    Ok(())
}

/// `--ttl` in seconds, by default `default_secs`: from 1 s to `max_secs`, the longest token
/// lifetime the config allows. A retired signing key stays published that long after a
/// rotation, so a longer-lived token would stop verifying before it expires.
fn ttl_secs(ttl: Option<&str>, default_secs: u64, max_secs: u64) -> Result<u64, Failure> {
    let Some(text) = ttl else { return Ok(default_secs) };
    let secs = humantime::parse_duration(text)
        .map_err(|e| Failure::usage(format!("`{}` is not a duration such as 90s, 5m or 1h: {e}", text.escape_debug())))?
        .as_secs();
    if secs == 0 || secs > max_secs {
        return Err(Failure::usage(format!(
            "--ttl `{text}` is out of range: expected 1s to {max_secs}s, the longest token lifetime configured \
             ([credentials] token_ttl_secs, [servers.token] ttl_secs)"
        )));
    }
    Ok(secs)
}

/// `text` as space-separated words, each printable.
fn words(flag: &str, text: &str) -> Result<String, Failure> {
    if text.chars().any(char::is_control) {
        return Err(Failure::usage(format!("{flag} `{}` holds control characters", text.escape_debug())));
    }
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The `aud` for `--audience`, and the configured server it names, if any.
fn audience(config: &custos_config::Config, given: &str) -> Result<(String, Option<String>), Failure> {
    if let Some(server) = config.server(given) {
        let aud = server.token.as_ref().map(|t| t.audience.clone()).or_else(|| server.url.clone());
        return match aud {
            Some(aud) => Ok((aud, Some(server.name.clone()))),
            None => Err(Failure::usage(format!(
                "server `{given}` has neither `[servers.token] audience` nor a url: pass the audience itself"
            ))),
        };
    }
    if given.trim().is_empty() || given.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Failure::usage(format!(
            "`{}` is not an audience: expected a configured server's name or a URL",
            given.escape_debug()
        )));
    }
    Ok((given.to_owned(), None))
}

/// The agent must be declared in the config or registered, and not revoked.
fn check_agent(config: &custos_config::Config, store: Option<&SqlStore>, id: &str) -> Result<(), Failure> {
    let registered = match store {
        Some(store) => store.agents().map_err(Failure::runtime)?.into_iter().find(|r| r.agent.id.0 == id),
        None => None,
    };
    if registered.as_ref().is_some_and(|r| r.revoked_ms.is_some()) {
        return Err(Failure::usage(format!("agent `{id}` is revoked (custos agents revoke)")));
    }
    if config.agent(id).is_none() && registered.is_none() {
        return Err(Failure::usage(format!(
            "unknown agent `{}`: declare it in the config or register it with `custos agents add`",
            id.escape_debug()
        )));
    }
    Ok(())
}

fn revoke(location: &Location, jti: &str) -> Result<(), Failure> {
    check_jti(jti)?;
    let config = context::load_config(location)?;
    let mut store = context::open_for_writing(&config)?;
    let issued = issued_event(&store, jti)?;
    let expires_ms = issued.as_ref().and_then(|e| expiry_ms(&e.detail, jti));
    let mut event = NewEvent::new(EventKind::TokenRevoked, now_ms());
    event.agent = issued.as_ref().and_then(|e| e.agent.clone());
    event.detail = json!({ "jti": jti, "by": "cli" });
    if store.revoke_token(jti, expires_ms, &event).map_err(Failure::runtime)? {
        println!("revoked token `{jti}`: the gateway refuses it from its next use");
        if issued.is_none() {
            // Revoked all the same: refusing could leave a real token usable, a mistyped jti
            // costs one row.
            eprintln!("custos: no token `{jti}` is recorded in this log: its revocation is kept with no expiry");
        }
    } else {
        println!("token `{jti}` was already revoked");
    }
    Ok(())
}

/// A `jti` as minted tokens carry it: base64url characters, at most [`MAX_JTI_LEN`].
fn check_jti(jti: &str) -> Result<(), Failure> {
    let shaped = !jti.is_empty()
        && jti.len() <= MAX_JTI_LEN
        && jti.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !shaped {
        return Err(Failure::usage(format!(
            "`{}` is not a token id: expected the token's `jti`, 1 to {MAX_JTI_LEN} of `A-Z a-z 0-9 - _`",
            jti.escape_debug()
        )));
    }
    Ok(())
}

/// The event that issued token `jti`, if the log has it: minted here, by a token exchange, or by
/// the gateway for a call (named among the call's credentials). The log is read a page at a
/// time: revoking is rare, but the log may be large.
fn issued_event(store: &SqlStore, jti: &str) -> Result<Option<NewEvent>, Failure> {
    for kind in [EventKind::TokenMinted, EventKind::TokenExchanged, EventKind::CallRequested] {
        let mut after_seq = None;
        loop {
            let query = EventQuery { kind: Some(kind), after_seq, limit: Some(SEARCH_PAGE), ..Default::default() };
            let page = store.query(&query).map_err(Failure::runtime)?;
            let Some(last) = page.last() else { break };
            after_seq = Some(last.seq);
            if let Some(found) = page.into_iter().find(|e| issues(&e.event.detail, jti)) {
                return Ok(Some(found.event));
            }
        }
    }
    Ok(None)
}

/// Whether an event's `detail` names token `jti`: at the top level (minted,
/// exchanged) or among its credentials (a call's token).
fn issues(detail: &Value, jti: &str) -> bool {
    let named = |v: &Value| v.get("jti").and_then(Value::as_str) == Some(jti);
    named(detail) || detail.get("credentials").and_then(Value::as_array).is_some_and(|c| c.iter().any(named))
}

/// When `detail` (of the event that issued `jti`) says the token expires, in milliseconds.
fn expiry_ms(detail: &Value, jti: &str) -> Option<i64> {
    let named = |v: &&Value| v.get("jti").and_then(Value::as_str) == Some(jti);
    let source = if named(&detail) {
        Some(detail)
    } else {
        detail.get("credentials").and_then(Value::as_array).and_then(|c| c.iter().find(named))
    };
    source?.get("expires_at").and_then(Value::as_i64).map(|secs| secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_one_second_to_the_longest_configured_lifetime() {
        assert_eq!(ttl_secs(None, 300, 600).unwrap(), 300);
        assert_eq!(ttl_secs(Some("5m"), 300, 600).unwrap(), 300);
        assert_eq!(ttl_secs(Some("10m"), 300, 600).unwrap(), 600);
        assert!(ttl_secs(Some("11m"), 300, 600).unwrap_err().message.contains("out of range"));
        assert!(ttl_secs(Some("500ms"), 300, 600).unwrap_err().message.contains("out of range"));
        assert!(ttl_secs(Some("soon"), 300, 600).unwrap_err().message.contains("not a duration"));
    }

    #[test]
    fn jti_must_look_like_one() {
        assert!(check_jti("AbC-_09").is_ok());
        assert!(check_jti(&"a".repeat(MAX_JTI_LEN)).is_ok());
        for bad in ["", "a b", "a.b", "a/b", "ä"] {
            assert!(check_jti(bad).is_err(), "{bad:?}");
        }
        assert!(check_jti(&"a".repeat(MAX_JTI_LEN + 1)).is_err());
    }

    #[test]
    fn a_token_is_found_at_the_top_of_a_detail_or_among_its_credentials() {
        let minted = serde_json::json!({ "jti": "j1", "expires_at": 100 });
        let call = serde_json::json!({ "credentials": [
            { "name": "gh", "fingerprint": "fp" },
            { "name": "signing_key:k", "fingerprint": "k", "jti": "j2", "expires_at": 200 },
        ]});
        assert!(issues(&minted, "j1") && issues(&call, "j2"));
        assert!(!issues(&minted, "j2") && !issues(&call, "j1"));
        assert_eq!((expiry_ms(&minted, "j1"), expiry_ms(&call, "j2")), (Some(100_000), Some(200_000)));
        assert_eq!(expiry_ms(&call, "j3"), None);
    }

    #[test]
    fn scope_words_are_normalized_and_control_characters_refused() {
        assert_eq!(words("--scope", "  a   b ").unwrap(), "a b");
        assert!(words("--scope", "a\nb").is_err());
    }
}
