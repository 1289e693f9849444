//! Requests of the stateless revision (2026-07-28) over HTTP.
//!
//! They carry no session: version and capabilities travel in each request's `_meta`, and the
//! `Mcp-Method` / `Mcp-Name` headers, when sent, must agree with the body. Each agent gets one
//! upstream per server for its stateless requests, with its own pipeline and run
//! (`stateless-{agent}-{server}-{start}`); it is started on first use and again after it dies.
//!
//! Independent stateless clients of one agent may reuse JSON-RPC ids (`1` is popular), so each
//! request travels upstream under an id of the gateway's, and the answer gets the client's id
//! back. Only the envelope's `id` is rewritten; the rest of the frame is the client's bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use custos_core::RunId;
use custos_gateway::now_ms;
use custos_mcp::{codes, with_id, with_subscription_id, Message, MessageKind, ToolCallParams};
use futures::StreamExt;
use serde_json::value::RawValue;

use crate::answer::timed_out;
use crate::auth::Identity;
use crate::places::Busy;
use crate::reply;
use crate::restart;
use crate::server::{AppState, RunRef};
use crate::session::{gateway_request_id, Sent, Session};

pub(crate) async fn handle(
    app: &Arc<AppState>,
    server: &str,
    identity: Identity,
    headers: &HeaderMap,
    msg: Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    if let Err(reason) = check_headers(headers, &msg) {
        return reply::rpc_error(StatusCode::BAD_REQUEST, msg.id(), codes::INVALID_REQUEST, &reason);
    }
    // `_busy`: the upstream is in use until this handler returns; a subscription holds it on.
    let (session, _busy) = match upstream_for(app, server, identity).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let MessageKind::Request { id, .. } = &msg.kind else {
        return match session.send(msg.raw).await {
            Sent::Forwarded => reply::accepted(),
            Sent::Answered(bytes) if bytes.is_empty() => reply::accepted(),
            Sent::Answered(bytes) => reply::json_bytes(StatusCode::BAD_REQUEST, bytes),
        };
    };
    if msg.method() == Some("subscriptions/listen") {
        return listen(app, &session, id.clone(), &msg.raw, permit).await;
    }
    let client_id = id.clone();
    let ours = gateway_request_id();
    let Some(raw) = with_id(&msg.raw, &ours) else {
        return reply::rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&client_id),
            codes::INVALID_REQUEST,
            "not a json object",
        );
    };
    let answer = session.expect(&ours);
    let bytes = match session.send(raw).await {
        Sent::Answered(bytes) => {
            session.forget(&ours);
            bytes
        }
        Sent::Forwarded => {
            let timeout = Duration::from_millis(app.config.serve.request_timeout_ms);
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(_)) => {
                    custos_mcp::error_response(Some(&ours), codes::UPSTREAM_UNAVAILABLE, "upstream gone", None)
                }
                Err(_) => {
                    session.forget(&ours);
                    drop(permit);
                    return timed_out(&client_id, timeout);
                }
            }
        }
    };
    drop(permit);
    let restored = with_id(&bytes, &client_id).unwrap_or(bytes);
    reply::json_bytes(StatusCode::OK, restored)
}

/// `subscriptions/listen`: the request goes upstream under an id of the gateway's, and its
/// stream comes back as SSE once the upstream acknowledges it — the acknowledgment first, then
/// each notification the upstream stamps with that id, until the upstream's final answer (a
/// graceful end) or the client leaves (the upstream is then sent `notifications/cancelled`).
/// Every message gets the client's id back as its subscription id. An upstream that refuses
/// (e.g. does not serve subscriptions) is answered as JSON, like any request.
async fn listen(
    app: &Arc<AppState>,
    session: &Arc<Session>,
    client_id: Box<RawValue>,
    raw: &[u8],
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let limit = app.config.serve.max_subscriptions_per_agent;
    if session.subscription_count() >= limit {
        crate::server::record_refusal(
            app,
            &session.agent,
            "too many subscriptions",
            serde_json::json!({ "limit": limit, "server": session.server }),
        )
        .await;
        return reply::rpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&client_id),
            codes::INVALID_REQUEST,
            &format!("too many open subscriptions on `{}` (limit {limit}); close one first", session.server),
        );
    }
    let ours = gateway_request_id();
    let Some(raw) = with_id(raw, &ours) else {
        return reply::rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&client_id),
            codes::INVALID_REQUEST,
            "not a json object",
        );
    };
    let (subscription, mut messages) = session.open_subscription(&ours);
    let mut answer = session.expect(&ours);
    if let Sent::Answered(bytes) = session.send(raw).await {
        session.forget(&ours);
        subscription.ended();
        return reply::json_bytes(StatusCode::OK, for_client(bytes, &client_id));
    }
    let timeout = app.request_timeout();
    let first = tokio::select! {
        biased;
        answer = &mut answer => Err(answer.unwrap_or_else(|_| {
            custos_mcp::error_response(Some(&ours), codes::UPSTREAM_UNAVAILABLE, "upstream gone", None)
        })),
        Some(ack) = messages.recv() => Ok(ack),
        () = tokio::time::sleep(timeout) => {
            session.forget(&ours);
            drop(subscription);
            return timed_out(&client_id, timeout);
        }
    };
    // Past the acknowledgment the stream is not a request in flight: it is counted apart.
    drop(permit);
    let ack = match first {
        Ok(ack) => ack,
        Err(answer) => {
            subscription.ended();
            return reply::json_bytes(StatusCode::OK, for_client(answer, &client_id));
        }
    };
    let first = crate::answer::event(for_client(ack, &client_id));
    let client_id: Arc<RawValue> = Arc::from(client_id);
    let rest = futures::stream::unfold(Some((subscription, messages, answer, client_id)), |state| async move {
        let (subscription, mut messages, mut answer, client_id) = state?;
        tokio::select! {
            biased;
            result = &mut answer => {
                subscription.ended();
                // Gone without an answer (the session closed): the stream just ends.
                result.ok().map(|bytes| (crate::answer::event(for_client(bytes, &client_id)), None))
            }
            // `None`: dropped for not being read, or the session closed.
            message = messages.recv() => message.map(|bytes| {
                let event = crate::answer::event(for_client(bytes, &client_id));
                (event, Some((subscription, messages, answer, client_id)))
            }),
        }
    });
    let events = futures::stream::once(std::future::ready(first)).chain(rest).map(Ok::<_, std::convert::Infallible>);
    axum::response::sse::Sse::new(events).keep_alive(axum::response::sse::KeepAlive::default()).into_response()
}

/// A message of a subscription's stream, with the client's id where the upstream has ours.
fn for_client(bytes: Vec<u8>, client_id: &RawValue) -> Vec<u8> {
    with_subscription_id(&bytes, client_id).unwrap_or(bytes)
}

/// `Mcp-Method` must name the body's method, and `Mcp-Name` the tool of a `tools/call`.
fn check_headers(headers: &HeaderMap, msg: &Message) -> Result<(), String> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
    if let Some(method) = header("mcp-method") {
        if Some(method.as_str()) != msg.method() {
            return Err(format!("`Mcp-Method: {}` does not match the body's method", method.escape_debug()));
        }
    }
    if let (Some(name), Some("tools/call")) = (header("mcp-name"), msg.method()) {
        let body_name = ToolCallParams::from_message(msg).map(|p| p.name).unwrap_or_default();
        if name != body_name {
            return Err(format!("`Mcp-Name: {}` does not match the tool the body calls", name.escape_debug()));
        }
    }
    Ok(())
}

/// One agent's stateless upstream for one server, and how often it had to be started again.
#[derive(Debug)]
pub(crate) struct StatelessUpstream {
    session: Arc<Session>,
    started: Instant,
    /// Consecutive restarts of upstreams that died young; sets the backoff.
    restarts: u32,
}

/// The agent's stateless upstream for `server`, in use while the guard lives: the running one,
/// or a new one when it died or was closed as idle, unless it died young and the backoff has
/// not passed (then 503 with `Retry-After`).
async fn upstream_for(app: &Arc<AppState>, server: &str, identity: Identity) -> Result<(Arc<Session>, Busy), Response> {
    let key = (identity.agent.id.0.clone(), server.to_owned());
    // One start at a time: two first requests must not start two upstreams. Marked in use
    // under this lock, which the reaper takes too.
    let mut upstreams = app.stateless.lock().await;
    let restarts = match upstreams.get(&key) {
        Some(current) if !current.session.is_gone() => {
            return Ok((current.session.clone(), current.session.busy()));
        }
        Some(dead) => {
            let restarts = if dead.started.elapsed() >= restart::HEALTHY_AFTER { 0 } else { dead.restarts + 1 };
            let wait = restart::backoff(restarts);
            if dead.started.elapsed() < wait {
                let retry = (wait - dead.started.elapsed()).as_secs().max(1);
                let mut r = reply::rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    codes::UPSTREAM_UNAVAILABLE,
                    &format!("upstream `{server}` keeps exiting; retry in {retry} s"),
                );
                if let Ok(v) = axum::http::HeaderValue::from_str(&retry.to_string()) {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                return Err(r);
            }
            dead.session.close("upstream exited").await;
            restarts
        }
        None => 0,
    };
    let Some(upstream) = app.mcp_upstream(server) else {
        return Err(reply::rpc_error(StatusCode::NOT_FOUND, None, codes::INVALID_REQUEST, "no such server"));
    };
    let run = RunRef {
        run: RunId(format!("stateless-{}-{server}-{}", identity.agent.id, now_ms())),
        parent: None,
        first_step_after: 0,
        shared_steps: None,
        state: None,
    };
    let id = crate::server::new_session_id()
        .map_err(|e| reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::INTERNAL_ERROR, &e))?;
    let session = app.start_session(id, server, upstream, identity, run).await?;
    let busy = session.busy();
    upstreams.insert(key, StatelessUpstream { session: session.clone(), started: Instant::now(), restarts });
    Ok((session, busy))
}

/// Stops the stateless upstreams unused for `timeout` (see [`AppState::close_idle`]): an
/// agent's next stateless request starts a new one, so nothing is lost but the process. A dead
/// one is kept while its backoff runs, so its restarts stay counted.
pub(crate) async fn close_idle(app: &AppState, timeout: Duration) {
    let idle: Vec<StatelessUpstream> = {
        let mut upstreams = app.stateless.lock().await;
        let keys: Vec<(String, String)> = upstreams
            .iter()
            .filter(|(_, u)| !u.session.is_gone() && u.session.idle_past(timeout))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|key| upstreams.remove(key)).collect()
    };
    let closing = idle.iter().map(|u| {
        app.sessions_idle_closed.inc(&["stateless"]);
        u.session.close(crate::server::IDLE)
    });
    futures::future::join_all(closing).await;
}

/// Closes every stateless upstream (at shutdown).
pub(crate) async fn close_all(app: &AppState, reason: &str) {
    let upstreams: Vec<StatelessUpstream> = app.stateless.lock().await.drain().map(|(_, u)| u).collect();
    for u in upstreams {
        u.session.close(reason).await;
    }
}
