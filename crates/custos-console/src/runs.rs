//! Runs: the list newest first, and one run as a timeline (an inline SVG, drawn on the server)
//! over the ordered list of its steps: decisions, policies, approvals and who gave them,
//! credentials by fingerprint, findings, upstream errors (the story is built in `story.rs`,
//! shared with `custos report run`).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_core::EventKind;
use custos_store::{EventQuery, Store, StoreError};

use crate::auth::Signed;
use crate::calls::{self, newest, text_param};
use crate::console::Console;
use crate::page::{self, Frame};
use crate::story::{self, RunStory};

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

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    frame: Frame,
    story: RunStory,
}

/// `GET /console/runs/{run}`.
pub async fn run(State(c): State<Arc<Console>>, Signed { session }: Signed, Path(run): Path<String>) -> Response {
    let frame = Frame::signed_in(&session, "runs");
    let q = EventQuery { run: Some(run.clone()), limit: Some(story::MAX_EVENTS), ..EventQuery::default() };
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
    let truncated = events.len() >= story::MAX_EVENTS;
    let story = story::build(run, &events, truncated);
    page::html(StatusCode::OK, &RunPage { frame, story })
}
