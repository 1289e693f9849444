//! One run's story, read from its events: the steps in order with their decisions, policies,
//! approvals and who gave them, credentials by fingerprint, findings and upstream errors, and a
//! timeline to draw them on.
//!
//! The console's run page and `custos report run` tell the same story, so both build it here;
//! each renders it its own way. Every string in it comes from the log and so, in the end, from
//! agents and upstreams (tool arguments, reasons, error texts): renderers must escape it.

use std::collections::BTreeMap;

use custos_core::EventKind;
use custos_store::StoredEvent;
use serde_json::Value;

use crate::calls::{field, strings};
use crate::page;

/// Most events of one run a story reads (the console's run page, `custos report run`).
pub const MAX_EVENTS: usize = 10_000;
/// Most characters of a step's recorded arguments the story keeps.
const MAX_ARGUMENTS_CHARS: usize = 2_000;

/// What happened to a held step's approval request.
#[derive(Debug, Default)]
pub struct ApprovalView {
    pub id: String,
    /// requested, approved, denied, used, expired.
    pub state: String,
    /// Whether the request was approved (it may since have been used).
    pub approved: bool,
    pub by: String,
    /// How the approver signed in (`oidc`, `login-link`, …) and, for `oidc`, as whom.
    pub method: String,
    /// The parts of [`Self::method`]: the sign-in method, the identity provider and the
    /// subject it vouched for (empty when the method has none).
    pub identity_method: String,
    pub issuer: String,
    pub subject: String,
    pub at: String,
    pub reason: String,
    pub requested_ms: i64,
    pub decided_ms: Option<i64>,
}

/// One credential a step used, as the broker recorded it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    pub name: String,
    /// The keyed fingerprint (HMAC-SHA256 under the master key) or a minted token's id.
    pub fingerprint: String,
}

impl std::fmt::Display for CredentialView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.fingerprint)
    }
}

/// One finding of a run.
#[derive(Debug, Clone, Default)]
pub struct FindingView {
    pub kind: String,
    pub severity: String,
    pub rule: String,
    pub time_ms: i64,
    pub step: Option<u64>,
}

impl std::fmt::Display for FindingView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.kind, self.severity, self.rule)
    }
}

/// One step of a run.
#[derive(Debug, Default)]
pub struct StepView {
    pub step: u64,
    pub tool: String,
    /// `read`, `write` or `privileged`, as the gateway classified the tool.
    pub class: String,
    pub decision: String,
    pub reason: String,
    pub policies: String,
    /// The policies that held the call for an approval, when it was held (its final decision,
    /// after the approval, is [`Self::decision`]).
    pub held_by: String,
    /// The arguments as recorded (`[audit] record_arguments`), compact JSON, cut to
    /// [`MAX_ARGUMENTS_CHARS`]; empty when not recorded.
    pub arguments: String,
    pub approval: Option<ApprovalView>,
    /// `name (fingerprint)` of each credential the step used.
    pub credentials: Vec<String>,
    pub credential_list: Vec<CredentialView>,
    /// `kind (severity, rule)` of each finding.
    pub findings: Vec<String>,
    pub finding_list: Vec<FindingView>,
    pub errors: Vec<String>,
    /// `ok`, `error`, …: how the call ended; empty when it did not run.
    pub outcome: String,
    pub latency: String,
    pub time: String,
    pub time_ms: i64,
    pub finished_ms: Option<i64>,
    /// The sequence numbers of the step's first and last events (for `custos audit proof`).
    pub first_seq: u64,
    pub last_seq: u64,
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

/// One run, told from its events.
#[derive(Debug, Default)]
pub struct RunStory {
    pub run: String,
    pub agent: String,
    /// Who the run acts for: the principal chain, `→` between, or `-`.
    pub principal: String,
    pub steps: Vec<StepView>,
    /// Errors of the run outside any step.
    pub errors: Vec<String>,
    /// Every finding of the run, in log order, with or without a step.
    pub findings: Vec<FindingView>,
    pub timeline: Timeline,
    /// More events than were read: the latest are not in the story.
    pub truncated: bool,
    pub events: usize,
    /// The first and last event's sequence numbers and times.
    pub first_seq: u64,
    pub last_seq: u64,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// The x of the timeline's left end and its width, in the SVG's units.
pub const LEFT: i64 = 30;
pub const WIDTH: i64 = 940;

/// The story of run `run` from its `events` (in log order).
pub fn build(run: String, events: &[StoredEvent], truncated: bool) -> RunStory {
    let mut steps: BTreeMap<u64, StepView> = BTreeMap::new();
    let mut findings: Vec<FindingView> = Vec::new();
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
            let s = steps.entry(n).or_insert_with(|| StepView {
                step: n,
                tool: ev.tool.as_ref().map(ToString::to_string).unwrap_or_default(),
                time_ms: ev.time_ms,
                time: page::time(ev.time_ms),
                first_seq: e.seq,
                ..StepView::default()
            });
            s.last_seq = e.seq;
            s
        });
        if let (Some(step), Some(Value::Array(used))) = (step, d.get("credentials")) {
            for c in used {
                let credential = CredentialView {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    fingerprint: c.get("fingerprint").and_then(Value::as_str).unwrap_or("-").to_owned(),
                };
                if !step.credential_list.contains(&credential) {
                    step.credentials.push(credential.to_string());
                    step.credential_list.push(credential);
                }
            }
        }
        let step = ev.step.and_then(|n| steps.get_mut(&n));
        match (ev.kind, step) {
            (EventKind::CallRequested, Some(s)) => {
                s.class = field(d, "class");
                if let Some(arguments) = d.get("arguments").filter(|a| !a.is_null()) {
                    s.arguments = cut(&arguments.to_string(), MAX_ARGUMENTS_CHARS);
                }
            }
            (EventKind::CallDecided, Some(s)) => {
                s.decision = ev.decision.clone().unwrap_or_default();
                if s.decision == "hold" {
                    s.held_by = strings(d, "policies").join(", ");
                }
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
                s.outcome = outcome;
            }
            (EventKind::FindingRecorded, s) => {
                let finding = FindingView {
                    kind: finding_kind(d),
                    severity: field(d, "severity"),
                    rule: field(d, "rule"),
                    time_ms: ev.time_ms,
                    step: ev.step,
                };
                if let Some(s) = s {
                    s.findings.push(finding.to_string());
                    s.finding_list.push(finding.clone());
                }
                findings.push(finding);
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
                        a.approved = kind == EventKind::ApprovalApproved;
                        a.state = if a.approved { "approved" } else { "denied" }.into();
                        a.by = field(d, "approver");
                        a.method = method(d.get("identity"));
                        if let Some(identity) = d.get("identity") {
                            a.identity_method = field(identity, "method");
                            a.issuer = field(identity, "issuer");
                            a.subject = field(identity, "subject");
                        }
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
    RunStory {
        run,
        agent,
        principal: if principal.is_empty() { "-".into() } else { principal },
        steps,
        errors: run_errors,
        findings,
        timeline,
        truncated,
        events: events.len(),
        first_seq: events.first().map_or(0, |e| e.seq),
        last_seq: events.last().map_or(0, |e| e.seq),
        started_ms: events.iter().map(|e| e.event.time_ms).min().unwrap_or(0),
        ended_ms: events.iter().map(|e| e.event.time_ms).max().unwrap_or(0),
    }
}

/// `text` cut to `max` characters, with `…` when it was longer.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
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

/// Closest two step marks may be, in the SVG's units, for a layout by time.
const MIN_GAP: i64 = 18;

/// Lays the run out along one lane: by time when it took any and its steps are far enough
/// apart to be told apart, else by step.
fn draw(
    events: &[StoredEvent],
    steps: &[StepView],
    findings: &[FindingView],
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
    let by_time = |time: i64| LEFT + (time.saturating_sub(t0)).saturating_mul(WIDTH) / (t1 - t0).max(1);
    // Steps closer in time than a mark is wide would hide each other: then lay out by step.
    let crowded = steps.windows(2).any(|w| match w {
        [a, b] => (by_time(b.time_ms) - by_time(a.time_ms)).abs() < MIN_GAP,
        _ => false,
    });
    let x = |time: i64, step: Option<u64>| -> i64 {
        if t1 > t0 && !crowded {
            by_time(time)
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
            // A wait too short to draw is shown as a bar around its step's mark.
            let (from, to) =
                if to - from < MIN_GAP { (from - MIN_GAP / 2 - 4, from + MIN_GAP / 2 + 4) } else { (from, to) };
            t.spans.push(Span {
                x: from,
                width: to - from,
                state: a.state.clone(),
                title: format!("step {}: approval {}{by}", s.step, a.state),
            });
        }
    }
    t.findings = findings.iter().map(|f| Flag { x: x(f.time_ms, f.step), title: f.to_string() }).collect();
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
                json!({"class": "privileged", "arguments": {"a": 1}, "credentials": [{"name": "gh", "fingerprint": "fp1"}]}),
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
        let story = build("r1".into(), &events, false);
        assert_eq!(story.principal, "alice");
        assert_eq!((story.first_seq, story.last_seq, story.started_ms, story.ended_ms), (1, 7, 1000, 11_000));
        let [s] = story.steps.as_slice() else { panic!("one step") };
        assert_eq!((s.decision.as_str(), s.policies.as_str(), s.class.as_str()), ("hold", "p1", "privileged"));
        assert_eq!(s.held_by, "p1");
        assert_eq!((s.first_seq, s.last_seq), (2, 7));
        assert_eq!(s.arguments, r#"{"a":1}"#);
        assert_eq!(s.credentials, ["gh (fp1)"]);
        let a = s.approval.as_ref().unwrap();
        assert_eq!((a.state.as_str(), a.by.as_str(), a.method.as_str()), ("approved", "ann", "oidc: https://idp s1"));
        assert_eq!((a.issuer.as_str(), a.subject.as_str()), ("https://idp", "s1"));
        assert_eq!(s.latency, "9000 ms");
        assert_eq!(s.outcome, "error");
        assert_eq!(s.errors, [r#"error: {"code":-1}"#]);
        assert_eq!(story.findings.len(), 1);
        let span = &story.timeline.spans[0];
        // 10 s of run over 940 units: the wait of 4 s is 376 units from 1 s in.
        assert_eq!((span.x, span.width), (LEFT + 94, 376));
        assert_eq!(story.timeline.findings.len(), 1);
        assert_eq!(story.timeline.errors[0].x, LEFT + WIDTH);
    }

    #[test]
    fn a_run_without_duration_is_laid_out_by_step() {
        let events: Vec<StoredEvent> =
            (1..=3).map(|n| stored(n, EventKind::CallDecided, 5, Some(n), json!({}))).collect();
        let story = build("r1".into(), &events, false);
        let xs: Vec<i64> = story.timeline.marks.iter().map(|m| m.x).collect();
        assert_eq!(xs, [LEFT, LEFT + WIDTH / 3, LEFT + 2 * WIDTH / 3]);
    }

    #[test]
    fn steps_too_close_in_time_are_laid_out_by_step() {
        let mut events: Vec<StoredEvent> = (1..=2)
            .map(|n| stored(n, EventKind::CallDecided, 1000 + i64::try_from(n).unwrap(), Some(n), json!({})))
            .collect();
        events.push(stored(3, EventKind::RunEnded, 60_000, None, json!({})));
        let story = build("r1".into(), &events, false);
        let xs: Vec<i64> = story.timeline.marks.iter().map(|m| m.x).collect();
        assert_eq!(xs, [LEFT, LEFT + WIDTH / 2]);
    }

    #[test]
    fn long_arguments_are_cut_on_a_character() {
        assert_eq!(cut("ééé", 2), "éé…");
        assert_eq!(cut("ab", 2), "ab");
    }
}
