//! The credential broker: the secrets the gateway holds for upstreams, put where each upstream
//! needs them, and the short-lived tokens it mints for them.
//!
//! The agent never names or reads a secret: which secret goes to which upstream, and where (an
//! HTTP header, a query parameter, a child's environment variable), is configuration. What the
//! audit log learns of a secret is its name and keyed fingerprint, never its value. Every
//! message an upstream sends back passes the [`LeakGuard`] first, so an upstream that echoes
//! its credential does not hand it to the agent.
//!
//! Signing keys live sealed in the store; [`Keys`] holds the current set in memory and is
//! swapped whole when `custos keys rotate` adds one (see [`Keys::reload`]). The active key mints;
//! retired keys stay published in the JWKS until the tokens they signed have expired.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custos_config::{Config, InjectTarget, Injection, SecretSource, TokenPer, TokenSettings};
use custos_core::{EventKind, NewEvent};
use custos_secrets::{Algorithm, Fingerprinter, LeakGuard, MasterKey, MintRequest, Minted, SecretValue, SigningKey};
use custos_store::{CredentialStore, SigningKeyRecord};
use serde_json::json;

/// Largest secret file read: secrets are keys and tokens, not documents.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A minted token is reused for a run until this share of its lifetime is left.
const REUSE_UNTIL_REMAINING_PERCENT: u64 = 20;

/// Why the broker cannot start, or cannot mint.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("secret `{name}`: environment variable `{var}` is not set")]
    EnvUnset { name: String, var: String },
    #[error("secret `{name}`: cannot read `{path}`: {reason}")]
    File { name: String, path: String, reason: String },
    #[error("secret `{name}` is not in the store: set it with `custos secrets set {name}`")]
    NotStored { name: String },
    #[error("secret `{name}`: {reason}")]
    Unusable { name: String, reason: String },
    #[error("the master key: {0}")]
    MasterKey(String),
    #[error("the credential store: {0}")]
    Store(String),
    #[error("signing key `{kid}`: {reason}")]
    SigningKey { kid: String, reason: String },
    #[error("no active signing key: run `custos keys rotate`")]
    NoSigningKey,
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

/// One secret's value, with the fingerprint the log records instead.
#[derive(Debug)]
struct HeldSecret {
    value: SecretValue,
    fingerprint: String,
}

/// A credential as the audit log names it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CredentialRef {
    pub name: String,
    pub fingerprint: String,
}

/// A minted token on its way to the upstream: shown to nothing but the request that carries it.
#[derive(Clone)]
pub struct Bearer(Arc<str>);

impl Bearer {
    pub fn new(token: String) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer([redacted])")
    }
}

/// What one upstream gets.
#[derive(Debug, Clone, Default)]
struct ServerCredentials {
    inject: Vec<Injection>,
    token: Option<TokenSettings>,
}

/// The secrets and signing keys the gateway holds, and where each upstream gets them.
#[derive(Debug)]
pub struct Broker {
    secrets: HashMap<String, HeldSecret>,
    servers: HashMap<String, ServerCredentials>,
    /// Environment variables that are secret sources: never inherited by a child, which gets
    /// only what is injected into it.
    source_env: Vec<String>,
    guard: LeakGuard,
    fingerprinter: Fingerprinter,
    keys: Option<Arc<Keys>>,
}

/// Where the broker's secrets and keys come from.
pub struct BrokerSources<'a> {
    pub config: &'a Config,
    /// The servers this process serves: their secrets must load; the others' are loaded when
    /// they can be, so the leak guard knows them too.
    pub serving: &'a [&'a str],
    pub master: &'a MasterKey,
    pub store: &'a dyn CredentialStore,
}

impl std::fmt::Debug for BrokerSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSources").field("serving", &self.serving).finish_non_exhaustive()
    }
}

impl Broker {
    /// Loads every configured secret and the signing keys.
    pub fn load(sources: &BrokerSources<'_>, now_ms: i64) -> Result<Self, BrokerError> {
        let config = sources.config;
        let fingerprinter = sources.master.fingerprinter();
        let required: Vec<&str> = config
            .servers
            .iter()
            .filter(|s| sources.serving.contains(&s.name.as_str()))
            .flat_map(|s| s.inject.iter().map(|i| i.secret.as_str()))
            .chain(
                config
                    .apis
                    .iter()
                    .filter(|a| sources.serving.contains(&a.name.as_str()))
                    .flat_map(|a| a.inject.iter().map(|i| i.secret.as_str())),
            )
            .collect();
        let mut secrets = HashMap::new();
        for secret in &config.secrets {
            match read_secret(&secret.name, &secret.source, sources) {
                Ok(value) => {
                    let fingerprint = fingerprinter.fingerprint(value.expose().as_bytes());
                    secrets.insert(secret.name.clone(), HeldSecret { value, fingerprint });
                }
                Err(err) if required.contains(&secret.name.as_str()) => return Err(err),
                Err(err) => tracing::warn!("{err} (not injected here; the leak guard will not know it)"),
            }
        }
        let guard = LeakGuard::new(
            secrets.iter().map(|(name, held)| (name.clone(), held.value.clone())).collect(),
            fingerprinter.clone(),
        );
        for name in guard.too_short() {
            tracing::warn!("secret `{name}` is shorter than 8 bytes: the leak guard cannot look for it");
        }
        // An API's credentials are kept by its name, as a server's: the two share one namespace.
        let servers = config
            .servers
            .iter()
            .map(|s| (s.name.clone(), ServerCredentials { inject: s.inject.clone(), token: s.token.clone() }))
            .chain(
                config
                    .apis
                    .iter()
                    .map(|a| (a.name.clone(), ServerCredentials { inject: a.inject.clone(), token: a.token.clone() })),
            )
            .collect();
        let source_env = config
            .secrets
            .iter()
            .filter_map(|s| match &s.source {
                SecretSource::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect();
        let keys = Keys::load(sources.store, sources.master, config, now_ms)?;
        Ok(Self { secrets, servers, source_env, guard, fingerprinter, keys: Some(Arc::new(keys)) })
    }

    /// A broker that holds nothing, for a gateway configured without credentials: the leak
    /// guard still looks for credential shapes, fingerprinting them under a key of this process.
    pub fn shapes_only() -> Self {
        let fingerprinter = Fingerprinter::ephemeral();
        Self {
            secrets: HashMap::new(),
            servers: HashMap::new(),
            source_env: Vec::new(),
            guard: LeakGuard::new(Vec::new(), fingerprinter.clone()),
            fingerprinter,
            keys: None,
        }
    }

    pub fn guard(&self) -> &LeakGuard {
        &self.guard
    }

    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }

    /// The signing keys, when any are loaded.
    pub fn keys(&self) -> Option<&Arc<Keys>> {
        self.keys.as_ref()
    }

    /// The credentials `server` is given, as the log names them.
    pub fn credentials_of(&self, server: &str) -> Vec<CredentialRef> {
        let Some(creds) = self.servers.get(server) else { return Vec::new() };
        creds
            .inject
            .iter()
            .filter_map(|i| {
                let held = self.secrets.get(&i.secret)?;
                Some(CredentialRef { name: i.secret.clone(), fingerprint: held.fingerprint.clone() })
            })
            .collect()
    }

    /// The token settings of `server`, when the gateway mints tokens for it.
    pub fn token_settings(&self, server: &str) -> Option<&TokenSettings> {
        self.servers.get(server)?.token.as_ref()
    }

    /// Environment variables a child must not inherit (secret sources).
    pub fn env_removed(&self) -> &[String] {
        &self.source_env
    }

    /// The environment variables injected into `server`'s child.
    pub fn child_env(&self, server: &str) -> Vec<(String, String)> {
        self.rendered(server, |t| match t {
            InjectTarget::Env(var) => Some(var),
            _ => None,
        })
    }

    /// The headers injected into requests to `server`.
    pub fn headers(&self, server: &str) -> Vec<(String, String)> {
        self.rendered(server, |t| match t {
            InjectTarget::Header(name) => Some(name),
            _ => None,
        })
    }

    /// The query parameters added to `server`'s URL.
    pub fn query(&self, server: &str) -> Vec<(String, String)> {
        self.rendered(server, |t| match t {
            InjectTarget::Query(name) => Some(name),
            _ => None,
        })
    }

    fn rendered(&self, server: &str, pick: impl Fn(&InjectTarget) -> Option<&String>) -> Vec<(String, String)> {
        let Some(creds) = self.servers.get(server) else { return Vec::new() };
        creds
            .inject
            .iter()
            .filter_map(|i| {
                let key = pick(&i.target)?;
                let held = self.secrets.get(&i.secret)?;
                Some((key.clone(), i.render(held.value.expose())))
            })
            .collect()
    }

    /// Mints a token for `server` (which must have `[servers.token]`).
    pub fn mint_for(&self, server: &str, who: &Minting<'_>) -> Result<Option<Minted>, BrokerError> {
        let Some(settings) = self.token_settings(server) else { return Ok(None) };
        let keys = self.keys.as_ref().ok_or(BrokerError::NoSigningKey)?;
        keys.mint(&settings.audience, settings.ttl_secs, who).map(Some)
    }
}

/// Who a token is minted for, and for what.
#[derive(Debug, Clone, Copy)]
pub struct Minting<'a> {
    pub agent: &'a str,
    pub principal: &'a [String],
    pub run: Option<&'a str>,
    /// Space-separated: the tool, for a call.
    pub scope: &'a str,
}

/// Tokens of one run kept for reuse (`per = "run"`, and session traffic): by scope.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: std::sync::Mutex<HashMap<String, Minted>>,
}

impl TokenCache {
    /// A token for `who` on `server`: a new one per call when `per = "call"` and `fresh`, else
    /// the run's cached one while it has more than a fifth of its life left.
    pub fn token(
        &self,
        broker: &Broker,
        server: &str,
        who: &Minting<'_>,
        fresh: bool,
    ) -> Result<Option<Minted>, BrokerError> {
        let Some(settings) = broker.token_settings(server) else { return Ok(None) };
        let reuse = !(fresh && settings.per == TokenPer::Call);
        let now = now_secs();
        if reuse {
            let cache = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(t) = cache.get(who.scope) {
                let left = t.expires_at.saturating_sub(now);
                let life = t.expires_at.saturating_sub(t.issued_at).max(1);
                if left * 100 > life * REUSE_UNTIL_REMAINING_PERCENT {
                    return Ok(Some(t.clone()));
                }
            }
        }
        let minted = broker.mint_for(server, who)?;
        if let (true, Some(m)) = (reuse, &minted) {
            self.tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(who.scope.to_owned(), m.clone());
        }
        Ok(minted)
    }
}

/// Where a signing key is in its life. A rotated-in key is published before it mints, so
/// verifiers that cache the JWKS learn it first; the key it replaces stays published after it
/// stops minting, until the last token it signed has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published; mints from its `created_ms` on.
    Pending,
    /// Mints.
    Active,
    /// No longer mints, still published: the tokens it signed still verify.
    Retired,
    /// Past its publication: nothing it signed verifies any more.
    Expired,
}

impl KeyState {
    /// The state of `key` at `now_ms`. A key's `created_ms` is when it starts minting, its
    /// `retired_ms` when its successor does.
    pub fn of(key: &SigningKeyRecord, now_ms: i64) -> Self {
        if key.created_ms > now_ms {
            return Self::Pending;
        }
        match (key.retired_ms, key.publish_until_ms) {
            (None, _) => Self::Active,
            (Some(retired), _) if retired > now_ms => Self::Active,
            (Some(_), Some(until)) if until > now_ms => Self::Retired,
            (Some(_), _) => Self::Expired,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }
}

/// The gateway's signing keys as loaded from the store: the active one mints, the published
/// ones are in the JWKS.
#[derive(Debug)]
pub struct KeySet {
    active: Option<Arc<SigningKey>>,
    /// Every key still published (pending, active, retired).
    published: Vec<Arc<SigningKey>>,
}

impl KeySet {
    /// What a verifier or a minter would notice changing: the published kids and the active one.
    fn shape(&self) -> (Vec<&str>, Option<&str>) {
        (self.published.iter().map(|k| k.kid()).collect(), self.active.as_ref().map(|k| k.kid()))
    }
}

/// The signing keys, swapped whole when they change.
#[derive(Debug)]
pub struct Keys {
    issuer: String,
    set: RwLock<Arc<KeySet>>,
    /// Bumped on every change, so holders of a copy (a verifier's key set) know to refresh.
    version: std::sync::atomic::AtomicU64,
}

impl Keys {
    /// Loads the keys from the store, opening each with the master key.
    pub fn load(
        store: &dyn CredentialStore,
        master: &MasterKey,
        config: &Config,
        now_ms: i64,
    ) -> Result<Self, BrokerError> {
        let issuer = issuer(config);
        let set = load_set(store, master, now_ms)?;
        Ok(Self { issuer, set: RwLock::new(Arc::new(set)), version: std::sync::atomic::AtomicU64::new(1) })
    }

    /// Reads the store again and swaps the set in when a key was added or a published one
    /// lapsed. Returns whether anything changed.
    pub fn reload(&self, store: &dyn CredentialStore, master: &MasterKey, now_ms: i64) -> Result<bool, BrokerError> {
        let set = load_set(store, master, now_ms)?;
        let current = self.current();
        let changed = set.shape() != current.shape();
        if changed {
            *self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
            self.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(changed)
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Changes whenever the published keys change.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `iss` of every token minted here.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The published public keys, as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let set = self.current();
        let keys: Vec<&SigningKey> = set.published.iter().map(AsRef::as_ref).collect();
        custos_secrets::jwks_document(&keys)
    }

    /// The kid of the key that mints now.
    pub fn active_kid(&self) -> Option<String> {
        self.current().active.as_ref().map(|k| k.kid().to_owned())
    }

    /// Mints a token for `audience`, valid `ttl_secs`.
    pub fn mint(&self, audience: &str, ttl_secs: u64, who: &Minting<'_>) -> Result<Minted, BrokerError> {
        let set = self.current();
        let key = set.active.as_ref().ok_or(BrokerError::NoSigningKey)?;
        key.mint(&MintRequest {
            issuer: &self.issuer,
            subject: who.agent,
            audience,
            scope: who.scope,
            principal: who.principal,
            ttl_secs,
            run: who.run,
            now_secs: now_secs(),
        })
        .map_err(|e| BrokerError::Mint(e.to_string()))
    }
}

/// The `iss` of minted tokens: `[credentials] issuer`, else the gateway's public URL, else
/// `custos`.
pub fn issuer(config: &Config) -> String {
    config.credentials.issuer.clone().or_else(|| config.serve.public_url.clone()).unwrap_or_else(|| "custos".to_owned())
}

fn load_set(store: &dyn CredentialStore, master: &MasterKey, now_ms: i64) -> Result<KeySet, BrokerError> {
    let records = store.signing_keys().map_err(|e| BrokerError::Store(e.to_string()))?;
    let mut set = KeySet { active: None, published: Vec::new() };
    // Oldest first: of two keys active at once (rotations racing), the newer mints.
    for record in records {
        let state = KeyState::of(&record, now_ms);
        if state == KeyState::Expired {
            continue;
        }
        let key = Arc::new(open_key(&record, master)?);
        if state == KeyState::Active {
            set.active = Some(key.clone());
        }
        set.published.push(key);
    }
    Ok(set)
}

/// Opens a stored signing key with the master key.
pub fn open_key(record: &SigningKeyRecord, master: &MasterKey) -> Result<SigningKey, BrokerError> {
    let bad = |reason: String| BrokerError::SigningKey { kid: record.kid.clone(), reason };
    let alg: Algorithm =
        record.algorithm.parse().map_err(|_| bad(format!("unknown algorithm `{}`", record.algorithm)))?;
    let der = master.open(&key_context(&record.kid), &record.sealed_private).map_err(|e| bad(e.to_string()))?;
    SigningKey::from_pkcs8(alg, &der).map_err(|e| bad(e.to_string()))
}

/// The associated data a signing key is sealed under.
pub fn key_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// The associated data a stored secret is sealed under.
pub fn secret_context(name: &str) -> String {
    format!("secret:{name}")
}

/// Creates a signing key and seals it. It is published at once and mints `activate_in_ms`
/// later (at once when there is no key yet), so verifiers that cache the JWKS fetch it before
/// they see a token it signed. The key it replaces mints until then and stays published for
/// `overlap_ms` more (the longest token lifetime, plus leeway); it gets its own
/// `signing_key.retired` event, in the same transaction. Returns the new kid.
pub fn rotate_key(
    store: &mut dyn CredentialStore,
    master: &MasterKey,
    alg: Algorithm,
    overlap_ms: i64,
    activate_in_ms: i64,
    event: NewEvent,
) -> Result<String, BrokerError> {
    let (key, der) = SigningKey::generate(alg).map_err(|e| BrokerError::Mint(e.to_string()))?;
    let kid = key.kid().to_owned();
    let retiring: Vec<String> = store
        .signing_keys()
        .map_err(|e| BrokerError::Store(e.to_string()))?
        .into_iter()
        .filter(|k| k.retired_ms.is_none())
        .map(|k| k.kid)
        .collect();
    let active_from =
        if retiring.is_empty() { event.time_ms } else { event.time_ms.saturating_add(activate_in_ms.max(0)) };
    let record = SigningKeyRecord {
        kid: kid.clone(),
        algorithm: alg.as_str().to_owned(),
        sealed_private: master.seal(&key_context(&kid), &der).map_err(|e| BrokerError::Mint(e.to_string()))?,
        public_jwk: key.public_jwk(),
        created_ms: active_from,
        retired_ms: None,
        publish_until_ms: None,
    };
    let mut events = Vec::with_capacity(1 + retiring.len());
    let mut created = event;
    created.detail = json!({
        "kid": kid,
        "algorithm": alg.as_str(),
        "publish_overlap_ms": overlap_ms,
        "active_from_ms": active_from,
        "retires": retiring,
    });
    for old in &retiring {
        let mut retired = NewEvent::new(EventKind::SigningKeyRetired, created.time_ms);
        retired.detail = json!({
            "kid": old,
            "replaced_by": kid,
            "mints_until_ms": active_from,
            "published_until_ms": active_from.saturating_add(overlap_ms),
        });
        events.push(retired);
    }
    events.insert(0, created);
    store.add_signing_key(&record, overlap_ms, &events).map_err(|e| BrokerError::Store(e.to_string()))?;
    Ok(kid)
}

fn read_secret(name: &str, source: &SecretSource, sources: &BrokerSources<'_>) -> Result<SecretValue, BrokerError> {
    let value = match source {
        SecretSource::Env(var) => {
            std::env::var(var).map_err(|_| BrokerError::EnvUnset { name: name.to_owned(), var: var.clone() })?
        }
        SecretSource::File(path) => return read_secret_file(name, path),
        SecretSource::Store => {
            let stored = sources
                .store
                .secret(name)
                .map_err(|e| BrokerError::Store(e.to_string()))?
                .ok_or_else(|| BrokerError::NotStored { name: name.to_owned() })?;
            let plain = sources
                .master
                .open(&secret_context(name), &stored.sealed)
                .map_err(|e| BrokerError::Unusable { name: name.to_owned(), reason: e.to_string() })?;
            return SecretValue::from_utf8(&secret_context(name), plain)
                .map_err(|e| BrokerError::Unusable { name: name.to_owned(), reason: e.to_string() })
                .and_then(|v| non_empty(name, v));
        }
    };
    non_empty(name, SecretValue::from(value))
}

fn non_empty(name: &str, value: SecretValue) -> Result<SecretValue, BrokerError> {
    if value.is_empty() {
        return Err(BrokerError::Unusable { name: name.to_owned(), reason: "the value is empty".into() });
    }
    Ok(value)
}

/// A file secret's value as the gateway reads it: at most 64 KiB of UTF-8, one trailing newline
/// dropped, not empty. The one rule for every reader, so fingerprints agree.
pub fn read_secret_file(name: &str, path: &std::path::Path) -> Result<SecretValue, BrokerError> {
    use std::io::Read;
    let bad = |reason: String| BrokerError::File { name: name.to_owned(), path: path.display().to_string(), reason };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_SECRET_FILE_BYTES} bytes")));
    }
    // One trailing newline is how editors and `echo` end a file, not part of the secret.
    let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    non_empty(name, SecretValue::from(trimmed))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
