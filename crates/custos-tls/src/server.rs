//! The server side: `custos serve` terminating TLS, optionally asking agents for a client
//! certificate whose SPIFFE ID names them.
//!
//! [`server_config`] builds the rustls configuration from PEM files (ring provider, TLS 1.2 and
//! 1.3, ALPN `http/1.1`); [`Acceptor::accept`] runs one handshake under a deadline and returns
//! the stream with the SPIFFE ID of the client certificate, which rustls has verified against
//! the client CA before this code reads it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::HandshakeFailure;
use crate::{pem, san, TlsError};

/// Whether clients are asked for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for; agents authenticate with bearer credentials only.
    None,
    /// A certificate is asked for and verified if presented; a client without one may still
    /// authenticate with a bearer credential.
    Optional,
    /// The handshake fails without a certificate that verifies against the client CA.
    Required,
}

/// The files of a TLS server, as configured.
#[derive(Debug, Clone, Copy)]
pub struct ServerFiles<'a> {
    /// The server's certificate chain, leaf first.
    pub cert_file: &'a Path,
    /// The private key of the leaf.
    pub key_file: &'a Path,
    /// The CAs that issue client certificates; needed unless `client_auth` is `None`.
    pub client_ca_file: Option<&'a Path>,
    pub client_auth: ClientAuth,
}

/// The rustls configuration for `files`. Errors name the file at fault.
pub fn server_config(files: &ServerFiles<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = pem::certificates(files.cert_file)?;
    let key = pem::private_key(files.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (files.client_auth, files.client_ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config("asking for client certificates needs a client ca file".into()));
        }
        (mode, Some(ca_file)) => {
            let roots = Arc::new(pem::roots(ca_file)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if mode == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|e| TlsError::Invalid {
                path: ca_file.to_owned(),
                reason: format!("cannot verify client certificates with it: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Invalid {
            path: files.key_file.to_owned(),
            reason: format!("the key does not match the certificate in `{}`", files.cert_file.display()),
        },
        other => TlsError::Invalid {
            path: files.key_file.to_owned(),
            reason: format!("cannot use the key with `{}`: {other}", files.cert_file.display()),
        },
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS stream accepted by [`Acceptor::accept`].
pub type ServerStream<IO> = tokio_rustls::server::TlsStream<IO>;

/// Runs server handshakes with one configuration.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    /// Whether client certificates are asked for (for logs and `Debug`).
    client_auth: ClientAuth,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").field("client_auth", &self.client_auth).finish_non_exhaustive()
    }
}

/// A finished handshake: the stream, and who the client certificate names.
#[derive(Debug)]
pub struct Accepted<IO> {
    pub stream: ServerStream<IO>,
    /// The one SPIFFE ID (URI SAN) of the verified client certificate, as written; `None`
    /// without a certificate or when it holds no SPIFFE ID.
    pub spiffe_id: Option<String>,
}

impl Acceptor {
    /// An acceptor for the configuration `files` describes.
    pub fn new(files: &ServerFiles<'_>) -> Result<Self, TlsError> {
        let config = server_config(files)?;
        Ok(Self { inner: tokio_rustls::TlsAcceptor::from(config), client_auth: files.client_auth })
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// Runs the handshake on `io`, giving up after `timeout`. A client certificate with more
    /// than one SPIFFE ID fails it too: the certificate names more than one workload.
    pub async fn accept<IO>(&self, io: IO, timeout: Duration) -> Result<Accepted<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = match tokio::time::timeout(timeout, self.inner.accept(io)).await {
            Err(_) => {
                return Err(TlsError::Handshake {
                    failure: HandshakeFailure::Timeout,
                    reason: format!("not finished within {} ms", timeout.as_millis()),
                });
            }
            Ok(Err(e)) => return Err(handshake_error(&e)),
            Ok(Ok(stream)) => stream,
        };
        let (_, connection) = stream.get_ref();
        let spiffe_id = match connection.peer_certificates().and_then(<[_]>::first) {
            None => None,
            Some(leaf) => san::spiffe_id(leaf.as_ref()).map_err(|e| TlsError::Handshake {
                failure: HandshakeFailure::PeerIdentity,
                reason: format!("the client certificate cannot name one workload: {e}"),
            })?,
        };
        Ok(Accepted { stream, spiffe_id })
    }
}

/// Classifies what tokio-rustls reports: rustls errors travel inside `InvalidData` I/O errors.
fn handshake_error(e: &std::io::Error) -> TlsError {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return TlsError::Handshake { failure: HandshakeFailure::Connection, reason: e.kind().to_string() };
    };
    let failure = match tls {
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
            HandshakeFailure::ClientCertificate
        }
        _ => HandshakeFailure::Protocol,
    };
    TlsError::Handshake { failure, reason: tls.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    /// A CA (`ca.pem`), a server certificate for localhost it issued (`server.pem`,
    /// `server.key`), and a key that belongs to nothing (`other.key`).
    struct Files {
        dir: tempfile::TempDir,
        ca: CertifiedIssuer<'static, KeyPair>,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
            let ca = new_ca();
            write("ca.pem", ca.pem());
            let server_key = KeyPair::generate().unwrap();
            let server =
                CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &ca).unwrap();
            write("server.pem", server.pem());
            write("server.key", server_key.serialize_pem());
            write("other.key", KeyPair::generate().unwrap().serialize_pem());
            Files { dir, ca }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        fn acceptor(&self, client_auth: ClientAuth) -> Acceptor {
            let (cert, key, ca) = (self.path("server.pem"), self.path("server.key"), self.path("ca.pem"));
            let client_ca_file = (client_auth != ClientAuth::None).then_some(ca.as_path());
            Acceptor::new(&ServerFiles { cert_file: &cert, key_file: &key, client_ca_file, client_auth }).unwrap()
        }
    }

    fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A client certificate naming `uris`, issued by `issuer`, and its key.
    fn client_cert(issuer: &CertifiedIssuer<'_, KeyPair>, uris: &[&str]) -> (CertificateDer<'static>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.der().clone(), key.serialize_der())
    }

    /// One handshake between a rustls client (trusting `files`' CA, presenting `client` if
    /// given) and `acceptor`; the server's result.
    async fn handshake(
        files: &Files,
        acceptor: &Acceptor,
        client: Option<(CertificateDer<'static>, Vec<u8>)>,
    ) -> Result<Option<String>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(files.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                builder.with_client_auth_cert(vec![cert], PrivateKeyDer::try_from(key).unwrap()).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let (_, accepted) =
            tokio::join!(connector.connect(name, client_io), acceptor.accept(server_io, Duration::from_secs(10)));
        accepted.map(|a| a.spiffe_id)
    }

    #[test]
    fn builds_each_client_auth_mode_with_alpn() {
        let f = Files::new();
        let (cert, key, ca) = (f.path("server.pem"), f.path("server.key"), f.path("ca.pem"));
        for (client_auth, client_ca_file) in
            [(ClientAuth::None, None), (ClientAuth::Optional, Some(ca.as_path())), (ClientAuth::Required, Some(&ca))]
        {
            let files = ServerFiles { cert_file: &cert, key_file: &key, client_ca_file, client_auth };
            assert_eq!(server_config(&files).unwrap().alpn_protocols, [b"http/1.1".to_vec()]);
        }
        let files =
            ServerFiles { cert_file: &cert, key_file: &key, client_ca_file: None, client_auth: ClientAuth::Required };
        let err = server_config(&files).unwrap_err().to_string();
        assert!(err.contains("client ca"), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let f = Files::new();
        let (cert, other_key, key) = (f.path("server.pem"), f.path("other.key"), f.path("server.key"));
        let files =
            ServerFiles { cert_file: &cert, key_file: &other_key, client_ca_file: None, client_auth: ClientAuth::None };
        let err = server_config(&files).unwrap_err().to_string();
        assert!(err.contains("other.key") && err.contains("does not match") && err.contains("server.pem"), "{err}");
        let missing = f.path("missing.pem");
        let err = server_config(&ServerFiles { cert_file: &missing, ..files }).unwrap_err().to_string();
        assert!(err.contains("missing.pem") && err.contains("cannot read"), "{err}");
        let files = ServerFiles {
            cert_file: &cert,
            key_file: &key,
            client_ca_file: Some(&key),
            client_auth: ClientAuth::Required,
        };
        let err = server_config(&files).unwrap_err().to_string();
        assert!(err.contains("server.key") && err.contains("no certificate"), "{err}");
    }

    #[tokio::test]
    async fn the_client_certificate_names_its_spiffe_id() {
        let f = Files::new();
        let optional = f.acceptor(ClientAuth::Optional);
        let billing = client_cert(&f.ca, &["spiffe://corp.example/agent/billing"]);
        assert_eq!(
            handshake(&f, &optional, Some(billing)).await.unwrap().as_deref(),
            Some("spiffe://corp.example/agent/billing")
        );
        assert_eq!(handshake(&f, &optional, None).await.unwrap(), None, "optional: no certificate is fine");
        let no_uri = client_cert(&f.ca, &[]);
        assert_eq!(handshake(&f, &optional, Some(no_uri)).await.unwrap(), None);
        // Without client auth no certificate is asked for, so none is read.
        let billing = client_cert(&f.ca, &["spiffe://corp.example/agent/billing"]);
        assert_eq!(handshake(&f, &f.acceptor(ClientAuth::None), Some(billing)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn untrusted_missing_or_ambiguous_client_certificates_fail_the_handshake() {
        let f = Files::new();
        let (optional, required) = (f.acceptor(ClientAuth::Optional), f.acceptor(ClientAuth::Required));
        let failure = |r: Result<Option<String>, TlsError>| r.unwrap_err().handshake_failure().unwrap();
        let foreign = client_cert(&new_ca(), &["spiffe://corp.example/agent/billing"]);
        assert_eq!(failure(handshake(&f, &optional, Some(foreign)).await), HandshakeFailure::ClientCertificate);
        assert_eq!(failure(handshake(&f, &required, None).await), HandshakeFailure::ClientCertificate);
        let two = client_cert(&f.ca, &["spiffe://corp.example/a", "spiffe://corp.example/b"]);
        let err = handshake(&f, &required, Some(two)).await.unwrap_err();
        assert_eq!(err.handshake_failure(), Some(HandshakeFailure::PeerIdentity));
        assert!(err.to_string().contains("more than one spiffe id") && !err.to_string().contains("corp.example"));
    }

    #[tokio::test]
    async fn a_handshake_that_is_not_tls_fails_as_protocol_and_a_silent_one_times_out() {
        use tokio::io::AsyncWriteExt;
        let f = Files::new();
        let acceptor = f.acceptor(ClientAuth::None);
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let err = acceptor.accept(server, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.handshake_failure(), Some(HandshakeFailure::Protocol), "{err}");
        let (_client, server) = tokio::io::duplex(4096);
        let err = acceptor.accept(server, Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(err.handshake_failure(), Some(HandshakeFailure::Timeout), "{err}");
    }
}
