//! What an ID token must say beyond what every JWT the gateway verifies must say.
//!
//! [`custos_auth::JwtVerifier`] has already checked, failing closed: the algorithm against the
//! allow-list, the key, the signature, `iss`, `aud` (contains the client id), `exp`, `nbf` and
//! `iat` with the leeway, and `sub` (a non-empty string). Here, on the payload whose signature
//! that check covered (OpenID Connect Core §3.1.3.7): `iat` is present, `azp` names this client
//! when present and is present when `aud` names several, `nonce` is the sign-in's, then the
//! identity and group claims the console reads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::{OidcError, SignedIn};

/// Most groups read from one token; more is refused rather than cut (a cut list could drop
/// the group that matters, or keep one that should not).
pub const MAX_GROUPS: usize = 1_000;

/// The claims of a token whose signature has been verified.
pub(crate) fn verified_payload(token: &str) -> Result<Map<String, Value>, OidcError> {
    let malformed = |reason| OidcError::Malformed { reason };
    let payload = token.split('.').nth(1).ok_or(malformed("the token is not three dot-separated parts"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed("the token payload is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(malformed("the token payload is not a json object")),
    }
}

/// How one client reads its ID tokens.
pub(crate) struct Rules<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub identity_claim: &'a str,
    pub groups_claim: &'a str,
}

/// The checks of this module, in order, then what the console keeps. `subject` and
/// `expires_at` come from the verifier.
pub(crate) fn check(
    claims: &Map<String, Value>,
    rules: &Rules<'_>,
    nonce: Option<&str>,
    subject: String,
    expires_at: i64,
) -> Result<SignedIn, OidcError> {
    if claims.get("iat").is_none_or(Value::is_null) {
        return Err(OidcError::MissingClaim { claim: "iat".into() });
    }
    check_authorized_party(claims, rules.client_id)?;
    if let Some(expected) = nonce {
        let got = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
        // Not a secret once the browser has it, but compared like one: cheap, and no timing to
        // reason about.
        if got.is_empty() || !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(OidcError::WrongNonce);
        }
    }
    let name = match claims.get(rules.identity_claim) {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => return Err(OidcError::MissingIdentity { claim: rules.identity_claim.to_owned() }),
    };
    if rules.identity_claim == "email" {
        match claims.get("email_verified") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => {}
            // Some providers send the flag as a string.
            Some(Value::String(s)) if s == "true" => {}
            Some(_) => return Err(OidcError::EmailNotVerified),
        }
    }
    let groups = groups(claims, rules.groups_claim)?;
    let expires_ms = expires_at.saturating_mul(1000);
    Ok(SignedIn { issuer: rules.issuer.to_owned(), subject, name, groups, expires_ms })
}

/// `azp`: when present it must be this client; when `aud` names more than this client it must
/// be present (a token minted for another party that merely lists this client is not ours).
fn check_authorized_party(claims: &Map<String, Value>, client_id: &str) -> Result<(), OidcError> {
    let several = matches!(claims.get("aud"), Some(Value::Array(auds)) if auds.len() > 1);
    match claims.get("azp") {
        None | Some(Value::Null) if !several => Ok(()),
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        _ => Err(OidcError::WrongAuthorizedParty),
    }
}

/// The groups claim: an array of strings, or one string; absent is no group. Anything else is
/// refused: a claim the console cannot read is not taken for "no groups".
fn groups(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, OidcError> {
    let invalid = || OidcError::InvalidClaim { claim: claim.to_owned(), expected: "a string or an array of strings" };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![group.clone()]),
        Some(Value::Array(items)) => {
            if items.len() > MAX_GROUPS {
                return Err(OidcError::InvalidClaim { claim: claim.to_owned(), expected: "at most 1000 groups" });
            }
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let group = item.as_str().ok_or_else(invalid)?;
                if !out.iter().any(|g| g == group) {
                    out.push(group.to_owned());
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid()),
    }
}
