//! `GET /console/calls/stream`: the live list's Server-Sent Events, one `row` event per newly
//! decided call (its data one rendered, escaped `<tr>`, its id the event's seq).
//!
//! Each stream polls the read-only store every 250 ms from its own cursor: no state is shared
//! between streams but their count, capped so that open browser tabs cannot starve the store.
//! A stream ends when its client goes (the body is dropped, and its slot with it).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use custos_store::{Store, StoreError};
use futures::StreamExt;

use crate::auth::Signed;
use crate::calls::{self, CallFilter, CallRowHtml};
use crate::console::Console;
use crate::page::{self, Frame};

/// Most streams open at once, over every console of the process.
pub const MAX_STREAMS: usize = 64;
/// How often a stream looks for new calls.
const POLL: Duration = Duration::from_millis(250);
/// How often an idle stream sends a comment, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most rows one poll sends.
const BATCH: usize = 100;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A stream's place among the [`MAX_STREAMS`]: given back when dropped.
#[derive(Debug)]
pub struct Slot(());

impl Slot {
    /// A slot, if fewer than `max` are taken.
    pub fn take(max: usize) -> Option<Self> {
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok().map(|_| Self(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /console/calls/stream?agent=…&tool=…&decision=…&after=SEQ` (or `Last-Event-ID`).
pub async fn calls_stream(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "calls");
    let filter = match CallFilter::parse(&params) {
        Ok(f) => f,
        Err(bad) => return calls::bad_request(frame, bad),
    };
    // A reconnecting browser says where it got to; that is newer than the page's `after`.
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("after").cloned())
        .filter(|v| !v.trim().is_empty());
    let after = match given {
        Some(v) => match v.trim().parse::<u64>() {
            Ok(seq) => seq,
            Err(_) => {
                return calls::bad_request(
                    frame,
                    calls::BadInput(format!("`after` must be an event number, not `{}`", v.escape_debug())),
                )
            }
        },
        None => match c.read(|store| store.head()) {
            Ok(head) => head.map_or(0, |(seq, _)| seq),
            Err(e) => return calls::unavailable(frame, &e),
        },
    };
    let Some(slot) = Slot::take(MAX_STREAMS) else {
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            frame,
            "Too many live views",
            format!("at most {MAX_STREAMS} live views may be open at once: close some and reload"),
        );
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let polls =
        futures::stream::unfold((c, filter, after, tick, slot), |(c, filter, mut after, mut tick, slot)| async move {
            loop {
                tick.tick().await;
                match c.read(|store| rows_after(store, &filter, after)) {
                    Ok((_, events)) if events.is_empty() => {}
                    Ok((last, events)) => {
                        after = last;
                        return Some((futures::stream::iter(events), (c, filter, after, tick, slot)));
                    }
                    Err(e) => {
                        tracing::warn!("a console stream could not read the audit log and ends: {e}");
                        return None;
                    }
                }
            }
        });
    let sse = Sse::new(polls.flatten()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    page::secure(sse.into_response())
}

/// The `row` events of calls decided after `after`, and the seq to continue from.
fn rows_after(
    store: &dyn Store,
    filter: &CallFilter,
    after: u64,
) -> Result<(u64, Vec<Result<Event, Infallible>>), StoreError> {
    let q = custos_store::EventQuery { limit: Some(BATCH), ..filter.query(Some(after)) };
    let mut decided = store.query(&q)?;
    let last = decided.last().map_or(after, |e| e.seq);
    // Newest last, so that the browser, prepending each, shows the newest on top.
    decided.reverse();
    let mut rows = calls::call_rows(store, filter, &decided)?;
    rows.reverse();
    let events = rows
        .iter()
        .filter_map(|r| match (CallRowHtml { r }).render() {
            // One line per event: the row has none of its own, and a stray one must not end it.
            Ok(html) => {
                Some(Ok(Event::default().event("row").id(r.seq.to_string()).data(html.replace(['\r', '\n'], " "))))
            }
            Err(e) => {
                tracing::error!("a live row could not be rendered: {e}");
                None
            }
        })
        .collect();
    Ok((last, events))
}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn slots_are_capped_and_given_back() {
        // Other tests in this process may hold slots: count from what is free now.
        let held: Vec<Slot> = std::iter::from_fn(|| Slot::take(usize::MAX).filter(|_| true)).take(3).collect();
        assert_eq!(held.len(), 3);
        let taken = super::OPEN.load(std::sync::atomic::Ordering::Acquire);
        assert!(Slot::take(taken).is_none(), "a full set of slots refuses another");
        drop(held);
        assert!(Slot::take(taken).is_some(), "dropped slots are free again");
    }
}
