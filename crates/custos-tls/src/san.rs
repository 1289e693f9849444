//! The URI subject alternative names of an X.509 certificate, and the SPIFFE ID among them.
//!
//! A client certificate names its workload in a URI SAN (`spiffe://trust.domain/path`, the
//! SPIFFE X.509-SVID). rustls verifies the chain but does not hand out the names, so this file
//! reads them with a small DER reader of its own, walking only the path that leads to them:
//!
//! ```text
//! Certificate ─► tbsCertificate ─► [3] extensions ─► Extension 2.5.29.17 ─► OCTET STRING
//!     ─► GeneralNames ─► [6] uniformResourceIdentifier (IA5String)
//! ```
//!
//! The input comes from a peer: every length is checked against what is left, indefinite and
//! non-minimal lengths are refused, the certificate, the number of extensions and of names are
//! bounded, and the walk never recurses (its depth is the fixed path above). Errors are fixed
//! text: no byte of the certificate is ever repeated.

use crate::TlsError;

/// Largest certificate read. Real client certificates are a few KiB.
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// Most extensions looked at in one certificate.
const MAX_EXTENSIONS: usize = 64;
/// Most general names looked at in one SAN extension.
const MAX_NAMES: usize = 256;

/// `SEQUENCE`, constructed.
const SEQUENCE: u8 = 0x30;
/// `OBJECT IDENTIFIER`.
const OID: u8 = 0x06;
/// `BOOLEAN`.
const BOOLEAN: u8 = 0x01;
/// `OCTET STRING`.
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT`: the extensions of a v3 `tbsCertificate`.
const EXTENSIONS: u8 = 0xa3;
/// `[6] IMPLICIT IA5String`: a `uniformResourceIdentifier` general name.
const URI_NAME: u8 = 0x86;
/// The content octets of OID 2.5.29.17 (`id-ce-subjectAltName`).
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

fn malformed(reason: &'static str) -> TlsError {
    TlsError::Certificate { reason }
}

/// One DER element: its tag byte and its content octets.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads DER elements one after the other from a slice, never past its end.
#[derive(Debug)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take_byte(&mut self) -> Result<u8, TlsError> {
        let (&first, rest) = self.rest.split_first().ok_or(malformed("truncated"))?;
        self.rest = rest;
        Ok(first)
    }

    /// The next element. Refuses multi-byte tags (none occurs on the path walked), indefinite
    /// lengths, lengths that are not minimal (DER), and lengths past the end of the input.
    fn element(&mut self) -> Result<Element<'a>, TlsError> {
        let tag = self.take_byte()?;
        if tag & 0x1f == 0x1f {
            return Err(malformed("a multi-byte tag"));
        }
        let first = self.take_byte()?;
        let len = match first {
            0x80 => return Err(malformed("an indefinite length")),
            short if short < 0x80 => usize::from(short),
            long => {
                let count = usize::from(long & 0x7f);
                // Three length bytes reach 16 MiB, far past MAX_CERTIFICATE_BYTES.
                if count > 3 {
                    return Err(malformed("a length too large"));
                }
                let mut len = 0usize;
                for _ in 0..count {
                    len = (len << 8) | usize::from(self.take_byte()?);
                }
                let minimal_bytes = if len < 0x80 { 0 } else { (usize::BITS - len.leading_zeros()).div_ceil(8) };
                if usize::try_from(minimal_bytes).ok() != Some(count) {
                    return Err(malformed("a length that is not minimally encoded"));
                }
                len
            }
        };
        let (content, rest) = self.rest.split_at_checked(len).ok_or(malformed("a length past the end of the input"))?;
        self.rest = rest;
        Ok(Element { tag, content })
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], TlsError> {
        let element = self.element()?;
        if element.tag != tag {
            return Err(malformed(what));
        }
        Ok(element.content)
    }

    /// Fails when anything is left: DER has no trailing bytes.
    fn finish(&self, what: &'static str) -> Result<(), TlsError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(what))
        }
    }
}

/// Every `uniformResourceIdentifier` in the certificate's subject alternative names, in order;
/// empty when it has no SAN extension or no URI in it.
pub fn uri_names(certificate: &[u8]) -> Result<Vec<String>, TlsError> {
    if certificate.len() > MAX_CERTIFICATE_BYTES {
        return Err(malformed("the certificate is larger than 64 KiB"));
    }
    let mut outer = Reader::new(certificate);
    let body = outer.expect(SEQUENCE, "the certificate is not a sequence")?;
    outer.finish("bytes after the certificate")?;
    let tbs = Reader::new(body).expect(SEQUENCE, "no tbsCertificate")?;
    let Some(extensions) = extensions(tbs)? else {
        return Ok(Vec::new());
    };
    let Some(names) = subject_alt_name(extensions)? else {
        return Ok(Vec::new());
    };
    uris(names)
}

/// The SPIFFE ID of an X.509-SVID: the one URI SAN whose scheme is `spiffe`. `None` when there
/// is none; an error when there are several, since the certificate would then name more than
/// one workload and picking one would be a guess. The ID is returned as written: checking it
/// against the SPIFFE ID rules is the caller's business.
pub fn spiffe_id(certificate: &[u8]) -> Result<Option<String>, TlsError> {
    let mut found = uri_names(certificate)?
        .into_iter()
        .filter(|uri| uri.split_once(':').is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("spiffe")));
    let first = found.next();
    if found.next().is_some() {
        return Err(malformed("the certificate holds more than one spiffe id"));
    }
    Ok(first)
}

/// The content of the `[3]` extensions of a `tbsCertificate` (a `SEQUENCE OF Extension`), if any.
fn extensions(tbs: &[u8]) -> Result<Option<&[u8]>, TlsError> {
    let mut fields = Reader::new(tbs);
    let mut found = None;
    // version, serial, signature, issuer, validity, subject, key, two optional unique ids and the
    // extensions: a tbsCertificate has at most ten fields.
    for _ in 0..10 {
        if fields.is_empty() {
            break;
        }
        let field = fields.element()?;
        if field.tag == EXTENSIONS {
            if found.is_some() {
                return Err(malformed("two extension lists"));
            }
            let mut explicit = Reader::new(field.content);
            found = Some(explicit.expect(SEQUENCE, "the extensions are not a sequence")?);
            explicit.finish("bytes after the extensions")?;
        }
    }
    fields.finish("too many fields in the tbsCertificate")?;
    Ok(found)
}

/// The `GeneralNames` of the subject alternative name extension, if there is one.
fn subject_alt_name(extensions: &[u8]) -> Result<Option<&[u8]>, TlsError> {
    let mut list = Reader::new(extensions);
    let mut found = None;
    for _ in 0..MAX_EXTENSIONS {
        if list.is_empty() {
            break;
        }
        let mut extension = Reader::new(list.expect(SEQUENCE, "an extension is not a sequence")?);
        let id = extension.expect(OID, "an extension has no identifier")?;
        let mut value = extension.element()?;
        if value.tag == BOOLEAN {
            value = extension.element()?; // `critical`
        }
        if value.tag != OCTET_STRING {
            return Err(malformed("an extension value is not an octet string"));
        }
        extension.finish("bytes after an extension value")?;
        if id != SUBJECT_ALT_NAME {
            continue;
        }
        // RFC 5280 §4.2: a certificate must not include more than one instance of an extension.
        if found.is_some() {
            return Err(malformed("two subject alternative name extensions"));
        }
        let mut inner = Reader::new(value.content);
        found = Some(inner.expect(SEQUENCE, "the subject alternative names are not a sequence")?);
        inner.finish("bytes after the subject alternative names")?;
    }
    list.finish("too many extensions")?;
    Ok(found)
}

/// The `[6]` names of a `GeneralNames`, which must be IA5 (ASCII) text.
fn uris(names: &[u8]) -> Result<Vec<String>, TlsError> {
    let mut list = Reader::new(names);
    let mut uris = Vec::new();
    for _ in 0..MAX_NAMES {
        if list.is_empty() {
            break;
        }
        let name = list.element()?;
        if name.tag != URI_NAME {
            continue;
        }
        if !name.content.is_ascii() {
            return Err(malformed("a uri name is not ascii"));
        }
        let uri = std::str::from_utf8(name.content).map_err(|_| malformed("a uri name is not ascii"))?;
        uris.push(uri.to_owned());
    }
    list.finish("too many subject alternative names")?;
    Ok(uris)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn certificate(sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().unwrap())
    }

    fn dns(text: &str) -> SanType {
        SanType::DnsName(text.try_into().unwrap())
    }

    #[test]
    fn one_uri() {
        let der = certificate(vec![uri("spiffe://corp.example/agent/billing")]);
        assert_eq!(uri_names(&der).unwrap(), ["spiffe://corp.example/agent/billing"]);
        assert_eq!(spiffe_id(&der).unwrap().as_deref(), Some("spiffe://corp.example/agent/billing"));
    }

    #[test]
    fn several_uris_among_other_names() {
        let der = certificate(vec![
            dns("agent.example"),
            uri("https://agent.example/x"),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
            uri("spiffe://corp.example/agent/ops"),
        ]);
        assert_eq!(uri_names(&der).unwrap(), ["https://agent.example/x", "spiffe://corp.example/agent/ops"]);
        assert_eq!(spiffe_id(&der).unwrap().as_deref(), Some("spiffe://corp.example/agent/ops"));
    }

    #[test]
    fn two_spiffe_ids_are_ambiguous() {
        let der = certificate(vec![uri("spiffe://corp.example/a"), uri("SPIFFE://corp.example/b")]);
        assert_eq!(uri_names(&der).unwrap().len(), 2);
        let err = spiffe_id(&der).unwrap_err().to_string();
        assert!(err.contains("more than one spiffe id") && !err.contains("corp.example"), "{err}");
    }

    #[test]
    fn no_san_or_dns_only() {
        let der = certificate(Vec::new());
        assert!(uri_names(&der).unwrap().is_empty());
        assert_eq!(spiffe_id(&der).unwrap(), None);
        let der = certificate(vec![dns("localhost"), dns("agent.example")]);
        assert!(uri_names(&der).unwrap().is_empty());
        assert_eq!(spiffe_id(&der).unwrap(), None);
    }

    #[test]
    fn lengths_are_checked() {
        // Indefinite length.
        assert!(uri_names(&[0x30, 0x80, 0x00, 0x00]).is_err());
        // Past the end.
        assert!(uri_names(&[0x30, 0x05, 0x30, 0x00]).is_err());
        assert!(uri_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Not minimal: 0x81 0x05 says 5 in two bytes.
        assert!(uri_names(&[0x30, 0x81, 0x02, 0x30, 0x00]).is_err());
        // Trailing bytes, empty input, multi-byte tag.
        assert!(uri_names(&[0x30, 0x02, 0x30, 0x00, 0x00]).is_err());
        assert!(uri_names(&[]).is_err());
        assert!(uri_names(&[0x3f, 0x01, 0x00]).is_err());
        // Too large.
        assert!(uri_names(&vec![0u8; MAX_CERTIFICATE_BYTES + 1]).is_err());
    }

    #[test]
    fn deep_or_wide_input_is_bounded() {
        // A tbsCertificate of a thousand empty sequences: more fields than a certificate has.
        let mut tbs = Vec::new();
        for _ in 0..1000 {
            tbs.extend_from_slice(&[0x30, 0x00]);
        }
        let der = wrap(0x30, &wrap(0x30, &tbs));
        assert!(uri_names(&der).is_err());
        // Sequences nested as deep as the length allows: the walk does not descend into them.
        let mut nested = vec![0x30, 0x00];
        for _ in 0..2000 {
            nested = wrap(0x30, &nested);
        }
        assert!(uri_names(&nested).unwrap().is_empty());
    }

    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend_from_slice(&[0x81, len as u8]);
        } else if len < 0x10000 {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        } else {
            out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    #[test]
    fn truncated_and_flipped_certificates_never_panic() {
        let der = certificate(vec![dns("localhost"), uri("spiffe://corp.example/agent/billing")]);
        for len in 0..der.len() {
            let cut = der.get(..len).unwrap();
            assert!(uri_names(cut).is_err(), "a certificate cut at {len} bytes is not a certificate");
            let _ = spiffe_id(cut);
        }
        for i in 0..der.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let _ = uri_names(&bad);
                let _ = spiffe_id(&bad);
            }
        }
    }
}
