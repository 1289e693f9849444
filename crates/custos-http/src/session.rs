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
use custos_gateway::{ChildUpstream, Gateway, Outcome, RemoteUpstream, StdioError};
use custos_mcp::Frame;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

/// Messages buffered for one event stream before the upstream waits for the client to read.
const STREAM_BUFFER: usize = 256;

#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub agent: Agent,
    pub server: String,
    gateway: Arc<Gateway>,
    input: mpsc::Sender<Vec<u8>>,
    upstream: tokio::sync::Mutex<Upstream>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    streams: Mutex<Streams>,
    /// Set when the session is being closed on purpose, so the end of the upstream's output is
    /// not mistaken for a crash.
    closing: AtomicBool,
    /// Set when the upstream has gone; later requests are refused.
    gone: AtomicBool,
    grace: Duration,
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
    /// A remote Streamable HTTP server, with the headers configured for it.
    Url { url: String, headers: Vec<(String, String)> },
}

#[derive(Debug)]
enum Upstream {
    Child(ChildUpstream),
    Remote(RemoteUpstream),
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
            Target::Url { url, headers } => {
                Upstream::Remote(RemoteUpstream::start(&gateway, url, headers, limits, onward).await?)
            }
        };
        let input = match &upstream {
            Upstream::Child(c) => c.input().clone(),
            Upstream::Remote(r) => r.input().clone(),
        };
        let session = Arc::new(Self {
            id,
            agent,
            server,
            input,
            gateway,
            upstream: tokio::sync::Mutex::new(upstream),
            waiters: Mutex::new(HashMap::new()),
            streams: Mutex::new(Streams::default()),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            grace: Duration::from_millis(limits.shutdown_grace_ms),
        });
        tokio::spawn(dispatch(session.clone(), from_upstream));
        Ok(session)
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The upstream has exited; the session can only be deleted.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
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

    /// Runs one client message through the pipeline and forwards it if the pipeline says so.
    pub async fn send(&self, raw: Vec<u8>) -> Sent {
        match self.gateway.from_client(Frame::Line(raw)).await {
            Outcome::Forward(bytes) => {
                if self.input.send(bytes).await.is_err() {
                    return Sent::Answered(Vec::new());
                }
                Sent::Forwarded
            }
            Outcome::Answer(bytes) => Sent::Answered(bytes),
            Outcome::Drop => Sent::Answered(Vec::new()),
        }
    }

    /// A stream for what the upstream says while one POST is open. Dropping the guard closes it.
    pub fn open_post_stream(self: &Arc<Self>) -> (PostStream, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut streams = self.lock_streams();
        streams.next += 1;
        let n = streams.next;
        streams.posts.push((n, tx));
        (PostStream { session: self.clone(), n }, rx)
    }

    /// The session's GET stream; a new one replaces the old.
    pub fn open_get_stream(&self) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.lock_streams().get = Some(tx);
        rx
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
            }
        }
        *self.lock_streams() = Streams::default();
        self.lock_waiters().clear();
        self.gateway.end(reason).await;
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Vec<u8>>>> {
        self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
}

impl Drop for PostStream {
    fn drop(&mut self) {
        self.session.lock_streams().posts.retain(|(n, _)| *n != self.n);
    }
}

/// Routes the upstream's output until it ends; then, unless the session is closing, fails the
/// requests still waiting and records the exit.
async fn dispatch(session: Arc<Session>, mut from_upstream: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = from_upstream.recv().await {
        session.route(frame);
    }
    if session.closing.load(Ordering::SeqCst) {
        return;
    }
    session.gone.store(true, Ordering::SeqCst);
    let status = match &mut *session.upstream.lock().await {
        Upstream::Child(child) => child.wait_status(session.grace).await,
        Upstream::Remote(_) => "remote session ended".to_owned(),
    };
    for answer in session.gateway.upstream_gone(&status).await {
        session.route(answer);
    }
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
