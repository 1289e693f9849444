//! `/mcp`: one MCP endpoint federating every served server's tools, prompts and resources.
//!
//! A federated session belongs to one agent and one run, and holds one upstream (with its own
//! pipeline) per served server; the pipelines share the run's step counter. The gateway answers
//! `initialize` and `ping` itself. `tools/list` asks every upstream (each pipeline records the
//! inventory and hides what the agent may never call) and names each tool `SERVER__TOOL`, so two
//! servers cannot shadow each other's tools; `tools/call` goes to the server its prefix names,
//! with the prefix removed, so policy and the audit log see `SERVER/TOOL`. Prompts are named and
//! routed the same way; resources keep their URIs, and a read goes to the server that listed
//! the URI. Notifications from the client go to every upstream.
//!
//! Requests an upstream sends to the client while a call is open (sampling, roots, elicitation)
//! get an id of the gateway's, since two upstreams may both use id 0; the client's answer is
//! routed back to that upstream with its own id restored. An answer to any other id is refused
//! (400) and recorded; what each upstream answers passes its own pipeline, which relays no
//! answer to a request it did not forward to that upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_core::Agent;
use custos_mcp::{codes, with_id, Message, MessageKind, ToolCallParams};
use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::places::{Activity, Busy, Place};
use crate::reply;
use crate::server::{
    admit, in_flight_permit, new_run, new_session_id, read_message, unknown_session, AppState, SESSION_HEADER,
};
use crate::session::{gateway_request_id, Sent, Session};

/// Between a server's name and its tool's name in federated tool names.
pub const SEPARATOR: &str = "__";

#[derive(Debug)]
pub struct Federation {
    pub id: String,
    pub agent: Agent,
    /// One upstream per served server, in config order.
    upstreams: Vec<(String, Arc<Session>)>,
    /// Server-to-client request ids the gateway gave → (upstream index, the upstream's own id).
    server_requests: Mutex<HashMap<String, (usize, Box<RawValue>)>>,
    /// Resource URIs → the upstream that listed them, so reads go to it.
    resources: Mutex<HashMap<String, usize>>,
    /// Requests being handled on this endpoint, for the idle timeout (each upstream session
    /// also counts its own open streams).
    activity: Arc<Activity>,
    /// The session's place among `max_sessions`, given back when it closes.
    place: Mutex<Option<Place>>,
}

impl Federation {
    fn upstream(&self, server: &str) -> Option<(usize, &Arc<Session>)> {
        self.upstreams.iter().enumerate().find(|(_, (name, _))| name == server).map(|(i, (_, s))| (i, s))
    }

    pub async fn close(&self, reason: &str) {
        for (_, s) in &self.upstreams {
            s.close(reason).await;
        }
        drop(self.place.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }

    /// How long neither this endpoint nor any of the upstream sessions has been in use;
    /// `None` while one is.
    fn idle_for(&self) -> Option<Duration> {
        let mut idle = self.activity.idle_for()?;
        for (_, s) in &self.upstreams {
            idle = idle.min(s.idle_for()?);
        }
        Some(idle)
    }

    /// Gives an upstream's request to the client an id of the gateway's (answers and
    /// notifications pass unchanged).
    fn outgoing(&self, index: usize, frame: Vec<u8>) -> Vec<u8> {
        let Ok(envelope) = serde_json::from_slice::<IndexMap<String, Box<RawValue>>>(&frame) else { return frame };
        let (Some(id), true) = (envelope.get("id"), envelope.contains_key("method")) else { return frame };
        let ours = gateway_request_id();
        self.lock_requests().insert(ours.get().to_owned(), (index, id.clone()));
        with_id(&frame, &ours).unwrap_or(frame)
    }

    fn lock_resources(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, Box<RawValue>)>> {
        self.server_requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn answer(id: &RawValue, result: &Value) -> Vec<u8> {
    let result = serde_json::to_string(result).unwrap_or_else(|_| "{}".to_owned());
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get()).into_bytes()
}

fn session_header(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
    r
}

pub(crate) async fn post(
    State(app): State<Arc<AppState>>,
    peer: Option<axum::Extension<crate::tls::ClientSpiffeId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let identity = match admit(&app, "", &headers, peer.as_deref()).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let msg = match read_message(&app, &identity.agent, body).await {
        Ok(msg) => msg,
        Err(refused) => return refused,
    };
    // `_busy`: the session is in use until this handler returns.
    let (federation, _busy) = match (&msg.kind, headers.get(SESSION_HEADER)) {
        (MessageKind::Request { method, .. }, None) if method == "initialize" => {
            return initialize(&app, identity, &headers, &msg).await;
        }
        (_, None) => {
            return reply::rpc_error(
                StatusCode::BAD_REQUEST,
                msg.id(),
                codes::INVALID_REQUEST,
                "missing Mcp-Session-Id: send `initialize` first",
            )
        }
        (_, Some(id)) => match find(&app, id.to_str().unwrap_or_default(), &identity.agent).await {
            Ok(f) => f,
            Err(refused) => return refused,
        },
    };
    let permit = match in_flight_permit(&app, &identity.agent).await {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let response = match &msg.kind {
        MessageKind::Request { id, method } => match method.as_str() {
            "ping" => reply::json_bytes(StatusCode::OK, answer(id, &json!({}))),
            "tools/list" => list(&app, &federation, id, "tools/list", "tools", Naming::Prefixed).await,
            "prompts/list" => list(&app, &federation, id, "prompts/list", "prompts", Naming::Prefixed).await,
            "resources/list" => list(&app, &federation, id, "resources/list", "resources", Naming::Uri).await,
            "resources/templates/list" => {
                list(&app, &federation, id, "resources/templates/list", "resourceTemplates", Naming::AsIs).await
            }
            "tools/call" | "prompts/get" => call_by_name(&app, &federation, &headers, msg, permit).await,
            "resources/read" => read_resource(&app, &federation, &headers, msg, permit).await,
            other => reply::rpc_error(
                StatusCode::OK,
                Some(id),
                codes::METHOD_NOT_FOUND,
                &format!("`{other}` is not offered on the federated endpoint; use /mcp/{{server}}"),
            ),
        },
        MessageKind::Notification { .. } => {
            for (_, s) in &federation.upstreams {
                let _ = s.send(msg.raw.clone()).await;
            }
            reply::accepted()
        }
        MessageKind::Response { id, .. } => {
            let target = federation.lock_requests().remove(id.get());
            match target.and_then(|(i, original)| federation.upstreams.get(i).map(|(_, s)| (s.clone(), original))) {
                Some((session, original)) => {
                    if let Some(raw) = with_id(&msg.raw, &original) {
                        let _ = session.send(raw).await;
                    }
                    reply::accepted()
                }
                None => {
                    // No upstream asked this: relayed to none of them, and recorded.
                    let reason = "a response to a request no upstream sent, or one answered already";
                    let detail = json!({ "request_id": id.get() });
                    crate::server::record_refusal(&app, &federation.agent, reason, detail).await;
                    reply::rpc_error(StatusCode::BAD_REQUEST, None, codes::INVALID_REQUEST, reason)
                }
            }
        }
    };
    session_header(response, &federation.id)
}

/// The caller's federated session, in use while the guard lives; another agent's looks
/// unknown, and the attempt is recorded.
async fn find(app: &AppState, id: &str, agent: &Agent) -> Result<(Arc<Federation>, Busy), Response> {
    // Found and marked under the lock the reaper takes: never closed between the two.
    let found = lock_federated(app).get(id).map(|f| (f.clone(), f.activity.busy()));
    match found {
        Some((f, busy)) if f.agent.id == agent.id => Ok((f, busy)),
        other => Err(unknown_session(app, agent, other.as_ref().map(|(f, _)| &f.agent.id)).await),
    }
}

fn lock_federated(app: &AppState) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Federation>>> {
    app.federated.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long each federated session of `agent` has been unused (those in use are left out).
pub(crate) fn idle_for_of(app: &AppState, agent: &custos_core::AgentId) -> Vec<Duration> {
    lock_federated(app).values().filter(|f| f.agent.id == *agent).filter_map(|f| f.idle_for()).collect()
}

/// Closes the federated sessions unused for `timeout` (see [`AppState::close_idle`]).
pub(crate) async fn close_idle(app: &AppState, timeout: Duration) {
    let idle: Vec<Arc<Federation>> = {
        let mut federated = lock_federated(app);
        let ids: Vec<String> = federated
            .iter()
            .filter(|(_, f)| f.idle_for().is_some_and(|idle| idle >= timeout))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| federated.remove(id)).collect()
    };
    let closing = idle.iter().map(|f| {
        app.sessions_idle_closed.inc(&["federated"]);
        f.close(crate::server::IDLE)
    });
    futures::future::join_all(closing).await;
}

/// Starts one upstream per served server and initializes each with the client's parameters;
/// answers with the gateway's own capabilities.
async fn initialize(app: &Arc<AppState>, identity: Identity, headers: &HeaderMap, msg: &Message) -> Response {
    let place = match app.take_place(&identity.agent).await {
        Ok(place) => place,
        Err(refused) => return refused,
    };
    let Some(client_id) = msg.id().map(ToOwned::to_owned) else { return reply::accepted() };
    let id = match new_session_id() {
        Ok(id) => id,
        Err(e) => return reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::INTERNAL_ERROR, &e),
    };
    let run = match new_run(app, &identity.agent, headers, msg, &id).await {
        Ok(run) => run,
        Err(refused) => return refused,
    };
    let (steps, state) = app.live_run(&run.run.0, run.first_step_after);
    let params: Value = msg.params.as_ref().and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(json!({}));
    let requested = params.get("protocolVersion").and_then(Value::as_str).map(str::to_owned);
    let mut upstreams = Vec::new();
    let mut versions = Vec::new();
    let mut instructions = Vec::new();
    for config in app.served() {
        let this_run = crate::server::RunRef {
            run: run.run.clone(),
            parent: run.parent.clone(),
            first_step_after: run.first_step_after,
            shared_steps: Some(steps.clone()),
            state: Some(state.clone()),
        };
        let Some(upstream) = app.mcp_upstream(&config.name) else { continue };
        let session = match app
            .start_session(new_session_id().unwrap_or_default(), &config.name, upstream, identity.clone(), this_run)
            .await
        {
            Ok(s) => s,
            Err(_) => continue,
        };
        match ask(&session, "initialize", params.clone(), app.request_timeout()).await {
            Some(result) => {
                if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
                    versions.push(v.to_owned());
                }
                if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                    instructions.push(format!("{}: {text}", config.name));
                }
                upstreams.push((config.name.clone(), session));
            }
            None => {
                tracing::warn!("upstream `{}` did not initialize; it is left out of the session", config.name);
                session.close("initialize failed").await;
            }
        }
    }
    // The client's version when every upstream agreed to it, else the oldest they answered.
    let version = match &requested {
        Some(r) if versions.iter().all(|v| v == r) => r.clone(),
        _ => versions.iter().min().cloned().unwrap_or_else(|| requested.clone().unwrap_or_default()),
    };
    let federation = Arc::new(Federation {
        id: id.clone(),
        agent: identity.agent,
        upstreams,
        server_requests: Mutex::new(HashMap::new()),
        resources: Mutex::new(HashMap::new()),
        activity: Activity::new(),
        place: Mutex::new(Some(place)),
    });
    lock_federated(app).insert(id.clone(), federation);
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": true }, "prompts": {}, "resources": {} },
        "serverInfo": { "name": "custos", "version": env!("CARGO_PKG_VERSION") },
    });
    if let (false, Some(obj)) = (instructions.is_empty(), result.as_object_mut()) {
        obj.insert("instructions".into(), json!(instructions.join("\n")));
    }
    session_header(reply::json_bytes(StatusCode::OK, answer(&client_id, &result)), &id)
}

/// Sends one request of the gateway's to an upstream (through its pipeline) and returns the
/// `result` of the answer.
async fn ask(session: &Arc<Session>, method: &str, params: Value, timeout: Duration) -> Option<Value> {
    let id = gateway_request_id();
    let frame = json!({ "jsonrpc": "2.0", "id": 0, "method": method, "params": params });
    let frame = with_id(&serde_json::to_vec(&frame).ok()?, &id)?;
    let answer = session.expect(&id);
    if let Sent::Answered(_) = session.send(frame).await {
        session.forget(&id);
        return None;
    }
    let bytes = tokio::time::timeout(timeout, answer).await.ok()?.ok()?;
    let mut v: Value = serde_json::from_slice(&bytes).ok()?;
    Some(v.get_mut("result")?.take())
}

/// How a fanned-out listing names its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// `SERVER__NAME` (tools, prompts): calls are routed by the prefix.
    Prefixed,
    /// Unchanged, each `uri` remembered with its server (resources): reads are routed by URI.
    Uri,
    /// Unchanged (resource templates).
    AsIs,
}

/// Asks every upstream for `method` and merges the `key` arrays of their answers. An upstream
/// that does not offer the method (or does not answer in time) is left out.
async fn list(
    app: &AppState,
    federation: &Federation,
    id: &RawValue,
    method: &str,
    key: &str,
    naming: Naming,
) -> Response {
    let mut merged = Vec::new();
    for (index, (server, session)) in federation.upstreams.iter().enumerate() {
        let Some(mut result) = ask(session, method, json!({}), app.request_timeout()).await else {
            tracing::debug!("upstream `{server}` gave no answer to `{method}`");
            continue;
        };
        let Some(entries) = result.get_mut(key).and_then(Value::as_array_mut) else { continue };
        for mut entry in entries.drain(..) {
            let Some(obj) = entry.as_object_mut() else { continue };
            match naming {
                Naming::Prefixed => {
                    let Some(name) = obj.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
                    obj.insert("name".into(), json!(format!("{server}{SEPARATOR}{name}")));
                }
                Naming::Uri => {
                    if let Some(uri) = obj.get("uri").and_then(Value::as_str) {
                        federation.lock_resources().insert(uri.to_owned(), index);
                    }
                }
                Naming::AsIs => {}
            }
            merged.push(entry);
        }
    }
    reply::json_bytes(StatusCode::OK, answer(id, &json!({ key: merged })))
}

/// `tools/call` and `prompts/get`: to the server the name's prefix names, without the prefix.
async fn call_by_name(
    app: &AppState,
    federation: &Arc<Federation>,
    headers: &HeaderMap,
    msg: Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let Some(id) = msg.id().map(ToOwned::to_owned) else { return reply::accepted() };
    let routed = ToolCallParams::from_message(&msg).and_then(|params| {
        // An unknown prefix looks like an unknown tool (or prompt).
        let unknown = || format!("unknown `{}`", params.name);
        let (server, name) = params.name.split_once(SEPARATOR).ok_or_else(unknown)?;
        custos_core::check_tool_name(name)?;
        let (index, session) = federation.upstream(server).ok_or_else(unknown)?;
        let raw = renamed(&msg.raw, name).ok_or_else(unknown)?;
        Ok((index, session, raw))
    });
    match routed {
        Ok((index, session, raw)) => forward(app, federation, headers, id, index, session, raw, permit).await,
        Err(reason) => {
            app.gateway_metrics.protocol_errors.inc(&["client"]);
            let detail = json!({ "code": codes::INVALID_PARAMS, "method": msg.method() });
            crate::server::record_refusal(app, &federation.agent, &reason, detail).await;
            reply::rpc_error(StatusCode::OK, Some(&id), codes::INVALID_PARAMS, &reason)
        }
    }
}

/// `resources/read`: to the server that listed the URI.
async fn read_resource(
    app: &AppState,
    federation: &Arc<Federation>,
    headers: &HeaderMap,
    msg: Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let Some(id) = msg.id().map(ToOwned::to_owned) else { return reply::accepted() };
    let uri = msg
        .params
        .as_ref()
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let index = federation.lock_resources().get(&uri).copied();
    let Some((index, session)) = index.and_then(|i| federation.upstreams.get(i).map(|(_, s)| (i, s))) else {
        return reply::rpc_error(
            StatusCode::OK,
            Some(&id),
            codes::INVALID_PARAMS,
            &format!("unknown resource `{}`: list resources first", uri.escape_debug()),
        );
    };
    forward(app, federation, headers, id, index, session, msg.raw, permit).await
}

/// Sends `raw` (which carries the client's `id`) to upstream `index` and answers with its answer.
#[expect(clippy::too_many_arguments, reason = "one call site per routed method; a struct would only rename them")]
async fn forward(
    app: &AppState,
    federation: &Arc<Federation>,
    headers: &HeaderMap,
    id: Box<RawValue>,
    index: usize,
    session: &Arc<Session>,
    raw: Vec<u8>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let answer = session.expect(&id);
    let stream = crate::answer::post_messages(session, headers);
    let sent = match session.send_or_hold(raw).await {
        Ok(sent) => sent,
        Err(held) if stream.is_some() => {
            drop(stream);
            let f = federation.clone();
            let transform = move |frame| f.outgoing(index, frame);
            return crate::answer::held_stream(app, session, *held, id, answer, permit, transform).into_response();
        }
        Err(held) => session.settle_here(*held).await,
    };
    if let Sent::Answered(bytes) = sent {
        session.forget(&id);
        return reply::json_bytes(StatusCode::OK, bytes);
    }
    let f = federation.clone();
    crate::answer::await_answer(app, session, id, answer, stream, permit, move |frame| f.outgoing(index, frame)).await
}

/// The `tools/call` frame with `params.name` set to the upstream's own tool name; nothing else
/// in `params` changes.
fn renamed(frame: &[u8], tool: &str) -> Option<Vec<u8>> {
    let mut envelope: IndexMap<String, Box<RawValue>> = serde_json::from_slice(frame).ok()?;
    let mut params: IndexMap<String, Box<RawValue>> = serde_json::from_str(envelope.get("params")?.get()).ok()?;
    params.insert("name".to_owned(), serde_json::value::to_raw_value(tool).ok()?);
    envelope.insert("params".to_owned(), serde_json::value::to_raw_value(&params).ok()?);
    serde_json::to_vec(&envelope).ok()
}

/// The federated endpoint offers no GET stream (405, as Streamable HTTP allows).
pub(crate) async fn get() -> Response {
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

pub(crate) async fn delete(
    State(app): State<Arc<AppState>>,
    peer: Option<axum::Extension<crate::tls::ClientSpiffeId>>,
    headers: HeaderMap,
) -> Response {
    let identity = match admit(&app, "", &headers, peer.as_deref()).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let id = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (federation, _busy) = match find(&app, &id, &identity.agent).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    // Closed by whoever takes it out of the map (shutdown may be closing it too).
    if lock_federated(&app).remove(&federation.id).is_some() {
        federation.close("session deleted by the client").await;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_changes_only_the_tool_name() {
        let out = renamed(br#"{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"a__echo","arguments":{"name":"keep"},"_meta":{"k":1}}}"#, "echo").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"echo","arguments":{"name":"keep"},"_meta":{"k":1}}}"#
        );
    }
}
