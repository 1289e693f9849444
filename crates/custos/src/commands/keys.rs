//! `custos keys rotate / list`: the signing keys of the tokens the gateway mints.
//!
//! One key is active and mints; a rotation makes a new one active and retires the old one,
//! which stays published in the JWKS for the longest token lifetime configured (plus leeway),
//! so every token it signed keeps verifying until it expires. A running `custos serve` reads
//! the change from the shared database within [`credentials::KEY_RELOAD_EVERY`].

use custos_core::{EventKind, NewEvent};
use custos_gateway::broker::{rotate_key, KeyState};
use custos_gateway::now_ms;
use custos_secrets::Algorithm;
use custos_store::CredentialStore;
use serde_json::json;

use crate::cli::{KeysCommand, Location};
use crate::context;
use crate::credentials;
use crate::Failure;

pub fn run(cmd: KeysCommand) -> Result<(), Failure> {
    match cmd {
        KeysCommand::Rotate { location, algorithm, activate_in } => {
            rotate(&location, algorithm.as_deref(), &activate_in)
        }
        KeysCommand::List { location, json } => list(&location, json),
    }
}

fn rotate(location: &Location, algorithm: Option<&str>, activate_in: &str) -> Result<(), Failure> {
    let activate_in_ms = humantime::parse_duration(activate_in)
        .map_err(|e| {
            Failure::usage(format!(
                "--activate-in `{}` is not a duration such as 0s or 60s: {e}",
                activate_in.escape_debug()
            ))
        })?
        .as_millis();
    let activate_in_ms = i64::try_from(activate_in_ms).unwrap_or(i64::MAX);
    let config = context::load_config(location)?;
    let alg = match algorithm {
        Some(name) => name.parse::<Algorithm>().map_err(Failure::usage)?,
        None => credentials::algorithm(&config),
    };
    let master = credentials::master_key(&config, true)?;
    let mut store = context::open_for_writing(&config)?;
    let previous = store.signing_keys().map_err(Failure::runtime)?.into_iter().find(|k| k.retired_ms.is_none());
    let event = NewEvent::new(EventKind::SigningKeyCreated, now_ms());
    let kid = rotate_key(&mut store, &master, alg, credentials::publish_overlap_ms(&config), activate_in_ms, event)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let keys = store.signing_keys().map_err(Failure::runtime)?;
    let active_from = keys.iter().find(|k| k.kid == kid).map_or_else(now_ms, |k| k.created_ms);
    println!(
        "created signing key `{kid}` ({alg}): published now, it signs the tokens minted from {}",
        super::rfc3339(active_from)
    );
    if let Some(old) = previous {
        // Read back rather than computed, so what is printed is what the store decided.
        let until = keys.iter().find(|k| k.kid == old.kid).and_then(|k| k.publish_until_ms);
        match until {
            Some(until) => println!(
                "retiring `{}`: it mints until then and stays published until {}, so the tokens it signed keep verifying",
                old.kid,
                super::rfc3339(until)
            ),
            None => println!("retiring `{}`", old.kid),
        }
    }
    eprintln!(
        "custos: a running `custos serve` switches to the new key within {}s",
        credentials::KEY_RELOAD_EVERY.as_secs()
    );
    Ok(())
}

fn list(location: &Location, json: bool) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let keys = match super::open_existing(&config)? {
        Some(store) => store.signing_keys().map_err(Failure::runtime)?,
        None => Vec::new(),
    };
    let now = now_ms();
    if json {
        for k in &keys {
            let line = json!({
                "kid": k.kid,
                "algorithm": k.algorithm,
                "created_ms": k.created_ms,
                "state": KeyState::of(k, now).as_str(),
                "retired_ms": k.retired_ms,
                "publish_until_ms": k.publish_until_ms,
            });
            println!("{line}");
        }
        return Ok(());
    }
    if keys.is_empty() {
        eprintln!("custos: no signing keys: `custos keys rotate` creates the first");
        return Ok(());
    }
    println!("{:<44}  {:<9}  {:<20}  STATE", "KID", "ALGORITHM", "CREATED");
    for k in &keys {
        let state = match (KeyState::of(k, now), k.publish_until_ms) {
            (KeyState::Retired, Some(until)) => format!("retired (published until {})", super::rfc3339(until)),
            (state, _) => state.as_str().to_owned(),
        };
        println!("{:<44}  {:<9}  {:<20}  {state}", k.kid, k.algorithm, super::rfc3339(k.created_ms));
    }
    Ok(())
}
