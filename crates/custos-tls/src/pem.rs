//! Reading PEM files: certificate chains, one private key, and trust roots.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Largest PEM file read: a chain or a CA bundle is far smaller.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |e: std::io::Error| TlsError::Read { path: path.to_owned(), reason: e.to_string() };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > MAX_PEM_BYTES {
        return Err(TlsError::Invalid { path: path.to_owned(), reason: format!("larger than {MAX_PEM_BYTES} bytes") });
    }
    std::fs::read(path).map_err(read_error)
}

/// The certificates of `path`, leaf first; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { path: path.to_owned(), reason: format!("bad pem: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid { path: path.to_owned(), reason: "no certificate in the file".into() });
    }
    Ok(certs)
}

/// The one private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    // The error of a failed parse may quote the input; it is not passed on.
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| TlsError::Invalid { path: path.to_owned(), reason: "no readable private key in the file".into() })
}

/// A root store holding the certificates of `path` (a CA bundle).
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Invalid { path: path.to_owned(), reason: format!("not a usable ca: {e}") })?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_a_generated_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = write(&dir, "cert.pem", &generated.cert.pem());
        let key = write(&dir, "key.pem", &generated.signing_key.serialize_pem());
        assert_eq!(certificates(&cert).unwrap().len(), 1);
        assert!(private_key(&key).is_ok());
        assert_eq!(roots(&cert).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_name_the_file_and_keep_key_material_out() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(&dir, "empty.pem", "just text\n");
        let err = certificates(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no certificate"), "{err}");
        let err = private_key(&empty).unwrap_err().to_string();
        assert!(err.contains("no readable private key"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(certificates(&missing).unwrap_err().to_string().contains("cannot read"));
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LW1hdGVyaWFs!!\n-----END PRIVATE KEY-----\n";
        let broken = write(&dir, "broken.pem", secret);
        let err = private_key(&broken).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}
