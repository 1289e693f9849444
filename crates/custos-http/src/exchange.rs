//! RFC 8693 token exchange, and the JWKS of the gateway's signing keys.
//!
//! ```text
//! POST /oauth/token            grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! GET  /.well-known/jwks.json  the public keys of the tokens the gateway mints
//! ```
//!
//! An agent presents its own credential as the `subject_token` (an API key, a token from the
//! identity provider, or one the gateway minted for it) and names one upstream (`audience`, or
//! its URL as `resource`) and the tools it wants (`scope`). It gets a token for that upstream
//! only, limited to those tools, for at most the upstream's `ttl_secs`: and only when policy
//! allows the agent every one of those tools unconditionally. A token for an upstream lets the
//! agent call it directly, past the gateway's argument checks, so a tool that policy allows
//! only for some arguments (or only with an approval) is refused here. Every exchange, issued
//! or refused, is recorded; a token is never returned before its record is durable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use custos_config::ServerConfig;
use custos_core::{Agent, EventKind, NewEvent, ToolRef};
use custos_gateway::broker::Minting;
use custos_gateway::now_ms;
use custos_policy::{CallRequest, ToolInfo};
use serde_json::json;

use crate::auth::Identity;
use crate::reply;
use crate::server::{AppState, BodyError};
use crate::tls::ClientSpiffeId;

/// The grant type of RFC 8693.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Largest form accepted: a token and a few names.
const MAX_FORM_BYTES: usize = 32 * 1024;
/// Most tools one token may be scoped to.
const MAX_SCOPE_TOOLS: usize = 32;

/// The form fields of RFC 8693 §2.1 this endpoint reads; others are ignored, as OAuth asks.
#[derive(Debug, Default, serde::Deserialize)]
struct ExchangeForm {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    actor_token: Option<String>,
    requested_token_type: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

/// An RFC 6749 §5.2 error: the status, the `error` code and a description.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Refusal {
    fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error, description: description.into() }
    }

    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        no_store(reply::json_bytes(self.status, serde_json::to_vec(&body).unwrap_or_default()))
    }
}

/// `GET /.well-known/jwks.json`: the public keys of every token the gateway mints and that may
/// still be valid (the active key, and retired keys until their last token expires). A gateway
/// with no key yet serves an empty set (`{"keys":[]}`), so a verifier can be pointed at it
/// before the first key is made.
pub async fn jwks(State(app): State<Arc<AppState>>) -> Response {
    let set = app.broker().and_then(|b| b.keys()).map_or_else(|| json!({ "keys": [] }), |keys| keys.jwks());
    let mut response = reply::json_bytes(StatusCode::OK, serde_json::to_vec(&set).unwrap_or_default());
    // Short: a rotation must reach verifiers well within a retired key's overlap.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

/// `POST /oauth/token`: the token exchange.
pub async fn token(
    State(app): State<Arc<AppState>>,
    peer: Option<Extension<ClientSpiffeId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut refused_agent: Option<Agent> = None;
    match exchange(&app, peer.as_deref(), &headers, body, &mut refused_agent).await {
        Ok(response) => response,
        Err(refusal) => {
            record_refusal(&app, refused_agent.as_ref(), &refusal).await;
            refusal.into_response()
        }
    }
}

async fn exchange(
    app: &AppState,
    peer: Option<&ClientSpiffeId>,
    headers: &HeaderMap,
    body: Body,
    who: &mut Option<Agent>,
) -> Result<Response, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Refusal::bad("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    let bytes = crate::server::read_body(app, body, MAX_FORM_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge => Refusal::bad("invalid_request", format!("the form exceeds {MAX_FORM_BYTES} bytes")),
        BodyError::TimedOut(timeout) => Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            error: "invalid_request",
            description: format!("the form was not received within {} ms", timeout.as_millis()),
        },
    })?;
    let form: ExchangeForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| Refusal::bad("invalid_request", format!("the form cannot be read: {e}")))?;
    if form.grant_type.as_deref() != Some(TOKEN_EXCHANGE) {
        return Err(Refusal::bad("unsupported_grant_type", format!("only `{TOKEN_EXCHANGE}` is supported")));
    }
    if form.actor_token.is_some() {
        return Err(Refusal::bad(
            "invalid_request",
            "actor tokens are not accepted: the subject token names the agent",
        ));
    }
    let subject = form.subject_token.as_deref().filter(|t| !t.is_empty());
    let subject = subject.ok_or_else(|| Refusal::bad("invalid_request", "`subject_token` is required"))?;
    match form.subject_token_type.as_deref() {
        Some(ACCESS_TOKEN_TYPE | JWT_TYPE) => {}
        Some(other) => {
            return Err(Refusal::bad(
                "invalid_request",
                format!("`subject_token_type` `{}` is not supported", other.escape_debug()),
            ))
        }
        None => return Err(Refusal::bad("invalid_request", "`subject_token_type` is required")),
    }
    if let Some(t) = form.requested_token_type.as_deref().filter(|t| *t != ACCESS_TOKEN_TYPE && *t != JWT_TYPE) {
        return Err(Refusal::bad(
            "invalid_request",
            format!("`requested_token_type` `{}` cannot be issued", t.escape_debug()),
        ));
    }

    // Who: the subject token, authenticated like any request; a client credential sent beside
    // it must name the same agent.
    let identity = authenticate_subject(app, subject, headers, peer).await?;
    *who = Some(identity.agent.clone());

    // Where: one upstream the gateway mints tokens for.
    let server = target(app, &form)?;
    let Some(settings) = server.token.as_ref() else {
        return Err(Refusal::bad(
            "invalid_target",
            format!("upstream `{}` does not take tokens minted by the gateway", server.name),
        ));
    };

    // What: each tool, allowed by policy without conditions on its arguments.
    let scope = form.scope.as_deref().unwrap_or_default();
    let tools: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if tools.is_empty() {
        return Err(Refusal::bad("invalid_scope", "`scope` must name the tools the token is for"));
    }
    if tools.len() > MAX_SCOPE_TOOLS {
        return Err(Refusal::bad("invalid_scope", format!("at most {MAX_SCOPE_TOOLS} tools per token")));
    }
    let known = app.known_tools(&server.name);
    for tool in &tools {
        let tool_ref = custos_core::check_tool_name(tool)
            .and_then(|()| ToolRef::new(&server.name, *tool).map_err(|e| e.to_string()))
            .map_err(|e| Refusal::bad("invalid_scope", e))?;
        let descriptor = known.iter().find(|d| d.tool.name() == *tool);
        let class = server.classes.classify(tool, descriptor);
        let annotations = descriptor.and_then(|d| d.raw.get("annotations"));
        let decision = app.policy.decide(&CallRequest {
            agent: &identity.agent,
            tool: ToolInfo { tool: &tool_ref, class, annotations },
            arguments: &json!({}),
            run_id: "",
            step: 0,
            labels: &[],
            findings: &[],
            flows: &server.flows.flows_of(tool),
            approval_granted: false,
        });
        if !decision.is_allow() {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                error: "access_denied",
                description: format!(
                    "policy does not allow agent `{}` `{tool_ref}` for any arguments: {}",
                    identity.agent.id,
                    decision.explain()
                ),
            });
        }
    }

    let keys = app.broker().and_then(|b| b.keys()).ok_or_else(|| Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: "temporarily_unavailable",
        description: "the gateway has no signing key".into(),
    })?;
    let scope = tools.join(" ");
    let minted = keys
        .mint(
            &settings.audience,
            settings.ttl_secs,
            &Minting { agent: &identity.agent.id.0, principal: &identity.principal, run: None, scope: &scope },
        )
        .map_err(|e| Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: e.to_string(),
        })?;

    let mut e = NewEvent::new(EventKind::TokenExchanged, now_ms());
    e.agent = Some(identity.agent.id.clone());
    e.detail = json!({
        "server": server.name,
        "audience": settings.audience,
        "scope": scope,
        "jti": minted.jti,
        "kid": minted.kid,
        "expires_at": minted.expires_at,
        "principal": identity.principal,
        "credentials": [{ "name": format!("signing_key:{}", minted.kid), "fingerprint": minted.kid }],
    });
    if let Err(err) = app.audit.append(vec![e]).await {
        // Fail closed: a token nobody can account for is not handed out.
        tracing::error!("refusing a token exchange: the audit log cannot be written: {err}");
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "the audit log cannot be written".into(),
        });
    }
    let body = json!({
        "access_token": minted.token,
        "issued_token_type": JWT_TYPE,
        "token_type": "Bearer",
        "expires_in": minted.expires_at.saturating_sub(minted.issued_at),
        "scope": scope,
    });
    Ok(no_store(reply::json_bytes(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())))
}

/// The agent the subject token names. An `Authorization` header, when sent, is the client's
/// own credential and must name the same agent.
async fn authenticate_subject(
    app: &AppState,
    subject: &str,
    headers: &HeaderMap,
    peer: Option<&ClientSpiffeId>,
) -> Result<Identity, Refusal> {
    let invalid =
        |description: String| Refusal { status: StatusCode::BAD_REQUEST, error: "invalid_grant", description };
    let mut as_bearer = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {subject}"))
        .map_err(|_| invalid("the subject token is not a valid credential".into()))?;
    as_bearer.insert(header::AUTHORIZATION, value);
    app.auth.refresh_keys_for(&as_bearer).await;
    let spiffe = peer.map(|p| p.0.as_str());
    let identity = app.auth.authenticate(&as_bearer, spiffe).map_err(|e| invalid(format!("the subject token: {e}")))?;
    if headers.get(header::AUTHORIZATION).is_some() {
        app.auth.refresh_keys_for(headers).await;
        let client = app.auth.authenticate(headers, spiffe).map_err(|e| Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: e.to_string(),
        })?;
        if client.agent.id != identity.agent.id {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_client",
                description: "the client credential and the subject token name different agents".into(),
            });
        }
    }
    Ok(identity)
}

/// The upstream named by `audience` (its name or its token audience) or `resource` (its URL
/// or token audience).
fn target<'a>(app: &'a AppState, form: &ExchangeForm) -> Result<&'a ServerConfig, Refusal> {
    let wanted = match (form.audience.as_deref(), form.resource.as_deref()) {
        (Some(a), _) if !a.is_empty() => a,
        (_, Some(r)) if !r.is_empty() => r,
        _ => return Err(Refusal::bad("invalid_target", "name the upstream as `audience` or `resource`")),
    };
    app.served()
        .into_iter()
        .find(|s| {
            s.name == wanted
                || s.url.as_deref() == Some(wanted)
                || s.token.as_ref().is_some_and(|t| t.audience == wanted)
        })
        .ok_or_else(|| {
            Refusal::bad("invalid_target", format!("no upstream `{}` is served here", wanted.escape_debug()))
        })
}

async fn record_refusal(app: &AppState, agent: Option<&Agent>, refusal: &Refusal) {
    let mut e = NewEvent::new(EventKind::TokenExchangeRefused, now_ms());
    e.agent = agent.map(|a| a.id.clone());
    e.detail = json!({ "error": refusal.error, "reason": refusal.description, "status": refusal.status.as_u16() });
    if let Err(err) = app.audit.append(vec![e]).await {
        tracing::error!("cannot record a refused token exchange: {err}");
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
