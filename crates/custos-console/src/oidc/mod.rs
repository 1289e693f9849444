//! The console as an OpenID Connect relying party: approvers sign in at the provider of
//! `[console.oidc]` (authorization code flow, PKCE S256, state and nonce).
//!
//! 1. [`OidcClient::discover`] at start-up: `{issuer}/.well-known/openid-configuration`, whose
//!    `issuer` must be the configured one exactly; its endpoints, then its key set.
//! 2. [`OidcClient::begin`] when a browser asks to sign in: the provider's URL to send it to,
//!    and a [`PendingSignIn`] the caller keeps on the server, keyed by its `state`.
//! 3. [`OidcClient::finish`] when the browser comes back: its `state` must be the pending one
//!    (compared in constant time) and at most [`PENDING_TTL_MS`] old; the code is exchanged at
//!    the token endpoint with the PKCE verifier (and the client secret, for a confidential
//!    client), and the ID token verified ([`OidcClient::verify_id_token`]).
//!
//! ID tokens are verified by [`custos_auth::JwtVerifier`] (the gateway's own JWT checks:
//! algorithm allow-list, key, signature, `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`), then by
//! [`id_token`] for what only ID tokens carry. A token naming a key id the set lacks makes the
//! key set be fetched again, at most once per [`KID_REFETCH_INTERVAL`]; a set older than
//! [`KEYS_MAX_AGE`] is fetched again before use, so keys the provider withdrew stop working.
//! A failed fetch keeps the keys in use.
//!
//! Files: `error.rs` ([`OidcError`]), `fetch.rs` (the bounded HTTP client and which endpoints
//! an issuer may name), `id_token.rs` (the ID token's own claims), `tests.rs`.

mod error;
mod fetch;
mod id_token;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custos_auth::jwt::MAX_JWKS_BYTES;
use custos_auth::{JwtConfig, JwtVerifier};
use hyper::Uri;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use error::OidcError;
pub use fetch::REQUEST_TIMEOUT;
pub use id_token::MAX_GROUPS;

/// A pending sign-in older than this is refused (ms).
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Signature algorithms accepted on ID tokens: public-key ones only, never `none` or `HS*`.
pub const ID_TOKEN_ALGORITHMS: [&str; 9] =
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
/// Least time between two key-set fetches caused by unknown key ids.
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// A key set older than this is fetched again before a token is verified.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest discovery document read.
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;
/// Largest token endpoint answer read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest authorization code sent on to the token endpoint.
pub const MAX_CODE_BYTES: usize = 4096;
/// Random bytes in a state, a nonce and a PKCE verifier (43 base64url characters each).
const RANDOM_BYTES: usize = 32;

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// A public client: `client_id` in the body, PKCE alone binds the code.
    None,
    /// `Authorization: Basic` with the form-encoded id and secret (the default of RFC 6749).
    Basic,
    /// `client_id` and `client_secret` in the body, for providers that list only that.
    Post,
}

/// The client secret; its `Debug` never shows it.
struct ClientSecret(String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// The console's client of one OpenID provider: cheap to clone (one shared state).
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    client_id: String,
    secret: Option<ClientSecret>,
    auth: ClientAuth,
    /// The scopes asked for, space-separated.
    scope: String,
    identity_claim: String,
    groups_claim: String,
    /// Where browsers are sent; it may carry a query of its own.
    authorization_endpoint: String,
    token_endpoint: Uri,
    jwks_uri: Uri,
    http: fetch::Http,
    verifier: JwtVerifier,
    /// When the key set was last fetched, and when a fetch for an unknown key id last started.
    /// Held across a fetch, so verifications that need one wait for the same one.
    keys: tokio::sync::Mutex<KeyFetches>,
}

struct KeyFetches {
    fetched_at: Instant,
    kid_fetch_at: Option<Instant>,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("OidcClient")
            .field("issuer", &inner.issuer)
            .field("client_id", &inner.client_id)
            .field("client_auth", &inner.auth)
            .field("scope", &inner.scope)
            .field("identity_claim", &inner.identity_claim)
            .field("groups_claim", &inner.groups_claim)
            .field("authorization_endpoint", &inner.authorization_endpoint)
            .field("token_endpoint", &inner.token_endpoint)
            .field("jwks_uri", &inner.jwks_uri)
            .field("key_ids", &inner.verifier.key_ids())
            .finish_non_exhaustive()
    }
}

/// What the server keeps between [`OidcClient::begin`] and [`OidcClient::finish`], keyed by
/// `state`. Never sent to the browser but its `state`; its `Debug` shows only its age.
#[derive(Clone)]
pub struct PendingSignIn {
    /// The `state` sent to the provider, which the browser brings back.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub(crate) nonce: String,
    /// The PKCE verifier, whose SHA-256 the provider was sent.
    pub(crate) verifier: String,
    /// The redirect URI the provider was sent; the token request must repeat it.
    pub(crate) redirect_uri: String,
    /// When `begin` made it (ms since the Unix epoch).
    pub(crate) created_ms: i64,
}

impl PendingSignIn {
    /// When it was made (ms since the Unix epoch), for the caller's own expiry of its store.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Whether `finish` would refuse it for its age at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        const CLOCK_STEP_BACK_MS: i64 = 60_000;
        let age = now_ms.saturating_sub(self.created_ms);
        // A clock that stepped back more than a minute is not trusted either.
        !(-CLOCK_STEP_BACK_MS..=PENDING_TTL_MS).contains(&age)
    }
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn").field("created_ms", &self.created_ms).finish_non_exhaustive()
    }
}

/// Who signed in, from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The provider (`iss`).
    pub issuer: String,
    /// The provider's stable id of the person (`sub`).
    pub subject: String,
    /// The identity claim's value (e.g. the email address): how the approver is named.
    pub name: String,
    /// The groups claim's values, in order, without duplicates.
    pub groups: Vec<String>,
    /// When the ID token expires (ms since the Unix epoch).
    pub expires_ms: i64,
}

impl OidcClient {
    /// Discovery: reads the client secret file (if any), fetches
    /// `{issuer}/.well-known/openid-configuration` (any trailing `/` of the issuer removed
    /// first), checks that its `issuer` is the configured one exactly, takes its authorization,
    /// token and key set endpoints, and fetches the key set.
    pub async fn discover(settings: &custos_config::OidcSettings) -> Result<OidcClient, OidcError> {
        let secret = match &settings.client_secret_file {
            None => None,
            Some(path) => Some(read_secret(path)?),
        };
        let invalid = |reason: &str| OidcError::DiscoveryInvalid { reason: reason.to_owned() };
        let endpoints = fetch::Endpoints::of_issuer(&settings.issuer)
            .ok_or_else(|| invalid("the issuer is not an https:// url (or http:// on loopback)"))?;
        let http = fetch::Http::new(endpoints, settings.ca_file.as_deref())?;

        let url = format!("{}/.well-known/openid-configuration", settings.issuer.trim_end_matches('/'));
        let url: Uri = url.parse().map_err(|_| invalid("the issuer does not make a discovery url"))?;
        let body = http.get(&url, "application/json", MAX_DISCOVERY_BYTES).await?;
        let doc = fetch::json_object(&url, &body)?;

        let found = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if found != settings.issuer {
            return Err(OidcError::DiscoveryIssuerMismatch {
                configured: error::one_line(&settings.issuer),
                found: error::one_line(found),
            });
        }
        let endpoint = |name: &str| -> Result<(String, Uri), OidcError> {
            let value = doc.get(name).and_then(Value::as_str).ok_or_else(|| invalid(&format!("no `{name}`")))?;
            match endpoints.check(value) {
                Some(uri) => Ok((value.to_owned(), uri)),
                None => Err(invalid(&format!(
                    "`{name}` `{}` is not an {} url",
                    error::one_line(value),
                    if endpoints == fetch::Endpoints::Secure { "https://" } else { "http:// loopback" }
                ))),
            }
        };
        let (authorization_endpoint, _) = endpoint("authorization_endpoint")?;
        let (_, token_endpoint) = endpoint("token_endpoint")?;
        let (_, jwks_uri) = endpoint("jwks_uri")?;
        // `None`: the document does not say.
        let listed = |name: &str, value: &str| {
            doc.get(name).and_then(Value::as_array).map(|items| items.iter().any(|v| v.as_str() == Some(value)))
        };
        if listed("response_types_supported", "code") == Some(false) {
            return Err(invalid("the provider does not offer the authorization code flow"));
        }
        // Providers that support PKCE without saying so are common; one that lists its
        // methods without S256 would ignore or refuse ours.
        if listed("code_challenge_methods_supported", "S256") == Some(false) {
            return Err(invalid("the provider does not offer pkce with s256"));
        }
        let auth = match &secret {
            None => ClientAuth::None,
            Some(_) => {
                let basic = listed("token_endpoint_auth_methods_supported", "client_secret_basic");
                let post = listed("token_endpoint_auth_methods_supported", "client_secret_post");
                match (basic, post) {
                    (Some(false), Some(true)) => ClientAuth::Post,
                    (Some(false), _) => {
                        return Err(invalid("the provider offers neither client_secret_basic nor client_secret_post"))
                    }
                    _ => ClientAuth::Basic,
                }
            }
        };

        let config = JwtConfig {
            allowed_algorithms: ID_TOKEN_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect(),
            leeway_secs: LEEWAY_SECS,
            ..JwtConfig::new(settings.issuer.clone(), settings.client_id.clone())
        };
        let verifier = JwtVerifier::without_keys(config)?;
        // The configuration puts `openid` first already; without it there is no ID token.
        let mut scopes: Vec<&str> = settings.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        let client = OidcClient {
            inner: Arc::new(Inner {
                issuer: settings.issuer.clone(),
                client_id: settings.client_id.clone(),
                secret,
                auth,
                scope: scopes.join(" "),
                identity_claim: settings.identity_claim.clone(),
                groups_claim: settings.groups_claim.clone(),
                authorization_endpoint,
                token_endpoint,
                jwks_uri,
                http,
                verifier,
                keys: tokio::sync::Mutex::new(KeyFetches { fetched_at: Instant::now(), kid_fetch_at: None }),
            }),
        };
        client.inner.fetch_keys().await?;
        Ok(client)
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The URL to send the browser to, and what to keep until it comes back to `redirect_uri`.
    pub fn begin(&self, redirect_uri: &str) -> Result<(String, PendingSignIn), OidcError> {
        if !(redirect_uri.starts_with("https://") || redirect_uri.starts_with("http://"))
            || redirect_uri.parse::<Uri>().is_err()
        {
            return Err(OidcError::InvalidRedirectUri);
        }
        let pending = PendingSignIn {
            state: random_token()?,
            nonce: random_token()?,
            verifier: random_token()?,
            redirect_uri: redirect_uri.to_owned(),
            created_ms: now_ms()?,
        };
        let inner = &self.inner;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let query = [
            ("response_type", "code"),
            ("client_id", inner.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", inner.scope.as_str()),
            ("state", pending.state.as_str()),
            ("nonce", pending.nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let query = query.iter().map(|(k, v)| format!("{k}={}", fetch::form_encode(v))).collect::<Vec<_>>().join("&");
        let joiner = if inner.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{}{joiner}{query}", inner.authorization_endpoint), pending))
    }

    /// The browser is back at `redirect_uri` with `returned_state` and `code`: checks them
    /// against `pending`, exchanges the code, verifies the ID token (its nonce included).
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        returned_state: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<SignedIn, OidcError> {
        if !bool::from(pending.state.as_bytes().ct_eq(returned_state.as_bytes())) {
            return Err(OidcError::StateMismatch);
        }
        if pending.is_expired(now_ms()?) {
            return Err(OidcError::SignInExpired);
        }
        if pending.redirect_uri != redirect_uri {
            return Err(OidcError::RedirectMismatch);
        }
        if code.is_empty() || code.len() > MAX_CODE_BYTES {
            return Err(OidcError::InvalidCode);
        }
        let id_token = self.exchange(code, redirect_uri, &pending.verifier).await?;
        self.verify_id_token(&id_token, Some(&pending.nonce)).await
    }

    /// Verifies an ID token of this provider for this client: every check of `finish`, the
    /// nonce only when one is given.
    pub async fn verify_id_token(&self, id_token: &str, nonce: Option<&str>) -> Result<SignedIn, OidcError> {
        self.inner.catch_up(id_token).await;
        let verified = self.inner.verifier.verify(id_token)?;
        let claims = id_token::verified_payload(id_token)?;
        let inner = &self.inner;
        let rules = id_token::Rules {
            issuer: &inner.issuer,
            client_id: &inner.client_id,
            identity_claim: &inner.identity_claim,
            groups_claim: &inner.groups_claim,
        };
        id_token::check(&claims, &rules, nonce, verified.agent_id, verified.expires_at)
    }

    /// The authorization code grant: the ID token of the answer.
    async fn exchange(&self, code: &str, redirect_uri: &str, verifier: &str) -> Result<String, OidcError> {
        let inner = &self.inner;
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut authorization = None;
        match (inner.auth, &inner.secret) {
            (ClientAuth::Basic, Some(secret)) => {
                authorization = Some(
                    fetch::basic_authorization(&inner.client_id, &secret.0)
                        .ok_or(OidcError::TokenResponseInvalid { reason: "the client credentials cannot be sent" })?,
                );
            }
            (ClientAuth::Post, Some(secret)) => {
                fields.push(("client_id", &inner.client_id));
                fields.push(("client_secret", &secret.0));
            }
            _ => fields.push(("client_id", &inner.client_id)),
        }
        let body = fields.iter().map(|(k, v)| format!("{k}={}", fetch::form_encode(v))).collect::<Vec<_>>().join("&");
        let form = fetch::Form { body, authorization };
        let (status, body) = inner.http.post_form(&inner.token_endpoint, form, MAX_TOKEN_RESPONSE_BYTES).await?;
        if status != hyper::StatusCode::OK {
            return Err(OidcError::TokenEndpointRefused {
                status: status.as_u16(),
                error: fetch::oauth_error_code(&body),
            });
        }
        let answer = serde_json::from_slice::<Value>(&body)
            .map_err(|_| OidcError::TokenResponseInvalid { reason: "the answer is not json" })?;
        match answer.get("id_token") {
            Some(Value::String(token)) if !token.is_empty() => Ok(token.clone()),
            _ => Err(OidcError::TokenResponseInvalid { reason: "no `id_token`" }),
        }
    }
}

impl Inner {
    /// Fetches the key set and puts it in use; on error the keys in use stay.
    async fn fetch_keys(&self) -> Result<(), OidcError> {
        let body = self.http.get(&self.jwks_uri, "application/jwk-set+json, application/json", MAX_JWKS_BYTES).await?;
        let text = std::str::from_utf8(&body).map_err(|_| OidcError::KeySetInvalid { reason: "not utf-8".into() })?;
        let skipped = self.verifier.replace_keys(text)?;
        for key in skipped {
            // Key ids of a key set are public.
            let kid = key.kid.as_deref().map(error::one_line).unwrap_or_else(|| "(none)".into());
            tracing::debug!("openid provider `{}`: key `{kid}` left out: {}", self.issuer, key.reason);
        }
        Ok(())
    }

    /// Before a token is verified: fetch the key set again when it is older than
    /// [`KEYS_MAX_AGE`], or when the token names a key id it lacks (at most once per
    /// [`KID_REFETCH_INTERVAL`]). Failures are logged; the keys in use stay.
    async fn catch_up(self: &Arc<Self>, token: &str) {
        let mut fetches = self.keys.lock().await;
        let stale = fetches.fetched_at.elapsed() >= KEYS_MAX_AGE;
        let unknown = self.verifier.names_unknown_key(token)
            && fetches.kid_fetch_at.is_none_or(|at| at.elapsed() >= KID_REFETCH_INTERVAL);
        if !(stale || unknown) {
            return;
        }
        if unknown {
            fetches.kid_fetch_at = Some(Instant::now());
        }
        // Its own task: a browser that hangs up does not cancel the fetch halfway.
        let inner = self.clone();
        match tokio::spawn(async move { inner.fetch_keys().await }).await {
            Ok(Ok(())) => fetches.fetched_at = Instant::now(),
            Ok(Err(e)) => tracing::warn!("{e}; keeping the openid provider's keys in use"),
            Err(_) => tracing::warn!("the openid provider's key set fetch stopped; keeping the keys in use"),
        }
    }
}

/// The client secret: the file's content without surrounding white space (a trailing newline
/// is not part of the secret).
fn read_secret(path: &std::path::Path) -> Result<ClientSecret, OidcError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OidcError::ClientSecretUnreadable { path: path.to_owned(), reason: e.kind().to_string() })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(OidcError::ClientSecretEmpty { path: path.to_owned() });
    }
    Ok(ClientSecret(secret.to_owned()))
}

/// 32 random bytes, base64url: a state, a nonce or a PKCE verifier (43 characters, within
/// RFC 7636's 43 to 128).
fn random_token() -> Result<String, OidcError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| OidcError::RandomUnavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> Result<i64, OidcError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| OidcError::ClockUnavailable)?;
    i64::try_from(now.as_millis()).map_err(|_| OidcError::ClockUnavailable)
}

/// The admin API's way to learn an approver: an ID token of this provider, verified as at
/// sign-in (without a nonce: it was not asked for here).
impl custos_approvals::IdentityVerifier for OidcClient {
    fn approver<'a>(&'a self, id_token: &'a str) -> custos_approvals::VerifiedApprover<'a> {
        Box::pin(async move {
            let signed = self.verify_id_token(id_token, None).await.map_err(|e| (e.reason(), e.to_string()))?;
            Ok(custos_approvals::Approver {
                name: signed.name,
                method: custos_approvals::ApproverMethod::Oidc,
                issuer: Some(signed.issuer),
                subject: Some(signed.subject),
                session: None,
                idp_groups: signed.groups,
            })
        })
    }
}
