//! SPIFFE IDs (`spiffe://trust-domain/path`), as found in a client certificate's URI SAN.
//!
//! The rules are those of the SPIFFE ID standard: the scheme is `spiffe` in lowercase; the trust
//! domain is lowercase letters, digits, `.`, `-` and `_` (so no port, no userinfo); the path is
//! made of `/`-separated segments of letters, digits, `.`, `-` and `_`, none empty, none `.` or
//! `..`, with no trailing `/`; there is no query and no fragment; the whole ID is at most
//! 2048 bytes. TLS itself is the caller's concern: this file only reads the string.

use std::fmt;

use crate::error::{one_line, AuthError};

/// Longest SPIFFE ID accepted, in bytes.
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;
/// Longest trust domain accepted, in bytes.
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME: &str = "spiffe://";

/// A valid SPIFFE ID.
///
/// INVARIANT: `trust_domain` and `path` satisfy the rules in the module doc, so
/// `spiffe://{trust_domain}{path}` is the canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    /// Empty, or `/` followed by segments: the ID of a workload in the trust domain.
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID. Errors never repeat the input.
    pub fn parse(id: &str) -> Result<SpiffeId, AuthError> {
        let invalid = |reason| AuthError::InvalidSpiffeId { reason };
        if id.is_empty() {
            return Err(invalid("it is empty"));
        }
        if id.len() > MAX_SPIFFE_ID_BYTES {
            return Err(invalid("it is longer than 2048 bytes"));
        }
        let rest = id.strip_prefix(SCHEME).ok_or(invalid("the scheme is not `spiffe://`"))?;
        if rest.contains('?') {
            return Err(invalid("a query is not allowed"));
        }
        if rest.contains('#') {
            return Err(invalid("a fragment is not allowed"));
        }
        let (trust_domain, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        validate_path(path)?;
        Ok(SpiffeId { trust_domain: trust_domain.to_owned(), path: path.to_owned() })
    }

    /// The trust domain, e.g. `corp.example`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, e.g. `/agent/billing`; empty for the trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The agent id this SPIFFE ID maps to, if it is a workload of `trust_domain`: the whole
    /// canonical ID (`spiffe://corp.example/agent/billing`), so configured agent ids can be
    /// SPIFFE IDs as they are.
    pub fn agent_id(&self, trust_domain: &str) -> Result<String, AuthError> {
        if self.trust_domain != trust_domain {
            return Err(AuthError::ForeignTrustDomain { expected: one_line(trust_domain) });
        }
        if self.path.is_empty() {
            return Err(AuthError::InvalidSpiffeId { reason: "a trust domain id names no workload" });
        }
        Ok(self.to_string())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

/// Parses `uri` (a client certificate's URI SAN) and maps it to an agent id in `trust_domain`.
pub fn agent_id_from_spiffe(uri: &str, trust_domain: &str) -> Result<String, AuthError> {
    SpiffeId::parse(uri)?.agent_id(trust_domain)
}

fn validate_trust_domain(trust_domain: &str) -> Result<(), AuthError> {
    let invalid = |reason| AuthError::InvalidSpiffeId { reason };
    if trust_domain.is_empty() {
        return Err(invalid("the trust domain is empty"));
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(invalid("the trust domain is longer than 255 bytes"));
    }
    if trust_domain.contains('@') {
        return Err(invalid("userinfo is not allowed"));
    }
    if trust_domain.contains(':') {
        return Err(invalid("a port is not allowed"));
    }
    if !trust_domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(invalid("the trust domain may hold only lowercase letters, digits, `.`, `-` and `_`"));
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), AuthError> {
    let invalid = |reason| AuthError::InvalidSpiffeId { reason };
    let Some(segments) = path.strip_prefix('/') else {
        return Ok(()); // empty: the trust domain's own ID
    };
    for segment in segments.split('/') {
        if segment.is_empty() {
            return Err(invalid("a path segment is empty"));
        }
        if segment == "." || segment == ".." {
            return Err(invalid("a path segment is `.` or `..`"));
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
            return Err(invalid("a path segment may hold only letters, digits, `.`, `-` and `_`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        let cases = [
            ("spiffe://corp.example/agent/billing", "corp.example", "/agent/billing"),
            ("spiffe://corp.example", "corp.example", ""),
            ("spiffe://a-b_c.1/x", "a-b_c.1", "/x"),
            ("spiffe://td/Upper.Case-ok_1/..a/a..", "td", "/Upper.Case-ok_1/..a/a.."),
        ];
        for (text, trust_domain, path) in cases {
            let id = SpiffeId::parse(text).unwrap();
            assert_eq!(id.trust_domain(), trust_domain, "{text}");
            assert_eq!(id.path(), path, "{text}");
            assert_eq!(id.to_string(), text);
        }
        let longest = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_BYTES - 12));
        assert!(SpiffeId::parse(&longest).is_ok());
    }

    #[test]
    fn invalid_ids() {
        let too_long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_BYTES - 11));
        let long_domain = format!("spiffe://{}/a", "a".repeat(256));
        let cases: [(&str, &str); 22] = [
            ("", "empty"),
            ("spiffe:/td/a", "scheme"),
            ("SPIFFE://td/a", "scheme"),
            ("https://td/a", "scheme"),
            ("spiffe://", "trust domain is empty"),
            ("spiffe:///a", "trust domain is empty"),
            ("spiffe://Corp.example/a", "lowercase"),
            ("spiffe://td:8443/a", "port"),
            ("spiffe://user@td/a", "userinfo"),
            ("spiffe://td/a?x=1", "query"),
            ("spiffe://td/a#frag", "fragment"),
            ("spiffe://td/", "segment is empty"),
            ("spiffe://td/a/", "segment is empty"),
            ("spiffe://td//a", "segment is empty"),
            ("spiffe://td/a/./b", "`.` or `..`"),
            ("spiffe://td/a/..", "`.` or `..`"),
            ("spiffe://td/a%20b", "letters, digits"),
            ("spiffe://td/a b", "letters, digits"),
            ("spiffe://td/é", "letters, digits"),
            ("spiffe://t d/a", "lowercase"),
            (&too_long, "2048"),
            (&long_domain, "255"),
        ];
        for (text, expected) in cases {
            let err = SpiffeId::parse(text).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(matches!(err, AuthError::InvalidSpiffeId { .. }));
        }
    }

    #[test]
    fn maps_to_an_agent_id_in_the_trust_domain() {
        assert_eq!(
            agent_id_from_spiffe("spiffe://corp.example/agent/billing", "corp.example").unwrap(),
            "spiffe://corp.example/agent/billing"
        );
        assert_eq!(
            agent_id_from_spiffe("spiffe://other.example/agent/billing", "corp.example").unwrap_err(),
            AuthError::ForeignTrustDomain { expected: "corp.example".into() }
        );
        assert!(matches!(
            agent_id_from_spiffe("spiffe://corp.example", "corp.example"),
            Err(AuthError::InvalidSpiffeId { .. })
        ));
    }
}
