//! Answering a forwarded request: with JSON when the upstream's answer is the first thing it
//! says about the request, else with an SSE stream of what it says (progress, logging, its own
//! requests) and then the answer. Used by the per-server and the federated endpoints, for calls
//! forwarded at once and for calls held for approval.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use custos_mcp::codes;
use futures::stream::{self, Stream, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::reply;
use crate::server::AppState;
use crate::session::{PostStream, Sent, Session};

/// Why an answer will never come: the session ended while the request was open.
const SESSION_ENDED: &str = "session ended";

/// What the upstream says about one request before its answer, opened before the request is
/// sent so that nothing it says first is missed: the guard that keeps it open, and the messages.
pub(crate) type PostMessages = (PostStream, mpsc::Receiver<Vec<u8>>);

/// Opens [`PostMessages`] for a request, when the client accepts an SSE answer.
pub(crate) fn post_messages(session: &Arc<Session>, headers: &HeaderMap) -> Option<PostMessages> {
    wants_stream(headers).then(|| session.open_post_stream())
}

/// Whether the client accepts an SSE answer.
pub(crate) fn wants_stream(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"))
}

/// The answer to a forwarded request: JSON, or an SSE stream when `stream` is open and the
/// upstream says something (passed through `transform`) before it answers; an error after the
/// request timeout either way.
pub(crate) async fn await_answer(
    app: &AppState,
    session: &Arc<Session>,
    id: Box<RawValue>,
    answer: oneshot::Receiver<Vec<u8>>,
    stream: Option<PostMessages>,
    permit: OwnedSemaphorePermit,
    transform: impl Fn(Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
) -> Response {
    let timeout = app.request_timeout();
    let Some((guard, messages)) = stream else {
        return match tokio::time::timeout(timeout, answer).await {
            Ok(result) => json_answer(result.map_err(|_| ()), &id),
            Err(_) => {
                session.forget(&id);
                timed_out(&id, timeout)
            }
        };
    };
    let mut said = UntilAnswer::new(session, messages, answer, timeout, id, transform);
    // Nearly every call: the answer comes first, as one JSON body with no stream to set up.
    match said.hear().await {
        Said::Message(first) => {
            let rest = stream::unfold((said, guard, permit), |(mut said, guard, permit)| async move {
                let bytes = said.next_frame().await?;
                Some((event(bytes), (said, guard, permit)))
            });
            Sse::new(stream::once(async move { event(first) }).chain(rest).map(Ok::<_, Infallible>)).into_response()
        }
        Said::Answer(result) => json_answer(result, &said.id),
        Said::TimedOut => timed_out(&said.id, timeout),
    }
}

/// The SSE answer to a call held for approval: its progress while it waits, then, once it is
/// forwarded, what the upstream says (passed through `transform`) and its answer, as
/// [`await_answer`] streams them; or the refusal. The wait runs in its own task, so a client
/// that leaves does not leave the held call half-settled in the log.
pub(crate) fn held_stream(
    app: &AppState,
    session: &Arc<Session>,
    held: custos_gateway::held::Held,
    id: Box<RawValue>,
    answer: oneshot::Receiver<Vec<u8>>,
    permit: OwnedSemaphorePermit,
    transform: impl Fn(Vec<u8>) -> Vec<u8> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (events, received) = mpsc::channel::<Vec<u8>>(crate::session::STREAM_BUFFER);
    let timeout = app.request_timeout();
    let session = session.clone();
    // Taken before the handler lets go of its own, so the session is never idle in between.
    let busy = session.busy();
    tokio::spawn(async move {
        // Opened first, so what the upstream says once the call runs lands here.
        let (guard, messages) = session.open_post_stream();
        drop(busy);
        let (progress, mut updates) = mpsc::channel(8);
        let settle = session.settle(held, progress);
        tokio::pin!(settle);
        let sent = loop {
            tokio::select! {
                sent = &mut settle => break sent,
                Some(update) = updates.recv() => { let _ = events.send(update).await; }
            }
        };
        if let Sent::Answered(bytes) = sent {
            session.forget(&id);
            let _ = events.send(bytes).await;
            return;
        }
        let mut said = UntilAnswer::new(&session, messages, answer, timeout, id, transform);
        while let Some(bytes) = said.next_frame().await {
            let _ = events.send(bytes).await;
        }
        drop((guard, permit));
    });
    let stream = stream::unfold(received, |mut received| async move {
        let bytes = received.recv().await?;
        Some((Ok::<_, Infallible>(event(bytes)), received))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One thing the upstream said about a request.
enum Said {
    /// A message before the answer, already passed through the transform.
    Message(Vec<u8>),
    /// The answer, or `Err` when the session ended first.
    Answer(Result<Vec<u8>, ()>),
    /// No answer by the request timeout; the request is forgotten.
    TimedOut,
}

/// What the upstream says about one forwarded request, read until its answer or the request
/// timeout.
struct UntilAnswer<T> {
    session: Arc<Session>,
    messages: mpsc::Receiver<Vec<u8>>,
    answer: oneshot::Receiver<Vec<u8>>,
    deadline: Instant,
    timeout: Duration,
    id: Box<RawValue>,
    transform: T,
    /// The answer (or the timeout) has been heard: nothing follows.
    over: bool,
}

impl<T: Fn(Vec<u8>) -> Vec<u8>> UntilAnswer<T> {
    fn new(
        session: &Arc<Session>,
        messages: mpsc::Receiver<Vec<u8>>,
        answer: oneshot::Receiver<Vec<u8>>,
        timeout: Duration,
        id: Box<RawValue>,
        transform: T,
    ) -> Self {
        let deadline = Instant::now() + timeout;
        Self { session: session.clone(), messages, answer, deadline, timeout, id, transform, over: false }
    }

    /// The next thing said; not to be called once it is over. Messages queued before the
    /// answer was are drained first, so they reach the client in the order the upstream sent
    /// them.
    async fn hear(&mut self) -> Said {
        let said = tokio::select! {
            biased;
            Some(bytes) = self.messages.recv() => Said::Message(bytes),
            result = &mut self.answer => Said::Answer(result.map_err(|_| ())),
            () = tokio::time::sleep_until(self.deadline) => Said::TimedOut,
        };
        match said {
            Said::Message(bytes) => return Said::Message((self.transform)(bytes)),
            Said::Answer(_) => {}
            Said::TimedOut => self.session.forget(&self.id),
        }
        self.over = true;
        said
    }

    /// The next thing said as one frame of a stream to the client (an error as a JSON-RPC
    /// error response); `None` once it is over.
    async fn next_frame(&mut self) -> Option<Vec<u8>> {
        if self.over {
            return None;
        }
        let error = |id, reason: &str| custos_mcp::error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, reason, None);
        Some(match self.hear().await {
            Said::Message(bytes) | Said::Answer(Ok(bytes)) => bytes,
            Said::Answer(Err(())) => error(&self.id, SESSION_ENDED),
            Said::TimedOut => error(&self.id, &no_answer_within(self.timeout)),
        })
    }
}

/// The answer as a JSON response; 502 when the session ended first.
fn json_answer(result: Result<Vec<u8>, ()>, id: &RawValue) -> Response {
    match result {
        Ok(bytes) => reply::json_bytes(StatusCode::OK, bytes),
        Err(_) => reply::rpc_error(StatusCode::BAD_GATEWAY, Some(id), codes::UPSTREAM_UNAVAILABLE, SESSION_ENDED),
    }
}

/// The 504 for a request the upstream did not answer within `timeout`.
pub(crate) fn timed_out(id: &RawValue, timeout: Duration) -> Response {
    reply::rpc_error(StatusCode::GATEWAY_TIMEOUT, Some(id), codes::UPSTREAM_UNAVAILABLE, &no_answer_within(timeout))
}

fn no_answer_within(timeout: Duration) -> String {
    format!("the upstream did not answer within {} ms", timeout.as_millis())
}

/// One SSE event carrying a JSON-RPC message.
pub(crate) fn event(bytes: Vec<u8>) -> Event {
    Event::default().event("message").data(String::from_utf8_lossy(&bytes))
}
