//! The verification rules, against a stand-in provider on loopback whose key set and answers
//! each test controls, with tokens signed here (`custos-secrets` keys). The real provider is
//! driven in `tests/oidc_provider.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use custos_secrets::{Algorithm, SigningKey};
use serde_json::{json, Value};

use super::*;

const CLIENT: &str = "custos-console";

/// What the stand-in provider serves, and what it saw.
struct StandIn {
    issuer: String,
    /// The `issuer` its discovery document names (the real one unless a test changes it).
    discovery_issuer: Mutex<String>,
    jwks: Mutex<String>,
    jwks_fetches: AtomicUsize,
    /// Status and body of every token endpoint answer.
    token_answer: Mutex<(u16, String)>,
    /// `Authorization` header and body of each token request.
    token_requests: Mutex<Vec<(Option<String>, String)>>,
}

impl StandIn {
    async fn start(keys: &[&SigningKey]) -> Arc<StandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let stand_in = Arc::new(StandIn {
            discovery_issuer: Mutex::new(issuer.clone()),
            issuer,
            jwks: Mutex::new(jwks(keys)),
            jwks_fetches: AtomicUsize::new(0),
            token_answer: Mutex::new((500, String::new())),
            token_requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(serve_jwks))
            .route("/token", post(token))
            .with_state(stand_in.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        stand_in
    }

    fn settings(&self) -> custos_config::OidcSettings {
        custos_config::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT.into(),
            client_secret_file: None,
            scopes: vec!["openid".into(), "email".into(), "groups".into()],
            identity_claim: "email".into(),
            groups_claim: "groups".into(),
            ca_file: None,
        }
    }

    async fn client(&self) -> OidcClient {
        OidcClient::discover(&self.settings()).await.unwrap()
    }

    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn discovery(State(s): State<Arc<StandIn>>) -> Json<Value> {
    let issuer = &s.issuer;
    Json(json!({
        "issuer": *s.discovery_issuer.lock().unwrap(),
        // A query of its own, which the sign-in URL must keep.
        "authorization_endpoint": format!("{issuer}/auth?tenant=t1"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn serve_jwks(State(s): State<Arc<StandIn>>) -> String {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    s.jwks.lock().unwrap().clone()
}

async fn token(State(s): State<Arc<StandIn>>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
    s.token_requests.lock().unwrap().push((authorization, body));
    let (status, body) = s.token_answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), body)
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() }).to_string()
}

fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg).unwrap().0
}

fn now() -> i64 {
    now_ms().unwrap() / 1000
}

/// The claims of a good ID token of `issuer` for alice.
fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": "u-alice",
        "aud": CLIENT,
        "iat": now(),
        "exp": now() + 300,
        "nonce": "n-1",
        "email": "alice@example.com",
        "email_verified": true,
        "groups": ["support-leads", "engineering"],
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Expects `token` refused with `reason`.
async fn refused(client: &OidcClient, token: &str, nonce: Option<&str>, reason: &str) -> OidcError {
    let err = client.verify_id_token(token, nonce).await.unwrap_err();
    assert_eq!(err.reason(), reason, "{err}");
    err
}

#[tokio::test]
async fn a_good_id_token_names_the_approver_and_groups() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    assert_eq!(client.issuer(), op.issuer);
    let token = k.sign_jwt(&claims(&op.issuer)).unwrap();
    let signed = client.verify_id_token(&token, Some("n-1")).await.unwrap();
    assert_eq!(signed.issuer, op.issuer);
    assert_eq!(signed.subject, "u-alice");
    assert_eq!(signed.name, "alice@example.com");
    assert_eq!(signed.groups, ["support-leads", "engineering"]);
    let exp = claims(&op.issuer)["exp"].as_i64().unwrap();
    assert!((exp - 1..=exp + 1).contains(&(signed.expires_ms / 1000)));
    // Without a nonce to compare, none is looked at.
    client.verify_id_token(&token, None).await.unwrap();
    // An ES256 key of the provider works the same.
    let es = key(Algorithm::ES256);
    *op.jwks.lock().unwrap() = jwks(&[&k, &es]);
    let token = es.sign_jwt(&claims(&op.issuer)).unwrap();
    assert_eq!(client.verify_id_token(&token, Some("n-1")).await.unwrap().subject, "u-alice");
}

/// What the admin API learns from an ID token: the approver, how they were identified, their
/// groups; and a refusal with its reason code, never the token.
#[tokio::test]
async fn the_admin_api_learns_the_approver_from_an_id_token() {
    use custos_approvals::{ApproverMethod, IdentityVerifier};
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let approver = client.approver(&k.sign_jwt(&claims(&op.issuer)).unwrap()).await.unwrap();
    assert_eq!((approver.name.as_str(), approver.method), ("alice@example.com", ApproverMethod::Oidc));
    assert_eq!((approver.issuer.as_deref(), approver.subject.as_deref()), (Some(op.issuer.as_str()), Some("u-alice")));
    assert_eq!(approver.idp_groups, ["support-leads", "engineering"]);
    assert_eq!(approver.session, None);
    let wrong = k.sign_jwt(&with(claims(&op.issuer), json!({"aud": "another-client"}))).unwrap();
    let (code, message) = client.approver(&wrong).await.unwrap_err();
    assert_eq!(code, "wrong_audience");
    assert!(!message.contains(&wrong), "{message}");
}

#[tokio::test]
async fn tokens_for_another_client_issuer_or_sign_in_are_refused() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let iss = op.issuer.clone();
    let sign = |changes: Value| k.sign_jwt(&with(claims(&iss), changes)).unwrap();

    refused(&client, &sign(json!({"aud": "another-client"})), None, "wrong_audience").await;
    refused(&client, &sign(json!({"aud": ["another-client"]})), None, "wrong_audience").await;
    refused(&client, &sign(json!({"aud": null})), None, "wrong_audience").await;
    refused(&client, &sign(json!({"iss": "http://127.0.0.1:1"})), None, "wrong_issuer").await;
    refused(&client, &sign(json!({"iss": format!("{iss}/")})), None, "wrong_issuer").await;
    refused(&client, &sign(json!({"nonce": "n-2"})), Some("n-1"), "wrong_nonce").await;
    refused(&client, &sign(json!({"nonce": null})), Some("n-1"), "wrong_nonce").await;
    refused(&client, &sign(json!({"nonce": 7})), Some("n-1"), "wrong_nonce").await;
    refused(&client, &sign(json!({})), Some(""), "wrong_nonce").await;
    refused(&client, &sign(json!({"nonce": null})), Some(""), "wrong_nonce").await;
}

#[tokio::test]
async fn expired_early_and_incomplete_tokens_are_refused() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let iss = op.issuer.clone();
    let sign = |changes: Value| k.sign_jwt(&with(claims(&iss), changes)).unwrap();

    let leeway = LEEWAY_SECS as i64;
    refused(&client, &sign(json!({"exp": now() - leeway - 5})), None, "expired").await;
    refused(&client, &sign(json!({"exp": null})), None, "missing_claim").await;
    // Within the leeway is still fine.
    client.verify_id_token(&sign(json!({"exp": now() - 5})), None).await.unwrap();
    refused(&client, &sign(json!({"nbf": now() + leeway + 30})), None, "not_yet_valid").await;
    refused(&client, &sign(json!({"iat": now() + leeway + 30})), None, "not_yet_valid").await;
    let err = refused(&client, &sign(json!({"iat": null})), None, "missing_claim").await;
    assert!(err.to_string().contains("`iat`"), "{err}");
    refused(&client, &sign(json!({"sub": null})), None, "missing_claim").await;
    refused(&client, &sign(json!({"sub": ""})), None, "invalid_claim").await;
}

#[tokio::test]
async fn unsigned_hmac_and_forged_signatures_are_refused() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let body = b64(&claims(&op.issuer));
    let kid = k.kid().to_owned();

    let none = format!("{}.{body}.", b64(&json!({"alg": "none", "kid": kid})));
    refused(&client, &none, None, "algorithm_not_allowed").await;
    let none_signed = format!("{}.{body}.c2ln", b64(&json!({"alg": "none", "kid": kid})));
    refused(&client, &none_signed, None, "algorithm_not_allowed").await;
    // HMAC keyed with the public key's bytes: the classic confusion. Refused before any key.
    let hs = format!("{}.{body}.{}", b64(&json!({"alg": "HS256", "kid": kid})), URL_SAFE_NO_PAD.encode([7u8; 32]));
    refused(&client, &hs, None, "algorithm_not_allowed").await;
    // The right kid, another key's signature.
    let other = key(Algorithm::EdDSA);
    let forged = other.sign_jwt(&claims(&op.issuer)).unwrap();
    let (_, rest) = forged.split_once('.').unwrap();
    let forged = format!("{}.{rest}", b64(&json!({"alg": "EdDSA", "kid": kid})));
    refused(&client, &forged, None, "bad_signature").await;
    // A claim changed after signing.
    let good = k.sign_jwt(&claims(&op.issuer)).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = with(claims(&op.issuer), json!({"groups": ["finance-approvers"]}));
    refused(&client, &format!("{}.{}.{}", parts[0], b64(&tampered), parts[2]), None, "bad_signature").await;
    // The EdDSA key's kid with ES256.
    let confused = format!("{}.{body}.{}", b64(&json!({"alg": "ES256", "kid": kid})), parts[2]);
    refused(&client, &confused, None, "key_algorithm_mismatch").await;
    refused(&client, &format!("{}.{body}.{}", b64(&json!({"alg": "EdDSA"})), parts[2]), None, "missing_key_id").await;
    refused(&client, "not.a-token", None, "malformed_id_token").await;
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_key_set_again_once() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    assert_eq!(op.fetches(), 1, "discovery fetched the key set");

    // The provider rotated: its new key is found by one fetch.
    let rotated = key(Algorithm::EdDSA);
    *op.jwks.lock().unwrap() = jwks(&[&k, &rotated]);
    let token = rotated.sign_jwt(&claims(&op.issuer)).unwrap();
    assert_eq!(client.verify_id_token(&token, None).await.unwrap().subject, "u-alice");
    assert_eq!(op.fetches(), 2);
    client.verify_id_token(&token, None).await.unwrap();
    assert_eq!(op.fetches(), 2, "a known key needs no fetch");

    // A key the provider never published: refused, and the next such tokens within the
    // interval fetch nothing (random key ids cannot make the console hammer the provider).
    let stranger = key(Algorithm::EdDSA);
    let token = stranger.sign_jwt(&claims(&op.issuer)).unwrap();
    for _ in 0..3 {
        refused(&client, &token, None, "unknown_key_id").await;
    }
    assert_eq!(op.fetches(), 2);
}

#[tokio::test]
async fn the_authorized_party_must_be_this_client() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let iss = op.issuer.clone();
    let sign = |changes: Value| k.sign_jwt(&with(claims(&iss), changes)).unwrap();

    refused(&client, &sign(json!({"aud": [CLIENT, "another"]})), None, "wrong_authorized_party").await;
    refused(&client, &sign(json!({"aud": [CLIENT, "another"], "azp": "another"})), None, "wrong_authorized_party")
        .await;
    refused(&client, &sign(json!({"azp": "another"})), None, "wrong_authorized_party").await;
    client.verify_id_token(&sign(json!({"aud": [CLIENT, "another"], "azp": CLIENT})), None).await.unwrap();
    client.verify_id_token(&sign(json!({"aud": [CLIENT], "azp": CLIENT})), None).await.unwrap();
    client.verify_id_token(&sign(json!({"aud": [CLIENT]})), None).await.unwrap();
}

#[tokio::test]
async fn identity_and_group_claims_are_read_strictly() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let iss = op.issuer.clone();
    let sign = |changes: Value| k.sign_jwt(&with(claims(&iss), changes)).unwrap();

    for missing in [json!({"email": null}), json!({"email": ""}), json!({"email": ["a@example.com"]})] {
        let err = refused(&client, &sign(missing), None, "missing_identity_claim").await;
        assert!(err.to_string().contains("`email`"), "{err}");
    }
    refused(&client, &sign(json!({"email_verified": false})), None, "email_not_verified").await;
    refused(&client, &sign(json!({"email_verified": "false"})), None, "email_not_verified").await;
    refused(&client, &sign(json!({"email_verified": 0})), None, "email_not_verified").await;
    client.verify_id_token(&sign(json!({"email_verified": "true"})), None).await.unwrap();
    client.verify_id_token(&sign(json!({"email_verified": null})), None).await.unwrap();

    let groups = |changes: Value| {
        let client = client.clone();
        let token = sign(changes);
        async move { client.verify_id_token(&token, None).await.map(|s| s.groups) }
    };
    assert_eq!(groups(json!({"groups": "support-leads"})).await.unwrap(), ["support-leads"]);
    assert_eq!(groups(json!({"groups": null})).await.unwrap(), Vec::<String>::new());
    assert_eq!(groups(json!({"groups": ["a", "b", "a"]})).await.unwrap(), ["a", "b"]);
    assert_eq!(groups(json!({"groups": ["a", 1]})).await.unwrap_err().reason(), "invalid_claim");
    assert_eq!(groups(json!({"groups": {"a": true}})).await.unwrap_err().reason(), "invalid_claim");
    let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    // Over the size a token may have at all, or over the group bound: refused either way.
    assert!(groups(json!({"groups": many})).await.is_err());

    // Another identity claim: `email_verified` is not its business.
    let mut settings = op.settings();
    settings.identity_claim = "preferred_username".into();
    settings.groups_claim = "roles".into();
    let other = OidcClient::discover(&settings).await.unwrap();
    let token = sign(json!({"preferred_username": "alice", "email_verified": false, "roles": "approver"}));
    let signed = other.verify_id_token(&token, None).await.unwrap();
    assert_eq!((signed.name.as_str(), signed.groups.as_slice()), ("alice", &["approver".to_owned()][..]));
    refused(&other, &sign(json!({})), None, "missing_identity_claim").await;
}

#[tokio::test]
async fn discovery_checks_the_issuer_and_endpoints() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;

    // A trailing slash is another issuer: the document names it without one.
    let mut settings = op.settings();
    settings.issuer = format!("{}/", op.issuer);
    let err = OidcClient::discover(&settings).await.unwrap_err();
    assert_eq!(err.reason(), "discovery_issuer_mismatch", "{err}");

    *op.discovery_issuer.lock().unwrap() = "https://evil.example.com".into();
    let err = OidcClient::discover(&op.settings()).await.unwrap_err();
    assert_eq!(err.reason(), "discovery_issuer_mismatch", "{err}");
    assert!(err.to_string().contains("`https://evil.example.com`"), "{err}");

    let mut settings = op.settings();
    settings.issuer = "http://idp.example.com".into();
    assert_eq!(OidcClient::discover(&settings).await.unwrap_err().reason(), "discovery_invalid");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    settings.issuer = format!("http://{closed}");
    let err = OidcClient::discover(&settings).await.unwrap_err();
    assert_eq!(err.reason(), "provider_unreachable", "{err}");
    assert!(err.is_provider_fault());

    // A key set with nothing usable stops discovery.
    *op.discovery_issuer.lock().unwrap() = op.issuer.clone();
    *op.jwks.lock().unwrap() = r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.into();
    assert_eq!(OidcClient::discover(&op.settings()).await.unwrap_err().reason(), "key_set_invalid");
}

#[tokio::test]
async fn the_client_secret_file_must_hold_a_secret() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = op.settings();

    settings.client_secret_file = Some(dir.path().join("missing"));
    let err = OidcClient::discover(&settings).await.unwrap_err();
    assert_eq!(err.reason(), "client_secret_unreadable");
    assert!(err.to_string().contains("missing`"), "{err}");

    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    settings.client_secret_file = Some(empty);
    let err = OidcClient::discover(&settings).await.unwrap_err();
    assert_eq!(err.reason(), "client_secret_empty");
    assert!(err.to_string().contains("empty`"), "{err}");

    let file = dir.path().join("secret");
    std::fs::write(&file, "s3cr:t value\n").unwrap();
    settings.client_secret_file = Some(file);
    let client = OidcClient::discover(&settings).await.unwrap();
    assert!(!format!("{client:?}").contains("s3cr"), "{client:?}");
}

#[tokio::test]
async fn begin_asks_for_a_code_with_pkce_state_and_nonce() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let redirect = "http://127.0.0.1:8080/console/callback";
    let (url, pending) = client.begin(redirect).unwrap();

    let (base, query) = url.split_once("/auth?").unwrap();
    assert_eq!(base, op.issuer);
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(param("tenant"), Some("t1"), "the endpoint's own query is kept");
    assert_eq!(param("response_type"), Some("code"));
    assert_eq!(param("client_id"), Some(CLIENT));
    assert_eq!(param("redirect_uri"), Some(redirect));
    assert_eq!(param("scope"), Some("openid email groups"));
    assert_eq!(param("state"), Some(pending.state.as_str()));
    assert_eq!(param("nonce"), Some(pending.nonce.as_str()));
    assert_eq!(param("code_challenge_method"), Some("S256"));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
    assert_eq!(param("code_challenge"), Some(challenge.as_str()));
    assert!(!url.contains(&pending.verifier));

    let (_, again) = client.begin(redirect).unwrap();
    let values = [&pending.state, &pending.nonce, &pending.verifier, &again.state, &again.nonce, &again.verifier];
    for (i, a) in values.iter().enumerate() {
        assert_eq!(a.len(), 43);
        assert!(values.iter().skip(i + 1).all(|b| a != b), "each value is fresh");
    }
    let shown = format!("{pending:?}");
    assert!(!shown.contains(&pending.nonce) && !shown.contains(&pending.verifier), "{shown}");

    assert_eq!(client.begin("/console/callback").unwrap_err().reason(), "invalid_redirect_uri");

    let mut settings = op.settings();
    settings.scopes = vec!["email".into()];
    let (url, _) = OidcClient::discover(&settings).await.unwrap().begin(redirect).unwrap();
    assert!(url.contains("&scope=openid+email&"), "{url}");
}

#[tokio::test]
async fn finish_checks_the_round_trip_before_the_token_endpoint() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let client = op.client().await;
    let redirect = "http://127.0.0.1:8080/console/callback";
    let (_, pending) = client.begin(redirect).unwrap();

    let err = client.finish(&pending, "another-state", "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "state_mismatch");
    assert_eq!(client.finish(&pending, "", "code-1", redirect).await.unwrap_err().reason(), "state_mismatch");
    let err = client.finish(&pending, &pending.state, "code-1", "http://127.0.0.1:8080/other").await.unwrap_err();
    assert_eq!(err.reason(), "redirect_mismatch");
    assert_eq!(client.finish(&pending, &pending.state, "", redirect).await.unwrap_err().reason(), "invalid_code");
    let old = PendingSignIn { created_ms: pending.created_ms - PENDING_TTL_MS - 1, ..pending.clone() };
    assert!(old.is_expired(now_ms().unwrap()));
    let err = client.finish(&old, &old.state, "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "sign_in_expired");
    assert!(op.token_requests.lock().unwrap().is_empty(), "nothing reached the token endpoint");

    // The token endpoint refuses: its OAuth error code is kept, its description is not.
    *op.token_answer.lock().unwrap() =
        (400, r#"{"error":"invalid_grant","error_description":"code code-1 was used"}"#.into());
    let err = client.finish(&pending, &pending.state, "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_refused");
    assert_eq!(err.to_string(), "the token endpoint refused the code (http status 400, `invalid_grant`)");

    *op.token_answer.lock().unwrap() = (200, r#"{"access_token":"a","token_type":"Bearer"}"#.into());
    let err = client.finish(&pending, &pending.state, "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "token_response_invalid");

    // A public client: client_id and the PKCE verifier in the body, no Authorization.
    let (authorization, body) = op.token_requests.lock().unwrap().last().unwrap().clone();
    assert_eq!(authorization, None);
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(field("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(field("code").as_deref(), Some("code-1"));
    assert_eq!(field("redirect_uri").as_deref(), Some(redirect));
    assert_eq!(field("code_verifier"), Some(pending.verifier.clone()));
    assert_eq!(field("client_id").as_deref(), Some(CLIENT));
    assert_eq!(field("client_secret"), None);

    // The ID token of the answer must carry this sign-in's nonce.
    let token = k.sign_jwt(&with(claims(&op.issuer), json!({"nonce": pending.nonce}))).unwrap();
    *op.token_answer.lock().unwrap() = (200, json!({"id_token": token, "token_type": "Bearer"}).to_string());
    let signed = client.finish(&pending, &pending.state, "code-1", redirect).await.unwrap();
    assert_eq!(signed.name, "alice@example.com");
    let (_, other) = client.begin(redirect).unwrap();
    let err = client.finish(&other, &other.state, "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "wrong_nonce", "a token from another sign-in");
}

#[tokio::test]
async fn a_confidential_client_authenticates_with_basic() {
    let k = key(Algorithm::EdDSA);
    let op = StandIn::start(&[&k]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "s3cr:t\n").unwrap();
    let mut settings = op.settings();
    settings.client_secret_file = Some(file);
    let client = OidcClient::discover(&settings).await.unwrap();
    let redirect = "http://127.0.0.1:8080/console/callback";
    let (_, pending) = client.begin(redirect).unwrap();
    *op.token_answer.lock().unwrap() = (401, r#"{"error":"invalid_client"}"#.into());
    let err = client.finish(&pending, &pending.state, "code-1", redirect).await.unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_refused");
    assert!(!err.to_string().contains("s3cr"));

    let (authorization, body) = op.token_requests.lock().unwrap().last().unwrap().clone();
    // base64("custos-console:s3cr%3At")
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("custos-console:s3cr%3At"));
    assert_eq!(authorization, Some(expected));
    assert!(!body.contains("client_secret") && !body.contains("client_id"), "{body}");
}

#[test]
fn messages_are_lowercase_one_line_and_reasons_distinct() {
    let all = [
        OidcError::ClientSecretUnreadable { path: "/x".into(), reason: "not found".into() },
        OidcError::ClientSecretEmpty { path: "/x".into() },
        OidcError::Tls { reason: "x".into() },
        OidcError::ProviderUnreachable { url: "u".into(), reason: "r".into() },
        OidcError::ProviderAnswer { url: "u".into(), reason: "r".into() },
        OidcError::DiscoveryIssuerMismatch { configured: "a".into(), found: "b".into() },
        OidcError::DiscoveryInvalid { reason: "r".into() },
        OidcError::KeySetInvalid { reason: "r".into() },
        OidcError::InvalidRedirectUri,
        OidcError::StateMismatch,
        OidcError::SignInExpired,
        OidcError::RedirectMismatch,
        OidcError::InvalidCode,
        OidcError::TokenEndpointRefused { status: 400, error: None },
        OidcError::TokenResponseInvalid { reason: "r" },
        OidcError::Malformed { reason: "r" },
        OidcError::AlgorithmNotAllowed,
        OidcError::MissingKeyId,
        OidcError::UnknownKeyId,
        OidcError::KeyAlgorithmMismatch,
        OidcError::BadSignature,
        OidcError::KeysUnavailable,
        OidcError::WrongIssuer,
        OidcError::WrongAudience,
        OidcError::WrongAuthorizedParty,
        OidcError::Expired,
        OidcError::NotYetValid,
        OidcError::WrongNonce,
        OidcError::MissingClaim { claim: "iat".into() },
        OidcError::InvalidClaim { claim: "groups".into(), expected: "x" },
        OidcError::MissingIdentity { claim: "email".into() },
        OidcError::EmailNotVerified,
        OidcError::RandomUnavailable,
        OidcError::ClockUnavailable,
    ];
    let mut reasons = std::collections::HashSet::new();
    for err in &all {
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.chars().next().is_some_and(|c| !c.is_uppercase()), "{msg}");
        assert!(reasons.insert(err.reason()), "{} twice", err.reason());
    }
}
