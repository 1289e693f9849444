//! Runs: the list newest first, and one run as a timeline (an inline SVG, drawn on the server)
//! over the ordered list of its steps: decisions, policies, approvals and who gave them,
//! credentials by fingerprint, findings, upstream errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_core::EventKind;
use custos_store::{EventQuery, Store, StoreError, StoredEvent};
use serde_json::Value;

use crate::auth::Signed;
use crate::calls::{self, field, newest, strings, text_param};
use crate::console::Console;
use crate::page::{self, Frame};

/// Most events of one run the run page reads.
const MAX_RUN_EVENTS: usize = 10_000;
/// Most calls read to summarize the listed runs.
const MAX_SUMMARIZED: usize = 100_000;

/// One run in the list.
#[derive(Debug)]
pub struct RunRow {
    pub run: String,
    pub agent: String,
    pub started: String,
    pub steps: usize,
    pub allow: usize,
    pub deny: usize,
    pub hold: usize,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    frame: Frame,
    rows: Vec<RunRow>,
    agent: String,
    limit: usize,
}

/// `GET /console/runs?agent=…&limit=…`.
pub async fn runs(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "runs");
    let (agent, limit) = match text_param(&params, "agent").and_then(|a| Ok((a, calls::limit_param(&params)?))) {
        Ok(parsed) => parsed,
        Err(bad) => return calls::bad_request(frame, bad),
    };
    let rows = match c.read(|store| run_rows(store, agent.clone(), limit)) {
        Ok(rows) => rows,
        Err(e) => return calls::unavailable(frame, &e),
    };
    page::html(StatusCode::OK, &RunsPage { frame, rows, agent: agent.unwrap_or_default(), limit })
}

/// The newest `limit` runs (of `agent`), each with its steps and decisions counted.
fn run_rows(store: &dyn Store, agent: Option<String>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
    let q = EventQuery { kind: Some(EventKind::RunStarted), agent: agent.clone(), ..EventQuery::default() };
    let started = newest(store, &q, limit, |_| true)?;
    let Some(oldest) = started.iter().map(|e| e.seq).min() else { return Ok(Vec::new()) };
    let decided = store.query(&EventQuery {
        kind: Some(EventKind::CallDecided),
        agent,
        after_seq: Some(oldest.saturating_sub(1)),
        limit: Some(MAX_SUMMARIZED),
        ..EventQuery::default()
    })?;
    let mut counts: HashMap<&str, (std::collections::BTreeSet<u64>, [usize; 3])> = HashMap::new();
    for e in &decided {
        let Some(run) = &e.event.run else { continue };
        let entry = counts.entry(run.0.as_str()).or_default();
        if let Some(step) = e.event.step {
            entry.0.insert(step);
        }
        match e.event.decision.as_deref() {
            Some("allow") => entry.1[0] += 1,
            Some("deny") => entry.1[1] += 1,
            Some("hold") => entry.1[2] += 1,
            _ => {}
        }
    }
    Ok(started
        .iter()
        .map(|e| {
            let run = e.event.run.as_ref().map_or_else(String::new, |r| r.0.clone());
            let (steps, [allow, deny, hold]) =
                counts.get(run.as_str()).map_or((0, [0; 3]), |(steps, counts)| (steps.len(), *counts));
            RunRow {
                agent: e.event.agent.as_ref().map_or_else(|| "-".to_owned(), |a| a.0.clone()),
                started: page::time(e.event.time_ms),
                run,
                steps,
                allow,
                deny,
                hold,
            }
        })
        .collect())
}

/// What happened to a held step's approval request.
#[derive(Debug, Default)]
pub struct ApprovalView {
    pub id: String,
    /// requested, approved, denied, used, expired, refused.
    pub state: String,
    pub by: String,
    /// How the approver signed in (`oidc`, `login-link`, …) and, for `oidc`, as whom.
    pub method: String,
    pub at: String,
    pub reason: String,
    pub requested_ms: i64,
    pub decided_ms: Option<i64>,
}

/// One step of a run.
#[derive(Debug, Default)]
pub struct StepView {
    pub step: u64,
    pub tool: String,
    pub decision: String,
    pub reason: String,
    pub policies: String,
    pub approval: Option<ApprovalView>,
    /// `name (fingerprint)` of each credential the step used.
    pub credentials: Vec<String>,
    pub findings: Vec<String>,
    pub errors: Vec<String>,
    pub latency: String,
    pub time: String,
    time_ms: i64,
    finished_ms: Option<i64>,
}

/// Something of the run not tied to a step (an upstream that exited, a protocol error), or a
/// finding, drawn on the timeline.
#[derive(Debug)]
pub struct Flag {
    pub x: i64,
    pub title: String,
}

/// A step's mark on the timeline.
#[derive(Debug)]
pub struct Mark {
    pub x: i64,
    pub step: u64,
    pub decision: String,
    pub title: String,
}

/// A hold waiting for its approval, from the hold to the decision.
#[derive(Debug)]
pub struct Span {
    pub x: i64,
    pub width: i64,
    pub state: String,
    pub title: String,
}

/// The picture of a run.
#[derive(Debug, Default)]
pub struct Timeline {
    pub marks: Vec<Mark>,
    pub spans: Vec<Span>,
    pub findings: Vec<Flag>,
    pub errors: Vec<Flag>,
    pub start: String,
    pub end: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    frame: Frame,
    run: String,
    agent: String,
    principal: String,
    steps: Vec<StepView>,
    /// Errors of the run outside any step.
    errors: Vec<String>,
    timeline: Timeline,
    truncated: bool,
}

/// The x of the timeline's left end and its width, in the SVG's units.
const LEFT: i64 = 30;
const WIDTH: i64 = 940;

/// `GET /console/runs/{run}`.
pub async fn run(State(c): State<Arc<Console>>, Signed { session }: Signed, Path(run): Path<String>) -> Response {
    let frame = Frame::signed_in(&session, "runs");
    let q = EventQuery { run: Some(run.clone()), limit: Some(MAX_RUN_EVENTS), ..EventQuery::default() };
    let events = match c.read(|store| store.query(&q)) {
        Ok(events) => events,
        Err(e) => return calls::unavailable(frame, &e),
    };
    if events.is_empty() {
        return page::error(
            StatusCode::NOT_FOUND,
            frame,
            "Unknown run",
            format!("the audit log has no run `{}`", run.escape_debug()),
        );
    }
    let truncated = events.len() >= MAX_RUN_EVENTS;
    let page = story(frame, run, &events, truncated);
    page::html(StatusCode::OK, &page)
}

/// The run page of `events` (one run's, in log order).
fn story(frame: Frame, run: String, events: &[StoredEvent], truncated: bool) -> RunPage {
    let mut steps: BTreeMap<u64, StepView> = BTreeMap::new();
    let mut findings: Vec<(i64, Option<u64>, String)> = Vec::new();
    let mut errors: Vec<(i64, Option<u64>, String)> = Vec::new();
    let mut agent = String::new();
    let mut principal = String::new();
    for e in events {
        let ev = &e.event;
        if agent.is_empty() {
            agent = ev.agent.as_ref().map(|a| a.0.clone()).unwrap_or_default();
        }
        let d = &ev.detail;
        if ev.kind == EventKind::RunStarted {
            principal = strings(d, "principal").join(" → ");
        }
        let step = ev.step.map(|n| {
            steps.entry(n).or_insert_with(|| StepView {
                step: n,
                tool: ev.tool.as_ref().map(ToString::to_string).unwrap_or_default(),
                time_ms: ev.time_ms,
                time: page::time(ev.time_ms),
                ..StepView::default()
            })
        });
        if let (Some(step), Some(Value::Array(used))) = (step, d.get("credentials")) {
            for c in used {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                let fp = c.get("fingerprint").and_then(Value::as_str).unwrap_or("-");
                let shown = format!("{name} ({fp})");
                if !step.credentials.contains(&shown) {
                    step.credentials.push(shown);
                }
            }
        }
        let step = ev.step.and_then(|n| steps.get_mut(&n));
        match (ev.kind, step) {
            (EventKind::CallDecided, Some(s)) => {
                s.decision = ev.decision.clone().unwrap_or_default();
                s.reason = field(d, "reason");
                s.policies = strings(d, "policies").join(", ");
            }
            (EventKind::CallFinished, Some(s)) => {
                s.finished_ms = Some(ev.time_ms);
                s.latency = format!("{} ms", ev.time_ms.saturating_sub(s.time_ms).max(0));
                let outcome = field(d, "outcome");
                if outcome != "ok" && !outcome.is_empty() {
                    let said = d.get("error").filter(|v| !v.is_null()).map_or_else(String::new, |v| format!(": {v}"));
                    let why = format!("{outcome}{said}");
                    errors.push((ev.time_ms, ev.step, why.clone()));
                    s.errors.push(why);
                }
            }
            (EventKind::FindingRecorded, s) => {
                let what = format!("{} ({}, {})", finding_kind(d), field(d, "severity"), field(d, "rule"));
                findings.push((ev.time_ms, ev.step, what.clone()));
                if let Some(s) = s {
                    s.findings.push(what);
                }
            }
            (EventKind::ApprovalRequested, Some(s)) => {
                s.approval = Some(ApprovalView {
                    id: field(d, "id"),
                    state: "requested".into(),
                    requested_ms: ev.time_ms,
                    ..ApprovalView::default()
                });
            }
            (
                kind @ (EventKind::ApprovalApproved
                | EventKind::ApprovalDenied
                | EventKind::ApprovalUsed
                | EventKind::ApprovalExpired),
                Some(s),
            ) => {
                let a = s.approval.get_or_insert_with(|| ApprovalView {
                    id: field(d, "id"),
                    requested_ms: ev.time_ms,
                    ..ApprovalView::default()
                });
                match kind {
                    EventKind::ApprovalApproved | EventKind::ApprovalDenied => {
                        a.state = if kind == EventKind::ApprovalApproved { "approved" } else { "denied" }.into();
                        a.by = field(d, "approver");
                        a.method = method(d.get("identity"));
                        a.at = page::time(ev.time_ms);
                        a.reason = field(d, "reason");
                        a.decided_ms = Some(ev.time_ms);
                    }
                    EventKind::ApprovalUsed => a.state = "used".into(),
                    _ => {
                        a.state = "expired".into();
                        a.decided_ms.get_or_insert(ev.time_ms);
                    }
                }
            }
            (EventKind::UpstreamExited | EventKind::UpstreamRestarted | EventKind::ProtocolError, s) => {
                let what = match ev.kind {
                    EventKind::UpstreamExited => format!(
                        "upstream {} exited ({})",
                        field(d, "server"),
                        d.get("status").map_or_else(String::new, ToString::to_string)
                    ),
                    EventKind::UpstreamRestarted => format!("upstream {} restarted", field(d, "server")),
                    _ => format!("protocol error from {}: {}", field(d, "from"), field(d, "reason")),
                };
                errors.push((ev.time_ms, ev.step, what.clone()));
                if let Some(s) = s {
                    s.errors.push(what);
                }
            }
            _ => {}
        }
    }
    let steps: Vec<StepView> = steps.into_values().collect();
    let timeline = draw(events, &steps, &findings, &errors);
    let run_errors = errors.into_iter().filter(|(_, step, _)| step.is_none()).map(|(_, _, w)| w).collect();
    RunPage {
        frame,
        run,
        agent,
        principal: if principal.is_empty() { "-".into() } else { principal },
        steps,
        errors: run_errors,
        timeline,
        truncated,
    }
}

/// A finding's kind: `kind`, or `finding` in older events.
fn finding_kind(d: &Value) -> String {
    let kind = field(d, "kind");
    if kind.is_empty() {
        field(d, "finding")
    } else {
        kind
    }
}

/// How an approver signed in, from an approval event's `identity`.
fn method(identity: Option<&Value>) -> String {
    let Some(identity) = identity else { return "-".to_owned() };
    let m = field(identity, "method");
    match (identity.get("issuer").and_then(Value::as_str), identity.get("subject").and_then(Value::as_str)) {
        (Some(iss), Some(sub)) => format!("{m}: {iss} {sub}"),
        _ if m.is_empty() => "-".to_owned(),
        _ => m,
    }
}

/// Lays the run out along one lane: by time when it took any, else by step.
fn draw(
    events: &[StoredEvent],
    steps: &[StepView],
    findings: &[(i64, Option<u64>, String)],
    errors: &[(i64, Option<u64>, String)],
) -> Timeline {
    let t0 = events.iter().map(|e| e.event.time_ms).min().unwrap_or(0);
    let t1 = events.iter().map(|e| e.event.time_ms).max().unwrap_or(0);
    let count = i64::try_from(steps.len()).unwrap_or(i64::MAX).max(1);
    let by_step = |step: Option<u64>| -> i64 {
        let i = step.and_then(|n| steps.iter().position(|s| s.step == n));
        let i = i.map_or(count, |i| i64::try_from(i).unwrap_or(0));
        LEFT + i.saturating_mul(WIDTH) / count
    };
    let x = |time: i64, step: Option<u64>| -> i64 {
        if t1 > t0 {
            LEFT + (time.saturating_sub(t0)).saturating_mul(WIDTH) / (t1 - t0)
        } else {
            by_step(step)
        }
    };
    let mut t = Timeline { start: page::time(t0), end: page::time(t1), ..Timeline::default() };
    for s in steps {
        let at = x(s.time_ms, Some(s.step));
        let decision = if s.decision.is_empty() { "undecided".to_owned() } else { s.decision.clone() };
        t.marks.push(Mark { x: at, step: s.step, title: format!("step {} {}: {decision}", s.step, s.tool), decision });
        if let Some(a) = &s.approval {
            let from = x(a.requested_ms, Some(s.step));
            let to = x(a.decided_ms.or(s.finished_ms).unwrap_or(t1), Some(s.step));
            let by = if a.by.is_empty() { String::new() } else { format!(" by {} ({})", a.by, a.method) };
            t.spans.push(Span {
                x: from,
                width: (to - from).max(6),
                state: a.state.clone(),
                title: format!("step {}: approval {}{by}", s.step, a.state),
            });
        }
    }
    t.findings = findings.iter().map(|(time, step, what)| Flag { x: x(*time, *step), title: what.clone() }).collect();
    t.errors = errors.iter().map(|(time, step, what)| Flag { x: x(*time, *step), title: what.clone() }).collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::{AgentId, Digest, NewEvent, RunId, ToolRef};
    use serde_json::json;

    fn stored(seq: u64, kind: EventKind, time_ms: i64, step: Option<u64>, detail: Value) -> StoredEvent {
        let mut e = NewEvent::new(kind, time_ms);
        e.agent = Some(AgentId("bot".into()));
        e.run = Some(RunId("r1".into()));
        e.step = step;
        e.tool = step.map(|_| "fs/write".parse::<ToolRef>().unwrap());
        e.detail = detail;
        if kind == EventKind::CallDecided {
            e.decision = Some("hold".into());
        }
        StoredEvent { seq, prev: Digest::ZERO, hash: Digest::ZERO, event: e }
    }

    #[test]
    fn a_held_step_shows_its_approver_and_spans_the_wait() {
        let events = vec![
            stored(1, EventKind::RunStarted, 1000, None, json!({"principal": ["alice"]})),
            stored(
                2,
                EventKind::CallRequested,
                2000,
                Some(1),
                json!({"credentials": [{"name": "gh", "fingerprint": "fp1"}]}),
            ),
            stored(3, EventKind::CallDecided, 2000, Some(1), json!({"policies": ["p1"], "reason": "needs a human"})),
            stored(4, EventKind::ApprovalRequested, 2000, Some(1), json!({"id": "a1"})),
            stored(
                5,
                EventKind::ApprovalApproved,
                6000,
                Some(1),
                json!({"id": "a1", "approver": "ann", "identity": {"method": "oidc", "issuer": "https://idp", "subject": "s1"}}),
            ),
            stored(
                6,
                EventKind::FindingRecorded,
                7000,
                Some(1),
                json!({"kind": "secret", "severity": "high", "rule": "r"}),
            ),
            stored(7, EventKind::CallFinished, 11_000, Some(1), json!({"outcome": "error", "error": {"code": -1}})),
        ];
        let page = story(Frame::default(), "r1".into(), &events, false);
        assert_eq!(page.principal, "alice");
        let [s] = page.steps.as_slice() else { panic!("one step") };
        assert_eq!((s.decision.as_str(), s.policies.as_str()), ("hold", "p1"));
        assert_eq!(s.credentials, ["gh (fp1)"]);
        let a = s.approval.as_ref().unwrap();
        assert_eq!((a.state.as_str(), a.by.as_str(), a.method.as_str()), ("approved", "ann", "oidc: https://idp s1"));
        assert_eq!(s.latency, "9000 ms");
        assert_eq!(s.errors, [r#"error: {"code":-1}"#]);
        let span = &page.timeline.spans[0];
        // 10 s of run over 940 units: the wait of 4 s is 376 units from 1 s in.
        assert_eq!((span.x, span.width), (LEFT + 94, 376));
        assert_eq!(page.timeline.findings.len(), 1);
        assert_eq!(page.timeline.errors[0].x, LEFT + WIDTH);
    }

    #[test]
    fn a_run_without_duration_is_laid_out_by_step() {
        let events: Vec<StoredEvent> =
            (1..=3).map(|n| stored(n, EventKind::CallDecided, 5, Some(n), json!({}))).collect();
        let page = story(Frame::default(), "r1".into(), &events, false);
        let xs: Vec<i64> = page.timeline.marks.iter().map(|m| m.x).collect();
        assert_eq!(xs, [LEFT, LEFT + WIDTH / 3, LEFT + 2 * WIDTH / 3]);
    }
}
