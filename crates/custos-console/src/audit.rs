//! Audit: the log's head, the last verification of its chain (run from here on demand, its
//! result kept in memory), and a search of the events.

use std::collections::HashMap;

use std::sync::{Arc, PoisonError};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use custos_core::EventKind;
use custos_store::{EventQuery, SqlStore, Store, StoredEvent, VerifyReport};

use crate::auth::{self, Signed};
use crate::calls::{self, decision_param, newest, text_param, tool_param};
use crate::console::{now_ms, Console};
use crate::page::{self, Frame};

/// Most characters of an event's detail the list shows.
const MAX_DETAIL: usize = 400;

/// The last verification of a database: when, by whom, and what it found.
#[derive(Clone, Debug)]
pub struct Verified {
    pub at: String,
    pub by: String,
    pub ok: bool,
    pub summary: String,
}

/// One event of the search.
#[derive(Debug)]
pub struct EventRow {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub agent: String,
    pub run: String,
    pub step: String,
    pub tool: String,
    pub decision: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    frame: Frame,
    head: Option<(u64, String)>,
    verified: Option<Verified>,
    rows: Vec<EventRow>,
    agent: String,
    run: String,
    tool: String,
    decision: String,
    kind: String,
    limit: usize,
}

fn row(e: &StoredEvent) -> EventRow {
    let ev = &e.event;
    let mut detail = ev.detail.to_string();
    if detail.chars().count() > MAX_DETAIL {
        detail = detail.chars().take(MAX_DETAIL).collect::<String>() + "…";
    }
    EventRow {
        seq: e.seq,
        time: page::time(ev.time_ms),
        kind: ev.kind.as_str().to_owned(),
        agent: ev.agent.as_ref().map_or_else(|| "-".to_owned(), |a| a.0.clone()),
        run: ev.run.as_ref().map_or_else(String::new, |r| r.0.clone()),
        step: ev.step.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        tool: ev.tool.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
        decision: ev.decision.clone().unwrap_or_default(),
        detail,
    }
}

/// `GET /console/audit?agent=…&run=…&tool=…&decision=…&kind=…&limit=…`.
pub async fn audit(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "audit");
    let parsed = (|| {
        let kind = match text_param(&params, "kind")? {
            Some(k) => Some(EventKind::parse(&k).ok_or_else(|| {
                calls::BadInput(format!(
                    "`kind` must be an event kind such as call.decided, not `{}`",
                    k.escape_debug()
                ))
            })?),
            None => None,
        };
        let q = EventQuery {
            agent: text_param(&params, "agent")?,
            run: text_param(&params, "run")?,
            tool: tool_param(&params)?,
            decision: decision_param(&params)?,
            kind,
            ..EventQuery::default()
        };
        Ok::<_, calls::BadInput>((q, calls::limit_param(&params)?))
    })();
    let (q, limit) = match parsed {
        Ok(p) => p,
        Err(bad) => return calls::bad_request(frame, bad),
    };
    let read = c.read(|store| Ok((store.head()?, newest(store, &q, limit, |_| true)?)));
    let (head, events) = match read {
        Ok(read) => read,
        Err(e) => return calls::unavailable(frame, &e),
    };
    let page = AuditPage {
        frame,
        head: head.map(|(seq, digest)| (seq, digest.to_hex())),
        verified: c.verified.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        rows: events.iter().map(row).collect(),
        agent: q.agent.unwrap_or_default(),
        run: q.run.unwrap_or_default(),
        tool: q.tool.unwrap_or_default(),
        decision: q.decision.unwrap_or_default(),
        kind: q.kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        limit,
    };
    page::html(StatusCode::OK, &page)
}

/// `POST /console/audit/verify` (form: `csrf`): walks the whole chain on a connection of its
/// own (the pages' reader stays free), remembers the result, and shows the audit page.
pub async fn verify(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = "/console/audit/verify";
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) = auth::check_form(&c, &session, &headers, form.get("csrf").map(String::as_str), path).await {
        return r;
    }
    let frame = Frame::signed_in(&session, "audit");
    let walked = {
        let db = c.database.clone();
        tokio::task::spawn_blocking(move || SqlStore::open_read_only(db)?.verify()).await
    };
    let report = match walked {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return calls::unavailable(frame, &e),
        Err(e) => {
            return page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                frame,
                "Unavailable",
                format!("the verification failed: {e}"),
            )
        }
    };
    let (ok, summary) = match report {
        VerifyReport::Ok { count, head } => {
            (true, format!("ok: {count} events, head {}", head.map_or_else(|| "-".to_owned(), |d| d.to_hex())))
        }
        VerifyReport::Broken { seq, problem, detail } => {
            (false, format!("first broken event {seq}: {} ({detail})", problem.as_str()))
        }
    };
    let verified = Verified { at: page::time(now_ms()), by: session.approver.name.clone(), ok, summary };
    *c.verified.lock().unwrap_or_else(PoisonError::into_inner) = Some(verified);
    page::see_other("/console/audit")
}
