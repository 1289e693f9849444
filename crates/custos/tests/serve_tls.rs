//! `custos serve` over TLS, with agents named by the SPIFFE ID of their client certificate.
//!
//! The end-to-end client is the official Python SDK over https with a client certificate; the
//! refusals no SDK would provoke (no certificate, another CA's certificate, plain HTTP to the
//! TLS port, a bearer of one agent on another agent's certificate) are driven with curl. The
//! certificates are made here, in each test's folder, with rcgen.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::harness::{
    header, http, issue_key, of_kind, peers_python, repo_root, sample_server, Deployment, Served, ANSWER_TIMEOUT,
    POLICIES,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;

const BILLING: &str = "spiffe://corp.example/agent/billing";
const OPS: &str = "spiffe://corp.example/agent/ops";
const STRANGER: &str = "spiffe://corp.example/agent/stranger";
const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes `NAME.pem` and `NAME.key`: a leaf `issuer` signs, with `sans` and `usage`.
fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'_, KeyPair>,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

/// `tls/`: `ca.pem`; `server` for 127.0.0.1 and localhost; clients `billing`, `ops`,
/// `stranger` (a SPIFFE ID no agent has), `twice` (two SPIFFE IDs), `no-id` (no URI); and
/// `foreign`, billing's SPIFFE ID from another CA.
fn make_pki(dir: &Path) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let ca = new_ca("custos test ca");
    std::fs::write(tls.join("ca.pem"), ca.pem()).unwrap();
    let server_sans =
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap()), SanType::DnsName("localhost".try_into().unwrap())];
    leaf(&tls, "server", &ca, server_sans, ExtendedKeyUsagePurpose::ServerAuth);
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    leaf(&tls, "billing", &ca, vec![uri(BILLING)], client.clone());
    leaf(&tls, "ops", &ca, vec![uri(OPS)], client.clone());
    leaf(&tls, "stranger", &ca, vec![uri(STRANGER)], client.clone());
    leaf(&tls, "twice", &ca, vec![uri(BILLING), uri(OPS)], client.clone());
    leaf(&tls, "no-id", &ca, vec![SanType::DnsName("agent.example".try_into().unwrap())], client.clone());
    leaf(&tls, "foreign", &new_ca("another ca"), vec![uri(BILLING)], client);
}

/// A deployment served over TLS with the admin API on: agents `billing` (readers) and `ops`
/// (operators) named by SPIFFE ID, beside the harness's `reader` and `operator`. `tls_extra`
/// goes in `[serve.tls]`.
fn tls_deployment(tls_extra: &str) -> Deployment {
    let extra = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token_file = "admin.token"
[serve.tls]
cert_file = "tls/server.pem"
key_file = "tls/server.key"
client_ca_file = "tls/ca.pem"
{tls_extra}
[[agents]]
id = "billing"
owner = "carol@example.com"
purpose = "reads invoices"
groups = ["readers"]
spiffe_id = "{BILLING}"
[[agents]]
id = "ops"
owner = "dave@example.com"
purpose = "operates"
groups = ["operators"]
spiffe_id = "{OPS}"
"#
    );
    let d = Deployment::new(POLICIES, &extra);
    make_pki(d.dir.path());
    std::fs::write(d.dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "name = \"sample\"\n",
        &format!("name = \"sample\"\ncommand = [{:?}]\n", sample_server().to_str().unwrap()),
    );
    std::fs::write(d.config(), text).unwrap();
    d
}

fn tls_file(d: &Deployment, name: &str) -> PathBuf {
    d.dir.path().join("tls").join(name)
}

/// The Python SDK's Streamable HTTP client over https, trusting the test CA, presenting the
/// client certificate `cert` (a name from `make_pki`) when given; its JSON report.
fn python_https(d: &Deployment, url: &str, cert: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = Command::new(peers_python());
    cmd.arg(repo_root().join("tests/peers/mcp_http_client.py")).arg(url).arg("--cacert").arg(tls_file(d, "ca.pem"));
    if let Some(name) = cert {
        cmd.arg("--cert").arg(tls_file(d, &format!("{name}.pem")));
        cmd.arg("--key").arg(tls_file(d, &format!("{name}.key")));
    }
    let out = cmd.args(args).output().unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What curl made of one request.
#[derive(Debug)]
enum Curl {
    /// An HTTP answer: status, lower-cased headers, body.
    Answer(u16, Vec<(String, String)>, String),
    /// No HTTP answer: curl's exit code and message (a refused handshake, a closed connection).
    Failed(i32, String),
}

impl Curl {
    fn status(&self) -> u16 {
        match self {
            Curl::Answer(status, _, _) => *status,
            Curl::Failed(code, err) => panic!("curl failed ({code}): {err}"),
        }
    }
}

/// `curl` POSTing `body` to `url` (GET when empty) over https with the test CA, presenting
/// `cert` when given, with `headers`.
fn curl(d: &Deployment, url: &str, cert: Option<&str>, headers: &[(&str, &str)], body: &str) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--include", "--http1.1"]);
    cmd.arg("--max-time").arg(ANSWER_TIMEOUT.as_secs().to_string());
    cmd.arg("--cacert").arg(tls_file(d, "ca.pem"));
    if let Some(name) = cert {
        cmd.arg("--cert").arg(tls_file(d, &format!("{name}.pem")));
        cmd.arg("--key").arg(tls_file(d, &format!("{name}.key")));
    }
    for (k, v) in headers {
        cmd.arg("--header").arg(format!("{k}: {v}"));
    }
    if !body.is_empty() {
        cmd.args(["--header", "Content-Type: application/json", "--data-binary", body]);
    }
    let out = cmd.arg(url).output().expect("curl is installed (`.ci/run` installs it)");
    if !out.status.success() {
        return Curl::Failed(out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    Curl::Answer(status, headers, body.to_owned())
}

/// The admin `/metrics` text.
fn metrics(served: &Served) -> String {
    let admin = served.admin.clone().unwrap();
    let (status, _, text) =
        http("GET", &format!("{admin}/metrics"), &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))], "");
    assert_eq!(status, 200);
    text
}

fn decided(events: &[Value], run: &str) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["run"] == run && e["kind"] == "call.decided")
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap().to_owned();
            (field("agent"), field("tool"), field("decision"))
        })
        .collect()
}

/// Two agents, each with its own certificate and its own rights, through the official Python
/// SDK over https: every call is decided and recorded as the agent its certificate names, and
/// stopping the gateway ends the session left open.
#[test]
fn the_python_sdk_over_mtls_calls_as_the_agent_its_certificate_names() {
    let d = tls_deployment("");
    let served = Served::start(&d);
    assert!(served.base.starts_with("https://127.0.0.1:"), "{}", served.base);
    let url = served.url("sample");
    let echo = ["--call", "echo", r#"{"text":"over mtls"}"#];
    let write = ["--call", "write_note", r#"{"title":"t","body":"b"}"#];

    // Listing the tools first records their annotations, so `echo` is classified as a read.
    let billing =
        python_https(&d, &url, Some("billing"), &[&["--list-tools"], &echo[..], &write[..], &["--terminate"]].concat());
    assert_eq!(billing["http_error"], Value::Null, "{billing}");
    let steps = billing["steps"].as_array().unwrap();
    let tools: Vec<&str> = steps[0]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tools.contains(&"echo") && !tools.contains(&"write_note"), "a reader sees read tools: {tools:?}");
    assert_eq!(steps[1]["content"][0], "over mtls", "{billing}");
    assert_eq!(steps[2]["error"]["code"], -32001, "a reader may not write: {billing}");
    assert_eq!(billing["terminate"]["status"], 204);

    let ops = python_https(&d, &url, Some("ops"), &[&write[..], &echo[..]].concat());
    assert_eq!(ops["http_error"], Value::Null, "{ops}");
    let steps = ops["steps"].as_array().unwrap();
    assert!(steps[0]["error"].is_null(), "an operator may write: {ops}");
    assert_eq!(steps[1]["content"][0], "over mtls");

    assert_eq!(served.stop().code(), Some(0), "stopping over tls is graceful");
    let events = d.events();
    let billing_run = billing["session_id"].as_str().unwrap();
    let ops_run = ops["session_id"].as_str().unwrap();
    let row = |agent: &str, tool: &str, decision: &str| (agent.to_owned(), tool.to_owned(), decision.to_owned());
    assert_eq!(
        decided(&events, billing_run),
        [row("billing", "sample/echo", "allow"), row("billing", "sample/write_note", "deny")]
    );
    assert_eq!(
        decided(&events, ops_run),
        [row("ops", "sample/write_note", "allow"), row("ops", "sample/echo", "allow")]
    );
    assert!(events.iter().filter(|e| e["run"] == billing_run).all(|e| e["agent"] == "billing"));
    assert!(events.iter().filter(|e| e["run"] == ops_run).all(|e| e["agent"] == "ops"));
    let ended: Vec<&Value> = of_kind(&events, "run.ended").into_iter().filter(|e| e["run"] == ops_run).collect();
    assert_eq!(ended[0]["detail"]["reason"], "gateway shutting down", "{ended:?}");
    assert!(of_kind(&events, "auth.failed").is_empty());
    d.verify_ok();
}

/// What no SDK sends: no certificate, another CA's certificate, plain HTTP to the TLS port, an
/// unknown SPIFFE ID, two SPIFFE IDs, a bearer of one agent on another's certificate. Each is
/// refused (at the handshake or with a 401) and recorded or counted; the gateway keeps serving.
#[test]
fn refusals_over_tls_are_recorded_and_the_gateway_keeps_serving() {
    let d = tls_deployment("");
    let reader_key = issue_key(&d, "reader");
    let billing_key = issue_key(&d, "billing");
    let served = Served::start(&d);
    let url = served.url("sample");
    let accept = ("Accept", "application/json, text/event-stream");

    // No certificate, no bearer: the challenge points at https metadata.
    let Curl::Answer(status, headers, body) = curl(&d, &url, None, &[accept], INIT) else { panic!("no answer") };
    assert_eq!(status, 401, "{body}");
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp/sample", served.base);
    assert_eq!(header(&headers, "www-authenticate").unwrap(), format!("Bearer resource_metadata=\"{metadata_url}\""));
    let metadata: Value = match curl(&d, &metadata_url, None, &[], "") {
        Curl::Answer(200, _, body) => serde_json::from_str(&body).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(metadata["resource"], url);

    // Another CA's certificate: the handshake is refused; the next client is served.
    assert!(matches!(curl(&d, &url, Some("foreign"), &[accept], INIT), Curl::Failed(..)));
    // Plain HTTP to the TLS port, and bytes that are not even HTTP.
    for garbage in [
        format!("POST /mcp/sample HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{INIT}", INIT.len()),
        "\x00\x01garbage".to_owned(),
    ] {
        let mut tcp = std::net::TcpStream::connect(served.base.strip_prefix("https://").unwrap()).unwrap();
        tcp.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        tcp.write_all(garbage.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(!answer.starts_with(b"HTTP/"), "plain http gets no http answer");
    }
    // Two SPIFFE IDs: ambiguous, refused at the handshake.
    assert!(matches!(curl(&d, &url, Some("twice"), &[accept], INIT), Curl::Failed(..)));
    assert_eq!(curl(&d, &url, Some("billing"), &[accept], INIT).status(), 200, "still serving");

    // A trusted certificate with a SPIFFE ID no agent has, or with none at all.
    assert_eq!(curl(&d, &url, Some("stranger"), &[accept], INIT).status(), 401);
    assert_eq!(curl(&d, &url, Some("no-id"), &[accept], INIT).status(), 401);
    // A bearer of `reader` on billing's certificate: refused, neither is picked.
    let reader_bearer = format!("Bearer {reader_key}");
    let Curl::Answer(status, headers, body) =
        curl(&d, &url, Some("billing"), &[accept, ("Authorization", &reader_bearer)], INIT)
    else {
        panic!("no answer")
    };
    assert_eq!(status, 401, "{body}");
    assert!(header(&headers, "www-authenticate").unwrap().contains("invalid_token"));
    assert!(!body.contains(&reader_key));
    // Billing's own bearer on billing's certificate agrees; a bearer alone still works over tls.
    let billing_bearer = format!("Bearer {billing_key}");
    assert_eq!(curl(&d, &url, Some("billing"), &[accept, ("Authorization", &billing_bearer)], INIT).status(), 200);
    assert_eq!(curl(&d, &url, None, &[accept, ("Authorization", &reader_bearer)], INIT).status(), 200);

    let text = metrics(&served);
    for line in [
        r#"custos_tls_handshake_failures_total{reason="client_certificate"} 1"#,
        r#"custos_tls_handshake_failures_total{reason="peer_identity"} 1"#,
        r#"custos_tls_handshake_failures_total{reason="protocol"} 2"#,
        r#"custos_auth_failures_total{reason="unknown_spiffe_id"} 1"#,
        r#"custos_auth_failures_total{reason="credential_mismatch"} 1"#,
        r#"custos_auth_failures_total{reason="missing_credential"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }

    // Revoking an agent refuses its certificate on the next request.
    let out = d.output(&["agents", "revoke", "billing"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(curl(&d, &url, Some("billing"), &[accept], INIT).status(), 401);

    drop(served);
    let events = d.events();
    let failed = of_kind(&events, "auth.failed");
    let reasons: Vec<&str> = failed.iter().map(|e| e["detail"]["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["missing_credential", "unknown_spiffe_id", "missing_credential", "credential_mismatch", "revoked"]
    );
    let unknown = failed[1];
    assert_eq!(unknown["detail"]["spiffe_id"], STRANGER, "the refused workload is named");
    assert_eq!(unknown["detail"]["status"], 401);
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("BEGIN CERTIFICATE") && !text.contains(&reader_key), "no certificate or key is recorded");
}

/// `client_auth = "required"`: a client without a certificate fails the handshake, even with a
/// valid bearer; with one it is served, at `/mcp/{server}` and at the federated `/mcp`.
#[test]
fn required_client_certificates_refuse_the_handshake_without_one() {
    let d = tls_deployment("client_auth = \"required\"");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let accept = ("Accept", "application/json, text/event-stream");
    let bearer = format!("Bearer {key}");
    assert!(matches!(curl(&d, &url, None, &[accept, ("Authorization", &bearer)], INIT), Curl::Failed(..)));
    assert_eq!(curl(&d, &url, Some("ops"), &[accept], INIT).status(), 200);
    let federated = format!("{}/mcp", served.base);
    assert_eq!(curl(&d, &federated, Some("ops"), &[accept], INIT).status(), 200, "the federated endpoint too");
    assert!(metrics(&served)
        .lines()
        .any(|l| l == r#"custos_tls_handshake_failures_total{reason="client_certificate"} 1"#));
}

/// Start-up refuses a TLS setup it cannot use, naming the file or the key.
#[test]
fn unusable_tls_settings_refuse_to_start_naming_the_file_or_key() {
    let serve = |d: &Deployment| {
        let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let edit = |d: &Deployment, from: &str, to: &str| {
        let text = std::fs::read_to_string(d.config()).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(d.config(), text.replacen(from, to, 1)).unwrap();
    };
    let d = tls_deployment("");
    std::fs::remove_file(tls_file(&d, "server.pem")).unwrap();
    let (code, err) = serve(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("[serve.tls]") && err.contains("server.pem") && err.contains("cannot read"), "{err}");

    let d = tls_deployment("");
    edit(&d, "key_file = \"tls/server.key\"", "key_file = \"tls/billing.key\"");
    let (code, err) = serve(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("billing.key") && err.contains("does not match"), "{err}");

    let d = tls_deployment("client_auth = \"required\"");
    edit(&d, "client_ca_file = \"tls/ca.pem\"\n", "");
    let (code, err) = serve(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`serve.tls.client_auth`") && err.contains("client_ca_file"), "{err}");

    let d = tls_deployment("");
    edit(&d, OPS, BILLING);
    let (code, err) = serve(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("spiffe_id`") && err.contains("`billing`") && err.contains("`ops`"), "{err}");

    let d = tls_deployment("");
    edit(&d, OPS, "spiffe://corp.example/agent/../ops");
    let (code, err) = serve(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("spiffe_id`") && err.contains("`.` or `..`"), "{err}");
}
