//! `custos serve` over TLS (`[serve.tls]`): the handshake in front of the accept loop of
//! `listen.rs`, which plain HTTP shares (connection cap, timeouts, shutdown).
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
//! no one and never stops the server; it counts against `max_connections` like any connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use custos_config::{ClientAuth, TlsSettings};
use custos_tls::server::{Acceptor, ServerFiles, ServerStream};
use custos_tls::{HandshakeFailure, TlsError};
use tokio::net::{TcpListener, TcpStream};

use crate::listen::Transport;
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
    let closing = state.clone();
    state.spawn_reaper();
    let transport = Tls::new(acceptor, state.metrics());
    crate::listen::serve_connections(state.endpoint(), listener, transport, shutdown, async move {
        // Open event streams end when their sessions close; then in-flight requests drain.
        closing.close_all("gateway shutting down").await;
    })
    .await
}

/// TLS in front of HTTP: the handshake, in the connection's own task.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: Acceptor,
    failures: custos_metrics::Counter,
}

impl Tls {
    pub(crate) fn new(acceptor: Acceptor, metrics: &custos_metrics::Registry) -> Self {
        let failures = metrics.counter(
            "custos_tls_handshake_failures_total",
            "TLS handshakes that failed (not TLS, untrusted or missing client certificate, timeout), by reason.",
            &["reason"],
        );
        Self { acceptor, failures }
    }
}

impl Transport for Tls {
    type Io = ServerStream<TcpStream>;
    // A refusal in plain text would not be understood by a TLS client: it is closed at once.
    const PLAIN_HTTP: bool = false;

    async fn open(&self, tcp: TcpStream, peer: SocketAddr) -> Option<(Self::Io, Option<ClientSpiffeId>)> {
        let accepted = match self.acceptor.accept(tcp, HANDSHAKE_TIMEOUT).await {
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
                return None;
            }
        };
        Some((accepted.stream, accepted.spiffe_id.map(ClientSpiffeId)))
    }
}
