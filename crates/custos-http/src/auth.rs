//! Who is calling: every request is authenticated as a configured or registered agent.
//!
//! API keys (`Authorization: Bearer cst_…`) are looked up by their public id in the registry
//! and checked against the stored hash in constant time. Bearer tokens (JWTs) are verified
//! against the configured identity provider's JWKS (`[serve.jwt]`); without one they are
//! refused. Either way the agent must be declared or registered and not revoked. Failures are
//! recorded as `auth.failed` events, without the credential.

use std::sync::Mutex;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use custos_auth::{AuthError, Credential, JwtVerifier, KeyHash, KeyHasher, ProtectedResourceMetadata};
use custos_core::{Agent, EventKind, NewEvent};
use custos_store::{AgentRegistry, AuditLog, SqliteStore};
use serde_json::json;

use crate::reply;

/// Checks credentials against the config's agents and the registry.
#[derive(Debug)]
pub struct Authenticator {
    agents: Vec<Agent>,
    /// A read-only connection: registry changes made by `custos agents` (another process) are
    /// seen on the next request, which is what makes revocation immediate.
    registry: Mutex<SqliteStore>,
    hasher: KeyHasher,
    /// Verifies bearer tokens, when an identity provider is configured.
    jwt: Option<JwtVerifier>,
    /// Scopes every token must carry.
    required_scopes: Vec<String>,
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
        registry: SqliteStore,
        jwt: Option<JwtVerifier>,
        required_scopes: Vec<String>,
    ) -> Self {
        Self { agents, registry: Mutex::new(registry), hasher: KeyHasher::new(None), jwt, required_scopes }
    }

    /// The identity behind the request's credential.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
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
            Credential::Jwt(token) => {
                let verifier = self.jwt.as_ref().ok_or(AuthError::TokensNotAccepted)?;
                let verified = verifier.verify(token.expose())?;
                let required: Vec<&str> = self.required_scopes.iter().map(String::as_str).collect();
                verified.require_scopes(&required)?;
                Ok(Identity { agent: self.agent(&verified.agent_id)?, principal: verified.principal_chain })
            }
        }
    }

    /// A declared or registered agent that is not revoked.
    fn agent(&self, id: &str) -> Result<Agent, AuthError> {
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let registered = registry.agents().map_err(|_| AuthError::RegistryUnavailable)?;
        let entry = registered.into_iter().find(|r| r.agent.id.0 == id);
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

/// Records a refused request; the credential itself is never part of it.
pub async fn record_failure(audit: &AuditLog, error: &AuthError, server: &str, time_ms: i64) {
    let mut e = NewEvent::new(EventKind::AuthFailed, time_ms);
    e.detail = json!({ "server": server, "reason": error.reason(), "status": error.http_status() });
    if let Err(err) = audit.append(vec![e]).await {
        tracing::error!("cannot record a refused request: {err}");
    }
}
