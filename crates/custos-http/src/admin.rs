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
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
}

impl AdminState {
    pub fn new(app: Arc<AppState>, token: String) -> Self {
        Self { app, token: token.into_bytes() }
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
    Router::new()
        .route("/healthz", get(|| async { json_ok(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { reply::json_bytes(StatusCode::OK, OPENAPI.as_bytes().to_vec()) }))
        .route("/metrics", get(metrics))
        .route("/v1/agents", get(agents))
        .route("/v1/tools", get(tools))
        .route("/v1/runs", get(runs))
        .route("/v1/audit", get(audit))
        .with_state(state)
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

/// Serves the admin API until `shutdown` resolves.
pub async fn serve_admin(
    state: Arc<AdminState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
