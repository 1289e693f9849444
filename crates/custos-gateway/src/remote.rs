//! A remote MCP server over Streamable HTTP, as an upstream of a gateway session.
//!
//! Each frame the session forwards is POSTed to the server's URL (concurrently: a slow tool call
//! does not hold up a ping). An answer comes back as one JSON body or as an SSE stream of
//! messages (progress, server-to-client requests, then the answer); every message passes the
//! pipeline's [`Gateway::from_upstream`] like a child's output. The server's `Mcp-Session-Id`
//! is kept and sent on later requests; the session ends with DELETE. The agent's credential is
//! never sent: only the headers configured for the upstream.
//!
//! Once the client has sent `notifications/initialized`, the server's own event stream is
//! opened with GET (what it says outside any request: list changes, resource updates, logging)
//! and relayed through the pipeline like the rest; it is opened again with a backoff when it
//! drops, and not at all when the server offers none (405).
//!
//! `http://` servers are called in the clear; `https://` ones through rustls (`custos-tls`),
//! trusting the system's roots plus the server's `ca_file`, and presenting its client
//! certificate when one is configured. The certificate must name the URL's host.
//!
//! A server that cannot be reached, fails the TLS handshake, or answers with an HTTP error, gets
//! the request answered with a JSON-RPC error naming the upstream, through the pipeline, so the
//! call is closed in the log and the client is not left waiting.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use custos_mcp::{codes, error_response, Frame};

use crate::pipeline::{Gateway, Outcome};
use crate::stdio::StdioError;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// A remote Streamable HTTP server behind a [`Gateway`].
#[derive(Debug)]
pub struct RemoteUpstream {
    input: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    sender: tokio::task::JoinHandle<()>,
    /// For the token the closing DELETE carries.
    gateway: Arc<Gateway>,
}

#[derive(Debug)]
struct Shared {
    url: hyper::Uri,
    server: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: Transport,
    session: Mutex<Option<HeaderValue>>,
    version: Mutex<Option<HeaderValue>>,
    max_bytes: usize,
    /// The task relaying the server's GET stream, once started; aborted when the session ends.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How requests reach the server: in the clear for `http://`, through rustls for `https://`;
/// with bodies of type `B` (whole ones by default, streamed ones for HTTP APIs).
#[derive(Debug)]
pub(crate) enum Transport<B = Full<Bytes>> {
    Plain(Client<HttpConnector, B>),
    Tls(Client<custos_tls::client::HttpsConnector, B>),
}

impl<B> Transport<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// The transport for `uri`'s scheme, with `tls` for `https://`.
    pub(crate) fn for_uri(uri: &hyper::Uri, tls: &custos_config::UpstreamTls) -> Result<Self, String> {
        match uri.scheme_str() {
            Some("http") => Ok(Transport::Plain(Client::builder(TokioExecutor::new()).build_http::<B>())),
            Some("https") => {
                let identity = tls.client_identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
                let config =
                    custos_tls::client::ClientTls::load(tls.ca_file.as_deref(), identity).map_err(|e| e.to_string())?;
                Ok(Transport::Tls(Client::builder(TokioExecutor::new()).build(config.connector())))
            }
            _ => Err("only http:// and https:// upstreams are supported".into()),
        }
    }

    pub(crate) fn request(&self, req: Request<B>) -> ResponseFuture {
        match self {
            Self::Plain(client) => client.request(req),
            Self::Tls(client) => client.request(req),
        }
    }
}

impl RemoteUpstream {
    /// Records the start of the run and starts sending what the session forwards to `url`,
    /// with `tls` for an `https://` url.
    pub async fn start(
        gateway: &Arc<Gateway>,
        url: &str,
        headers: &[(String, String)],
        tls: &custos_config::UpstreamTls,
        limits: custos_config::Limits,
        onward: mpsc::Sender<Vec<u8>>,
    ) -> Result<Self, StdioError> {
        let bad = |reason: String| StdioError::Spawn { program: url.to_owned(), reason };
        let broker = gateway.broker();
        // Secrets injected as query parameters: the URL is never shown again (errors name the
        // url as configured, events only its host).
        let uri: hyper::Uri =
            with_query(url, &broker.query(gateway.server())).parse().map_err(|_| bad("not a url".to_owned()))?;
        let client = Transport::for_uri(&uri, tls).map_err(bad)?;
        let mut headers = headers
            .iter()
            .map(|(k, v)| Ok((HeaderName::try_from(k.as_str())?, HeaderValue::try_from(v.as_str())?)))
            .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()
            .map_err(|e| bad(format!("bad header: {e}")))?;
        for (name, value) in broker.headers(gateway.server()) {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| bad(format!("bad header `{name}`: {e}")))?;
            // The value is a secret: say which header, never what it held.
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| bad(format!("the secret injected as `{name}` is not a valid header value")))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        gateway
            .start(serde_json::json!({
                "transport": "http",
                "url_host": uri.authority().map(|a| a.to_string()),
            }))
            .await?;
        let shared = Arc::new(Shared {
            url: uri,
            server: gateway.server().to_owned(),
            headers,
            client,
            session: Mutex::new(None),
            version: Mutex::new(None),
            max_bytes: limits.max_message_bytes,
            listener: Mutex::new(None),
        });
        let (input, mut frames) = mpsc::channel::<Vec<u8>>(256);
        let sender = {
            let shared = shared.clone();
            let gateway = gateway.clone();
            tokio::spawn(async move {
                while let Some(frame) = frames.recv().await {
                    if frame.is_empty() {
                        break;
                    }
                    let (shared, gateway, onward) = (shared.clone(), gateway.clone(), onward.clone());
                    tokio::spawn(async move {
                        let initialized = is_initialized(&frame);
                        post(&shared, &gateway, &onward, frame).await;
                        if initialized {
                            open_event_stream(&shared, gateway, onward);
                        }
                    });
                }
            })
        };
        Ok(Self { input, shared, sender, gateway: gateway.clone() })
    }

    pub fn input(&self) -> &mpsc::Sender<Vec<u8>> {
        &self.input
    }

    /// Ends the server's session (DELETE) and stops sending.
    pub async fn close(&mut self) {
        let session = self.shared.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(session) = session {
            let mut req = Request::builder().method(Method::DELETE).uri(self.shared.url.clone());
            for (k, v) in &self.shared.headers {
                req = req.header(k, v);
            }
            if let Ok(Some((k, v))) = self.gateway.upstream_token(b"") {
                req = with_token(req, &k, v);
            }
            if let Ok(req) = req.header(SESSION_HEADER, session).body(Full::new(Bytes::new())) {
                let _ = self.shared.client.request(req).await;
            }
        }
        self.sender.abort();
        if let Some(listener) = self.shared.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            listener.abort();
        }
    }
}

/// Starts relaying the server's GET stream, once per session.
fn open_event_stream(shared: &Arc<Shared>, gateway: Arc<Gateway>, onward: mpsc::Sender<Vec<u8>>) {
    let mut listener = shared.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if listener.is_some() {
        return;
    }
    let shared_for_task = shared.clone();
    *listener = Some(tokio::spawn(async move {
        let shared = shared_for_task;
        let mut failures = 0u32;
        loop {
            match listen(&shared, &gateway, &onward).await {
                Listened::NotOffered => return,
                Listened::Ended { delivered } => {
                    failures = if delivered { 0 } else { failures.saturating_add(1) };
                }
            }
            if onward.is_closed() {
                return;
            }
            // 0.5 s doubling to 30 s between attempts while the stream keeps failing.
            let wait = std::time::Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)))
                .min(std::time::Duration::from_secs(30));
            tokio::time::sleep(wait).await;
        }
    }));
}

/// How one GET stream ended.
enum Listened {
    /// The server offers no stream (405, or no session): do not ask again.
    NotOffered,
    /// It dropped or failed; `delivered`: it carried at least one message first.
    Ended { delivered: bool },
}

/// One GET stream, relayed until it ends.
async fn listen(shared: &Shared, gateway: &Gateway, onward: &mpsc::Sender<Vec<u8>>) -> Listened {
    let lock = |m: &Mutex<Option<HeaderValue>>| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(session) = lock(&shared.session) else { return Listened::NotOffered };
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(shared.url.clone())
        .header(ACCEPT, "text/event-stream")
        .header(SESSION_HEADER, session);
    for (k, v) in &shared.headers {
        req = req.header(k, v);
    }
    if let Some(version) = lock(&shared.version) {
        req = req.header(VERSION_HEADER, version);
    }
    match gateway.upstream_token(b"") {
        Ok(Some((k, v))) => req = with_token(req, &k, v),
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!("upstream `{}`: its event stream needs a token: {reason}", shared.server);
            return Listened::Ended { delivered: false };
        }
    }
    let Ok(req) = req.body(Full::new(Bytes::new())) else { return Listened::NotOffered };
    let response = match shared.client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("upstream `{}`: its event stream cannot be opened: {e}", shared.server);
            return Listened::Ended { delivered: false };
        }
    };
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND {
        return Listened::NotOffered;
    }
    if !status.is_success() {
        tracing::debug!("upstream `{}`: its event stream answered {status}", shared.server);
        return Listened::Ended { delivered: false };
    }
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    let mut delivered = false;
    while let Some(Ok(chunk)) = body.frame().await {
        let Ok(data) = chunk.into_data() else { continue };
        buffer.extend_from_slice(&data);
        if buffer.len() > shared.max_bytes.saturating_mul(2) {
            tracing::warn!("upstream `{}`: an event of its stream exceeds {} bytes", shared.server, shared.max_bytes);
            return Listened::Ended { delivered };
        }
        while let Some(event) = take_event(&mut buffer) {
            delivered = true;
            deliver(shared, gateway, onward, event).await;
        }
    }
    Listened::Ended { delivered }
}

/// Whether `frame` is the client's `notifications/initialized`.
fn is_initialized(frame: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow)]
        method: Option<&'a str>,
    }
    serde_json::from_slice::<View<'_>>(frame).ok().and_then(|v| v.method) == Some("notifications/initialized")
}

/// POSTs one frame and passes whatever comes back through the pipeline.
async fn post(shared: &Shared, gateway: &Gateway, onward: &mpsc::Sender<Vec<u8>>, frame: Vec<u8>) {
    let id = request_id(&frame);
    let trace = id.as_deref().and_then(|id| gateway.trace_headers(id));
    let fail = |reason: String| async move {
        tracing::warn!("upstream `{}`: {reason}", shared.server);
        if let Some(id) = &id {
            let message = format!("upstream `{}` is unavailable: {reason}", shared.server);
            let answer = error_response(Some(id), codes::UPSTREAM_UNAVAILABLE, &message, None);
            deliver(shared, gateway, onward, answer).await;
        }
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(shared.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream");
    for (k, v) in &shared.headers {
        req = req.header(k, v);
    }
    match gateway.upstream_token(&frame) {
        Ok(Some((k, v))) => req = with_token(req, &k, v),
        Ok(None) => {}
        Err(reason) => return fail(format!("cannot mint its token: {reason}")).await,
    }
    // A governed call carries its upstream span's trace context as headers too, the same as
    // in its `params._meta` (for servers and proxies that read only headers).
    if let Some(trace) = trace {
        req = req.header("traceparent", trace.traceparent);
        if let Some(state) = trace.tracestate {
            req = req.header("tracestate", state);
        }
    }
    let lock = |m: &Mutex<Option<HeaderValue>>| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if let Some(session) = lock(&shared.session) {
        req = req.header(SESSION_HEADER, session);
    }
    if let Some(version) = lock(&shared.version) {
        req = req.header(VERSION_HEADER, version);
    }
    let Ok(req) = req.body(Full::new(Bytes::from(frame))) else { return fail("cannot build the request".into()).await };
    let response = match shared.client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            let https = shared.url.scheme_str() == Some("https");
            let reason = custos_tls::client::handshake_failure(&e)
                .or_else(|| (https && hung_up(&e)).then(|| custos_tls::client::CLOSED_WITHOUT_ANSWER.to_owned()))
                .unwrap_or_else(|| format!("cannot reach it ({e})"));
            return fail(reason).await;
        }
    };
    if let Some(session) = response.headers().get(SESSION_HEADER) {
        *shared.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session.clone());
    }
    let status = response.status();
    if status == StatusCode::ACCEPTED {
        return;
    }
    if !status.is_success() {
        return fail(format!("http status {status}")).await;
    }
    let streamed = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = body.frame().await {
        let Ok(chunk) = chunk else { return fail("the answer was cut off".into()).await };
        let Ok(data) = chunk.into_data() else { continue };
        buffer.extend_from_slice(&data);
        if buffer.len() > shared.max_bytes.saturating_mul(2) {
            return fail(format!("answer exceeds {} bytes", shared.max_bytes)).await;
        }
        if streamed {
            while let Some(event) = take_event(&mut buffer) {
                remember_version(shared, &event);
                deliver(shared, gateway, onward, event).await;
            }
        }
    }
    if !streamed && !buffer.is_empty() {
        remember_version(shared, &buffer);
        deliver(shared, gateway, onward, buffer).await;
    }
}

/// Adds a minted token's header, marked sensitive so nothing that prints headers shows it.
fn with_token(req: hyper::http::request::Builder, name: &str, value: String) -> hyper::http::request::Builder {
    match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        (Ok(name), Ok(mut value)) => {
            value.set_sensitive(true);
            req.header(name, value)
        }
        _ => req,
    }
}

/// `url` with `params` added to its query, each value percent-encoded.
fn with_query(url: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return url.to_owned();
    }
    let (base, fragment) = url.split_once('#').map_or((url, None), |(b, f)| (b, Some(f)));
    let mut out = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
        sep = '&';
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `protocolVersion` of an `initialize` answer, sent on later requests.
fn remember_version(shared: &Shared, frame: &[u8]) {
    #[derive(serde::Deserialize)]
    struct R {
        result: V,
    }
    #[derive(serde::Deserialize)]
    struct V {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    if let Ok(r) = serde_json::from_slice::<R>(frame) {
        if let Ok(v) = HeaderValue::try_from(r.result.protocol_version) {
            *shared.version.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
        }
    }
}

/// Passes one message from the server through the pipeline: on to the session, or, when the
/// gateway answers the server itself (a request of the server's it refuses), back to it.
///
/// A boxed future with its type spelled out: posting that answer delivers what comes back, so
/// the two call each other.
fn deliver<'a>(
    shared: &'a Shared,
    gateway: &'a Gateway,
    onward: &'a mpsc::Sender<Vec<u8>>,
    frame: Vec<u8>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        match gateway.from_upstream(Frame::Line(frame)).await {
            Outcome::Forward(bytes) => {
                let _ = onward.send(bytes).await;
            }
            Outcome::Answer(bytes) => post(shared, gateway, onward, bytes).await,
            Outcome::Drop | Outcome::Held(_) => {}
        }
    })
}

/// The data of the next complete SSE event in `buffer`, removing it.
fn take_event(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let text = String::from_utf8_lossy(buffer).replace("\r\n", "\n");
        let end = text.find("\n\n")?;
        let (event, rest) = text.split_at(end);
        let data: Vec<&str> =
            event.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        *buffer = rest.get(2..).unwrap_or_default().as_bytes().to_vec();
        if !data.is_empty() {
            return Some(data.join("\n").into_bytes());
        }
    }
}

/// The id of a request frame (one with `method` and `id`), to answer it if the POST fails.
fn request_id(frame: &[u8]) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct View {
        id: Option<Box<RawValue>>,
        method: Option<Box<RawValue>>,
    }
    let v: View = serde_json::from_slice(frame).ok()?;
    v.method.and(v.id)
}

/// Whether `err` says the server hung up on a request it had been sent (before any answer):
/// the connection reset or closed under the request, not refused or unreachable.
fn hung_up(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_their_data_joined() {
        let mut buf =
            b"event: message\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: partial"
                .to_vec();
        assert_eq!(take_event(&mut buf).unwrap(), br#"{"a":1}"#.to_vec());
        assert_eq!(take_event(&mut buf).unwrap(), b"{\"b\":\n2}".to_vec());
        assert!(take_event(&mut buf).is_none());
        assert_eq!(buf, b"data: partial".to_vec());
    }

    #[test]
    fn injected_query_parameters_are_encoded_and_keep_the_rest_of_the_url() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(with_query("http://h/mcp", &[]), "http://h/mcp");
        assert_eq!(with_query("http://h/mcp", &[p("key", "a b&c=d/é")]), "http://h/mcp?key=a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(with_query("http://h/mcp?x=1#frag", &[p("k", "v"), p("j", "w")]), "http://h/mcp?x=1&k=v&j=w#frag");
    }

    #[test]
    fn only_requests_have_an_id_to_answer() {
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#).unwrap().get(), "7");
        assert!(request_id(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#).is_none());
        assert!(request_id(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#).is_none());
    }
}
