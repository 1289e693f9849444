//! The client side: connections custos opens to `https://` upstreams and identity providers.
//!
//! Trust is the operating system's roots plus an optional CA bundle of the operator's (a private
//! CA); a host with no usable system store still works when a bundle is given. The server's
//! certificate must name the host of the URL, a DNS name or an IP address (rustls and webpki
//! check it; the URL's host is the SNI name, and IP addresses are sent without SNI). A client
//! certificate is presented to servers that ask for one, when configured. Only HTTP/1.1 is
//! offered (ALPN), which is what the gateway's client speaks.

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{AlertDescription, CertificateError, RootCertStore};

use crate::{pem, TlsError};

/// A connector for hyper-util's legacy client: `https://` through rustls, `http://` in the clear
/// (callers decide which schemes they allow).
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The TLS settings of outgoing connections, loaded and checked; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.config.client_auth_cert_resolver.has_certs())
            .finish()
    }
}

impl ClientTls {
    /// Trusts the system roots and, when given, the CAs of `ca_file`; presents the certificate
    /// chain and key of `identity` (`(cert_file, key_file)`) to servers that ask for one.
    ///
    /// Errors name the file at fault; an empty trust store (no system roots and no `ca_file`) is
    /// an error too, since no server could ever be trusted.
    pub fn load(ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.roots.extend(system_roots().roots.iter().cloned());
        if let Some(ca_file) = ca_file {
            roots.roots.extend(pem::roots(ca_file)?.roots);
        }
        if roots.is_empty() {
            return Err(TlsError::Config(
                "no trust roots: the system store is empty or unreadable and no ca file is configured".into(),
            ));
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => builder
                .with_client_auth_cert(pem::certificates(cert_file)?, pem::private_key(key_file)?)
                .map_err(|e| {
                    TlsError::Config(format!(
                        "the client certificate `{}` and key `{}` cannot be used together: {e}",
                        cert_file.display(),
                        key_file.display()
                    ))
                })?,
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config) })
    }

    /// These settings for a TLS stream that is not HTTP (syslog over TLS): the same trust and
    /// client certificate, no ALPN.
    pub fn stream_config(&self) -> Arc<rustls::ClientConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols.clear();
        Arc::new(config)
    }

    /// A connector with these settings for hyper-util's legacy client.
    pub fn connector(&self) -> HttpsConnector {
        let mut http = HttpConnector::new();
        // Requests are small and answered at once: without this, Nagle's algorithm holds a
        // request's last segment until the previous one is acknowledged (40 ms with delayed ACKs).
        http.set_nodelay(true);
        // The https connector wraps the plain one, which must then accept `https://` URLs.
        http.enforce_http(false);
        HttpsConnector::from((http, self.config.clone()))
    }
}

/// The operating system's trust roots, read once per process; empty when there are none.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        // Unreadable files and unparsable certificates are skipped: the operator's own CA file
        // may be all that is needed.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// What an `https://` server that hung up before answering most likely did. In TLS 1.3 a
/// server checks the client's certificate after the client thinks the handshake is done; many
/// then just hang up, and the client sees its request fail (a reset, a broken pipe, an answer
/// that never came) or, when it reads first, the end of the stream.
pub const CLOSED_WITHOUT_ANSWER: &str = "the server closed the tls connection without answering: if it requires a \
     client certificate, it refused ours or none is configured";

/// A TLS failure somewhere in `err` or what it wraps, in words for an operator and an agent (no
/// certificate content); `None` when the failure is not TLS (refused, no route, DNS).
pub fn handshake_failure(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // rustls reports a connection closed without `close_notify` as this kind (a plain
            // socket reports an end of stream as zero bytes read, never as an error). In TLS
            // 1.3 a server checks the client's certificate after the client thinks the
            // handshake is done, and many servers then just hang up.
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return Some(CLOSED_WITHOUT_ANSWER.to_owned());
            }
            // I/O errors carry rustls' error as their payload, which `source()` skips.
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn StdError + 'static) = inner;
                if let Some(found) = handshake_failure(inner) {
                    return Some(found);
                }
            }
        }
        next = e.source();
    }
    None
}

fn describe(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            let why = match cert {
                CertificateError::UnknownIssuer => "is not signed by a trusted ca".to_owned(),
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "does not name the host of the url".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired".to_owned(),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "is not valid yet".to_owned()
                }
                CertificateError::Revoked => "has been revoked".to_owned(),
                other => format!("was refused ({other:?})"),
            };
            format!("the server's certificate {why}")
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!("the server refused the handshake ({alert:?}): it may require a client certificate it trusts"),
        other => format!("tls handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_alone_is_enough_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let tls = ClientTls::load(Some(&ca_path), None).unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let _connector = tls.connector();

        let missing = dir.path().join("missing.pem");
        let err = ClientTls::load(Some(&missing), None).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_client_certificate_must_match_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["agent".to_owned()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["agent".to_owned()]).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = write("ca.pem", one.cert.pem());
        let cert = write("cert.pem", one.cert.pem());
        let key = write("key.pem", one.signing_key.serialize_pem());
        let other_key = write("other.pem", two.signing_key.serialize_pem());
        let tls = ClientTls::load(Some(&ca), Some((&cert, &key))).unwrap();
        assert!(format!("{tls:?}").contains("client_certificate: true"));
        let err = ClientTls::load(Some(&ca), Some((&cert, &other_key))).unwrap_err().to_string();
        assert!(err.contains("cert.pem") && err.contains("other.pem"), "{err}");
    }

    #[test]
    fn handshake_failures_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let found = handshake_failure(&wrapped).unwrap();
        assert_eq!(found, "the server's certificate is not signed by a trusted ca");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(handshake_failure(&refused).is_none());
        let hung_up = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed connection");
        assert!(handshake_failure(&std::io::Error::other(hung_up)).unwrap().contains("client certificate"));
    }
}
