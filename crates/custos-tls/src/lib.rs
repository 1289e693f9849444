//! Custos TLS: everything that touches certificates, behind our own small types.
//!
//! `custos serve` terminates TLS itself (optionally asking agents for a client certificate whose
//! SPIFFE ID names them), and calls `https://` upstreams and identity providers. Both sides use
//! rustls with the ring provider; nothing else in the workspace imports rustls.
//!
//! # Layout
//!
//! - [`mod@error`]: [`TlsError`], whose messages name the file and what is wrong with it.
//! - [`pem`]: reading certificate chains, private keys and trust roots from PEM files.
//! - [`server`]: the server configuration (certificate, key, client CA, client-auth mode) and
//!   [`server::Acceptor`], one handshake under a deadline, returning the client's SPIFFE ID.
//! - [`san`]: the URI subject alternative names of a certificate, read by a small bounded DER
//!   reader, and the SPIFFE ID among them.
//! - [`client`]: [`ClientTls`](client::ClientTls), the trust roots (system plus an optional CA
//!   file) and optional client certificate of outgoing connections, and their hyper connector.

pub mod client;
pub mod error;
pub mod pem;
pub mod san;
pub mod server;

pub use error::{HandshakeFailure, TlsError};
