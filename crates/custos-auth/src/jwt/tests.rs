//! Real keys (`tests/keys/`, made with openssl), real signatures, no mocks.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "https://gw.example/mcp";
const NOW: i64 = 1_750_000_000;

const RSA_PEM: &str = include_str!("../../tests/keys/rsa-2048.pem");
const P256_PEM: &str = include_str!("../../tests/keys/p256.pem");
const ED25519_PEM: &str = include_str!("../../tests/keys/ed25519.pem");
const P256_OTHER_PEM: &str = include_str!("../../tests/keys/p256-other.pem");

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// A signing key, its algorithm and its public JWK under `kid`.
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    signing: EncodingKey,
    jwk: Jwk,
}

impl TestKey {
    fn new(kid: &'static str, alg: Algorithm) -> TestKey {
        let pem = match alg {
            Algorithm::RS256 => RSA_PEM,
            Algorithm::ES256 => P256_PEM,
            Algorithm::EdDSA => ED25519_PEM,
            other => panic!("no test key for {other:?}"),
        };
        TestKey::from_pem(kid, alg, pem)
    }

    fn from_pem(kid: &'static str, alg: Algorithm, pem: &str) -> TestKey {
        let der = pem_to_der(pem);
        let signing = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(&der),
            AlgorithmFamily::Ec => EncodingKey::from_ec_der(&der),
            AlgorithmFamily::Ed => EncodingKey::from_ed_der(&der),
            AlgorithmFamily::Hmac => panic!("no hmac test keys"),
        };
        let mut jwk = Jwk::from_encoding_key(&signing, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        TestKey { kid, alg, signing, jwk }
    }

    fn mint(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        encode(&header, claims, &self.signing).unwrap()
    }

    fn jwk_json(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap()
    }
}

fn ec() -> TestKey {
    TestKey::new("ec-1", Algorithm::ES256)
}

fn ed() -> TestKey {
    TestKey::new("ed-1", Algorithm::EdDSA)
}

fn rsa() -> TestKey {
    TestKey::new("rsa-1", Algorithm::RS256)
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk_json()).collect::<Vec<_>>() }).to_string()
}

fn verifier(config: JwtConfig, keys: &[&TestKey]) -> JwtVerifier {
    JwtVerifier::new(config, &jwks(keys)).unwrap()
}

fn config() -> JwtConfig {
    JwtConfig::new(ISSUER, AUDIENCE)
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "billing-bot",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
        "jti": "token-1",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims.as_object_mut().unwrap().insert(key.to_owned(), value);
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// A JWS with the given header and payload JSON, and the given signature text.
fn raw_token(header: &Value, payload: &Value, signature: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{h}.{p}.{signature}")
}

#[test]
fn each_default_algorithm_verifies() {
    let (ec, ed, rsa) = (ec(), ed(), rsa());
    let v = verifier(config(), &[&ec, &ed, &rsa]);
    assert_eq!(v.key_ids(), ["ec-1", "ed-1", "rsa-1"]);
    for key in [&ec, &ed, &rsa] {
        let verified = v.verify_at(&key.mint(&claims()), NOW).unwrap();
        assert_eq!(verified.agent_id, "billing-bot", "{:?}", key.alg);
        assert_eq!(verified.principal_chain, Vec::<String>::new());
        assert_eq!(verified.jti.as_deref(), Some("token-1"));
        assert_eq!(verified.expires_at, NOW + 600);
    }
}

#[test]
fn valid_token_maps_agent_and_nested_act_chain() {
    let key = ec();
    let config = JwtConfig { agent_claim: "client_id".into(), ..config() };
    let v = verifier(config, &[&key]);
    // RFC 8693 §4.1: `sub` is the human; the outermost `act` is the current actor, the innermost
    // the earliest.
    let token = key.mint(&json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "https://other.example"],
        "exp": NOW + 600,
        "sub": "alice@example.com",
        "client_id": "billing-bot",
        "act": { "sub": "billing-bot", "act": { "sub": "planner-agent", "act": { "client_id": "ui-app" } } },
    }));
    let verified = v.verify_at(&token, NOW).unwrap();
    assert_eq!(verified.agent_id, "billing-bot");
    assert_eq!(verified.principal_chain, ["alice@example.com", "ui-app", "planner-agent", "billing-bot"]);
    assert_eq!(verified.jti, None);
}

#[test]
fn principal_from_a_configured_claim() {
    let key = ec();
    let config = JwtConfig { principal_claim: Some("on_behalf_of".into()), ..config() };
    let v = verifier(config, &[&key]);
    let token = key.mint(&with(claims(), "on_behalf_of", json!("bob@example.com")));
    assert_eq!(v.verify_at(&token, NOW).unwrap().principal_chain, ["bob@example.com"]);
    let token = key.mint(&with(with(claims(), "on_behalf_of", json!("bob")), "act", json!({ "sub": "agent-x" })));
    assert_eq!(v.verify_at(&token, NOW).unwrap().principal_chain, ["bob", "agent-x"]);
    let err = v.verify_at(&key.mint(&claims()), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingPrincipalClaim { claim: "on_behalf_of".into() });
}

#[test]
fn scopes_from_scope_and_scp() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let scopes = |c: Value| v.verify_at(&key.mint(&c), NOW).unwrap().scopes;
    assert_eq!(scopes(with(claims(), "scope", json!("tools:call  tools:list"))), ["tools:call", "tools:list"]);
    assert_eq!(scopes(with(claims(), "scp", json!(["tools:call", "admin"]))), ["tools:call", "admin"]);
    assert_eq!(scopes(with(claims(), "scp", json!("a b"))), ["a", "b"]);
    let both = with(with(claims(), "scope", json!("a b")), "scp", json!(["b", "c"]));
    assert_eq!(scopes(both), ["a", "b", "c"]);
    assert_eq!(scopes(claims()), Vec::<String>::new());

    let err = v.verify_at(&key.mint(&with(claims(), "scp", json!([1]))), NOW).unwrap_err();
    assert!(matches!(err, AuthError::InvalidClaim { ref claim, .. } if claim == "scp"), "{err:?}");
}

#[test]
fn require_scopes_gives_insufficient_scope() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let verified = v.verify_at(&key.mint(&with(claims(), "scope", json!("tools:list"))), NOW).unwrap();
    assert!(verified.require_scopes(&["tools:list"]).is_ok());
    let err = verified.require_scopes(&["tools:list", "tools:call"]).unwrap_err();
    assert_eq!(err, AuthError::InsufficientScope { required: vec!["tools:list".into(), "tools:call".into()] });
    assert_eq!(err.http_status(), 403);
}

#[test]
fn expired_token_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let token = key.mint(&with(claims(), "exp", json!(NOW - 61)));
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::Expired);
    // Exactly at exp + leeway the token is no longer valid (RFC 7519 §4.1.4: "before").
    let token = key.mint(&with(claims(), "exp", json!(NOW - 60)));
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::Expired);
}

#[test]
fn not_yet_valid_token_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let token = key.mint(&with(claims(), "nbf", json!(NOW + 61)));
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::NotYetValid);
    let token = key.mint(&with(claims(), "iat", json!(NOW + 3600)));
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::NotYetValid);
}

#[test]
fn skew_within_leeway_is_accepted() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let token = key.mint(&with(with(claims(), "exp", json!(NOW - 59)), "nbf", json!(NOW + 60)));
    assert!(v.verify_at(&token, NOW).is_ok());

    let strict = verifier(JwtConfig { leeway_secs: 0, ..config() }, &[&key]);
    assert_eq!(strict.verify_at(&token, NOW).unwrap_err(), AuthError::Expired);
    let token = key.mint(&with(claims(), "nbf", json!(NOW + 1)));
    assert_eq!(strict.verify_at(&token, NOW).unwrap_err(), AuthError::NotYetValid);
}

#[test]
fn exp_must_be_present_and_numeric() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let err = v.verify_at(&key.mint(&without(claims(), "exp")), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingClaim { claim: "exp".into() });
    let err = v.verify_at(&key.mint(&with(claims(), "exp", json!("tomorrow"))), NOW).unwrap_err();
    assert!(matches!(err, AuthError::InvalidClaim { ref claim, .. } if claim == "exp"), "{err:?}");
    let fractional = key.mint(&with(claims(), "exp", json!((NOW + 600) as f64 + 0.5)));
    assert_eq!(v.verify_at(&fractional, NOW).unwrap().expires_at, NOW + 600);
}

#[test]
fn real_clock_is_used_by_verify() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    assert!(v.verify(&key.mint(&with(claims(), "exp", json!(now + 600)))).is_ok());
    assert_eq!(v.verify(&key.mint(&with(claims(), "exp", json!(now - 600)))).unwrap_err(), AuthError::Expired);
}

#[test]
fn wrong_issuer_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    for iss in [json!("https://evil.example"), json!([ISSUER]), json!(null)] {
        let err = v.verify_at(&key.mint(&with(claims(), "iss", iss.clone())), NOW).unwrap_err();
        assert_eq!(err, AuthError::WrongIssuer, "{iss}");
    }
    assert_eq!(v.verify_at(&key.mint(&without(claims(), "iss")), NOW).unwrap_err(), AuthError::WrongIssuer);
}

#[test]
fn wrong_audience_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    for aud in [json!("https://gw.example"), json!(["https://other.example"]), json!([]), json!(7)] {
        let err = v.verify_at(&key.mint(&with(claims(), "aud", aud.clone())), NOW).unwrap_err();
        assert_eq!(err, AuthError::WrongAudience, "{aud}");
    }
    assert_eq!(v.verify_at(&key.mint(&without(claims(), "aud")), NOW).unwrap_err(), AuthError::WrongAudience);
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let stranger = TestKey::new("ec-2", Algorithm::ES256);
    assert_eq!(v.verify_at(&stranger.mint(&claims()), NOW).unwrap_err(), AuthError::UnknownKeyId);

    let mut header = Header::new(Algorithm::ES256);
    header.kid = None;
    let token = encode(&header, &claims(), &key.signing).unwrap();
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::MissingKeyId);
}

#[test]
fn alg_none_token_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "kid": "ec-1", "typ": "JWT" });
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = raw_token(&header, &claims(), signature);
            assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::AlgorithmNotAllowed, "{alg} {signature:?}");
        }
    }
}

#[test]
fn hs256_signed_with_public_key_bytes_is_refused() {
    let (ec, rsa) = (ec(), rsa());
    let v = verifier(config(), &[&ec, &rsa]);
    let ec_point = {
        let AlgorithmParameters::EllipticCurve(p) = &ec.jwk.algorithm else { panic!("not an ec jwk") };
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(&p.x).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(&p.y).unwrap());
        point
    };
    let rsa_modulus = {
        let AlgorithmParameters::RSA(p) = &rsa.jwk.algorithm else { panic!("not an rsa jwk") };
        URL_SAFE_NO_PAD.decode(&p.n).unwrap()
    };
    // What an attacker who read the public key set might use as the HMAC secret.
    let secrets: [(&str, Vec<u8>); 4] = [
        ("ec-1", ec_point),
        ("ec-1", ec.jwk_json().to_string().into_bytes()),
        ("rsa-1", rsa_modulus),
        ("rsa-1", jwks(&[&rsa]).into_bytes()),
    ];
    for (kid, secret) in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(kid.to_owned());
            let token = encode(&header, &claims(), &EncodingKey::from_secret(&secret).unwrap()).unwrap();
            assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::AlgorithmNotAllowed, "{kid} {alg:?}");
        }
    }
}

#[test]
fn symmetric_keys_in_the_key_set_are_never_used() {
    let key = ec();
    let secret = b"a shared secret that must never be trusted";
    let doc = json!({ "keys": [
        key.jwk_json(),
        { "kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret) },
    ]});
    let v = JwtVerifier::new(config(), &doc.to_string()).unwrap();
    assert_eq!(v.key_ids(), ["ec-1"]);
    assert_eq!(
        v.skipped_keys(),
        [SkippedKey { kid: Some("hmac-1".into()), reason: "symmetric (`oct`) keys are never used" }]
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac-1".into());
    let token = encode(&header, &claims(), &EncodingKey::from_secret(secret).unwrap()).unwrap();
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::AlgorithmNotAllowed);
}

#[test]
fn alg_must_fit_the_selected_key() {
    let (ec, rsa) = (ec(), rsa());
    let all = ["RS256", "PS256", "ES256", "EdDSA"].map(String::from).to_vec();
    let v = verifier(JwtConfig { allowed_algorithms: all, ..config() }, &[&ec, &rsa]);
    // An RS256 token whose kid points at the EC key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    let token = encode(&header, &claims(), &rsa.signing).unwrap();
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::KeyAlgorithmMismatch);
    // A PS256 token for an RSA key whose JWK says `alg: RS256`.
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa-1".into());
    let token = encode(&header, &claims(), &rsa.signing).unwrap();
    assert_eq!(v.verify_at(&token, NOW).unwrap_err(), AuthError::KeyAlgorithmMismatch);
    // An allowed algorithm that the key fits but the allow-list does not name.
    let only_ec = verifier(JwtConfig { allowed_algorithms: vec!["ES256".into()], ..config() }, &[&ec]);
    assert_eq!(only_ec.verify_at(&rsa.mint(&claims()), NOW).unwrap_err(), AuthError::AlgorithmNotAllowed);
}

#[test]
fn config_with_none_or_hmac_is_refused() {
    let doc = jwks(&[&ec()]);
    for alg in ["none", "NONE", "HS256", "HS384", "HS512", "hs256"] {
        let config = JwtConfig { allowed_algorithms: vec!["ES256".into(), alg.into()], ..config() };
        let err = JwtVerifier::new(config, &doc).unwrap_err();
        assert!(matches!(err, AuthError::AlgorithmRefused { .. }), "{alg}: {err:?}");
        assert!(err.to_string().contains(&format!("`{alg}`")), "{err}");
        assert_eq!(err.http_status(), 500);
    }
    let err = JwtVerifier::new(JwtConfig { allowed_algorithms: vec!["RS1".into()], ..config() }, &doc).unwrap_err();
    assert_eq!(err, AuthError::UnknownAlgorithm { alg: "RS1".into() });
    let err = JwtVerifier::new(JwtConfig { allowed_algorithms: vec![], ..config() }, &doc).unwrap_err();
    assert_eq!(err, AuthError::EmptyConfigValue { field: "allowed_algorithms" });
}

#[test]
fn other_config_errors() {
    let doc = jwks(&[&ec()]);
    let err = JwtVerifier::new(JwtConfig { leeway_secs: 301, ..config() }, &doc).unwrap_err();
    assert_eq!(err, AuthError::LeewayTooLarge { secs: 301, max: 300 });
    assert!(JwtVerifier::new(JwtConfig { leeway_secs: 300, ..config() }, &doc).is_ok());
    for (config, field) in [
        (JwtConfig { issuer: " ".into(), ..config() }, "issuer"),
        (JwtConfig { audience: String::new(), ..config() }, "audience"),
        (JwtConfig { agent_claim: String::new(), ..config() }, "agent_claim"),
        (JwtConfig { principal_claim: Some(String::new()), ..config() }, "principal_claim"),
    ] {
        assert_eq!(JwtVerifier::new(config, &doc).unwrap_err(), AuthError::EmptyConfigValue { field });
    }
}

#[test]
fn key_set_problems() {
    let key = ec();
    let invalid = |doc: &str| JwtVerifier::new(config(), doc).unwrap_err();
    assert!(matches!(invalid("not json"), AuthError::InvalidJwks { .. }));
    assert!(matches!(invalid("{}"), AuthError::InvalidJwks { .. }));
    assert_eq!(invalid(r#"{"keys": []}"#), AuthError::NoUsableKeys);
    let twice = json!({ "keys": [key.jwk_json(), key.jwk_json()] }).to_string();
    assert_eq!(invalid(&twice), AuthError::InvalidJwks { reason: "key id `ec-1` appears twice".into() });

    let mut no_kid = key.jwk_json();
    no_kid.as_object_mut().unwrap().remove("kid");
    let enc = with(with(rsa().jwk_json(), "use", json!("enc")), "kid", json!("rsa-enc"));
    let small_rsa = json!({ "kty": "RSA", "kid": "rsa-1024", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB" });
    let p521 = json!({ "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" });
    let garbage = json!({ "kty": "EC", "kid": "junk" });
    let unknown_kty = json!({ "kty": "X448", "kid": "okp-x448", "x": "AA" });
    let encryption_alg = with(with(rsa().jwk_json(), "alg", json!("RSA-OAEP")), "kid", json!("rsa-oaep"));
    let misfit = with(with(ed().jwk_json(), "alg", json!("ES256")), "kid", json!("misfit"));
    let doc =
        json!({ "keys": [key.jwk_json(), no_kid, enc, small_rsa, p521, garbage, unknown_kty, encryption_alg, misfit] });
    let v = JwtVerifier::new(config(), &doc.to_string()).unwrap();
    assert_eq!(v.key_ids(), ["ec-1"]);
    let skipped_keys = v.skipped_keys();
    let skipped: Vec<_> = skipped_keys.iter().map(|s| (s.kid.as_deref(), s.reason)).collect();
    assert_eq!(
        skipped,
        [
            (None, "the key has no `kid`"),
            (Some("rsa-enc"), "the key is not for signatures (`use`)"),
            (Some("rsa-1024"), "the rsa key is shorter than 2048 bits"),
            (Some("p521"), "the elliptic curve is not supported"),
            (Some("junk"), "the key's parameters are missing or malformed"),
            (Some("okp-x448"), "the key type is not supported"),
            (Some("rsa-oaep"), "the key's `alg` is not a signature algorithm"),
            (Some("misfit"), "the key's `alg` does not fit its type or curve"),
        ]
    );

    let only_rsa = JwtConfig { allowed_algorithms: vec!["RS256".into()], ..config() };
    assert_eq!(JwtVerifier::new(only_rsa, &jwks(&[&key])).unwrap_err(), AuthError::NoUsableKeys);
}

#[test]
fn tampered_payload_has_a_bad_signature() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let token = key.mint(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("admin-bot")).to_string());
    parts[1] = &forged;
    assert_eq!(v.verify_at(&parts.join("."), NOW).unwrap_err(), AuthError::BadSignature);

    // One bit of the signature flipped.
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(v.verify_at(&flipped, NOW).unwrap_err(), AuthError::BadSignature);

    // Signed by another P-256 key that claims the trusted key's kid.
    let impostor = TestKey::from_pem("ec-1", Algorithm::ES256, P256_OTHER_PEM);
    assert_eq!(v.verify_at(&impostor.mint(&claims()), NOW).unwrap_err(), AuthError::BadSignature);
}

#[test]
fn missing_agent_claim_is_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let err = v.verify_at(&key.mint(&without(claims(), "sub")), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingAgentClaim { claim: "sub".into() });
    let err = v.verify_at(&key.mint(&with(claims(), "sub", json!(""))), NOW).unwrap_err();
    assert!(matches!(err, AuthError::InvalidClaim { ref claim, .. } if claim == "sub"), "{err:?}");

    let by_client = verifier(JwtConfig { agent_claim: "client_id".into(), ..config() }, &[&key]);
    let err = by_client.verify_at(&key.mint(&claims()), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingAgentClaim { claim: "client_id".into() });
    assert_eq!(err.to_string(), "the token has no `client_id` claim to name the agent");
}

#[test]
fn malformed_act_chains_are_refused() {
    let key = ec();
    let v = verifier(JwtConfig { agent_claim: "client_id".into(), ..config() }, &[&key]);
    let base = with(claims(), "client_id", json!("bot"));
    for act in [json!("bot"), json!({}), json!({ "sub": 5 }), json!({ "sub": "a", "act": [] })] {
        let err = v.verify_at(&key.mint(&with(base.clone(), "act", act.clone())), NOW).unwrap_err();
        assert!(matches!(err, AuthError::InvalidClaim { ref claim, .. } if claim == "act"), "{act}: {err:?}");
    }
    let mut deep = json!({ "sub": "actor-0" });
    for i in 1..=MAX_ACT_DEPTH {
        deep = json!({ "sub": format!("actor-{i}"), "act": deep });
    }
    let err = v.verify_at(&key.mint(&with(base.clone(), "act", deep)), NOW).unwrap_err();
    assert_eq!(err, AuthError::InvalidClaim { claim: "act".into(), expected: "a chain at most 8 deep" });
    let err = v.verify_at(&key.mint(&with(without(base, "sub"), "act", json!({ "sub": "a" }))), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingClaim { claim: "sub".into() });
}

#[test]
fn malformed_tokens_are_refused() {
    let key = ec();
    let v = verifier(config(), &[&key]);
    let good = key.mint(&claims());
    let too_long = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    let not_json = format!("{}.{}", URL_SAFE_NO_PAD.encode("not json"), good.split_once('.').unwrap().1);
    for bad in ["", "a.b", "a.b.c.d", ".b.c", "a..c", "!!!.b.c", &not_json, &too_long] {
        let err = v.verify_at(bad, NOW).unwrap_err();
        assert!(matches!(err, AuthError::Malformed { .. }), "{bad:.40}: {err:?}");
    }
    let array_payload = raw_token(&json!({ "alg": "ES256", "kid": "ec-1" }), &json!([1]), "AAAA");
    assert!(v.verify_at(&array_payload, NOW).is_err());
}

#[test]
fn errors_never_show_token_contents() {
    let key = ec();
    let v = verifier(JwtConfig { agent_claim: "client_id".into(), ..config() }, &[&key]);
    let marker = "zq-secret-marker-7731";
    let tokens = [
        key.mint(&with(claims(), "aud", json!(marker))),
        key.mint(&with(claims(), "iss", json!(marker))),
        key.mint(&with(claims(), "sub", json!(marker))),
        key.mint(&with(with(claims(), "client_id", json!(marker)), "exp", json!(NOW - 1000))),
        raw_token(&json!({ "alg": marker, "kid": "ec-1" }), &claims(), "AAAA"),
        raw_token(&json!({ "alg": "ES256", "kid": marker }), &claims(), "AAAA"),
        raw_token(&json!({ "alg": "none", "kid": marker }), &json!({ "sub": marker }), ""),
    ];
    for token in &tokens {
        let err = v.verify_at(token, NOW).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}"), crate::metadata::challenge_for(&err, "https://x").unwrap()] {
            assert!(!shown.contains(marker), "{shown}");
            assert!(!shown.contains(token.as_str()), "{shown}");
        }
    }
    assert!(!format!("{v:?}").contains("BEGIN"));
}

#[test]
fn verifier_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JwtVerifier>();
    assert_send_sync::<VerifiedToken>();
}

#[test]
fn a_replaced_key_set_takes_effect_at_once_and_a_bad_one_changes_nothing() {
    let (ec, ed) = (ec(), ed());
    let v = verifier(config(), &[&ec]);
    let (ec_token, ed_token) = (ec.mint(&claims()), ed.mint(&claims()));
    assert!(v.verify_at(&ec_token, NOW).is_ok());
    assert_eq!(v.verify_at(&ed_token, NOW).unwrap_err(), AuthError::UnknownKeyId);

    // The provider rotates: the new set has only the new key.
    assert_eq!(v.replace_keys(&jwks(&[&ed])).unwrap(), []);
    assert_eq!(v.key_ids(), ["ed-1"]);
    assert!(v.verify_at(&ed_token, NOW).is_ok());
    assert_eq!(v.verify_at(&ec_token, NOW).unwrap_err(), AuthError::UnknownKeyId);

    // Documents that cannot be used leave the set in use as it was.
    let only_hmac = json!({ "keys": [{ "kty": "oct", "kid": "h", "k": "c2VjcmV0" }] }).to_string();
    let twice = json!({ "keys": [ec.jwk_json(), ec.jwk_json()] }).to_string();
    let huge = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_BYTES));
    for bad in ["not json", "{}", &only_hmac, &twice, &huge] {
        assert!(v.replace_keys(bad).is_err(), "{bad:.40}");
        assert_eq!(v.key_ids(), ["ed-1"]);
        assert!(v.verify_at(&ed_token, NOW).is_ok());
    }
}

#[test]
fn without_keys_tokens_are_unavailable_not_invalid_until_a_set_is_loaded() {
    let key = ec();
    let v = JwtVerifier::without_keys(config()).unwrap();
    assert!(!v.has_keys());
    assert!(v.key_ids().is_empty());
    let token = key.mint(&claims());
    let err = v.verify_at(&token, NOW).unwrap_err();
    assert_eq!(err, AuthError::KeysUnavailable);
    assert_eq!(err.http_status(), 503);
    // What can be judged without keys still is: a broken token is the agent's fault.
    assert!(matches!(v.verify_at("a.b", NOW).unwrap_err(), AuthError::Malformed { .. }));
    let none = raw_token(&json!({ "alg": "none", "kid": "ec-1" }), &claims(), "");
    assert_eq!(v.verify_at(&none, NOW).unwrap_err(), AuthError::AlgorithmNotAllowed);

    assert!(v.replace_keys("not json").is_err());
    assert!(!v.has_keys());
    v.replace_keys(&jwks(&[&key])).unwrap();
    assert!(v.has_keys());
    assert_eq!(v.verify_at(&token, NOW).unwrap().agent_id, "billing-bot");
}

#[test]
fn without_keys_still_checks_the_configuration() {
    let hmac = JwtConfig { allowed_algorithms: vec!["HS256".into()], ..config() };
    assert!(matches!(JwtVerifier::without_keys(hmac).unwrap_err(), AuthError::AlgorithmRefused { .. }));
    let empty = JwtConfig { issuer: " ".into(), ..config() };
    assert_eq!(JwtVerifier::without_keys(empty).unwrap_err(), AuthError::EmptyConfigValue { field: "issuer" });
}

#[test]
fn keys_can_be_replaced_while_other_threads_verify() {
    let (ec, ed) = (ec(), ed());
    let both = jwks(&[&ec, &ed]);
    let v = std::sync::Arc::new(verifier(config(), &[&ec, &ed]));
    let token = ec.mint(&claims());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            std::thread::spawn(move || (0..200).all(|_| v.verify_at(&token, NOW).is_ok()))
        })
        .collect();
    for _ in 0..200 {
        v.replace_keys(&both).unwrap();
    }
    assert!(readers.into_iter().all(|r| r.join().unwrap()), "every verification saw a whole key set");
}

#[test]
fn only_a_well_formed_token_with_an_unknown_key_id_asks_for_a_refetch() {
    let (ec, ed) = (ec(), ed());
    let v = verifier(config(), &[&ec]);
    assert!(!v.names_unknown_key(&ec.mint(&claims())), "known");
    assert!(v.names_unknown_key(&ed.mint(&claims())), "unknown kid, allowed alg");
    let hmac = raw_token(&json!({ "alg": "HS256", "kid": "new" }), &claims(), "AAAA");
    assert!(!v.names_unknown_key(&hmac), "a refused algorithm never causes a fetch");
    let no_kid = raw_token(&json!({ "alg": "ES256" }), &claims(), "AAAA");
    assert!(!v.names_unknown_key(&no_kid));
    assert!(!v.names_unknown_key("not.a-token"));
    let empty = JwtVerifier::without_keys(config()).unwrap();
    assert!(!empty.names_unknown_key(&ed.mint(&claims())), "no set yet: the refresher's business");
}
