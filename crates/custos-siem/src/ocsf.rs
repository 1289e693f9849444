//! Audit events as OCSF 1.7.0 events.
//!
//! Every [`EventKind`] maps to one OCSF class and activity ([`class_of`]; the table is in the
//! README, "Evidence to SIEMs (OCSF)"). What every class shares is filled the same way: the
//! classification (`class_uid`, `category_uid`, `activity_id`, `type_uid`), `time`,
//! `severity_id`, `status_id`, and `metadata` whose `uid` is the event's digest (what a receiver
//! dedupes on), `sequence` its position in the log and `correlation_uid` its run. The agent is
//! the `actor.user` (or the `user` of an identity class). What OCSF has no attribute for (the
//! step, the decision, the detail) goes to `unmapped`, as the log has it: events never hold a
//! secret, only fingerprints, so nothing here can leak one.

use custos_core::EventKind;
use custos_store::StoredEvent;
use serde_json::{json, Map, Value};

/// The OCSF schema version the events follow (and the tests validate against).
pub const OCSF_VERSION: &str = "1.7.0";
/// `metadata.product.name`.
pub const PRODUCT: &str = "Custos";

/// The OCSF classes Custos events become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2004: what a detector saw.
    DetectionFinding,
    /// 3001: credentials of agents and of the gateway (keys, secrets, signing keys).
    AccountChange,
    /// 3002: agents and approvers signing in, refused, tokens issued.
    Authentication,
    /// 6002: upstreams and their tools appearing, changing, stopping.
    ApplicationLifecycle,
    /// 6003: tool calls and everything about one (decisions, approvals, runs).
    ApiActivity,
}

impl Class {
    pub fn uid(self) -> u32 {
        match self {
            Self::DetectionFinding => 2004,
            Self::AccountChange => 3001,
            Self::Authentication => 3002,
            Self::ApplicationLifecycle => 6002,
            Self::ApiActivity => 6003,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DetectionFinding => "Detection Finding",
            Self::AccountChange => "Account Change",
            Self::Authentication => "Authentication",
            Self::ApplicationLifecycle => "Application Lifecycle",
            Self::ApiActivity => "API Activity",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            Self::DetectionFinding => (2, "Findings"),
            Self::AccountChange | Self::Authentication => (3, "Identity & Access Management"),
            Self::ApplicationLifecycle | Self::ApiActivity => (6, "Application Activity"),
        }
    }
}

/// OCSF `activity_id` 99: none of the class's named activities.
const OTHER: u32 = 99;

/// The class and activity (`activity_id`, `activity_name`) of each kind of event.
pub fn class_of(kind: EventKind) -> (Class, u32, &'static str) {
    use EventKind as K;
    match kind {
        K::CallRequested => (Class::ApiActivity, OTHER, "Call Requested"),
        K::CallDecided => (Class::ApiActivity, OTHER, "Call Decided"),
        K::CallFinished => (Class::ApiActivity, OTHER, "Call Finished"),
        K::ProtocolError => (Class::ApiActivity, OTHER, "Protocol Error"),
        K::RunStarted => (Class::ApiActivity, 1, "Create"),
        K::RunEnded => (Class::ApiActivity, 4, "Delete"),
        K::RunLabeled => (Class::ApiActivity, 3, "Update"),
        K::ApprovalRequested => (Class::ApiActivity, 1, "Create"),
        K::ApprovalApproved => (Class::ApiActivity, OTHER, "Approve"),
        K::ApprovalDenied => (Class::ApiActivity, OTHER, "Deny"),
        K::ApprovalUsed => (Class::ApiActivity, OTHER, "Use"),
        K::ApprovalReplayRefused => (Class::ApiActivity, OTHER, "Replay Refused"),
        K::ApprovalRefused => (Class::ApiActivity, OTHER, "Decision Refused"),
        K::ApprovalExpired => (Class::ApiActivity, OTHER, "Expire"),
        K::ApprovalNotified => (Class::ApiActivity, OTHER, "Notify"),
        K::ToolSeen => (Class::ApplicationLifecycle, 1, "Install"),
        K::ToolChanged => (Class::ApplicationLifecycle, 8, "Update"),
        K::ToolPinned => (Class::ApplicationLifecycle, OTHER, "Pin"),
        K::ToolAccepted => (Class::ApplicationLifecycle, 6, "Enable"),
        K::UpstreamExited => (Class::ApplicationLifecycle, 4, "Stop"),
        K::UpstreamRestarted => (Class::ApplicationLifecycle, 5, "Restart"),
        K::AuthFailed => (Class::Authentication, 1, "Logon"),
        K::ConsoleSignedIn => (Class::Authentication, 1, "Logon"),
        K::ConsoleRefused => (Class::Authentication, 1, "Logon"),
        K::ConsoleSignedOut => (Class::Authentication, 2, "Logoff"),
        K::ConsoleLinkIssued => (Class::Authentication, OTHER, "Sign-in Link Issued"),
        K::TokenMinted => (Class::Authentication, 3, "Authentication Ticket"),
        K::TokenExchanged => (Class::Authentication, 3, "Authentication Ticket"),
        K::TokenExchangeRefused => (Class::Authentication, 3, "Authentication Ticket"),
        K::AgentKeyIssued => (Class::AccountChange, 3, "Password Change"),
        K::AgentKeyRevoked => (Class::AccountChange, OTHER, "Credential Revoked"),
        K::SecretSet => (Class::AccountChange, 3, "Password Change"),
        K::SecretRemoved => (Class::AccountChange, OTHER, "Credential Removed"),
        K::SigningKeyCreated => (Class::AccountChange, 3, "Password Change"),
        K::SigningKeyRetired => (Class::AccountChange, OTHER, "Credential Retired"),
        K::TokenRevoked => (Class::AccountChange, OTHER, "Credential Revoked"),
        K::FindingRecorded => (Class::DetectionFinding, 1, "Create"),
    }
}

/// Whether the event records something that went through (`Some(true)`), was refused or failed
/// (`Some(false)`), or neither.
fn succeeded(e: &StoredEvent) -> Option<bool> {
    use EventKind as K;
    let ev = &e.event;
    let text = |key: &str| ev.detail.get(key).and_then(Value::as_str);
    match ev.kind {
        K::CallDecided => match ev.decision.as_deref() {
            Some("allow") => Some(true),
            Some("deny") => Some(false),
            _ => None,
        },
        K::CallFinished => match text("outcome") {
            Some("ok") => Some(true),
            Some(_) => Some(false),
            None => None,
        },
        K::AuthFailed
        | K::ConsoleRefused
        | K::TokenExchangeRefused
        | K::ApprovalReplayRefused
        | K::ApprovalRefused
        | K::ApprovalDenied
        | K::ApprovalExpired
        | K::ProtocolError
        | K::UpstreamExited => Some(false),
        K::ApprovalNotified => text("error").map(|_| false).or(Some(true)),
        K::CallRequested | K::ApprovalRequested | K::FindingRecorded | K::RunLabeled => None,
        _ => Some(true),
    }
}

/// OCSF `severity_id` (and its caption) of a finding's severity as the log writes it.
fn finding_severity(severity: Option<&str>) -> (u32, &'static str) {
    match severity {
        Some("info") => (1, "Informational"),
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        Some("critical") => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

/// `severity_id` and its caption: a finding's own; refusals and failures Low; the rest
/// Informational.
fn severity(e: &StoredEvent, class: Class, outcome: Option<bool>) -> (u32, &'static str) {
    match (class, outcome) {
        (Class::DetectionFinding, _) => finding_severity(e.event.detail.get("severity").and_then(Value::as_str)),
        (_, Some(false)) => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// The OCSF `severity_id` [`to_ocsf`] gives `e`.
pub fn to_ocsf_severity(e: &StoredEvent) -> u32 {
    let class = class_of(e.event.kind).0;
    severity(e, class, succeeded(e)).0
}

/// `e` as one OCSF event.
pub fn to_ocsf(e: &StoredEvent) -> Value {
    let ev = &e.event;
    let (class, activity_id, activity_name) = class_of(ev.kind);
    let (category_uid, category_name) = class.category();
    let outcome = succeeded(e);
    let (severity_id, severity) = severity(e, class, outcome);
    let mut out = Map::new();
    out.insert("class_uid".into(), class.uid().into());
    out.insert("class_name".into(), class.name().into());
    out.insert("category_uid".into(), category_uid.into());
    out.insert("category_name".into(), category_name.into());
    out.insert("activity_id".into(), activity_id.into());
    out.insert("activity_name".into(), activity_name.into());
    out.insert("type_uid".into(), (u64::from(class.uid()) * 100 + u64::from(activity_id)).into());
    out.insert("type_name".into(), format!("{}: {activity_name}", class.name()).into());
    out.insert("time".into(), ev.time_ms.into());
    out.insert("severity_id".into(), severity_id.into());
    out.insert("severity".into(), severity.into());
    out.insert("message".into(), message(e).into());
    if class != Class::DetectionFinding {
        // Nothing (not "Unknown", which these classes do not allow) for events that are
        // neither: a request not yet decided, a label.
        if let Some(ok) = outcome {
            let (status_id, status) = if ok { (1, "Success") } else { (2, "Failure") };
            out.insert("status_id".into(), status_id.into());
            out.insert("status".into(), status.into());
        }
        if let Some(reason) = ev.detail.get("reason").and_then(Value::as_str) {
            out.insert("status_detail".into(), reason.into());
        }
    }
    out.insert("metadata".into(), metadata(e));
    match class {
        Class::ApiActivity => api_activity(e, &mut out),
        Class::ApplicationLifecycle => {
            let name = ev.tool.as_ref().map_or_else(|| server(e).unwrap_or("upstream").to_owned(), ToString::to_string);
            out.insert("app".into(), json!({ "name": name, "vendor_name": server(e).unwrap_or("upstream") }));
        }
        Class::Authentication => {
            out.insert("user".into(), subject(e));
            if let Some(actor) = actor(e) {
                out.insert("actor".into(), actor);
            }
            if let Some(server) = server(e) {
                out.insert("service".into(), json!({ "name": server }));
            }
        }
        Class::AccountChange => {
            out.insert("user".into(), subject(e));
        }
        Class::DetectionFinding => detection_finding(e, &mut out),
    }
    out.insert("unmapped".into(), unmapped(e));
    Value::Object(out)
}

/// A one-line summary, as `custos audit query` shows the event.
fn message(e: &StoredEvent) -> String {
    let ev = &e.event;
    let mut text = ev.kind.as_str().to_owned();
    if let Some(tool) = &ev.tool {
        text.push_str(&format!(" {tool}"));
    }
    if let Some(agent) = &ev.agent {
        text.push_str(&format!(" by {}", agent.0));
    }
    if let Some(d) = &ev.decision {
        text.push_str(&format!(": {d}"));
    }
    text
}

fn metadata(e: &StoredEvent) -> Value {
    let mut m = json!({
        "version": OCSF_VERSION,
        "product": { "name": PRODUCT, "vendor_name": PRODUCT, "version": env!("CARGO_PKG_VERSION") },
        "uid": e.hash.to_hex(),
        "sequence": e.seq,
        "event_code": e.event.kind.as_str(),
        "log_name": "audit",
        "log_provider": PRODUCT,
    });
    if let (Some(run), Some(obj)) = (&e.event.run, m.as_object_mut()) {
        obj.insert("correlation_uid".into(), run.0.clone().into());
    }
    m
}

fn server(e: &StoredEvent) -> Option<&str> {
    e.event.tool.as_ref().map(custos_core::ToolRef::server).or_else(|| e.event.detail.get("server")?.as_str())
}

/// The agent as an OCSF `user` (type System: an agent is a non-human identity).
fn agent_user(agent: &str) -> Value {
    json!({ "uid": agent, "name": agent, "type_id": 3, "type": "System" })
}

/// Who acted: the agent, else the person the detail names (an approver), else nobody known.
fn actor(e: &StoredEvent) -> Option<Value> {
    if let Some(agent) = &e.event.agent {
        let mut actor = json!({ "user": agent_user(&agent.0), "app_name": PRODUCT });
        if let (Some(run), Some(obj)) = (&e.event.run, actor.as_object_mut()) {
            obj.insert("session".into(), json!({ "uid": run.0 }));
        }
        return Some(actor);
    }
    person(e).map(|who| json!({ "user": { "name": who, "type_id": 1, "type": "User" }, "app_name": PRODUCT }))
}

/// The human the event names (an approver, or whom a sign-in link signs in).
fn person(e: &StoredEvent) -> Option<&str> {
    ["approver", "as", "decided_by", "by"].into_iter().find_map(|k| e.event.detail.get(k)?.as_str())
}

/// The identity an Authentication or Account Change event is about.
fn subject(e: &StoredEvent) -> Value {
    let detail = &e.event.detail;
    let text = |k: &str| detail.get(k).and_then(Value::as_str);
    let mut user = match (&e.event.agent, person(e)) {
        (Some(agent), _) => agent_user(&agent.0),
        (None, Some(who)) => json!({ "name": who, "type_id": 1, "type": "User" }),
        // The gateway's own credentials (secrets, signing keys) and refusals of nobody known.
        (None, None) => match e.event.kind {
            EventKind::AuthFailed | EventKind::ConsoleRefused | EventKind::TokenExchangeRefused => {
                json!({ "name": "unknown", "type_id": 0, "type": "Unknown" })
            }
            _ => json!({ "name": PRODUCT, "type_id": 3, "type": "System" }),
        },
    };
    // The credential's public name: a key id, a signing key id, a secret's name, a token id.
    let credential = text("key_id").or_else(|| text("kid")).or_else(|| text("jti")).or_else(|| text("name"));
    if let (Some(c), Some(obj)) = (credential, user.as_object_mut()) {
        obj.insert("credential_uid".into(), c.into());
    }
    user
}

fn api_activity(e: &StoredEvent, out: &mut Map<String, Value>) {
    let ev = &e.event;
    let operation = if ev.tool.is_some() { "tools/call" } else { ev.kind.as_str() };
    let mut api = json!({ "operation": operation });
    if let (Some(server), Some(obj)) = (server(e), api.as_object_mut()) {
        obj.insert("service".into(), json!({ "name": server }));
    }
    if let (Some(id), Some(obj)) = (ev.detail.get("request_id"), api.as_object_mut()) {
        obj.insert("request".into(), json!({ "uid": id.to_string() }));
    }
    out.insert("api".into(), api);
    out.insert("actor".into(), actor(e).unwrap_or_else(|| json!({ "app_name": PRODUCT })));
    let src = match &ev.agent {
        Some(agent) => json!({ "name": agent.0 }),
        None => json!({ "name": PRODUCT }),
    };
    out.insert("src_endpoint".into(), src);
    if let Some(tool) = &ev.tool {
        out.insert("resources".into(), json!([{ "name": tool.to_string(), "type": "MCP Tool" }]));
    }
}

fn detection_finding(e: &StoredEvent, out: &mut Map<String, Value>) {
    let ev = &e.event;
    let text = |k: &str| ev.detail.get(k).and_then(Value::as_str);
    let kind = text("finding").unwrap_or("finding");
    let title = match text("rule") {
        Some(rule) => format!("{kind}: {rule}"),
        None => kind.to_owned(),
    };
    let mut info = json!({
        "uid": e.hash.to_hex(),
        "title": title,
        "types": [kind],
        "created_time": ev.time_ms,
    });
    if let (Some(evidence), Some(obj)) = (text("evidence"), info.as_object_mut()) {
        obj.insert("desc".into(), evidence.into());
    }
    out.insert("finding_info".into(), info);
    out.insert("status_id".into(), 1.into());
    out.insert("status".into(), "New".into());
    // What the gateway did about it (`detail.action`) stays in `unmapped`: OCSF's `action_id`
    // belongs to a profile this class does not carry in 1.7.0.
    if let Some(tool) = &ev.tool {
        out.insert("resources".into(), json!([{ "name": tool.to_string(), "type": "MCP Tool" }]));
    }
}

/// What OCSF has no attribute for, as the log has it.
fn unmapped(e: &StoredEvent) -> Value {
    let ev = &e.event;
    let mut m = Map::new();
    m.insert("kind".into(), ev.kind.as_str().into());
    m.insert("prev".into(), e.prev.to_hex().into());
    if let Some(agent) = &ev.agent {
        m.insert("agent".into(), agent.0.clone().into());
    }
    if let Some(run) = &ev.run {
        m.insert("run".into(), run.0.clone().into());
    }
    if let Some(step) = ev.step {
        m.insert("step".into(), step.into());
    }
    if let Some(tool) = &ev.tool {
        m.insert("tool".into(), tool.to_string().into());
    }
    if let Some(decision) = &ev.decision {
        m.insert("decision".into(), decision.clone().into());
    }
    m.insert("detail".into(), ev.detail.clone());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::{AgentId, Digest, NewEvent, RunId, ToolRef};

    fn stored(kind: EventKind) -> StoredEvent {
        let mut event = NewEvent::new(kind, 1_700_000_000_000);
        event.agent = Some(AgentId("reader".into()));
        event.run = Some(RunId("run-1".into()));
        event.tool = ToolRef::new("sample", "echo").ok();
        event.detail = json!({ "severity": "high", "finding": "injection", "rule": "hidden_instructions" });
        StoredEvent { seq: 7, prev: Digest::ZERO, hash: Digest::of(b"x"), event }
    }

    #[test]
    fn every_kind_maps_to_a_class_with_its_type_uid_and_the_log_identity() {
        for kind in EventKind::ALL {
            let v = to_ocsf(&stored(kind));
            let (class, activity, _) = class_of(kind);
            assert_eq!(v["class_uid"], class.uid());
            assert_eq!(v["type_uid"], u64::from(class.uid()) * 100 + u64::from(activity));
            assert_eq!(v["category_uid"], class.uid() / 1000);
            assert_eq!(v["metadata"]["uid"], Digest::of(b"x").to_hex());
            assert_eq!(v["metadata"]["sequence"], 7);
            assert_eq!(v["metadata"]["correlation_uid"], "run-1");
            assert_eq!(v["unmapped"]["kind"], kind.as_str());
        }
    }

    #[test]
    fn the_classes_the_issue_names() {
        assert_eq!(class_of(EventKind::CallRequested).0.uid(), 6003);
        assert_eq!(class_of(EventKind::AuthFailed).0.uid(), 3002);
        assert_eq!(class_of(EventKind::FindingRecorded).0.uid(), 2004);
        assert_eq!(class_of(EventKind::AgentKeyIssued).0.uid(), 3001);
        let f = to_ocsf(&stored(EventKind::FindingRecorded));
        assert_eq!(
            (f["severity_id"].clone(), f["finding_info"]["title"].clone()),
            (json!(4), json!("injection: hidden_instructions"))
        );
    }
}
