//! `custos serve` over TLS (`[serve.tls]`): the accept loop that stands in for `axum::serve`.
//!
//! ```text
//! accept TCP ─► task: handshake (10 s deadline) ─► SPIFFE ID of the client certificate
//!                 │ failed: logged, counted, dropped     │
//!                 ▼                                       ▼
//!            custos_tls_handshake_failures_total    hyper HTTP/1.1 ─► the same Router as plain HTTP,
//!                                                    each request carrying a ClientSpiffeId extension
//! ```
//!
//! A handshake runs in the connection's own task, so a slow, silent or hostile client holds up
//! no one and never stops the server. Shutdown mirrors [`crate::serve`]: stop accepting, close
//! every session (which ends their event streams), then let in-flight requests drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use custos_config::{ClientAuth, TlsSettings};
use custos_tls::server::{Acceptor, ServerFiles};
use custos_tls::{HandshakeFailure, TlsError};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::AppState;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SPIFFE ID of the verified client certificate of the connection a request came on.
///
/// INVARIANT: only the TLS accept loop inserts it, after rustls verified the certificate
/// against the client CA; nothing a client sends (a header, a body) can produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpiffeId(pub String);

/// The acceptor for `[serve.tls]`: its files read and checked now, so a bad file stops start-up.
pub fn acceptor(settings: &TlsSettings) -> Result<Acceptor, TlsError> {
    let client_auth = match settings.client_auth {
        ClientAuth::None => custos_tls::server::ClientAuth::None,
        ClientAuth::Optional => custos_tls::server::ClientAuth::Optional,
        ClientAuth::Required => custos_tls::server::ClientAuth::Required,
    };
    Acceptor::new(&ServerFiles {
        cert_file: &settings.cert_file,
        key_file: &settings.key_file,
        client_ca_file: settings.client_ca_file.as_deref(),
        client_auth,
    })
}

/// Serves over TLS until `shutdown` resolves, then ends every session and returns once the open
/// connections have drained: [`crate::serve`] with a handshake in front of each connection.
pub async fn serve_tls(
    state: Arc<AppState>,
    listener: TcpListener,
    acceptor: Acceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::server::router(state.clone());
    let failures = state.metrics().counter(
        "custos_tls_handshake_failures_total",
        "TLS handshakes that failed (not TLS, untrusted or missing client certificate, timeout), by reason.",
        &["reason"],
    );
    // `stop` tells connections to finish; every connection task holds a receiver of `drained`,
    // so `drained.closed()` resolves when the last connection is gone.
    let (stop, stopping) = watch::channel(false);
    let (drained, connection_alive) = watch::channel(());
    let mut shutdown = pin!(shutdown);
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
        let connection = Connection {
            router: router.clone(),
            acceptor: acceptor.clone(),
            failures: failures.clone(),
            stopping: stopping.clone(),
            _alive: connection_alive.clone(),
        };
        tokio::spawn(connection.run(tcp, peer));
    }
    drop(listener);
    // Open event streams end when their sessions close; then in-flight requests drain.
    state.close_all("gateway shutting down").await;
    let _ = stop.send(true);
    drop(connection_alive);
    drained.closed().await;
    Ok(())
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

/// One accepted TCP connection: its handshake, then its HTTP requests.
struct Connection {
    router: Router,
    acceptor: Acceptor,
    failures: custos_metrics::Counter,
    stopping: watch::Receiver<bool>,
    /// Dropped when the connection ends (see `serve_tls`).
    _alive: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        let accepted = tokio::select! {
            result = self.acceptor.accept(tcp, HANDSHAKE_TIMEOUT) => result,
            () = stopped(&mut self.stopping) => return,
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                let failure = e.handshake_failure();
                self.failures.inc(&[failure.map_or("other", HandshakeFailure::as_str)]);
                // The error holds what rustls or this gateway says, never key material.
                match failure {
                    Some(HandshakeFailure::ClientCertificate | HandshakeFailure::PeerIdentity) => {
                        tracing::warn!("refused a tls connection from {peer}: {e}");
                    }
                    _ => tracing::debug!("tls handshake with {peer} failed: {e}"),
                }
                return;
            }
        };
        let spiffe_id = accepted.spiffe_id.map(ClientSpiffeId);
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
        // The timer bounds how long a client may take to send its request headers.
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(accepted.stream), service);
        let mut connection = pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut self.stopping) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!("tls connection from {peer} ended: {e}");
        }
    }
}
