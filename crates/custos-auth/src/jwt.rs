//! JWT bearer tokens, verified against a JWKS document the caller has read or fetched.
//!
//! Order of checks, each failing closed: size and shape; the header's `alg` against the
//! allow-list (so `none` and every `HS*` stop here, before any key is touched); the `kid`
//! against the key set; the `alg` against that key's type, curve and own `alg`; the signature
//! (`jsonwebtoken`, pure-Rust backend); then the claims with our own clock and leeway: `iss`,
//! `aud`, `exp`, `nbf`, `iat`, the agent claim, the principal chain, scopes.
//!
//! Algorithm confusion cannot happen: HMAC is refused in the configuration, `oct` keys are
//! dropped from the key set, and a key is only ever used with the algorithm family of its `kty`.
//!
//! The key set can be replaced while tokens are being verified ([`JwtVerifier::replace_keys`],
//! for a JWKS the caller refetches): a new document is read and checked whole, then swapped in
//! at once, so a verification sees either the old set or the new one; a document that cannot be
//! used leaves the old set in place.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::crypto::{rust_crypto, CryptoProvider};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{one_line, AuthError};

/// Algorithms allowed when the configuration names none.
pub const DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
/// Clock skew allowed when the configuration says nothing, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Largest clock skew accepted, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Longest token looked at, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys taken from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 100;
/// Deepest `act` nesting followed (RFC 8693 delegation chain).
pub const MAX_ACT_DEPTH: usize = 8;
/// Shortest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// How tokens are checked. Build with [`JwtConfig::new`] and change what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    /// The one issuer (`iss`) whose tokens are accepted.
    pub issuer: String,
    /// This gateway's resource identifier (RFC 8707); `aud` must contain it.
    pub audience: String,
    /// Signature algorithms accepted; never `none` or `HS*`.
    pub allowed_algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    /// The claim that names the agent: `sub` for client-credentials tokens, `client_id` when
    /// `sub` is the human (RFC 9068, RFC 8693 delegation).
    pub agent_claim: String,
    /// A claim that names the human directly. Without it the human is `sub` when the token
    /// carries an `act` chain, and there is none otherwise.
    pub principal_claim: Option<String>,
}

impl JwtConfig {
    /// The defaults: RS256, ES256 and EdDSA; 60 s leeway; the agent in `sub`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> JwtConfig {
        JwtConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            allowed_algorithms: DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            agent_claim: "sub".to_owned(),
            principal_claim: None,
        }
    }
}

/// What a verified token says about who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The agent, from the configured agent claim.
    pub agent_id: String,
    /// The human first, then each actor from the earliest to the current one (RFC 8693 `act`,
    /// innermost first); empty when the token names no human.
    pub principal_chain: Vec<String>,
    /// Granted scopes, from `scope` (space-separated) and `scp` (array or string), in order,
    /// without duplicates.
    pub scopes: Vec<String>,
    /// The token's `jti`, if any, for replay checks and the audit record.
    pub jti: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: i64,
}

impl VerifiedToken {
    /// `Ok` if every scope in `required` was granted, else [`AuthError::InsufficientScope`]
    /// naming all of `required` (RFC 6750 §3.1: the scope needed to access the resource).
    pub fn require_scopes(&self, required: &[&str]) -> Result<(), AuthError> {
        if required.iter().all(|r| self.scopes.iter().any(|s| s == r)) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope { required: required.iter().map(|r| (*r).to_owned()).collect() })
        }
    }
}

/// A key from the JWKS that was left out, and why; for a start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its `kid`, if it had one (key ids in a key set are public).
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: &'static str,
}

/// One usable key.
struct KeyEntry {
    key: DecodingKey,
    /// The algorithms this key may verify: those allowed, of its family, fitting its curve and
    /// its own `alg` if it names one.
    algorithms: Vec<Algorithm>,
}

/// The usable keys of one JWKS document, by `kid`, and those left out.
struct KeySet {
    keys: BTreeMap<String, KeyEntry>,
    skipped: Vec<SkippedKey>,
}

/// Verifies bearer JWTs for one issuer and audience against one key set, which can be replaced.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    agent_claim: String,
    principal_claim: Option<String>,
    /// `None` until a key set is loaded. Replaced whole; readers clone the `Arc` and verify
    /// without holding the lock.
    keys: RwLock<Option<Arc<KeySet>>>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("agent_claim", &self.agent_claim)
            .field("principal_claim", &self.principal_claim)
            .field("key_ids", &self.key_ids())
            .field("skipped", &self.skipped_keys())
            .finish()
    }
}

impl JwtVerifier {
    /// Validates `config` and reads the usable keys of `jwks_json` (an RFC 7517 JWK Set).
    ///
    /// Keys are left out (see [`JwtVerifier::skipped_keys`]) when they are not for signing, are
    /// symmetric (`oct`), have no `kid`, fit no allowed algorithm, or are RSA keys under 2048
    /// bits. Two keys with one `kid`, or no usable key at all, is an error.
    pub fn new(config: JwtConfig, jwks_json: &str) -> Result<JwtVerifier, AuthError> {
        let verifier = JwtVerifier::without_keys(config)?;
        verifier.replace_keys(jwks_json)?;
        Ok(verifier)
    }

    /// Validates `config` without a key set yet: tokens are refused with
    /// [`AuthError::KeysUnavailable`] until [`JwtVerifier::replace_keys`] succeeds (for a JWKS
    /// that is fetched, and may not be reachable at start-up).
    pub fn without_keys(config: JwtConfig) -> Result<JwtVerifier, AuthError> {
        let algorithms = validate_algorithms(&config.allowed_algorithms)?;
        if config.issuer.trim().is_empty() {
            return Err(AuthError::EmptyConfigValue { field: "issuer" });
        }
        if config.audience.trim().is_empty() {
            return Err(AuthError::EmptyConfigValue { field: "audience" });
        }
        if config.agent_claim.trim().is_empty() {
            return Err(AuthError::EmptyConfigValue { field: "agent_claim" });
        }
        if config.principal_claim.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(AuthError::EmptyConfigValue { field: "principal_claim" });
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthError::LeewayTooLarge { secs: config.leeway_secs, max: MAX_LEEWAY_SECS });
        }
        let leeway = i64::try_from(config.leeway_secs).unwrap_or(0);
        // `jsonwebtoken` picks its backend from its features and panics when it cannot tell
        // (both backends on, through feature unification). Naming ours removes that case; if
        // another part of the process installed one first, that one stays.
        if CryptoProvider::try_get_default().is_none() {
            let _already_installed = CryptoProvider::install_default(&rust_crypto::DEFAULT_PROVIDER);
        }
        Ok(JwtVerifier {
            issuer: config.issuer,
            audience: config.audience,
            algorithms,
            leeway,
            agent_claim: config.agent_claim,
            principal_claim: config.principal_claim,
            keys: RwLock::new(None),
        })
    }

    /// Reads `jwks_json` as [`JwtVerifier::new`] does and makes it the key set, whole; returns
    /// the keys left out. On error the key set in use (if any) stays.
    pub fn replace_keys(&self, jwks_json: &str) -> Result<Vec<SkippedKey>, AuthError> {
        let (keys, skipped) = read_jwks(jwks_json, &self.algorithms)?;
        let set = Arc::new(KeySet { keys, skipped: skipped.clone() });
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(set);
        Ok(skipped)
    }

    /// The key set in use, if one is loaded.
    fn key_set(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether a key set is loaded.
    pub fn has_keys(&self) -> bool {
        self.key_set().is_some()
    }

    /// The key ids in use, in order.
    pub fn key_ids(&self) -> Vec<String> {
        self.key_set().map(|set| set.keys.keys().cloned().collect()).unwrap_or_default()
    }

    /// The keys of the JWKS in use that were left out, and why.
    pub fn skipped_keys(&self) -> Vec<SkippedKey> {
        self.key_set().map(|set| set.skipped.clone()).unwrap_or_default()
    }

    /// Whether `token` names, with an allowed algorithm, a key id the loaded key set lacks: the
    /// sign of a provider that rotated its keys, for a caller that can fetch the set again.
    /// `false` when no set is loaded or the token is malformed (nothing to learn from a fetch).
    pub fn names_unknown_key(&self, token: &str) -> bool {
        let Ok(header) = read_header(token) else { return false };
        let allowed = Algorithm::from_str(&header.alg).is_ok_and(|alg| self.algorithms.contains(&alg));
        match (allowed, header.kid, self.key_set()) {
            (true, Some(kid), Some(set)) => !set.keys.contains_key(&kid),
            _ => false,
        }
    }

    /// Verifies `token` at the current time.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| AuthError::ClockUnavailable)?;
        let now = i64::try_from(now.as_secs()).map_err(|_| AuthError::ClockUnavailable)?;
        self.verify_at(token, now)
    }

    /// Verifies `token` as of `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<VerifiedToken, AuthError> {
        let header = read_header(token)?;
        let alg = Algorithm::from_str(&header.alg)
            .ok()
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let keys = self.key_set().ok_or(AuthError::KeysUnavailable)?;
        let entry = keys.keys.get(&kid).ok_or(AuthError::UnknownKeyId)?;
        if !entry.algorithms.contains(&alg) {
            return Err(AuthError::KeyAlgorithmMismatch);
        }
        let claims = verify_signature(token, &entry.key, alg)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<VerifiedToken, AuthError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }

        let expires_at = numeric_date(claims, "exp")?.ok_or_else(|| AuthError::MissingClaim { claim: "exp".into() })?;
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        let not_before = now.saturating_add(self.leeway);
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > not_before) {
            return Err(AuthError::NotYetValid);
        }
        if numeric_date(claims, "iat")?.is_some_and(|iat| iat > not_before) {
            return Err(AuthError::NotYetValid);
        }

        let agent_id = match claims.get(&self.agent_claim) {
            None | Some(Value::Null) => return Err(AuthError::MissingAgentClaim { claim: self.agent_claim.clone() }),
            Some(value) => non_empty_string(value, &self.agent_claim)?,
        };
        let principal_chain = self.principal_chain(claims)?;
        let scopes = scopes(claims)?;
        let jti = match claims.get("jti") {
            None | Some(Value::Null) => None,
            Some(value) => Some(non_empty_string(value, "jti")?),
        };
        Ok(VerifiedToken { agent_id, principal_chain, scopes, jti, expires_at })
    }

    /// The human, then the actors from the earliest to the current one.
    fn principal_chain(&self, claims: &Map<String, Value>) -> Result<Vec<String>, AuthError> {
        let mut actors = Vec::new();
        let mut next = claims.get("act");
        while let Some(act) = next {
            if actors.len() == MAX_ACT_DEPTH {
                return Err(AuthError::InvalidClaim { claim: "act".into(), expected: "a chain at most 8 deep" });
            }
            let act = act.as_object().ok_or(AuthError::InvalidClaim { claim: "act".into(), expected: "an object" })?;
            let actor = act.get("sub").or_else(|| act.get("client_id")).ok_or(AuthError::InvalidClaim {
                claim: "act".into(),
                expected: "an object with `sub` or `client_id`",
            })?;
            actors.push(non_empty_string(actor, "act")?);
            next = act.get("act");
        }
        // The outermost `act` is the current actor; the innermost the earliest (RFC 8693 §4.1).
        actors.reverse();

        let human = match &self.principal_claim {
            Some(claim) => match claims.get(claim) {
                None | Some(Value::Null) => return Err(AuthError::MissingPrincipalClaim { claim: claim.clone() }),
                Some(value) => Some(non_empty_string(value, claim)?),
            },
            None if actors.is_empty() => None,
            None => match claims.get("sub") {
                None | Some(Value::Null) => return Err(AuthError::MissingClaim { claim: "sub".into() }),
                Some(value) => Some(non_empty_string(value, "sub")?),
            },
        };
        Ok(human.into_iter().chain(actors).collect())
    }
}

/// Refuses `none` and HMAC outright, and names nothing it does not know.
fn validate_algorithms(names: &[String]) -> Result<Vec<Algorithm>, AuthError> {
    if names.is_empty() {
        return Err(AuthError::EmptyConfigValue { field: "allowed_algorithms" });
    }
    let mut algorithms = Vec::new();
    for name in names {
        if name.trim().eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgorithmRefused {
                alg: one_line(name),
                reason: "unsigned tokens are never accepted",
            });
        }
        if name.trim().get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs")) {
            return Err(AuthError::AlgorithmRefused {
                alg: one_line(name),
                reason: "shared-secret (hmac) algorithms are not accepted; use a public-key algorithm",
            });
        }
        let alg = Algorithm::from_str(name).map_err(|_| AuthError::UnknownAlgorithm { alg: one_line(name) })?;
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(AuthError::AlgorithmRefused {
                alg: one_line(name),
                reason: "shared-secret (hmac) algorithms are not accepted; use a public-key algorithm",
            });
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

type Keys = (BTreeMap<String, KeyEntry>, Vec<SkippedKey>);

fn read_jwks(jwks_json: &str, allowed: &[Algorithm]) -> Result<Keys, AuthError> {
    let invalid = |reason: &str| AuthError::InvalidJwks { reason: reason.to_owned() };
    if jwks_json.len() > MAX_JWKS_BYTES {
        return Err(invalid("the document is larger than 1 MiB"));
    }
    let doc: Value = serde_json::from_str(jwks_json).map_err(|_| invalid("the document is not json"))?;
    let entries =
        doc.get("keys").and_then(Value::as_array).ok_or_else(|| invalid("the document has no `keys` array"))?;
    if entries.len() > MAX_JWKS_KEYS {
        return Err(invalid("the document has more than 100 keys"));
    }
    let mut keys = BTreeMap::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
        match read_key(entry, allowed) {
            Ok(key) => {
                let Some(kid) = kid else {
                    skipped.push(SkippedKey { kid, reason: "the key has no `kid`" });
                    continue;
                };
                if keys.contains_key(&kid) {
                    return Err(AuthError::InvalidJwks {
                        reason: format!("key id `{}` appears twice", one_line(&kid)),
                    });
                }
                keys.insert(kid, key);
            }
            Err(reason) => skipped.push(SkippedKey { kid, reason }),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::NoUsableKeys);
    }
    Ok((keys, skipped))
}

/// One key of the set, or why it is left out.
fn read_key(entry: &Value, allowed: &[Algorithm]) -> Result<KeyEntry, &'static str> {
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err("symmetric (`oct`) keys are never used");
    }
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "the key is not a valid jwk")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("the key is not for signatures (`use`)"),
    }
    // What the key's type and curve allow, before the allow-list and the key's own `alg`.
    let fits: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| "the rsa modulus is not base64url")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err("the rsa key is shorter than 2048 bits");
            }
            AlgorithmFamily::Rsa.algorithms()
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("the elliptic curve is not supported"),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err("the octet key pair curve is not supported"),
        },
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (`oct`) keys are never used"),
        _ => match entry.get("kty").and_then(Value::as_str) {
            Some("RSA" | "EC" | "OKP") => return Err("the key's parameters are missing or malformed"),
            _ => return Err("the key type is not supported"),
        },
    };
    let own = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => return Err("the key's `alg` is not a signature algorithm"),
        Some(named) => Some(Algorithm::try_from(named).map_err(|_| "the key's `alg` is not a signature algorithm")?),
    };
    if own.is_some_and(|own| !fits.contains(&own)) {
        return Err("the key's `alg` does not fit its type or curve");
    }
    let algorithms: Vec<Algorithm> =
        fits.iter().copied().filter(|alg| allowed.contains(alg) && own.is_none_or(|own| own == *alg)).collect();
    if algorithms.is_empty() {
        return Err("the key fits no allowed algorithm");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "the key material is malformed")?;
    Ok(KeyEntry { key, algorithms })
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The token's header, read before any key is chosen: only to pick `alg` and `kid`.
fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    let malformed = |reason| AuthError::Malformed { reason };
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("the token is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("the token is not three dot-separated parts"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(malformed("the token has an empty part"));
    }
    if signature.is_empty() {
        // An unsigned token; its `alg` is `none` or a lie either way.
        return Err(AuthError::AlgorithmNotAllowed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed("the token header is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed("the token header is not a json object with `alg`"))
}

/// The signature check, by `jsonwebtoken` with only `alg` pinned: claims are ours to check.
fn verify_signature(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Map<String, Value>, AuthError> {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    match jsonwebtoken::decode::<Value>(token, key, &validation) {
        Ok(data) => match data.claims {
            Value::Object(claims) => Ok(claims),
            _ => Err(AuthError::Malformed { reason: "the token payload is not a json object" }),
        },
        Err(err) => Err(match err.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => AuthError::KeyAlgorithmMismatch,
            _ => AuthError::Malformed { reason: "the token is not a well-formed jws" },
        }),
    }
}

/// An RFC 7519 NumericDate claim: a JSON number of seconds (fractions dropped).
fn numeric_date(claims: &Map<String, Value>, claim: &str) -> Result<Option<i64>, AuthError> {
    let invalid = || AuthError::InvalidClaim { claim: claim.to_owned(), expected: "a number of seconds" };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            // A float within range: fractions are dropped (the cast cannot saturate here).
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

fn non_empty_string(value: &Value, claim: &str) -> Result<String, AuthError> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(AuthError::InvalidClaim { claim: claim.to_owned(), expected: "a non-empty string" }),
    }
}

/// `scope` (RFC 8693 §4.2, RFC 9068: space-separated) and `scp` (array, or string in some
/// issuers), merged in order without duplicates.
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, AuthError> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    for claim in ["scope", "scp"] {
        let invalid = || AuthError::InvalidClaim {
            claim: claim.to_owned(),
            expected: "a space-separated string or an array of strings",
        };
        match claims.get(claim) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => s.split_whitespace().for_each(&mut push),
            Some(Value::Array(items)) => {
                for item in items {
                    item.as_str().ok_or_else(invalid)?.split_whitespace().for_each(&mut push);
                }
            }
            Some(_) => return Err(invalid()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
