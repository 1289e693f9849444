//! `custos serve` calling out over TLS, against real peers: `https://` upstreams (the official
//! Python MCP SDK's server behind uvicorn's TLS, `tests/peers/https_server.py`) and a JWKS
//! fetched from an identity provider's URL (`tests/peers/jwks_server.py`, whose file the tests
//! rewrite to rotate keys). Certificates are made here with rcgen, under a test CA.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::harness::{
    eventually, header, http, issue_key, of_kind, peers_python, python_http, repo_root, Deployment, Peer, Served, INIT,
    POLICIES,
};
use serde_json::{json, Value};

/// A test CA that signs server and client certificates, written as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "custos test ca");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self { dir: dir.to_owned(), issuer: rcgen::Issuer::new(params, key) }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `NAME.pem` and `NAME.key` for `names` (IP addresses become IP SANs), signed by the CA.
    fn issue(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A peer process that prints its port on its first line of stdout; killed when dropped.
fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

/// A raw `initialize` with `credential`: status, headers and body.
fn initialize(url: &str, credential: &str) -> (u16, Vec<(String, String)>, String) {
    http("POST", url, &[("Authorization", &bearer(credential)), ("Accept", "application/json")], INIT)
}

/// The official Python SDK's server over `https://`, trusted through `ca_file`, is governed like
/// any upstream and only ever sees the credential configured for it. The same server without
/// `ca_file`, or under a name its certificate does not carry, gets the agent a JSON-RPC error
/// naming the upstream and saying why, and the gateway goes on serving.
#[test]
fn an_https_upstream_is_governed_and_an_untrusted_or_misnamed_one_is_refused_by_name() {
    let d = Deployment::new(POLICIES, "");
    let pki = Pki::new(d.dir.path());
    // An IP-address name only: `https://127.0.0.1` verifies, `https://localhost` does not.
    let (cert, key) = pki.issue("upstream", &["127.0.0.1"]);
    let peer = Peer::start("https_server.py", &["--cert", path(&cert), "--key", path(&key)]);
    let port = peer.port;
    let ca = pki.ca();
    let servers = format!(
        "[[servers]]\nname = \"secure\"\nurl = \"https://127.0.0.1:{port}/mcp\"\nca_file = {ca:?}\n\
         headers = {{ Authorization = \"Basic dXBzdHJlYW0=\" }}\ntools = {{ \"*\" = \"read\" }}\n\
         [[servers]]\nname = \"untrusted\"\nurl = \"https://127.0.0.1:{port}/mcp\"\ntools = {{ \"*\" = \"read\" }}\n\
         [[servers]]\nname = \"misnamed\"\nurl = \"https://localhost:{port}/mcp\"\nca_file = {ca:?}\n"
    );
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(d.config(), format!("{config}{servers}")).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);

    let report = python_http(
        &served.url("secure"),
        &key,
        &["--list-tools", "--call", "echo", r#"{"text":"over tls"}"#, "--call", "authorization", "{}", "--terminate"],
    );
    assert_eq!(report["http_error"], Value::Null, "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert!(steps[0]["tools"].as_array().unwrap().iter().any(|t| t == "echo"), "{}", steps[0]);
    assert_eq!(steps[1]["content"][0], "secure: over tls", "{}", steps[1]);
    // (A bearer token echoed back would reach the agent redacted by the leak guard; a `Basic`
    // credential is not a shape it looks for, so the echo shows exactly what was sent.)
    assert_eq!(steps[2]["content"][0], "Basic dXBzdHJlYW0=", "the agent's key is never sent: {}", steps[2]);

    // Untrusted: a session opens, its handshake and its calls are answered with the reason.
    let (status, headers, body) = initialize(&served.url("untrusted"), &key);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("upstream `untrusted` is unavailable"), "{message}");
    assert!(message.contains("certificate is not signed by a trusted ca"), "{message}");
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let auth = bearer(&key);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (_, _, body) = http(
        "POST",
        &served.url("untrusted"),
        &[("Authorization", &auth), ("Accept", "application/json"), ("Mcp-Session-Id", &session)],
        call,
    );
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("`untrusted`"), "{answer}");

    // Misnamed: trusted, but the certificate does not name `localhost`.
    let (status, _, body) = initialize(&served.url("misnamed"), &key);
    assert_eq!(status, 200, "{body}");
    let message = serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("upstream `misnamed` is unavailable"), "{message}");
    assert!(message.contains("does not name the host"), "{message}");

    // The gateway goes on serving.
    let again = python_http(&served.url("secure"), &key, &["--call", "echo", r#"{"text":"still"}"#, "--terminate"]);
    assert_eq!(again["steps"][0]["content"][0], "secure: still", "{again}");
    drop(served);
    drop(peer);

    let events = d.events();
    let finished = of_kind(&events, "call.finished");
    assert!(finished.iter().any(|e| e["tool"] == "secure/echo"), "{finished:?}");
    let failed: Vec<_> = finished.iter().filter(|e| e["tool"] == "untrusted/echo").collect();
    assert_eq!(failed.len(), 1, "the refused call is closed in the log: {finished:?}");
    assert!(failed[0].to_string().contains("-32003"), "{}", failed[0]);
    d.verify_ok();
}

/// An upstream that requires a client certificate (mutual TLS) is reached with the one
/// configured for it, and refuses the gateway without one: the agent is told which upstream.
/// Here the server is named by a DNS name (`localhost`).
#[test]
fn an_https_upstream_that_requires_a_client_certificate_gets_the_configured_one() {
    let d = Deployment::new(POLICIES, "");
    let pki = Pki::new(d.dir.path());
    let (cert, key) = pki.issue("upstream", &["localhost"]);
    let (client_cert, client_key) = pki.issue("gateway-client", &["gateway.custos.test"]);
    let ca = pki.ca();
    let peer = Peer::start("https_server.py", &["--cert", path(&cert), "--key", path(&key), "--client-ca", path(&ca)]);
    let port = peer.port;
    let servers = format!(
        "[[servers]]\nname = \"mtls\"\nurl = \"https://localhost:{port}/mcp\"\nca_file = {ca:?}\n\
         client_cert_file = {client_cert:?}\nclient_key_file = {client_key:?}\ntools = {{ \"*\" = \"read\" }}\n\
         [[servers]]\nname = \"anonymous\"\nurl = \"https://localhost:{port}/mcp\"\nca_file = {ca:?}\n"
    );
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(d.config(), format!("{config}{servers}")).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);

    let report = python_http(&served.url("mtls"), &key, &["--call", "echo", r#"{"text":"mutual"}"#, "--terminate"]);
    assert_eq!(report["steps"][0]["content"][0], "secure: mutual", "{report}");

    let (status, _, body) = initialize(&served.url("anonymous"), &key);
    assert_eq!(status, 200, "{body}");
    let message = serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("upstream `anonymous` is unavailable"), "{message}");
    assert!(message.contains("client certificate"), "{message}");
}

/// A client certificate or CA file that cannot be read stops start-up, naming the server and
/// the file, rather than failing each session later.
#[test]
fn unreadable_upstream_tls_files_stop_start_up() {
    let d = Deployment::serving_sample(
        "[[servers]]\nname = \"remote\"\nurl = \"https://127.0.0.1:9/mcp\"\nca_file = \"missing-ca.pem\"\n",
    );
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server `remote`") && stderr.contains("missing-ca.pem"), "{stderr}");
}

/// Mints with PyJWT (tests/peers/mint_jwt.py) with one of custos-auth's test-only keys.
fn mint(mode: &str, key: &str, kid: &str, alg: &str, claims: &Value) -> String {
    let key = repo_root().join("crates/custos-auth/tests/keys").join(key);
    let out = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/mint_jwt.py"))
        .args([mode, "--key", path(&key), "--kid", kid, "--alg", alg, "--claims", &claims.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The identity provider's two signing keys, one after the other.
const KEY_1: (&str, &str, &str) = ("ed25519.pem", "idp-1", "EdDSA");
const KEY_2: (&str, &str, &str) = ("p256.pem", "idp-2", "ES256");

fn jwks_of((key, kid, alg): (&str, &str, &str)) -> String {
    mint("jwks", key, kid, alg, &json!({}))
}

fn token_of((key, kid, alg): (&str, &str, &str)) -> String {
    let claims = json!({ "iss": "https://idp.test", "aud": "https://gw.test/mcp", "sub": "reader", "exp_in": 300 });
    mint("token", key, kid, alg, &claims)
}

fn jwt_settings(url: &str, extra: &str) -> String {
    format!(
        "[serve.jwt]\nissuer = \"https://idp.test\"\naudience = \"https://gw.test/mcp\"\njwks_url = \"{url}\"\n\
         jwks_refresh_secs = 3600\n{extra}"
    )
}

/// How many times the JWKS was fetched, from the server's request log.
fn fetches(log: &Path) -> usize {
    std::fs::read_to_string(log).map(|l| l.lines().count()).unwrap_or(0)
}

/// Keys fetched over https from the provider: a token of its first key authenticates; after the
/// provider rotates to a second key, a token of the new key authenticates at once, without a
/// restart (a token naming an unknown key id makes the gateway fetch again), and tokens naming
/// random key ids cannot make it fetch again within 30 s.
#[test]
fn a_jwks_url_follows_a_key_rotation_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.issue("idp", &["127.0.0.1"]);
    let jwks = dir.path().join("jwks.json");
    let log = dir.path().join("requests.log");
    std::fs::write(&jwks, jwks_of(KEY_1)).unwrap();
    let idp = Peer::start(
        "jwks_server.py",
        &["--file", path(&jwks), "--cert", path(&cert), "--key", path(&key), "--log", path(&log)],
    );
    let url = format!("https://127.0.0.1:{}/.well-known/jwks.json", idp.port);
    let d = Deployment::serving_sample(&jwt_settings(&url, &format!("jwks_ca_file = {:?}\n", pki.ca())));
    let served = Served::start(&d);
    let mcp = served.url("sample");
    assert_eq!(fetches(&log), 1, "fetched once at start-up");

    let (status, _, body) = initialize(&mcp, &token_of(KEY_1));
    assert_eq!(status, 200, "{body}");

    // The provider rotates: its key set now has only the second key.
    std::fs::write(&jwks, jwks_of(KEY_2)).unwrap();
    let (status, _, body) = initialize(&mcp, &token_of(KEY_2));
    assert_eq!(status, 200, "the new key is fetched on first sight: {body}");
    assert_eq!(fetches(&log), 2);

    // The retired key is gone, and unknown key ids do not cause more fetches for 30 s.
    let (status, headers, _) = initialize(&mcp, &token_of(KEY_1));
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").unwrap().contains("invalid_token"));
    for n in 0..5 {
        let random = token_of(("p256.pem", &format!("random-{n}"), "ES256"));
        assert_eq!(initialize(&mcp, &random).0, 401);
    }
    assert_eq!(fetches(&log), 2, "at most one fetch per 30 s for unknown key ids");
    drop(served);
    let failed = of_kind(&d.events(), "auth.failed").len();
    assert_eq!(failed, 6);
}

/// The provider is down when the gateway starts: it starts anyway, API keys work, bearer tokens
/// get 503 (they cannot be judged, so they are not called invalid), and once the provider is up
/// the gateway's retries fetch the keys and the same token is accepted. Plain http is allowed
/// here because the provider is on loopback.
#[test]
fn tokens_get_503_until_an_identity_provider_down_at_start_up_is_reached() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwks_of(KEY_1)).unwrap();
    let d = Deployment::serving_sample(&jwt_settings(&format!("http://127.0.0.1:{port}/jwks"), ""));
    let api_key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let mcp = served.url("sample");
    let token = token_of(KEY_1);

    let (status, headers, body) = initialize(&mcp, &token);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("keys are not available yet"), "{body}");
    assert!(header(&headers, "www-authenticate").is_none(), "the token is not called invalid");
    assert!(!body.contains(&token));
    assert_eq!(initialize(&mcp, &api_key).0, 200, "api keys do not depend on the provider");

    let _idp = Peer::start("jwks_server.py", &["--file", path(&jwks), "--port", &port.to_string()]);
    eventually("the token to be accepted once the provider is up", || {
        let (status, _, body) = initialize(&mcp, &token);
        match status {
            200 => Some(()),
            503 => None,
            other => panic!("unexpected {other}: {body}"),
        }
    });
    drop(served);
    let events = d.events();
    let refused = of_kind(&events, "auth.failed");
    assert!(!refused.is_empty() && refused.iter().all(|e| e["detail"]["status"] == 503), "{refused:?}");
    assert!(refused.iter().all(|e| e["detail"]["reason"] == "keys_unavailable"), "{refused:?}");
}

/// What a remote server says on its own (outside any request: here a tool-list change, which
/// the Python SDK's server sends on the session's GET stream) reaches the client's GET stream on
/// the gateway: the gateway opens the upstream's stream once the client is initialized.
#[test]
fn a_remote_upstreams_own_event_stream_reaches_the_clients_get_stream() {
    let d = Deployment::new(POLICIES, "");
    let pki = Pki::new(d.dir.path());
    let (cert, key) = pki.issue("upstream", &["127.0.0.1"]);
    let peer = Peer::start("https_server.py", &["--cert", path(&cert), "--key", path(&key)]);
    let servers = format!(
        "[[servers]]\nname = \"secure\"\nurl = \"https://127.0.0.1:{}/mcp\"\nca_file = {:?}\ntools = {{ \"*\" = \"read\" }}\n",
        peer.port,
        pki.ca()
    );
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(d.config(), format!("{config}{servers}")).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("secure");
    let (status, headers, body) = initialize(&url, &key);
    assert_eq!(status, 200, "{body}");
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let auth = bearer(&key);
    let in_session = [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str())];
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(http("POST", &url, &in_session, initialized).0, 202);
    let mut stream =
        common::harness::SseStream::get(&url, &[in_session[0], in_session[1], ("Accept", "text/event-stream")]);
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"announce","arguments":{}}}"#;
    // The gateway's own GET to the upstream opens in the background: until it is open, the
    // server has nowhere to send the notification, so the call is repeated until one arrives.
    let event = eventually("the relayed notification", || {
        let headers = [in_session[0], in_session[1], ("Accept", "application/json")];
        let (status, _, body) = http("POST", &url, &headers, call);
        assert_eq!(status, 200, "{body}");
        stream.next_event_within(Duration::from_millis(500))
    });
    assert_eq!(event["method"], "notifications/tools/list_changed", "{event}");
    drop(stream);
    drop(served);
    drop(peer);
}
