//! Findings: what the detectors recorded (`finding.recorded`), newest first, filtered by kind,
//! severity and agent.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_core::EventKind;
use custos_store::{EventQuery, StoredEvent};
use serde_json::Value;

use crate::auth::Signed;
use crate::calls::{self, field, newest, text_param};
use crate::console::Console;
use crate::page::{self, Frame};

/// The severities the filter offers.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// One finding.
#[derive(Debug)]
pub struct FindingRow {
    pub seq: u64,
    pub kind: String,
    pub severity: String,
    pub rule: String,
    pub action: String,
    pub agent: String,
    pub tool: String,
    pub run: String,
    pub step: String,
    pub time: String,
}

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    frame: Frame,
    rows: Vec<FindingRow>,
    kind: String,
    severity: String,
    agent: String,
    limit: usize,
}

/// A finding's kind: `kind`, or `finding` in older events.
fn kind_of(d: &Value) -> String {
    let kind = field(d, "kind");
    if kind.is_empty() {
        field(d, "finding")
    } else {
        kind
    }
}

fn row(e: &StoredEvent) -> FindingRow {
    let ev = &e.event;
    let d = &ev.detail;
    FindingRow {
        seq: e.seq,
        kind: kind_of(d),
        severity: field(d, "severity"),
        rule: field(d, "rule"),
        action: field(d, "action"),
        agent: ev.agent.as_ref().map_or_else(|| "-".to_owned(), |a| a.0.clone()),
        tool: ev.tool.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
        run: ev.run.as_ref().map_or_else(String::new, |r| r.0.clone()),
        step: ev.step.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        time: page::time(ev.time_ms),
    }
}

/// `GET /console/findings?kind=…&severity=…&agent=…&limit=…`.
pub async fn findings(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "findings");
    let parsed = (|| {
        Ok::<_, calls::BadInput>((
            text_param(&params, "kind")?,
            text_param(&params, "severity")?,
            text_param(&params, "agent")?,
            calls::limit_param(&params)?,
        ))
    })();
    let (kind, severity, agent, limit) = match parsed {
        Ok(p) => p,
        Err(bad) => return calls::bad_request(frame, bad),
    };
    let q = EventQuery { kind: Some(EventKind::FindingRecorded), agent: agent.clone(), ..EventQuery::default() };
    let keep = |e: &StoredEvent| {
        let d = &e.event.detail;
        kind.as_ref().is_none_or(|k| &kind_of(d) == k) && severity.as_ref().is_none_or(|s| &field(d, "severity") == s)
    };
    let rows = match c.read(|store| newest(store, &q, limit, keep)) {
        Ok(events) => events.iter().map(row).collect(),
        Err(e) => return calls::unavailable(frame, &e),
    };
    let page = FindingsPage {
        frame,
        rows,
        kind: kind.unwrap_or_default(),
        severity: severity.unwrap_or_default(),
        agent: agent.unwrap_or_default(),
        limit,
    };
    page::html(StatusCode::OK, &page)
}
