//! The accept loop of `custos serve`, for plain HTTP and TLS alike (`tls.rs` puts a handshake
//! in front of HTTP; nothing else differs), and for the admin API's listener.
//!
//! ```text
//! accept TCP ─► max_connections open? ── yes ─► refused: 503 + `Connection: close` (plain HTTP)
//!   │ no                                         or closed at once (TLS); counted
//!   ▼
//! task: transport (TLS handshake, or none) ─► hyper HTTP/1.1 (header timeout, keep-alive) ─► Router
//! ```
//!
//! Every connection holds a permit of its listener's cap until it ends, so `max_connections`
//! bounds the sockets, tasks and buffers the gateway spends on clients however they behave. hyper's timer
//! closes a connection that has not sent a whole request head within `header_timeout_ms` of
//! being ready for one (slowloris, or a kept-alive connection left idle); the handlers bound
//! the time a body may take (`body_timeout_ms`, see `server::read_body`).
//!
//! Shutdown: stop accepting, run the listener's closing step (the MCP listener closes every
//! session, which ends their event streams), tell every connection to finish the requests it
//! has, and return once the last one has ended.
//!
//! The admin API has its own listener, cap and metrics (`listener="admin"`), with the same
//! `[serve]` limits: a flood of one cannot take the other's connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::tls::ClientSpiffeId;

/// Refused connections (at the cap) that may be lingering at once; past it a refused connection
/// is closed without its answer. Each holds a socket for at most [`REFUSAL_LINGER`].
const MAX_LINGERING_REFUSALS: usize = 256;

/// How long a refused connection is kept after its answer, reading (and dropping) what the
/// client still sends. Closing a socket with unread input resets it, and a reset can reach the
/// client before it has read the answer: this is nginx's "lingering close".
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The most a lingering refused connection reads before it is closed anyway.
const REFUSAL_LINGER_BYTES: usize = 64 * 1024;

/// Connections the kernel completes and queues for `accept` before it drops new ones. The
/// standard library (and tokio) ask for 128: a burst of more than that between two turns of the
/// accept loop has its SYNs dropped, and those clients, well-behaved ones included, retry only
/// after a second or more. The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` for `custos serve`, with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restarted gateway can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What a connection speaks HTTP over: the accepted TCP stream itself, or TLS on it.
pub(crate) trait Transport: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Whether a refusal can be written in plain HTTP on a connection just accepted.
    const PLAIN_HTTP: bool;

    /// The stream HTTP is spoken over and the verified identity of the client, or `None` when the
    /// connection fails before HTTP (the transport logs and counts why).
    fn open(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<(Self::Io, Option<ClientSpiffeId>)>> + Send;
}

/// Plain HTTP: the TCP stream as accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plain;

impl Transport for Plain {
    type Io = TcpStream;
    const PLAIN_HTTP: bool = true;

    async fn open(&self, tcp: TcpStream, _peer: SocketAddr) -> Option<(TcpStream, Option<ClientSpiffeId>)> {
        Some((tcp, None))
    }
}

/// The metrics of one listener's client connections, registered with the gateway's others.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMetrics {
    /// `mcp` or `admin`: the `listener` label of both families.
    listener: &'static str,
    /// `custos_connections{listener}`: open client connections.
    open: custos_metrics::Gauge,
    /// `custos_connections_refused_total{listener,reason}`: connections and requests cut off by a
    /// limit: `max_connections`, `header_timeout`, `body_timeout`.
    refused: custos_metrics::Counter,
}

impl ConnectionMetrics {
    pub(crate) fn register(registry: &custos_metrics::Registry, listener: &'static str) -> Self {
        Self {
            listener,
            open: registry.gauge("custos_connections", "Open client connections, by listener.", &["listener"]),
            refused: registry.counter(
                "custos_connections_refused_total",
                "Client connections and requests cut off by a limit, by listener and reason: \
                 `max_connections` (refused at accept), `header_timeout` (no whole request head in \
                 time, idle kept-alive connections included), `body_timeout` (answered 408).",
                &["listener", "reason"],
            ),
        }
    }

    /// Counts one connection or request cut off for `reason`.
    pub(crate) fn refused(&self, reason: &str) {
        self.refused.inc(&[self.listener, reason]);
    }
}

/// What one listener serves, and its limits.
pub(crate) struct Endpoint {
    pub router: Router,
    /// `[serve] max_connections`.
    pub max_connections: usize,
    /// `[serve] header_timeout_ms`.
    pub header_timeout: Duration,
    pub metrics: ConnectionMetrics,
}

impl Endpoint {
    /// `router` with the `[serve]` limits of `settings`.
    pub(crate) fn new(router: Router, settings: &custos_config::ServeConfig, metrics: ConnectionMetrics) -> Self {
        Self {
            router,
            max_connections: settings.max_connections,
            header_timeout: Duration::from_millis(settings.header_timeout_ms),
            metrics,
        }
    }
}

/// Serves `endpoint` on `listener` over `transport` until `shutdown` resolves; then stops
/// accepting, runs `closing` (which ends long-lived streams), tells every connection to finish
/// the requests it has, and returns once the last one has ended.
pub(crate) async fn serve_connections<T: Transport>(
    endpoint: Endpoint,
    listener: TcpListener,
    transport: T,
    shutdown: impl Future<Output = ()> + Send + 'static,
    closing: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Endpoint { router, max_connections, header_timeout, metrics } = endpoint;
    let http = http1_builder(header_timeout);
    let cap = Arc::new(Semaphore::new(max_connections));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let refusal: Arc<[u8]> = refusal(max_connections).into();
    // `stop` tells connections to finish; every connection holds a receiver of `drained`, so
    // `drained.closed()` resolves when the last connection is gone.
    let (stop, stopping) = watch::channel(false);
    let (drained, connection_alive) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    // Whether the last connection accepted was refused: a flood is logged once, not per socket.
    let mut at_cap = false;
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            metrics.refused("max_connections");
            if !std::mem::replace(&mut at_cap, true) {
                tracing::warn!(
                    "{max_connections} client connections are open on the {} listener (`max_connections`): refusing more",
                    metrics.listener
                );
            }
            tracing::debug!("refused a connection from {peer}: {max_connections} are open");
            if T::PLAIN_HTTP {
                refuse(tcp, refusal.clone(), &lingering);
            }
            continue;
        };
        at_cap = false;
        // Answers are small and often written in several pieces (SSE events): without this,
        // Nagle's algorithm holds each piece until the client's delayed ACK, 40 ms per call.
        let _ = tcp.set_nodelay(true);
        metrics.open.inc(&[metrics.listener]);
        let connection = Connection {
            transport: transport.clone(),
            http: http.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
            stopping: stopping.clone(),
            _open: Open { metrics: metrics.clone(), _permit: permit, _alive: connection_alive.clone() },
        };
        tokio::spawn(connection.run(tcp, peer));
    }
    drop(listener);
    closing.await;
    let _ = stop.send(true);
    drop(connection_alive);
    drained.closed().await;
    Ok(())
}

/// HTTP/1.1 as every connection speaks it. Without the timer hyper would silently drop its
/// header timeout (as `axum::serve` does): a client sending its head a byte at a time, or never,
/// would hold its connection forever.
fn http1_builder(header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    builder
}

/// The answer of a connection past the cap: a JSON-RPC error (MCP clients show it), and the
/// connection closed so the client retries on a fresh one.
fn refusal(max_connections: usize) -> Vec<u8> {
    let body = custos_mcp::error_response(
        None,
        custos_mcp::codes::INVALID_REQUEST,
        &format!("too many open connections (limit {max_connections}); retry later"),
        None,
    );
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// Answers a connection past the cap and closes it, lingering briefly so the answer is read
/// rather than reset (see [`REFUSAL_LINGER`]); closed at once when too many already linger.
fn refuse(tcp: TcpStream, response: Arc<[u8]>, lingering: &Arc<Semaphore>) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else { return };
    tokio::spawn(linger(tcp, response, permit));
}

async fn linger(mut tcp: TcpStream, response: Arc<[u8]>, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        tcp.write_all(&response).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < REFUSAL_LINGER_BYTES {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Errors of `accept` that concern one connection are skipped; others (out of file
/// descriptors) get a pause so the loop does not spin, as `axum::serve` does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Resolves once the server is stopping (or gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: it is dropped here, not held across an await.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// What an open connection holds until it ends.
struct Open {
    /// Its `custos_connections`, decremented on drop.
    metrics: ConnectionMetrics,
    /// Its place under `max_connections`.
    _permit: OwnedSemaphorePermit,
    /// Dropped when the connection ends (see `serve_connections`).
    _alive: watch::Receiver<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.open.dec(&[self.metrics.listener]);
    }
}

/// One accepted connection: its transport, then its HTTP requests.
struct Connection<T> {
    transport: T,
    http: http1::Builder,
    router: Router,
    metrics: ConnectionMetrics,
    stopping: watch::Receiver<bool>,
    _open: Open,
}

impl<T: Transport> Connection<T> {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        let opened = tokio::select! {
            opened = self.transport.open(tcp, peer) => opened,
            () = stopped(&mut self.stopping) => return,
        };
        let Some((io, spiffe_id)) = opened else { return };
        let router = self.router;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            if let Some(id) = &spiffe_id {
                request.extensions_mut().insert(id.clone());
            }
            let mut router = router.clone();
            async move {
                let response: Result<axum::response::Response, Infallible> =
                    tower_service::Service::call(&mut router, request).await;
                response
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        let mut connection = pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut self.stopping) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.is_timeout() => {
                self.metrics.refused("header_timeout");
                tracing::debug!("closed a connection from {peer}: no request head within the header timeout");
            }
            Err(e) => tracing::debug!("connection from {peer} ended: {e}"),
        }
    }
}
