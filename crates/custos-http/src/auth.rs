//! Who is calling: every request is authenticated as a configured or registered agent.
//!
//! API keys (`Authorization: Bearer cst_…`) are looked up by their public id in the registry
//! and checked against the stored hash in constant time. Bearer tokens (JWTs) are verified
//! against the configured identity provider's JWKS (`[serve.jwt]`); without one they are
//! refused. Tokens this gateway minted for itself (audience: its public URL) are verified
//! against its own signing keys instead, and refused once their `jti` is revoked. Without an `Authorization` header, the verified client certificate of the
//! connection (`[serve.tls]`) names the agent by its SPIFFE ID (`[[agents]] spiffe_id`). When a
//! request carries both, they must name the same agent. Either way the agent must be declared
//! or registered and not revoked. Failures are recorded as `auth.failed` events, without the
//! credential.

use std::sync::Mutex;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use custos_auth::{AuthError, Credential, KeyHash, KeyHasher, ProtectedResourceMetadata, SpiffeId};
use custos_core::{Agent, AgentId, EventKind, NewEvent};
use custos_store::{AgentRegistry, AuditLog, CredentialStore, SqlStore};
use serde_json::json;

use crate::reply;

/// Checks credentials against the config's agents and the registry.
#[derive(Debug)]
pub struct Authenticator {
    agents: Vec<Agent>,
    /// A read-only connection: registry changes made by `custos agents` (another process) are
    /// seen on the next request, which is what makes revocation immediate.
    registry: Mutex<SqlStore>,
    hasher: KeyHasher,
    /// Verifies bearer tokens, when an identity provider is configured.
    jwt: Option<crate::jwks::Jwt>,
    /// Scopes every token must carry.
    required_scopes: Vec<String>,
    /// `[[agents]] spiffe_id`: the canonical SPIFFE ID of each agent that has one.
    spiffe_ids: Vec<(String, AgentId)>,
    /// Tokens the gateway minted with itself as the audience, when it has signing keys.
    own: Option<OwnTokens>,
}

/// Verifies the gateway's own tokens against its signing keys, kept in step with them. A
/// gateway may have no signing key yet (none is made until something mints): it then has no
/// own tokens to accept, and accepts them from the first request after a key appears
/// (`custos keys rotate`, `custos token mint`, or the first upstream that takes minted tokens).
#[derive(Debug)]
pub struct OwnTokens {
    /// Issuer, audience and algorithms of every verifier built here.
    config: custos_auth::JwtConfig,
    keys: std::sync::Arc<custos_gateway::Keys>,
    /// The key set version the verifier was built from, and the verifier: `None` while the
    /// set has no key.
    current: std::sync::RwLock<(u64, Option<std::sync::Arc<custos_auth::JwtVerifier>>)>,
}

impl OwnTokens {
    /// Tokens issued by `keys` for `audience` (the gateway's public URL). An empty key set is
    /// fine; a bad issuer or audience is not.
    pub fn new(keys: std::sync::Arc<custos_gateway::Keys>, audience: &str) -> Result<Self, AuthError> {
        let mut config = custos_auth::JwtConfig::new(keys.issuer(), audience);
        config.allowed_algorithms = vec!["EdDSA".into(), "ES256".into()];
        // Minted and verified by the same gateway's clock: no skew to allow for.
        config.leeway_secs = 0;
        // Checked now, so a bad setting stops start-up instead of refusing every token.
        custos_auth::JwtVerifier::without_keys(config.clone())?;
        let version = keys.version();
        let verifier = verifier_for(&config, &keys)?;
        Ok(Self { config, keys, current: std::sync::RwLock::new((version, verifier)) })
    }

    /// The verifier of the current key set, when `token` names one of its keys (by `kid`).
    fn verifier_of(&self, token: &str) -> Option<std::sync::Arc<custos_auth::JwtVerifier>> {
        let kid = token_kid(token)?;
        let verifier = self.verifier()?;
        verifier.key_ids().contains(&kid).then_some(verifier)
    }

    /// The verifier for the key set as it is now, rebuilt when the set has changed.
    fn verifier(&self) -> Option<std::sync::Arc<custos_auth::JwtVerifier>> {
        let version = self.keys.version();
        {
            let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.0 == version {
                return current.1.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != version {
            match verifier_for(&self.config, &self.keys) {
                Ok(verifier) => *current = (version, verifier),
                // The set in use stays; the next request tries again.
                Err(err) => tracing::error!("cannot load the gateway's own signing keys: {err}"),
            }
        }
        current.1.clone()
    }
}

/// A verifier of `config` for the published keys of `keys`; `None` when there are none.
fn verifier_for(
    config: &custos_auth::JwtConfig,
    keys: &custos_gateway::Keys,
) -> Result<Option<std::sync::Arc<custos_auth::JwtVerifier>>, AuthError> {
    match custos_auth::JwtVerifier::new(config.clone(), &keys.jwks().to_string()) {
        Ok(verifier) => Ok(Some(std::sync::Arc::new(verifier))),
        Err(AuthError::NoUsableKeys) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The `kid` of a JWS compact token's header, without verifying anything.
fn token_kid(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

/// Who a request is from: the agent, and the principal chain it acts for (human first, then
/// the actors down to this agent), when its credential says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub agent: Agent,
    pub principal: Vec<String>,
}

impl Authenticator {
    pub fn new(
        agents: Vec<Agent>,
        registry: SqlStore,
        jwt: Option<crate::jwks::Jwt>,
        required_scopes: Vec<String>,
    ) -> Self {
        Self {
            agents,
            registry: Mutex::new(registry),
            hasher: KeyHasher::new(None),
            jwt,
            required_scopes,
            spiffe_ids: Vec::new(),
            own: None,
        }
    }

    /// Also accepts tokens the gateway minted for itself.
    pub fn with_own_tokens(mut self, own: OwnTokens) -> Self {
        self.own = Some(own);
        self
    }

    /// Agents may also be named by the SPIFFE ID of their client certificate
    /// ([`custos_config::Config::spiffe_ids`]).
    pub fn with_spiffe_ids(mut self, spiffe_ids: Vec<(String, AgentId)>) -> Self {
        self.spiffe_ids = spiffe_ids;
        self
    }

    /// The identity behind the request's credential: its `Authorization` header when it has
    /// one, else `spiffe_id`, the SPIFFE ID of the connection's verified client certificate.
    /// With both, they must name the same agent: a bearer credential of one agent on another
    /// agent's connection is refused, never settled by picking one.
    pub fn authenticate(&self, headers: &HeaderMap, spiffe_id: Option<&str>) -> Result<Identity, AuthError> {
        let certificate = spiffe_id.map(|id| self.spiffe_agent(id));
        let has_bearer = headers.get(header::AUTHORIZATION).is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
        if !has_bearer {
            return match certificate {
                Some(agent) => Ok(Identity { agent: agent?, principal: Vec::new() }),
                None => Err(AuthError::MissingCredential),
            };
        }
        let identity = self.bearer(headers)?;
        match certificate {
            None => Ok(identity),
            Some(Ok(agent)) if agent.id == identity.agent.id => Ok(identity),
            Some(Ok(_)) => Err(AuthError::CredentialMismatch),
            // The certificate's own fault (unknown, invalid, revoked) is the more precise answer.
            Some(Err(e)) => Err(e),
        }
    }

    /// The agent the SPIFFE ID of a verified client certificate names.
    fn spiffe_agent(&self, spiffe_id: &str) -> Result<Agent, AuthError> {
        let canonical = SpiffeId::parse(spiffe_id)?.to_string();
        let (_, agent) = self.spiffe_ids.iter().find(|(id, _)| *id == canonical).ok_or(AuthError::UnknownSpiffeId)?;
        self.agent(&agent.0)
    }

    /// The identity behind the `Authorization` header.
    fn bearer(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let header = headers.get(header::AUTHORIZATION).map(|v| v.to_str().map_err(|_| AuthError::UnsupportedScheme));
        let header = header.transpose()?;
        match Credential::from_authorization(header)? {
            Credential::ApiKey(key) => {
                let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let record = registry
                    .find_key(key.key_id())
                    .map_err(|_| AuthError::RegistryUnavailable)?
                    .ok_or(AuthError::InvalidApiKey)?;
                let stored = KeyHash::parse(&record.hash)
                    .map_err(|_| AuthError::MalformedKeyHash { reason: "not a stored key hash" })?;
                // INVARIANT: the hash is compared before revocation is reported, so a guessed key
                // id alone learns nothing about the key's state.
                if !self.hasher.verify(&key, &stored) {
                    return Err(AuthError::InvalidApiKey);
                }
                if record.revoked_ms.is_some() {
                    return Err(AuthError::Revoked);
                }
                drop(registry);
                Ok(Identity { agent: self.agent(&record.agent.0)?, principal: Vec::new() })
            }
            Credential::Jwt(token) => match self.own.as_ref().and_then(|own| own.verifier_of(token.expose())) {
                Some(own) => self.own_token(&own, token.expose()),
                None => self.provider_token(token.expose()),
            },
        }
    }

    /// A token the gateway minted for itself, checked with `verifier` (its own keys).
    fn own_token(&self, verifier: &custos_auth::JwtVerifier, token: &str) -> Result<Identity, AuthError> {
        let verified = verifier.verify(token)?;
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A token without a `jti` could not be revoked: the gateway never mints one.
        let jti = verified.jti.as_deref().ok_or(AuthError::MissingClaim { claim: "jti".into() })?;
        if registry.is_token_revoked(jti).map_err(|_| AuthError::RegistryUnavailable)? {
            return Err(AuthError::Revoked);
        }
        drop(registry);
        // INVARIANT: minted tokens name the agent in `sub` and the chain it acts for in `act`;
        // the verifier reads `sub` as the first link of the chain, so the chain the agent acts
        // for is the rest.
        let principal = verified.principal_chain.get(1..).map(<[String]>::to_vec).unwrap_or_default();
        Ok(Identity { agent: self.agent(&verified.agent_id)?, principal })
    }

    /// A token of the identity provider (`[serve.jwt]`), when one is configured.
    fn provider_token(&self, token: &str) -> Result<Identity, AuthError> {
        let verifier = self.jwt.as_ref().ok_or(AuthError::TokensNotAccepted)?;
        let verified = verifier.verify(token)?;
        let required: Vec<&str> = self.required_scopes.iter().map(String::as_str).collect();
        verified.require_scopes(&required)?;
        Ok(Identity { agent: self.agent(&verified.agent_id)?, principal: verified.principal_chain })
    }

    /// Call before [`Authenticator::authenticate`]: a bearer token naming a key id that the
    /// fetched key set lacks first gets the set fetched again (`jwks_url`; see [`crate::jwks`]).
    pub async fn refresh_keys_for(&self, headers: &HeaderMap) {
        if let Some(jwt) = &self.jwt {
            jwt.catch_up(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())).await;
        }
    }

    /// A declared or registered agent that is not revoked.
    fn agent(&self, id: &str) -> Result<Agent, AuthError> {
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = registry.find_agent(&AgentId(id.to_owned())).map_err(|_| AuthError::RegistryUnavailable)?;
        if entry.as_ref().is_some_and(|r| r.revoked_ms.is_some()) {
            return Err(AuthError::Revoked);
        }
        self.agents
            .iter()
            .find(|a| a.id.0 == id)
            .cloned()
            .or_else(|| entry.map(|r| r.agent))
            .ok_or(AuthError::UnknownAgent)
    }
}

/// The 401 / 403 answer for `error`, with the challenge that points at the metadata.
pub fn refusal(error: &AuthError, metadata: &ProtectedResourceMetadata) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = reply::json_bytes(
        status,
        serde_json::to_vec(
            &json!({ "error": error.oauth_error().unwrap_or("unauthorized"), "error_description": error.to_string() }),
        )
        .unwrap_or_default(),
    );
    if let Some(challenge) = custos_auth::challenge_for(error, &metadata.metadata_url()) {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Records a refused request; the credential itself is never part of it. `spiffe_id`, the
/// SPIFFE ID of the connection's verified client certificate, is an identity, not a secret: it
/// is recorded (bounded and escaped) so an operator can tell which workload was refused.
pub async fn record_failure(audit: &AuditLog, error: &AuthError, server: &str, spiffe_id: Option<&str>, time_ms: i64) {
    let mut e = NewEvent::new(EventKind::AuthFailed, time_ms);
    e.detail = json!({ "server": server, "reason": error.reason(), "status": error.http_status() });
    if let (Some(id), Some(detail)) = (spiffe_id, e.detail.as_object_mut()) {
        let id: String = id.chars().take(custos_auth::spiffe::MAX_SPIFFE_ID_BYTES).collect();
        detail.insert("spiffe_id".to_owned(), json!(id.escape_debug().to_string()));
    }
    if let Err(err) = audit.append(vec![e]).await {
        tracing::error!("cannot record a refused request: {err}");
    }
}
