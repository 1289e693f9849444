//! The router and the handlers of `custos serve`.
//!
//! ```text
//! POST   /mcp/{server}   one JSON-RPC message; `initialize` without a session opens one
//! GET    /mcp/{server}   the session's event stream (what the upstream says on its own)
//! DELETE /mcp/{server}   ends the session
//! GET    /.well-known/oauth-protected-resource/mcp/{server}   RFC 9728 metadata
//! GET    /.well-known/jwks.json   the public keys of the tokens the gateway mints
//! POST   /oauth/token    RFC 8693 token exchange (see `exchange.rs`)
//! GET    /healthz
//! ```
//!
//! Every MCP request is checked in this order: `Origin` (DNS rebinding), size, credential, then
//! the session (which must belong to the same agent), and only then the pipeline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use custos_auth::ProtectedResourceMetadata;
use custos_config::{Config, ServerConfig};
use custos_core::{Agent, EventKind, NewEvent, RunId};
use custos_gateway::{now_ms, Gateway, GatewaySpec};
use custos_mcp::{codes, Message, MessageKind};
use custos_policy::PolicyEngine;
use custos_store::AuditLog;
use futures::stream;
use serde_json::json;

use crate::answer::{await_answer, event, held_stream, post_messages};
use crate::auth::{self, Authenticator, Identity};
use crate::places::{Busy, Full, Place, Places};
use crate::reply;
use crate::session::{Sent, Session};
use crate::tls::ClientSpiffeId;

/// A run's shared parts, held by its pipelines; gone with the last of them.
#[derive(Debug)]
struct LiveRun {
    steps: std::sync::Weak<std::sync::atomic::AtomicU64>,
    state: std::sync::Weak<custos_gateway::detect::RunState>,
}

impl LiveRun {
    fn upgrade(&self) -> Option<(Arc<std::sync::atomic::AtomicU64>, Arc<custos_gateway::detect::RunState>)> {
        Some((self.steps.upgrade()?, self.state.upgrade()?))
    }
}

/// Runs whose state is remembered before the entries of ended runs are swept.
const RUN_STATES_SWEEP: usize = 10_000;

/// The header that names an MCP session.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The reason `run.ended` gives for a session closed by `session_idle_timeout_ms`.
pub const IDLE: &str = "idle";

/// What a session's pipeline is given about its upstream, and how to reach it.
#[derive(Debug)]
pub(crate) struct McpUpstream {
    classes: custos_config::ToolClasses,
    flows: custos_config::ToolFlows,
    target: crate::session::Target,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub policy: Arc<PolicyEngine>,
    pub audit: AuditLog,
    pub auth: Authenticator,
    /// Where agents reach this gateway: the config's `public_url`, else the bound address.
    public_url: String,
    /// A read-only connection to the store: the tool inventory (so a session's first call is
    /// classified by what the server declared), run summaries, and the admin API's queries.
    reader: Mutex<custos_store::SqlStore>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Places of open sessions (`max_sessions`, `max_sessions_per_agent`), per-server and
    /// federated alike.
    places: Arc<Places>,
    /// Federated sessions (`/mcp`), by session id.
    pub(crate) federated: Mutex<HashMap<String, Arc<crate::federation::Federation>>>,
    /// Per agent and server: the shared upstream of stateless (2026-07-28) requests.
    pub(crate) stateless: tokio::sync::Mutex<HashMap<(String, String), crate::stateless::StatelessUpstream>>,
    /// Per agent: permits for requests in flight (`max_concurrent_per_agent`).
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    registry: custos_metrics::Registry,
    pub(crate) gateway_metrics: custos_gateway::GatewayMetrics,
    sessions_gauge: custos_metrics::Gauge,
    /// New sessions refused, by the limit that refused them.
    sessions_refused: custos_metrics::Counter,
    /// Sessions closed for being idle, by kind (`session`, `federated`, `stateless`).
    pub(crate) sessions_idle_closed: custos_metrics::Counter,
    auth_failures: custos_metrics::Counter,
    /// Open client connections, and those (and requests) cut off by a limit.
    connection_metrics: crate::listen::ConnectionMetrics,
    /// Where held calls wait for a human (shared with the admin API that decides them).
    approvals: Option<custos_approvals::Approvals>,
    /// The credentials the gateway holds for upstreams and the keys it mints tokens with.
    broker: Option<Arc<custos_gateway::Broker>>,
    /// The detectors, shared by every session (rates, budgets and replays span sessions).
    detection: Arc<custos_gateway::detect::Detection>,
    /// Spans of governed calls; off unless `[telemetry]` is configured.
    tracer: custos_telemetry::CallTracer,
    /// The plain HTTP APIs proxied at `/api/{name}`, by name.
    apis: HashMap<String, Arc<crate::api::Api>>,
    /// Each run in progress: its step counter and what it has gathered (labels, finding kinds),
    /// shared by every pipeline of the run in this process: its MCP sessions and its calls to
    /// APIs alike.
    run_states: Mutex<HashMap<String, LiveRun>>,
}

impl AppState {
    pub fn new(
        config: Config,
        policy: Arc<PolicyEngine>,
        audit: AuditLog,
        auth: Authenticator,
        reader: custos_store::SqlStore,
        bound: std::net::SocketAddr,
    ) -> Self {
        let public_url = config.serve.public_url_or(bound);
        let config_detection = config.detection.clone();
        let places = Places::new(config.serve.max_sessions, config.serve.max_sessions_per_agent);
        // Named as the spans are, for the OTLP push of these metrics.
        let registry = match &config.telemetry {
            Some(telemetry) => custos_metrics::Registry::for_service(&telemetry.service_name),
            None => custos_metrics::Registry::new(),
        };
        Self {
            gateway_metrics: custos_gateway::GatewayMetrics::register(&registry),
            sessions_gauge: registry.gauge("custos_sessions", "Open MCP sessions, by server.", &["server"]),
            sessions_refused: registry.counter(
                "custos_sessions_refused_total",
                "New MCP sessions refused, by the limit (max_sessions, max_sessions_per_agent).",
                &["limit"],
            ),
            sessions_idle_closed: registry.counter(
                "custos_sessions_idle_closed_total",
                "Sessions closed after session_idle_timeout_ms unused, by kind (session, federated, stateless).",
                &["kind"],
            ),
            auth_failures: registry.counter(
                "custos_auth_failures_total",
                "Requests refused for their credential, by reason.",
                &["reason"],
            ),
            connection_metrics: crate::listen::ConnectionMetrics::register(&registry, "mcp"),
            registry,
            config,
            policy,
            audit,
            auth,
            public_url,
            reader: Mutex::new(reader),
            sessions: Mutex::new(HashMap::new()),
            places,
            in_flight: Mutex::new(HashMap::new()),
            stateless: tokio::sync::Mutex::new(HashMap::new()),
            federated: Mutex::new(HashMap::new()),
            approvals: None,
            broker: None,
            detection: Arc::new(custos_gateway::detect::Detection::new(config_detection, None, Vec::new())),
            tracer: custos_telemetry::CallTracer::default(),
            apis: HashMap::new(),
            run_states: Mutex::new(HashMap::new()),
        }
    }

    /// The step counter and state of `run`, shared with every other live pipeline of it here:
    /// an injection found by one of its MCP sessions is in its context when it calls an API,
    /// and its steps are numbered once across them. A run not live here counts on from
    /// `first_step_after` (its last step in the log).
    pub(crate) fn live_run(
        &self,
        run: &str,
        first_step_after: u64,
    ) -> (Arc<std::sync::atomic::AtomicU64>, Arc<custos_gateway::detect::RunState>) {
        let mut runs = self.run_states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = runs.get(run).and_then(LiveRun::upgrade) {
            return live;
        }
        if runs.len() >= RUN_STATES_SWEEP {
            runs.retain(|_, live| live.upgrade().is_some());
        }
        let steps = Arc::new(std::sync::atomic::AtomicU64::new(first_step_after));
        let state = Arc::new(custos_gateway::detect::RunState::default());
        runs.insert(run.to_owned(), LiveRun { steps: Arc::downgrade(&steps), state: Arc::downgrade(&state) });
        (steps, state)
    }

    /// Proxies `apis` at `/api/{name}` (`[[apis]]`, loaded by [`crate::api::Api::load`]).
    pub fn with_apis(mut self, apis: Vec<crate::api::Api>) -> Self {
        self.apis = apis.into_iter().map(|api| (api.name().to_owned(), Arc::new(api))).collect();
        self
    }

    pub(crate) fn api(&self, name: &str) -> Option<Arc<crate::api::Api>> {
        self.apis.get(name).cloned()
    }

    pub(crate) fn tracer(&self) -> &custos_telemetry::CallTracer {
        &self.tracer
    }

    pub(crate) fn approvals(&self) -> Option<&custos_approvals::Approvals> {
        self.approvals.as_ref()
    }

    pub(crate) fn detection(&self) -> &Arc<custos_gateway::detect::Detection> {
        &self.detection
    }

    /// Records a span for every governed call with `tracer` (`[telemetry]`).
    pub fn with_tracer(mut self, tracer: custos_telemetry::CallTracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Uses `detection` (one with a view of the store, for pins and first uses).
    pub fn with_detection(mut self, detection: Arc<custos_gateway::detect::Detection>) -> Self {
        self.detection = detection;
        self
    }

    /// The tools of `server` the inventory holds quarantined.
    pub(crate) fn quarantined_tools(&self, server: &str) -> Vec<String> {
        self.with_store(custos_store::Store::tools)
            .map(|tools| {
                tools
                    .into_iter()
                    .filter(|t| t.tool.server() == server && t.quarantined())
                    .map(|t| t.tool.name().to_owned())
                    .collect()
            })
            .unwrap_or_else(|err| {
                tracing::warn!("cannot read the tool inventory: {err}");
                Vec::new()
            })
    }

    /// Injects `broker`'s credentials into upstreams, guards what they send, and mints tokens
    /// with its keys (for upstreams, `/oauth/token` and `/.well-known/jwks.json`).
    pub fn with_broker(mut self, broker: Arc<custos_gateway::Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    pub(crate) fn broker(&self) -> Option<&Arc<custos_gateway::Broker>> {
        self.broker.as_ref()
    }

    /// Holds calls that policy sends for approval in `approvals`; without it they are refused.
    pub fn with_approvals(mut self, approvals: custos_approvals::Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// What a session on `name` starts: a configured server (its `command` or `url`), or an
    /// API whose operations are MCP tools (`[[apis]] mcp = true`); `None` when neither.
    pub(crate) fn mcp_upstream(&self, name: &str) -> Option<McpUpstream> {
        if let Some(config) = self.server(name) {
            let target = match (&config.command, &config.url) {
                (Some(command), _) => crate::session::Target::Command(command.clone()),
                (None, Some(url)) => crate::session::Target::Url {
                    url: url.clone(),
                    headers: config.headers.clone(),
                    tls: config.tls.clone(),
                },
                (None, None) => return None,
            };
            return Some(McpUpstream { classes: config.classes.clone(), flows: config.flows.clone(), target });
        }
        let api = self.api(name)?;
        let tools = api.mcp_tools()?;
        Some(McpUpstream {
            classes: api.classes().clone(),
            flows: custos_config::ToolFlows::default(),
            target: crate::session::Target::Api(tools),
        })
    }

    /// Starts an upstream and its pipeline for `identity` on `server`.
    pub(crate) async fn start_session(
        &self,
        id: String,
        server: &str,
        upstream: McpUpstream,
        identity: Identity,
        run: RunRef,
    ) -> Result<Arc<Session>, Response> {
        let McpUpstream { classes, flows, target } = upstream;
        let (steps, state) = match (run.shared_steps, run.state) {
            (Some(steps), Some(state)) => (steps, state),
            _ => self.live_run(&run.run.0, run.first_step_after),
        };
        let gateway = Arc::new(Gateway::new(GatewaySpec {
            agent: identity.agent.clone(),
            principal: identity.principal,
            run: run.run,
            parent_run: run.parent,
            shared_steps: Some(steps),
            first_step_after: run.first_step_after,
            server: server.to_owned(),
            classes,
            policy: self.policy.clone(),
            audit: self.audit.clone(),
            tools_list: self.config.policy.tools_list,
            audit_config: self.config.audit.clone(),
            limits: self.config.limits,
            known_tools: self.known_tools(server),
            metrics: self.gateway_metrics.clone(),
            tracer: self.tracer.for_session(&id),
            approvals: self.approvals.clone(),
            broker: self.broker.clone(),
            detection: self.detection.clone(),
            run_state: Some(state),
            flows,
            quarantined: self.quarantined_tools(server),
        }));
        Session::open(id, identity.agent, server.to_owned(), gateway, &target, self.config.limits).await.map_err(|e| {
            tracing::error!("cannot open a session on `{server}`: {e}");
            reply::rpc_error(
                StatusCode::BAD_GATEWAY,
                None,
                codes::UPSTREAM_UNAVAILABLE,
                &format!("upstream `{server}` is unavailable"),
            )
        })
    }

    /// A place for a new session of `agent` (federated sessions count too): `503` past
    /// `max_sessions`, `429` with `Retry-After` past `max_sessions_per_agent` (other agents are
    /// unaffected); either refusal is recorded and counted.
    pub(crate) async fn take_place(&self, agent: &Agent) -> Result<Place, Response> {
        let full = match self.places.take(&agent.id.0) {
            Ok(place) => return Ok(place),
            Err(full) => full,
        };
        let serve = &self.config.serve;
        match full {
            Full::Agent => {
                let limit = serve.max_sessions_per_agent;
                self.sessions_refused.inc(&["max_sessions_per_agent"]);
                record_refusal(self, agent, "agent session limit reached", json!({ "limit": limit })).await;
                let retry = self.retry_after(agent);
                let mut response = reply::rpc_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    codes::INVALID_REQUEST,
                    &format!(
                        "too many open sessions for agent `{}` (limit {limit}); end one (DELETE) or retry in {retry} s",
                        agent.id
                    ),
                );
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
                Err(response)
            }
            Full::Gateway => {
                self.sessions_refused.inc(&["max_sessions"]);
                record_refusal(self, agent, "session limit reached", json!({ "limit": serve.max_sessions })).await;
                Err(reply::rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    codes::INVALID_REQUEST,
                    &format!("too many open sessions (limit {}); retry later", serve.max_sessions),
                ))
            }
        }
    }

    /// Seconds until one of `agent`'s sessions may be closed as idle: the soonest of those
    /// unused now, else a whole idle timeout. At least 1.
    fn retry_after(&self, agent: &Agent) -> u64 {
        let timeout = self.idle_timeout();
        let mut idle: Vec<Duration> =
            self.sessions().values().filter(|s| s.agent.id == agent.id).filter_map(|s| s.idle_for()).collect();
        idle.extend(crate::federation::idle_for_of(self, &agent.id));
        let soonest = idle.into_iter().max().map_or(timeout, |longest| timeout.saturating_sub(longest));
        soonest.as_secs().saturating_add(u64::from(soonest.subsec_nanos() > 0)).max(1)
    }

    /// `[serve] session_idle_timeout_ms`.
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.config.serve.session_idle_timeout_ms)
    }

    /// Closes every session, federated session and stateless upstream that nothing has used
    /// for `session_idle_timeout_ms`: its upstreams are stopped, its run ends with reason
    /// [`IDLE`] and its place is free. A request naming it afterwards gets `404`, as for any
    /// unknown session. Each is taken out of its map under the lock a request takes to find
    /// it and mark it in use, so no request is ever handed a session being closed.
    pub(crate) async fn close_idle(&self) {
        let timeout = self.idle_timeout();
        let idle: Vec<Arc<Session>> = {
            let mut sessions = self.sessions();
            let ids: Vec<String> =
                sessions.iter().filter(|(_, s)| s.idle_past(timeout)).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        let closing = idle.iter().map(|s| {
            self.sessions_gauge.dec(&[&s.server]);
            self.sessions_idle_closed.inc(&["session"]);
            s.close(IDLE)
        });
        futures::future::join_all(closing).await;
        crate::federation::close_idle(self, timeout).await;
        crate::stateless::close_idle(self, timeout).await;
    }

    /// Starts the task that closes idle sessions, checking a few times per idle timeout. It
    /// holds the state weakly and ends with it.
    pub(crate) fn spawn_reaper(self: &Arc<Self>) {
        let every = (self.idle_timeout() / 4).clamp(Duration::from_millis(25), Duration::from_secs(5));
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = app.upgrade() else { return };
                app.close_idle().await;
            }
        });
    }

    /// The metrics registry `/metrics` renders.
    pub fn metrics(&self) -> &custos_metrics::Registry {
        &self.registry
    }

    pub fn session_count(&self) -> usize {
        self.sessions().len() + self.federated_count()
    }

    pub(crate) fn federated_count(&self) -> usize {
        self.federated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Runs `f` on the read-only store connection (inventory, registry, audit queries).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&custos_store::SqlStore) -> Result<T, custos_store::StoreError>,
    ) -> Result<T, custos_store::StoreError> {
        f(&self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The MCP router with the `[serve]` connection limits, for the accept loop.
    pub(crate) fn endpoint(self: &Arc<Self>) -> crate::listen::Endpoint {
        crate::listen::Endpoint::new(router(self.clone()), &self.config.serve, self.connection_metrics.clone())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.serve.request_timeout_ms)
    }

    /// A permit for one more request of `agent`, or `None` when it is at its limit.
    pub(crate) fn permit(&self, agent: &Agent) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(agent.id.0.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.config.serve.max_concurrent_per_agent)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }

    /// What the log holds of a run a client names.
    pub(crate) fn run_summary(&self, run: &str) -> Result<custos_store::RunSummary, custos_store::StoreError> {
        self.with_store(|store| custos_store::run_summary(store, run))
    }

    /// The descriptors recorded for `server`'s tools; none when the store cannot be read (the
    /// tools are then classified as unknown, that is privileged).
    pub(crate) fn known_tools(&self, server: &str) -> Vec<custos_core::ToolDescriptor> {
        self.with_store(|store| custos_store::known_tools(store, server)).unwrap_or_else(|err| {
            tracing::warn!("cannot read the tool inventory: {err}");
            Vec::new()
        })
    }

    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The served server named `name`: configured, with a command to start it.
    /// The names of every served server, in config order.
    pub(crate) fn served(&self) -> Vec<&ServerConfig> {
        self.config.servers.iter().filter(|s| s.is_served()).collect()
    }

    pub(crate) fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.config.server(name).filter(|s| s.is_served())
    }

    fn metadata(&self, server: &str) -> Option<ProtectedResourceMetadata> {
        let resource = if server.is_empty() {
            format!("{}/mcp", self.public_url)
        } else if self.apis.contains_key(server) {
            format!("{}/api/{server}", self.public_url)
        } else {
            format!("{}/mcp/{server}", self.public_url)
        };
        ProtectedResourceMetadata::new(&resource, self.config.serve.authorization_servers.clone(), Vec::new()).ok()
    }

    /// Ends every session (at shutdown).
    pub async fn close_all(&self, reason: &str) {
        let sessions: Vec<Arc<Session>> = self.sessions().drain().map(|(_, s)| s).collect();
        for s in sessions {
            self.sessions_gauge.dec(&[&s.server]);
            s.close(reason).await;
        }
        crate::stateless::close_all(self, reason).await;
        let federated: Vec<_> =
            self.federated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().map(|(_, f)| f).collect();
        for f in federated {
            f.close(reason).await;
        }
    }
}

/// Serves plain HTTP until `shutdown` resolves, then ends every session and returns once the
/// open connections have drained. Over TLS, [`crate::tls::serve_tls`] serves the same router;
/// both share the accept loop of `listen.rs` (connection cap, header timeout).
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.clone();
    state.spawn_reaper();
    crate::listen::serve_connections(state.endpoint(), listener, crate::listen::Plain, shutdown, async move {
        // Open event streams end when their sessions close; then in-flight requests drain.
        closing.close_all("gateway shutting down").await;
    })
    .await
}

/// The routes of `custos serve`, whatever the transport.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mcp/{server}", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/mcp", post(crate::federation::post).get(crate::federation::get).delete(crate::federation::delete))
        .route_layer(axum::middleware::from_fn(trace_context))
        .route("/.well-known/oauth-protected-resource/mcp/{server}", get(metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(federated_metadata))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/.well-known/jwks.json", get(crate::exchange::jwks))
        .route("/oauth/token", post(crate::exchange::token))
        .route("/api/{name}", axum::routing::any(crate::api::proxy))
        .route("/api/{name}/{*path}", axum::routing::any(crate::api::proxy))
        .with_state(state)
}

/// Runs an MCP request with the W3C trace context of its `traceparent` and `tracestate`
/// headers, which the calls it makes take as parent unless their `params._meta` names one.
async fn trace_context(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let parent = {
        // Scoped: the request body is not `Sync`, so no borrow of it may live across the await.
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        custos_telemetry::TraceHeaders::from_peer(header("traceparent"), header("tracestate"))
    };
    custos_telemetry::with_remote_parent(parent, next.run(request)).await
}

async fn metadata(State(app): State<Arc<AppState>>, Path(server): Path<String>) -> Response {
    match (app.server(&server), app.metadata(&server)) {
        (Some(_), Some(m)) => reply::json_bytes(StatusCode::OK, serde_json::to_vec(&m.to_json()).unwrap_or_default()),
        _ => not_found(&server),
    }
}

async fn federated_metadata(State(app): State<Arc<AppState>>) -> Response {
    match app.metadata("") {
        Some(m) => reply::json_bytes(StatusCode::OK, serde_json::to_vec(&m.to_json()).unwrap_or_default()),
        None => not_found(""),
    }
}

pub(crate) fn not_found(server: &str) -> Response {
    reply::json_bytes(
        StatusCode::NOT_FOUND,
        serde_json::to_vec(&json!({ "error": format!("no server `{server}` is served here") })).unwrap_or_default(),
    )
}

/// The checks every MCP request passes before anything else: the server exists, the `Origin`
/// is allowed, and the credential (a bearer credential, else the connection's client
/// certificate, `peer`) names an agent.
pub(crate) async fn admit(
    app: &AppState,
    server: &str,
    headers: &HeaderMap,
    peer: Option<&ClientSpiffeId>,
) -> Result<Identity, Response> {
    // The federated endpoint (`/mcp`) is named by the empty server.
    if !server.is_empty() && app.server(server).is_none() && app.api(server).is_none() {
        return Err(not_found(server));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !app.config.serve.allowed_origins.iter().any(|o| o == origin) {
            // Before authentication: recorded without an agent, like an unknown credential.
            app.gateway_metrics.protocol_errors.inc(&["client"]);
            let mut e = NewEvent::new(EventKind::ProtocolError, now_ms());
            e.detail = json!({ "from": "client", "reason": "origin not allowed", "origin": origin, "server": server });
            if let Err(err) = app.audit.append(vec![e]).await {
                tracing::error!("cannot record a refused origin: {err}");
            }
            return Err(reply::json_bytes(
                StatusCode::FORBIDDEN,
                serde_json::to_vec(&json!({ "error": format!("origin `{}` is not allowed", origin.escape_debug()) }))
                    .unwrap_or_default(),
            ));
        }
    }
    let Some(metadata) = app.metadata(server) else {
        return Err(reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::INTERNAL_ERROR, "bad public_url"));
    };
    let spiffe_id = peer.map(|p| p.0.as_str());
    app.auth.refresh_keys_for(headers).await;
    match app.auth.authenticate(headers, spiffe_id) {
        Ok(identity) => Ok(identity),
        Err(e) => {
            // Recorded before the refusal is sent, so a burst of bad credentials is on the record.
            app.auth_failures.inc(&[e.reason()]);
            auth::record_failure(&app.audit, &e, server, spiffe_id, now_ms()).await;
            Err(auth::refusal(&e, &metadata))
        }
    }
}

/// The session a request names, if it belongs to the caller, marked in use until the guard is
/// dropped. A session of another agent looks exactly like an unknown one, and the attempt is
/// recorded.
async fn session_of(app: &AppState, headers: &HeaderMap, agent: &Agent) -> Result<(Arc<Session>, Busy), Response> {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(reply::rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            codes::INVALID_REQUEST,
            "missing Mcp-Session-Id: send `initialize` first",
        ));
    };
    // Found and marked under the lock the reaper takes: never closed between the two.
    let found = app.sessions().get(id).map(|s| (s.clone(), s.busy()));
    match found {
        Some((s, busy)) if s.agent.id == agent.id => Ok((s, busy)),
        found => Err(unknown_session(app, agent, found.as_ref().map(|(s, _)| &s.agent.id)).await),
    }
}

async fn post_mcp(
    State(app): State<Arc<AppState>>,
    Path(server): Path<String>,
    peer: Option<Extension<ClientSpiffeId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let identity = match admit(&app, &server, &headers, peer.as_deref()).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let agent = identity.agent.clone();
    let permit = match in_flight_permit(&app, &agent).await {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let msg = match read_message(&app, &agent, body).await {
        Ok(msg) => msg,
        Err(refused) => return refused,
    };
    let raw = msg.raw.clone();
    if !headers.contains_key(SESSION_HEADER) && is_stateless(&headers, &msg) {
        return crate::stateless::handle(&app, &server, identity, &headers, msg, permit).await;
    }
    // `_busy`: the session is in use until this handler returns; a streamed answer holds it on.
    let (session, _busy) = match (&msg.kind, headers.contains_key(SESSION_HEADER)) {
        (MessageKind::Request { method, .. }, false) if method == "initialize" => {
            match open_session(&app, &server, identity, &headers, &msg).await {
                Ok(s) => s,
                Err(refused) => return refused,
            }
        }
        _ => match session_of(&app, &headers, &agent).await {
            Ok(s) => s,
            Err(refused) => return refused,
        },
    };
    if session.is_gone() {
        return reply::rpc_error(
            StatusCode::BAD_GATEWAY,
            msg.id(),
            codes::UPSTREAM_UNAVAILABLE,
            &format!("upstream `{server}` has exited; delete this session and start a new one"),
        );
    }
    let MessageKind::Request { id, .. } = &msg.kind else {
        // Notifications and the client's answers to server requests.
        return match session.send(raw).await {
            Sent::Forwarded => reply::accepted(),
            Sent::Answered(bytes) if bytes.is_empty() => reply::accepted(),
            Sent::Answered(bytes) => reply::json_bytes(StatusCode::BAD_REQUEST, bytes),
        };
    };
    let id = id.clone();
    let answer = session.expect(&id);
    let stream = post_messages(&session, &headers);
    let sent = match session.send_or_hold(raw).await {
        Ok(sent) => sent,
        // Held for approval: a client that takes a stream gets one at once, with the progress.
        Err(held) if stream.is_some() => {
            drop(stream);
            let response = held_stream(&app, &session, *held, id, answer, permit, |bytes| bytes).into_response();
            return with_session(response, &session);
        }
        Err(held) => session.settle_here(*held).await,
    };
    if let Sent::Answered(bytes) = sent {
        session.forget(&id);
        return with_session(reply::json_bytes(StatusCode::OK, bytes), &session);
    }
    let response = await_answer(&app, &session, id, answer, stream, permit, |bytes| bytes).await;
    with_session(response, &session)
}

/// A permit for one more request of `agent`, or the 429 (recorded) when it is at its limit.
pub(crate) async fn in_flight_permit(
    app: &AppState,
    agent: &Agent,
) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    if let Some(permit) = app.permit(agent) {
        return Ok(permit);
    }
    let limit = app.config.serve.max_concurrent_per_agent;
    record_refusal(app, agent, "too many concurrent requests", json!({ "limit": limit })).await;
    Err(reply::rpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        codes::INVALID_REQUEST,
        &format!("too many concurrent requests for agent `{}` (limit {limit}); retry when some complete", agent.id),
    ))
}

/// The request body of `agent` as one JSON-RPC message: 413 past the size limit, 408 past the
/// body timeout, 400 when malformed. No session's pipeline has seen it yet, so the refusal is
/// recorded and counted here.
pub(crate) async fn read_message(app: &AppState, agent: &Agent, body: Body) -> Result<Message, Response> {
    let limit = app.config.limits.max_message_bytes;
    let mut method = None;
    let (status, id, code, reason) = match read_body(app, body, limit).await {
        Err(BodyError::TooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            codes::INVALID_REQUEST,
            format!("message exceeds the limit of {limit} bytes"),
        ),
        Err(BodyError::TimedOut(timeout)) => (
            StatusCode::REQUEST_TIMEOUT,
            None,
            codes::INVALID_REQUEST,
            format!("message body not received within {} ms", timeout.as_millis()),
        ),
        Ok(raw) => match Message::parse(raw.to_vec(), client_side(app)) {
            Ok(msg) => return Ok(msg),
            Err(err) => {
                method = err.method().map(str::to_owned);
                (StatusCode::BAD_REQUEST, err.id().map(ToOwned::to_owned), err.code(), err.to_string())
            }
        },
    };
    app.gateway_metrics.protocol_errors.inc(&["client"]);
    record_refusal(app, agent, &reason, json!({ "code": code, "method": method })).await;
    let mut response = reply::rpc_error(status, id.as_deref(), code, &reason);
    if status != StatusCode::BAD_REQUEST {
        // The rest of the body is not read: the connection cannot carry another request.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Err(response)
}

/// The rules a client's messages are read by.
pub(crate) fn client_side(app: &AppState) -> custos_mcp::Side {
    custos_mcp::Side::Client { max_argument_values: app.config.limits.max_argument_values }
}

/// Why a request body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than the limit, declared (`Content-Length`) or as sent.
    TooLarge,
    /// Not all there within `body_timeout_ms` (counted as `body_timeout`).
    TimedOut(Duration),
}

/// A whole request body of at most `limit` bytes, received within `body_timeout_ms`. A body
/// declared larger is refused before any of it is read; one sent larger (chunked) as soon as it
/// passes the limit, so no more than `limit` bytes are ever held.
pub(crate) async fn read_body(app: &AppState, body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    use axum::body::HttpBody;
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(BodyError::TooLarge);
    }
    let timeout = Duration::from_millis(app.config.serve.body_timeout_ms);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        // A client that breaks off its body sends nothing more to answer; too large is the
        // only other failure.
        Ok(Err(_)) => Err(BodyError::TooLarge),
        Err(_) => {
            app.connection_metrics.refused("body_timeout");
            Err(BodyError::TimedOut(timeout))
        }
    }
}

pub(crate) fn with_session(mut response: Response, session: &Session) -> Response {
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    response
}

/// A new session of the caller's, marked in use, its place taken before its upstream starts.
async fn open_session(
    app: &Arc<AppState>,
    server: &str,
    identity: Identity,
    headers: &HeaderMap,
    initialize: &Message,
) -> Result<(Arc<Session>, Busy), Response> {
    let Some(upstream) = app.mcp_upstream(server) else { return Err(not_found(server)) };
    let place = app.take_place(&identity.agent).await?;
    let id = new_session_id()
        .map_err(|e| reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::INTERNAL_ERROR, &e))?;
    let run = new_run(app, &identity.agent, headers, initialize, &id).await?;
    let session = app.start_session(id.clone(), server, upstream, identity, run).await?;
    session.hold_place(place);
    let busy = session.busy();
    app.sessions().insert(id, session.clone());
    app.sessions_gauge.inc(&[server]);
    Ok((session, busy))
}

/// The run a new session records into: the one the client names (which must be new or its
/// own, and then continues its steps), else `default_run`; and its parent.
pub(crate) async fn new_run(
    app: &AppState,
    agent: &Agent,
    headers: &HeaderMap,
    initialize: &Message,
    default_run: &str,
) -> Result<RunRef, Response> {
    let bad_request = |m: String| reply::rpc_error(StatusCode::BAD_REQUEST, initialize.id(), codes::INVALID_PARAMS, &m);
    let run = named(headers, initialize, RUN_HEADER, RUN_META).map_err(bad_request)?;
    let parent = named(headers, initialize, PARENT_RUN_HEADER, PARENT_RUN_META).map_err(bad_request)?;
    let (run, first_step_after) = match run {
        Some(run) => {
            let history = app.run_summary(&run).map_err(|e| {
                reply::rpc_error(StatusCode::INTERNAL_SERVER_ERROR, None, codes::AUDIT_UNAVAILABLE, &e.to_string())
            })?;
            if let Some(owner) = history.agent.filter(|owner| *owner != agent.id) {
                record_refusal(app, agent, "run belongs to another agent", json!({ "run": run, "owner": owner })).await;
                return Err(reply::rpc_error(
                    StatusCode::FORBIDDEN,
                    initialize.id(),
                    codes::INVALID_PARAMS,
                    &format!("run `{run}` belongs to another agent; name a new run"),
                ));
            }
            (run, history.last_step)
        }
        None => (default_run.to_owned(), 0),
    };
    Ok(RunRef { run: RunId(run), parent: parent.map(RunId), first_step_after, shared_steps: None, state: None })
}

/// The answer for a session id that is unknown, or belongs to `owner`, another agent: the two
/// look the same (404), and the second is recorded as an attempt on another agent's session.
pub(crate) async fn unknown_session(app: &AppState, agent: &Agent, owner: Option<&custos_core::AgentId>) -> Response {
    if let Some(owner) = owner {
        let mut e = NewEvent::new(EventKind::ProtocolError, now_ms());
        e.agent = Some(agent.id.clone());
        e.detail = json!({ "from": "client", "reason": "session belongs to another agent", "owner": owner });
        if let Err(err) = app.audit.append(vec![e]).await {
            tracing::error!("cannot record a session hijack attempt: {err}");
        }
    }
    reply::rpc_error(StatusCode::NOT_FOUND, None, codes::INVALID_REQUEST, "unknown or expired session")
}

/// A request of the stateless revision: it says so in the `MCP-Protocol-Version` header or in
/// its own `_meta`, and carries no session.
fn is_stateless(headers: &HeaderMap, msg: &Message) -> bool {
    let stateless = custos_mcp::protocol::STATELESS_REVISION;
    headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()) == Some(stateless)
        || msg
            .meta()
            .and_then(|m| {
                m.get(custos_mcp::protocol::META_PROTOCOL_VERSION).and_then(|v| v.as_str()).map(str::to_owned)
            })
            .as_deref()
            == Some(stateless)
}

/// The run a new pipeline records into.
#[derive(Debug)]
pub(crate) struct RunRef {
    pub run: RunId,
    pub parent: Option<RunId>,
    pub first_step_after: u64,
    /// Shared by the pipelines of one federated session.
    pub shared_steps: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The run's labels and findings, shared likewise.
    pub state: Option<Arc<custos_gateway::detect::RunState>>,
}

/// Headers and `initialize` `_meta` keys by which a client names its run and its parent run.
const RUN_HEADER: &str = "custos-run-id";
const PARENT_RUN_HEADER: &str = "custos-parent-run-id";
const RUN_META: &str = "io.custos/run";
const PARENT_RUN_META: &str = "io.custos/parentRun";

/// A run id the client gave in a header or in `initialize`'s `_meta` (the header wins).
fn named(headers: &HeaderMap, initialize: &Message, header: &str, meta: &str) -> Result<Option<String>, String> {
    let from_header =
        headers.get(header).map(|v| v.to_str().map(str::to_owned).map_err(|_| format!("`{header}` is not text")));
    let value = match from_header.transpose()? {
        Some(v) => Some(v),
        None => initialize.meta().and_then(|m| m.get(meta).and_then(|v| v.as_str()).map(str::to_owned)),
    };
    match value {
        Some(v) if !valid_run_id(&v) => {
            Err(format!("`{}` is not a run id: 1 to 128 letters, digits, `.`, `_`, `:` or `-`", v.escape_debug()))
        }
        other => Ok(other),
    }
}

pub(crate) fn valid_run_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// Records a refused request of an authenticated agent.
pub(crate) async fn record_refusal(app: &AppState, agent: &Agent, reason: &str, detail: serde_json::Value) {
    let mut e = NewEvent::new(EventKind::ProtocolError, now_ms());
    e.agent = Some(agent.id.clone());
    e.detail = json!({ "from": "client", "reason": reason, "detail": detail });
    if let Err(err) = app.audit.append(vec![e]).await {
        tracing::error!("cannot record a refused request: {err}");
    }
}

/// 128 random bits, hex: unguessable, so a session id cannot be found by trying.
pub(crate) fn new_session_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| "the random number generator failed".to_owned())?;
    Ok(hex::encode(bytes))
}

/// The caller's session named by the request (credential first, then ownership), in use while
/// the guard lives.
async fn admitted_session(
    app: &AppState,
    server: &str,
    headers: &HeaderMap,
    peer: Option<&ClientSpiffeId>,
) -> Result<(Arc<Session>, Busy), Response> {
    let agent = admit(app, server, headers, peer).await?.agent;
    session_of(app, headers, &agent).await
}

async fn get_mcp(
    State(app): State<Arc<AppState>>,
    Path(server): Path<String>,
    peer: Option<Extension<ClientSpiffeId>>,
    headers: HeaderMap,
) -> Response {
    let (session, _busy) = match admitted_session(&app, &server, &headers, peer.as_deref()).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    // The stream holds the session in use for as long as the client keeps it open.
    let (open, messages) = session.open_get_stream();
    let events = stream::unfold((open, messages), |(open, mut messages)| async move {
        let bytes = messages.recv().await?;
        Some((Ok::<_, Infallible>(event(bytes)), (open, messages)))
    });
    with_session(Sse::new(events).keep_alive(KeepAlive::default()).into_response(), &session)
}

async fn delete_mcp(
    State(app): State<Arc<AppState>>,
    Path(server): Path<String>,
    peer: Option<Extension<ClientSpiffeId>>,
    headers: HeaderMap,
) -> Response {
    let (session, _busy) = match admitted_session(&app, &server, &headers, peer.as_deref()).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    // Closed by whoever takes it out of the map (shutdown may be closing it too).
    if app.sessions().remove(&session.id).is_some() {
        app.sessions_gauge.dec(&[&session.server]);
        session.close("session deleted by the client").await;
    }
    StatusCode::NO_CONTENT.into_response()
}
