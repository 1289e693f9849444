//! `custos run` driven line by line: what no SDK client sends (malformed, oversized, odd ids,
//! batches), the stateless protocol generation, the upstream dying, and signals.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{of_kind, Deployment, RawSession, POLICIES};
use serde_json::{json, Value};

#[test]
fn malformed_and_non_json_rpc_lines_get_errors_and_the_proxy_keeps_serving() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    s.initialize();
    s.send("this is not json");
    let v = s.recv();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    s.send(r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#);
    let v = s.recv();
    assert_eq!((v["error"]["code"].clone(), v["id"].clone()), (json!(-32600), json!(5)));
    s.send(r#"[{"jsonrpc":"2.0","id":6,"method":"ping"}]"#);
    assert_eq!(s.recv()["error"]["code"], -32600, "batches are refused");
    s.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{}}}"#);
    let v = s.recv();
    assert_eq!((v["error"]["code"].clone(), v["id"].clone()), (json!(-32602), json!(7)));
    // Still serving.
    let v = s.request(json!(8), "ping", json!({}));
    assert_eq!(v["result"], json!({}));
    let (status, _) = s.finish();
    assert!(status.success());
    let events = d.events();
    assert_eq!(of_kind(&events, "protocol.error").len(), 4, "{events:#?}");
    d.verify_ok();
}

#[test]
fn oversized_messages_are_refused_by_id_without_stopping_the_session() {
    let d = Deployment::new(POLICIES, "[limits]\nmax_message_bytes = 2048\n");
    let mut s = RawSession::sample(&d, &["--agent", "operator"]);
    s.initialize();
    let big = "x".repeat(10_000);
    s.send(&format!(
        r#"{{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}"}}}}}}"#
    ));
    let v = s.recv();
    assert_eq!(v["id"], "big-1");
    assert_eq!(v["error"]["code"], -32600);
    assert!(v["error"]["message"].as_str().unwrap().contains("exceeds the limit of 2048 bytes"), "{v}");
    // An answer from upstream over the limit is refused too, answered by id.
    let v = s.request(json!(2), "tools/call", json!({"name": "big_output", "arguments": {"bytes": 5000}}));
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let v = s.request(json!(3), "tools/call", json!({"name": "echo", "arguments": {"text": "small"}}));
    assert_eq!(v["result"]["content"][0]["text"], "small");
    let (status, _) = s.finish();
    assert!(status.success());
    let events = d.events();
    let errors = of_kind(&events, "protocol.error");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["detail"]["method"], "tools/call");
    assert!(of_kind(&events, "call.requested").iter().all(|e| e["detail"]["arguments_sha256"].is_string()));
    d.verify_ok();
}

#[test]
fn ids_and_unknown_fields_pass_through_unchanged() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    s.initialize();
    s.send(r#"{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"echo","arguments":{"text":"t"},"_meta":{"progressToken":"p1","x-trace":"abc"}},"x-vendor":{"k":1}}"#);
    let line = s.recv_line();
    assert!(line.contains(r#""id":3.0"#), "id spelling kept: {line}");
    s.send(r#"{"jsonrpc":"2.0","id":"3","method":"ping"}"#);
    let line = s.recv_line();
    assert!(line.contains(r#""id":"3""#), "{line}");
    // A reused outstanding id cannot be told apart from the first: refused.
    let (status, _) = s.finish();
    assert!(status.success());
}

#[test]
fn denied_calls_name_the_policy_and_never_reach_the_upstream() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &["--agent", "operator", "--run", "run-deny"]);
    s.initialize();
    let v = s.request(json!(1), "tools/call", json!({"name": "delete_everything", "arguments": {"confirm": true}}));
    assert_eq!(v["error"]["code"], -32001);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("never-delete") && msg.contains("deleting everything is never allowed"), "{msg}");
    assert_eq!(v["error"]["data"]["policies"], json!(["never-delete"]));
    assert_eq!(v["error"]["data"]["run"], "run-deny");
    let (status, _) = s.finish();
    assert!(status.success());
    let events = d.events();
    assert_eq!(of_kind(&events, "call.decided")[0]["decision"], "deny");
    assert!(of_kind(&events, "call.finished").is_empty(), "a denied call never runs");
    // Query by decision and run.
    let out = d.output(&["audit", "query", "--decision", "deny", "--run", "run-deny", "--json"]);
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tool"], "sample/delete_everything");
}

/// server-everything answers stateless (2026-07-28) requests without `initialize`; the rmcp
/// sample server does not, so this test uses the official server.
#[test]
fn stateless_revision_requests_pass_and_are_attributed_with_their_version() {
    let d = Deployment::new(POLICIES, "[[servers]]\nname = \"everything\"\ntrust_annotations = true\n");
    let everything = common::harness::server_everything();
    let mut s =
        RawSession::start(&d, &["--agent", "operator", "--server", "everything"], &["node", &everything, "stdio"]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    // No initialize. server/discover gets whatever the upstream answers, passed through.
    let v = s.request(json!(1), "server/discover", json!({"_meta": meta}));
    assert!(v.get("result").is_some() || v["error"]["code"] == -32601, "{v}");
    let v = s.request(json!(2), "tools/list", json!({"_meta": meta}));
    let tools: Vec<&str> =
        v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(tools.contains(&"echo"), "{v}");
    let v = s.request(json!(3), "tools/call", json!({"name": "echo", "arguments": {"message": "s"}, "_meta": meta}));
    assert_eq!(v["result"]["content"][0]["text"], "Echo: s", "{v}");
    let (status, _) = s.finish();
    assert!(status.success());
    let events = d.events();
    let req = of_kind(&events, "call.requested")[0];
    assert_eq!(req["detail"]["protocol"], "2026-07-28");
    assert_eq!(req["tool"], "everything/echo");
}

#[test]
fn session_protocol_version_is_recorded_on_calls() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    s.initialize();
    s.request(json!(1), "tools/list", json!({}));
    let v = s.request(json!(2), "tools/call", json!({"name": "add", "arguments": {"a": 2, "b": 3}}));
    assert_eq!(v["result"]["content"][0]["text"], "5");
    s.finish();
    let events = d.events();
    let req = of_kind(&events, "call.requested")[0];
    assert_eq!(req["detail"]["protocol"], "2025-06-18");
    assert_eq!(req["detail"]["class"], "read");
    let fin = of_kind(&events, "call.finished")[0];
    assert_eq!(fin["detail"]["outcome"], "ok");
    assert!(fin["detail"]["sha256"].as_str().unwrap().len() == 64);
    assert!(fin["detail"].get("result").is_none(), "raw results are opt-in");
}

#[test]
fn arguments_and_results_are_recorded_only_when_configured() {
    let d = Deployment::new(POLICIES, "[audit]\nrecord_arguments = true\nrecord_results = true\n");
    let mut s = RawSession::sample(&d, &[]);
    s.initialize();
    s.request(json!(1), "tools/list", json!({}));
    s.request(json!(2), "tools/call", json!({"name": "echo", "arguments": {"text": "kept"}}));
    s.finish();
    let events = d.events();
    assert_eq!(of_kind(&events, "call.requested")[0]["detail"]["arguments"]["text"], "kept");
    assert_eq!(of_kind(&events, "call.finished")[0]["detail"]["result"]["content"][0]["text"], "kept");
}

#[test]
fn upstream_crash_fails_pending_requests_and_exits_non_zero() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &["--agent", "operator"]);
    s.initialize();
    let v = s.request(json!("c1"), "tools/call", json!({"name": "crash", "arguments": {}}));
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("exited (exit code 3)"), "{v}");
    let (status, stderr) = s.wait();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("upstream `sample` exited (exit code 3)"), "{stderr}");
    let events = d.events();
    assert_eq!(of_kind(&events, "upstream.exited").len(), 1);
    assert_eq!(of_kind(&events, "call.finished")[0]["detail"]["outcome"], "upstream_exited");
    d.verify_ok();
}

#[test]
fn sigterm_shuts_down_cleanly_and_flushes_the_log() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &[]);
    s.initialize();
    s.request(json!(1), "ping", json!({}));
    let pid = s.child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let (status, _) = s.wait();
    assert!(status.success(), "{status:?}");
    let events = d.events();
    let ended = of_kind(&events, "run.ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["detail"]["reason"], "signal SIGTERM");
    d.verify_ok();
}

#[test]
fn a_named_run_continues_its_step_numbers() {
    let d = Deployment::new(POLICIES, "");
    for _ in 0..2 {
        let mut s = RawSession::sample(&d, &["--run", "r-1"]);
        s.initialize();
        s.request(json!(1), "tools/call", json!({"name": "echo", "arguments": {"text": "x"}}));
        s.finish();
    }
    let steps: Vec<u64> = of_kind(&d.events(), "call.requested").iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![1, 2]);
}

#[test]
fn cancellation_passes_through_and_the_call_is_closed_in_the_log() {
    // The sample server keeps a cancelled handler alive after its input closes; a short grace
    // makes custos stop it sooner.
    let d = Deployment::new(POLICIES, "[limits]\nshutdown_grace_ms = 500\n");
    let mut s = RawSession::sample(&d, &["--agent", "operator"]);
    s.initialize_with(json!({"sampling": {}}));
    s.send(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask_model","arguments":{"prompt":"p"}}}"#,
    );
    // The server's request to the client crosses the gateway; the client never answers it and
    // cancels its call instead.
    let asked = s.recv();
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    s.send(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"changed my mind"}}"#,
    );
    let v = s.request(json!(6), "ping", json!({}));
    assert_eq!(v["result"], json!({}));
    let (status, _) = s.finish();
    assert!(status.success());
    let events = d.events();
    let finished = of_kind(&events, "call.finished");
    assert_eq!(finished.len(), 1, "every allowed call is closed in the log: {events:#?}");
    assert_eq!(finished[0]["detail"]["cancelled"], true);
    d.verify_ok();
}

#[test]
fn requests_past_the_pending_limit_are_refused_until_answers_come() {
    let d = Deployment::new(POLICIES, "[limits]\nmax_pending_requests = 1\nshutdown_grace_ms = 500\n");
    let mut s = RawSession::sample(&d, &["--agent", "operator"]);
    s.initialize_with(json!({"sampling": {}}));
    // The call stays unanswered while the server waits for our sampling answer.
    s.send(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask_model","arguments":{"prompt":"p"}}}"#,
    );
    let asked = s.recv();
    assert_eq!(asked["method"], "sampling/createMessage");
    let v = s.request(json!(2), "ping", json!({}));
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("too many unanswered requests (limit 1)"));
    // Reusing the outstanding id is refused too.
    let v = s.request(json!(1), "ping", json!({}));
    assert!(v["error"]["message"].as_str().unwrap().contains("already in use"), "{v}");
    // Answer the server; the call completes and there is room again.
    s.send_json(&json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "fine"}, "model": "m"}}));
    let (v, _) = s.recv_answer(&json!(1));
    assert_eq!(v["result"]["content"][0]["text"], "model said: fine", "{v}");
    assert_eq!(s.request(json!(3), "ping", json!({}))["result"], json!({}));
    s.finish();
}

#[test]
fn a_parent_run_is_recorded_and_another_agents_run_cannot_be_continued() {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &["--run", "child-1", "--parent-run", "plan-1"]);
    s.initialize();
    s.finish();
    let events = d.events();
    assert_eq!(of_kind(&events, "run.started")[0]["detail"]["parent_run"], "plan-1");
    let out = d
        .custos(&["run", "--agent", "operator", "--run", "child-1"])
        .arg("--")
        .arg(common::harness::sample_server())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `child-1` belongs to agent `reader`"));
}
