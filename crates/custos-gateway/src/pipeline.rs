//! The pipeline of one tool call, and faithful pass-through of everything else.
//!
//! Each stage below runs in this order for a `tools/call` from the client:
//!
//! 1. **attribute**: the agent (fixed per connection), the run, the next step number;
//! 2. **classify**: the tool's class from the config and its last seen descriptor;
//! 3. **decide**: Cedar, default deny; an evaluation error denies;
//! 4. **audit**: the request and the decision are appended in one durable transaction; if the
//!    append fails the call is refused (fail closed): nothing runs that is not recorded;
//! 5. **forward** the original bytes (allow) or **answer** with a JSON-RPC error naming the
//!    deciding policies (deny);
//! 6. when the answer comes back, **audit the result** (outcome, duration, size, SHA-256) before
//!    the client sees it.
//!
//! A later stage never widens what an earlier one decided.
//!
//! Stages 1 to 4 (with detection, the approval hold and the credential broker) are
//! protocol-neutral, in `pipeline/admit.rs`: a call in, an admission out. Stage 6 is too, in
//! `pipeline/finish.rs`. This file is the MCP front-end around them: it turns a `tools/call`
//! into a call and the admission back into JSON-RPC, and passes everything else through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use serde_json::value::RawValue;

use custos_config::{AuditConfig, Limits, OutputAction, ToolClasses, ToolFlows, ToolsListMode};
use custos_core::finding::kinds;
use custos_core::{Agent, Decision, Digest, EventKind, Finding, NewEvent, RunId, Severity, ToolDescriptor, ToolRef};
use custos_mcp::{codes, error_response, sniff, Frame, Message, MessageError, MessageKind, Side, ToolCallParams};
use custos_policy::{PolicyEngine, ToolInfo};
use custos_store::AuditLog;

use crate::broker::{Bearer, Broker, Minting, TokenCache};
use crate::detect::{labels, Before, Detection, RunState};
use crate::metrics::GatewayMetrics;
use crate::now_ms;
use crate::pending::{Answered, CallInFlight, PendingRequests, Refused};
use crate::tools_list::ToolsListing;
pub use admit::{Admission, Admitted, CallInput};
pub use finish::{Ended, Ending, Inspected};

/// What the transport does with a frame after the pipeline has seen it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes on to the other side.
    Forward(Vec<u8>),
    /// Send these bytes back to the side the frame came from (an error answer).
    Answer(Vec<u8>),
    /// Nothing to send (e.g. garbage from the upstream, already recorded).
    Drop,
    /// A call held for a human approval: the transport runs [`Gateway::settle`] on it beside
    /// its other traffic and acts on the outcome that gives.
    Held(Box<crate::held::Held>),
}

/// Everything a [`Gateway`] needs, gathered by the binary from config and flags.
#[derive(Debug)]
pub struct GatewaySpec {
    pub agent: Agent,
    /// Who the agent acts for: the human first, then the actors down to this agent (RFC 8693
    /// `act`). Empty when the credential does not say. Recorded on every event.
    pub principal: Vec<String>,
    pub run: RunId,
    /// The run that started this one (a sub-agent's run names its parent's), if any.
    pub parent_run: Option<RunId>,
    /// A step counter shared with other pipelines of the same run (a federated session has one
    /// pipeline per upstream but one run); `None`: this pipeline counts alone.
    pub shared_steps: Option<Arc<AtomicU64>>,
    /// The last step already recorded for this run (0 for a new run).
    pub first_step_after: u64,
    /// The upstream's name: tools are `server/name`.
    pub server: String,
    pub classes: ToolClasses,
    pub policy: Arc<PolicyEngine>,
    pub audit: AuditLog,
    pub tools_list: ToolsListMode,
    pub audit_config: AuditConfig,
    pub limits: Limits,
    /// Descriptors known from earlier runs (the inventory), so a call made before any
    /// `tools/list` in this connection is still classified by what the server declared.
    pub known_tools: Vec<ToolDescriptor>,
    pub metrics: GatewayMetrics,
    /// Spans of the calls (off by default: [`custos_telemetry::CallTracer::default`]).
    pub tracer: custos_telemetry::CallTracer,
    /// Where held calls wait for a human; `None`: a held call is refused like a denied one.
    pub approvals: Option<custos_approvals::Approvals>,
    /// The secrets and signing keys the gateway holds for upstreams, and the leak guard every
    /// upstream message passes; `None`: nothing is injected, and only credential shapes are
    /// looked for in what upstreams send.
    pub broker: Option<Arc<Broker>>,
    /// The detectors of this gateway process, shared by its sessions.
    pub detection: Arc<Detection>,
    /// What the run has gathered (labels, finding kinds), shared with the other pipelines of the
    /// same run; `None`: this pipeline's run starts clean and is its own.
    pub run_state: Option<Arc<RunState>>,
    /// The server's flow marks (`[[servers]] flows`): `resource.flows` of its tools.
    pub flows: ToolFlows,
    /// Tools of this server the inventory holds quarantined (listed with a descriptor that
    /// differs from their pin): refused until an operator accepts them.
    pub quarantined: Vec<String>,
}

/// The governed path between one client and one upstream server.
#[derive(Debug)]
pub struct Gateway {
    agent: Agent,
    principal: Vec<String>,
    run: RunId,
    parent_run: Option<RunId>,
    server: String,
    classes: ToolClasses,
    policy: Arc<PolicyEngine>,
    audit: AuditLog,
    tools_list: ToolsListMode,
    audit_config: AuditConfig,
    limits: Limits,
    steps: Arc<AtomicU64>,
    /// The latest descriptor of each tool, by name.
    /// The upstream's tools by name, as last listed. Shared, as every call reads its own.
    tools: Mutex<std::collections::HashMap<String, Arc<ToolDescriptor>>>,
    /// The protocol revision the two sides agreed in `initialize`, if they used it.
    negotiated: Mutex<Option<String>>,
    pending: PendingRequests,
    /// The upstream's requests to the client (sampling, roots, elicitation) not yet answered:
    /// only answers to these are relayed to the upstream.
    server_requests: PendingRequests,
    metrics: GatewayMetrics,
    tracer: custos_telemetry::CallTracer,
    approvals: Option<custos_approvals::Approvals>,
    broker: Arc<Broker>,
    /// Tokens minted for this run's session traffic (and for its calls with `per = "run"`).
    tokens: TokenCache,
    detection: Arc<Detection>,
    run_state: Arc<RunState>,
    flows: ToolFlows,
    /// Tools refused until accepted, and why.
    quarantined: Mutex<std::collections::HashMap<String, Quarantine>>,
}

/// Why a tool is refused until an operator accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Quarantine {
    /// Listed unlike its pin: changed since it was pinned, or new and held to the pin of a
    /// tool it resembles (a possible rename). Lifted once the store's pin is what was listed
    /// (`custos tools accept`), or the tool is listed like its pin again.
    Pin,
    /// Its descriptor was flagged as poisoned at the configured severity: the reason.
    Flagged(String),
}

/// Which side a protocol error came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Client,
    Upstream,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
        }
    }
}

impl Gateway {
    pub fn new(spec: GatewaySpec) -> Self {
        let tools = spec.known_tools.into_iter().map(|d| (d.tool.name().to_owned(), Arc::new(d))).collect();
        Self {
            pending: PendingRequests::new(spec.limits.max_pending_requests),
            server_requests: PendingRequests::new(spec.limits.max_pending_requests),
            agent: spec.agent,
            principal: spec.principal,
            run: spec.run,
            parent_run: spec.parent_run,
            server: spec.server,
            classes: spec.classes,
            policy: spec.policy,
            audit: spec.audit,
            tools_list: spec.tools_list,
            audit_config: spec.audit_config,
            limits: spec.limits,
            steps: spec.shared_steps.unwrap_or_else(|| Arc::new(AtomicU64::new(spec.first_step_after))),
            tools: Mutex::new(tools),
            negotiated: Mutex::new(None),
            metrics: spec.metrics,
            tracer: spec.tracer,
            approvals: spec.approvals,
            broker: spec.broker.unwrap_or_else(|| Arc::new(Broker::shapes_only())),
            tokens: TokenCache::default(),
            detection: spec.detection,
            run_state: spec.run_state.unwrap_or_default(),
            flows: spec.flows,
            quarantined: Mutex::new(spec.quarantined.into_iter().map(|name| (name, Quarantine::Pin)).collect()),
        }
    }

    pub(crate) fn approvals(&self) -> Option<&custos_approvals::Approvals> {
        self.approvals.as_ref()
    }

    pub(crate) fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    pub(crate) fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The run this pipeline records into.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    pub(crate) fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The requests of this pipeline's client still open: a front-end registers each call's id
    /// here before [`admit`](Self::admit), and takes it out once answered.
    pub fn pending(&self) -> &PendingRequests {
        &self.pending
    }

    /// An event about the call at `step` to `tool`.
    pub(crate) fn call_event(&self, kind: EventKind, step: u64, tool: &ToolRef) -> NewEvent {
        let mut e = self.event(kind);
        e.step = Some(step);
        e.tool = Some(tool.clone());
        e
    }

    /// The upstream's configured name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Appends `events` durably, each stamped with the principal chain when there is one.
    pub(crate) async fn record(
        &self,
        mut events: Vec<NewEvent>,
    ) -> Result<Vec<custos_store::StoredEvent>, custos_store::StoreError> {
        if !self.principal.is_empty() {
            for e in &mut events {
                if let Some(detail) = e.detail.as_object_mut() {
                    detail.insert("principal".into(), json!(self.principal));
                }
            }
        }
        self.audit.append(events).await
    }

    /// An event attributed to this connection's agent and run.
    fn event(&self, kind: EventKind) -> NewEvent {
        let mut e = NewEvent::new(kind, now_ms());
        e.agent = Some(self.agent.id.clone());
        e.run = Some(self.run.clone());
        e
    }

    /// Records that the run started. Fails when the log cannot be written: the transport must
    /// not start serving then.
    pub async fn start(&self, detail: serde_json::Value) -> Result<(), custos_store::StoreError> {
        let mut e = self.event(EventKind::RunStarted);
        e.detail = detail;
        if let Some(obj) = e.detail.as_object_mut() {
            obj.insert("server".into(), json!(self.server));
            obj.insert("owner".into(), json!(self.agent.owner));
            if let Some(parent) = &self.parent_run {
                obj.insert("parent_run".into(), json!(parent.0));
            }
        }
        self.record(vec![e]).await.map(|_| ())
    }

    /// Records that the upstream was started again (attempt `attempt`) after it died.
    pub async fn restarted(&self, attempt: u32, detail: serde_json::Value) -> Result<(), custos_store::StoreError> {
        let mut e = self.event(EventKind::UpstreamRestarted);
        e.detail = detail;
        if let Some(obj) = e.detail.as_object_mut() {
            obj.insert("server".into(), json!(self.server));
            obj.insert("attempt".into(), json!(attempt));
        }
        self.record(vec![e]).await.map(|_| ())
    }

    /// Records the end of the run and waits until every event is durable. Allowed calls that
    /// never got an answer (cancelled, or cut off by the shutdown) are closed as `unanswered`, so
    /// every call that ran has a `call.finished`.
    pub async fn end(&self, reason: &str) {
        let mut events: Vec<NewEvent> = self
            .pending
            .drain()
            .into_iter()
            .filter_map(|p| {
                let call = p.call?;
                let mut e = self.event(EventKind::CallFinished);
                e.step = Some(call.step);
                e.tool = Some(call.tool);
                e.detail = json!({
                    "request_id": p.id.get(),
                    "outcome": "unanswered",
                    "cancelled": p.cancelled,
                    "reason": reason,
                    "duration_ms": u64::try_from(call.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
                Some(e)
            })
            .collect();
        self.detection.abuse().session_ended(&self.session_key());
        let mut e = self.event(EventKind::RunEnded);
        e.detail = json!({ "reason": reason, "steps": self.steps.load(Ordering::SeqCst) });
        events.push(e);
        if let Err(err) = self.record(events).await {
            tracing::error!("cannot record the end of run `{}`: {err}", self.run);
        }
        if let Err(err) = self.audit.flush().await {
            tracing::error!("cannot flush the audit log: {err}");
        }
    }

    pub(crate) fn with_tools<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashMap<String, Arc<ToolDescriptor>>) -> T,
    ) -> T {
        f(&mut self.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    async fn protocol_error(&self, side: Origin, code: i64, reason: &str, frame: &[u8], method: Option<&str>) {
        self.record_protocol_error(side, code, reason, frame, method, None).await;
    }

    /// A `protocol.error` event, with the id of the message at fault when it has one.
    async fn record_protocol_error(
        &self,
        side: Origin,
        code: i64,
        reason: &str,
        frame: &[u8],
        method: Option<&str>,
        id: Option<&RawValue>,
    ) {
        self.metrics.protocol_errors.inc(&[side.as_str()]);
        let mut e = self.event(EventKind::ProtocolError);
        e.detail = json!({
            "from": side.as_str(),
            "code": code,
            "reason": reason,
            "bytes": frame.len(),
            "sha256": Digest::of(frame),
            "method": method,
        });
        if let (Some(id), Some(obj)) = (id, e.detail.as_object_mut()) {
            obj.insert("request_id".into(), json!(id.get()));
        }
        if let Err(err) = self.record(vec![e]).await {
            tracing::error!("cannot record a protocol error: {err}");
        }
    }

    // ---------------------------------------------------------------- client → upstream

    /// A frame from the client.
    pub async fn from_client(&self, frame: Frame) -> Outcome {
        let raw = match frame {
            Frame::Line(raw) => raw,
            Frame::Oversized { prefix, total } => return self.client_oversized(&prefix, total).await,
        };
        let side = Side::Client { max_argument_values: self.limits.max_argument_values };
        let msg = match Message::parse(raw, side) {
            Ok(msg) => msg,
            Err(err) => return self.client_malformed(err).await,
        };
        match &msg.kind {
            MessageKind::Request { id, method } if method == "tools/call" => {
                let id = id.clone();
                self.tool_call(&id, msg).await
            }
            MessageKind::Request { id, method } => {
                if method == "initialize" {
                    self.set_negotiated(custos_mcp::protocol::stated_version(method, msg.params.as_deref()));
                }
                match self.pending.insert(id, method) {
                    Ok(()) => Outcome::Forward(msg.raw),
                    Err(refused) => self.refuse_unregistered(Origin::Client, id, method, refused, &msg.raw).await,
                }
            }
            MessageKind::Notification { method } => {
                if method == "notifications/cancelled" {
                    if let Some(id) = cancelled_request_id(&msg) {
                        self.pending.mark_cancelled(&id);
                    }
                }
                Outcome::Forward(msg.raw)
            }
            // The client's answers to server-to-client requests (sampling, roots, elicitation):
            // relayed only to a request the upstream sent and the client has not answered yet.
            MessageKind::Response { id, .. } => match self.server_requests.answered(id) {
                Answered::Pending(_) => Outcome::Forward(msg.raw),
                Answered::NotForwarded | Answered::Unknown => {
                    let reason = format!(
                        "a response to id `{}`, which the upstream did not send or was answered already",
                        id.get()
                    );
                    self.record_protocol_error(
                        Origin::Client,
                        codes::INVALID_REQUEST,
                        &reason,
                        &msg.raw,
                        None,
                        Some(id),
                    )
                    .await;
                    // Not with the id: the client may have a request of its own under it.
                    Outcome::Answer(error_response(None, codes::INVALID_REQUEST, &reason, None))
                }
            },
        }
    }

    async fn client_malformed(&self, err: MessageError) -> Outcome {
        let reason = err.to_string();
        self.protocol_error(Origin::Client, err.code(), &reason, &[], err.method()).await;
        Outcome::Answer(error_response(err.id(), err.code(), &reason, None))
    }

    async fn client_oversized(&self, prefix: &[u8], total: usize) -> Outcome {
        let sniffed = sniff::sniff(prefix);
        let limit = self.limits.max_message_bytes;
        let reason = format!("message of {total} bytes exceeds the limit of {limit} bytes");
        self.protocol_error(Origin::Client, codes::INVALID_REQUEST, &reason, prefix, sniffed.method.as_deref()).await;
        let id = sniffed.raw_id();
        Outcome::Answer(error_response(
            id.as_deref(),
            codes::INVALID_REQUEST,
            &reason,
            Some(json!({ "limit": limit, "size": total })),
        ))
    }

    /// A request that cannot be registered as waiting for its answer (its id is in use by an
    /// unanswered one, or too many are unanswered): answered to the side that sent it
    /// (`origin`), never relayed, and recorded.
    async fn refuse_unregistered(
        &self,
        origin: Origin,
        id: &RawValue,
        method: &str,
        refused: Refused,
        raw: &[u8],
    ) -> Outcome {
        let reason = match (refused, origin) {
            (Refused::DuplicateId, _) => {
                format!("request id `{}` is already in use by an unanswered request", id.get())
            }
            (Refused::Full, Origin::Client) => format!(
                "too many unanswered requests (limit {}); retry when earlier ones complete",
                self.limits.max_pending_requests
            ),
            (Refused::Full, Origin::Upstream) => format!(
                "too many unanswered requests to the client (limit {}); retry when earlier ones complete",
                self.limits.max_pending_requests
            ),
        };
        self.record_protocol_error(origin, codes::INVALID_REQUEST, &reason, raw, Some(method), Some(id)).await;
        Outcome::Answer(error_response(Some(id), codes::INVALID_REQUEST, &reason, None))
    }

    fn set_negotiated(&self, version: Option<String>) {
        if let Some(v) = version {
            *self.negotiated.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
        }
    }

    fn negotiated(&self) -> Option<String> {
        self.negotiated.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Stages 1–5 for one `tools/call`.
    async fn tool_call(&self, id: &RawValue, msg: Message) -> Outcome {
        // The name is checked before anything is recorded: it becomes the event's tool.
        let named = ToolCallParams::from_message(&msg).and_then(|params| {
            let tool = ToolRef::new(&self.server, &params.name).map_err(|e| e.to_string())?;
            self.check_spelling(&tool)?;
            Ok((params, tool))
        });
        let (params, tool) = match named {
            Ok(named) => named,
            Err(reason) => {
                self.protocol_error(Origin::Client, codes::INVALID_PARAMS, &reason, &msg.raw, Some("tools/call")).await;
                return Outcome::Answer(error_response(Some(id), codes::INVALID_PARAMS, &reason, None));
            }
        };
        // Reserve the id before recording anything, so a duplicate is refused, not audited twice.
        if let Err(refused) = self.pending.reserve(id, "tools/call") {
            return self.refuse_unregistered(Origin::Client, id, "tools/call", refused, &msg.raw).await;
        }

        let protocol =
            custos_mcp::protocol::stated_version("tools/call", msg.params.as_deref()).or_else(|| self.negotiated());
        let (traceparent, tracestate) = custos_mcp::trace::trace_context(&msg);
        let parent = custos_telemetry::TraceHeaders::from_peer(traceparent.as_deref(), tracestate.as_deref());
        let input = CallInput { request_id: id.get(), tool, arguments: params.arguments(), protocol, parent };
        match self.admit(input).await {
            Admission::Run { call, token, slot, replay } => {
                let in_flight = CallInFlight::new(call.tool, call.step, call.received, token, slot, replay);
                self.forward_allowed(id, msg.raw, call.span, in_flight)
            }
            Admission::Hold { call, request } => {
                let progress_token = progress_token(&msg);
                let mut held = crate::held::Held::new(id.to_owned(), msg.raw, call, *request);
                held.progress_token = progress_token;
                Outcome::Held(Box::new(held))
            }
            Admission::Deny { call, policies, reason } => {
                self.pending.remove(id);
                self.denied(id, &call.tool, call.step, &policies, &reason, None)
            }
            Admission::Unrecorded { tool, what } => {
                self.pending.remove(id);
                unrecorded(id, &tool, what)
            }
        }
    }

    /// The `execute_tool` span of a call, child of the trace its client named (in
    /// `params._meta`, else in the HTTP request's headers); empty when tracing is off.
    fn call_span(
        &self,
        parent: Option<custos_telemetry::TraceHeaders>,
        request_id: &str,
        tool: &ToolRef,
        step: u64,
        class: custos_core::ToolClass,
        protocol: Option<&str>,
    ) -> custos_telemetry::CallSpan {
        if !self.tracer.is_on() {
            return custos_telemetry::CallSpan::default();
        }
        self.tracer.start_call(custos_telemetry::CallStart {
            tool: tool.name(),
            server: &self.server,
            request_id,
            agent: &self.agent.id.0,
            run: &self.run.0,
            step,
            class: class.as_str(),
            protocol,
            parent,
        })
    }

    /// Forwards the bytes of an allowed call (its trace context written into them), tracked as
    /// in flight until its answer comes back.
    pub(crate) fn forward_allowed(
        &self,
        id: &RawValue,
        raw: Vec<u8>,
        span: custos_telemetry::CallSpan,
        mut call: CallInFlight,
    ) -> Outcome {
        let (raw, trace) = self.traced_forward(raw, span, &call.tool);
        call.trace = trace;
        self.pending.set_call(id, call);
        Outcome::Forward(raw)
    }

    /// The bytes to forward for an allowed call, and its spans: the upstream span starts here,
    /// and its trace context replaces the client's in `params._meta` (after the call was decided
    /// and recorded; the arguments keep their text). With tracing off the bytes are unchanged.
    pub(crate) fn traced_forward(
        &self,
        raw: Vec<u8>,
        span: custos_telemetry::CallSpan,
        tool: &ToolRef,
    ) -> (Vec<u8>, Option<Box<crate::pending::CallTrace>>) {
        let Some(trace) = self.upstream_trace(span, tool) else { return (raw, None) };
        let raw = match &trace.headers {
            Some(h) => {
                custos_mcp::trace::with_trace_context(&raw, &h.traceparent, h.tracestate.as_deref()).unwrap_or(raw)
            }
            None => raw,
        };
        (raw, Some(trace))
    }

    /// The spans of an allowed call about to be forwarded (its upstream span starts now), and
    /// the trace context the upstream is given; `None` when tracing is off.
    pub fn upstream_trace(
        &self,
        span: custos_telemetry::CallSpan,
        tool: &ToolRef,
    ) -> Option<Box<crate::pending::CallTrace>> {
        if !self.tracer.is_on() {
            return None;
        }
        let upstream = span.upstream(tool.name(), &self.server);
        let headers = upstream.headers();
        Some(Box::new(crate::pending::CallTrace { call: span, upstream, headers }))
    }

    /// Refuses a call of a tool the upstream did not list whose name differs from a listed one
    /// only by case: an upstream that looks names up without case would run the listed tool,
    /// which policy decided about under another name.
    fn check_spelling(&self, tool: &ToolRef) -> Result<(), String> {
        let listed = self.with_tools(|t| {
            if t.contains_key(tool.name()) {
                return None;
            }
            t.keys().find(|name| name.eq_ignore_ascii_case(tool.name())).cloned()
        });
        match listed {
            None => Ok(()),
            Some(listed) => Err(format!(
                "unknown tool `{}`: the server lists `{listed}`, and tool names are case-sensitive",
                tool.name()
            )),
        }
    }

    /// Where request ids are unique: one run's traffic to this upstream.
    fn session_key(&self) -> String {
        format!("{}\u{1f}{}", self.run.0, self.server)
    }

    /// Refuses a quarantined tool: its listed descriptor differs from its pin, or it is new and
    /// resembles another tool of the server (until an operator accepts it; the pin is read
    /// again, so an acceptance counts at once), or the config quarantines descriptors flagged
    /// as poisoned.
    fn check_quarantine(&self, tool: &ToolRef, descriptor: Option<&ToolDescriptor>, before: &mut Before) {
        let quarantine = {
            let quarantined = self.quarantined.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            quarantined.get(tool.name()).cloned()
        };
        let (kind, reason) = match quarantine {
            None => return,
            Some(Quarantine::Pin) => {
                let pin = self.detection.pin(tool);
                if let (Some(pin), Some(listed)) = (&pin, descriptor) {
                    if pin.digest == listed.digest {
                        self.quarantined.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(tool.name());
                        return;
                    }
                }
                let reason = match pin.as_ref().and_then(custos_store::ToolPin::resembles) {
                    Some(other) => format!(
                        "it is new and resembles `{other}` (a possible rename or look-alike), so it is held to that \
                         tool's pin; see `custos tools diff {tool}`, then `custos tools accept {tool}`"
                    ),
                    None => RUG_PULL_QUARANTINE.to_owned(),
                };
                (kinds::RUG_PULL, reason)
            }
            Some(Quarantine::Flagged(reason)) => (kinds::TOOL_POISONING, reason),
        };
        let why = format!("`{tool}` is quarantined: {reason}");
        before.add_refusal(Finding::new(kind, Severity::High, "quarantined", &why), why);
    }

    /// A call that sends data out in a run that read untrusted input and sensitive data: the
    /// pattern of a toxic flow. Recorded; policy decides (`examples/policies/toxic-flow.cedar`).
    fn check_toxic_flow(&self, tool: &ToolRef, flows: &[String], before: &mut Before) {
        let egress = flows.iter().any(|f| f == labels::EGRESS);
        if egress
            && self.run_state.has_label(labels::UNTRUSTED_INPUT)
            && self.run_state.has_label(labels::READ_SENSITIVE)
        {
            let evidence = format!("`{tool}` sends data out after this run read untrusted input and sensitive data");
            before.add(
                Finding::new(kinds::TOXIC_FLOW, Severity::High, "egress_after_untrusted_and_sensitive", &evidence),
                "recorded",
            );
        }
    }

    /// One `finding.recorded` per finding made before the call was decided (a first use only
    /// when the call is allowed; a replay refused but held for a human says `held`).
    fn finding_events(&self, before: &Before, decision: &Decision, step: u64, tool: &ToolRef) -> Vec<NewEvent> {
        let held = matches!(decision, Decision::Hold { .. });
        let first_use = before.first_use.as_ref().filter(|_| decision.is_allow()).map(|f| (f, "recorded"));
        before
            .findings
            .iter()
            .map(|(finding, action)| {
                let action = if held && finding.kind == kinds::REPLAY && *action == "denied" { "held" } else { action };
                (finding, action)
            })
            .chain(first_use)
            .map(|(finding, action)| self.finding_event(finding, action, Some((step, tool))))
            .collect()
    }

    /// A `finding.recorded` event, counted.
    pub(crate) fn finding_event(&self, finding: &Finding, action: &str, at: Option<(u64, &ToolRef)>) -> NewEvent {
        self.metrics.findings.inc(&[&finding.kind, finding.severity.as_str()]);
        let mut e = self.event(EventKind::FindingRecorded);
        if let Some((step, tool)) = at {
            e.step = Some(step);
            e.tool = Some(tool.clone());
        }
        e.detail = finding.detail(action);
        if let Some(obj) = e.detail.as_object_mut() {
            obj.insert("server".into(), json!(self.server));
        }
        e
    }

    /// The labels a call that runs leaves on its run (its tool's `untrusted_input` and
    /// `read_sensitive` marks), each new one recorded as `run.labeled`.
    pub(crate) fn label_events(&self, flows: &[String], step: u64, tool: &ToolRef) -> Vec<NewEvent> {
        flows
            .iter()
            .filter(|f| f.as_str() == labels::UNTRUSTED_INPUT || f.as_str() == labels::READ_SENSITIVE)
            .filter_map(|label| self.labeled(label, &format!("`{tool}` is marked `{label}`"), step, tool))
            .collect()
    }

    /// Puts `label` on the run; a `run.labeled` event when it is new.
    fn labeled(&self, label: &str, why: &str, step: u64, tool: &ToolRef) -> Option<NewEvent> {
        if !self.run_state.label(label) {
            return None;
        }
        let mut e = self.event(EventKind::RunLabeled);
        e.step = Some(step);
        e.tool = Some(tool.clone());
        e.detail = json!({ "label": label, "why": why });
        Some(e)
    }

    /// What the gateway knows about the run: its labels and the kinds of finding made on it.
    pub fn run_state(&self) -> &Arc<RunState> {
        &self.run_state
    }

    /// The flow marks of one of this server's tools.
    pub(crate) fn flows_of(&self, name: &str) -> Vec<String> {
        self.flows.flows_of(name)
    }

    pub(crate) fn detection(&self) -> &Detection {
        &self.detection
    }

    /// The credentials a call to `tool` uses, as the log names them, and the token minted for it
    /// when the upstream takes minted tokens (only for a call about to run). A token that cannot
    /// be minted turns an allow into a deny: nothing runs without the credential it needs.
    pub(crate) fn call_credentials(
        &self,
        decision: Decision,
        tool: &ToolRef,
        step: u64,
    ) -> (Decision, Vec<serde_json::Value>, Option<Bearer>) {
        let mut credentials: Vec<serde_json::Value> =
            self.broker.credentials_of(&self.server).into_iter().map(|c| json!(c)).collect();
        if !decision.is_allow() {
            return (decision, credentials, None);
        }
        let who =
            Minting { agent: &self.agent.id.0, principal: &self.principal, run: Some(&self.run.0), scope: tool.name() };
        match self.tokens.token(&self.broker, &self.server, &who, true) {
            Ok(None) => (decision, credentials, None),
            Ok(Some(minted)) => {
                credentials.push(json!({
                    "name": format!("signing_key:{}", minted.kid),
                    "fingerprint": minted.kid,
                    "jti": minted.jti,
                    "expires_at": minted.expires_at,
                }));
                (decision, credentials, Some(Bearer::new(minted.token)))
            }
            Err(err) => {
                tracing::error!("denying `{tool}` (step {step}): {err}");
                let reason = format!("the gateway cannot mint a token for upstream `{}`: {err}", self.server);
                (Decision::Deny { policies: Vec::new(), reason }, credentials, None)
            }
        }
    }

    /// The trace context an upstream was given for the forwarded call `id`, if tracing is on.
    pub fn trace_headers(&self, id: &RawValue) -> Option<custos_telemetry::TraceHeaders> {
        if !self.tracer.is_on() {
            return None;
        }
        self.pending.call_trace_headers(id)
    }

    /// The token header a request to this upstream carries, when the gateway mints tokens for
    /// it: a `tools/call` carries its own (minted when it was allowed), anything else the run's
    /// session token (scope `mcp:session`). `Err`: one is needed and cannot be minted.
    pub fn upstream_token(&self, frame: &[u8]) -> Result<Option<(String, String)>, String> {
        let Some(settings) = self.broker.token_settings(&self.server) else { return Ok(None) };
        let sniffed = sniff::sniff(frame);
        let call_token = match (sniffed.method.as_deref(), sniffed.raw_id()) {
            (Some("tools/call"), Some(id)) => self.pending.call_token(&id),
            _ => None,
        };
        let token = match call_token {
            Some(token) => token,
            None => {
                let who = Minting {
                    agent: &self.agent.id.0,
                    principal: &self.principal,
                    run: Some(&self.run.0),
                    scope: SESSION_SCOPE,
                };
                match self.tokens.token(&self.broker, &self.server, &who, false) {
                    Ok(Some(minted)) => Bearer::new(minted.token),
                    Ok(None) => return Ok(None),
                    Err(err) => return Err(err.to_string()),
                }
            }
        };
        Ok(Some((settings.header.clone(), settings.render(token.expose()))))
    }

    /// The answer to a denied call: `-32001` naming the tool, why, the deciding policies, the
    /// run and step, and the approval when the call had been held for one.
    pub(crate) fn denied(
        &self,
        id: &RawValue,
        tool: &ToolRef,
        step: u64,
        policies: &[String],
        reason: &str,
        approval: Option<&str>,
    ) -> Outcome {
        let mut data = json!({ "policies": policies, "run": self.run.0, "step": step });
        if let (Some(approval), Some(data)) = (approval, data.as_object_mut()) {
            data.insert("approval_id".into(), json!(approval));
        }
        Outcome::Answer(error_response(
            Some(id),
            codes::DENIED,
            &format!("custos denied `{tool}`: {reason}"),
            Some(data),
        ))
    }

    // ---------------------------------------------------------------- upstream → client

    /// A frame from the upstream server.
    pub async fn from_upstream(&self, frame: Frame) -> Outcome {
        let raw = match frame {
            Frame::Line(raw) => raw,
            Frame::Oversized { prefix, total } => return self.upstream_oversized(&prefix, total).await,
        };
        // Before anything reads it: what the agent, the log and the inventory see of an upstream
        // message has every credential the gateway knows of redacted.
        let (raw, mut findings) = self.guard_output(raw);
        let msg = match Message::parse(raw, Side::Upstream) {
            Ok(msg) => msg,
            Err(err) => {
                tracing::warn!("refusing a message from the upstream: {err}");
                self.protocol_error(Origin::Upstream, err.code(), &err.to_string(), &[], err.method()).await;
                if !findings.is_empty() {
                    self.record_findings(findings).await;
                }
                // An answer the gateway refuses still ends the request it answers; anything
                // else has nothing the client could match it to.
                return match err.id().filter(|_| err.is_response()) {
                    Some(id) => {
                        let reason = format!("upstream `{}` sent an answer the gateway refuses: {err}", self.server);
                        self.fail_pending(id, &reason).await
                    }
                    None => Outcome::Drop,
                };
            }
        };
        let mut pending = match &msg.kind {
            MessageKind::Response { id, .. } => match self.pending.answered(id) {
                Answered::Pending(pending) => Some(pending),
                // Relay no answer to a request the gateway did not forward to this upstream,
                // or answered already: the client would take it for the answer to a request
                // of its own (one being decided or held, or one it sends later), unrecorded.
                unmatched => {
                    if !findings.is_empty() {
                        self.record_findings(findings).await;
                    }
                    let reason = match unmatched {
                        Answered::NotForwarded => {
                            format!("a response to id `{}`, a request not forwarded to the upstream", id.get())
                        }
                        _ => format!(
                            "a response to id `{}`, which the gateway did not forward or was answered already",
                            id.get()
                        ),
                    };
                    tracing::warn!("dropping an unsolicited response from upstream `{}`: {reason}", self.server);
                    self.record_protocol_error(
                        Origin::Upstream,
                        codes::INVALID_REQUEST,
                        &reason,
                        &msg.raw,
                        None,
                        Some(id),
                    )
                    .await;
                    return Outcome::Drop;
                }
            },
            MessageKind::Request { id, method } => {
                if let Err(refused) = self.server_requests.insert(id, method) {
                    if !findings.is_empty() {
                        self.record_findings(findings).await;
                    }
                    return self.refuse_unregistered(Origin::Upstream, id, method, refused, &msg.raw).await;
                }
                None
            }
            MessageKind::Notification { .. } => None,
        };
        let cancelled = pending.as_ref().is_some_and(|p| p.cancelled);
        if let (Some(call), MessageKind::Response { id, is_error }) =
            (pending.as_mut().and_then(|p| p.call.as_mut()), &msg.kind)
        {
            for f in &mut findings {
                f.step = Some(call.step);
                f.tool = Some(call.tool.clone());
            }
            return self.call_finished(id, call, *is_error, cancelled, msg.raw, findings).await;
        }
        if !findings.is_empty() {
            self.record_findings(findings).await;
        }
        let (Some(pending), MessageKind::Response { is_error, .. }) = (pending, &msg.kind) else {
            // Server-to-client requests and notifications pass through as they are.
            return Outcome::Forward(msg.raw);
        };
        match pending.method.as_str() {
            "tools/list" if !is_error => self.tools_listed(msg.raw).await,
            "initialize" if !is_error => {
                self.set_negotiated(negotiated_version(&msg.raw));
                Outcome::Forward(msg.raw)
            }
            _ => Outcome::Forward(msg.raw),
        }
    }

    /// Stage 6: the result of an allowed call, recorded before the client sees it.
    async fn call_finished(
        &self,
        id: &RawValue,
        call: &mut CallInFlight,
        is_error: bool,
        cancelled: bool,
        raw: Vec<u8>,
        findings: Vec<NewEvent>,
    ) -> Outcome {
        self.upstream_answered(call, is_error);
        let mut result = result_member(&raw);
        // Detect (post): instructions for the model, invisible text or exfiltration bait in the
        // result. The run is labelled `untrusted_input`; `[detection] output` says whether the
        // result passes, is redacted or is withheld.
        let (raw, inspected) = self.inspect_result(id, call, raw, result.as_mut());
        let tool_error = result.as_ref().is_some_and(|r| r.get("isError") == Some(&json!(true)));
        let outcome = if is_error {
            Ended::Error
        } else if tool_error {
            Ended::ToolError
        } else {
            Ended::Ok
        };
        let ending = Ending {
            request_id: id.get(),
            outcome,
            cancelled,
            answer: &raw,
            error: if is_error { error_member(&raw) } else { None },
            error_code: if is_error { Some(error_code(&raw)) } else { tool_error.then(|| "tool_error".to_owned()) },
            result: result.as_ref(),
        };
        match self.finish(call, ending, findings, inspected).await {
            Ok(()) => Outcome::Forward(raw),
            Err(err) => {
                tracing::error!("withholding the result of `{}` (step {}): {err}", call.tool, call.step);
                Outcome::Forward(error_response(
                    Some(id),
                    codes::AUDIT_UNAVAILABLE,
                    &format!("result of `{}` withheld: the audit log cannot be written", call.tool),
                    None,
                ))
            }
        }
    }

    /// Detect (post) on a call's result: the message to forward (the same bytes unless the
    /// result is redacted or withheld) and the events to record with the result.
    fn inspect_result(
        &self,
        id: &RawValue,
        call: &CallInFlight,
        raw: Vec<u8>,
        result: Option<&mut serde_json::Value>,
    ) -> (Vec<u8>, Vec<NewEvent>) {
        let Some(result) = result else { return (raw, Vec::new()) };
        let Some(inspected) = self.inspect(call, result) else { return (raw, Vec::new()) };
        let raw = match inspected.action {
            OutputAction::Record => raw,
            OutputAction::Redact => with_result(&raw, result).unwrap_or(raw),
            OutputAction::Block => error_response(
                Some(id),
                codes::DENIED,
                &format!("custos withheld the result of `{}`: it carries {}", call.tool, inspected.rules.join(", ")),
                Some(json!({ "findings": inspected.rules, "run": self.run.0, "step": call.step })),
            ),
        };
        (raw, inspected.events)
    }

    /// Runs the leak guard over one upstream message: the message as the agent may see it, and
    /// a `finding.recorded` for each credential found in it (none in the common case, where the
    /// bytes come back untouched).
    fn guard_output(&self, raw: Vec<u8>) -> (Vec<u8>, Vec<NewEvent>) {
        let Some(cleaned) = self.broker.guard().scan_message(&raw) else { return (raw, Vec::new()) };
        let findings = self.leak_findings(&cleaned.hits, cleaned.more, "message");
        tracing::warn!(
            "upstream `{}` sent {} credential(s) toward the agent; redacted",
            self.server,
            cleaned.hits.len() + cleaned.more
        );
        (cleaned.raw, findings)
    }

    /// One `finding.recorded` per hit of the leak guard in what this upstream sent (`channel`:
    /// `message` or `stderr`).
    pub fn leak_findings(&self, hits: &[custos_secrets::Hit], more: usize, channel: &str) -> Vec<NewEvent> {
        hits.iter()
            .map(|hit| {
                self.metrics.findings.inc(&["secret_leak", "high"]);
                let mut e = self.event(EventKind::FindingRecorded);
                e.detail = json!({
                    "finding": "secret_leak",
                    "severity": "high",
                    "rule": hit.rule,
                    "secret": hit.secret,
                    "fingerprint": hit.fingerprint,
                    "server": self.server,
                    "channel": channel,
                    "encoding": hit.encoding,
                    "path": hit.path,
                    "action": "redacted",
                    "more_in_message": more,
                });
                e
            })
            .collect()
    }

    /// Records findings made outside a message (e.g. in a child's stderr).
    pub async fn record_findings(&self, findings: Vec<NewEvent>) {
        if let Err(err) = self.record(findings).await {
            tracing::error!("cannot record a finding: {err}");
        }
    }

    /// The leak guard and the credentials this upstream is given.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// A `tools/list` result: into the inventory, then filtered for this agent.
    /// A listing of this server's tools (an MCP `tools/list` answer, or an API's operations):
    /// recorded in the inventory (a tool listed unlike its pin is quarantined), scanned for
    /// poisoned and shadowing descriptors, and remembered for classifying later calls.
    pub async fn observe_listing(&self, descriptors: &[ToolDescriptor]) {
        match self.audit.observe_tools(descriptors.to_vec(), self.event(EventKind::ToolSeen)).await {
            Ok(sightings) => {
                // A tool listed unlike its pin (or new and like another tool) is refused until
                // an operator accepts it (the store recorded the rug pull); one listed like its
                // pin again is not.
                let mut quarantined = self.quarantined.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (d, sighting) in descriptors.iter().zip(sightings) {
                    match sighting {
                        custos_store::ToolSighting::Quarantined { .. } => {
                            quarantined.insert(d.tool.name().to_owned(), Quarantine::Pin);
                        }
                        _ if quarantined.get(d.tool.name()) == Some(&Quarantine::Pin) => {
                            quarantined.remove(d.tool.name());
                        }
                        _ => {}
                    }
                }
            }
            // The list is only information; the calls made from it are each decided and
            // recorded (or refused) on their own.
            Err(err) => tracing::error!("cannot record the tool inventory: {err}"),
        }
        // Detect (on sight): poisoned and shadowing descriptors.
        let flagged = self.detection.scan_listing(&self.server, descriptors);
        if !flagged.is_empty() {
            let mut events = Vec::with_capacity(flagged.len());
            for crate::detect::Flagged { tool, finding, quarantine } in &flagged {
                if let Some(reason) = quarantine {
                    self.quarantined
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(tool.name().to_owned(), Quarantine::Flagged(reason.clone()));
                }
                let mut e =
                    self.finding_event(finding, if quarantine.is_some() { "quarantined" } else { "recorded" }, None);
                e.tool = Some(tool.clone());
                events.push(e);
            }
            self.record_findings(events).await;
        }
        self.with_tools(|t| {
            for d in descriptors {
                t.insert(d.tool.name().to_owned(), Arc::new(d.clone()));
            }
        });
    }

    async fn tools_listed(&self, raw: Vec<u8>) -> Outcome {
        let Some(listing) = ToolsListing::parse(&self.server, &raw) else {
            return Outcome::Forward(raw);
        };
        let descriptors = listing.descriptors();
        self.observe_listing(&descriptors).await;
        if self.tools_list == ToolsListMode::Show {
            return Outcome::Forward(raw);
        }
        // A tool no agent may call by its name (see `check_tool_name`) is not offered either.
        let filtered = listing.filtered(|d| {
            if custos_core::check_tool_name(d.tool.name()).is_err() {
                return false;
            }
            let class = self.classes.classify(d.tool.name(), Some(d));
            let info = ToolInfo { tool: &d.tool, class, annotations: d.raw.get("annotations") };
            self.policy.may_ever_allow(&self.agent, &info)
        });
        Outcome::Forward(filtered.unwrap_or(raw))
    }

    async fn upstream_oversized(&self, prefix: &[u8], total: usize) -> Outcome {
        let sniffed = sniff::sniff(prefix);
        let limit = self.limits.max_message_bytes;
        let reason = format!("upstream message of {total} bytes exceeds the limit of {limit} bytes");
        self.protocol_error(Origin::Upstream, codes::INTERNAL_ERROR, &reason, prefix, sniffed.method.as_deref()).await;
        let Some(id) = sniffed.raw_id() else { return Outcome::Drop };
        self.fail_pending(&id, &reason).await
    }

    /// Answers the client's request `id` with an error instead of the upstream's refused
    /// answer, closing its call in the log. Nothing, if no forwarded request `id` is waiting.
    async fn fail_pending(&self, id: &RawValue, reason: &str) -> Outcome {
        let Answered::Pending(pending) = self.pending.answered(id) else { return Outcome::Drop };
        if let Some(call) = &pending.call {
            let mut e = self.event(EventKind::CallFinished);
            e.step = Some(call.step);
            e.tool = Some(call.tool.clone());
            e.detail = json!({ "request_id": id.get(), "outcome": "error", "reason": reason });
            if let Err(err) = self.record(vec![e]).await {
                tracing::error!("cannot record the end of step {}: {err}", call.step);
            }
        }
        Outcome::Forward(error_response(Some(id), codes::INTERNAL_ERROR, reason, None))
    }

    /// The upstream is gone: every request still waiting gets an error, and the exit is recorded.
    /// Returns the answers for the client.
    pub async fn upstream_gone(&self, status: &str) -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        let mut answers = Vec::new();
        for p in self.pending.drain() {
            let reason = format!("upstream `{}` exited ({status}) before answering", self.server);
            if let Some(call) = &p.call {
                self.metrics.upstream_errors.inc(&[&self.server]);
                let mut e = self.event(EventKind::CallFinished);
                e.step = Some(call.step);
                e.tool = Some(call.tool.clone());
                e.detail = json!({ "request_id": p.id.get(), "outcome": "upstream_exited", "reason": reason });
                events.push(e);
            }
            answers.push(error_response(Some(&p.id), codes::UPSTREAM_UNAVAILABLE, &reason, None));
        }
        // A restarted upstream never sent these: the client's late answers to them are refused.
        self.server_requests.drain();
        let mut exited = self.event(EventKind::UpstreamExited);
        exited.detail = json!({ "server": self.server, "status": status, "unanswered": answers.len() });
        events.push(exited);
        if let Err(err) = self.record(events).await {
            tracing::error!("cannot record the upstream's exit: {err}");
        }
        answers
    }
}

/// How deep a recorded result or argument value may nest in its event's detail (the rest is
/// marked as cut; the event keeps the digest of the whole). Arguments deeper than this are
/// refused anyway ([`custos_core::MAX_ARGUMENT_DEPTH`]).
const RECORDED_DEPTH: usize = 64;

/// Why a tool listed with a descriptor that differs from its pin is refused.
const RUG_PULL_QUARANTINE: &str =
    "its descriptor changed since it was pinned (a possible rug pull); see `custos tools diff`, then `custos tools accept`";

/// The scope of a token minted for an upstream's session traffic (initialize, lists, pings):
/// anything that is not one tool's call.
pub const SESSION_SCOPE: &str = "mcp:session";

/// `raw` (a JSON-RPC response) with its `result` replaced by `result`.
fn with_result(raw: &[u8], result: &serde_json::Value) -> Option<Vec<u8>> {
    let mut message: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw).ok()?;
    message.insert("result".to_owned(), result.clone());
    serde_json::to_vec(&message).ok()
}

/// `params.requestId` of a `notifications/cancelled`.
fn cancelled_request_id(msg: &Message) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Cancelled {
        #[serde(rename = "requestId")]
        request_id: Box<RawValue>,
    }
    serde_json::from_str::<Cancelled>(msg.params.as_ref()?.get()).ok().map(|c| c.request_id)
}

fn result_member(raw: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct R {
        result: serde_json::Value,
    }
    serde_json::from_slice::<R>(raw).ok().map(|r| r.result)
}

fn error_member(raw: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct E {
        error: serde_json::Value,
    }
    let error = serde_json::from_slice::<E>(raw).ok()?.error;
    Some(json!({ "code": error.get("code"), "message": error.get("message") }))
}

/// The JSON-RPC error code of an error answer, as text (`error.type` of its span).
fn error_code(raw: &[u8]) -> String {
    error_member(raw).and_then(|e| e.get("code").map(ToString::to_string)).unwrap_or_else(|| "error".to_owned())
}

fn negotiated_version(raw: &[u8]) -> Option<String> {
    result_member(raw)?.get("protocolVersion")?.as_str().map(str::to_owned)
}

/// The `progressToken` a request's `_meta` carries, as the client spelled it.
fn progress_token(msg: &Message) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "progressToken")]
        token: Option<Box<RawValue>>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    let params: Params = serde_json::from_str(msg.params.as_ref()?.get()).ok()?;
    params.meta?.token
}

/// The answer to a call refused before it ran because `what` cannot be recorded (fail closed).
pub(crate) fn unrecorded(id: &RawValue, tool: &ToolRef, what: &str) -> Outcome {
    Outcome::Answer(error_response(
        Some(id),
        codes::AUDIT_UNAVAILABLE,
        &format!("call to `{tool}` refused: {what}"),
        None,
    ))
}

mod admit;
mod finish;
#[cfg(test)]
mod tests;
