//! `custos secrets set / list / rm`: the secrets the gateway keeps in its own store.
//!
//! A secret's value is read from stdin, sealed under the master key (bound to its name) and
//! stored with its keyed fingerprint; nothing prints or records the value. Which secrets exist
//! and where they come from is configuration (`[secrets.NAME]`): only those declared with
//! `store = true` can be set here. Secrets from the environment or a file are only reported.

use std::io::{IsTerminal, Read};
use std::path::Path;

use custos_config::{Config, SecretSource};
use custos_core::{EventKind, NewEvent};
use custos_gateway::broker::secret_context;
use custos_gateway::now_ms;
use custos_secrets::{MasterKey, SecretValue};
use custos_store::{CredentialStore, CredentialUse, StoredSecret};
use serde_json::json;

use crate::cli::{Location, SecretsCommand};
use crate::context;
use crate::credentials;
use crate::Failure;

/// Largest secret accepted, from stdin or a file: secrets are keys and tokens, not documents.
/// The same bound as the broker's for secret files.
const MAX_SECRET_BYTES: usize = 64 * 1024;

pub fn run(cmd: SecretsCommand) -> Result<(), Failure> {
    match cmd {
        SecretsCommand::Set { location, name } => set(&location, &name),
        SecretsCommand::List { location, json } => list(&location, json),
        SecretsCommand::Rm { location, name } => rm(&location, &name),
    }
}

fn set(location: &Location, name: &str) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    // The declaration is checked before stdin is read, so a mistyped name fails at once rather
    // than after the secret was typed or piped.
    match config.secret(name).map(|s| &s.source) {
        Some(SecretSource::Store) => {}
        Some(source @ (SecretSource::Env(_) | SecretSource::File(_))) => {
            return Err(Failure::usage(format!(
                "secret `{name}` comes from `{}` (`[secrets.{name}]` in `{}`): change it there, or declare it with \
                 `store = true` to keep it in the store",
                source.describe(),
                config.path.display()
            )))
        }
        None => {
            return Err(Failure::usage(format!(
                "secret `{}` is not declared: add `[secrets.{}]` with `store = true` to `{}` first",
                name.escape_debug(),
                name.escape_debug(),
                config.path.display()
            )))
        }
    }
    if std::io::stdin().is_terminal() {
        eprintln!("custos: type the value of `{name}`, then Enter and Ctrl-D");
    }
    let value = read_value(std::io::stdin().lock())?;
    if value.len() < custos_secrets::MIN_SECRET_LEN {
        eprintln!(
            "custos: `{name}` is shorter than {} bytes: the leak guard cannot look for it in what upstreams send back",
            custos_secrets::MIN_SECRET_LEN
        );
    }

    let master = credentials::master_key(&config, true)?;
    let mut store = context::open_for_writing(&config)?;
    let replaced = store.secret(name).map_err(Failure::runtime)?.is_some();
    let sealed = master.seal(&secret_context(name), value.expose().as_bytes()).map_err(Failure::runtime)?;
    let fingerprint = master.fingerprinter().fingerprint(value.expose().as_bytes());
    let now = now_ms();
    // A replaced secret is a rotated one: its age starts again now.
    let secret = StoredSecret {
        name: name.to_owned(),
        sealed,
        fingerprint: fingerprint.clone(),
        created_ms: now,
        updated_ms: now,
    };
    let mut event = NewEvent::new(EventKind::SecretSet, now);
    event.detail = json!({ "name": name, "fingerprint": fingerprint, "replaced": replaced });
    store.put_secret(&secret, &event).map_err(Failure::runtime)?;
    println!("stored secret `{name}` ({fingerprint})");
    if replaced {
        eprintln!("custos: replaced the previous value; a running gateway uses the new one once restarted");
    }
    Ok(())
}

/// The secret on `input`: at most [`MAX_SECRET_BYTES`], UTF-8, not empty, without the one
/// trailing newline that `echo` and editors add.
fn read_value(input: impl Read) -> Result<SecretValue, Failure> {
    // Room for one byte past the limit (to tell "too large" from "exactly the limit") and one
    // spare, so reading never grows the buffer and leaves copies of the value behind.
    let mut bytes = Vec::with_capacity(MAX_SECRET_BYTES + 2);
    let limit = u64::try_from(MAX_SECRET_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    input.take(limit).read_to_end(&mut bytes).map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(Failure::usage(format!("the value on stdin is larger than {MAX_SECRET_BYTES} bytes")));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| Failure::usage("the value on stdin is not utf-8 text"))?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    let value = SecretValue::from(text);
    if value.is_empty() {
        return Err(Failure::usage(
            "the value on stdin is empty: pipe the secret in, e.g. `printf %s \"$TOKEN\" | custos secrets set NAME`",
        ));
    }
    Ok(value)
}

fn list(location: &Location, json: bool) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let (stored, uses) = match super::open_existing(&config)? {
        Some(store) => (store.secrets().map_err(Failure::runtime)?, store.credential_uses().map_err(Failure::runtime)?),
        None => (Vec::new(), Vec::new()),
    };
    let master = master_if_present(&config);
    let views = views(&config, &stored, &uses, master.as_ref());
    if json {
        for v in &views {
            let line = json!({
                "name": v.name,
                "source": v.source,
                "available": v.available,
                "fingerprint": v.fingerprint,
                "fingerprint_from": v.fingerprint_from.map(FingerprintFrom::as_str),
                "declared": v.declared,
            });
            println!("{line}");
        }
        return Ok(());
    }
    if views.is_empty() {
        eprintln!("custos: no secrets: declare them as `[secrets.NAME]` in `{}`", config.path.display());
        return Ok(());
    }
    println!("{:<24}  {:<32}  {:<9}  {:<44}  NOTE", "NAME", "SOURCE", "AVAILABLE", "FINGERPRINT");
    for v in &views {
        let note = match (v.declared, v.fingerprint_from) {
            (false, _) => "undeclared: not in the config",
            (true, Some(FingerprintFrom::LastUse)) => "fingerprint of the last use",
            (true, _) => "",
        };
        println!(
            "{:<24}  {:<32}  {:<9}  {:<44}  {note}",
            v.name,
            v.source,
            if v.available { "yes" } else { "no" },
            v.fingerprint.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

fn rm(location: &Location, name: &str) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let not_stored = || Failure::usage(format!("secret `{}` is not stored", name.escape_debug()));
    let Some(mut store) = super::open_existing(&config)? else { return Err(not_stored()) };
    let mut event = NewEvent::new(EventKind::SecretRemoved, now_ms());
    event.detail = json!({ "name": name });
    if !store.remove_secret(name, &event).map_err(Failure::runtime)? {
        return Err(not_stored());
    }
    println!("removed secret `{name}`");
    let injected: Vec<&str> =
        config.servers.iter().filter(|s| s.inject.iter().any(|i| i.secret == name)).map(|s| s.name.as_str()).collect();
    if !injected.is_empty() {
        eprintln!(
            "custos: `{name}` is still injected into {}: the gateway cannot start those servers until it is set again",
            injected.join(", ")
        );
    }
    Ok(())
}

/// Where a reported fingerprint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintFrom {
    /// The value available here: stored, or read from the environment or the file.
    Value,
    /// The latest use the audit log recorded: the value is not readable here.
    LastUse,
}

impl FingerprintFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::LastUse => "last_use",
        }
    }
}

/// One secret as `secrets list` and `inventory credentials` report it: never its value.
#[derive(Debug, Clone)]
pub struct SecretView {
    pub name: String,
    /// `env:VAR`, `file:PATH` or `store`.
    pub source: String,
    /// Whether this process can read its value: the variable is set, the file readable, the
    /// secret stored. The gateway's environment may differ from the caller's.
    pub available: bool,
    pub fingerprint: Option<String>,
    pub fingerprint_from: Option<FingerprintFrom>,
    /// When the value here was set: a stored secret's creation, a file's modification; unknown
    /// for the environment.
    pub set_ms: Option<i64>,
    /// False for a stored secret that the config no longer declares.
    pub declared: bool,
    /// The secret's own `rotate_after_days`, when it sets one.
    pub rotate_after_days: Option<u64>,
    /// Whether its value lives in the store (the only kind `custos secrets set` can provide).
    pub from_store: bool,
}

/// Every configured secret, then every stored one the config does not declare.
pub fn views(
    config: &Config,
    stored: &[StoredSecret],
    uses: &[CredentialUse],
    master: Option<&MasterKey>,
) -> Vec<SecretView> {
    let fingerprint_of = |value: &SecretValue| master.map(|m| m.fingerprinter().fingerprint(value.expose().as_bytes()));
    let mut views: Vec<SecretView> = config
        .secrets
        .iter()
        .map(|secret| {
            let (available, fingerprint, set_ms) = match &secret.source {
                SecretSource::Store => match stored.iter().find(|s| s.name == secret.name) {
                    Some(s) => (true, Some(s.fingerprint.clone()), Some(s.created_ms)),
                    None => (false, None, None),
                },
                SecretSource::Env(var) => {
                    let value = std::env::var(var).ok().filter(|v| !v.is_empty()).map(SecretValue::from);
                    (value.is_some(), value.as_ref().and_then(fingerprint_of), None)
                }
                SecretSource::File(path) => {
                    let value = read_secret_file(path);
                    (value.is_some(), value.as_ref().and_then(fingerprint_of), modified_ms(path))
                }
            };
            let (fingerprint, fingerprint_from) = match fingerprint {
                Some(fp) => (Some(fp), Some(FingerprintFrom::Value)),
                None => match last_fingerprint(uses, &secret.name) {
                    Some(fp) => (Some(fp), Some(FingerprintFrom::LastUse)),
                    None => (None, None),
                },
            };
            SecretView {
                name: secret.name.clone(),
                source: secret.source.describe(),
                available,
                fingerprint,
                fingerprint_from,
                set_ms,
                declared: true,
                rotate_after_days: secret.rotate_after_days,
                from_store: secret.source == SecretSource::Store,
            }
        })
        .collect();
    for s in stored.iter().filter(|s| config.secret(&s.name).is_none()) {
        views.push(SecretView {
            name: s.name.clone(),
            source: SecretSource::Store.describe(),
            available: true,
            fingerprint: Some(s.fingerprint.clone()),
            fingerprint_from: Some(FingerprintFrom::Value),
            set_ms: Some(s.created_ms),
            declared: false,
            rotate_after_days: None,
            from_store: true,
        });
    }
    views
}

/// The master key when its file exists, to fingerprint secrets read here; reporting never
/// creates one, and a key that cannot be loaded only costs those fingerprints.
pub fn master_if_present(config: &Config) -> Option<MasterKey> {
    if !config.credentials.key_file.exists() {
        return None;
    }
    match credentials::master_key(config, false) {
        Ok(master) => Some(master),
        Err(f) => {
            eprintln!("custos: {}; fingerprints of secrets from the environment or files are not shown", f.message);
            None
        }
    }
}

/// The fingerprint named by the latest recorded use of credential `name`.
fn last_fingerprint(uses: &[CredentialUse], name: &str) -> Option<String> {
    uses.iter().filter(|u| u.credential == name).max_by_key(|u| u.last_ms).map(|u| u.fingerprint.clone())
}

/// A secret file's value as the gateway reads it (the broker's own reader), so the fingerprint
/// shown here is the one the gateway records. `None` when it cannot be read, is too large or is
/// empty.
fn read_secret_file(path: &Path) -> Option<SecretValue> {
    custos_gateway::broker::read_secret_file("", path).ok()
}

/// When the file at `path` was last modified, in milliseconds since the Unix epoch.
fn modified_ms(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped_and_nothing_else() {
        for (input, expected) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
            ("s3cret", "s3cret"),
            (" spaced \n", " spaced "),
        ] {
            assert_eq!(read_value(input.as_bytes()).unwrap().expose(), expected, "{input:?}");
        }
    }

    #[test]
    fn empty_oversized_and_binary_values_are_refused() {
        for input in ["", "\n", "\r\n"] {
            let err = read_value(input.as_bytes()).unwrap_err();
            assert!(err.message.contains("empty"), "{input:?}: {}", err.message);
        }
        let exactly = "a".repeat(MAX_SECRET_BYTES);
        assert_eq!(read_value(exactly.as_bytes()).unwrap().len(), MAX_SECRET_BYTES);
        let over = "a".repeat(MAX_SECRET_BYTES + 1);
        assert!(read_value(over.as_bytes()).unwrap_err().message.contains("larger than 65536 bytes"));
        assert!(read_value(&[0xff, 0xfe, 0x00][..]).unwrap_err().message.contains("not utf-8"));
    }
}
