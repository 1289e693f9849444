//! The console's OpenID Connect client against a real provider (`oidc-provider`, started from
//! `tests/peers/oidc_provider.mjs`): discovery, the sign-in pages driven as a browser would,
//! the code exchanged, the ID token verified; and what must be refused on the way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod oidc_peer;

use custos_console::oidc::{OidcClient, OidcError};
use oidc_peer::{sign_in, Browser, OidcProvider};

/// The console's callback. Nothing listens there: the browser stand-in stops at the redirect.
const REDIRECT: &str = "http://127.0.0.1:9/console/oidc/callback";

/// A whole sign-in of `login`; the client, what `finish` needs, and the callback.
async fn signed_in_by(
    provider: &OidcProvider,
    client: &OidcClient,
    login: &str,
) -> (custos_console::oidc::PendingSignIn, oidc_peer::Callback) {
    let (url, pending) = client.begin(REDIRECT).unwrap();
    let callback = sign_in(&Browser::default(), &provider.issuer, &url, login, REDIRECT).await;
    assert_eq!(callback.error, None, "provider log: {}", provider.log());
    assert_eq!(callback.state.as_deref(), Some(pending.state.as_str()));
    assert_eq!(callback.iss.as_deref(), Some(provider.issuer.as_str()));
    (pending, callback)
}

#[tokio::test]
async fn an_approver_signs_in_and_the_code_works_once() {
    if !oidc_peer::provider_installed() {
        return;
    }
    let provider = OidcProvider::start(REDIRECT, &[]);
    let client = OidcClient::discover(&provider.settings()).await.unwrap();
    assert_eq!(client.issuer(), provider.issuer);

    let (pending, callback) = signed_in_by(&provider, &client, "alice@example.com").await;
    let (state, code) = (callback.state.unwrap(), callback.code.unwrap());
    let signed = client.finish(&pending, &state, &code, REDIRECT).await.unwrap();
    assert_eq!(signed.issuer, provider.issuer);
    assert_eq!(signed.subject, "u-alice");
    assert_eq!(signed.name, "alice@example.com");
    assert_eq!(signed.groups, ["support-leads"]);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(signed.expires_ms > now_ms, "{signed:?}");

    // The same code again: the provider has spent it.
    let err = client.finish(&pending, &state, &code, REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_refused", "{err}");
    assert!(matches!(&err, OidcError::TokenEndpointRefused { error: Some(e), .. } if e == "invalid_grant"), "{err}");
    assert!(!err.to_string().contains(&code), "{err}");
}

#[tokio::test]
async fn a_wrong_state_or_another_sign_ins_code_is_refused() {
    if !oidc_peer::provider_installed() {
        return;
    }
    let provider = OidcProvider::start(REDIRECT, &[]);
    let client = OidcClient::discover(&provider.settings()).await.unwrap();
    let (pending, callback) = signed_in_by(&provider, &client, "bob@example.com").await;
    let (state, code) = (callback.state.unwrap(), callback.code.unwrap());

    // Another sign-in's state (a login CSRF: someone else's callback in this browser).
    let (_, other) = client.begin(REDIRECT).unwrap();
    let err = client.finish(&pending, &other.state, &code, REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "state_mismatch");
    let err = client.finish(&pending, "", &code, REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "state_mismatch");

    // This code with another sign-in's pending state: its PKCE verifier does not fit.
    let err = client.finish(&other, &other.state, &code, REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_refused", "{err}");

    // The real callback still signs in: nothing above reached the provider with this
    // sign-in's verifier.
    let signed = client.finish(&pending, &state, &code, REDIRECT).await.unwrap();
    assert_eq!((signed.subject.as_str(), signed.groups.as_slice()), ("u-bob", &["engineering".to_owned()][..]));
}

#[tokio::test]
async fn a_confidential_client_signs_in_with_its_secret_only() {
    if !oidc_peer::provider_installed() {
        return;
    }
    let provider = OidcProvider::start(REDIRECT, &["--client-secret", "s3cr:t with spaces", "--id-token-alg", "ES256"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "s3cr:t with spaces\n").unwrap();
    let mut settings = provider.settings();
    settings.client_secret_file = Some(secret.clone());
    let client = OidcClient::discover(&settings).await.unwrap();

    let (pending, callback) = signed_in_by(&provider, &client, "carol@example.com").await;
    let signed = client.finish(&pending, &callback.state.unwrap(), &callback.code.unwrap(), REDIRECT).await.unwrap();
    assert_eq!(signed.name, "carol@example.com");
    assert_eq!(signed.groups, ["finance-approvers"]);

    std::fs::write(&secret, "not the secret").unwrap();
    let wrong = OidcClient::discover(&settings).await.unwrap();
    let (pending, callback) = signed_in_by(&provider, &wrong, "carol@example.com").await;
    let err = wrong.finish(&pending, &callback.state.unwrap(), &callback.code.unwrap(), REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "token_endpoint_refused", "{err}");
    assert!(matches!(&err, OidcError::TokenEndpointRefused { error: Some(e), .. } if e == "invalid_client"), "{err}");
}

#[tokio::test]
async fn an_unverified_email_does_not_sign_in() {
    if !oidc_peer::provider_installed() {
        return;
    }
    let provider = OidcProvider::start(REDIRECT, &["--id-token-alg", "EdDSA"]);
    let client = OidcClient::discover(&provider.settings()).await.unwrap();
    let (pending, callback) = signed_in_by(&provider, &client, "mallory@example.com").await;
    let err = client.finish(&pending, &callback.state.unwrap(), &callback.code.unwrap(), REDIRECT).await.unwrap_err();
    assert_eq!(err.reason(), "email_not_verified", "{err}");
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    if !oidc_peer::provider_installed() {
        return;
    }
    let provider = OidcProvider::start(REDIRECT, &[]);
    let port = provider.issuer.rsplit(':').next().unwrap();
    for configured in [format!("{}/", provider.issuer), format!("http://localhost:{port}")] {
        let mut settings = provider.settings();
        settings.issuer = configured.clone();
        let err = OidcClient::discover(&settings).await.unwrap_err();
        assert_eq!(err.reason(), "discovery_issuer_mismatch", "{configured}: {err}");
        assert!(err.to_string().contains(&format!("`{}`", provider.issuer)), "{err}");
    }
}
