//! The protocol-neutral stages of a governed call after it ran: the upstream's answer timed and
//! counted, the call remembered against replays, and its end recorded (outcome, size, digest,
//! what inspection found) before the agent sees the answer. The front-end reads its protocol's
//! answer (a JSON-RPC result or error; an HTTP response) into an [`Ending`].

use std::time::Instant;

use serde_json::json;

use custos_config::OutputAction;
use custos_core::{Digest, EventKind, NewEvent};
use custos_mcp::codes;

use super::{Gateway, RECORDED_DEPTH};
use crate::abuse::CallFacts;
use crate::detect::labels;
use crate::pending::CallInFlight;

/// What inspecting a call's result found (see [`Gateway::inspect`]).
#[derive(Debug)]
pub struct Inspected {
    /// `[detection] output`: what the front-end does with the result. `Redact`: it was
    /// redacted in place; `Block`: the agent must not get it.
    pub action: OutputAction,
    /// The rules that matched, for the agent's error when the result is withheld.
    pub rules: Vec<String>,
    /// The findings and the run's new label, to record with the call's end.
    pub events: Vec<NewEvent>,
}

/// How a call that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The tool answered.
    Ok,
    /// The tool answered that it failed (MCP's `isError`; an HTTP API's 4xx or 5xx).
    ToolError,
    /// No answer from the tool: the upstream or the protocol failed.
    Error,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Error => "error",
        }
    }
}

/// The end of a call, as its front-end read the answer.
#[derive(Debug)]
pub struct Ending<'a> {
    pub request_id: &'a str,
    pub outcome: Ended,
    /// The client cancelled the call; its answer goes nowhere.
    pub cancelled: bool,
    /// The answer as the agent gets it: its size and digest are recorded.
    pub answer: &'a [u8],
    /// The upstream's error, recorded with outcome [`Ended::Error`].
    pub error: Option<serde_json::Value>,
    /// The code the span names for a failure (`tool_error`, a JSON-RPC code, an HTTP status).
    pub error_code: Option<String>,
    /// The result as the agent gets it, recorded when `[audit] record_results` is on.
    pub result: Option<&'a serde_json::Value>,
}

impl Gateway {
    /// Detect (post) on `result` (any JSON: an MCP result, an API's answer): instructions for
    /// the model, invisible text or exfiltration bait. `None` when nothing is found. Otherwise
    /// the run is labelled `untrusted_input`, and by `[detection] output` the result is left as
    /// it is, redacted in place, or to be withheld.
    pub fn inspect(&self, call: &CallInFlight, result: &mut serde_json::Value) -> Option<Inspected> {
        let action = self.detection.output_action();
        let findings = match action {
            OutputAction::Redact => custos_detect::redact_result_with(result, self.detection.classifier()),
            OutputAction::Record | OutputAction::Block => {
                custos_detect::scan_result_with(result, self.detection.classifier())
            }
        };
        if findings.is_empty() {
            return None;
        }
        let verb = match action {
            OutputAction::Record => "recorded",
            OutputAction::Redact => "redacted",
            OutputAction::Block => "blocked",
        };
        let rules: Vec<String> = findings.iter().map(|f| f.rule.clone()).collect();
        let mut events: Vec<NewEvent> = findings
            .iter()
            .map(|f| {
                self.run_state.found(&f.kind);
                self.finding_event(f, verb, Some((call.step, &call.tool)))
            })
            .collect();
        let why = format!("the result of `{}` carried {}", call.tool, rules.join(", "));
        events.extend(self.labeled(labels::UNTRUSTED_INPUT, &why, call.step, &call.tool));
        Some(Inspected { action, rules, events })
    }

    /// The upstream answered `call` (or failed to): its time and failures counted, its span
    /// ended.
    pub fn upstream_answered(&self, call: &mut CallInFlight, failed: bool) {
        self.metrics.duration.observe_duration(&["upstream"], call.started.elapsed());
        if failed {
            self.metrics.upstream_errors.inc(&[&self.server]);
        }
        if let Some(trace) = call.trace.as_mut() {
            let mut upstream = std::mem::take(&mut trace.upstream);
            if failed {
                upstream.failed("error answer");
            }
            upstream.end();
        }
    }

    /// Stage 6: records how `call` ended, with `findings` (the leak guard's) and `inspected`
    /// (what inspecting its result found), before the agent sees the answer. `Err`: the log
    /// cannot be written, and the front-end must withhold the answer.
    pub async fn finish(
        &self,
        call: &mut CallInFlight,
        ending: Ending<'_>,
        findings: Vec<NewEvent>,
        inspected: Vec<NewEvent>,
    ) -> Result<(), custos_store::StoreError> {
        let trace = call.trace.take().map(|t| *t).unwrap_or_default();
        // A call that ran to an answer is what a replay would repeat.
        if let (false, Some((class, arguments_sha256))) =
            (ending.outcome == Ended::Error || ending.cancelled, &call.replay)
        {
            let facts = CallFacts {
                agent: &self.agent.id.0,
                run: &self.run.0,
                tool: &call.tool,
                class: *class,
                arguments_sha256,
            };
            self.detection.abuse().executed(&facts, Instant::now());
        }
        let mut e = self.event(EventKind::CallFinished);
        e.step = Some(call.step);
        e.tool = Some(call.tool.clone());
        e.detail = json!({
            "request_id": ending.request_id,
            "outcome": ending.outcome.as_str(),
            "cancelled": ending.cancelled,
            "duration_ms": u64::try_from(call.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "bytes": ending.answer.len(),
            "sha256": Digest::of(ending.answer),
            "error": ending.error,
        });
        if self.audit_config.record_results {
            if let (Some(obj), Some(result)) = (e.detail.as_object_mut(), ending.result) {
                // An upstream's result may nest as deep as a message can; the log keeps what its
                // reader reads back (the digest above covers the whole answer).
                obj.insert("result".into(), custos_store::shallow(result, RECORDED_DEPTH));
            }
        }
        let result_rules: Vec<String> =
            inspected.iter().filter_map(|e| e.detail.get("rule").and_then(|r| r.as_str()).map(str::to_owned)).collect();
        trace.call.result_findings(&result_rules);
        let audit_timer = self.metrics.duration.start_timer(&["audit"]);
        let audit_span = trace.call.stage("audit append");
        let mut events = findings;
        events.extend(inspected);
        events.push(e);
        let appended = self.record(events).await;
        audit_timer.observe();
        drop(audit_span);
        match &appended {
            Ok(_) => trace.call.finished(ending.outcome.as_str(), ending.error_code.as_deref()),
            Err(_) => trace.call.finished("withheld", Some(&codes::AUDIT_UNAVAILABLE.to_string())),
        }
        self.metrics.duration.observe_duration(&["whole"], call.received.elapsed());
        appended.map(|_| ())
    }
}
