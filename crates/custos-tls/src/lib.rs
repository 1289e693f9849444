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

pub mod error;
pub mod pem;

pub use error::TlsError;
