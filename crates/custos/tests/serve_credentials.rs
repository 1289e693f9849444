//! The credential broker end to end: `custos serve` holding secrets for upstreams and minting
//! tokens for them, against real peers (the official Python SDK's server, over stdio and over
//! Streamable HTTP, verifying the gateway's tokens with PyJWT: `tests/peers/broker_upstream.py`).
//!
//! The agent authenticates with its own API key only; everything an upstream needs comes from
//! the gateway.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};

use common::harness::{
    eventually, http, issue_key, of_kind, peers_python, python_http, repo_root, Deployment, Peer, POLICIES,
};
use serde_json::{json, Value};

const ISSUER: &str = "https://custos.test";
const AUDIENCE: &str = "https://remote.test";

/// A deployment with a careless stdio upstream (`leaky`) and a remote one that demands the
/// gateway's tokens (`remote`), and the secrets both are given.
struct Broker {
    d: Deployment,
    remote: Peer,
    /// Where the remote upstream reads the gateway's JWKS URL from.
    jwks_url_file: PathBuf,
    canary: String,
    remote_key: String,
}

impl Broker {
    fn new() -> Self {
        let canary = format!("canary-{}", random_hex());
        let remote_key = format!("rk-{}", random_hex());
        let d = Deployment::new(POLICIES, "");
        let jwks_url_file = d.dir.path().join("jwks-url");
        std::fs::write(&jwks_url_file, "http://127.0.0.1:9/unset").unwrap();
        std::fs::write(d.dir.path().join("remote.key"), format!("{remote_key}\n")).unwrap();
        let remote = Peer::start(
            "broker_upstream.py",
            &["http", "--jwks-url-file", jwks_url_file.to_str().unwrap(), "--audience", AUDIENCE, "--issuer", ISSUER],
        );
        let python = peers_python();
        let script = repo_root().join("tests/peers/broker_upstream.py");
        let extra = format!(
            r#"
[credentials]
issuer = "{ISSUER}"
[secrets.canary]
env = "CUSTOS_TEST_CANARY"
[secrets.remote_key]
file = "remote.key"
[[servers]]
name = "leaky"
command = [{python:?}, {script:?}, "stdio"]
tools = {{ "*" = "read" }}
[[servers.inject]]
secret = "canary"
env = "LEAKY_API_KEY"
[[servers]]
name = "remote"
url = "http://127.0.0.1:{port}/mcp"
tools = {{ "*" = "read", "environment" = "privileged" }}
[[servers.inject]]
secret = "remote_key"
header = "X-Api-Key"
[[servers.inject]]
secret = "canary"
query = "api_key"
[servers.token]
audience = "{AUDIENCE}"
"#,
            port = remote.port,
        );
        let config = std::fs::read_to_string(d.config()).unwrap();
        std::fs::write(d.config(), format!("{config}{extra}")).unwrap();
        Self { d, remote, jwks_url_file, canary, remote_key }
    }

    /// Starts `custos serve` with the canary in its environment and its stderr in `log`.
    fn serve(&self) -> Gateway {
        let log = self.d.dir.path().join("serve.log");
        let mut child = self
            .d
            .custos(&["serve", "--listen", "127.0.0.1:0"])
            .env("CUSTOS_TEST_CANARY", &self.canary)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let base =
            first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_owned();
        std::fs::write(&self.jwks_url_file, format!("{base}/.well-known/jwks.json")).unwrap();
        Gateway { child, base, log }
    }
}

struct Gateway {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Gateway {
    fn url(&self, server: &str) -> String {
        format!("{}/mcp/{server}", self.base)
    }

    fn jwks(&self) -> Value {
        let (status, _, body) = http("GET", &format!("{}/.well-known/jwks.json", self.base), &[], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Stops it and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_hex() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap();
    String::from_utf8(bytes).unwrap().trim().replace('-', "")
}

/// The text of step `i` of a Python client report.
fn text(report: &Value, i: usize) -> String {
    report["steps"][i]["content"][0].as_str().unwrap_or_else(|| panic!("step {i}: {report}")).to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// POSTs an RFC 8693 exchange form: status and JSON body.
fn exchange(gateway: &Gateway, pairs: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = http(
        "POST",
        &format!("{}/oauth/token", gateway.base),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form(pairs),
    );
    (status, headers, serde_json::from_str(&body).unwrap_or_else(|_| panic!("not json: {body}")))
}

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The canary is injected into both upstreams (a child's environment, a query parameter) and
/// echoed back by both, and a file secret comes back through a header echo: none of it reaches
/// the agent, the gateway's log, its audit log (the database files, byte for byte) or its
/// metrics. Each echo is redacted and recorded as a finding that names the secret and its
/// keyed fingerprint.
#[test]
fn a_canary_secret_never_reaches_the_agent_the_logs_or_the_audit_log() {
    let b = Broker::new();
    let key = issue_key(&b.d, "reader");
    let gateway = b.serve();

    let leaky = python_http(&gateway.url("leaky"), &key, &["--call", "environment", "{}", "--terminate"]);
    let environment = text(&leaky, 0);
    assert!(environment.contains("LEAKY_API_KEY=[REDACTED:secret]"), "injected and redacted: {environment}");
    assert!(!environment.contains("CUSTOS_TEST_CANARY"), "a secret's source variable is not inherited: {environment}");

    let remote = python_http(&gateway.url("remote"), &key, &["--call", "request_seen", "{}", "--terminate"]);
    let seen: Value = serde_json::from_str(&text(&remote, 0)).unwrap();
    assert_eq!(seen, json!({ "x_api_key": "[REDACTED:secret]", "api_key": "[REDACTED:secret]" }), "{remote}");

    // Everything the run produced on the gateway's side, and what the agent saw.
    let (_, _, metrics) = http("GET", &format!("{}/metrics", gateway.base), &[], "");
    let stderr = gateway.stop();
    assert!(stderr.contains("LEAKY_API_KEY=[REDACTED:secret]"), "the child's stderr is relayed, redacted: {stderr}");
    let mut produced = vec![
        ("agent results", format!("{leaky}{remote}")),
        ("gateway stderr", stderr),
        ("metrics", metrics),
        ("audit query", String::from_utf8_lossy(&b.d.output(&["audit", "query", "--json"]).stdout).into_owned()),
    ];
    for entry in std::fs::read_dir(b.d.dir.path().join(".custos")).unwrap() {
        let path = entry.unwrap().path();
        produced.push(("data file", String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()));
    }
    for (what, text) in &produced {
        for secret in [&b.canary, &b.remote_key] {
            assert!(!text.contains(secret.as_str()), "{what} holds a secret value");
        }
    }

    let events = b.d.events();
    let findings = of_kind(&events, "finding.recorded");
    let leaked: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f["detail"]["secret"].as_str().unwrap_or("-"), f["detail"]["channel"].as_str().unwrap()))
        .collect();
    assert!(leaked.contains(&("canary", "message")) && leaked.contains(&("canary", "stderr")), "{leaked:?}");
    assert!(leaked.contains(&("remote_key", "message")), "{leaked:?}");
    let fingerprint =
        findings.iter().find(|f| f["detail"]["secret"] == "canary").unwrap()["detail"]["fingerprint"].clone();
    assert!(fingerprint.as_str().unwrap().starts_with("hmac-sha256:"), "{fingerprint}");
    // The calls name the credentials they used, by fingerprint: the same one the finding has.
    let requested = of_kind(&events, "call.requested");
    let leaky_call = requested.iter().find(|e| e["tool"] == "leaky/environment").unwrap();
    assert_eq!(leaky_call["detail"]["credentials"], json!([{ "name": "canary", "fingerprint": fingerprint }]));
    b.d.verify_ok();
    drop(b.remote);
}

/// Each call to the remote upstream carries a token the gateway minted for it: PyJWT verifies it
/// against `/.well-known/jwks.json` with the upstream's audience; it names the agent, the tool
/// as its scope, the run, a `jti` the audit log records, and lives five minutes. The same
/// token's claims fail for another audience.
#[test]
fn minted_tokens_verify_against_the_jwks_for_their_audience_only() {
    let b = Broker::new();
    let key = issue_key(&b.d, "reader");
    let gateway = b.serve();
    let report =
        python_http(&gateway.url("remote"), &key, &["--call", "claims", "{}", "--call", "claims", "{}", "--terminate"]);
    let first: Value = serde_json::from_str(&text(&report, 0)).unwrap();
    let second: Value = serde_json::from_str(&text(&report, 1)).unwrap();
    let claims = &first["claims"];
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "reader");
    assert_eq!(claims["scope"], "claims");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);
    assert_ne!(claims["jti"], second["claims"]["jti"], "per call: a new token each time");
    let jwks = gateway.jwks();
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|k| &k["kid"]).collect();
    assert_eq!(kids, vec![&first["kid"]], "{jwks}");

    let events = b.d.events();
    let calls: Vec<&Value> =
        of_kind(&events, "call.requested").into_iter().filter(|e| e["tool"] == "remote/claims").collect();
    let minted: Vec<&Value> = calls
        .iter()
        .flat_map(|e| e["detail"]["credentials"].as_array().unwrap())
        .filter(|c| c["jti"].is_string())
        .collect();
    assert_eq!(minted.len(), 2, "{calls:?}");
    assert_eq!(minted[0]["jti"], claims["jti"]);
    assert_eq!(minted[0]["name"], format!("signing_key:{}", first["kid"].as_str().unwrap()));

    // `custos token mint` mints the same way; its token verifies for its audience only.
    let out =
        b.d.output(&["token", "mint", "--agent", "reader", "--audience", AUDIENCE, "--scope", "claims", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    custos_secrets::verify(&token, &jwks, AUDIENCE, ISSUER, now, 0).unwrap();
    let other = custos_secrets::verify(&token, &jwks, "https://other.test", ISSUER, now, 0).unwrap_err();
    assert_eq!(other.reason(), "wrong_audience");
    let later = custos_secrets::verify(&token, &jwks, AUDIENCE, ISSUER, now + 301, 0).unwrap_err();
    assert_eq!(later.reason(), "expired");
}

/// Without its token the remote upstream refuses everything; the gateway never lets the agent's
/// own credential through instead.
#[test]
fn the_upstream_refuses_requests_without_the_gateways_token() {
    let b = Broker::new();
    let (status, _, body) = http(
        "POST",
        &format!("http://127.0.0.1:{}/mcp", b.remote.port),
        &[("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(status, 401, "{body}");
}

/// A token the gateway minted with itself as the audience authenticates an agent; revoking its
/// `jti`, or the agent, refuses it from the next request on. An expired one is refused too.
#[test]
fn the_gateways_own_tokens_authenticate_until_expired_or_revoked() {
    let b = Broker::new();
    let gateway = b.serve();
    let mint = |ttl: &str| {
        let out =
            b.d.output(&["token", "mint", "--agent", "reader", "--audience", &gateway.base, "--ttl", ttl, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let ping = |token: &str| {
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        let auth = format!("Bearer {token}");
        let (status, _, body) = http(
            "POST",
            &gateway.url("remote"),
            &[("Authorization", &auth), ("Content-Type", "application/json"), ("Accept", "application/json")],
            init,
        );
        (status, body)
    };
    let minted = mint("5m");
    let token = minted["token"].as_str().unwrap();
    assert_eq!(ping(token).0, 200, "{:?}", ping(token));

    let out = b.d.output(&["token", "revoke", minted["jti"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = ping(token);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");

    let short = mint("1s");
    let token = short["token"].as_str().unwrap();
    // A bound on how long expiry may take to be noticed, not a fixed wait.
    let body = eventually("the one-second token to be refused", || {
        let (status, body) = ping(token);
        (status == 401).then_some(body)
    });
    assert!(body.contains("expired"), "{body}");

    let fresh = mint("5m");
    let token = fresh["token"].as_str().unwrap();
    assert_eq!(ping(token).0, 200);
    let out = b.d.output(&["agents", "revoke", "reader"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = ping(token);
    assert_eq!(status, 401, "a revoked agent's token: {body}");
    drop(gateway);
    b.d.verify_ok();
}

/// RFC 8693: an agent trades its API key for a token scoped to one tool of one upstream, which
/// that upstream accepts; a tool policy does not allow it unconditionally is refused (403),
/// and so are malformed requests; every exchange is recorded.
#[test]
fn token_exchange_issues_down_scoped_tokens_only_where_policy_allows() {
    let b = Broker::new();
    let key = issue_key(&b.d, "reader");
    let gateway = b.serve();
    let base = [
        ("grant_type", EXCHANGE),
        ("subject_token", key.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
        ("audience", "remote"),
    ];

    let (status, headers, body) = exchange(&gateway, &[&base[..], &[("scope", "claims")]].concat());
    assert_eq!(status, 200, "{body}");
    assert_eq!(common::harness::header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(body["issued_token_type"], "urn:ietf:params:oauth:token-type:jwt");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = custos_secrets::verify(token, &gateway.jwks(), AUDIENCE, ISSUER, now, 0).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("reader"), Some("claims")));
    // The upstream itself accepts it.
    let (status, _, answer) = http(
        "POST",
        &format!("http://127.0.0.1:{}/mcp", b.remote.port),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    assert_eq!(status, 200, "{answer}");

    // `environment` is privileged: readers may not call it, so no token for it.
    let (status, _, body) = exchange(&gateway, &[&base[..], &[("scope", "claims environment")]].concat());
    assert_eq!((status, body["error"].as_str()), (403, Some("access_denied")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("remote/environment"), "{body}");

    let refusals = [
        (vec![("grant_type", "client_credentials")], 400, "unsupported_grant_type"),
        (vec![("scope", "claims"), ("audience", "nowhere")], 400, "invalid_target"),
        (vec![("scope", "claims"), ("audience", "leaky")], 400, "invalid_target"),
        (vec![("scope", "claims"), ("subject_token", "cst_bogus_bogus")], 400, "invalid_grant"),
        (vec![("scope", "")], 400, "invalid_scope"),
    ];
    for (overrides, want_status, want_error) in &refusals {
        let mut pairs: Vec<(&str, &str)> = base.to_vec();
        for (k, v) in overrides {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k, v));
        }
        let (status, _, body) = exchange(&gateway, &pairs);
        assert_eq!((status, body["error"].as_str().unwrap()), (*want_status, *want_error), "{overrides:?}: {body}");
    }
    drop(gateway);
    let events = b.d.events();
    let issued = of_kind(&events, "token.exchanged");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["agent"], "reader");
    assert_eq!(issued[0]["detail"]["jti"], claims["jti"]);
    assert!(!serde_json::to_string(&events).unwrap().contains(token), "the token itself is never recorded");
    assert_eq!(of_kind(&events, "token.exchange_refused").len(), 1 + refusals.len());
}

/// `custos keys rotate` while the gateway runs: the new key is published at once and mints the
/// calls' tokens once its activation delay has passed (PyJWT, which refetches the JWKS for an
/// unknown kid, accepts them); the old key stays in the JWKS so the tokens it signed keep
/// verifying until they expire.
#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let b = Broker::new();
    let key = issue_key(&b.d, "reader");
    let gateway = b.serve();
    let before = python_http(&gateway.url("remote"), &key, &["--call", "claims", "{}", "--terminate"]);
    let old_kid = serde_json::from_str::<Value>(&text(&before, 0)).unwrap()["kid"].clone();
    let out = b.d.output(&["token", "mint", "--agent", "reader", "--audience", AUDIENCE, "--json"]);
    let old_token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned();

    let out = b.d.output(&["keys", "rotate", "--activate-in", "2s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jwks = eventually("the gateway to publish the new key", || {
        let jwks = gateway.jwks();
        (jwks["keys"].as_array().unwrap().len() == 2).then_some(jwks)
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    custos_secrets::verify(&old_token, &jwks, AUDIENCE, ISSUER, now, 0).expect("the old key's token still verifies");

    // A bound on how long activation may take to be seen, not a fixed wait.
    let new_kid = eventually("the new key to mint", || {
        let after = python_http(&gateway.url("remote"), &key, &["--call", "claims", "{}", "--terminate"]);
        let kid = serde_json::from_str::<Value>(&text(&after, 0)).unwrap()["kid"].clone();
        (kid != old_kid).then_some(kid)
    });
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == new_kid));
}

/// `custos run` brokers the same way: the stdio child gets its key in its environment, and
/// neither the MCP client nor `custos run`'s own stderr (where the child's stderr goes) sees it.
#[test]
fn custos_run_injects_into_the_child_and_guards_what_it_says() {
    let b = Broker::new();
    let mut cmd = std::process::Command::new(common::harness::custos_bin());
    cmd.arg("run").arg("--config").arg(b.d.config()).args(["--agent", "reader", "--server", "leaky"]);
    cmd.env("CUSTOS_TEST_CANARY", &b.canary);
    let mut session = common::harness::RawSession::spawn(cmd);
    session.initialize();
    let answer = session.request(json!(2), "tools/call", json!({ "name": "environment", "arguments": {} }));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    assert!(text.contains("LEAKY_API_KEY=[REDACTED:secret]"), "{text}");
    let (_, stderr) = session.finish();
    assert!(stderr.contains("LEAKY_API_KEY=[REDACTED:secret]"), "{stderr}");
    for produced in [&text, &stderr, &serde_json::to_string(&b.d.events()).unwrap()] {
        assert!(!produced.contains(&b.canary));
    }
    let events = b.d.events();
    let channels: Vec<&Value> = of_kind(&events, "finding.recorded").iter().map(|f| &f["detail"]["channel"]).collect();
    assert!(channels.contains(&&json!("message")) && channels.contains(&&json!("stderr")), "{channels:?}");
}
