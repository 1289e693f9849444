//! Held calls end to end: a privileged `tools/call` through the real binary waits for a human,
//! who decides from the CLI (another process, same database) or the admin API, while the client
//! waits; and everything an approval must not allow (replay, changed arguments, expiry, the
//! wrong approver, self-approval) is refused and on the record.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use common::harness::{of_kind, python_http, sample_server, Deployment, RawSession, Served};
use serde_json::{json, Value};

/// Operators may call the sample server's tools; privileged ones need a yes from `ops`.
const POLICIES: &str = common::harness::HELD_PRIVILEGED_POLICIES;

/// `write_note` is privileged here; `ops` is carol; `extra` goes into `[approvals]`.
fn deployment(approvals: &str, extra: &str) -> Deployment {
    let d = Deployment::new(
        POLICIES,
        &format!("[approvals]\n{approvals}\n[approvals.groups.ops]\nmembers = [\"carol@example.com\"]\n{extra}"),
    );
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "name = \"sample\"\n",
        &format!(
            "name = \"sample\"\ncommand = [{:?}]\ntools = {{ \"write_note\" = \"privileged\" }}\n",
            sample_server().to_str().unwrap()
        ),
    );
    std::fs::write(d.config(), text).unwrap();
    d
}

fn session(d: &Deployment) -> RawSession {
    let mut s = RawSession::sample(d, &["--agent", "operator", "--run", "run-1"]);
    s.initialize();
    s
}

fn note_call(id: u64, text: &str, token: Option<&str>) -> Value {
    let mut params = json!({"name": "write_note", "arguments": {"title": "t", "body": text}});
    if let Some(token) = token {
        params["_meta"] = json!({ "progressToken": token });
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// `custos approvals VERB ID --as WHO [--reason R]`: exit code and output.
fn decide(d: &Deployment, verb: &str, id: &str, who: &str, reason: Option<&str>) -> (i32, String) {
    let mut args = vec!["approvals", verb, id, "--as", who];
    if let Some(reason) = reason {
        args.extend(["--reason", reason]);
    }
    let out = d.output(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), text)
}

/// The approval id a held call's progress or timeout error names.
fn approval_id(v: &Value) -> String {
    let text = v.to_string();
    let start = text.find("apr_").unwrap();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// A webhook receiver: answers each POST 200 and hands over its `Custos-Signature` and body.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut signature, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                match name.to_ascii_lowercase().as_str() {
                    "custos-signature" => signature = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            if tx.send((signature, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn a_held_call_runs_once_approved_from_the_cli_while_the_client_waits() {
    let (hook, deliveries) = webhook_receiver();
    let secret = "a-webhook-secret-of-the-ops-team";
    let d =
        deployment("timeout_ms = 30000", &format!("webhook_url = {hook:?}\nwebhook_secret_file = \"ops.secret\"\n"));
    std::fs::write(d.dir.path().join("ops.secret"), secret).unwrap();
    let mut s = session(&d);

    // The client asked for progress: it hears that the call waits, and for which approval.
    s.send_json(&note_call(7, "refund 120", Some("p-7")));
    let progress = s.recv();
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    assert_eq!(progress["params"]["progressToken"], "p-7");
    let id = approval_id(&progress);
    // Other traffic is not held up by the held call.
    assert!(s.request(json!(8), "ping", json!({})).get("result").is_some());

    // The group's webhook was told, signed.
    let (signature, body) = deliveries.recv_timeout(common::harness::ANSWER_TIMEOUT).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(custos_approvals::webhook::verify(secret.as_bytes(), &signature, &body, now, 300), "{signature}");
    let mut tampered = body.clone();
    tampered[0] ^= 1;
    assert!(!custos_approvals::webhook::verify(secret.as_bytes(), &signature, &tampered, now, 300));
    let announced: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(announced["approval"]["id"], id.as_str());

    // Not in the group, the agent itself: refused, and the call still waits.
    let (code, text) = decide(&d, "approve", &id, "mallory@example.com", None);
    assert_eq!(code, 1, "{text}");
    let (code, text) = decide(&d, "approve", &id, "operator", None);
    assert_eq!(code, 1, "{text}");
    // Carol approves from another process; the waiting call runs and its result comes back.
    let (code, text) = decide(&d, "approve", &id, "carol@example.com", Some("customer verified"));
    assert_eq!(code, 0, "{text}");
    let (answer, _) = s.recv_answer(&json!(7));
    assert!(answer.get("result").is_some(), "{answer}");

    // The same call again: the approval was used; it is held again under a new request.
    s.send_json(&note_call(9, "refund 120", Some("p-9")));
    let again = s.recv();
    let second = approval_id(&again);
    assert_ne!(second, id, "a used approval must not let the call through again");
    let (code, text) = decide(&d, "deny", &second, "carol@example.com", Some("already refunded"));
    assert_eq!(code, 0, "{text}");
    let (answer, _) = s.recv_answer(&json!(9));
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("already refunded"), "{answer}");
    // Deciding a decided request is refused.
    assert_eq!(decide(&d, "approve", &second, "carol@example.com", None).0, 1);
    let (status, _) = s.finish();
    assert!(status.success());

    let events = d.events();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["approval.requested", "approval.refused", "approval.approved", "approval.used", "approval.denied"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert!(of_kind(&events, "approval.notified").iter().any(|e| e["detail"]["status"] == 200));
    let decided: Vec<(&str, Value)> = of_kind(&events, "call.decided")
        .iter()
        .map(|e| (e["decision"].as_str().unwrap(), e["detail"]["approval"].clone()))
        .collect();
    assert_eq!(
        decided,
        vec![("hold", json!(id)), ("allow", json!(id)), ("hold", json!(second)), ("deny", json!(second))]
    );
    let approved = of_kind(&events, "approval.approved");
    assert_eq!(approved[0]["detail"]["approver"], "carol@example.com", "{}", approved[0]);
    assert_eq!(of_kind(&events, "call.finished").len(), 1, "only the approved call ran");
    d.verify_ok();
}

#[test]
fn a_retry_after_the_timeout_is_matched_to_the_same_request_and_binds_to_its_arguments() {
    let d = deployment("timeout_ms = 300", "");
    let mut s = session(&d);
    let v = s.request(json!(1), "tools/call", note_call(1, "a", None)["params"].clone());
    assert_eq!(v["error"]["code"], -32004, "{v}");
    let id = v["error"]["data"]["approval_id"].as_str().unwrap().to_owned();
    assert!(v["error"]["message"].as_str().unwrap().contains(&id));
    // Still pending: the identical retry waits on the same request.
    let v = s.request(json!(2), "tools/call", note_call(2, "a", None)["params"].clone());
    assert_eq!(v["error"]["data"]["approval_id"], id.as_str(), "{v}");
    assert_eq!(decide(&d, "approve", &id, "carol@example.com", None).0, 0);
    // Changed arguments are another call: a new request, not this approval.
    let v = s.request(json!(3), "tools/call", note_call(3, "b", None)["params"].clone());
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert_ne!(v["error"]["data"]["approval_id"], id.as_str());
    // The identical call goes through at once on the approval.
    let v = s.request(json!(4), "tools/call", note_call(4, "a", None)["params"].clone());
    assert!(v.get("result").is_some(), "{v}");
    s.finish();
    let events = d.events();
    assert_eq!(of_kind(&events, "approval.requested").len(), 2, "one request per distinct call");
    let held: Vec<&Value> =
        of_kind(&events, "call.finished").into_iter().filter(|e| e["detail"]["outcome"] == "held").collect();
    assert_eq!(held.len(), 3);
}

#[test]
fn another_run_needs_its_own_approval_and_an_expired_one_is_refused() {
    let d = deployment("timeout_ms = 300\nexpiry_ms = 60000", "");
    let mut s = session(&d);
    let v = s.request(json!(1), "tools/call", note_call(1, "a", None)["params"].clone());
    let id = v["error"]["data"]["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(decide(&d, "approve", &id, "carol@example.com", None).0, 0);
    s.finish();
    // The same call in another run: its own request.
    let mut other = RawSession::sample(&d, &["--agent", "operator", "--run", "run-2"]);
    other.initialize();
    let v = other.request(json!(1), "tools/call", note_call(1, "a", None)["params"].clone());
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert_ne!(v["error"]["data"]["approval_id"], id.as_str());
    other.finish();

    // A request past its expiry (the shortest allowed: 1 s) cannot be approved.
    let d = deployment("timeout_ms = 300\nexpiry_ms = 1000", "");
    let mut s = session(&d);
    let v = s.request(json!(1), "tools/call", note_call(1, "a", None)["params"].clone());
    let id = approval_id(&v);
    let deadline = std::time::Instant::now() + common::harness::ANSWER_TIMEOUT;
    while !String::from_utf8(d.output(&["approvals", "show", &id, "--json"]).stdout).unwrap().contains("\"expired\"") {
        assert!(std::time::Instant::now() < deadline, "the request never expired");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, text) = decide(&d, "approve", &id, "carol@example.com", None);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("expired"), "{text}");
    s.finish();
}

/// `custos serve`: the official Python SDK's call waits, hearing progress, while an approver
/// uses the admin API.
#[test]
fn through_custos_serve_an_admin_api_approval_releases_the_waiting_sdk_call() {
    let d = deployment(
        "timeout_ms = 30000",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nassert_approvers = true\n",
    );
    std::fs::write(d.dir.path().join("admin.token"), "an-admin-token-for-tests").unwrap();
    let key = common::harness::issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let admin = served.admin.clone().unwrap();
    let client = std::thread::spawn(move || {
        python_http(&url, &key, &["--call", "write_note", r#"{"title":"t","body":"deploy"}"#])
    });
    let auth = ("Authorization", "Bearer an-admin-token-for-tests");
    let deadline = std::time::Instant::now() + common::harness::ANSWER_TIMEOUT;
    let id = loop {
        let (status, _, body) = common::harness::http("GET", &format!("{admin}/v1/approvals"), &[auth], "");
        assert_eq!(status, 200, "{body}");
        let listed: Value = serde_json::from_str(&body).unwrap();
        if let Some(first) = listed["approvals"].as_array().and_then(|a| a.first()) {
            break first["id"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the held call never showed up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let approve = format!("{admin}/v1/approvals/{id}/approve");
    let (status, _, body) = common::harness::http("POST", &approve, &[auth], r#"{"approver":"operator"}"#);
    assert_eq!(status, 403, "the agent cannot approve its own call: {body}");
    let (status, _, body) =
        common::harness::http("POST", &approve, &[auth], r#"{"approver":"carol@example.com","reason":"ok"}"#);
    assert_eq!(status, 200, "{body}");
    let report = client.join().unwrap();
    let step = &report["steps"][0];
    assert_eq!((step["ok"].clone(), step["is_error"].clone()), (json!(true), json!(false)), "{report}");
    // The SDK asked for progress: it heard that the call waited, on the call's own stream.
    assert!(step["progress"].as_array().is_some_and(|p| !p.is_empty()), "no progress while held: {report}");
    let (status, _, _) = common::harness::http("POST", &approve, &[auth], r#"{"approver":"carol@example.com"}"#);
    assert_eq!(status, 409, "a decided request cannot be decided again");
    drop(served);
    let events = d.events();
    assert_eq!(of_kind(&events, "approval.used").len(), 1);
    assert!(of_kind(&events, "call.decided")
        .iter()
        .any(|e| e["decision"] == "allow" && e["detail"]["approval"] == id.as_str()));
}

/// A client that takes an SSE answer and keeps no GET stream still hears, on the held call's
/// own stream, that the call waits and for which approval; then gets the result there.
#[test]
fn a_held_calls_own_stream_carries_its_progress_then_its_result() {
    let d = deployment(
        "timeout_ms = 30000",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nassert_approvers = true\n",
    );
    std::fs::write(d.dir.path().join("admin.token"), "an-admin-token-for-tests").unwrap();
    let key = common::harness::issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let auth = format!("Bearer {key}");
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let (status, headers, body) =
        common::harness::http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], init);
    assert_eq!(status, 200, "{body}");
    let session = common::harness::header(&headers, "mcp-session-id").unwrap().to_owned();
    let call = note_call(3, "rollback", Some("p-3")).to_string();
    let mut stream = common::harness::SseStream::open(
        &url,
        &[("Authorization", &auth), ("Mcp-Session-Id", &session), ("Accept", "application/json, text/event-stream")],
        &call,
    );
    let progress = stream.next_event();
    assert_eq!(
        (progress["method"].clone(), progress["params"]["progressToken"].clone()),
        (json!("notifications/progress"), json!("p-3")),
        "{progress}"
    );
    let id = approval_id(&progress);
    let admin = served.admin.clone().unwrap();
    let (status, _, body) = common::harness::http(
        "POST",
        &format!("{admin}/v1/approvals/{id}/approve"),
        &[("Authorization", "Bearer an-admin-token-for-tests")],
        r#"{"approver":"carol@example.com"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer = loop {
        let event = stream.next_event();
        if event["id"] == 3 {
            break event;
        }
    };
    assert!(answer.get("result").is_some(), "{answer}");

    // The same through the federation (`/mcp`, which keeps no GET stream at all).
    let federated = format!("{}/mcp", served.base);
    let (status, headers, body) =
        common::harness::http("POST", &federated, &[("Authorization", &auth), ("Accept", "application/json")], init);
    assert_eq!(status, 200, "{body}");
    let session = common::harness::header(&headers, "mcp-session-id").unwrap().to_owned();
    let mut call = note_call(4, "rollback again", Some("p-4"));
    call["params"]["name"] = json!("sample__write_note");
    let mut stream = common::harness::SseStream::open(
        &federated,
        &[("Authorization", &auth), ("Mcp-Session-Id", &session), ("Accept", "application/json, text/event-stream")],
        &call.to_string(),
    );
    let progress = stream.next_event();
    assert_eq!(progress["params"]["progressToken"], "p-4", "{progress}");
    let id = approval_id(&progress);
    let (status, _, body) = common::harness::http(
        "POST",
        &format!("{admin}/v1/approvals/{id}/approve"),
        &[("Authorization", "Bearer an-admin-token-for-tests")],
        r#"{"approver":"carol@example.com"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer = loop {
        let event = stream.next_event();
        if event["id"] == 4 {
            break event;
        }
    };
    assert!(answer.get("result").is_some(), "{answer}");
}
