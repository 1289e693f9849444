//! What the demo shows at the end: each workflow's timeline, read back from the audit log (not
//! from what the scripted agents saw), the findings, and the check of the hash chain.

use custos_approvals::Approvals;
use custos_core::EventKind;
use custos_store::{EventQuery, SqlStore, Store, StoredEvent, VerifyReport};
use serde_json::{json, Value};

use crate::Failure;

/// One workflow as the audit log recorded it.
pub struct Workflow {
    pub name: &'static str,
    pub agent: &'static str,
    pub run: String,
    /// Why the script stopped early; `None` when every step got an answer.
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// Findings made outside a call (on a `tools/list`, e.g. the rug pull), with the log
    /// position they sit at in the timeline.
    pub listing: Vec<(u64, Finding)>,
}

/// One `tools/call`, from its `call.*` events and the findings on it.
pub struct Step {
    /// Where it starts in the log: orders steps and listing findings.
    seq: u64,
    pub step: u64,
    pub tool: String,
    pub arguments: Option<Value>,
    /// The last decision: after a hold, what the approval led to.
    pub decision: String,
    pub reason: String,
    pub policies: Vec<String>,
    /// The reason it was held, when it was.
    pub held: Option<String>,
    /// The approval request's id, state and who decided it.
    pub approval: Option<Value>,
    pub findings: Vec<String>,
    pub duration_ms: Option<u64>,
    /// The token the gateway minted for this call (`jti`, `fingerprint` of the signing key,
    /// `expires_at` in seconds), from the credentials its decision recorded.
    pub token: Option<Value>,
    /// What the upstream said it saw of the call's token (`jti`, `exp`, …), from the recorded
    /// result: the billing API answers with it.
    pub seen: Option<Value>,
}

#[derive(Clone)]
pub struct Finding {
    pub kind: String,
    pub rule: String,
    pub tool: Option<String>,
    pub action: String,
    pub run: Option<String>,
    pub step: Option<u64>,
}

impl Finding {
    fn of(e: &StoredEvent) -> Self {
        let d = &e.event.detail;
        Self {
            kind: text(d, "finding"),
            rule: text(d, "rule"),
            tool: e.event.tool.as_ref().map(ToString::to_string),
            action: text(d, "action"),
            run: e.event.run.as_ref().map(|r| r.0.clone()),
            step: e.event.step,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "kind": self.kind, "rule": self.rule, "tool": self.tool, "action": self.action,
            "run": self.run, "step": self.step,
        })
    }
}

/// The outcome of `audit verify`.
pub struct Audit {
    pub ok: bool,
    pub events: u64,
    pub head: String,
    /// What is wrong, when the chain is broken.
    pub problem: Option<String>,
}

impl Workflow {
    /// The run's events, grouped into steps.
    pub fn read(
        store: &SqlStore,
        approvals: &Approvals,
        (name, agent, run): (&'static str, &'static str, String),
        error: Option<String>,
    ) -> Result<Self, Failure> {
        let events =
            store.query(&EventQuery { run: Some(run.clone()), ..EventQuery::default() }).map_err(Failure::runtime)?;
        let mut steps: Vec<Step> = Vec::new();
        let mut listing = Vec::new();
        for e in &events {
            let ev = &e.event;
            let Some(n) = ev.step else {
                if ev.kind == EventKind::FindingRecorded {
                    listing.push((e.seq, Finding::of(e)));
                }
                continue;
            };
            if ev.kind == EventKind::CallRequested {
                steps.push(Step {
                    seq: e.seq,
                    step: n,
                    tool: ev.tool.as_ref().map(ToString::to_string).unwrap_or_default(),
                    arguments: ev.detail.get("arguments").cloned(),
                    decision: String::new(),
                    reason: String::new(),
                    policies: Vec::new(),
                    held: None,
                    approval: None,
                    findings: Vec::new(),
                    duration_ms: None,
                    token: minted(&ev.detail),
                    seen: None,
                });
                continue;
            }
            let Some(step) = steps.iter_mut().rev().find(|s| s.step == n) else { continue };
            match ev.kind {
                EventKind::CallDecided => {
                    step.decision = ev.decision.clone().unwrap_or_default();
                    step.reason = text(&ev.detail, "reason");
                    step.policies = ev
                        .detail
                        .get("policies")
                        .and_then(Value::as_array)
                        .map(|p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    if step.decision == "hold" {
                        step.held = Some(step.reason.clone());
                    }
                    if let Some(id) = ev.detail.get("approval").and_then(Value::as_str) {
                        step.approval = Some(approval(approvals, id));
                    }
                    // A held call's token is minted once it is approved: on this decision.
                    if let Some(token) = minted(&ev.detail) {
                        step.token = Some(token);
                    }
                }
                EventKind::FindingRecorded => {
                    let kind = text(&ev.detail, "finding");
                    if !step.findings.contains(&kind) {
                        step.findings.push(kind);
                    }
                }
                EventKind::CallFinished => {
                    step.duration_ms = ev.detail.get("duration_ms").and_then(Value::as_u64);
                    step.seen = ev.detail.get("result").and_then(|r| r.get("token")).filter(|t| t.is_object()).cloned();
                }
                _ => {}
            }
        }
        Ok(Self { name, agent, run, error, steps, listing })
    }

    pub fn completed(&self) -> bool {
        self.error.is_none()
    }

    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                json!({
                    "step": s.step, "tool": s.tool, "arguments": s.arguments, "decision": s.decision,
                    "reason": s.reason, "policies": s.policies, "held": s.held, "approval": s.approval,
                    "findings": s.findings, "duration_ms": s.duration_ms, "token": s.token,
                    "upstream_saw": s.seen,
                })
            })
            .collect();
        json!({
            "name": self.name, "agent": self.agent, "run": self.run, "completed": self.completed(),
            "error": self.error, "steps": steps,
        })
    }

    /// The timeline, one block per step, findings on a listing where they happened.
    pub fn print(&self, color: bool) {
        println!();
        println!("{}", paint(&format!("== {}: {} (run {}) ==", self.name, self.agent, self.run), BOLD, color));
        let mut listing = self.listing.iter().peekable();
        for s in &self.steps {
            while let Some((_, f)) = listing.next_if(|(seq, _)| *seq < s.seq) {
                print_listing_finding(f, color);
            }
            println!("  {:>2}. {} {}", s.step, s.tool, arguments(s.arguments.as_ref()));
            if let Some(held) = &s.held {
                println!("      {}  {held}", badge("hold", color));
            }
            if let Some(a) = &s.approval {
                let by = a.get("decided_by").and_then(Value::as_str).unwrap_or("nobody");
                let state = a.get("state").and_then(Value::as_str).unwrap_or("?");
                let id = a.get("id").and_then(Value::as_str).unwrap_or("?");
                println!("      approval {id}: {state}, decided by {by}");
            }
            let took = s.duration_ms.map(|d| format!("  ({d} ms)")).unwrap_or_default();
            println!("      {}  {}{took}", badge(&s.decision, color), s.reason);
            if let Some(line) = token_line(s.token.as_ref(), s.seen.as_ref()) {
                println!("      {line}");
            }
            if !s.findings.is_empty() {
                println!("      {}", paint(&format!("findings: {}", s.findings.join(", ")), YELLOW, color));
            }
        }
        for (_, f) in listing {
            print_listing_finding(f, color);
        }
        match &self.error {
            None => println!("  completed: {} steps", self.steps.len()),
            Some(e) => println!("  {}", paint(&format!("NOT COMPLETED: {e}"), RED, color)),
        }
    }
}

/// `token JTI minted for this call, key KID…, expires HH:MM:SS UTC; the API saw this token`:
/// what backed a call to an upstream that takes minted tokens (the key's id cut short).
fn token_line(token: Option<&Value>, seen: Option<&Value>) -> Option<String> {
    let token = token?;
    let jti = token.get("jti").and_then(Value::as_str)?;
    let kid: String = token.get("fingerprint").and_then(Value::as_str).unwrap_or("?").chars().take(12).collect();
    let expires = token.get("expires_at").and_then(Value::as_u64).map_or_else(|| "?".to_owned(), clock);
    let saw = match seen.and_then(|s| s.get("jti")).and_then(Value::as_str) {
        Some(saw) if saw == jti => "; the API saw this token".to_owned(),
        Some(saw) => format!("; the API saw another token, `{saw}`"),
        None => String::new(),
    };
    Some(format!("token {jti} minted for this call, key {kid}…, expires {expires} UTC{saw}"))
}

/// `HH:MM:SS` of a Unix time in seconds.
fn clock(secs: u64) -> String {
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// The token minted for a call, among the credentials an event's detail records.
fn minted(detail: &Value) -> Option<Value> {
    let credentials = detail.get("credentials").and_then(Value::as_array)?;
    credentials.iter().rev().find(|c| c.get("jti").is_some()).cloned()
}

fn print_listing_finding(f: &Finding, color: bool) {
    let tool = f.tool.as_deref().unwrap_or("-");
    let line = format!("finding on tools/list: {} on {tool} ({}, {})", f.kind, f.rule, f.action);
    println!("   -  {}", paint(&line, YELLOW, color));
}

/// Every finding in the log, oldest first.
pub fn findings(store: &SqlStore) -> Result<Vec<Value>, Failure> {
    let q = EventQuery { kind: Some(EventKind::FindingRecorded), ..EventQuery::default() };
    let events = store.query(&q).map_err(Failure::runtime)?;
    Ok(events.iter().map(|e| Finding::of(e).to_json()).collect())
}

pub fn verify(store: &SqlStore) -> Result<Audit, Failure> {
    Ok(match store.verify().map_err(Failure::runtime)? {
        VerifyReport::Ok { count, head } => Audit {
            ok: true,
            events: count,
            head: head.map_or_else(|| "none".to_owned(), |h| h.to_hex()),
            problem: None,
        },
        VerifyReport::Broken { seq, problem, detail } => Audit {
            ok: false,
            events: seq,
            head: String::new(),
            problem: Some(format!("broken at event {seq}: {problem}: {detail}")),
        },
    })
}

/// The request's id, state and decider, as the approval queue holds it now.
fn approval(approvals: &Approvals, id: &str) -> Value {
    match approvals.get(id) {
        Ok(Some(r)) => {
            let v = r.to_json();
            json!({ "id": id, "state": v.get("state"), "decided_by": v.get("decided_by") })
        }
        _ => json!({ "id": id, "state": null, "decided_by": null }),
    }
}

fn text(detail: &Value, key: &str) -> String {
    detail.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// `key=value, …`, long values cut, so a step fits on a line; an object argument (an HTTP
/// API's JSON `body`) as `key={key=value, …}`.
fn arguments(arguments: Option<&Value>) -> String {
    let Some(Value::Object(map)) = arguments else { return String::new() };
    format!("({})", members(map))
}

fn members(map: &serde_json::Map<String, Value>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Object(inner) => return format!("{k}={{{}}}", members(inner)),
                other => other.to_string(),
            };
            let short: String = v.chars().take(32).collect();
            let cut = if short.len() < v.len() { "…" } else { "" };
            let short = short.replace('\n', "\\n");
            format!("{k}={short}{cut}")
        })
        .collect();
    parts.join(", ")
}

const BOLD: &str = "1";
const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// A decision in capitals, coloured: allow green, deny red, hold yellow.
fn badge(decision: &str, color: bool) -> String {
    let code = match decision {
        "allow" => GREEN,
        "deny" => RED,
        _ => YELLOW,
    };
    paint(&format!("{:<5}", decision.to_uppercase()), code, color)
}
