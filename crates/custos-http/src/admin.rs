//! The admin API of `custos serve`: on its own listener, with its own bearer token.
//!
//! ```text
//! GET /healthz        liveness (no credential)
//! GET /readyz         readiness: the audit log answers (no credential)
//! GET /openapi.json   this API's OpenAPI document (no credential)
//! GET /metrics        Prometheus text exposition
//! GET /v1/agents      agents from the config and the registry, with key counts
//! GET /v1/tools       the tool inventory with descriptor digests
//! GET /v1/runs        runs, newest first
//! GET /v1/audit       events: ?agent= &run= &tool= &decision= &kind= &since_ms= &after_seq= &limit=
//! GET /v1/approvals   approval requests, newest first: ?state= &limit=
//! GET /v1/approvals/{id}
//! POST /v1/approvals/{id}/approve   {"id_token": "...", "reason": "..."}
//! POST /v1/approvals/{id}/deny      {"id_token": "...", "reason": "..."} (reason required)
//! ```
//!
//! A decision through this API says who decides in one of two ways:
//!
//! - `"id_token"`: an ID token of the console's identity provider (`[console.oidc]`), verified
//!   as at sign-in (signature, issuer, audience, expiry); the approver is who it names, recorded
//!   with issuer and subject (`identity.method = "oidc"`). A token refused: `401
//!   invalid_id_token`, recorded as `approval.refused`.
//! - `"approver"`: a name the token holder asserts, only with `[admin] assert_approvers = true`
//!   (recorded as `identity.method = "admin-token"`); otherwise `403 approver_not_asserted`,
//!   recorded as `approval.refused`.
//!
//! ```text
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use custos_core::EventKind;
use custos_store::{AgentRegistry, EventQuery, Store};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::reply;
use crate::server::AppState;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most events one `/v1/audit` answer carries.
const MAX_EVENTS: usize = 10_000;

#[derive(Debug)]
pub struct AdminState {
    pub app: Arc<AppState>,
    /// The admin bearer token; compared in constant time, never logged.
    token: Vec<u8>,
    /// The approval queue the `/v1/approvals` routes read and decide; `None`: they answer 503.
    approvals: Option<custos_approvals::Approvals>,
    /// Other routes served on this listener (the console's, when it has no listener of its own).
    extra: Option<Router>,
    /// Verifies the `id_token` a decision may carry (the console's identity provider).
    identity: Option<Arc<dyn custos_approvals::IdentityVerifier>>,
}

impl AdminState {
    pub fn new(app: Arc<AppState>, token: String) -> Self {
        Self { app, token: token.into_bytes(), approvals: None, extra: None, identity: None }
    }

    /// Serves the approval queue too.
    pub fn with_approvals(mut self, approvals: custos_approvals::Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// Serves `routes` (paths apart from the admin API's) on the admin listener too.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.extra = Some(routes);
        self
    }

    /// Lets decisions name their approver with an ID token of the identity provider.
    pub fn with_identity(mut self, identity: Arc<dyn custos_approvals::IdentityVerifier>) -> Self {
        self.identity = Some(identity);
        self
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        !self.token.is_empty() && bool::from(presented.as_bytes().ct_eq(&self.token))
    }
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    let extra = state.extra.clone().unwrap_or_default();
    Router::new()
        .route("/healthz", get(|| async { json_ok(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { reply::json_bytes(StatusCode::OK, OPENAPI.as_bytes().to_vec()) }))
        .route("/metrics", get(metrics))
        .route("/v1/agents", get(agents))
        .route("/v1/tools", get(tools))
        .route("/v1/runs", get(runs))
        .route("/v1/audit", get(audit))
        .route("/v1/approvals", get(approvals_list))
        .route("/v1/approvals/{id}", get(approval_show))
        .route("/v1/approvals/{id}/approve", post(approval_approve))
        .route("/v1/approvals/{id}/deny", post(approval_deny))
        .with_state(state)
        .merge(extra)
}

fn json_ok(v: Value) -> Response {
    reply::json_bytes(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default())
}

fn unauthorized() -> Response {
    let mut r = reply::json_bytes(
        StatusCode::UNAUTHORIZED,
        br#"{"error":"unauthorized","error_description":"the admin api needs its bearer token"}"#.to_vec(),
    );
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"custos-admin\""));
    r
}

fn store_error(e: impl std::fmt::Display) -> Response {
    reply::json_bytes(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::to_vec(&json!({ "error": "store_unavailable", "error_description": e.to_string() }))
            .unwrap_or_default(),
    )
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    match s.app.with_store(|store| store.head()) {
        Ok(head) => json_ok(
            json!({ "ready": true, "events": head.map_or(0, |(seq, _)| seq), "sessions": s.app.session_count() }),
        ),
        Err(e) => store_error(e),
    }
}

async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    let mut r = s.app.metrics().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

async fn agents(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    let listed = s.app.with_store(|store| Ok((store.agents()?, store.agent_keys()?)));
    let (registered, keys) = match listed {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    let mut out: Vec<Value> = Vec::new();
    let configured = s.app.config.agents.iter().map(|a| (a.clone(), "config", None));
    let registry = registered
        .iter()
        .filter(|r| s.app.config.agent(&r.agent.id.0).is_none())
        .map(|r| (r.agent.clone(), "registry", r.revoked_ms));
    for (agent, source, revoked_ms) in configured.chain(registry) {
        let revoked_ms =
            revoked_ms.or_else(|| registered.iter().find(|r| r.agent.id == agent.id).and_then(|r| r.revoked_ms));
        let mine: Vec<_> = keys.iter().filter(|k| k.agent == agent.id).collect();
        out.push(json!({
            "id": agent.id, "owner": agent.owner, "purpose": agent.purpose, "groups": agent.groups,
            "source": source, "revoked_ms": revoked_ms,
            "keys": mine.iter().map(|k| json!({ "key_id": k.key_id, "created_ms": k.created_ms, "revoked_ms": k.revoked_ms })).collect::<Vec<_>>(),
        }));
    }
    json_ok(json!({ "agents": out }))
}

async fn tools(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    match s.app.with_store(|store| store.tools()) {
        Ok(tools) => json_ok(json!({ "tools": tools.iter().map(|t| json!({
            "tool": t.tool, "digest": t.digest, "first_seen_ms": t.first_seen_ms, "last_seen_ms": t.last_seen_ms,
            "descriptor": t.descriptor,
        })).collect::<Vec<_>>() })),
        Err(e) => store_error(e),
    }
}

async fn runs(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    let q = EventQuery { kind: Some(EventKind::RunStarted), ..EventQuery::default() };
    match s.app.with_store(|store| store.query(&q)) {
        Ok(events) => json_ok(json!({ "runs": events.iter().rev().map(|e| json!({
            "run": e.event.run, "agent": e.event.agent, "started_ms": e.event.time_ms,
            "parent_run": e.event.detail.get("parent_run"), "server": e.event.detail.get("server"),
            "principal": e.event.detail.get("principal"),
        })).collect::<Vec<_>>() })),
        Err(e) => store_error(e),
    }
}

async fn audit(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    let bad = |m: String| {
        reply::json_bytes(
            StatusCode::BAD_REQUEST,
            serde_json::to_vec(&json!({ "error": "invalid_request", "error_description": m })).unwrap_or_default(),
        )
    };
    let number = |key: &str| -> Result<Option<i64>, String> {
        params.get(key).map(|v| v.parse::<i64>().map_err(|_| format!("`{key}` must be a number"))).transpose()
    };
    let kind = match params.get("kind") {
        Some(k) => match EventKind::parse(k) {
            Some(k) => Some(k),
            None => return bad(format!("`{}` is not an event kind", k.escape_debug())),
        },
        None => None,
    };
    let (since_ms, after_seq, limit) = match (number("since_ms"), number("after_seq"), number("limit")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => return bad(m),
    };
    let limit = limit.map_or(1000, |l| usize::try_from(l).unwrap_or(0)).min(MAX_EVENTS);
    let q = EventQuery {
        agent: params.get("agent").cloned(),
        run: params.get("run").cloned(),
        tool: params.get("tool").cloned(),
        decision: params.get("decision").cloned(),
        kind,
        since_ms,
        after_seq: after_seq.and_then(|v| u64::try_from(v).ok()),
        limit: Some(limit),
    };
    match s.app.with_store(|store| store.query(&q)) {
        Ok(events) => json_ok(json!({ "events": events.iter().map(|e| {
            let mut v = serde_json::to_value(&e.event).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("seq".into(), e.seq.into());
                o.insert("hash".into(), e.hash.to_hex().into());
            }
            v
        }).collect::<Vec<_>>() })),
        Err(e) => store_error(e),
    }
}

/// A JSON error body with `status`.
fn error(status: StatusCode, code: &str, description: impl std::fmt::Display) -> Response {
    reply::json_bytes(
        status,
        serde_json::to_vec(&json!({ "error": code, "error_description": description.to_string() })).unwrap_or_default(),
    )
}

/// An approval error as the status that names its cause.
fn approval_error(e: &custos_approvals::ApprovalError) -> Response {
    use custos_approvals::ApprovalError as E;
    let (status, code) = match e {
        E::Unknown { .. } => (StatusCode::NOT_FOUND, "not_found"),
        E::NotInGroup { .. } | E::SelfApproval { .. } | E::PrincipalApproval { .. } => {
            (StatusCode::FORBIDDEN, "forbidden")
        }
        E::AlreadyDecided { .. } | E::Expired { .. } | E::Replayed { .. } | E::NotApproved { .. } => {
            (StatusCode::CONFLICT, "conflict")
        }
        E::ReasonRequired | E::InvalidApprover { .. } | E::Mismatch { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "approvals_unavailable"),
    };
    error(status, code, e)
}

/// Why a `/v1/approvals` request gets no queue.
enum NoQueue {
    Unauthorized,
    Disabled,
}

impl NoQueue {
    fn response(self) -> Response {
        match self {
            Self::Unauthorized => unauthorized(),
            Self::Disabled => {
                error(StatusCode::SERVICE_UNAVAILABLE, "approvals_unavailable", "approvals are not enabled")
            }
        }
    }
}

/// The approval queue, for a caller with the admin token.
fn queue(s: &AdminState, headers: &HeaderMap) -> Result<custos_approvals::Approvals, NoQueue> {
    if !s.authorized(headers) {
        return Err(NoQueue::Unauthorized);
    }
    s.approvals.clone().ok_or(NoQueue::Disabled)
}

async fn approvals_list(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let queue = match queue(&s, &headers) {
        Ok(q) => q,
        Err(no) => return no.response(),
    };
    let status = match params.get("state").map(String::as_str) {
        None | Some("all") => None,
        Some(state) => match custos_approvals::ApprovalStatus::parse(state) {
            Some(status) => Some(status),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!(
                        "`{}` is not a state: expected pending, approved, denied, used, expired or all",
                        state.escape_debug()
                    ),
                )
            }
        },
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) => l.min(MAX_EVENTS),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "invalid_request", "`limit` must be a number"),
    };
    match queue.list(custos_approvals::ApprovalFilter { status, limit: Some(limit) }) {
        Ok(list) => json_ok(json!({ "approvals": list.iter().map(|r| r.to_json()).collect::<Vec<_>>() })),
        Err(e) => approval_error(&e),
    }
}

async fn approval_show(State(s): State<Arc<AdminState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let queue = match queue(&s, &headers) {
        Ok(q) => q,
        Err(no) => return no.response(),
    };
    match queue.get(&id) {
        Ok(Some(r)) => json_ok(r.to_json()),
        Ok(None) => approval_error(&custos_approvals::ApprovalError::Unknown { id }),
        Err(e) => approval_error(&e),
    }
}

async fn approval_approve(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    approval_decide(&s, &headers, &id, custos_approvals::Verdict::Approve, &body).await
}

async fn approval_deny(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    approval_decide(&s, &headers, &id, custos_approvals::Verdict::Deny, &body).await
}

/// `{"approver": "...", "reason": "..."}`: the approver the token holder decides as.
async fn approval_decide(
    s: &AdminState,
    headers: &HeaderMap,
    id: &str,
    verdict: custos_approvals::Verdict,
    body: &[u8],
) -> Response {
    let queue = match queue(s, headers) {
        Ok(q) => q,
        Err(no) => return no.response(),
    };
    let bad = |m: &str| error(StatusCode::BAD_REQUEST, "invalid_request", m);
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return bad("the body must be a json object: {\"id_token\": \"...\", \"reason\": \"...\"}");
    };
    if let Some(key) = body.keys().find(|k| !matches!(k.as_str(), "approver" | "reason" | "id_token")) {
        return bad(&format!(
            "unknown field `{}`: expected `id_token` (or `approver`) and `reason`",
            key.escape_debug()
        ));
    }
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.as_str()),
        Some(_) => return bad("`reason` must be a string"),
    };
    let approver = match (body.get("id_token"), body.get("approver")) {
        (Some(_), Some(_)) => return bad("give `id_token` or `approver`, not both"),
        (Some(Value::String(token)), None) => {
            let Some(identity) = &s.identity else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "`id_token` needs an identity provider: configure [console.oidc]",
                );
            };
            match identity.approver(token).await {
                Ok(approver) => approver,
                Err((code, message)) => {
                    let unknown = custos_approvals::Approver::asserted(
                        "(unverified id token)",
                        custos_approvals::ApproverMethod::Oidc,
                    );
                    if let Err(e) = queue.refuse(id, &unknown, &format!("id token refused: {code}")).await {
                        return approval_error(&e);
                    }
                    let mut r = error(StatusCode::UNAUTHORIZED, "invalid_id_token", message);
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"custos-admin\", error=\"invalid_token\""),
                    );
                    return r;
                }
            }
        }
        (Some(_), None) => return bad("`id_token` must be a string"),
        (None, Some(Value::String(name))) => {
            let approver =
                custos_approvals::Approver::asserted(name.as_str(), custos_approvals::ApproverMethod::AdminToken);
            if !s.app.config.admin.as_ref().is_some_and(|a| a.assert_approvers) {
                let why = "the admin token may not name an approver ([admin] assert_approvers is off)";
                if let Err(e) = queue.refuse(id, &approver, why).await {
                    return approval_error(&e);
                }
                return error(
                    StatusCode::FORBIDDEN,
                    "approver_not_asserted",
                    "the admin token may not name an approver: send the approver's `id_token` from the identity \
                     provider, decide in the console, or set [admin] assert_approvers = true",
                );
            }
            approver
        }
        (None, Some(_)) => return bad("`approver` must be a string"),
        (None, None) => return bad("`id_token` is required: who decides (or `approver`, with assert_approvers)"),
    };
    match queue.decide(id, &approver, verdict, reason).await {
        Ok(r) => json_ok(r.to_json()),
        Err(e) => approval_error(&e),
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, through the accept loop of `custos
/// serve` with the `[serve]` connection limits (`listener` in the metrics: `label`), over TLS
/// with `tls`: the console on its own listener.
pub async fn serve_routes(
    app: Arc<AppState>,
    routes: Router,
    listener: tokio::net::TcpListener,
    label: &'static str,
    tls: Option<custos_tls::server::Acceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = crate::listen::ConnectionMetrics::register(app.metrics(), label);
    let endpoint = crate::listen::Endpoint::new(routes, &app.config.serve, metrics);
    match tls {
        Some(acceptor) => {
            let transport = crate::tls::Tls::new(acceptor, app.metrics());
            crate::listen::serve_connections(endpoint, listener, transport, shutdown, async {}).await
        }
        None => crate::listen::serve_connections(endpoint, listener, crate::listen::Plain, shutdown, async {}).await,
    }
}

/// Serves the admin API until `shutdown` resolves, through the accept loop of `custos serve`
/// with its own connection cap (the `[serve]` limits, `listener="admin"` in the metrics).
pub async fn serve_admin(
    state: Arc<AdminState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = crate::listen::ConnectionMetrics::register(state.app.metrics(), "admin");
    let endpoint = crate::listen::Endpoint::new(router(state.clone()), &state.app.config.serve, metrics);
    crate::listen::serve_connections(endpoint, listener, crate::listen::Plain, shutdown, async {}).await
}
