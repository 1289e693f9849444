//! The bounds `custos serve` puts on sessions, through the real binary: one agent cannot hold
//! more than `[serve] max_sessions_per_agent` of them (429, recorded and counted; other agents
//! go on opening theirs), and a session nothing has used for `session_idle_timeout_ms` is
//! closed: its upstream process stopped, `run.ended` recorded with reason `idle`, its id
//! answered 404 like an unknown one. An open GET event stream keeps a session in use; once the
//! client's connection closes, the idle clock runs. The official Python SDK client, told 404,
//! starts a new session.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Stdio};

use common::harness::{
    eventually, header, http, issue_key, of_kind, open_session, peers_python, post_in, repo_root, Deployment, Served,
    SseStream, INIT,
};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "an-admin-token-for-tests";
const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n";

/// A deployment serving the sample server, with the admin API (for `/metrics`) and `serve`, the
/// `[serve]` settings.
fn deployment(serve: &str) -> Deployment {
    let d = Deployment::serving_sample(&format!("{ADMIN}[serve]\n{serve}\n"));
    std::fs::write(d.dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    d
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
const ECHO: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

/// The value of the sample `line` (name and labels) in the gateway's `/metrics`; 0 when absent.
fn metric(served: &Served, line: &str) -> u64 {
    let admin = served.admin.as_ref().unwrap();
    let (_, _, text) = http("GET", &format!("{admin}/metrics"), &[("Authorization", &bearer(ADMIN_TOKEN))], "");
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

/// The live child processes of `pid` (zombies left out).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<u32>().ok()));
        if ppid == Some(pid) && state != Some("Z") {
            found.push(child);
        }
    }
    found
}

/// The `run.ended` event of run `run`, if recorded.
fn ended(d: &Deployment, run: &str) -> Option<Value> {
    of_kind(&d.events(), "run.ended").into_iter().find(|e| e["run"] == run).cloned()
}

#[test]
fn an_agent_past_its_session_cap_gets_429_while_other_agents_still_open_sessions() {
    let d = deployment("max_sessions = 8\nmax_sessions_per_agent = 2");
    let reader = issue_key(&d, "reader");
    let operator = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");

    let first = open_session(&url, &reader);
    open_session(&url, &reader);
    let auth = bearer(&reader);
    let (status, headers, body) = http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    assert_eq!(status, 429, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&error["jsonrpc"], &error["error"]["code"]), (&json!("2.0"), &json!(-32600)), "{body}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("too many open sessions for agent `reader` (limit 2)"), "{message}");
    // Both sessions are in use at this moment: the soonest one may be closed as idle is a whole
    // idle timeout away (the default, 10 minutes).
    let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "Retry-After: {retry}");
    // The federated endpoint's sessions count against the same cap.
    let (status, _, body) = http(
        "POST",
        &format!("{}/mcp", served.base),
        &[("Authorization", &auth), ("Accept", "application/json")],
        INIT,
    );
    assert_eq!(status, 429, "{body}");

    // Another agent is unaffected, and the capped agent's own sessions go on.
    open_session(&url, &operator);
    open_session(&url, &operator);
    assert_eq!(post_in(&url, &reader, &first, LIST).0, 200);
    // Ending one of its sessions gives the agent its place back.
    let (status, _, _) = http("DELETE", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &first)], "");
    assert_eq!(status, 204);
    open_session(&url, &reader);

    assert_eq!(metric(&served, "custos_sessions_refused_total{limit=\"max_sessions_per_agent\"}"), 2);
    assert_eq!(metric(&served, "custos_sessions_refused_total{limit=\"max_sessions\"}"), 0);
    drop(served);
    let events = d.events();
    let refused: Vec<&Value> = of_kind(&events, "protocol.error")
        .into_iter()
        .filter(|e| e["detail"]["reason"] == "agent session limit reached")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|e| e["agent"] == "reader" && e["detail"]["detail"]["limit"] == 2), "{refused:?}");
    d.verify_ok();
}

#[test]
fn an_idle_session_is_closed_but_an_open_event_stream_keeps_one_in_use() {
    let d = deployment("session_idle_timeout_ms = 300");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let gateway = served.child.id();

    // `streaming` holds its GET stream open, as the SDK clients do while they live; `quiet`,
    // opened after it, makes one call and then nothing.
    let streaming = open_session(&url, &key);
    let auth = bearer(&key);
    let stream = SseStream::get(&url, &[("Authorization", &auth), ("Mcp-Session-Id", &streaming)]);
    let quiet = open_session(&url, &key);
    let (status, _, body) = post_in(&url, &key, &quiet, ECHO);
    assert_eq!(status, 200, "{body}");
    assert_eq!(children(gateway).len(), 2, "one upstream per session");

    // A bound on how long closing may take, not a fixed wait.
    let closed = eventually("the quiet session to be closed as idle", || ended(&d, &quiet));
    assert_eq!(closed["detail"]["reason"], "idle", "{closed}");
    // Its upstream is stopped, and its id is answered as an unknown one's.
    eventually("its upstream to be gone", || (children(gateway).len() == 1).then_some(()));
    let (status, _, body) = post_in(&url, &key, &quiet, LIST);
    assert_eq!(status, 404, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["message"], "unknown or expired session", "{body}");
    // The streaming session was opened first, so without its stream it would have been idle
    // for longer and closed in the same sweep (sessions are taken out of the table together,
    // before any is closed): it is still served.
    assert_eq!(post_in(&url, &key, &streaming, LIST).0, 200);

    // Once its client's connection closes, it is idle like any other.
    drop(stream);
    let closed = eventually("the streaming session to be closed once its stream is", || ended(&d, &streaming));
    assert_eq!(closed["detail"]["reason"], "idle", "{closed}");
    eventually("every upstream to be gone", || children(gateway).is_empty().then_some(()));
    assert_eq!(post_in(&url, &key, &streaming, LIST).0, 404);

    assert_eq!(metric(&served, "custos_sessions_idle_closed_total{kind=\"session\"}"), 2);
    assert_eq!(metric(&served, "custos_sessions{server=\"sample\"}"), 0);
    // The places are free again.
    open_session(&url, &key);
    drop(served);
    d.verify_ok();
}

#[test]
fn an_idle_stateless_upstream_is_stopped_and_started_again_on_the_next_request() {
    let d = deployment("session_idle_timeout_ms = 300");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let gateway = served.child.id();
    let auth = bearer(&key);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let stateless = [("Authorization", auth.as_str()), ("MCP-Protocol-Version", "2026-07-28")];
    let (status, _, body) = http("POST", &url, &stateless, list);
    assert_eq!(status, 200, "{body}");
    assert_eq!(children(gateway).len(), 1);

    let runs = || -> Vec<Value> {
        of_kind(&d.events(), "run.ended")
            .into_iter()
            .filter(|e| e["run"].as_str().unwrap().starts_with("stateless-reader-sample-"))
            .cloned()
            .collect()
    };
    let closed = eventually("the stateless upstream to be stopped as idle", || runs().into_iter().next());
    assert_eq!(closed["detail"]["reason"], "idle", "{closed}");
    eventually("its process to be gone", || children(gateway).is_empty().then_some(()));

    // Nothing the client can see: the next request starts a new upstream, in a new run.
    let (status, _, body) = http("POST", &url, &stateless, list);
    assert_eq!(status, 200, "{body}");
    assert_eq!(children(gateway).len(), 1);
    assert_eq!(metric(&served, "custos_sessions_idle_closed_total{kind=\"stateless\"}"), 1);
    drop(served);
    d.verify_ok();
}

/// The official Python SDK client on `/mcp` (which offers no GET stream, so nothing holds the
/// session while the client waits): its session is closed as idle, its next call is answered
/// 404, and it opens a new session and makes the call there.
#[test]
fn the_python_sdk_client_starts_a_new_session_when_its_idle_one_was_closed() {
    let d = deployment("session_idle_timeout_ms = 300");
    // An operator: on a fresh gateway no `tools/list` has classified `echo` yet.
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let wait_file = d.dir.path().join("session-closed");
    let client = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/reconnecting_client.py"))
        .arg(format!("{}/mcp", served.base))
        .args(["--bearer", &key, "--tool", "sample__echo", "--arguments", r#"{"text":"again"}"#])
        .arg("--wait-file")
        .arg(&wait_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let closed = eventually("the client's session to be closed as idle", || {
        of_kind(&d.events(), "run.ended").into_iter().find(|e| e["detail"]["reason"] == "idle").cloned()
    });
    std::fs::write(&wait_file, "").unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{report}");
    assert_ne!(sessions[0], sessions[1], "{report}");
    assert_eq!(closed["run"], sessions[0], "the first session's run is the one closed");
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3, "{report}");
    assert_eq!((&calls[0]["ok"], &calls[0]["session"]), (&json!(true), &json!(0)), "{report}");
    assert_eq!((&calls[1]["ok"], &calls[1]["status"]), (&json!(false), &json!(404)), "{report}");
    assert_eq!(calls[1]["error"]["message"], "unknown or expired session", "{report}");
    assert_eq!((&calls[2]["ok"], &calls[2]["session"]), (&json!(true), &json!(1)), "{report}");
    drop(served);
    d.verify_ok();
}
