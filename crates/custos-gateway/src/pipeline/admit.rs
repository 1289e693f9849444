//! The protocol-neutral stages of a governed call, before it runs: attribute, classify, detect,
//! decide, hold, broker, record. A front-end (MCP's `tools/call` in `pipeline.rs`; an HTTP API
//! operation) turns its message into a [`CallInput`], asks [`Gateway::admit`], and turns the
//! [`Admission`] back into its protocol's answer: forward, wait for the approval, or refuse.
//! Nothing here knows JSON-RPC ids or HTTP statuses.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use custos_core::{Decision, Digest, EventKind, ToolClass, ToolDescriptor, ToolRef};
use custos_mcp::codes;
use custos_policy::{CallRequest, ToolInfo};

use super::{Gateway, RECORDED_DEPTH};
use crate::abuse::{CallFacts, Slot};
use crate::broker::Bearer;

/// A call as a front-end presents it.
#[derive(Debug)]
pub struct CallInput<'a> {
    /// The front-end's id of the request (a JSON-RPC id's text), recorded with the call.
    pub request_id: &'a str,
    /// Named by the front-end, already checked as a tool of this gateway's server.
    pub tool: ToolRef,
    /// The arguments policy sees, as a JSON object.
    pub arguments: serde_json::Value,
    /// The protocol revision the call was made in, when the protocol has one.
    pub protocol: Option<String>,
    /// The trace the client's call belongs to, if it named one.
    pub parent: Option<custos_telemetry::TraceHeaders>,
}

/// A call that was attributed, classified, decided and recorded.
#[derive(Debug)]
pub struct Admitted {
    pub step: u64,
    pub tool: ToolRef,
    pub class: ToolClass,
    pub descriptor: Option<Arc<ToolDescriptor>>,
    pub arguments: serde_json::Value,
    pub received: Instant,
    pub span: custos_telemetry::CallSpan,
}

/// What becomes of a call, recorded before the front-end acts on it.
#[derive(Debug)]
pub enum Admission {
    /// Allowed: forward it, with the token minted for it, holding its concurrency slot; once
    /// it ran, `replay` (its class and arguments digest) is what a replay would repeat.
    Run { call: Admitted, token: Option<Bearer>, slot: Option<Slot>, replay: (ToolClass, String) },
    /// Held for this approval request: wait for a human (see `held.rs`).
    Hold { call: Admitted, request: Box<custos_approvals::ApprovalRequest> },
    /// Denied, by these policies (none: a detector or the broker), for this reason.
    Deny { call: Admitted, policies: Vec<String>, reason: String },
    /// Refused without a decision on the record: `what` could not be recorded.
    Unrecorded { tool: ToolRef, what: &'static str },
}

impl Gateway {
    /// Stages 1 to 4 of a call: attribute, classify, detect, decide, hold, broker, record. The
    /// call's events are durably appended before this returns anything but
    /// [`Admission::Unrecorded`]; a front-end forwards only [`Admission::Run`].
    pub async fn admit(&self, input: CallInput<'_>) -> Admission {
        let CallInput { request_id, tool, arguments, protocol, parent } = input;
        let received = Instant::now();
        // 1. attribute
        let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;

        // 2. classify
        let descriptor = self.with_tools(|t| t.get(tool.name()).cloned());
        let class = self.classes.classify(tool.name(), descriptor.as_deref());
        let annotations = descriptor.as_ref().and_then(|d| d.raw.get("annotations"));
        let span = self.call_span(parent, request_id, &tool, step, class, protocol.as_deref());
        let policy_span = span.stage("policy");

        // 2b. detect: quarantine, replay, rates, budgets, loops, bursts, first use, toxic flow
        let flows = self.flows.flows_of(tool.name());
        let arguments_sha256 = Digest::of_json(&arguments).to_hex();
        let facts = CallFacts {
            agent: &self.agent.id.0,
            run: &self.run.0,
            tool: &tool,
            class,
            arguments_sha256: &arguments_sha256,
        };
        let reused = self.detection.abuse().request_id_reused(&self.session_key(), request_id);
        let mut before = self.detection.before_call(&facts, reused.then_some(request_id));
        self.check_quarantine(&tool, descriptor.as_deref(), &mut before);
        self.check_toxic_flow(&tool, &flows, &mut before);
        // What policy sees: this call's findings, and those that taint the whole run.
        let mut run_findings = self.run_state.findings();
        run_findings.extend(before.first_use.as_ref().map(|f| f.kind.clone()));
        for (finding, _) in &before.findings {
            self.run_state.found(&finding.kind);
            if !run_findings.contains(&finding.kind) {
                run_findings.push(finding.kind.clone());
            }
        }

        // 3. decide
        let policy_timer = self.metrics.duration.start_timer(&["policy"]);
        let info = ToolInfo { tool: &tool, class, annotations };
        let run_labels = self.run_state.labels();
        let decision = self.policy.decide(&CallRequest {
            agent: &self.agent,
            tool: info,
            arguments: &arguments,
            run_id: &self.run.0,
            step,
            labels: &run_labels,
            findings: &run_findings,
            flows: &flows,
            approval_granted: false,
        });
        // A detector's refusal stands whatever policy says (a replay's, unless a human is asked
        // anyway); its hold applies to what policy allows.
        let decision = match (&before.refuse, &before.replay, &before.hold, decision) {
            (Some(why), _, _, _) => Decision::Deny { policies: Vec::new(), reason: why.clone() },
            (None, Some(_), _, hold @ Decision::Hold { .. }) => hold,
            (None, Some(why), _, _) => Decision::Deny { policies: Vec::new(), reason: why.clone() },
            (None, None, Some((group, why)), Decision::Allow { policies }) => Decision::Hold {
                policies,
                groups: vec![group.clone()],
                reason: format!("needs approval by `{group}`: {why}"),
            },
            (_, _, _, decision) => decision,
        };
        // Without an approval queue (e.g. `custos policy` tooling) a hold cannot be waited on.
        let decision = match (decision, &self.approvals) {
            (Decision::Hold { policies, reason, .. }, None) => {
                Decision::Deny { policies, reason: format!("{reason} (no approval queue here)") }
            }
            (decision, _) => decision,
        };
        policy_timer.observe();
        drop(policy_span);
        // 3c. broker: the credentials the call will use, and its own token when the upstream
        // takes minted ones. A token that cannot be minted denies the call.
        let (decision, credentials, token) = self.call_credentials(decision, &tool, step);
        self.metrics.calls.inc(&[&self.agent.id.0, decision.as_str()]);
        let found: Vec<String> = before.findings.iter().map(|(f, _)| f.kind.clone()).collect();
        span.decided(decision.as_str(), decision.policies(), &found);

        // 4. audit, durably, before anything is forwarded
        let mut requested = self.event(EventKind::CallRequested);
        requested.step = Some(step);
        requested.tool = Some(tool.clone());
        requested.detail = json!({
            "request_id": request_id,
            "class": class,
            "protocol": protocol,
            "arguments_sha256": Digest::of_json(&arguments),
            "descriptor_sha256": descriptor.as_ref().map(|d| d.digest),
            "owner": self.agent.owner,
        });
        if let (false, Some(obj)) = (credentials.is_empty(), requested.detail.as_object_mut()) {
            obj.insert("credentials".into(), json!(credentials));
        }
        if self.audit_config.record_arguments {
            if let Some(obj) = requested.detail.as_object_mut() {
                obj.insert("arguments".into(), custos_store::shallow(&arguments, RECORDED_DEPTH));
            }
        }
        let mut decided = self.event(EventKind::CallDecided);
        decided.step = Some(step);
        decided.tool = Some(tool.clone());
        decided.decision = Some(decision.as_str().to_owned());
        decided.detail = json!({ "policies": decision.policies(), "reason": decision.explain() });

        // 3b. hold: open (or find) the approval request for exactly this call
        let approval = match (&decision, &self.approvals) {
            (Decision::Hold { policies, groups, .. }, Some(approvals)) => {
                let call = custos_approvals::CallToApprove {
                    agent: &self.agent,
                    principal: &self.principal,
                    run: &self.run,
                    step,
                    tool: &tool,
                    descriptor_sha256: descriptor.as_ref().map(|d| d.digest.to_hex()),
                    arguments: &arguments,
                    policies,
                    groups,
                };
                match approvals.hold(&call).await {
                    Ok(request) => Some(request),
                    Err(err) => {
                        // Fail closed: a call that cannot be held for approval does not run.
                        span.finished("refused", Some(&codes::AUDIT_UNAVAILABLE.to_string()));
                        tracing::error!("refusing `{tool}` (step {step}): cannot open its approval: {err}");
                        return Admission::Unrecorded { tool, what: "its approval request cannot be recorded" };
                    }
                }
            }
            _ => None,
        };
        if let (Some(request), Some(detail)) = (&approval, decided.detail.as_object_mut()) {
            detail.insert("approval".into(), json!(request.id));
            detail.insert("approval_state".into(), json!(request.state.name()));
        }

        if let Some(request) = &approval {
            span.approval(&request.id);
        }
        let audit_timer = self.metrics.duration.start_timer(&["audit"]);
        let audit_span = span.stage("audit append");
        let mut events = vec![requested, decided];
        events.extend(self.finding_events(&before, &decision, step, &tool));
        if decision.is_allow() {
            events.extend(self.label_events(&flows, step, &tool));
        }
        let appended = self.record(events).await;
        audit_timer.observe();
        drop(audit_span);
        if let Err(err) = appended {
            span.finished("refused", Some(&codes::AUDIT_UNAVAILABLE.to_string()));
            tracing::error!("refusing `{tool}` (step {step}): the audit log cannot be written: {err}");
            return Admission::Unrecorded { tool, what: "the audit log cannot be written" };
        }
        if decision.is_allow() {
            self.detection.used(&self.agent.id.0, &tool);
        }

        // 5. run, hold or refuse: the front-end turns this into its protocol's answer
        let call = Admitted { step, tool, class, descriptor, arguments, received, span };
        if let Some(request) = approval {
            return Admission::Hold { call, request: Box::new(request) };
        }
        if decision.is_allow() {
            return Admission::Run { call, token, slot: before.slot, replay: (class, arguments_sha256) };
        }
        call.span.finished("denied", Some(&codes::DENIED.to_string()));
        Admission::Deny { call, policies: decision.policies().to_vec(), reason: decision.explain() }
    }
}
