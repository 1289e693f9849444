//! The reverse proxy for plain HTTP APIs (`[[apis]]`): `/api/{name}/{path}`, any method.
//!
//! A thin front-end over the same pipeline as MCP: it turns a request into a call, asks
//! [`Gateway::admit`], and turns the admission back into HTTP. Each request is checked in this
//! order: the API exists (`404`), the credential (`401`, as for MCP), the agent's concurrency
//! (`429`), the route (an operation of the API: `404`, `405`, or `400` for a path it refuses),
//! the body (`413` past `max_body_bytes`, `400` when an operation's JSON body does not parse or
//! a parameter does not have its declared type). A JSON body is read whole (policy reads it);
//! any other is streamed on to the API once the call is allowed, within the same limit. Each
//! refusal past the credential is recorded. Then the pipeline: detection, the Cedar decision (`403` with the deciding policies), the
//! approval hold (the request waits up to `[approvals] timeout_ms`, then `202` with the
//! approval id and `Retry-After`; the identical request made again once approved goes through
//! once), brokered credentials, the audit write before anything is sent, the answer through the
//! leak guard and result inspection, and the audit of the outcome before the agent sees it.
//!
//! What policy sees as the call's arguments: each path parameter, each query parameter the
//! operation declares (typed by its schema: integers, numbers and booleans as such), the
//! request headers the API's `headers` names, and the JSON body as `body`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use custos_config::{ApiConfig, OutputAction, ToolClasses};
use custos_core::{RunId, ToolClass, ToolDescriptor, ToolRef};
use custos_gateway::api::{ApiRequest, ApiTools, ApiUpstream};
use custos_gateway::pending::CallInFlight;
use custos_gateway::{Admission, CallInput, Ended, Ending, Gateway, GatewaySpec, Outcome};
use custos_mcp::codes;
use custos_openapi::{ApiSpec, Location, Operation, Router};
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::server::{AppState, BodyError};
use crate::tls::ClientSpiffeId;

/// Pipelines kept per API, one per (agent, run); past it they are dropped and made again
/// (a run's steps go on from the log).
const MAX_PIPELINES: usize = 10_000;
/// The request header that names the run a request belongs to.
const RUN_HEADER: &str = "custos-run-id";
/// How long a client told to come back (`202`) is asked to wait.
const RETRY_AFTER_SECS: u64 = 5;
/// Request headers passed on to the API besides those the API's `headers` names: what
/// describes the body and what the client accepts. Never the agent's credential, cookies,
/// hop-by-hop headers or Custos's own.
const PASSED_ON: &[&str] =
    &["content-type", "accept", "accept-language", "content-language", "if-match", "if-none-match"];

/// One API as `custos serve` proxies it.
#[derive(Debug)]
pub struct Api {
    config: ApiConfig,
    spec: ApiSpec,
    router: Router,
    classes: ToolClasses,
    descriptors: Vec<ToolDescriptor>,
    upstream: Arc<ApiUpstream>,
    /// Its operations as MCP tools, when `mcp = true`.
    mcp: Option<Arc<ApiTools>>,
    /// By (agent, run).
    pipelines: Mutex<HashMap<(String, String), Arc<Gateway>>>,
    /// The default run of each agent's requests that name none, stamped with this start.
    started_ms: i64,
}

impl Api {
    /// Reads `config`'s operations (its OpenAPI document, read from its file or fetched from
    /// its URL, or those declared) and readies its upstream, whose secrets `broker` holds.
    /// Answers are awaited `timeout`.
    pub async fn load(
        config: &ApiConfig,
        broker: Arc<custos_gateway::Broker>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let spec = match &config.operations {
            custos_config::ApiOperations::OpenApi { source, .. }
                if source.starts_with("https://") || source.starts_with("http://") =>
            {
                let max = usize::try_from(custos_openapi::MAX_DOCUMENT_BYTES).unwrap_or(usize::MAX);
                let text = custos_gateway::api::fetch_document(source, timeout, max)
                    .await
                    .map_err(|e| format!("cannot read the OpenAPI document at `{source}`: {e}"))?;
                custos_openapi::parse(&text, source).map_err(|e| e.to_string())?
            }
            operations => operations.load().map_err(|e| e.to_string())?,
        };
        let classes = config.classes(&spec).map_err(|e| e.to_string())?;
        let router = Router::new(&spec.operations).map_err(|e| e.to_string())?;
        let listed: Vec<Value> =
            spec.operations.iter().zip(&classes).map(|(op, class)| op.descriptor(*class)).collect();
        let descriptors =
            listed.iter().filter_map(|raw| ToolDescriptor::from_listing(&config.name, raw.clone())).collect();
        let entries: BTreeMap<String, ToolClass> =
            spec.operations.iter().zip(&classes).map(|(op, class)| (op.tool_name.clone(), *class)).collect();
        let max = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        let upstream = Arc::new(ApiUpstream::new(
            &config.name,
            &config.base_url,
            &custos_config::UpstreamTls::default(),
            broker,
            timeout,
            max,
        )?);
        let mcp = config.mcp.then(|| {
            let tools = spec.operations.iter().cloned().zip(listed).collect();
            Arc::new(ApiTools { upstream: upstream.clone(), tools })
        });
        Ok(Self {
            config: config.clone(),
            spec,
            router,
            classes: ToolClasses::new(false, entries),
            descriptors,
            upstream,
            mcp,
            pipelines: Mutex::new(HashMap::new()),
            started_ms: custos_gateway::now_ms(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its operations as tool descriptors (what the inventory and the MCP tools show).
    pub fn descriptors(&self) -> &[ToolDescriptor] {
        &self.descriptors
    }

    /// The class of each operation's tool.
    pub(crate) fn classes(&self) -> &ToolClasses {
        &self.classes
    }

    /// Its operations as MCP tools, when the config says so (`mcp = true`).
    pub(crate) fn mcp_tools(&self) -> Option<Arc<ApiTools>> {
        self.mcp.clone()
    }

    fn max_body(&self) -> usize {
        usize::try_from(self.config.max_body_bytes).unwrap_or(usize::MAX)
    }
}

/// `ANY /api/{name}` and `ANY /api/{name}/{*path}`.
pub(crate) async fn proxy(
    State(app): State<Arc<AppState>>,
    Path(params): Path<HashMap<String, String>>,
    peer: Option<Extension<ClientSpiffeId>>,
    request: axum::extract::Request,
) -> Response {
    let name = params.get("name").cloned().unwrap_or_default();
    let Some(api) = app.api(&name) else {
        return error(StatusCode::NOT_FOUND, &format!("no API `{}` here", name.escape_debug()), None);
    };
    let (parts, body) = request.into_parts();
    let identity = match crate::server::admit(&app, &name, &parts.headers, peer.as_ref().map(|p| &p.0)).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let permit = match crate::server::in_flight_permit(&app, &identity.agent).await {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let prefix = format!("/api/{name}");
    let method = parts.method.as_str();
    // The API's name as written in the path: an encoded one (`bil%6cing`) would leave a path
    // that is not the one after the name, so it is refused rather than guessed at.
    let rest = parts.uri.path().strip_prefix(prefix.as_str()).filter(|r| r.is_empty() || r.starts_with('/'));
    let Some(rest) = rest else {
        let detail = json!({ "api": name, "method": method, "reason": "the API's name is encoded in the path" });
        crate::server::record_refusal(&app, &identity.agent, "no such operation", detail).await;
        return error(StatusCode::BAD_REQUEST, "write the API's name in the path as it is, not percent-encoded", None);
    };
    let raw_path = if rest.is_empty() { "/" } else { rest };
    let found = match api.router.find(method, raw_path) {
        Ok(found) => found,
        Err(e) => {
            let path: String = raw_path.chars().take(256).collect();
            let detail = json!({ "api": name, "method": method, "path": path, "reason": e.to_string() });
            crate::server::record_refusal(&app, &identity.agent, "no such operation", detail).await;
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = error(status, &format!("API `{name}`: {e}"), None);
            if let custos_openapi::RouteError::MethodNotAllowed { allowed, .. } = &e {
                let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                if let Ok(value) = HeaderValue::try_from(allow.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
            }
            return response;
        }
    };
    let Some(op) = api.spec.operations.get(found.operation) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the matched operation is missing", None);
    };
    // A JSON body is read whole: policy reads it. Any other body is streamed on to the API as
    // it arrives, once the call is allowed, within the same limit.
    let json_body = op.request_body.as_ref().is_some_and(|b| b.content_type.contains("json"));
    let (bytes, streamed) = if json_body {
        match crate::server::read_body(&app, body, api.max_body()).await {
            Ok(bytes) => (bytes, None),
            Err(BodyError::TooLarge) => return body_too_large(&app, &identity.agent, &name, api.max_body()).await,
            Err(BodyError::TimedOut(after)) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the body did not arrive within {} ms", after.as_millis()),
                    None,
                )
            }
        }
    } else {
        use axum::body::HttpBody;
        // Declared larger than the limit: refused before any of it is read.
        if body.size_hint().lower() > u64::try_from(api.max_body()).unwrap_or(u64::MAX) {
            return body_too_large(&app, &identity.agent, &name, api.max_body()).await;
        }
        (axum::body::Bytes::new(), Some(body))
    };
    let query = parts.uri.query().unwrap_or_default();
    let json = json_body.then_some(bytes.as_ref());
    let arguments = match arguments(&api, op, &found.path_params, query, &parts.headers, json) {
        Ok(arguments) => arguments,
        Err(reason) => {
            let detail = json!({ "api": name, "operation": op.tool_name, "reason": reason });
            crate::server::record_refusal(&app, &identity.agent, "malformed request", detail).await;
            return error(StatusCode::BAD_REQUEST, &format!("API `{name}`, `{}`: {reason}", op.tool_name), None);
        }
    };
    let gateway = match pipeline(&app, &api, &identity, &parts.headers).await {
        Ok(gateway) => gateway,
        Err(refused) => return refused,
    };
    let request = ApiRequest {
        method: parts.method.clone(),
        path: raw_path.to_owned(),
        query: query.to_owned(),
        headers: passed_on(&api, &parts.headers, json_body),
        body: match streamed {
            Some(body) => custos_gateway::api::streamed_body(body, api.max_body()),
            None => custos_gateway::api::whole_body(bytes),
        },
    };
    let response = govern(&app, &gateway, &api, op, arguments, &parts.headers, request).await;
    drop(permit);
    response
}

/// The pipeline of the call: admitted, then sent, held or refused.
async fn govern(
    app: &AppState,
    gateway: &Gateway,
    api: &Api,
    op: &Operation,
    arguments: Value,
    headers: &HeaderMap,
    request: ApiRequest,
) -> Response {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let label = format!("http-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let Ok(id) = serde_json::value::to_raw_value(&label) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot number the request", None);
    };
    if gateway.pending().reserve(&id, "tools/call").is_err() {
        return error(StatusCode::TOO_MANY_REQUESTS, "too many requests of this run in flight", None);
    }
    let Ok(tool) = ToolRef::new(api.name(), op.tool_name.as_str()) else {
        gateway.pending().remove(&id);
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the operation cannot name a tool", None);
    };
    let parent = custos_telemetry::TraceHeaders::from_peer(
        header_text(headers, "traceparent"),
        header_text(headers, "tracestate"),
    );
    let input = CallInput { request_id: &label, tool, arguments, protocol: None, parent };
    let response = match gateway.admit(input).await {
        Admission::Run { call, token, slot, replay } => {
            let mut in_flight = CallInFlight::new(call.tool, call.step, call.received, token, slot, replay);
            in_flight.trace = gateway.upstream_trace(call.span, &in_flight.tool);
            send(app, gateway, api, &label, in_flight, request).await
        }
        Admission::Hold { call, request: approval } => {
            let held = custos_gateway::held::Held::new(id.clone(), Vec::new(), call, *approval);
            let (progress, _unread) = tokio::sync::mpsc::channel(1);
            match gateway.settle(held, progress).await {
                Outcome::Forward(_) => match gateway.pending().remove(&id).and_then(|p| p.call) {
                    Some(in_flight) => send(app, gateway, api, &label, in_flight, request).await,
                    None => error(StatusCode::INTERNAL_SERVER_ERROR, "the approved call was lost", None),
                },
                Outcome::Answer(bytes) => from_rpc_error(&bytes),
                Outcome::Held(_) | Outcome::Drop => {
                    error(StatusCode::INTERNAL_SERVER_ERROR, "the held call was not settled", None)
                }
            }
        }
        Admission::Deny { call, policies, reason } => error(
            StatusCode::FORBIDDEN,
            &format!("custos denied `{}`: {reason}", call.tool),
            Some(json!({ "policies": policies, "run": gateway.run().0, "step": call.step })),
        ),
        Admission::Unrecorded { tool, what } => {
            error(StatusCode::SERVICE_UNAVAILABLE, &format!("custos refused `{tool}`: {what}; nothing was sent"), None)
        }
    };
    gateway.pending().remove(&id);
    response
}

/// Sends an allowed call's request, and passes the answer back once it went through the leak
/// guard and inspection and its end is recorded.
async fn send(
    app: &AppState,
    gateway: &Gateway,
    api: &Api,
    label: &str,
    mut call: CallInFlight,
    request: ApiRequest,
) -> Response {
    let token = api.upstream.token_header(&call);
    let trace = call.trace.as_ref().and_then(|t| t.headers.clone());
    let answer = api.upstream.send(request, token, trace.as_ref()).await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            gateway.upstream_answered(&mut call, true);
            let status = match e {
                custos_gateway::api::ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            let body = serde_json::to_vec(&json!({ "error": e.to_string() })).unwrap_or_default();
            let ending = Ending {
                request_id: label,
                outcome: Ended::Error,
                cancelled: false,
                answer: &body,
                error: Some(json!(e.to_string())),
                error_code: Some(status.as_u16().to_string()),
                result: None,
            };
            if let Err(err) = gateway.finish(&mut call, ending, Vec::new(), Vec::new()).await {
                tracing::error!("cannot record the failure of `{}`: {err}", call.tool);
            }
            return json_response(status, body);
        }
    };
    gateway.upstream_answered(&mut call, false);
    // The leak guard: a credential in the answer (the API's own, echoed) never reaches the agent.
    let json_body = serde_json::from_slice::<Value>(&answer.body).is_ok();
    let (body, leaks) = guarded(gateway, &answer.body, json_body);
    // Inspection, on the answer as JSON (or as one text).
    let mut result = if json_body {
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)
    } else {
        Value::String(String::from_utf8_lossy(&body).into_owned())
    };
    let inspected = gateway.inspect(&call, &mut result);
    let (body, withheld) = match &inspected {
        Some(i) if i.action == OutputAction::Block => (body, Some(i.rules.clone())),
        Some(i) if i.action == OutputAction::Redact => {
            let redacted = match &result {
                Value::String(text) if !json_body => text.clone().into_bytes(),
                other => serde_json::to_vec(other).unwrap_or_default(),
            };
            (redacted.into(), None)
        }
        _ => (body, None),
    };
    let ok = answer.status.is_success() || answer.status.is_redirection();
    let ending = Ending {
        request_id: label,
        outcome: if ok { Ended::Ok } else { Ended::ToolError },
        cancelled: false,
        answer: &body,
        error: None,
        error_code: (!ok).then(|| answer.status.as_u16().to_string()),
        result: app.config.audit.record_results.then_some(&result),
    };
    let events = inspected.map(|i| i.events).unwrap_or_default();
    if let Err(err) = gateway.finish(&mut call, ending, leaks, events).await {
        tracing::error!("withholding the answer of `{}` (step {}): {err}", call.tool, call.step);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the answer of `{}` is withheld: the audit log cannot be written", call.tool),
            None,
        );
    }
    if let Some(rules) = withheld {
        return error(
            StatusCode::FORBIDDEN,
            &format!("custos withheld the answer of `{}`: it carries {}", call.tool, rules.join(", ")),
            Some(json!({ "findings": rules, "run": gateway.run().0, "step": call.step })),
        );
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = answer.status;
    for (name, value) in answer.headers {
        response.headers_mut().append(name, value);
    }
    response
}

/// The answer as the agent may see it, and a finding for each credential taken out of it.
fn guarded(gateway: &Gateway, body: &[u8], json_body: bool) -> (bytes::Bytes, Vec<custos_core::NewEvent>) {
    let guard = gateway.broker().guard();
    if json_body {
        return match guard.scan_message(body) {
            Some(cleaned) => {
                let findings = gateway.leak_findings(&cleaned.hits, cleaned.more, "message");
                (cleaned.raw.into(), findings)
            }
            None => (bytes::Bytes::copy_from_slice(body), Vec::new()),
        };
    }
    let text = String::from_utf8_lossy(body);
    match guard.redact_text(&text) {
        Some((clean, hits)) => {
            let findings = gateway.leak_findings(&hits, 0, "message");
            (clean.into_bytes().into(), findings)
        }
        None => (bytes::Bytes::copy_from_slice(body), Vec::new()),
    }
}

/// The pipeline of `identity`'s run on `api`: the run its request names (its own, or a new one)
/// or the agent's default run on this API, made on first use.
async fn pipeline(
    app: &AppState,
    api: &Api,
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<Arc<Gateway>, Response> {
    let agent = &identity.agent;
    let named = match header_text(headers, RUN_HEADER) {
        Some(run) if crate::server::valid_run_id(run) => Some(run.to_owned()),
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Custos-Run-Id: up to 128 letters, digits, `-`, `_`, `.` or `:`",
                None,
            ))
        }
        None => None,
    };
    let run = named.clone().unwrap_or_else(|| format!("api-{}-{}-{}", agent.id, api.name(), api.started_ms));
    let key = (agent.id.0.clone(), run.clone());
    if let Some(gateway) = lock(&api.pipelines).get(&key) {
        return Ok(gateway.clone());
    }
    let first_step_after = match &named {
        Some(run) => {
            let history = app.run_summary(run).map_err(|e| {
                error(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot read the run's history: {e}"), None)
            })?;
            if let Some(owner) = history.agent.filter(|owner| *owner != agent.id) {
                let detail = json!({ "run": run, "owner": owner });
                crate::server::record_refusal(app, agent, "run belongs to another agent", detail).await;
                return Err(error(StatusCode::FORBIDDEN, &format!("run `{run}` belongs to another agent"), None));
            }
            history.last_step
        }
        None => 0,
    };
    let (steps, state) = app.live_run(&key.1, first_step_after);
    let gateway = Arc::new(Gateway::new(GatewaySpec {
        agent: agent.clone(),
        principal: identity.principal.clone(),
        run: RunId(run),
        parent_run: None,
        shared_steps: Some(steps),
        first_step_after,
        server: api.name().to_owned(),
        classes: api.classes.clone(),
        policy: app.policy.clone(),
        audit: app.audit.clone(),
        tools_list: app.config.policy.tools_list,
        audit_config: app.config.audit.clone(),
        limits: app.config.limits,
        known_tools: api.descriptors.clone(),
        metrics: app.gateway_metrics.clone(),
        tracer: app.tracer().for_session(&key.1),
        approvals: app.approvals().cloned(),
        broker: app.broker().cloned(),
        detection: app.detection().clone(),
        run_state: Some(state),
        flows: custos_config::ToolFlows::default(),
        quarantined: app.quarantined_tools(api.name()),
    }));
    gateway
        .start(json!({ "transport": "http", "api": api.name(), "url_host": host_of(&api.config.base_url) }))
        .await
        .map_err(|e| {
        tracing::error!("cannot record the start of a run on API `{}`: {e}", api.name());
        error(StatusCode::SERVICE_UNAVAILABLE, "the audit log cannot be written; nothing was sent", None)
    })?;
    // The operations are this pipeline's listing: inventoried and pinned (an operation whose
    // document changed since it was pinned is quarantined), and their descriptions scanned.
    gateway.observe_listing(&api.descriptors).await;
    let mut pipelines = lock(&api.pipelines);
    if pipelines.len() >= MAX_PIPELINES {
        pipelines.clear();
    }
    Ok(pipelines.entry(key).or_insert(gateway).clone())
}

/// What policy sees of a request (see the module doc); `Err` says what is malformed.
fn arguments(
    api: &Api,
    op: &Operation,
    path_params: &BTreeMap<String, String>,
    query: &str,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<Value, String> {
    let mut arguments = serde_json::Map::new();
    for (name, value) in path_params {
        let schema = op.parameters.iter().find(|p| p.location == Location::Path && p.name == *name).map(|p| &p.schema);
        arguments.insert(name.clone(), typed(name, value, schema)?);
    }
    for (name, value) in query_pairs(query)? {
        let Some(param) = op.parameters.iter().find(|p| p.location == Location::Query && p.name == name) else {
            // Undeclared: passed on, but not an argument policy could be written against.
            continue;
        };
        let value = typed(&name, &value, Some(&param.schema))?;
        match arguments.get_mut(&name) {
            // A repeated key is a list.
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                arguments.insert(name, value);
            }
        }
    }
    for name in &api.config.headers {
        if let Some(value) = header_text(headers, name) {
            arguments.insert(name.to_ascii_lowercase(), Value::String(value.to_owned()));
        }
    }
    // A JSON body (`body` is given only for one): whatever the request's Content-Type says, the
    // API reads it as JSON, so policy sees it as JSON too.
    if let (Some(declared), Some(body)) = (&op.request_body, body) {
        if body.is_empty() {
            if declared.required {
                return Err("the operation needs a body".to_owned());
            }
        } else {
            let parsed: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
            arguments.insert("body".to_owned(), parsed);
        }
    }
    Ok(Value::Object(arguments))
}

/// A parameter's text as its schema types it; text when the schema says nothing more.
fn typed(name: &str, text: &str, schema: Option<&Value>) -> Result<Value, String> {
    let kind = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    let bad = |what: &str| format!("parameter `{}` must be {what}, not `{}`", name.escape_debug(), text.escape_debug());
    match kind {
        Some("integer") => text.parse::<i64>().map(Value::from).map_err(|_| bad("an integer")),
        Some("number") => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("a number")),
        Some("boolean") => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("`true` or `false`")),
        },
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// The query's pairs, percent-decoded (`+` is a space); `Err` for an encoding that is not UTF-8
/// or not percent-encoding.
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next(), input.next()];
                let value = match hex {
                    [Some(h), Some(l)] => {
                        std::str::from_utf8(&[h, l]).ok().and_then(|s| u8::from_str_radix(s, 16).ok())
                    }
                    _ => None,
                };
                bytes.push(
                    value.ok_or_else(|| format!("bad percent-encoding in the query: `{}`", text.escape_debug()))?,
                );
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| "the query is not UTF-8".to_owned())
}

/// The request headers the API gets: [`PASSED_ON`] and those the API's `headers` names. A JSON
/// body goes as `application/json`, whatever the agent labelled it; a streamed one with its own
/// `Content-Type`.
fn passed_on(api: &Api, headers: &HeaderMap, json_body: bool) -> Vec<(HeaderName, HeaderValue)> {
    let named: Vec<String> = api.config.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut out: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            (PASSED_ON.contains(&name) || named.iter().any(|n| n == name)) && !(json_body && name == "content-type")
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if json_body {
        out.push((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    out
}

/// A JSON-RPC error the pipeline answered for a held call, as HTTP: still pending → `202` with
/// the approval id and `Retry-After`; refused → `403`; not recordable → `503`.
fn from_rpc_error(bytes: &[u8]) -> Response {
    let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let error_member = answer.get("error");
    let code = error_member.and_then(|e| e.get("code")).and_then(Value::as_i64).unwrap_or(codes::DENIED);
    let message = error_member.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("refused");
    let data = error_member.and_then(|e| e.get("data")).cloned();
    match code {
        codes::APPROVAL_PENDING => {
            let mut body = json!({ "status": "held", "message": message });
            if let (Some(Value::Object(data)), Some(obj)) = (data, body.as_object_mut()) {
                obj.extend(data);
            }
            let mut response = json_response(StatusCode::ACCEPTED, serde_json::to_vec(&body).unwrap_or_default());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            response
        }
        codes::AUDIT_UNAVAILABLE => error(StatusCode::SERVICE_UNAVAILABLE, message, data),
        _ => error(StatusCode::FORBIDDEN, message, data),
    }
}

/// `413`, recorded: a body larger than the API takes.
async fn body_too_large(app: &AppState, agent: &custos_core::Agent, api: &str, limit: usize) -> Response {
    let detail = json!({ "api": api, "limit": limit });
    crate::server::record_refusal(app, agent, "body too large", detail).await;
    error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is larger than API `{api}` takes ({limit} bytes)"), None)
}

/// `{"error": message, …data}` with `status`.
fn error(status: StatusCode, message: &str, data: Option<Value>) -> Response {
    let mut body = json!({ "error": message });
    if let (Some(Value::Object(data)), Some(obj)) = (data, body.as_object_mut()) {
        obj.extend(data);
    }
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn host_of(url: &str) -> Option<String> {
    url.parse::<axum::http::Uri>().ok().and_then(|u| u.authority().map(ToString::to_string))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
