//! The load generator: MCP clients that call `echo` as fast as their answers come back, over
//! Streamable HTTP (one keep-alive connection and one MCP session per client) or over one stdio
//! pipe (each client keeps one request in flight on the shared pipe).
//!
//! It is our own client code, not the gateway's: hyper's client connection, a JSON parse of
//! each answer to check it succeeded, and a latency sample per call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

const PROTOCOL_VERSION: &str = "2025-06-18";

/// A call not answered within this counts as an error (and the phase goes on).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Request ids of calls: unique in the whole run, so that no session ever sees one twice (the
/// gateway refuses a reused id as a replay). Ids below are the sessions' own requests.
static NEXT_ID: AtomicU64 = AtomicU64::new(100);

/// How long a load phase warms up, then measures.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one load phase measured.
#[derive(Debug, Default)]
pub struct Sample {
    /// Calls answered with a result inside the measured window.
    pub calls: u64,
    /// Calls answered with an error, or not answered, inside the measured window.
    pub errors: u64,
    /// Latency of each measured call, in microseconds.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
    /// What the first failed call got.
    pub first_error: Option<String>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Where an HTTP client sends its calls.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub path: String,
    /// `Authorization` header value, for the gateway.
    pub authorization: Option<String>,
}

/// The `n`-th call's request: a distinct text each time (the gateway refuses the same call
/// repeated in a row as a loop).
fn call(id: u64) -> Vec<u8> {
    let msg = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": format!("message {id}") } },
    });
    serde_json::to_vec(&msg).unwrap_or_default()
}

fn initialize(id: u64) -> Vec<u8> {
    let msg = json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "custos-bench", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    serde_json::to_vec(&msg).unwrap_or_default()
}

const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Listed once per session, as agents do before calling: the gateway learns the tool's
/// annotations (`readOnlyHint`) from it, which its class and so policy depend on.
const TOOLS_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

/// The JSON-RPC message of an HTTP answer: the body itself, or the last `data:` of an SSE body.
fn message_of(body: &[u8]) -> Option<Value> {
    if body.first() == Some(&b'{') {
        return serde_json::from_slice(body).ok();
    }
    let text = std::str::from_utf8(body).ok()?;
    text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str(d.trim()).ok()).next_back()
}

/// Whether `msg` answers a call with a result that is not a tool error.
fn succeeded(msg: &Value) -> bool {
    msg.get("result").is_some_and(|r| r.get("isError") != Some(&Value::Bool(true)))
}

/// One client connection: its MCP session, once opened.
pub struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    target: HttpTarget,
    session: Option<String>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("target", &self.target).field("session", &self.session).finish()
    }
}

impl HttpClient {
    /// Connects and opens an MCP session (`initialize`, then `notifications/initialized`).
    pub async fn open(target: &HttpTarget) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(target.addr).await.context("connecting")?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let mut client = Self { sender, target: target.clone(), session: None };
        client.new_session().await?;
        Ok(client)
    }

    /// Opens another MCP session on the same connection (the previous one stays open).
    pub async fn new_session(&mut self) -> Result<()> {
        self.session = None;
        let (status, session, body) = self.post(initialize(0)).await?;
        if status != StatusCode::OK {
            bail!("initialize answered {status}: {}", String::from_utf8_lossy(&body));
        }
        self.session = session;
        let (status, _, body) = self.post(INITIALIZED.to_vec()).await?;
        if !status.is_success() {
            bail!("notifications/initialized answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let (status, _, body) = self.post(TOOLS_LIST.to_vec()).await?;
        if status != StatusCode::OK || message_of(&body).is_none_or(|m| m.get("result").is_none()) {
            bail!("tools/list answered {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    async fn post(&mut self, body: Vec<u8>) -> Result<(StatusCode, Option<String>, Bytes)> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.target.path)
            .header("host", self.target.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(auth) = &self.target.authorization {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(session) = &self.session {
            req = req.header("mcp-session-id", session);
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(req.body(Full::new(Bytes::from(body)))?).await?;
        let status = response.status();
        let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, session, body))
    }

    /// One `tools/call`: `Err` with what came back when it did not succeed.
    async fn call(&mut self, id: u64) -> Result<Result<(), String>> {
        let (status, _, body) = self.post(call(id)).await?;
        if status == StatusCode::OK && message_of(&body).is_some_and(|m| succeeded(&m)) {
            return Ok(Ok(()));
        }
        Ok(Err(format!("{status}: {}", String::from_utf8_lossy(&body))))
    }
}

/// Runs `clients`, each calling in a loop until the window ends; calls sent and answered
/// inside the window are measured.
pub async fn http_load(clients: Vec<HttpClient>, window: Window) -> Result<Sample> {
    let tasks = clients.into_iter().map(|client| tokio::spawn(calls_until(client, window))).collect();
    collect(tasks, window).await
}

/// A client that makes one `tools/call` at a time.
trait Caller {
    /// One call with request id `id`: `Err` with what came back when it did not succeed.
    fn call_once(&mut self, id: u64) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl Caller for HttpClient {
    async fn call_once(&mut self, id: u64) -> Result<(), String> {
        self.call(id).await.unwrap_or_else(|e| Err(format!("{e:#}")))
    }
}

impl Caller for Arc<StdioPeer> {
    async fn call_once(&mut self, id: u64) -> Result<(), String> {
        match self.request(id, call(id)).await {
            Ok(m) if succeeded(&m) => Ok(()),
            Ok(m) => Err(m.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

/// Calls in a loop until the window ends; measures the calls sent and answered inside it.
async fn calls_until(mut client: impl Caller, window: Window) -> Sample {
    let mut sample = Sample::default();
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let outcome = tokio::time::timeout(CALL_TIMEOUT, client.call_once(id))
            .await
            .unwrap_or_else(|_| Err("no answer within the call timeout".to_owned()));
        let done = Instant::now();
        if done >= window.end {
            return sample;
        }
        if sent >= window.measure_from {
            sample.record(outcome, done - sent);
        }
    }
}

impl Sample {
    fn record(&mut self, outcome: Result<(), String>, latency: Duration) {
        match outcome {
            Ok(()) => {
                self.calls += 1;
                self.latencies_us.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// When a phase's measuring starts and when the phase ends.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Phase {
    /// The window of a phase starting now.
    pub fn starting_now(self) -> Window {
        let now = Instant::now();
        Window { measure_from: now + self.warmup, end: now + self.warmup + self.measure }
    }
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Sample>>, window: Window) -> Result<Sample> {
    let mut total = Sample { elapsed: window.end - window.measure_from, ..Sample::default() };
    for task in tasks {
        total.merge(task.await?);
    }
    Ok(total)
}

/// A stdio MCP server (or `custos run` in front of one) shared by many clients: requests are
/// written to one pipe and answers matched by id.
#[derive(Debug)]
pub struct StdioPeer {
    child: Child,
    lines: mpsc::Sender<Vec<u8>>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
}

impl StdioPeer {
    /// Starts `command`, opens the MCP session, and returns once it is initialized.
    pub async fn start(mut command: tokio::process::Command) -> Result<Self> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the stdio peer")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (lines, queued) = mpsc::channel(1024);
        let waiting = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(write_lines(stdin, queued));
        tokio::spawn(read_answers(stdout, waiting.clone()));
        let peer = Self { child, lines, waiting };
        let answer = peer.request(0, initialize(0)).await?;
        if !answer.get("result").is_some_and(Value::is_object) {
            bail!("initialize failed: {answer}");
        }
        peer.lines.send(INITIALIZED.to_vec()).await.map_err(|_| anyhow!("the peer's stdin closed"))?;
        let tools = peer.request(1, TOOLS_LIST.to_vec()).await?;
        if tools.get("result").is_none() {
            bail!("tools/list failed: {tools}");
        }
        Ok(peer)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn request(&self, id: u64, line: Vec<u8>) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().map_err(|_| anyhow!("poisoned"))?.insert(id, tx);
        self.lines.send(line).await.map_err(|_| anyhow!("the peer's stdin closed"))?;
        let answer = rx.await.map_err(|_| anyhow!("the peer's stdout closed"))?;
        Ok(serde_json::from_slice(&answer)?)
    }

    /// Keeps `clients` calls in flight until the window ends.
    pub async fn load(self: &Arc<Self>, clients: usize, window: Window) -> Result<Sample> {
        let tasks = (0..clients).map(|_| tokio::spawn(calls_until(self.clone(), window))).collect();
        collect(tasks, window).await
    }

    /// Closes stdin and waits for the peer to exit.
    pub async fn finish(mut self) -> Result<()> {
        drop(self.lines);
        tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.context("the peer did not exit")??;
        Ok(())
    }
}

/// Writes queued lines, flushing when the queue is empty, so concurrent requests share writes.
async fn write_lines(stdin: ChildStdin, mut queued: mpsc::Receiver<Vec<u8>>) {
    let mut out = tokio::io::BufWriter::new(stdin);
    while let Some(mut line) = queued.recv().await {
        loop {
            line.push(b'\n');
            if out.write_all(&line).await.is_err() {
                return;
            }
            match queued.try_recv() {
                Ok(next) => line = next,
                Err(_) => break,
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

/// Hands each answer to the request waiting for its id; messages without a numeric id (the
/// server's own notifications) are dropped.
async fn read_answers(stdout: ChildStdout, waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>) {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<u64>,
    }
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(Id { id: Some(id) }) = serde_json::from_slice::<Id>(&line) else { continue };
        let waiter = waiting.lock().ok().and_then(|mut w| w.remove(&id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(std::mem::take(&mut line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sse_answer_is_read_from_its_last_data_line() {
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}\n\n";
        let msg = message_of(sse).unwrap();
        assert_eq!(msg["id"], 3);
        assert!(succeeded(&msg));
        assert!(!succeeded(&json!({"id": 3, "result": {"isError": true}})));
        assert!(!succeeded(&json!({"id": 3, "error": {"code": -32001}})));
        assert_eq!(message_of(br#"{"id":1,"result":{}}"#).unwrap()["id"], 1);
    }
}
