//! One MCP session of `custos serve`.
//!
//! A session belongs to the agent that opened it. It owns an upstream (a child process, or a
//! session with a remote Streamable HTTP server) behind its
//! own [`Gateway`] (the run is the session), the client requests waiting for answers, and the
//! streams that carry what the upstream sends on its own (progress, logging, sampling and other
//! server-to-client requests): the newest open POST stream first, else the GET stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_core::Agent;
use custos_gateway::held::Held;
use custos_gateway::{ChildUpstream, Gateway, Outcome, RemoteUpstream, StdioError};
use custos_mcp::Frame;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::places::{Activity, Busy, Place};
use crate::restart;

/// Messages buffered for one event stream before the upstream waits for the client to read.
pub(crate) const STREAM_BUFFER: usize = 256;

#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub agent: Agent,
    pub server: String,
    gateway: Arc<Gateway>,
    /// Where frames for the upstream go. Held for writing while a restarted upstream is being
    /// brought back to where the client left it, so client messages wait instead of racing it.
    input: Arc<tokio::sync::RwLock<mpsc::Sender<Vec<u8>>>>,
    upstream: tokio::sync::Mutex<Upstream>,
    target: Target,
    limits: custos_config::Limits,
    /// The client's `initialize` and `notifications/initialized`, replayed to a restarted
    /// upstream. A session without them (stateless traffic) is not restarted here.
    replay: Mutex<Vec<Vec<u8>>>,
    /// Consecutive restarts of upstreams that died young.
    restarts: std::sync::atomic::AtomicU32,
    /// When the current upstream started.
    started: Mutex<std::time::Instant>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    streams: Mutex<Streams>,
    /// Open `subscriptions/listen` streams, by the id their request travels under upstream,
    /// which the upstream stamps on every message of the stream as its subscription id.
    subscriptions: Mutex<HashMap<String, mpsc::Sender<Vec<u8>>>>,
    /// Set when the session is being closed on purpose, so the end of the upstream's output is
    /// not mistaken for a crash.
    closing: AtomicBool,
    /// Set when the upstream has gone; later requests are refused.
    gone: AtomicBool,
    grace: Duration,
    /// Requests and streams in use, for the idle timeout.
    activity: Arc<Activity>,
    /// The session's place among `max_sessions`, given back when it closes; none for the
    /// upstreams of stateless traffic and of a federated session (which holds its own).
    place: Mutex<Option<Place>>,
}

#[derive(Debug, Default)]
struct Streams {
    posts: Vec<(u64, mpsc::Sender<Vec<u8>>)>,
    get: Option<mpsc::Sender<Vec<u8>>>,
    next: u64,
}

/// How a session reaches its server.
#[derive(Debug, Clone)]
pub enum Target {
    /// A stdio server: this command is started for the session.
    Command(Vec<String>),
    /// A remote Streamable HTTP server, with the headers (and, for `https://`, the TLS settings)
    /// configured for it.
    Url { url: String, headers: Vec<(String, String)>, tls: custos_config::UpstreamTls },
    /// An API's operations as MCP tools (`[[apis]] mcp = true`), answered in this process.
    Api(Arc<custos_gateway::api::ApiTools>),
}

#[derive(Debug)]
enum Upstream {
    Child(ChildUpstream),
    Remote(RemoteUpstream),
    Api(custos_gateway::api::ApiMcpUpstream),
}

/// Numbers the gateway's own request ids.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A request id of the gateway's own (`"custos-N"`), unique in this process: for requests the
/// gateway sends itself (federated fan-out, a replayed handshake) and for client requests it
/// must renumber (stateless traffic, server-to-client requests in a federation), so their
/// answers reach the gateway and never collide with a client's ids.
pub(crate) fn gateway_request_id() -> Box<RawValue> {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // INVARIANT: a quoted decimal is always valid JSON.
    RawValue::from_string(format!("\"custos-{n}\"")).unwrap_or_else(|_| Box::<RawValue>::default())
}

/// What sending one client message did.
#[derive(Debug)]
pub enum Sent {
    /// Forwarded upstream; an answer (for a request) will come through [`Session::expect`].
    Forwarded,
    /// The gateway answered itself (denied, malformed, refused): these bytes go back.
    Answered(Vec<u8>),
}

impl Session {
    /// Starts the upstream for a new session and the task that routes what it says.
    pub async fn open(
        id: String,
        agent: Agent,
        server: String,
        gateway: Arc<Gateway>,
        target: &Target,
        limits: custos_config::Limits,
    ) -> Result<Arc<Self>, StdioError> {
        let (onward, from_upstream) = mpsc::channel(STREAM_BUFFER);
        let upstream = match target {
            Target::Command(command) => Upstream::Child(ChildUpstream::start(&gateway, command, limits, onward).await?),
            Target::Url { url, headers, tls } => {
                Upstream::Remote(RemoteUpstream::start(&gateway, url, headers, tls, limits, onward).await?)
            }
            Target::Api(tools) => {
                Upstream::Api(custos_gateway::api::ApiMcpUpstream::start(&gateway, tools.clone(), onward).await?)
            }
        };
        let input = match &upstream {
            Upstream::Child(c) => c.input().clone(),
            Upstream::Remote(r) => r.input().clone(),
            Upstream::Api(a) => a.input().clone(),
        };
        let session = Arc::new(Self {
            id,
            agent,
            server,
            input: Arc::new(tokio::sync::RwLock::new(input)),
            gateway,
            upstream: tokio::sync::Mutex::new(upstream),
            target: target.clone(),
            limits,
            replay: Mutex::new(Vec::new()),
            restarts: std::sync::atomic::AtomicU32::new(0),
            started: Mutex::new(std::time::Instant::now()),
            waiters: Mutex::new(HashMap::new()),
            streams: Mutex::new(Streams::default()),
            subscriptions: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            grace: Duration::from_millis(limits.shutdown_grace_ms),
            activity: Activity::new(),
            place: Mutex::new(None),
        });
        tokio::spawn(dispatch(session.clone(), from_upstream));
        Ok(session)
    }

    /// The upstream has exited; the session can only be deleted.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Keeps the session from being closed as idle until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        self.activity.busy()
    }

    /// Whether nothing has used the session for `timeout`.
    pub(crate) fn idle_past(&self, timeout: Duration) -> bool {
        self.activity.idle_past(timeout)
    }

    /// How long nothing has used the session; `None` while something does.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.activity.idle_for()
    }

    /// Holds `place` until the session closes.
    pub(crate) fn hold_place(&self, place: Place) {
        *self.place.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(place);
    }

    /// Registers interest in the answer to request `id`. Call before [`Session::send`], so an
    /// answer that comes back quickly is not missed.
    pub fn expect(&self, id: &RawValue) -> oneshot::Receiver<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        self.lock_waiters().insert(id.get().to_owned(), tx);
        rx
    }

    pub fn forget(&self, id: &RawValue) {
        self.lock_waiters().remove(id.get());
    }

    /// Runs one client message through the pipeline and forwards it if the pipeline says so. A
    /// call held for approval is waited on here, its progress notifications going to the
    /// session's newest open stream; see [`Session::send_or_hold`] to stream them instead.
    pub async fn send(&self, raw: Vec<u8>) -> Sent {
        match self.send_or_hold(raw).await {
            Ok(sent) => sent,
            Err(held) => self.settle_here(*held).await,
        }
    }

    /// [`Session::settle`], the progress going to the session's newest open stream.
    pub async fn settle_here(&self, held: Held) -> Sent {
        let (progress, mut updates) = mpsc::channel(8);
        let settle = self.settle(held, progress);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                sent = &mut settle => break sent,
                Some(update) = updates.recv() => self.route(update),
            }
        }
    }

    /// Like [`Session::send`], but a call held for approval is handed back, for the caller to
    /// [`Session::settle`] where it can show the client the progress.
    pub async fn send_or_hold(&self, raw: Vec<u8>) -> Result<Sent, Box<Held>> {
        if is_handshake(&raw) {
            let mut replay = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if replay.len() < 2 {
                replay.push(raw.clone());
            }
        }
        match self.gateway.from_client(Frame::Line(raw)).await {
            Outcome::Held(held) => Err(held),
            outcome => Ok(self.act_on(outcome).await),
        }
    }

    /// Waits for the verdict on a held call (progress for the client goes to `progress`), then
    /// forwards it or answers it.
    pub async fn settle(&self, held: Held, progress: mpsc::Sender<Vec<u8>>) -> Sent {
        let outcome = self.gateway.settle(held, progress).await;
        self.act_on(outcome).await
    }

    async fn act_on(&self, outcome: Outcome) -> Sent {
        match outcome {
            Outcome::Forward(bytes) => {
                let input = self.input.read().await.clone();
                if input.send(bytes).await.is_err() {
                    return Sent::Answered(Vec::new());
                }
                if self.is_gone() {
                    // The upstream went while this was on its way (a child that exits as it
                    // starts): nothing will answer, so nobody waits.
                    self.lock_waiters().clear();
                }
                Sent::Forwarded
            }
            Outcome::Answer(bytes) => Sent::Answered(bytes),
            Outcome::Drop | Outcome::Held(_) => Sent::Answered(Vec::new()),
        }
    }

    /// A stream for what the upstream says while one POST is open. Dropping the guard closes it.
    pub fn open_post_stream(self: &Arc<Self>) -> (PostStream, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut streams = self.lock_streams();
        streams.next += 1;
        let n = streams.next;
        streams.posts.push((n, tx));
        (PostStream { session: self.clone(), n, _busy: self.busy() }, rx)
    }

    /// The session's GET stream; a new one replaces the old. While the guard lives (the
    /// client's connection is open) the session is in use: an SDK client holds this stream
    /// for as long as it lives, and its connection closes when it dies.
    pub(crate) fn open_get_stream(&self) -> (Busy, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.lock_streams().get = Some(tx);
        (self.busy(), rx)
    }

    /// Ends the session: the upstream is closed (then killed after the grace period) and the run
    /// ends in the log with `reason`.
    pub async fn close(&self, reason: &str) {
        self.closing.store(true, Ordering::SeqCst);
        {
            match &mut *self.upstream.lock().await {
                Upstream::Child(child) => {
                    let _ = child.close_and_wait(self.grace).await;
                    child.stop().await;
                }
                Upstream::Remote(remote) => remote.close().await,
                Upstream::Api(api) => api.close().await,
            }
        }
        *self.lock_streams() = Streams::default();
        self.lock_subscriptions().clear();
        self.lock_waiters().clear();
        self.gateway.end(reason).await;
        // Given back last: the place is free once the upstream is gone and the run recorded.
        drop(self.place.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Vec<u8>>>> {
        self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Vec<u8>>>> {
        self.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A stream for the messages of the `subscriptions/listen` request that travels upstream
    /// under `id` (its answer still comes through [`Session::expect`]). Dropping the guard ends
    /// the subscription: the route goes, and the upstream is told with `notifications/cancelled`.
    pub fn open_subscription(self: &Arc<Self>, id: &RawValue) -> (Subscription, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.lock_subscriptions().insert(id.get().to_owned(), tx);
        (Subscription { session: self.clone(), id: id.to_owned(), _busy: self.busy() }, rx)
    }

    /// How many subscriptions are open on this session.
    pub fn subscription_count(&self) -> usize {
        self.lock_subscriptions().len()
    }

    /// Delivers one message from the upstream: an answer to its waiter, anything else to the
    /// newest open stream.
    fn route(&self, frame: Vec<u8>) {
        if let Some(id) = response_id(&frame) {
            if let Some(waiter) = self.lock_waiters().remove(&id) {
                let _ = waiter.send(frame);
                return;
            }
        }
        if !self.lock_subscriptions().is_empty() {
            if let Some(id) = custos_mcp::subscription_id(&frame) {
                let mut subscriptions = self.lock_subscriptions();
                if let Some(tx) = subscriptions.get(&id) {
                    // A client that stopped reading loses its stream, not the session: there is
                    // no replay in subscriptions, the client listens again and refetches.
                    if tx.try_send(frame).is_err() {
                        tracing::warn!("session {}: subscription {id} is not being read; ended", self.id);
                        subscriptions.remove(&id);
                    }
                    return;
                }
            }
        }
        let target = {
            let mut streams = self.lock_streams();
            streams.posts.retain(|(_, tx)| !tx.is_closed());
            streams.posts.last().map(|(_, tx)| tx.clone()).or_else(|| streams.get.clone())
        };
        match target {
            Some(tx) => {
                if tx.try_send(frame).is_err() {
                    tracing::warn!("session {}: a client stream is full or closed; message dropped", self.id);
                }
            }
            None => tracing::debug!("session {}: no open stream for a server message; dropped", self.id),
        }
    }
}

/// Closes its POST stream when the response is over (or the client went away).
#[derive(Debug)]
pub struct PostStream {
    session: Arc<Session>,
    n: u64,
    /// An open stream keeps the session in use.
    _busy: Busy,
}

impl Drop for PostStream {
    fn drop(&mut self) {
        self.session.lock_streams().posts.retain(|(n, _)| *n != self.n);
    }
}

/// An open `subscriptions/listen` stream; dropping it ends the subscription upstream.
#[derive(Debug)]
pub struct Subscription {
    session: Arc<Session>,
    id: Box<RawValue>,
    /// An open subscription keeps its upstream in use.
    _busy: Busy,
}

impl Subscription {
    /// The stream ended on the upstream's side (its final answer came): nothing to cancel.
    pub fn ended(self) {
        self.session.lock_subscriptions().remove(self.id.get());
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let open = self.session.lock_subscriptions().remove(self.id.get()).is_some();
        if !open || self.session.is_gone() {
            return;
        }
        // The client went away or the stream ended here: the upstream stops serving it.
        let cancel = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"subscription closed by the client"}}}}"#,
            self.id.get()
        );
        let session = self.session.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = session.send(cancel.into_bytes()).await;
            });
        }
    }
}

/// Routes the upstream's output until it ends; then, unless the session is closing, fails the
/// requests still waiting, records the exit, and starts the upstream again when it can.
async fn dispatch(session: Arc<Session>, mut from_upstream: mpsc::Receiver<Vec<u8>>) {
    loop {
        while let Some(frame) = from_upstream.recv().await {
            session.route(frame);
        }
        if session.closing.load(Ordering::SeqCst) {
            return;
        }
        let status = match &mut *session.upstream.lock().await {
            Upstream::Child(child) => child.wait_status(session.grace).await,
            Upstream::Remote(_) => "remote session ended".to_owned(),
            Upstream::Api(_) => "api session ended".to_owned(),
        };
        for answer in session.gateway.upstream_gone(&status).await {
            session.route(answer);
        }
        match session.restart().await {
            Some(next) => from_upstream = next,
            None => {
                session.gone.store(true, Ordering::SeqCst);
                // INVARIANT: set before the waiters are let go, and checked by a sender after
                // it forwards: a request that slipped in after the upstream's pending requests
                // were answered above is let go here or by its sender, never left waiting.
                session.lock_waiters().clear();
                return;
            }
        }
    }
}

/// Quick deaths in a row after which a session's upstream is no longer restarted.
const MAX_RESTARTS: u32 = 3;
impl Session {
    /// Starts a stdio upstream again and replays the client's handshake to it, so the session
    /// goes on. `None` when it cannot be: a remote upstream, no handshake to replay (stateless
    /// traffic has its own restarts), or too many quick deaths in a row.
    async fn restart(self: &Arc<Self>) -> Option<mpsc::Receiver<Vec<u8>>> {
        let Target::Command(command) = &self.target else { return None };
        let replay = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if replay.is_empty() {
            return None;
        }
        let lived = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
        if lived >= restart::HEALTHY_AFTER {
            self.restarts.store(0, Ordering::SeqCst);
        }
        let attempt = self.restarts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt > MAX_RESTARTS {
            tracing::warn!("session {}: upstream `{}` keeps exiting; giving up", self.id, self.server);
            return None;
        }
        // Client messages wait from here until the new upstream has had the handshake.
        let mut input = self.input.clone().write_owned().await;
        // Restart `attempt` follows `attempt - 1` quick deaths.
        tokio::time::sleep(restart::backoff(attempt - 1)).await;
        let (onward, from_upstream) = mpsc::channel(STREAM_BUFFER);
        let child = match ChildUpstream::restart(&self.gateway, command, self.limits, onward, attempt).await {
            Ok(child) => child,
            Err(e) => {
                tracing::error!("session {}: cannot restart `{}`: {e}", self.id, self.server);
                return None;
            }
        };
        *input = child.input().clone();
        *self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
        let old = std::mem::replace(&mut *self.upstream.lock().await, Upstream::Child(child));
        drop(old);
        // The dispatcher must route the handshake's answer, so the replay runs beside it.
        let session = self.clone();
        tokio::spawn(async move {
            // Through the pipeline like any request, so that it knows the answer is to a
            // request it forwarded (it relays no other).
            let through = |frame: Vec<u8>| {
                let gateway = session.gateway.clone();
                async move {
                    match gateway.from_client(Frame::Line(frame)).await {
                        Outcome::Forward(bytes) => Some(bytes),
                        _ => None,
                    }
                }
            };
            for frame in replay {
                let Some(id) = handshake_request_id(&frame) else {
                    if let Some(frame) = through(frame).await {
                        let _ = input.send(frame).await;
                    }
                    continue;
                };
                // Our own id, so the answer goes to us and not to the client.
                let ours = gateway_request_id();
                let Some(frame) = custos_mcp::with_id(&frame, &ours) else { continue };
                let Some(frame) = through(frame).await else { continue };
                let answer = session.expect(&ours);
                let _ = input.send(frame).await;
                if tokio::time::timeout(Duration::from_secs(10), answer).await.is_err() {
                    tracing::warn!("session {}: the restarted upstream did not answer `initialize` ({id})", session.id);
                    session.forget(&ours);
                }
            }
            drop(input);
        });
        Some(from_upstream)
    }
}

/// Whether `frame` is the client's `initialize` or `notifications/initialized`.
fn is_handshake(frame: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow)]
        method: Option<&'a str>,
    }
    matches!(
        serde_json::from_slice::<View<'_>>(frame).ok().and_then(|v| v.method),
        Some("initialize" | "notifications/initialized")
    )
}

/// The id of the replayed `initialize` request (the notification has none).
fn handshake_request_id(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    serde_json::from_slice::<View<'_>>(frame).ok()?.id.map(|id| id.get().to_owned())
}

/// The id of a response (a message with an id and no method), as raw JSON text.
fn response_id(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        method: Option<&'a RawValue>,
    }
    let view: View<'_> = serde_json::from_slice(frame).ok()?;
    match (view.id, view.method) {
        (Some(id), None) => Some(id.get().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    #[test]
    fn handshake_frames_are_recognised() {
        assert!(is_handshake(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#));
        assert!(is_handshake(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
        assert!(!is_handshake(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#));
        assert_eq!(handshake_request_id(br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#).as_deref(), Some("1"));
    }
}
