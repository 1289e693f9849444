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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use custos_core::RunId;
use custos_gateway::now_ms;
use custos_mcp::{codes, Message, MessageKind, ToolCallParams};
use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::auth::Identity;
use crate::reply;
use crate::server::{timed_out, AppState, RunRef};
use crate::session::{Sent, Session};

/// Numbers the gateway's own request ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
    let session = match upstream_for(app, server, identity).await {
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
    let client_id = id.clone();
    let ours = match RawValue::from_string(format!("\"custos-{}\"", NEXT_ID.fetch_add(1, Ordering::Relaxed))) {
        Ok(id) => id,
        Err(_) => {
            return reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, Some(&client_id), codes::INTERNAL_ERROR, "id")
        }
    };
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

/// The agent's stateless upstream for `server`, started if it is not running.
async fn upstream_for(app: &Arc<AppState>, server: &str, identity: Identity) -> Result<Arc<Session>, Response> {
    let key = (identity.agent.id.0.clone(), server.to_owned());
    let existing = app.stateless.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
    if let Some(session) = existing.filter(|s| !s.is_gone()) {
        return Ok(session);
    }
    let Some(config) = app.server(server) else {
        return Err(reply::rpc_error(StatusCode::NOT_FOUND, None, codes::INVALID_REQUEST, "no such server"));
    };
    let run = RunRef {
        run: RunId(format!("stateless-{}-{server}-{}", identity.agent.id, now_ms())),
        parent: None,
        first_step_after: 0,
    };
    let id = crate::server::new_session_id()
        .map_err(|e| reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::INTERNAL_ERROR, &e))?;
    let session = app.start_session(id, server, config, identity, run).await?;
    app.stateless.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, session.clone());
    Ok(session)
}

/// The frame with its top-level `id` replaced; `None` when it is not a JSON object.
fn with_id(frame: &[u8], id: &RawValue) -> Option<Vec<u8>> {
    let mut envelope: IndexMap<String, Box<RawValue>> = serde_json::from_slice(frame).ok()?;
    envelope.insert("id".to_owned(), id.to_owned());
    serde_json::to_vec(&envelope).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_id_changes() {
        let ours = RawValue::from_string("\"custos-1\"".into()).unwrap();
        let out =
            with_id(br#"{"jsonrpc":"2.0","id":1.0,"method":"x","params":{"id":7,"a":[1,2]},"z":null}"#, &ours).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":"custos-1","method":"x","params":{"id":7,"a":[1,2]},"z":null}"#
        );
        assert!(with_id(b"[1]", &ours).is_none());
    }
}
