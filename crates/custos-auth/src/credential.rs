//! The credential in an `Authorization` header: an API key or a JWT, both sent as `Bearer`.
//!
//! API keys start with `cst_`; anything else is taken for a JWT and left to
//! [`JwtVerifier`](crate::JwtVerifier). Neither type's `Debug` shows the credential.

use std::fmt;

use zeroize::Zeroizing;

use crate::api_key::{ApiKey, API_KEY_PREFIX};
use crate::error::AuthError;

/// Longest `Authorization` header value looked at, in bytes; longer ones are malformed.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;

/// A credential taken from a request, not yet verified.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `Bearer cst_…`: check with [`KeyHasher::verify`](crate::KeyHasher::verify).
    ApiKey(ApiKey),
    /// Any other bearer token: check with [`JwtVerifier::verify`](crate::JwtVerifier::verify).
    Jwt(BearerToken),
}

impl Credential {
    /// Reads the value of the `Authorization` header (`None` when the request has none).
    ///
    /// The scheme is matched without regard to case (RFC 9110 §11.1); the token must be RFC 6750
    /// `b64token` characters. Errors: [`AuthError::MissingCredential`] for no or an empty header,
    /// [`AuthError::UnsupportedScheme`] for another scheme, [`AuthError::Malformed`] otherwise.
    pub fn from_authorization(header: Option<&str>) -> Result<Credential, AuthError> {
        let value = header.map(str::trim).filter(|v| !v.is_empty()).ok_or(AuthError::MissingCredential)?;
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(AuthError::Malformed { reason: "the authorization header is too long" });
        }
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::UnsupportedScheme);
        }
        let token = token.trim_start_matches(' ');
        if token.is_empty() {
            return Err(AuthError::Malformed { reason: "the bearer credential is empty" });
        }
        if !is_b64token(token) {
            return Err(AuthError::Malformed { reason: "the bearer credential has characters a token cannot have" });
        }
        if token.starts_with(API_KEY_PREFIX) {
            Ok(Credential::ApiKey(ApiKey::parse(token)?))
        } else {
            Ok(Credential::Jwt(BearerToken(Zeroizing::new(token.to_owned()))))
        }
    }
}

/// A bearer token as presented. Its `Debug` shows only its length.
#[derive(Clone)]
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// The token, to hand to the verifier. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(<redacted, {} bytes>)", self.0.len())
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_and_jwt_are_told_apart() {
        let key = ApiKey::generate().unwrap();
        let header = format!("Bearer {}", key.expose());
        match Credential::from_authorization(Some(&header)).unwrap() {
            Credential::ApiKey(parsed) => assert_eq!(parsed.expose(), key.expose()),
            other => panic!("expected an api key, got {other:?}"),
        }
        match Credential::from_authorization(Some("bearer  aaa.bbb.ccc")).unwrap() {
            Credential::Jwt(token) => assert_eq!(token.expose(), "aaa.bbb.ccc"),
            other => panic!("expected a jwt, got {other:?}"),
        }
    }

    #[test]
    fn missing_and_malformed_headers() {
        assert_eq!(Credential::from_authorization(None).unwrap_err(), AuthError::MissingCredential);
        assert_eq!(Credential::from_authorization(Some("  ")).unwrap_err(), AuthError::MissingCredential);
        assert_eq!(
            Credential::from_authorization(Some("Basic dXNlcjpwYXNz")).unwrap_err(),
            AuthError::UnsupportedScheme
        );
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\"b", "Bearer ===", "Bearer cst_short"] {
            let err = Credential::from_authorization(Some(bad)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed { .. }), "{bad}: {err:?}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert!(matches!(Credential::from_authorization(Some(&long)), Err(AuthError::Malformed { .. })));
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let credential = Credential::from_authorization(Some("Bearer secret-token-value")).unwrap();
        assert!(!format!("{credential:?}").contains("secret-token-value"));
    }
}
