//! `custos findings`: what the detectors saw, read back from the `finding.recorded` events of
//! the audit log (the log is the only record of findings, so this is what happened, not a copy).

use custos_core::finding::kinds;
use custos_core::{EventKind, Severity};
use custos_store::{EventQuery, Store, StoredEvent};
use serde_json::{json, Value};

use crate::cli::FindingsArgs;
use crate::context;
use crate::Failure;

/// The kinds the detectors record today. A kind not listed is still searched for (a newer
/// detector may record it), with a warning in case it is a typo.
const KNOWN_KINDS: [&str; 12] = [
    kinds::SECRET_LEAK,
    kinds::RUG_PULL,
    kinds::TOOL_POISONING,
    kinds::TOOL_SHADOWING,
    kinds::OUTPUT_INJECTION,
    kinds::TOXIC_FLOW,
    kinds::REPLAY,
    kinds::RATE_LIMIT,
    kinds::BUDGET,
    kinds::LOOP,
    kinds::BURST,
    kinds::FIRST_USE,
];

pub fn run(args: &FindingsArgs) -> Result<(), Failure> {
    let min = args
        .severity
        .as_deref()
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                Failure::usage(format!("`{s}` is not a severity: expected info, low, medium, high or critical"))
            })
        })
        .transpose()?;
    let since_ms = args.since.as_deref().map(super::parse_since).transpose()?;
    if let Some(kind) = args.kind.as_deref().filter(|k| !KNOWN_KINDS.contains(k)) {
        eprintln!("custos: `{kind}` is not a known finding kind ({}); searching anyway", KNOWN_KINDS.join(", "));
    }
    let store = context::open_for_reading(&args.location)?;
    // Kind and severity live in the detail, which the store does not index: the log is
    // narrowed by event kind, run and time, the rest here.
    let q =
        EventQuery { kind: Some(EventKind::FindingRecorded), run: args.run.clone(), since_ms, ..EventQuery::default() };
    let matching: Vec<StoredEvent> = store
        .query(&q)
        .map_err(Failure::runtime)?
        .into_iter()
        .filter(|e| args.kind.as_deref().is_none_or(|k| text(&e.event.detail, "finding") == k))
        .filter(|e| min.is_none_or(|min| severity(&e.event.detail).is_some_and(|s| s >= min)))
        .collect();
    let skip = args.limit.map_or(0, |limit| matching.len().saturating_sub(limit));
    let shown = matching.get(skip..).unwrap_or_default();
    if args.json {
        for e in shown {
            println!("{}", to_json(e));
        }
        return Ok(());
    }
    if shown.is_empty() {
        eprintln!("custos: no findings match");
        return Ok(());
    }
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = shown
        .iter()
        .map(|e| {
            let ev = &e.event;
            let d = &ev.detail;
            [
                super::rfc3339(ev.time_ms),
                text(d, "severity").to_owned(),
                text(d, "finding").to_owned(),
                text(d, "rule").to_owned(),
                ev.agent.as_ref().map_or_else(dash, |a| a.0.clone()),
                ev.run.as_ref().map_or_else(dash, |r| r.0.clone()),
                ev.step.map_or_else(dash, |s| s.to_string()),
                ev.tool.as_ref().map_or_else(dash, ToString::to_string),
                text(d, "action").to_owned(),
                text(d, "evidence").to_owned(),
            ]
        })
        .collect();
    super::print_table(
        ["TIME", "SEVERITY", "KIND", "RULE", "AGENT", "RUN", "STEP", "TOOL", "ACTION", "EVIDENCE"],
        &rows,
    );
    Ok(())
}

/// A string member of a finding's detail; empty when absent.
fn text<'a>(detail: &'a Value, key: &str) -> &'a str {
    detail.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn severity(detail: &Value) -> Option<Severity> {
    Severity::parse(text(detail, "severity"))
}

fn to_json(e: &StoredEvent) -> Value {
    let ev = &e.event;
    let d = &ev.detail;
    json!({
        "seq": e.seq,
        "time": super::rfc3339(ev.time_ms),
        "time_ms": ev.time_ms,
        "severity": d.get("severity"),
        "kind": d.get("finding"),
        "rule": d.get("rule"),
        "agent": ev.agent,
        "run": ev.run,
        "step": ev.step,
        "tool": ev.tool,
        "action": d.get("action"),
        "evidence": d.get("evidence"),
        "detail": d,
    })
}
