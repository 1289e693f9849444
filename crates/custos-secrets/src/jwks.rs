//! Publishing the signing keys as a JWKS, and verifying a token against one.
//!
//! The verifier is the one the gateway uses for its own tokens and the one tests use to check
//! what was minted; it accepts exactly the two algorithms the gateway signs with, and checks
//! the signature before it reads a single claim.

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::error::TokenError;
use crate::signing::{split_point, Algorithm, SigningKey};

/// Tokens longer than this are refused before any decoding: ours are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The JWKS document of `keys`: `{"keys": [<public JWK>, ...]}`.
pub fn jwks_document(keys: &[&SigningKey]) -> Value {
    let keys: Vec<Value> = keys.iter().map(|k| k.public_jwk()).collect();
    let mut doc = Map::new();
    doc.insert("keys".to_owned(), Value::Array(keys));
    Value::Object(doc)
}

/// Verifies a compact JWS `token` against the key set `jwks` and returns its claims.
///
/// Checks, in order: the length; the header (`alg` `EdDSA` or `ES256`, a `kid`, no `crit`);
/// a key with that `kid` whose type and curve (and `alg`, when the key names one) fit the
/// header's `alg`; the signature; then the claims: `iss` equals `issuer`, `aud` is `audience`
/// or an array containing it, `exp` is required and `now_secs` must be before
/// `exp + leeway_secs`, and `nbf`, when present, at most `leeway_secs` ahead.
pub fn verify(
    token: &str,
    jwks: &Value,
    audience: &str,
    issuer: &str,
    now_secs: u64,
    leeway_secs: u64,
) -> Result<Value, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { len: token.len(), limit: MAX_TOKEN_LEN });
    }
    let malformed = |reason| TokenError::Malformed { reason };
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };

    let header = decode_object(header_b64).ok_or(malformed("the header is not base64url json"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(malformed("the header has no `alg`"))?;
    let alg: Algorithm =
        alg_name.parse().map_err(|_| TokenError::UnsupportedAlgorithm { alg: alg_name.chars().take(64).collect() })?;
    // RFC 7515: a header extension marked critical that we do not understand must fail.
    if header.contains_key("crit") {
        return Err(malformed("the header has a `crit` extension"));
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or(malformed("the header has no `kid`"))?;
    let jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| keys.iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .ok_or_else(|| TokenError::UnknownKey { kid: kid.chars().take(128).collect() })?;
    let mismatch = || TokenError::KeyMismatch { kid: kid.to_owned(), alg: alg.as_str() };
    let public = public_key(jwk, alg).ok_or_else(mismatch)?;

    let signature =
        BASE64_URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| malformed("the signature is not base64url"))?;
    let signed = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(malformed("truncated"))?;
    let verifier: &dyn signature::VerificationAlgorithm = match alg {
        Algorithm::EdDSA => &signature::ED25519,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
    };
    UnparsedPublicKey::new(verifier, &public)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;

    let claims = decode_object(payload_b64).ok_or(malformed("the payload is not base64url json"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(TokenError::WrongIssuer { expected: issuer.to_owned() });
    }
    let for_us = match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !for_us {
        return Err(TokenError::WrongAudience { expected: audience.to_owned() });
    }
    let exp = claims.get("exp").ok_or(malformed("the token has no `exp`"))?;
    let exp = numeric_date(exp).ok_or(malformed("`exp` is not a number"))?;
    if now_secs >= exp.saturating_add(leeway_secs) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(malformed("`nbf` is not a number"))?;
        if now_secs.saturating_add(leeway_secs) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(Value::Object(claims))
}

/// A base64url (no padding) JSON object.
fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = BASE64_URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A NumericDate (RFC 7519): seconds, possibly fractional; the fraction is dropped.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let f = value.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
        // In range by the filter; `as` saturates at u64::MAX for the absurdly large.
        Some(f as u64)
    })
}

/// The public key bytes ring wants for `alg` from `jwk`, or `None` when the key is not one
/// `alg` can use.
fn public_key(jwk: &Value, alg: Algorithm) -> Option<Vec<u8>> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("alg").is_some_and(|a| a != alg.as_str()) {
        return None;
    }
    let coordinate = |name: &str| {
        let bytes = BASE64_URL_SAFE_NO_PAD.decode(member(name)?).ok()?;
        (bytes.len() == 32).then_some(bytes)
    };
    match alg {
        Algorithm::EdDSA => {
            if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
                return None;
            }
            coordinate("x")
        }
        Algorithm::ES256 => {
            if member("kty") != Some("EC") || member("crv") != Some("P-256") {
                return None;
            }
            let mut point = vec![0x04];
            point.extend_from_slice(&coordinate("x")?);
            point.extend_from_slice(&coordinate("y")?);
            // Checks the shape the signing side produces.
            split_point(&point)?;
            Some(point)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn token_with_header(key: &SigningKey, header: &Value) -> String {
        // Signs by hand so the header can be anything.
        let claims = json!({ "iss": "i", "aud": ["x", "a"], "exp": NOW + 60 });
        let real = key.sign_jwt(&claims).unwrap();
        let mut parts = real.split('.');
        let (_, payload) = (parts.next(), parts.next().unwrap());
        format!("{}.{}.{}", BASE64_URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()), payload, "AAAA")
    }

    #[test]
    fn an_audience_array_is_accepted() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let token = key.sign_jwt(&json!({ "iss": "i", "aud": ["x", "a"], "exp": NOW + 60 })).unwrap();
        let jwks = jwks_document(&[&key]);
        assert!(verify(&token, &jwks, "a", "i", NOW, 0).is_ok());
        assert_eq!(verify(&token, &jwks, "b", "i", NOW, 0).unwrap_err().reason(), "wrong_audience");
    }

    #[test]
    fn exp_is_required() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let token = key.sign_jwt(&json!({ "iss": "i", "aud": "a" })).unwrap();
        let err = verify(&token, &jwks_document(&[&key]), "a", "i", NOW, 0).unwrap_err();
        assert_eq!(err.to_string(), "malformed token: the token has no `exp`");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwks = jwks_document(&[&key]);
        for token in ["", "a.b", "a.b.c.d", "!!!.e30.AAAA", "e30.e30.AAAA", "bnVsbA.e30.AAAA"] {
            let err = verify(token, &jwks, "a", "i", NOW, 0).unwrap_err();
            assert_eq!(err.reason(), "malformed", "{token}: {err}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify(&long, &jwks, "a", "i", NOW, 0).unwrap_err().reason(), "too_long");
    }

    #[test]
    fn the_header_must_fit_the_key() {
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let (ec, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwks = jwks_document(&[&ed, &ec]);
        let check = |header: Value| verify(&token_with_header(&ed, &header), &jwks, "a", "i", NOW, 0).unwrap_err();

        assert_eq!(check(json!({ "alg": "none", "kid": ed.kid() })).reason(), "unsupported_algorithm");
        assert_eq!(check(json!({ "alg": "HS256", "kid": ed.kid() })).reason(), "unsupported_algorithm");
        // An EdDSA key cannot verify an ES256 token, nor the other way round.
        assert_eq!(check(json!({ "alg": "ES256", "kid": ed.kid() })).reason(), "key_mismatch");
        assert_eq!(check(json!({ "alg": "EdDSA", "kid": ec.kid() })).reason(), "key_mismatch");
        assert_eq!(check(json!({ "alg": "EdDSA", "kid": ed.kid(), "crit": ["b64"] })).reason(), "malformed");
        assert_eq!(check(json!({ "alg": "EdDSA" })).reason(), "malformed");
        assert_eq!(check(json!({ "alg": "EdDSA", "kid": "nope" })), TokenError::UnknownKey { kid: "nope".into() });
        assert_eq!(check(json!({ "alg": "EdDSA", "kid": ed.kid() })), TokenError::BadSignature);
    }
}
