//! Calls that policy held for a human approval.
//!
//! When the decision is `hold`, the pipeline opens the approval request (or finds the open one
//! for the same call digest: a retry after a timeout is matched to it), records the call as held
//! and gives the transport a [`Held`] call instead of bytes to send. The transport runs
//! [`Gateway::settle`] beside its other traffic, so one held call does not stop the others:
//!
//! - while waiting, a `notifications/progress` goes to the client every [`PROGRESS_EVERY`] when
//!   its request carried a `progressToken`;
//! - approved in time → the approval is used (once, atomically), policy decides again with
//!   `context.approval.granted`, and only an `allow` forwards the original bytes;
//! - denied, expired, or already used → a `-32001` error with the approver's reason;
//! - still pending at `[approvals] timeout_ms` → a `-32004` error carrying the approval id; the
//!   identical call made again later is matched to the same request.
//!
//! Every outcome is a second `call.decided` (allow or deny, with the approval id and who decided)
//! or, for a timeout, a `call.finished` with outcome `held`: the log says what became of each
//! held call.

use std::time::{Duration, Instant};

use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use custos_approvals::{ApprovalRequest, ApprovalState};
use custos_core::{Decision, EventKind, ToolClass, ToolDescriptor, ToolRef};
use custos_mcp::{codes, error_response};
use custos_policy::{CallRequest, ToolInfo};

use crate::pending::CallInFlight;
use crate::pipeline::{unrecorded, Gateway, Outcome};

/// How often a waiting client that asked for progress hears that its call is still held.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A `tools/call` waiting for an approval: everything needed to run it, or refuse it, later.
#[derive(Debug)]
pub struct Held {
    pub(crate) id: Box<RawValue>,
    /// The client's frame, forwarded as it is once approved.
    pub(crate) raw: Vec<u8>,
    pub(crate) step: u64,
    pub(crate) tool: ToolRef,
    pub(crate) class: ToolClass,
    /// The tool's descriptor when the call was held: an approval covers this version only.
    pub(crate) descriptor: Option<std::sync::Arc<ToolDescriptor>>,
    pub(crate) arguments: serde_json::Value,
    pub(crate) received: Instant,
    pub(crate) request: ApprovalRequest,
    pub(crate) progress_token: Option<Box<RawValue>>,
    /// The call's `execute_tool` span, open while it waits.
    pub(crate) span: custos_telemetry::CallSpan,
}

impl Held {
    /// A call `admit` held for `request`, to be settled as request `id` of its front-end;
    /// `raw` is what is forwarded once it is approved (MCP: the client's frame).
    pub fn new(id: Box<RawValue>, raw: Vec<u8>, call: crate::Admitted, request: ApprovalRequest) -> Self {
        Self {
            id,
            raw,
            step: call.step,
            tool: call.tool,
            class: call.class,
            descriptor: call.descriptor,
            arguments: call.arguments,
            received: call.received,
            request,
            progress_token: None,
            span: call.span,
        }
    }

    /// The approval request the call waits for.
    pub fn request(&self) -> &ApprovalRequest {
        &self.request
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.id.get() == other.id.get() && self.request.id == other.request.id
    }
}

impl Eq for Held {}

impl Gateway {
    /// Waits for the verdict on a held call and says what to do with it: forward it (approved,
    /// and allowed again with the approval) or answer the client (refused, or timed out).
    /// Progress notifications for the client go to `progress`.
    pub async fn settle(&self, held: Held, progress: mpsc::Sender<Vec<u8>>) -> Outcome {
        let Some(approvals) = self.approvals() else {
            return self.refuse_held(held, "approvals are not available here", None).await;
        };
        let timeout = Duration::from_millis(approvals.settings().timeout_ms);
        let deadline = Instant::now() + timeout;
        let waiting = held.span.stage("approval wait");
        let mut beats = 0u64;
        let state = loop {
            if let Some(token) = &held.progress_token {
                beats += 1;
                // A client that does not read its progress loses it, not the call.
                let _ = progress.try_send(progress_frame(token, beats, &held.request));
            }
            let wake = deadline.min(Instant::now() + PROGRESS_EVERY);
            match approvals.wait(&held.request.id, tokio::time::Instant::from_std(wake)).await {
                Ok(ApprovalState::Pending) if Instant::now() < deadline => {}
                other => break other,
            }
        };
        drop(waiting);
        match state {
            Ok(ApprovalState::Pending) => self.held_timed_out(held, timeout).await,
            Ok(ApprovalState::Approved { by, .. }) => self.run_approved(held, &by).await,
            Ok(ApprovalState::Denied { by, reason, .. }) => {
                let reason = format!("denied by `{by}`: {}", reason.as_deref().unwrap_or("no reason given"));
                self.refuse_held(held, &reason, Some(&by)).await
            }
            Ok(ApprovalState::Used { .. }) => {
                let reason = "the approval was already used by an identical call; call again for a new approval";
                self.refuse_held(held, reason, None).await
            }
            Ok(ApprovalState::Expired) => self.refuse_held(held, "the approval request expired undecided", None).await,
            Err(err) => {
                // Fail closed: a verdict that cannot be read is not a yes.
                tracing::error!("cannot read approval `{}`: {err}", held.request.id);
                self.refuse_held(held, &format!("the approval cannot be checked: {err}"), None).await
            }
        }
    }

    /// Approved: use the approval (once), decide again with it, and forward on `allow`.
    async fn run_approved(&self, held: Held, approver: &str) -> Outcome {
        let Some(approvals) = self.approvals() else {
            return self.refuse_held(held, "approvals are not available here", None).await;
        };
        // The approval covers the tool as it was described when the call was held.
        let now = self.with_tools(|t| t.get(held.tool.name()).map(|d| d.digest.to_hex()));
        if now != held.request.descriptor_sha256 {
            let reason = "the tool's descriptor changed since the approval was requested; a new approval is needed";
            return self.refuse_held(held, reason, Some(approver)).await;
        }
        if let Err(err) = approvals.consume(&held.request.id, &held.request.digest).await {
            return self.refuse_held(held, &err.to_string(), Some(approver)).await;
        }
        let annotations = held.descriptor.as_ref().and_then(|d| d.raw.get("annotations"));
        let flows = self.flows_of(held.tool.name());
        let (run_labels, run_findings) = (self.run_state().labels(), self.run_state().findings());
        let decision = self.policy().decide(&CallRequest {
            agent: self.agent(),
            tool: ToolInfo { tool: &held.tool, class: held.class, annotations },
            arguments: &held.arguments,
            run_id: &self.run().0,
            step: held.step,
            labels: &run_labels,
            findings: &run_findings,
            flows: &flows,
            approval_granted: true,
        });
        if !decision.is_allow() {
            let reason = format!("approved by `{approver}`, but policy still refuses: {}", decision.explain());
            return self.refuse_held(held, &reason, Some(approver)).await;
        }
        let (decision, credentials, token) = self.call_credentials(decision, &held.tool, held.step);
        if !decision.is_allow() {
            return self.refuse_held(held, &decision.explain(), Some(approver)).await;
        }
        self.metrics().calls.inc(&[&self.agent().id.0, decision.as_str()]);
        held.span.decided(decision.as_str(), decision.policies(), &[]);
        let mut decided = self.call_event(EventKind::CallDecided, held.step, &held.tool);
        decided.decision = Some(decision.as_str().to_owned());
        decided.detail = json!({
            "policies": decision.policies(),
            "reason": decision.explain(),
            "approval": held.request.id,
            "approved_by": approver,
        });
        if let (false, Some(obj)) = (credentials.is_empty(), decided.detail.as_object_mut()) {
            obj.insert("credentials".into(), json!(credentials));
        }
        let mut events = vec![decided];
        events.extend(self.label_events(&flows, held.step, &held.tool));
        let audit_span = held.span.stage("audit append");
        let appended = self.record(events).await;
        drop(audit_span);
        if let Err(err) = appended {
            held.span.finished("refused", Some(&codes::AUDIT_UNAVAILABLE.to_string()));
            self.pending().remove(&held.id);
            tracing::error!("refusing approved `{}`: the audit log cannot be written: {err}", held.tool);
            return unrecorded(&held.id, &held.tool, "the audit log cannot be written");
        }
        self.detection().used(&self.agent().id.0, &held.tool);
        let replay = (held.class, custos_core::Digest::of_json(&held.arguments).to_hex());
        // Held calls take no concurrency slot: they waited outside the limit, and a human let
        // this one through.
        let call = CallInFlight::new(held.tool, held.step, held.received, token, None, replay);
        self.forward_allowed(&held.id, held.raw, held.span, call)
    }

    /// Refused after being held: recorded as a deny naming the approval, answered `-32001`.
    async fn refuse_held(&self, held: Held, reason: &str, by: Option<&str>) -> Outcome {
        self.pending().remove(&held.id);
        let decision = Decision::Deny { policies: held.request.policies.clone(), reason: reason.to_owned() };
        self.metrics().calls.inc(&[&self.agent().id.0, decision.as_str()]);
        held.span.decided(decision.as_str(), decision.policies(), &[]);
        held.span.finished("denied", Some(&codes::DENIED.to_string()));
        let mut decided = self.call_event(EventKind::CallDecided, held.step, &held.tool);
        decided.decision = Some(decision.as_str().to_owned());
        decided.detail = json!({
            "policies": decision.policies(),
            "reason": reason,
            "approval": held.request.id,
            "decided_by": by,
        });
        if let Err(err) = self.record(vec![decided]).await {
            tracing::error!("cannot record the refusal of held `{}`: {err}", held.tool);
        }
        self.denied(&held.id, &held.tool, held.step, decision.policies(), reason, Some(&held.request.id))
    }

    /// Still pending at the timeout: the call did not run; the request stays open and the same
    /// call made again is matched to it.
    async fn held_timed_out(&self, held: Held, timeout: Duration) -> Outcome {
        self.pending().remove(&held.id);
        held.span.finished("held", Some(&codes::APPROVAL_PENDING.to_string()));
        let mut finished = self.call_event(EventKind::CallFinished, held.step, &held.tool);
        finished.detail = json!({
            "request_id": held.id.get(),
            "outcome": "held",
            "approval": held.request.id,
            "reason": "no decision within the approval timeout",
            "duration_ms": u64::try_from(held.received.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if let Err(err) = self.record(vec![finished]).await {
            tracing::error!("cannot record the timeout of held `{}`: {err}", held.tool);
        }
        let request = &held.request;
        Outcome::Answer(error_response(
            Some(&held.id),
            codes::APPROVAL_PENDING,
            &format!(
                "`{}` needs an approval by {} that did not come within {} s; approval `{}` stays open \
                 until it expires: make the identical call again once it is approved",
                held.tool,
                groups_text(&request.groups),
                timeout.as_secs(),
                request.id
            ),
            Some(json!({
                "approval_id": request.id,
                "groups": request.groups,
                "expires_ms": request.expires_ms,
                "run": self.run().0,
                "step": held.step,
            })),
        ))
    }
}

/// `notifications/progress` for a held call.
fn progress_frame(token: &RawValue, progress: u64, request: &ApprovalRequest) -> Vec<u8> {
    let message = format!("waiting for approval `{}` by {}", request.id, groups_text(&request.groups));
    let params = json!({ "progress": progress, "message": message });
    let params = serde_json::to_string(&params).unwrap_or_default();
    // The token goes back exactly as the client spelled it.
    let params = params.replacen('{', &format!("{{\"progressToken\":{},", token.get()), 1);
    format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{params}}}"#).into_bytes()
}

fn groups_text(groups: &[String]) -> String {
    let named: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
    if named.is_empty() {
        "an approver".to_owned()
    } else {
        named.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_frames_keep_the_clients_token() {
        let token = RawValue::from_string("\"t-1\"".to_owned()).unwrap();
        let request = ApprovalRequest {
            id: "apr_1".into(),
            agent: custos_core::AgentId("a".into()),
            principal: vec![],
            run: custos_core::RunId("r".into()),
            step: 1,
            tool: ToolRef::new("s", "t").unwrap(),
            descriptor_sha256: None,
            arguments: json!({}),
            policies: vec![],
            groups: vec!["ops".into()],
            digest: "d".into(),
            created_ms: 0,
            expires_ms: 1,
            state: ApprovalState::Pending,
        };
        let frame: serde_json::Value = serde_json::from_slice(&progress_frame(&token, 2, &request)).unwrap();
        assert_eq!(frame["params"]["progressToken"], "t-1");
        assert_eq!(frame["params"]["progress"], 2);
        assert!(frame["params"]["message"].as_str().unwrap().contains("apr_1"));
    }
}
