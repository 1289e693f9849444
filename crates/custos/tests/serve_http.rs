//! `custos serve` end to end: the official Python SDK's Streamable HTTP client, and raw HTTP for
//! what an SDK never sends (no credential, another agent's session, a foreign origin, limits).

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Stdio};

use common::harness::{
    header, http, issue_key, of_kind, peers_python, python_http, repo_root, sample_server, Deployment, Served, INIT,
    POLICIES,
};
use serde_json::{json, Value};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Opens a session with raw HTTP; returns its id.
fn open_session(url: &str, key: &str) -> String {
    let auth = bearer(key);
    let (status, headers, body) = http("POST", url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    assert_eq!(status, 200, "{body}");
    header(&headers, "mcp-session-id").unwrap().to_owned()
}

#[test]
fn python_sdk_client_through_custos_serve() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let report = python_http(
        &served.url("sample"),
        &key,
        &[
            "--list-tools",
            "--call",
            "echo",
            r#"{"text":"over http"}"#,
            "--call",
            "write_note",
            r#"{"title":"t","body":"b"}"#,
            "--call",
            "ask_model",
            r#"{"prompt":"q"}"#,
            "--call",
            "count_with_progress",
            r#"{"n":2}"#,
            "--resources",
            "--prompts",
            "--ping",
            "--terminate",
            "--sample-reply",
            "from python over http",
        ],
    );
    assert_eq!(report["http_error"], Value::Null, "{report}");
    let steps = report["steps"].as_array().unwrap();
    let tools: Vec<&str> = steps[0]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tools.contains(&"echo") && !tools.contains(&"write_note"), "{tools:?}");
    assert_eq!(steps[1]["content"][0], "over http");
    assert_eq!(steps[2]["error"]["code"], -32001);
    assert_eq!(
        steps[3]["content"][0], "model said: from python over http",
        "sampling crosses the gateway: {}",
        steps[3]
    );
    assert_eq!(steps[4]["progress"].as_array().unwrap().len(), 2, "progress reaches the client: {}", steps[4]);
    assert!(steps[5]["read"].as_str().unwrap().contains("hello from the sample server"));
    assert_eq!(steps[7]["ok"], true);
    assert_eq!(report["terminate"]["status"], 204);

    let session = report["session_id"].as_str().unwrap().to_owned();
    assert_eq!(served.stop().code(), Some(0));
    let events = d.events();
    let run: Vec<&Value> = events.iter().filter(|e| e["run"] == session).collect();
    assert!(run.iter().all(|e| e["agent"] == "reader"));
    let decided: Vec<(&str, &str)> = run
        .iter()
        .filter(|e| e["kind"] == "call.decided")
        .map(|e| (e["tool"].as_str().unwrap(), e["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        decided,
        [
            ("sample/echo", "allow"),
            ("sample/write_note", "deny"),
            ("sample/ask_model", "allow"),
            ("sample/count_with_progress", "allow")
        ]
    );
    assert_eq!(of_kind(&events, "run.ended")[0]["detail"]["reason"], "session deleted by the client");
    d.verify_ok();
}

#[test]
fn no_or_bad_credentials_get_401_with_the_resource_metadata() {
    let d = Deployment::serving_sample("[serve]\nauthorization_servers = [\"https://login.example.com\"]\n");
    let served = Served::start(&d);
    let url = served.url("sample");
    let (status, headers, body) = http("POST", &url, &[], INIT);
    assert_eq!(status, 401, "{body}");
    let challenge = header(&headers, "www-authenticate").unwrap();
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp/sample", served.base);
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{metadata_url}\""));
    let (status, _, metadata) = http("GET", &metadata_url, &[], "");
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["resource"], url);
    assert_eq!(metadata["authorization_servers"], json!(["https://login.example.com"]));

    for credential in [
        "Bearer cst_aaaaaaaa_bm90LWEta2V5LWF0LWFsbC1qdXN0LXNvbWUtYnl0ZXM",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Basic dXNlcjpwYXNz",
    ] {
        let (status, headers, body) = http("POST", &url, &[("Authorization", credential)], INIT);
        assert_eq!(status, 401, "{credential}: {body}");
        assert!(header(&headers, "www-authenticate").unwrap().starts_with("Bearer resource_metadata="));
        assert!(!body.contains(credential.split(' ').nth(1).unwrap()), "the credential is never echoed");
    }
    drop(served);
    let failures = of_kind(&d.events(), "auth.failed").len();
    assert_eq!(failures, 4, "every refusal is recorded");
}

#[test]
fn a_revoked_key_fails_on_the_next_request() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = bearer(&key);
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    assert_eq!(http("POST", &url, &headers, ping).0, 200);
    assert!(d.output(&["agents", "revoke", "reader"]).status.success());
    let (status, _, body) = http("POST", &url, &headers, ping);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
}

#[test]
fn another_agents_session_looks_unknown_and_the_attempt_is_recorded() {
    let d = Deployment::serving_sample("");
    let reader = issue_key(&d, "reader");
    let operator = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &reader);
    let auth = bearer(&operator);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &session)], call);
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", "0123456789abcdef")], call);
    assert_eq!(status, 404, "an unknown session answers the same");
    drop(served);
    let events = d.events();
    let errors = of_kind(&events, "protocol.error");
    let hijack: Vec<&Value> = errors.into_iter().filter(|e| e["agent"] == "operator").collect();
    assert_eq!(hijack.len(), 1);
    assert_eq!(hijack[0]["detail"]["owner"], "reader");
    assert!(of_kind(&events, "call.requested").is_empty(), "nothing ran in the stolen session");
}

#[test]
fn foreign_origins_big_bodies_and_too_many_sessions_are_refused() {
    let d = Deployment::serving_sample("[serve]\nallowed_origins = [\"http://localhost:3000\"]\nmax_sessions = 1\n[limits]\nmax_message_bytes = 2048\n");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let auth = bearer(&key);
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Origin", "http://evil.example")], INIT);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("origin"));
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5000));
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth)], &big);
    assert_eq!(status, 413, "{body}");
    let first = open_session(&url, &key);
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Origin", "http://localhost:3000")], INIT);
    assert_eq!(status, 503, "{body}");
    // Ending the first session makes room.
    assert_eq!(http("DELETE", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &first)], "").0, 204);
    open_session(&url, &key);
    let (status, _, _) = http("POST", &served.url("nope"), &[("Authorization", &auth)], INIT);
    assert_eq!(status, 404);
}

#[test]
fn an_upstream_that_dies_is_restarted_with_the_handshake_replayed_until_it_keeps_dying() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = bearer(&key);
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    let post = |body: String| -> (u16, Value) {
        let (status, _, body) = http("POST", &url, &headers, &body);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    };
    let crash = |id: u32| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"crash","arguments":{{}}}}}}"#)
    };
    let (status, answer) = post(crash(7));
    assert_eq!((status, answer["error"]["code"].clone()), (200, json!(-32003)), "{answer}");
    // The session goes on: a new child got the client's initialize again.
    let (status, answer) = post(
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"again"}}}"#
            .into(),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["content"][0]["text"], "again", "{answer}");
    // Dying young again and again: restarts back off, then the session gives up.
    for id in 9..12 {
        assert_eq!(post(crash(id)).1["error"]["code"], -32003);
    }
    let (status, answer) = post(r#"{"jsonrpc":"2.0","id":20,"method":"ping"}"#.into());
    assert_eq!(status, 502, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("has exited"));
    drop(served);
    let events = d.events();
    let attempts: Vec<u64> =
        of_kind(&events, "upstream.restarted").iter().map(|e| e["detail"]["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3], "each restart is recorded");
    assert_eq!(of_kind(&events, "upstream.exited").len(), 4);
    assert_eq!(of_kind(&events, "run.started").len(), 1, "one run across restarts");
    // The replayed `initialize` went through the pipeline: its answer was expected, not dropped
    // as an answer to a request never forwarded.
    assert_eq!(of_kind(&events, "protocol.error"), Vec::<&Value>::new());
    d.verify_ok();
}

/// Mints with PyJWT (tests/peers/mint_jwt.py) using the test-only keys of custos-auth.
fn mint(args: &[&str]) -> String {
    let key = common::harness::repo_root().join("crates/custos-auth/tests/keys/ed25519.pem");
    let out = std::process::Command::new(common::harness::peers_python())
        .arg(common::harness::repo_root().join("tests/peers/mint_jwt.py"))
        .args(args)
        .args(["--key", key.to_str().unwrap(), "--kid", "idp-1", "--alg", "EdDSA"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn jwt_deployment() -> Deployment {
    let d = Deployment::serving_sample(
        "[serve.jwt]\nissuer = \"https://idp.test\"\njwks_file = \"jwks.json\"\naudience = \"https://gw.test/mcp\"\n\
         agent_claim = \"client_id\"\nrequired_scopes = [\"mcp:tools\"]\n",
    );
    std::fs::write(d.dir.path().join("jwks.json"), mint(&["jwks"])).unwrap();
    d
}

fn token(claims: Value) -> String {
    let mut base = json!({
        "iss": "https://idp.test", "aud": "https://gw.test/mcp", "exp_in": 300,
        "sub": "alice@example.com", "client_id": "reader", "act": {"sub": "reader"}, "scope": "mcp:tools",
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    mint(&["token", "--claims", &base.to_string()])
}

#[test]
fn a_jwt_from_the_identity_provider_authenticates_and_its_principal_is_recorded() {
    let d = jwt_deployment();
    let served = Served::start(&d);
    let report = python_http(
        &served.url("sample"),
        &token(json!({})),
        &["--list-tools", "--call", "echo", r#"{"text":"jwt"}"#, "--terminate"],
    );
    assert_eq!(report["steps"][1]["content"][0], "jwt", "{report}");
    drop(served);
    let events = d.events();
    let requested = of_kind(&events, "call.requested");
    assert_eq!(requested[0]["agent"], "reader");
    assert_eq!(
        requested[0]["detail"]["principal"],
        json!(["alice@example.com", "reader"]),
        "the human the agent acts for"
    );
    assert!(of_kind(&events, "run.started")[0]["detail"]["principal"].is_array(), "on every event of the run");
}

#[test]
fn bad_tokens_are_refused_with_the_reason_in_the_challenge() {
    let d = jwt_deployment();
    let served = Served::start(&d);
    let url = served.url("sample");
    let none = mint(&[
        "none",
        "--claims",
        r#"{"iss":"https://idp.test","aud":"https://gw.test/mcp","client_id":"reader","exp_in":300}"#,
    ]);
    for (name, credential, status, needle) in [
        ("expired", token(json!({"exp_in": -600})), 401, "expired"),
        ("wrong audience", token(json!({"aud": "https://other.test/mcp"})), 401, "not meant for this resource"),
        ("wrong issuer", token(json!({"iss": "https://evil.test"})), 401, "issuer"),
        ("alg none", none, 401, "invalid_token"),
        ("unknown agent", token(json!({"client_id": "stranger", "act": {"sub": "stranger"}})), 401, "invalid_token"),
        ("missing scope", token(json!({"scope": "profile"})), 403, "insufficient_scope"),
    ] {
        let auth = bearer(&credential);
        let (got, headers, body) = http("POST", &url, &[("Authorization", &auth)], INIT);
        assert_eq!(got, status, "{name}: {body}");
        let challenge = header(&headers, "www-authenticate").unwrap_or_default().to_owned();
        assert!(challenge.contains(needle) || body.contains(needle), "{name}: {challenge} {body}");
        assert!(!challenge.contains(&credential) && !body.contains(&credential), "{name}: token echoed");
    }
    drop(served);
    assert_eq!(of_kind(&d.events(), "auth.failed").len(), 6);
}

#[test]
fn clients_name_their_run_and_parent_run_and_cannot_take_anothers() {
    let d = Deployment::serving_sample("");
    let reader = issue_key(&d, "reader");
    let operator = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let auth = bearer(&reader);
    let named = [
        ("Authorization", auth.as_str()),
        ("Custos-Run-Id", "sub-1"),
        ("Custos-Parent-Run-Id", "plan-7"),
        ("Accept", "application/json"),
    ];
    let (status, headers, body) = http("POST", &url, &named, INIT);
    assert_eq!(status, 200, "{body}");
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let in_session =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    assert_eq!(http("POST", &url, &in_session, call).0, 200);
    // The run can also be named in initialize's _meta.
    let meta_init = INIT.replace(r#""clientInfo""#, r#""_meta":{"io.custos/run":"sub-2"},"clientInfo""#);
    assert_eq!(http("POST", &url, &[("Authorization", &auth)], &meta_init).0, 200);
    // Another agent cannot continue reader's run; a malformed run id is refused.
    let other = bearer(&operator);
    let (status, _, body) = http("POST", &url, &[("Authorization", &other), ("Custos-Run-Id", "sub-1")], INIT);
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = http("POST", &url, &[("Authorization", &auth), ("Custos-Run-Id", "a b")], INIT);
    assert_eq!(status, 400);
    drop(served);

    let run = |id: &str| -> Vec<Value> {
        let out = d.output(&["audit", "query", "--run", id, "--json"]);
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let sub1 = run("sub-1");
    assert_eq!(sub1[0]["kind"], "run.started");
    assert_eq!(sub1[0]["detail"]["parent_run"], "plan-7");
    assert!(sub1.iter().all(|e| e["agent"] == "reader"));
    assert!(sub1.iter().any(|e| e["kind"] == "call.decided" && e["step"] == 1));
    assert_eq!(run("sub-2")[0]["kind"], "run.started");
}

#[test]
fn a_call_is_answered_as_json_unless_the_upstream_speaks_first() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = bearer(&key);
    let both = [
        ("Authorization", auth.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("Accept", "application/json, text/event-stream"),
    ];
    // The upstream answers at once: a JSON answer, though the client takes a stream too.
    let echo = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let (status, headers, body) = http("POST", &url, &both, echo);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"), "{headers:?}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((answer["id"].clone(), answer["result"]["isError"].clone()), (json!(2), json!(false)), "{answer}");

    // The upstream sends progress first: a stream of it, in order, then the answer.
    let count = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"count_with_progress","arguments":{"n":2},"_meta":{"progressToken":"t"}}}"#;
    let (status, headers, body) = http("POST", &url, &both, count);
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "content-type").unwrap().starts_with("text/event-stream"), "{headers:?}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect();
    let progress: Vec<Option<f64>> = events.iter().take(2).map(|e| e["params"]["progress"].as_f64()).collect();
    assert_eq!(progress, [Some(1.0), Some(2.0)], "{body}");
    assert_eq!(events.len(), 3, "{body}");
    assert_eq!(events[2]["id"], 3, "{body}");
    assert_eq!(events[2]["result"]["content"][0]["text"], "counted 2", "{body}");

    // A client that takes only JSON still gets JSON; the progress has nowhere to go.
    let json_only = [both[0], both[1], ("Accept", "application/json")];
    let (status, headers, body) = http("POST", &url, &json_only, &count.replace(r#""id":3"#, r#""id":4"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"), "{headers:?}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], 4, "{body}");
}

#[test]
fn one_agent_at_its_concurrency_limit_costs_other_agents_nothing() {
    let d = Deployment::serving_sample("[serve]\nmax_concurrent_per_agent = 1\nrequest_timeout_ms = 3000\n");
    let reader = issue_key(&d, "reader");
    let operator = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    // The operator may call any tool, listed or not.
    let auth = bearer(&operator);
    let init = INIT.replace(r#""capabilities":{}"#, r#""capabilities":{"sampling":{}}"#);
    let (status, headers, _) = http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], &init);
    assert_eq!(status, 200);
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    // ask_model waits for a sampling answer that never comes: the request stays in flight
    // (streamed) until the request timeout.
    let held = {
        let (url, auth, session) = (url.clone(), auth.clone(), session.clone());
        std::thread::spawn(move || {
            let ask = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask_model","arguments":{"prompt":"p"}}}"#;
            http(
                "POST",
                &url,
                &[("Authorization", &auth), ("Mcp-Session-Id", &session), ("Accept", "text/event-stream")],
                ask,
            )
        })
    };
    // Wait until the held request is in flight: its sampling request is recorded upstream-side
    // as a forwarded call, so poll the log (bounded) for its decision.
    let mut in_flight = false;
    for _ in 0..200 {
        if d.events().iter().any(|e| e["kind"] == "call.decided" && e["tool"] == "sample/ask_model") {
            in_flight = true;
            break;
        }
        std::thread::yield_now();
    }
    assert!(in_flight, "the first request never started");
    let ping = r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#;
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &session)], ping);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("limit 1"));
    // Another agent is unaffected.
    assert_eq!(http("POST", &url, &[("Authorization", &bearer(&reader))], INIT).0, 200);
    let (status, _, body) = held.join().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("sampling/createMessage") && body.contains("did not answer within 3000 ms"), "{body}");
    // The permit came back with the end of the stream.
    assert_eq!(http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &session)], ping).0, 200);
}

#[test]
fn the_admin_api_shows_agents_tools_runs_audit_and_metrics_behind_its_own_token() {
    let d = Deployment::serving_sample("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n");
    let token = "admin-token-for-tests-0123456789";
    std::fs::write(d.dir.path().join("admin.token"), format!("{token}\n")).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let report = python_http(
        &served.url("sample"),
        &key,
        &[
            "--list-tools",
            "--call",
            "echo",
            r#"{"text":"a"}"#,
            "--call",
            "write_note",
            r#"{"title":"t","body":"b"}"#,
            "--terminate",
        ],
    );
    let run = report["session_id"].as_str().unwrap().to_owned();
    assert_eq!(http("POST", &served.url("sample"), &[("Authorization", "Bearer nope")], INIT).0, 401);

    let admin = served.admin.clone().unwrap();
    let auth = format!("Bearer {token}");
    let get = |path: &str| -> (u16, String) {
        let (status, _, body) = http("GET", &format!("{admin}{path}"), &[("Authorization", &auth)], "");
        (status, body)
    };
    assert_eq!(http("GET", &format!("{admin}/healthz"), &[], "").0, 200);
    assert_eq!(http("GET", &format!("{admin}/readyz"), &[], "").0, 200);
    for path in ["/v1/agents", "/v1/tools", "/v1/runs", "/v1/audit", "/metrics"] {
        let (status, headers, _) =
            http("GET", &format!("{admin}{path}"), &[("Authorization", "Bearer wrong-token-000000000")], "");
        assert_eq!(status, 401, "{path}");
        assert!(header(&headers, "www-authenticate").is_some());
        assert_eq!(
            http("GET", &format!("{admin}{path}"), &[("Authorization", &key)], "").0,
            401,
            "an agent key is not an admin token"
        );
    }
    let json = |path: &str| -> Value {
        let (status, body) = get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let agents = json("/v1/agents");
    let reader = agents["agents"].as_array().unwrap().iter().find(|a| a["id"] == "reader").unwrap();
    assert_eq!(reader["keys"].as_array().unwrap().len(), 1);
    assert!(!agents.to_string().contains("sha256:"), "key hashes are not shown");
    let tools = json("/v1/tools");
    let echo = tools["tools"].as_array().unwrap().iter().find(|t| t["tool"] == "sample/echo").unwrap();
    assert_eq!(echo["digest"].as_str().unwrap().len(), 64);
    let runs = json("/v1/runs");
    assert_eq!(runs["runs"][0]["run"], run);
    assert_eq!(runs["runs"][0]["agent"], "reader");
    let denied = json("/v1/audit?decision=deny");
    assert_eq!(denied["events"].as_array().unwrap().len(), 1);
    assert_eq!(denied["events"][0]["tool"], "sample/write_note");
    assert_eq!(get("/v1/audit?kind=bogus").0, 400);
    assert_eq!(get("/v1/audit?limit=many").0, 400);
    let openapi = json("/openapi.json");
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/audit"].is_object());

    let (status, metrics) = get("/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"custos_calls_total{agent="reader",decision="allow"} 1"#,
        r#"custos_calls_total{agent="reader",decision="deny"} 1"#,
        r#"custos_auth_failures_total{reason="tokens_not_accepted"} 1"#,
        r#"custos_sessions{server="sample"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in:\n{metrics}");
    }
    for stage in ["policy", "audit", "upstream", "whole"] {
        let count = format!("custos_call_duration_seconds_count{{stage=\"{stage}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&count) && !l.ends_with(" 0")), "no {stage} timings:\n{metrics}");
    }
}

/// The stateless revision over HTTP, against the official server-everything (which answers
/// stateless requests over stdio without `initialize`).
#[test]
fn stateless_requests_need_no_session_and_keep_the_clients_ids() {
    let everything = common::harness::server_everything();
    let d = Deployment::new(
        POLICIES,
        &format!(
            "[[servers]]\nname = \"everything\"\ntrust_annotations = true\ncommand = [\"node\", {everything:?}, \"stdio\"]\n\
             tools = {{ \"get-env\" = \"privileged\" }}\n"
        ),
    );
    let operator = issue_key(&d, "operator");
    let reader = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("everything");
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let auth = bearer(&operator);
    let stateless = |auth: &str, method: &str, name: Option<&str>, body: &str| {
        let mut headers = vec![("Authorization", auth), ("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", method)];
        if let Some(name) = name {
            headers.push(("Mcp-Name", name));
        }
        let (status, _, body) = http("POST", &url, &headers, body);
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let list = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{meta}}}}}"#);
    let (status, v) = stateless(&auth, "tools/list", None, &list);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], 1, "the client's id comes back");
    assert!(v["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"));
    // The same id again, from an independent request: no collision.
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"s"}},{meta}}}}}"#
    );
    let (status, v) = stateless(&auth, "tools/call", Some("echo"), &call);
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["id"].clone(), v["result"]["content"][0]["text"].clone()), (json!(1), json!("Echo: s")));
    // Headers that disagree with the body are refused.
    assert_eq!(stateless(&auth, "tools/list", None, &call).0, 400);
    assert_eq!(stateless(&auth, "tools/call", Some("get-env"), &call).0, 400);
    // Policy still decides: the config makes get-env privileged (whatever its annotations say),
    // and a reader may call read tools only.
    let env = format!(
        r#"{{"jsonrpc":"2.0","id":"e","method":"tools/call","params":{{"name":"get-env","arguments":{{}},{meta}}}}}"#
    );
    let (status, v) = stateless(&bearer(&reader), "tools/call", Some("get-env"), &env);
    assert_eq!(status, 200);
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!("e"), json!(-32001)), "{v}");
    // And the credential is still required.
    assert_eq!(http("POST", &url, &[("MCP-Protocol-Version", "2026-07-28")], &list).0, 401);
    drop(served);
    let events = d.events();
    let requested = of_kind(&events, "call.requested");
    assert!(requested.iter().all(|e| e["detail"]["protocol"] == "2026-07-28"));
    assert!(requested
        .iter()
        .any(|e| e["agent"] == "operator" && e["run"].as_str().unwrap().starts_with("stateless-operator-everything")));
}

#[test]
fn a_stateless_upstream_that_keeps_dying_is_restarted_with_backoff() {
    let d = Deployment::new(POLICIES, "[[servers]]\nname = \"broken\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\n");
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("broken");
    let auth = bearer(&key);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let headers = [("Authorization", auth.as_str()), ("MCP-Protocol-Version", "2026-07-28")];
    let (status, _, body) = http("POST", &url, &headers, list);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(1), json!(-32003)), "{v}");
    // Died young: the next start waits, and the client is told when to retry.
    let (status, headers_back, body) = http("POST", &url, &headers, list);
    assert_eq!(status, 503, "{body}");
    assert!(header(&headers_back, "retry-after").is_some());
    drop(served);
    assert_eq!(of_kind(&d.events(), "upstream.exited").len(), 1);
}

/// The official TypeScript SDK client (tests/peers/ts_http_client.mjs) through custos serve.
#[test]
fn typescript_sdk_client_through_custos_serve() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let out = std::process::Command::new("node")
        .arg(common::harness::repo_root().join("tests/peers/ts_http_client.mjs"))
        .arg(served.url("sample"))
        .args(["--bearer", &key, "--list-tools", "--call", "echo", r#"{"text":"from ts"}"#])
        .args(["--call", "delete_everything", r#"{"confirm":true}"#, "--ping", "--terminate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["http_error"], Value::Null, "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert!(steps[0]["tools"].as_array().unwrap().iter().any(|t| t == "echo"));
    assert_eq!(steps[1]["content"][0], "from ts");
    assert_eq!(steps[2]["error"]["code"], -32001, "{}", steps[2]);
    assert_eq!(steps[3]["ok"], true);
    assert_eq!(report["terminate"]["ok"], true);

    // Without a key the SDK sees the 401 and its challenge.
    let out = std::process::Command::new("node")
        .arg(common::harness::repo_root().join("tests/peers/ts_http_client.mjs"))
        .arg(served.url("sample"))
        .arg("--ping")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["http_error"]["status"], 401, "{report}");
    assert!(report["http_error"]["www_authenticate"].as_str().unwrap().contains("resource_metadata="));
}

/// Two servers with the same tools behind `/mcp`: neither can shadow the other.
#[test]
fn the_federated_endpoint_prefixes_tools_and_routes_each_call_to_its_server() {
    let sample = sample_server();
    let d = Deployment::new(POLICIES, "");
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "[[servers]]\nname = \"sample\"\ntrust_annotations = true\n",
        &format!(
            "[[servers]]\nname = \"alpha\"\ncommand = [{sample:?}]\ntrust_annotations = true\n\
             [[servers]]\nname = \"beta\"\ncommand = [{sample:?}]\ntrust_annotations = true\n"
        ),
    );
    std::fs::write(d.config(), text).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let report = python_http(
        &format!("{}/mcp", served.base),
        &key,
        &[
            "--list-tools",
            "--call",
            "alpha__echo",
            r#"{"text":"to alpha"}"#,
            "--call",
            "beta__ask_model",
            r#"{"prompt":"q"}"#,
            "--call",
            "beta__write_note",
            r#"{"title":"t","body":"b"}"#,
            "--call",
            "gamma__echo",
            r#"{"text":"x"}"#,
            "--ping",
            "--resources",
            "--prompts",
            "--terminate",
            "--sample-reply",
            "federated",
        ],
    );
    assert_eq!(report["http_error"], Value::Null, "{report}");
    assert_eq!(report["server_info"]["name"], "custos");
    let steps = report["steps"].as_array().unwrap();
    let tools: Vec<&str> = steps[0]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for expected in ["alpha__echo", "beta__echo", "alpha__ask_model"] {
        assert!(tools.contains(&expected), "{expected} missing from {tools:?}");
    }
    assert!(!tools.iter().any(|t| t.ends_with("__write_note")), "hidden from a reader on every server: {tools:?}");
    assert_eq!(steps[1]["content"][0], "to alpha");
    assert_eq!(steps[2]["content"][0], "model said: federated", "sampling through the federated session: {}", steps[2]);
    assert_eq!(steps[3]["error"]["code"], -32001, "{}", steps[3]);
    assert_eq!(steps[4]["error"]["code"], -32602, "an unknown server looks like an unknown tool: {}", steps[4]);
    assert_eq!(steps[5]["ok"], true);
    // Resources keep their URIs (both servers list the same one; a read goes to one of them),
    // prompts are prefixed like tools.
    assert!(steps[6]["resources"].as_array().unwrap().iter().any(|r| r == "sample://greeting"), "{}", steps[6]);
    assert_eq!(steps[6]["read"], "hello from the sample server");
    // The client gets the first prompt without arguments: the sample server's own complaint
    // shows the prefixed name reached it.
    assert!(steps[7]["error"]["message"].as_str().unwrap().contains("missing field `name`"), "{}", steps[7]);
    assert_eq!(report["terminate"]["status"], 204);
    let session = report["session_id"].as_str().unwrap().to_owned();

    // Prompts are listed with prefixes too.
    let url = format!("{}/mcp", served.base);
    let auth = bearer(&key);
    let (_, headers, _) = http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    let fed = header(&headers, "mcp-session-id").unwrap().to_owned();
    let list = r#"{"jsonrpc":"2.0","id":9,"method":"prompts/list"}"#;
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &fed)], list);
    assert_eq!(status, 200, "{body}");
    let names: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alpha__greet", "beta__greet"]);
    // An answer to a request no upstream sent goes to none of them, and is recorded.
    let forged = r#"{"jsonrpc":"2.0","id":"custos-999999","result":{}}"#;
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &fed)], forged);
    assert_eq!(status, 400, "{body}");
    drop(served);

    let events = d.events();
    let requested: Vec<(&str, u64)> = of_kind(&events, "call.requested")
        .iter()
        .filter(|e| e["run"] == session)
        .map(|e| (e["tool"].as_str().unwrap(), e["step"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        requested,
        [("alpha/echo", 1), ("beta/ask_model", 2), ("beta/write_note", 3)],
        "one run, one step counter"
    );
    let refused: Vec<&Value> = of_kind(&events, "protocol.error")
        .into_iter()
        .filter(|e| e["detail"]["detail"]["request_id"] == "\"custos-999999\"")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    d.verify_ok();
}

/// The client's answer to a server-to-client request the upstream never sent is refused, not
/// relayed, and recorded; the session goes on.
#[test]
fn an_answer_to_a_request_the_upstream_never_sent_is_refused() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = bearer(&key);
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    let (status, _, body) = http("POST", &url, &headers, r#"{"jsonrpc":"2.0","id":41,"result":{"role":"assistant"}}"#);
    assert_eq!(status, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&answer["id"], &answer["error"]["code"]), (&Value::Null, &json!(-32600)), "{answer}");
    let (status, _, body) = http("POST", &url, &headers, r#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#);
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["result"].clone()), (200, json!({})), "{body}");
    drop(served);
    let events = d.events();
    let errors = of_kind(&events, "protocol.error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((&errors[0]["detail"]["from"], &errors[0]["detail"]["request_id"]), (&json!("client"), &json!("41")));
    d.verify_ok();
}

/// A remote Streamable HTTP upstream: here another custos serve in front of the sample server.
/// The client's own credential is never passed on: the remote gateway only ever sees the header
/// configured for the upstream, and records its own agent.
#[test]
fn a_remote_http_upstream_is_governed_and_never_sees_the_agents_token() {
    // Gateway A: the "remote" MCP server (custos serve of the sample server), with its own agent.
    let a = Deployment::serving_sample("");
    let a_key = issue_key(&a, "operator");
    let a_served = Served::start(&a);
    // Gateway B in front of A.
    let b = Deployment::new(
        POLICIES,
        &format!(
            "[[servers]]\nname = \"remote\"\nurl = \"{}\"\ntrust_annotations = true\nheaders = {{ Authorization = \"Bearer {a_key}\" }}\n\
             [[servers]]\nname = \"down\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
            a_served.url("sample")
        ),
    );
    let b_key = issue_key(&b, "reader");
    let b_served = Served::start(&b);
    let report = python_http(
        &b_served.url("remote"),
        &b_key,
        &[
            "--list-tools",
            "--call",
            "echo",
            r#"{"text":"via remote"}"#,
            "--call",
            "ask_model",
            r#"{"prompt":"q"}"#,
            "--call",
            "write_note",
            r#"{"title":"t","body":"b"}"#,
            "--terminate",
            "--sample-reply",
            "two hops",
        ],
    );
    assert_eq!(report["http_error"], Value::Null, "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert!(steps[0]["tools"].as_array().unwrap().iter().any(|t| t == "echo"), "{}", steps[0]);
    assert_eq!(steps[1]["content"][0], "via remote", "{}", steps[1]);
    assert_eq!(steps[2]["content"][0], "model said: two hops", "sampling crosses both gateways: {}", steps[2]);
    assert_eq!(steps[3]["error"]["code"], -32001, "B's policy decides first: {}", steps[3]);

    // An unreachable upstream answers at once with an error naming it.
    let (status, _, body) = http(
        "POST",
        &b_served.url("down"),
        &[("Authorization", &bearer(&b_key)), ("Accept", "application/json")],
        INIT,
    );
    assert_eq!(status, 200, "{body}");
    let down: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(down["error"]["code"], -32003, "{down}");
    assert!(down["error"]["message"].as_str().unwrap().contains("upstream `down` is unavailable"), "{down}");
    drop(b_served);
    drop(a_served);

    let b_events = b.events();
    assert!(of_kind(&b_events, "call.finished")
        .iter()
        .all(|e| e["agent"] == "reader" && e["tool"].as_str().unwrap().starts_with("remote/")));
    let a_events = a.events();
    let a_calls = of_kind(&a_events, "call.requested");
    assert_eq!(a_calls.len(), 2, "only what B allowed reached A: {a_calls:?}");
    assert!(a_calls.iter().all(|e| e["agent"] == "operator"), "A sees B's configured credential, not the agent's");
    assert_eq!(of_kind(&a_events, "auth.failed").len(), 0, "the agent's own key was never presented to A");
}

/// Malformed and oversized bodies never reach a session's pipeline, so the endpoint itself
/// records and counts them; an upstream that dies mid-call counts as an upstream error.
#[test]
fn refused_bodies_and_upstream_failures_are_recorded_and_counted() {
    let d = Deployment::serving_sample(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n[limits]\nmax_message_bytes = 2048\n",
    );
    std::fs::write(d.dir.path().join("admin.token"), "admin-token-for-tests-0123456789").unwrap();
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let auth = bearer(&key);
    let (status, _, body) = http("POST", &url, &[("Authorization", &auth)], "{not json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], -32700);
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5000));
    assert_eq!(http("POST", &url, &[("Authorization", &auth)], &big).0, 413);
    let session = open_session(&url, &key);
    let crash = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crash","arguments":{}}}"#;
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    assert_eq!(http("POST", &url, &headers, crash).0, 200);

    let admin = served.admin.clone().unwrap();
    let (_, _, metrics) =
        http("GET", &format!("{admin}/metrics"), &[("Authorization", "Bearer admin-token-for-tests-0123456789")], "");
    for line in
        [r#"custos_protocol_errors_total{from="client"} 2"#, r#"custos_upstream_errors_total{server="sample"} 1"#]
    {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in:\n{metrics}");
    }
    // The official Prometheus client's parser reads the same text, types and values included.
    let families = prometheus_parse(&metrics);
    let family =
        |name: &str| families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}: {metrics}"));
    assert_eq!(family("custos_protocol_errors")["type"], "counter");
    assert_eq!(family("custos_call_duration_seconds")["type"], "histogram");
    assert_eq!(family("custos_sessions")["type"], "gauge");
    let refused = &family("custos_protocol_errors")["samples"][0];
    assert_eq!((&refused["labels"]["from"], &refused["value"]), (&json!("client"), &json!(2)), "{refused}");
    drop(served);
    let events = d.events();
    let refused: Vec<&Value> =
        of_kind(&events, "protocol.error").into_iter().filter(|e| e["agent"] == "operator").collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[1]["detail"]["reason"].as_str().unwrap().contains("exceeds the limit of 2048 bytes"));
}

#[test]
fn a_refused_origin_is_recorded() {
    let d = Deployment::serving_sample("[serve]\nallowed_origins = [\"http://localhost:3000\"]\n");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let auth = bearer(&key);
    let (status, _, _) =
        http("POST", &served.url("sample"), &[("Authorization", &auth), ("Origin", "http://evil.example")], INIT);
    assert_eq!(status, 403);
    drop(served);
    let events = d.events();
    let refused = of_kind(&events, "protocol.error");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["detail"]["origin"], "http://evil.example");
}

/// `subscriptions/listen` (2026-07-28) through the gateway, between the official Python SDK's
/// client and a server built on the same SDK: the stream is acknowledged with the client's id,
/// carries only what was subscribed, survives the calls that trigger it, and ends upstream
/// when the client leaves; past the limit a listen is refused.
#[test]
fn subscriptions_listen_streams_the_upstreams_changes_to_the_client() {
    let python = common::harness::peers_python();
    let server = common::harness::repo_root().join("tests/peers/listen_server.py");
    let d = Deployment::new(
        POLICIES,
        &format!(
            "[serve]\nmax_subscriptions_per_agent = 1\n[[servers]]\nname = \"listen\"\ncommand = [{:?}, {:?}]\n\
             tools = {{ \"*\" = \"read\" }}\n",
            python.to_str().unwrap(),
            server.to_str().unwrap()
        ),
    );
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("listen");
    let out = std::process::Command::new(&python)
        .arg(common::harness::repo_root().join("tests/peers/listen_client.py"))
        .args([&url, "--bearer", &key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["honored"]["toolsListChanged"], true, "{report}");
    assert_eq!(report["honored"]["resourceSubscriptions"], json!(["memo://watched"]), "{report}");
    let events: Vec<&str> = report["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(events.contains(&"tools") && events.contains(&"memo://watched"), "{report}");
    assert!(!events.contains(&"memo://other"), "an unsubscribed resource leaked: {report}");
    assert_eq!(report["after"], "poked", "the client goes on after leaving the stream: {report}");

    // Raw: the stream's first event is the acknowledgment, stamped with the client's own id.
    let listen = r#"{"jsonrpc":"2.0","id":"mine","method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"notifications":{"toolsListChanged":true}}}"#;
    let auth = bearer(&key);
    let headers = [
        ("Authorization", auth.as_str()),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let mut stream = common::harness::SseStream::open(&url, &headers, listen);
    let ack = stream.next_event();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "mine", "{ack}");
    // One open subscription is this agent's limit on this server.
    let (status, _, body) = http("POST", &url, &headers, listen);
    assert_eq!(status, 429, "{body}");
    // Leaving frees the slot (the upstream is told to cancel); a new listen is acknowledged.
    drop(stream);
    let mut again = common::harness::SseStream::open_when(&url, &headers, listen);
    assert_eq!(again.next_event()["method"], "notifications/subscriptions/acknowledged");
    drop(again);
    assert!(served.stop().success());
    let events = d.events();
    assert!(of_kind(&events, "call.requested").iter().any(|e| e["tool"] == "listen/poke" && e["agent"] == "reader"));
    assert!(of_kind(&events, "protocol.error").iter().any(|e| e["detail"]["reason"] == "too many subscriptions"));
}

/// `text` as the official Prometheus client's parser reads it (`tests/peers/prom_parse.py`): one
/// object per family, with its type and samples; panics if it does not parse.
fn prometheus_parse(text: &str) -> Vec<Value> {
    use std::io::Write as _;
    let mut child = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
