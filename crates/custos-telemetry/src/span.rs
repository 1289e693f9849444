//! The spans of one governed tool call.
//!
//! ```text
//! execute_tool {tool}            SERVER   the whole call, from request to recorded answer
//! ├── policy                     INTERNAL detectors and Cedar
//! ├── approval wait              INTERNAL only for a held call, until the verdict
//! ├── audit append               INTERNAL each durable append (request + decision, result)
//! └── tools/call {tool}          CLIENT   forward to answer; its context goes to the upstream
//! ```
//!
//! The call span follows the GenAI semantic conventions for tool execution
//! (`gen_ai.operation.name = execute_tool`) and the MCP ones (`mcp.method.name`,
//! `mcp.session.id`); what the gateway decided is in `custos.*` attributes. No argument, result
//! or credential is ever an attribute: only names, ids, digests' absence and counts.

use std::borrow::Cow;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, Span};

use crate::context::{remote_parent, TraceHeaders};

/// The attribute names the gateway's spans carry.
pub mod attributes {
    /// Always `execute_tool` (GenAI).
    pub const OPERATION: &str = "gen_ai.operation.name";
    /// The tool's name as the upstream knows it (GenAI).
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    /// The JSON-RPC id of the `tools/call` request (GenAI).
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    /// The agent making the call: the caller (GenAI).
    pub const AGENT_ID: &str = "gen_ai.agent.id";
    /// Always `tools/call` (MCP).
    pub const MCP_METHOD: &str = "mcp.method.name";
    /// The client's MCP session, when it has one (MCP).
    pub const MCP_SESSION: &str = "mcp.session.id";
    /// The protocol revision the call was made under (MCP).
    pub const MCP_PROTOCOL: &str = "mcp.protocol.version";
    /// The JSON-RPC error code of an error answer, or `tool_error` (MCP, general).
    pub const ERROR_TYPE: &str = "error.type";
    /// The upstream server's configured name.
    pub const SERVER: &str = "custos.server";
    /// The workflow run the call belongs to.
    pub const RUN: &str = "custos.run.id";
    /// The call's step number in its run.
    pub const STEP: &str = "custos.step";
    /// `read`, `write` or `privileged`.
    pub const CLASS: &str = "custos.tool.class";
    /// `allow`, `deny` or `hold` (a held call that is settled gets a second value).
    pub const DECISION: &str = "custos.decision";
    /// The ids of the policies that decided.
    pub const POLICIES: &str = "custos.policies";
    /// The kinds of the findings made on the request.
    pub const FINDINGS: &str = "custos.findings";
    /// The rules that flagged the result.
    pub const RESULT_FINDINGS: &str = "custos.result.findings";
    /// The approval a held call waited for.
    pub const APPROVAL: &str = "custos.approval.id";
    /// `ok`, `error`, `tool_error`, `denied`, `held`, `refused`.
    pub const OUTCOME: &str = "custos.outcome";
}

/// Starts the spans of calls; cheap to clone. The default is off: every span is empty.
#[derive(Debug, Clone, Default)]
pub struct CallTracer {
    tracer: Option<SdkTracer>,
    /// The MCP session of the pipeline this tracer serves, if any.
    session: Option<std::sync::Arc<str>>,
}

/// What a call span is started with.
#[derive(Debug)]
pub struct CallStart<'a> {
    /// The tool as the upstream knows it.
    pub tool: &'a str,
    pub server: &'a str,
    /// The JSON-RPC id as the client spelled it.
    pub request_id: &'a str,
    pub agent: &'a str,
    pub run: &'a str,
    pub step: u64,
    pub class: &'a str,
    pub protocol: Option<&'a str>,
    /// The trace context in the request's `params._meta`, which wins over HTTP headers.
    pub parent: Option<TraceHeaders>,
}

impl CallTracer {
    pub(crate) fn new(tracer: SdkTracer) -> Self {
        Self { tracer: Some(tracer), session: None }
    }

    /// Whether spans are recorded at all (off: nothing to read or write for them).
    pub fn is_on(&self) -> bool {
        self.tracer.is_some()
    }

    /// This tracer, for the pipeline of MCP session `session`.
    pub fn for_session(&self, session: &str) -> Self {
        Self { tracer: self.tracer.clone(), session: Some(session.into()) }
    }

    /// The `execute_tool` span of one call, child of the client's trace when it named one.
    pub fn start_call(&self, start: CallStart<'_>) -> CallSpan {
        let Some(tracer) = &self.tracer else { return CallSpan::default() };
        let parent = start.parent.or_else(remote_parent).map_or_else(Context::new, |h| h.extract());
        let call_id = start.request_id.trim_matches('"');
        let mut attributes = vec![
            KeyValue::new(attributes::OPERATION, "execute_tool"),
            KeyValue::new(attributes::TOOL_NAME, start.tool.to_owned()),
            KeyValue::new(attributes::TOOL_CALL_ID, call_id.to_owned()),
            KeyValue::new(attributes::AGENT_ID, start.agent.to_owned()),
            KeyValue::new(attributes::MCP_METHOD, "tools/call"),
            KeyValue::new(attributes::SERVER, start.server.to_owned()),
            KeyValue::new(attributes::RUN, start.run.to_owned()),
            KeyValue::new(attributes::STEP, i64::try_from(start.step).unwrap_or(i64::MAX)),
            KeyValue::new(attributes::CLASS, start.class.to_owned()),
        ];
        if let Some(session) = &self.session {
            attributes.push(KeyValue::new(attributes::MCP_SESSION, session.to_string()));
        }
        if let Some(protocol) = start.protocol {
            attributes.push(KeyValue::new(attributes::MCP_PROTOCOL, protocol.to_owned()));
        }
        let span = tracer
            .span_builder(format!("execute_tool {}", start.tool))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        CallSpan { call: Some((tracer.clone(), parent.with_span(span))) }
    }
}

/// The `execute_tool` span of one call; empty when telemetry is off. Ends when dropped.
#[derive(Debug, Default)]
pub struct CallSpan {
    call: Option<(SdkTracer, Context)>,
}

impl CallSpan {
    /// A child span for one stage of the call (`policy`, `approval wait`, `audit append`).
    pub fn stage(&self, name: &'static str) -> Stage {
        self.child(Cow::Borrowed(name), SpanKind::Internal, Vec::new())
    }

    /// The child span of the forward to the upstream (MCP client side: `tools/call {tool}`);
    /// [`Stage::headers`] is the trace context to hand to the upstream.
    pub fn upstream(&self, tool: &str, server: &str) -> Stage {
        let attributes = vec![
            KeyValue::new(attributes::MCP_METHOD, "tools/call"),
            KeyValue::new(attributes::TOOL_NAME, tool.to_owned()),
            KeyValue::new(attributes::SERVER, server.to_owned()),
        ];
        self.child(Cow::Owned(format!("tools/call {tool}")), SpanKind::Client, attributes)
    }

    fn child(&self, name: Cow<'static, str>, kind: SpanKind, attributes: Vec<KeyValue>) -> Stage {
        let Some((tracer, cx)) = &self.call else { return Stage::default() };
        let span = tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(tracer, cx);
        Stage { span: Some(Box::new(span)) }
    }

    /// What was decided, by which policies, and what the detectors found on the request.
    pub fn decided(&self, decision: &str, policies: &[String], findings: &[String]) {
        let Some((_, cx)) = &self.call else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new(attributes::DECISION, decision.to_owned()));
        span.set_attribute(KeyValue::new(attributes::POLICIES, strings(policies)));
        if !findings.is_empty() {
            span.set_attribute(KeyValue::new(attributes::FINDINGS, strings(findings)));
        }
    }

    /// The approval request a held call waits for.
    pub fn approval(&self, id: &str) {
        if let Some((_, cx)) = &self.call {
            cx.span().set_attribute(KeyValue::new(attributes::APPROVAL, id.to_owned()));
        }
    }

    /// The rules that flagged the call's result.
    pub fn result_findings(&self, rules: &[String]) {
        if let (Some((_, cx)), false) = (&self.call, rules.is_empty()) {
            cx.span().set_attribute(KeyValue::new(attributes::RESULT_FINDINGS, strings(rules)));
        }
    }

    /// How the call ended; `error`: the JSON-RPC error code of the answer, or `tool_error`.
    pub fn finished(&self, outcome: &str, error: Option<&str>) {
        let Some((_, cx)) = &self.call else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new(attributes::OUTCOME, outcome.to_owned()));
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(attributes::ERROR_TYPE, error.to_owned()));
            span.set_status(Status::error(outcome.to_owned()));
        }
    }

    /// Ends the span now (dropping it does too).
    pub fn end(self) {
        if let Some((_, cx)) = &self.call {
            cx.span().end();
        }
    }
}

/// A child span of a call; empty when telemetry is off. Ends when dropped.
#[derive(Debug, Default)]
pub struct Stage {
    /// Boxed: an open span is large, and calls in flight hold one each (nothing is allocated
    /// when telemetry is off).
    span: Option<Box<Span>>,
}

impl Stage {
    /// The trace context that names this span as parent (for the upstream).
    pub fn headers(&self) -> Option<TraceHeaders> {
        let span = self.span.as_ref()?;
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        TraceHeaders::inject(&cx)
    }

    /// Marks the stage failed with `error` (a short reason of ours, never input).
    pub fn failed(&mut self, error: &str) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(error.to_owned()));
        }
    }

    /// Ends the span now (dropping it does too).
    pub fn end(mut self) {
        if let Some(span) = &mut self.span {
            span.end();
        }
    }
}

fn strings(values: &[String]) -> Value {
    Value::Array(Array::String(values.iter().map(|v| StringValue::from(v.clone())).collect()))
}
