//! Live calls: the last decided calls newest first, filtered by agent, tool and decision, and
//! what the list pages share (filters read from the query, the newest events of the log).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_core::EventKind;
use custos_store::{EventQuery, Store, StoreError, StoredEvent};
use serde_json::Value;

use crate::auth::Signed;
use crate::console::Console;
use crate::page::{self, Frame};

/// Most rows any list shows.
pub const MAX_ROWS: usize = 1000;
/// Rows a list shows when the query names no `limit`.
pub const DEFAULT_ROWS: usize = 100;
/// The decisions a call can have.
pub const DECISIONS: [&str; 3] = ["allow", "deny", "hold"];

/// A request's query was not understood; the page says which parameter and why.
#[derive(Debug)]
pub struct BadInput(pub String);

/// A string parameter of the query: trimmed, empty as absent, at most 200 characters and no
/// control characters.
pub fn text_param(params: &HashMap<String, String>, key: &str) -> Result<Option<String>, BadInput> {
    let Some(v) = params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.chars().count() > 200 || v.chars().any(char::is_control) {
        return Err(BadInput(format!("`{key}` must be at most 200 printable characters")));
    }
    Ok(Some(v.to_owned()))
}

/// `limit` of the query: [`DEFAULT_ROWS`] when absent, else 1 to [`MAX_ROWS`].
pub fn limit_param(params: &HashMap<String, String>) -> Result<usize, BadInput> {
    match params.get("limit").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_ROWS),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_ROWS).contains(&n) => Ok(n),
            _ => Err(BadInput(format!("`limit` must be a number from 1 to {MAX_ROWS}, not `{}`", v.escape_debug()))),
        },
    }
}

/// `tool` of the query: `server/name`, or `server/` for every tool of a server.
pub fn tool_param(params: &HashMap<String, String>) -> Result<Option<String>, BadInput> {
    let tool = text_param(params, "tool")?;
    match &tool {
        Some(t) if !t.contains('/') || t.starts_with('/') => {
            Err(BadInput(format!("`tool` must be `server/name` or `server/`, not `{}`", t.escape_debug())))
        }
        _ => Ok(tool),
    }
}

/// `decision` of the query: allow, deny or hold.
pub fn decision_param(params: &HashMap<String, String>) -> Result<Option<String>, BadInput> {
    let decision = text_param(params, "decision")?;
    match &decision {
        Some(d) if !DECISIONS.contains(&d.as_str()) => {
            Err(BadInput(format!("`decision` must be one of {}, not `{}`", DECISIONS.join(", "), d.escape_debug())))
        }
        _ => Ok(decision),
    }
}

/// A 400 page for `bad`.
pub fn bad_request(frame: Frame, bad: BadInput) -> Response {
    page::error(StatusCode::BAD_REQUEST, frame, "Bad request", bad.0)
}

/// A 503 page for a store that could not be read.
pub fn unavailable(frame: Frame, e: &StoreError) -> Response {
    page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", format!("the audit log cannot be read: {e}"))
}

/// The newest `n` events matching `q` and `keep`, newest first.
///
/// The log answers oldest first, so this reads growing windows back from the head (4096 events,
/// then eight times more each round) until `n` match or the window holds the whole log: a page
/// of a busy log reads its recent end only.
pub fn newest(
    store: &dyn Store,
    q: &EventQuery,
    n: usize,
    keep: impl Fn(&StoredEvent) -> bool,
) -> Result<Vec<StoredEvent>, StoreError> {
    let Some((head, _)) = store.head()? else { return Ok(Vec::new()) };
    let mut window: u64 = 4096;
    loop {
        let after = head.saturating_sub(window);
        let floor = q.after_seq.unwrap_or(0).max(after);
        let windowed = EventQuery { after_seq: (floor > 0).then_some(floor), limit: None, ..q.clone() };
        let mut found: Vec<StoredEvent> = store.query(&windowed)?.into_iter().filter(|e| keep(e)).collect();
        if found.len() >= n || floor == q.after_seq.unwrap_or(0) {
            found.reverse();
            found.truncate(n);
            return Ok(found);
        }
        window = window.saturating_mul(8);
    }
}

/// A string member of an event's detail, or empty.
pub fn field(detail: &Value, key: &str) -> String {
    detail.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The strings of an array member of an event's detail.
pub fn strings(detail: &Value, key: &str) -> Vec<String> {
    detail
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// One decided call, as a row of the live list.
#[derive(Clone, Debug)]
pub struct CallRow {
    pub seq: u64,
    pub decision: String,
    pub agent: String,
    pub tool: String,
    pub run: String,
    pub step: String,
    pub latency: String,
    pub findings: usize,
    pub time: String,
}

/// One row, rendered alone: what the stream sends.
#[derive(Template)]
#[template(path = "call_row.html")]
pub struct CallRowHtml<'a> {
    pub r: &'a CallRow,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    frame: Frame,
    rows: Vec<CallRow>,
    agent: String,
    tool: String,
    decision: String,
    limit: usize,
    /// The stream's query: the same filters, after the newest row shown.
    stream: String,
}

/// The filters of the live list.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub agent: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
}

impl CallFilter {
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, BadInput> {
        Ok(Self { agent: text_param(params, "agent")?, tool: tool_param(params)?, decision: decision_param(params)? })
    }

    /// The query of `call.decided` events matching the filter, after `after`.
    pub fn query(&self, after: Option<u64>) -> EventQuery {
        EventQuery {
            agent: self.agent.clone(),
            tool: self.tool.clone(),
            decision: self.decision.clone(),
            kind: Some(EventKind::CallDecided),
            after_seq: after,
            ..EventQuery::default()
        }
    }

    /// The filter as a query string (`agent=…&tool=…&decision=…`), empty members left out.
    pub fn query_string(&self) -> String {
        let pairs: Vec<(&str, &str)> = [("agent", &self.agent), ("tool", &self.tool), ("decision", &self.decision)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// The rows of `decided` (newest first), with each call's latency (`call.requested` to
/// `call.finished`) and findings, read from the events after the oldest of them.
pub fn call_rows(store: &dyn Store, filter: &CallFilter, decided: &[StoredEvent]) -> Result<Vec<CallRow>, StoreError> {
    let Some(oldest) = decided.iter().map(|e| e.seq).min() else { return Ok(Vec::new()) };
    let wanted: HashSet<(String, u64)> = decided.iter().filter_map(key).collect();
    // The request is appended with its decision, just before it.
    let around = EventQuery {
        agent: filter.agent.clone(),
        tool: filter.tool.clone(),
        after_seq: Some(oldest.saturating_sub(8)),
        ..EventQuery::default()
    };
    let mut requested: HashMap<(String, u64), i64> = HashMap::new();
    let mut finished: HashMap<(String, u64), i64> = HashMap::new();
    let mut findings: HashMap<(String, u64), usize> = HashMap::new();
    for kind in [EventKind::CallRequested, EventKind::CallFinished, EventKind::FindingRecorded] {
        let q = EventQuery { kind: Some(kind), limit: Some(100 * MAX_ROWS), ..around.clone() };
        for e in store.query(&q)? {
            let Some(k) = key(&e).filter(|k| wanted.contains(k)) else { continue };
            match kind {
                EventKind::CallRequested => {
                    requested.entry(k).or_insert(e.event.time_ms);
                }
                EventKind::CallFinished => {
                    finished.insert(k, e.event.time_ms);
                }
                _ => *findings.entry(k).or_insert(0) += 1,
            }
        }
    }
    Ok(decided
        .iter()
        .map(|e| {
            let k = key(e);
            let latency =
                k.as_ref().and_then(|k| Some(finished.get(k)? - requested.get(k).unwrap_or(&e.event.time_ms)));
            let mut row = row_of(e);
            row.latency = latency.map_or_else(|| "-".to_owned(), |ms| format!("{} ms", ms.max(0)));
            row.findings = k.and_then(|k| findings.get(&k).copied()).unwrap_or(0);
            row
        })
        .collect())
}

/// The (run, step) of a step's event.
fn key(e: &StoredEvent) -> Option<(String, u64)> {
    Some((e.event.run.as_ref()?.0.clone(), e.event.step?))
}

/// A row of a `call.decided` event alone: latency and findings not known yet.
pub fn row_of(e: &StoredEvent) -> CallRow {
    let ev = &e.event;
    CallRow {
        seq: e.seq,
        decision: ev.decision.clone().unwrap_or_default(),
        agent: ev.agent.as_ref().map_or_else(|| "-".to_owned(), |a| a.0.clone()),
        tool: ev.tool.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
        run: ev.run.as_ref().map_or_else(String::new, |r| r.0.clone()),
        step: ev.step.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        latency: "-".to_owned(),
        findings: 0,
        time: page::time(ev.time_ms),
    }
}

/// `GET /console/calls?agent=…&tool=…&decision=…&limit=…`.
pub async fn calls(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "calls");
    let (filter, limit) = match CallFilter::parse(&params).and_then(|f| Ok((f, limit_param(&params)?))) {
        Ok(parsed) => parsed,
        Err(bad) => return bad_request(frame, bad),
    };
    let read = c.read(|store| {
        let head = store.head()?.map_or(0, |(seq, _)| seq);
        let decided = newest(store, &filter.query(None), limit, |_| true)?;
        Ok((head, call_rows(store, &filter, &decided)?))
    });
    let (head, rows) = match read {
        Ok(read) => read,
        Err(e) => return unavailable(frame, &e),
    };
    let mut stream = filter.query_string();
    if !stream.is_empty() {
        stream.push('&');
    }
    stream.push_str(&format!("after={head}"));
    let page = CallsPage {
        frame,
        rows,
        agent: filter.agent.unwrap_or_default(),
        tool: filter.tool.unwrap_or_default(),
        decision: filter.decision.unwrap_or_default(),
        limit,
        stream,
    };
    page::html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit_param(&params(&[])).unwrap(), DEFAULT_ROWS);
        assert_eq!(limit_param(&params(&[("limit", "1000")])).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(limit_param(&params(&[("limit", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_checked_and_round_trip_as_a_query() {
        let f = CallFilter::parse(&params(&[("agent", " bot "), ("tool", "fs/"), ("decision", "deny")])).unwrap();
        assert_eq!(f.query_string(), "agent=bot&tool=fs%2F&decision=deny");
        assert!(CallFilter::parse(&params(&[("decision", "maybe")])).is_err());
        assert!(CallFilter::parse(&params(&[("tool", "noslash")])).is_err());
        assert!(CallFilter::parse(&params(&[("agent", "a\u{7}b")])).is_err());
        assert_eq!(CallFilter::parse(&params(&[("agent", "  ")])).unwrap().query_string(), "");
    }
}
