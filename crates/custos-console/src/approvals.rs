//! The approvals inbox: pending calls newest first, one request with what an approver needs to
//! decide it, and the decision (one click, then a confirmation).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use custos_approvals::{ApprovalError, ApprovalFilter, ApprovalRequest, ApprovalState, ApprovalStatus, Verdict};
use custos_core::EventKind;
use custos_store::{AgentRegistry, EventQuery, Store};

use crate::auth::{self, Signed};
use crate::console::{now_ms, Console};
use crate::page::{self, Frame};

/// Most requests one inbox page lists.
const MAX_LISTED: usize = 500;
/// Most earlier steps of the run shown beside a request.
const MAX_STEPS: usize = 200;

/// One row of the inbox.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub state: &'static str,
    pub agent: String,
    pub tool: String,
    pub run: String,
    pub step: u64,
    pub created: String,
    pub left: String,
    pub groups: String,
    pub decided_by: String,
}

impl Row {
    fn of(r: &ApprovalRequest, now: i64) -> Self {
        let open = matches!(r.state, ApprovalState::Pending | ApprovalState::Approved { .. });
        Self {
            id: r.id.clone(),
            state: r.state.name(),
            agent: r.agent.0.clone(),
            tool: r.tool.to_string(),
            run: r.run.0.clone(),
            step: r.step,
            created: page::time(r.created_ms),
            left: if open { page::span(r.expires_ms.saturating_sub(now)) } else { "-".into() },
            groups: r.groups.join(", "),
            decided_by: decided_by(&r.state).unwrap_or_default(),
        }
    }

    /// Whether the row matches the search text `q` (id, agent, tool, run or approver).
    fn matches(&self, q: &str) -> bool {
        let q = q.to_lowercase();
        [&self.id, &self.agent, &self.tool, &self.run, &self.decided_by].iter().any(|f| f.to_lowercase().contains(&q))
    }
}

fn decided_by(state: &ApprovalState) -> Option<String> {
    match state {
        ApprovalState::Approved { by, .. } | ApprovalState::Denied { by, .. } => Some(by.clone()),
        ApprovalState::Used { approved_by, .. } => approved_by.clone(),
        ApprovalState::Pending | ApprovalState::Expired => None,
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct Inbox {
    frame: Frame,
    rows: Vec<Row>,
    state: String,
    q: String,
}

/// The states the inbox filters by, in its menu.
pub const STATES: [&str; 6] = ["pending", "approved", "denied", "used", "expired", "all"];

/// `GET /console/approvals?state=…&q=…`.
pub async fn inbox(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "approvals");
    let Some(queue) = &c.approvals else { return no_queue(frame) };
    let state = params.get("state").map_or("pending", String::as_str);
    let status = match state {
        "all" => None,
        s => match ApprovalStatus::parse(s) {
            Some(s) => Some(s),
            None => {
                return page::error(
                    StatusCode::BAD_REQUEST,
                    frame,
                    "Bad request",
                    format!("`{}` is not a state: expected one of {}", s.escape_debug(), STATES.join(", ")),
                )
            }
        },
    };
    let q = params.get("q").map(|q| q.trim().to_owned()).unwrap_or_default();
    let now = now_ms();
    let listed =
        queue.list(ApprovalFilter { status, limit: Some(if q.is_empty() { MAX_LISTED } else { 10 * MAX_LISTED }) });
    let rows = match listed {
        Ok(list) => {
            list.iter().map(|r| Row::of(r, now)).filter(|r| q.is_empty() || r.matches(&q)).take(MAX_LISTED).collect()
        }
        Err(e) => return page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", e.to_string()),
    };
    page::html(StatusCode::OK, &Inbox { frame, rows, state: state.to_owned(), q })
}

/// One earlier step of the run, or a finding on it.
#[derive(Debug)]
pub struct Step {
    pub step: String,
    pub tool: String,
    pub what: String,
    pub detail: String,
    pub time: String,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct Detail {
    frame: Frame,
    r: Row,
    owner: String,
    purpose: String,
    principal: String,
    class: String,
    descriptor: String,
    digest: String,
    arguments: String,
    policies: String,
    reason: String,
    steps: Vec<Step>,
    findings: Vec<Step>,
    /// `None`: the signed-in approver may decide; else why not.
    cannot: Option<String>,
    pending: bool,
    decision: Option<String>,
}

/// `GET /console/approvals/{id}`.
pub async fn detail(State(c): State<Arc<Console>>, Signed { session }: Signed, Path(id): Path<String>) -> Response {
    let frame = Frame::signed_in(&session, "approvals");
    let Some(queue) = &c.approvals else { return no_queue(frame) };
    let request = match queue.get(&id) {
        Ok(Some(r)) => r,
        Ok(None) => return unknown(&c, &session, &id).await,
        Err(e) => return page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", e.to_string()),
    };
    let now = now_ms();
    let (owner, purpose) = agent_facts(&c, &request.agent.0);
    let class = c.config.server(request.tool.server()).map_or_else(
        || "privileged (unknown server)".to_owned(),
        |s| {
            let descriptor = c
                .read(|store| custos_store::known_tools(store, request.tool.server()))
                .ok()
                .and_then(|tools| tools.into_iter().find(|t| t.tool.name() == request.tool.name()));
            s.classes.classify(request.tool.name(), descriptor.as_ref()).to_string()
        },
    );
    let Story { steps, findings, reason, how } = run_story(&c, &request);
    let how = how.map_or(String::new(), |h| format!(" ({h})"));
    let pending = request.state == ApprovalState::Pending;
    let cannot = if pending { queue.may_decide(&request, &session.approver).map(str::to_owned) } else { None };
    let decision = match &request.state {
        ApprovalState::Pending => None,
        ApprovalState::Approved { by, at_ms, reason } | ApprovalState::Denied { by, at_ms, reason } => Some(format!(
            "{} by {by}{how} at {}{}",
            request.state.name(),
            page::time(*at_ms),
            reason.as_deref().map_or(String::new(), |r| format!(": {r}"))
        )),
        ApprovalState::Used { at_ms, approved_by } => Some(format!(
            "approved by {}{how} and used at {}",
            approved_by.as_deref().unwrap_or("?"),
            page::time(*at_ms)
        )),
        ApprovalState::Expired => Some("expired undecided or unused".to_owned()),
    };
    let page = Detail {
        frame,
        owner,
        purpose,
        principal: if request.principal.is_empty() { "-".into() } else { request.principal.join(" → ") },
        class,
        descriptor: request.descriptor_sha256.clone().unwrap_or_else(|| "-".into()),
        digest: request.digest.clone(),
        arguments: serde_json::to_string_pretty(&request.arguments).unwrap_or_default(),
        policies: request.policies.join(", "),
        reason,
        steps,
        findings,
        cannot,
        pending,
        decision,
        r: Row::of(&request, now),
    };
    page::html(StatusCode::OK, &page)
}

/// The owner and purpose of agent `id`, from the config or the registry.
fn agent_facts(c: &Console, id: &str) -> (String, String) {
    if let Some(a) = c.config.agent(id) {
        return (a.owner.clone(), a.purpose.clone());
    }
    let registered = c.read(|store| store.agents()).unwrap_or_default();
    registered
        .into_iter()
        .find(|r| r.agent.id.0 == id)
        .map_or_else(|| ("-".into(), "-".into()), |r| (r.agent.owner, r.agent.purpose))
}

/// The run's earlier steps (decisions), the findings on it, and the reason the held step was
/// held.
fn run_story(c: &Console, r: &ApprovalRequest) -> Story {
    let q = EventQuery { run: Some(r.run.0.clone()), ..EventQuery::default() };
    let events = c.read(|store| store.query(&q)).unwrap_or_default();
    let mut steps = Vec::new();
    let mut findings = Vec::new();
    let mut reason = String::new();
    let mut how = None;
    for e in &events {
        let ev = &e.event;
        let step = ev.step.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let tool = ev.tool.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        match ev.kind {
            EventKind::ApprovalApproved | EventKind::ApprovalDenied
                if ev.detail.get("id").and_then(|v| v.as_str()) == Some(r.id.as_str()) =>
            {
                how = ev.detail.get("identity").and_then(identity_text);
            }
            // The first decision of the held step is the hold; later ones follow the approval.
            EventKind::CallDecided if ev.step == Some(r.step) && reason.is_empty() => {
                reason = ev.detail.get("reason").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            }
            EventKind::CallDecided if ev.step.is_some_and(|s| s < r.step) && steps.len() < MAX_STEPS => {
                steps.push(Step {
                    step,
                    tool,
                    what: ev.decision.clone().unwrap_or_default(),
                    detail: ev.detail.get("reason").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
                    time: page::time(ev.time_ms),
                });
            }
            EventKind::FindingRecorded if findings.len() < MAX_STEPS => {
                let d = &ev.detail;
                let field = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                findings.push(Step {
                    step,
                    tool,
                    what: format!("{} ({})", field("finding"), field("severity")),
                    detail: field("rule"),
                    time: page::time(ev.time_ms),
                });
            }
            _ => {}
        }
    }
    Story { steps, findings, reason, how }
}

/// What [`run_story`] reads of the run around a request.
struct Story {
    steps: Vec<Step>,
    findings: Vec<Step>,
    reason: String,
    /// How the decider was identified, as the decision's event records it.
    how: Option<String>,
}

/// `oidc: ISSUER SUBJECT`, `login-link`, … from a decision event's `identity`.
fn identity_text(identity: &serde_json::Value) -> Option<String> {
    let method = identity.get("method")?.as_str()?;
    let field = |k: &str| identity.get(k).and_then(|v| v.as_str());
    Some(match (field("issuer"), field("subject")) {
        (Some(issuer), Some(subject)) => format!("{method}: {issuer} {subject}"),
        _ => method.to_owned(),
    })
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct Confirm {
    frame: Frame,
    r: Row,
    verdict: &'static str,
    reason: String,
}

/// `POST /console/approvals/{id}/decide` (form: `csrf`, `verdict` approve|deny, `reason`,
/// `confirm`): without `confirm=yes`, the confirmation page; with it, the decision.
pub async fn decide(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let path = "/console/approvals/{id}/decide";
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) = auth::check_form(&c, &session, &headers, form.get("csrf").map(String::as_str), path).await {
        return r;
    }
    let frame = Frame::signed_in(&session, "approvals");
    let Some(queue) = &c.approvals else { return no_queue(frame) };
    let verdict = match form.get("verdict").map(String::as_str) {
        Some("approve") => Verdict::Approve,
        Some("deny") => Verdict::Deny,
        _ => return page::error(StatusCode::BAD_REQUEST, frame, "Bad request", "the form must say approve or deny"),
    };
    let reason = form.get("reason").map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    let back = format!("/console/approvals/{id}");
    if verdict == Verdict::Deny && reason.is_none() {
        let mut r = page::ErrorPage {
            frame,
            title: "A reason is required".into(),
            message: "a denial needs a reason: say why, so the agent's owner can act on it; nothing was decided".into(),
            next: Some((back, "Back to the request".into())),
        };
        r.frame.active = "approvals";
        return page::html(StatusCode::BAD_REQUEST, &r);
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let request = match queue.get(&id) {
            Ok(Some(r)) => r,
            Ok(None) => return unknown(&c, &session, &id).await,
            Err(e) => return page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", e.to_string()),
        };
        let verdict = if verdict == Verdict::Approve { "approve" } else { "deny" };
        let page = Confirm { frame, r: Row::of(&request, now_ms()), verdict, reason: reason.unwrap_or_default() };
        return page::html(StatusCode::OK, &page);
    }
    match queue.decide(&id, &session.approver, verdict, reason.as_deref()).await {
        Ok(_) => page::see_other(&back),
        Err(e) => {
            let (status, title) = match &e {
                ApprovalError::Unknown { .. } => (StatusCode::NOT_FOUND, "Unknown approval"),
                ApprovalError::NotInGroup { .. }
                | ApprovalError::SelfApproval { .. }
                | ApprovalError::PrincipalApproval { .. } => (StatusCode::FORBIDDEN, "You may not decide this call"),
                ApprovalError::AlreadyDecided { .. } | ApprovalError::Expired { .. } => {
                    (StatusCode::CONFLICT, "Nothing was decided")
                }
                ApprovalError::ReasonRequired | ApprovalError::InvalidApprover { .. } => {
                    (StatusCode::BAD_REQUEST, "Bad request")
                }
                _ => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            };
            let page = page::ErrorPage {
                frame,
                title: title.into(),
                message: e.to_string(),
                next: Some((back, "Back to the request".into())),
            };
            page::html(status, &page)
        }
    }
}

/// An unknown approval id: a page, and `approval.refused` recorded by the queue's rules.
async fn unknown(c: &Console, session: &crate::session::Session, id: &str) -> Response {
    c.refused("unknown_approval", "/console/approvals/{id}", Some(&session.approver)).await;
    page::error(
        StatusCode::NOT_FOUND,
        Frame::signed_in(session, "approvals"),
        "Unknown approval",
        format!("no approval request has the id `{}`", id.escape_debug()),
    )
}

fn no_queue(frame: Frame) -> Response {
    page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", "approvals are not enabled on this gateway")
}
