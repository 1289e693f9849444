//! Inputs the gateway refuses, end to end through the real binary: each gets a clear JSON-RPC
//! error, is recorded, never reaches the upstream, and the session goes on; the log stays one
//! that `audit verify`, `query` and `tail` read. The README's "Inputs the gateway refuses"
//! lists each with the test that covers it here.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{
    header, http, issue_key, memory_kb, of_kind, open_session, peers_python, post_in, repo_root, server_everything,
    Deployment, RawSession, Served, INIT,
};
use serde_json::{json, Value};

/// Operators may call anything on `sample`, but not with `a` over 100; `b` over 100 needs an
/// approval of `ops`.
const LIMITS: &str = r#"
@id("operators-all")
permit (principal in Custos::Group::"operators", action == Custos::Action::"call_tool", resource);

@id("a-at-most-100")
@reason("`a` over 100 is not allowed")
forbid (principal, action == Custos::Action::"call_tool", resource in Custos::Server::"sample")
when { context.arguments has a && context.arguments.a > 100 };

@id("b-over-100-needs-ops")
@approval("ops")
forbid (principal, action == Custos::Action::"call_tool", resource in Custos::Server::"sample")
when { context.arguments has b && context.arguments.b > 100 }
unless { context.approval.granted };
"#;

/// `[policy]` keys naming the schema that declares `a` and `b`, and an approver group with a
/// short wait (a held call that should have been denied would show as `-32004`, not a hang).
const EXTRA: &str = r#"schema = "schema.cedarschema"
[approvals]
timeout_ms = 3000
[approvals.groups.ops]
members = ["olga@example.com"]
"#;

fn deployment() -> Deployment {
    let d = Deployment::new(LIMITS, EXTRA);
    d.write_schema("a?: Long,\n    b?: Long,");
    d
}

fn call(id: u64, name: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}"#
    )
}

fn error_of(answer: &Value) -> (i64, String) {
    let code = answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {answer}"));
    (code, answer["error"]["message"].as_str().unwrap().to_owned())
}

/// Sends `line` and returns the answer to `id`.
fn ask(session: &mut RawSession, id: u64, line: &str) -> Value {
    session.send(line);
    session.recv_answer(&json!(id)).0
}

/// The text of a tool result's first content block.
fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text: {answer}"))
}

/// Duplicate keys in the arguments, in both orders and only differing by case, never reach the
/// official Python and Node servers: each is refused with -32602 and recorded; the session goes
/// on, and the same server then acts on what the gateway decided.
#[test]
fn duplicate_keys_in_arguments_never_reach_the_official_python_and_node_servers() {
    let python = peers_python();
    let sum_server = repo_root().join("tests/peers/sum_server.py");
    let everything = server_everything();
    let upstreams: [(&str, Vec<&str>, &str); 2] = [
        ("add", vec![python.to_str().unwrap(), sum_server.to_str().unwrap()], "5.0 + 1.0 = 6.0"),
        ("get-sum", vec!["node", everything.as_str(), "stdio"], "The sum of 5 and 1 is 6."),
    ];
    for (tool, command, sum) in upstreams {
        let d = deployment();
        let mut s = RawSession::start(&d, &["--agent", "operator"], &command);
        s.initialize();
        let refused = [
            (1, r#"{"a":500,"b":1,"a":5}"#, "duplicate key `a`"),
            (2, r#"{"a":5,"b":1,"a":500}"#, "duplicate key `a`"),
            (3, r#"{"a":5,"b":1,"A":500}"#, "differ only by case"),
            (4, r#"{"a":5,"b":{"c":1,"c":2}}"#, "duplicate key `c`"),
        ];
        for (id, arguments, why) in refused {
            let (code, message) = error_of(&ask(&mut s, id, &call(id, tool, arguments)));
            assert_eq!(code, -32602, "{tool} {arguments}: {message}");
            assert!(message.contains(why), "{tool} {arguments}: {message}");
        }
        let answer = ask(&mut s, 5, &call(5, tool, r#"{"a":5,"b":1}"#));
        assert_eq!(text(&answer), sum, "{tool}: {answer}");
        let (code, message) = error_of(&ask(&mut s, 6, &call(6, tool, r#"{"a":500,"b":1}"#)));
        assert_eq!(code, -32001, "{message}");
        let (status, _) = s.finish();
        assert!(status.success());

        let events = d.events();
        let refusals = of_kind(&events, "protocol.error");
        assert_eq!(refusals.len(), 4, "{tool}: {refusals:?}");
        assert!(refusals.iter().all(|e| e["detail"]["code"] == -32602 && e["detail"]["method"] == "tools/call"));
        assert_eq!(of_kind(&events, "call.requested").len(), 2, "only the two well-formed calls were decided");
        d.verify_ok();
    }
}

/// The issue's reproduction: numbers policy cannot read exactly, through `custos serve` to
/// server-everything's `get-sum`, are denied naming the argument, not summed; one that only an
/// approval would lift is denied too (an error is never a hold). `policy explain` says the same.
#[test]
fn numbers_policy_cannot_read_are_denied_through_serve_and_explain() {
    let everything = server_everything();
    let d = Deployment::serving(LIMITS, EXTRA, &["node", &everything, "stdio"]);
    d.write_schema("a?: Long,\n    b?: Long,");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let post = |line: &str| {
        let (status, _, body) = post_in(&url, &key, &session, line);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    for (id, arguments, shown) in [
        (1, r#"{"a":99999999999999999999999,"b":1}"#, "argument `a` is 1e+23"),
        (2, r#"{"a":1e300,"b":1}"#, "argument `a` is 1e+300"),
        (3, r#"{"a":100.00001,"b":1}"#, "argument `a` is 100.00001"),
        (4, r#"{"a":9007199254740993,"b":1}"#, "argument `a` is 9007199254740993"),
        (5, r#"{"a":1,"b":1e300}"#, "argument `b` is 1e+300"),
    ] {
        let (code, message) = error_of(&post(&call(id, "get-sum", arguments)));
        assert_eq!(code, -32001, "{arguments}: {message}");
        assert!(message.contains(shown) && message.contains("cannot read exactly"), "{arguments}: {message}");
    }
    assert_eq!(text(&post(&call(6, "get-sum", r#"{"a":2,"b":3}"#))), "The sum of 2 and 3 is 5.");
    drop(served);
    let events = d.events();
    let decided: Vec<&str> = of_kind(&events, "call.decided").iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(decided, ["deny", "deny", "deny", "deny", "deny", "allow"], "no hold, no allow of an unreadable number");
    assert!(of_kind(&events, "approval.requested").is_empty());
    d.verify_ok();

    let out = d.output(&[
        "policy",
        "explain",
        "--agent",
        "operator",
        "--tool",
        "sample/get-sum",
        "--args",
        r#"{"a": 99999999999999999999999}"#,
    ]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("deny") && said.contains("argument `a` is 1e+23"), "{said}");
}

/// What no governed call may look like: refused, recorded, never written to the upstream's
/// stdin; the session goes on and the log stays readable whole.
#[test]
fn what_is_refused_never_reaches_the_upstream_and_the_log_stays_whole() {
    let d = Deployment::new(LIMITS, &format!("{EXTRA}[limits]\nmax_argument_values = 50\n"));
    d.write_schema("a?: Long,\n    b?: Long,");
    let record = d.dir.path().join("upstream-received.jsonl");
    let upstream = repo_root().join("tests/peers/recording_upstream.py");
    let mut s = RawSession::start(
        &d,
        &["--agent", "operator"],
        &["python3", upstream.to_str().unwrap(), record.to_str().unwrap()],
    );
    s.initialize();
    let listed = ask(&mut s, 1, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"add"), "{listed}");
    assert!(!names.contains(&"get weather"), "a tool no agent may call by its name is not offered: {names:?}");

    let many = (0..60).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    // (frame, the id its error answers with, code, words in the message). Each frame carries
    // `MARK` so the upstream's record shows whether any of it got through.
    let hostile: Vec<(String, Value, i64, &str)> = vec![
        (r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":1,"m":"MARK"}}}"#.into(), Value::Null, -32600, "needs an `id`"),
        (r#"{"jsonrpc":"2.0","id":11,"method":"Tools/Call","params":{"name":"add","arguments":{"m":"MARK"}}}"#.into(), json!(11), -32601, "is not `tools/call`"),
        (r#"{"jsonrpc":"2.0","id":12,"method":"tools/call ","params":{"name":"add","arguments":{"m":"MARK"}}}"#.into(), json!(12), -32601, "is not `tools/call`"),
        (r#"{"jsonrpc":"2.0","id":13,"method":"tools/call\u0000x","params":{"name":"add","arguments":{"m":"MARK"}}}"#.into(), json!(13), -32601, "is not `tools/call`"),
        (r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"","arguments":{"m":"MARK"}}}"#.into(), json!(14), -32602, "must not be empty"),
        (r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"add ","arguments":{"m":"MARK"}}}"#.into(), json!(15), -32602, "tool name"),
        (r#"{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"Add","arguments":{"m":"MARK"}}}"#.into(), json!(16), -32602, "case-sensitive"),
        (r#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"m":"MARK"},"Arguments":{"a":500}}}"#.into(), json!(17), -32602, "differ only by case"),
        (r#"{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"add","Arguments":{"a":500,"m":"MARK"}}}"#.into(), json!(18), -32602, "spelled like `arguments`"),
        (r#"{"jsonrpc":"2.0","id":19,"method":"ping","Method":"tools/call","params":{"name":"add","arguments":{"m":"MARK"}}}"#.into(), json!(19), -32600, "differ only by case"),
        (r#"{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"add","arguments":{"m":"MARK\ud800"}}}"#.into(), json!(20), -32602, "surrogate"),
        (r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"add","arguments":{"m":"MARK","p":"/etc/shadow\u0000.txt"}}}"#.into(), json!(21), -32602, "nul character"),
        (format!(r#"{{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{{"name":"add","arguments":{{"m":"MARK","xs":[{many}]}}}}}}"#), json!(22), -32602, "more than 50 values"),
        (r#"{"jsonrpc":"2.0","id":23,"method":"resources/read","params":{"uri":"file:///MARK","uri":"file:///etc/shadow"}}"#.into(), json!(23), -32602, "duplicate key `uri`"),
        (r#"{"jsonrpc":"2.0","id":24,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2,"m":"MARK"}},"id":25}"#.into(), Value::Null, -32600, "duplicate"),
    ];
    for (frame, id, code, why) in &hostile {
        s.send(frame);
        let answer = s.recv();
        assert_eq!(&answer["id"], id, "{frame}: {answer}");
        let (got, message) = error_of(&answer);
        assert_eq!((got, message.contains(why)), (*code, true), "{frame}: {message}");
    }
    // The session goes on.
    assert_eq!(text(&ask(&mut s, 30, &call(30, "add", r#"{"a":2,"b":3}"#))), "2 + 3 = 5");

    // An upstream answer two parsers read differently is not relayed: the call ends in an error.
    for (id, tool, why) in [(31, "duplicate_answer", "duplicate key `text`"), (32, "surrogate_answer", "surrogate")] {
        let (code, message) = error_of(&ask(&mut s, id, &call(id, tool, "{}")));
        assert_eq!(code, -32603, "{message}");
        assert!(message.contains("refuses") && message.contains(why), "{message}");
    }
    assert_eq!(text(&ask(&mut s, 33, &call(33, "add", r#"{"a":1,"b":1}"#))), "1 + 1 = 2");
    let (status, _) = s.finish();
    assert!(status.success());

    let received = std::fs::read_to_string(&record).unwrap();
    assert!(!received.contains("MARK"), "the upstream received a refused frame:\n{received}");
    assert!(received.contains("\"id\":30") && received.contains("duplicate_answer"), "{received}");

    let events = d.events();
    let refusals = of_kind(&events, "protocol.error");
    let from_client = refusals.iter().filter(|e| e["detail"]["from"] == "client").count();
    assert_eq!(from_client, hostile.len(), "every refusal is recorded: {refusals:?}");
    assert_eq!(refusals.len(), hostile.len() + 2, "and the two refused upstream answers");
    let finished: Vec<&Value> = of_kind(&events, "call.finished");
    let errors = finished.iter().filter(|e| e["detail"]["outcome"] == "error").count();
    assert_eq!(errors, 2, "the calls whose answers were refused are closed: {finished:?}");
    // Every tool the log names reads back; verify, query and tail read the whole log.
    assert!(events.iter().filter_map(|e| e["tool"].as_str()).all(|t| t.starts_with("sample/") && t.len() > 7));
    d.verify_ok();
    let tail = d.output(&["audit", "tail", "-n", "5"]);
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
}

/// The same refusals over HTTP: a tool call without an id, a misspelled method and an empty
/// tool name on `/mcp/{server}`, and `sample__` (a server with no tool name) on the federated
/// `/mcp`; each answered 400 or a JSON-RPC error, recorded, the log intact.
#[test]
fn serve_refuses_the_same_and_the_log_stays_whole() {
    let record = tempfile::NamedTempFile::new().unwrap();
    let upstream = repo_root().join("tests/peers/recording_upstream.py");
    let command = ["python3", upstream.to_str().unwrap(), record.path().to_str().unwrap()];
    let d = Deployment::serving(LIMITS, EXTRA, &command);
    d.write_schema("a?: Long,\n    b?: Long,");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let auth = format!("Bearer {key}");

    let url = served.url("sample");
    let session = open_session(&url, &key);
    for (frame, status, code) in [
        (r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"add","arguments":{"m":"MARK"}}}"#, 400, -32600),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"Tools/Call","params":{"name":"add","arguments":{"m":"MARK"}}}"#,
            400,
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"","arguments":{"m":"MARK"}}}"#,
            200,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","arguments":{"a":500,"b":1,"a":5,"m":"MARK"}}}"#,
            400,
            -32602,
        ),
    ] {
        let (got, _, body) = post_in(&url, &key, &session, frame);
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{frame}: not json: {body}"));
        assert_eq!((got, answer["error"]["code"].as_i64()), (status, Some(code)), "{frame}: {body}");
    }
    let (status, _, body) = post_in(&url, &key, &session, &call(5, "add", r#"{"a":1,"b":1}"#));
    assert_eq!(status, 200);
    assert_eq!(text(&serde_json::from_str(&body).unwrap()), "1 + 1 = 2");

    let fed = format!("{}/mcp", served.base);
    let (_, headers, _) = http("POST", &fed, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    let fed_session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let fed_headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", fed_session.as_str()), ("Accept", "application/json")];
    for name in ["sample__", "nosuch__add", "sample__add x"] {
        let (status, _, body) = http("POST", &fed, &fed_headers, &call(6, name, r#"{"m":"MARK"}"#));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, answer["error"]["code"].as_i64()), (200, Some(-32602)), "{name}: {body}");
    }
    // A tool call without an id is not fanned out to the session's upstreams.
    let notification =
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"sample__add","arguments":{"m":"MARK"}}}"#;
    let (status, _, body) = http("POST", &fed, &fed_headers, notification);
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].as_i64()), (400, Some(-32600)));
    drop(served);

    assert!(!std::fs::read_to_string(record.path()).unwrap().contains("MARK"));
    let events = d.events();
    assert_eq!(of_kind(&events, "protocol.error").len(), 8, "each refusal recorded");
    assert_eq!(of_kind(&events, "call.requested").len(), 1);
    d.verify_ok();
}

/// A 4 MiB arguments object of ~350k keys, sixteen at once: each refused while it is read, so
/// the gateway holds little more than the messages themselves (it grew by over 1 GB before).
#[test]
fn huge_arguments_are_refused_while_read_without_growing_the_gateway() {
    let d = Deployment::serving(LIMITS, EXTRA, &["python3", "-c", "import sys; sys.stdin.read()"]);
    d.write_schema("a?: Long,\n    b?: Long,");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let auth = format!("Bearer {key}");
    // A stateless request needs no upstream answer before it is refused.
    let keys: Vec<String> = (0..340_000).map(|i| format!("\"k{i}\":1")).collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add","arguments":{{{}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#,
        keys.join(",")
    );
    assert!(body.len() > 3 << 20 && body.len() < 4 << 20, "{}", body.len());
    let pid = served.child.id();
    let (before, _) = memory_kb(pid);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (url, auth, body) = (url.clone(), auth.clone(), body.clone());
            std::thread::spawn(move || {
                let headers = [
                    ("Authorization", auth.as_str()),
                    ("Accept", "application/json"),
                    ("MCP-Protocol-Version", "2026-07-28"),
                ];
                http("POST", &url, &headers, &body)
            })
        })
        .collect();
    for t in threads {
        let (status, _, answer) = t.join().unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("more than 10000 values"), "{answer}");
    }
    let (_, peak) = memory_kb(pid);
    eprintln!("16 refused 4 MiB messages: VmRSS {before} kB before, VmHWM {peak} kB after");
    // Each request holds its body twice at most (as received, and as the message read from it):
    // 16 × 2 × 4 MiB, plus room for the allocator.
    let limit = 16 * 2 * 4 * 1024 + 32 * 1024;
    assert!(peak.saturating_sub(before) < limit, "grew from {before} kB to a peak of {peak} kB");
    let events = d.events();
    assert_eq!(of_kind(&events, "protocol.error").len(), 16);
    drop(served);
}
