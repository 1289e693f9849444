//! The gateway's signing keys and the short-lived tokens it mints with them.
//!
//! Instead of handing an upstream's long-lived secret to anyone, the gateway can mint a token
//! for one agent, one audience (the upstream) and one scope, valid for minutes, signed with a
//! key whose public half it publishes as a JWKS. Private keys are PKCS#8 documents, sealed
//! with the master key by the caller before they are stored.

use std::fmt;
use std::str::FromStr;

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::error::SecretsError;

/// Bytes of a P-256 coordinate, and of an Ed25519 public key.
const COORD_LEN: usize = 32;

/// A signature algorithm for minted tokens (the JOSE `alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037): small, fast, deterministic. The default choice.
    EdDSA,
    /// ECDSA on P-256 with SHA-256, for verifiers that do not support EdDSA.
    ES256,
}

impl Algorithm {
    /// The JOSE name: `EdDSA` or `ES256`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = SecretsError;

    /// The JOSE name, exactly (JOSE names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            _ => Err(SecretsError::UnknownAlgorithm { name: s.to_owned() }),
        }
    }
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A private signing key. Its `Debug` shows the algorithm and kid only.
pub struct SigningKey {
    alg: Algorithm,
    pair: Pair,
    /// The RFC 7638 thumbprint, computed once: it goes in every token header.
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key, and its PKCS#8 document (to seal with the master key and store).
    pub fn generate(alg: Algorithm) -> Result<(SigningKey, Zeroizing<Vec<u8>>), SecretsError> {
        let rng = SystemRandom::new();
        let doc = match alg {
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
        }
        .map_err(|_| SecretsError::Random)?;
        let der = Zeroizing::new(doc.as_ref().to_vec());
        let key = SigningKey::from_pkcs8(alg, &der)?;
        Ok((key, der))
    }

    /// The key in a PKCS#8 document (as [`SigningKey::generate`] returns it).
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<SigningKey, SecretsError> {
        let bad = |_| SecretsError::BadSigningKey { alg: alg.as_str() };
        let pair = match alg {
            Algorithm::EdDSA => Pair::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(bad)?),
            Algorithm::ES256 => Pair::P256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                    .map_err(bad)?,
            ),
        };
        let mut key = SigningKey { alg, pair, kid: String::new() };
        key.kid = thumbprint(&key.public_members().ok_or(SecretsError::BadSigningKey { alg: alg.as_str() })?);
        Ok(key)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id: its RFC 7638 JWK thumbprint (SHA-256, base64url), so the same key always
    /// has the same kid wherever it is loaded.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, with `kid`, `alg` and `"use": "sig"`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match self.public_members() {
            Some(PublicMembers::Okp { x }) => json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
            Some(PublicMembers::Ec { x, y }) => json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            // from_pkcs8 checked the public key's shape.
            None => json!({}),
        };
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".to_owned(), Value::from(self.kid.as_str()));
            members.insert("alg".to_owned(), Value::from(self.alg.as_str()));
            members.insert("use".to_owned(), Value::from("sig"));
        }
        jwk
    }

    /// Signs `claims` as a compact JWS: header `{"alg", "kid", "typ": "JWT"}`, base64url
    /// without padding; an ES256 signature is the 64-byte `r || s` JOSE wants.
    pub fn sign_jwt(&self, claims: &Value) -> Result<String, SecretsError> {
        let failed = || SecretsError::Sign { kid: self.kid.clone() };
        let header = json!({ "alg": self.alg.as_str(), "typ": "JWT", "kid": self.kid });
        let header = serde_json::to_vec(&header).map_err(|_| failed())?;
        let claims = serde_json::to_vec(claims).map_err(|_| failed())?;
        let mut token = BASE64_URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        BASE64_URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = match &self.pair {
            Pair::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            Pair::P256(pair) => {
                pair.sign(&SystemRandom::new(), token.as_bytes()).map_err(|_| failed())?.as_ref().to_vec()
            }
        };
        token.push('.');
        BASE64_URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Mints a token for `req`: `iss`, `sub`, `aud`, `scope`, a random `jti`, `iat` = `nbf` =
    /// `now_secs`, `exp` = `now_secs + ttl_secs`, `run` when given, and `act` when the agent
    /// acts for someone (RFC 8693: the outermost `act` is the party closest to the agent, each
    /// nested `act` the one before it, the human innermost).
    pub fn mint(&self, req: &MintRequest<'_>) -> Result<Minted, SecretsError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| SecretsError::Random)?;
        let jti = BASE64_URL_SAFE_NO_PAD.encode(id);
        let issued_at = req.now_secs;
        let expires_at = req.now_secs.saturating_add(req.ttl_secs);

        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(req.issuer));
        claims.insert("sub".to_owned(), Value::from(req.subject));
        claims.insert("aud".to_owned(), Value::from(req.audience));
        claims.insert("scope".to_owned(), Value::from(req.scope));
        claims.insert("jti".to_owned(), Value::from(jti.as_str()));
        claims.insert("iat".to_owned(), Value::from(issued_at));
        claims.insert("nbf".to_owned(), Value::from(issued_at));
        claims.insert("exp".to_owned(), Value::from(expires_at));
        if let Some(run) = req.run {
            claims.insert("run".to_owned(), Value::from(run));
        }
        if let Some(act) = actor_chain(req.principal) {
            claims.insert("act".to_owned(), act);
        }
        let token = self.sign_jwt(&Value::Object(claims))?;
        Ok(Minted { token, jti, kid: self.kid.clone(), issued_at, expires_at })
    }

    fn public_members(&self) -> Option<PublicMembers> {
        match &self.pair {
            Pair::Ed25519(pair) => {
                let x = pair.public_key().as_ref();
                (x.len() == COORD_LEN).then(|| PublicMembers::Okp { x: BASE64_URL_SAFE_NO_PAD.encode(x) })
            }
            Pair::P256(pair) => {
                let (x, y) = split_point(pair.public_key().as_ref())?;
                Some(PublicMembers::Ec { x: BASE64_URL_SAFE_NO_PAD.encode(x), y: BASE64_URL_SAFE_NO_PAD.encode(y) })
            }
        }
    }
}

/// The members of a public JWK that its thumbprint covers, base64url-encoded.
enum PublicMembers {
    Okp { x: String },
    Ec { x: String, y: String },
}

/// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, with no
/// whitespace. The values are base64url, so they need no JSON escaping.
fn thumbprint(members: &PublicMembers) -> String {
    let canonical = match members {
        PublicMembers::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        PublicMembers::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
    };
    BASE64_URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
}

/// `x` and `y` of an uncompressed P-256 point, `0x04 || x || y`.
pub(crate) fn split_point(point: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, xy) = point.split_first()?;
    if tag != 0x04 || xy.len() != 2 * COORD_LEN {
        return None;
    }
    Some(xy.split_at(COORD_LEN))
}

/// The RFC 8693 `act` claim for `principal` (the human first, the party closest to the agent
/// last), or `None` when the agent acts for no one.
fn actor_chain(principal: &[String]) -> Option<Value> {
    principal.iter().fold(None, |inner, party| {
        let mut act = Map::new();
        act.insert("sub".to_owned(), Value::from(party.as_str()));
        if let Some(inner) = inner {
            act.insert("act".to_owned(), inner);
        }
        Some(Value::Object(act))
    })
}

/// What to mint a token for.
#[derive(Debug, Clone, Copy)]
pub struct MintRequest<'a> {
    /// `iss`: the gateway.
    pub issuer: &'a str,
    /// `sub`: the agent.
    pub subject: &'a str,
    /// `aud`: the upstream that will accept it.
    pub audience: &'a str,
    /// `scope`: space-separated.
    pub scope: &'a str,
    /// Who the agent acts for: the human first, then each actor down to the agent.
    pub principal: &'a [String],
    /// Lifetime in seconds.
    pub ttl_secs: u64,
    /// The run the token belongs to, when there is one.
    pub run: Option<&'a str>,
    /// The current time, in seconds since the Unix epoch.
    pub now_secs: u64,
}

/// A minted token. Its `Debug` does not print the token: it is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`: 128 random bits, base64url.
    pub jti: String,
    /// The kid of the key that signed it.
    pub kid: String,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenError;
    use crate::jwks::{jwks_document, verify};

    const ALGS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];
    const NOW: u64 = 1_700_000_000;

    fn request<'a>(principal: &'a [String]) -> MintRequest<'a> {
        MintRequest {
            issuer: "https://custos.example",
            subject: "agent-7",
            audience: "github",
            scope: "repo:read issues:write",
            principal,
            ttl_secs: 300,
            run: Some("run-1"),
            now_secs: NOW,
        }
    }

    fn claims_of(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&BASE64_URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in ALGS {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
            assert_eq!(alg.to_string(), alg.as_str());
        }
        let err = "es256".parse::<Algorithm>().unwrap_err();
        assert_eq!(err.to_string(), "unknown signing algorithm `es256`; expected `EdDSA` or `ES256`");
    }

    #[test]
    fn mint_then_verify() {
        for alg in ALGS {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let jwks = jwks_document(&[&key]);
            let minted = key.mint(&request(&[])).unwrap();
            assert_eq!(minted.kid, key.kid());
            assert_eq!((minted.issued_at, minted.expires_at), (NOW, NOW + 300));

            let claims = verify(&minted.token, &jwks, "github", "https://custos.example", NOW + 10, 0).unwrap();
            assert_eq!(claims["sub"], "agent-7");
            assert_eq!(claims["aud"], "github");
            assert_eq!(claims["scope"], "repo:read issues:write");
            assert_eq!(claims["jti"], minted.jti.as_str());
            assert_eq!(claims["iat"], NOW);
            assert_eq!(claims["nbf"], NOW);
            assert_eq!(claims["exp"], NOW + 300);
            assert_eq!(claims["run"], "run-1");
            assert!(claims.get("act").is_none());

            let header: Value = serde_json::from_slice(
                &BASE64_URL_SAFE_NO_PAD.decode(minted.token.split('.').next().unwrap()).unwrap(),
            )
            .unwrap();
            assert_eq!(header, json!({ "alg": alg.as_str(), "typ": "JWT", "kid": key.kid() }));
            let signature = BASE64_URL_SAFE_NO_PAD.decode(minted.token.split('.').nth(2).unwrap()).unwrap();
            assert_eq!(signature.len(), 64, "{alg}");
        }
    }

    #[test]
    fn verify_refuses_another_audience_or_issuer() {
        for alg in ALGS {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let jwks = jwks_document(&[&key]);
            let token = key.mint(&request(&[])).unwrap().token;
            let err = verify(&token, &jwks, "slack", "https://custos.example", NOW, 0).unwrap_err();
            assert_eq!(err, TokenError::WrongAudience { expected: "slack".into() });
            assert_eq!(err.to_string(), "token is not for audience `slack`");
            let err = verify(&token, &jwks, "github", "https://other.example", NOW, 0).unwrap_err();
            assert_eq!(err.reason(), "wrong_issuer");
        }
    }

    #[test]
    fn verify_refuses_an_expired_or_early_token() {
        for alg in ALGS {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let jwks = jwks_document(&[&key]);
            let token = key.mint(&request(&[])).unwrap().token;
            let at = |now, leeway| verify(&token, &jwks, "github", "https://custos.example", now, leeway);
            assert_eq!(at(NOW + 300, 0).unwrap_err(), TokenError::Expired);
            assert!(at(NOW + 300, 30).is_ok(), "within leeway");
            assert_eq!(at(NOW + 331, 30).unwrap_err(), TokenError::Expired);
            assert_eq!(at(NOW - 31, 30).unwrap_err(), TokenError::NotYetValid);
            assert!(at(NOW - 30, 30).is_ok(), "within leeway");
        }
    }

    #[test]
    fn verify_refuses_a_tampered_token() {
        for alg in ALGS {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let jwks = jwks_document(&[&key]);
            let token = key.mint(&request(&[])).unwrap().token;
            let parts: Vec<&str> = token.split('.').collect();
            let mut claims = claims_of(&token);
            claims["scope"] = json!("admin");
            let forged = BASE64_URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
            let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
            let err = verify(&tampered, &jwks, "github", "https://custos.example", NOW, 0).unwrap_err();
            assert_eq!(err, TokenError::BadSignature);

            // One changed character of the signature.
            let mut sig = parts[2].to_owned().into_bytes();
            sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
            let tampered = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).unwrap());
            assert!(verify(&tampered, &jwks, "github", "https://custos.example", NOW, 0).is_err());
        }
    }

    #[test]
    fn verify_refuses_a_key_set_without_the_kid() {
        for alg in ALGS {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let (other, _) = SigningKey::generate(alg).unwrap();
            let token = key.mint(&request(&[])).unwrap().token;
            let err =
                verify(&token, &jwks_document(&[&other]), "github", "https://custos.example", NOW, 0).unwrap_err();
            assert_eq!(err, TokenError::UnknownKey { kid: key.kid().to_owned() });
            // With both keys it verifies.
            assert!(verify(&token, &jwks_document(&[&other, &key]), "github", "https://custos.example", NOW, 0).is_ok());
        }
    }

    #[test]
    fn kid_survives_a_pkcs8_round_trip() {
        for alg in ALGS {
            let (key, der) = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_pkcs8(alg, &der).unwrap();
            assert_eq!(key.kid(), again.kid());
            assert_eq!(key.public_jwk(), again.public_jwk());
            assert_eq!(key.kid().len(), 43, "base64url of 32 bytes");
            // A token from the reloaded key verifies against the original's JWKS.
            let token = again.mint(&request(&[])).unwrap().token;
            assert!(verify(&token, &jwks_document(&[&key]), "github", "https://custos.example", NOW, 0).is_ok());
        }
        let (_, ed) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let err = SigningKey::from_pkcs8(Algorithm::ES256, &ed).unwrap_err();
        assert_eq!(err.to_string(), "not a valid pkcs#8 ES256 private key");
        assert!(SigningKey::from_pkcs8(Algorithm::EdDSA, b"junk").is_err());
    }

    #[test]
    fn public_jwks_have_the_expected_members() {
        let (ed, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwk = ed.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], ed.kid());
        assert_eq!(BASE64_URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(jwk.as_object().unwrap().len(), 6);

        let (ec, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = ec.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(BASE64_URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(jwk.as_object().unwrap().len(), 7);

        assert_eq!(jwks_document(&[&ed, &ec]), json!({ "keys": [ed.public_jwk(), ec.public_jwk()] }));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // The example key of RFC 7638 section 3.1 and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let canonical = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        assert_eq!(BASE64_URL_SAFE_NO_PAD.encode(digest), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");

        // Ours hashes the same way over the OKP / EC members.
        let (key, _) = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = key.public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        assert_eq!(key.kid(), BASE64_URL_SAFE_NO_PAD.encode(digest));
    }

    #[test]
    fn the_actor_chain_nests_from_the_agent_outward() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let principal = vec!["alice@example.com".to_owned(), "planner-agent".to_owned(), "sub-agent".to_owned()];
        let token = key.mint(&request(&principal)).unwrap().token;
        let claims = claims_of(&token);
        assert_eq!(
            claims["act"],
            json!({
                "sub": "sub-agent",
                "act": { "sub": "planner-agent", "act": { "sub": "alice@example.com" } }
            })
        );
        let just_human = vec!["alice@example.com".to_owned()];
        let claims = claims_of(&key.mint(&request(&just_human)).unwrap().token);
        assert_eq!(claims["act"], json!({ "sub": "alice@example.com" }));
    }

    #[test]
    fn jtis_differ_and_debug_hides_the_token() {
        let (key, _) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let a = key.mint(&request(&[])).unwrap();
        let b = key.mint(&request(&[])).unwrap();
        assert_ne!(a.jti, b.jti);
        assert_eq!(BASE64_URL_SAFE_NO_PAD.decode(&a.jti).unwrap().len(), 16);
        let debug = format!("{a:?}");
        assert!(!debug.contains(&a.token) && debug.contains("[redacted]"), "{debug}");
        assert!(!format!("{key:?}").contains("pair"));
    }
}
