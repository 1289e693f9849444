//! The detectors end to end, through `custos run` against `tests/peers/detect_upstream.py` (a
//! stdio MCP server that misbehaves on purpose): a rug pull quarantined until accepted, a
//! renamed tool and a look-alike quarantined the same way, answers the upstream was never asked
//! for dropped, a poisoned descriptor, injection in a result, the toxic-flow policy holding an
//! egress call, a replayed privileged call, loops and rate limits.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{of_kind, repo_root, Deployment, RawSession};
use serde_json::{json, Value};

/// Everyone may call everything: what is refused here is refused by the detectors, or by the
/// toxic-flow policies shipped in `examples/policies/`.
const ALLOW_ALL: &str = r#"permit (principal, action == Custos::Action::"call_tool", resource);"#;

fn deployment(extra: &str) -> Deployment {
    let toxic = std::fs::read_to_string(repo_root().join("examples/policies/toxic-flow.cedar")).unwrap();
    deployment_with(&format!("{ALLOW_ALL}\n{toxic}"), extra)
}

fn deployment_with(policies: &str, extra: &str) -> Deployment {
    deployment_running(policies, extra, &[])
}

/// A deployment whose `detect` server is the peer run with `args` (its misbehaviours).
fn deployment_running(policies: &str, extra: &str, args: &[&str]) -> Deployment {
    let d = Deployment::new(policies, "");
    let peer = repo_root().join("tests/peers/detect_upstream.py");
    let peer: Vec<String> =
        std::iter::once(peer.to_string_lossy().into_owned()).chain(args.iter().map(|a| (*a).to_owned())).collect();
    let config = std::fs::read_to_string(d.config()).unwrap();
    let servers = format!(
        r#"
[approvals]
timeout_ms = 300
[approvals.groups.security]
members = ["sec@example.com"]
{extra}
[[servers]]
name = "detect"
command = ["python3", {}]
tools = {{ "rotate_credentials" = "privileged", "*" = "read", "create_pull_request" = "write" }}
flows = {{ "get_issue" = ["untrusted_input"], "get_private_file" = ["read_sensitive"], "create_pull_request" = ["egress"] }}
"#,
        peer.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
    );
    std::fs::write(d.config(), format!("{config}{servers}")).unwrap();
    d
}

fn session(d: &Deployment) -> RawSession {
    let mut s = RawSession::start(d, &["--agent", "operator", "--server", "detect"], &[]);
    s.initialize();
    s
}

fn call(s: &mut RawSession, id: u64, name: &str, arguments: Value) -> Value {
    s.request(json!(id), "tools/call", json!({ "name": name, "arguments": arguments }))
}

fn list(s: &mut RawSession, id: u64) -> Value {
    s.request(json!(id), "tools/list", json!({}))
}

fn denied(answer: &Value) -> &str {
    assert_eq!(answer["error"]["code"], -32001, "expected a refusal: {answer}");
    answer["error"]["message"].as_str().unwrap()
}

fn findings(d: &Deployment) -> Vec<(String, String, String)> {
    let events = d.events();
    of_kind(&events, "finding.recorded")
        .iter()
        .map(|f| {
            let s = |k: &str| f["detail"][k].as_str().unwrap_or_default().to_owned();
            (s("finding"), s("rule"), s("action"))
        })
        .collect()
}

/// A tool whose description changes between two listings is quarantined: its calls are refused
/// until an operator accepts the new descriptor, and then they run again.
#[test]
fn a_rug_pull_is_quarantined_until_accepted() {
    let d = deployment("");
    let mut s = session(&d);
    list(&mut s, 2);
    assert_eq!(call(&mut s, 3, "weather", json!({"city": "Oslo"}))["result"]["content"][0]["text"], "sunny in Oslo");
    list(&mut s, 4); // the description changed
    let message = denied(&call(&mut s, 5, "weather", json!({"city": "Oslo"}))).to_owned();
    assert!(message.contains("quarantined") && message.contains("custos tools accept"), "{message}");
    let found = findings(&d);
    assert!(found.iter().any(|(kind, _, action)| kind == "rug_pull" && action == "quarantined"), "{found:?}");

    let out = d.output(&["tools", "accept", "detect/weather", "--as", "sec@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = call(&mut s, 6, "weather", json!({"city": "Oslo"}));
    assert!(answer["result"].is_object(), "accepted: it runs again: {answer}");
    s.finish();
    d.verify_ok();
}

fn rug_pull_rules(d: &Deployment) -> Vec<(String, String, String)> {
    findings(d).into_iter().filter(|(kind, _, action)| kind == "rug_pull" && action == "quarantined").collect()
}

/// The server renames `refund` to `Refund` (the same descriptor) and lists `rotate_credentiaIs`
/// (capital I) beside `rotate_credentials`: new names that a policy written for the old ones
/// does not match (here a `forbid` on `detect/refund`, and the config's `privileged` class for
/// `rotate_credentials`, which the look-alike would escape as `read`). Both are quarantined
/// like a rug pull, shown against the tool they resemble, and run once accepted.
#[test]
fn a_renamed_tool_and_a_look_alike_are_quarantined_until_accepted() {
    let policies = format!(
        "{ALLOW_ALL}\n@id(\"no-refunds\")\nforbid (principal, action, resource == Custos::Tool::\"detect/refund\");\n"
    );
    let d = deployment_running(&policies, "", &["--rename"]);
    let mut s = session(&d);
    // `refund` is hidden from this agent (it may never call it), and pinned all the same.
    let listed = list(&mut s, 2);
    assert!(!listed["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "refund"), "{listed}");
    denied(&call(&mut s, 3, "refund", json!({"order": "A-1"})));

    // The rename, with the old name gone, and the look-alike beside the original.
    list(&mut s, 4);
    let message = denied(&call(&mut s, 5, "Refund", json!({"order": "A-1"}))).to_owned();
    assert!(message.contains("resembles `detect/refund`") && message.contains("custos tools accept"), "{message}");
    let message = denied(&call(&mut s, 6, "rotate_credentiaIs", json!({"service": "db"}))).to_owned();
    assert!(message.contains("resembles `detect/rotate_credentials`"), "{message}");
    let original = call(&mut s, 7, "rotate_credentials", json!({"service": "db"}));
    assert_eq!(original["result"]["content"][0]["text"], "rotated credentials of db", "{original}");
    // (`weather` pulls its own rug on the second listing: `descriptor_changed`.)
    let rules: Vec<String> = rug_pull_rules(&d).into_iter().map(|(_, rule, _)| rule).collect();
    assert_eq!(rules, ["descriptor_changed", "renamed", "confusable_name"]);
    let events = d.events();
    let renamed = of_kind(&events, "finding.recorded").into_iter().find(|f| f["detail"]["rule"] == "renamed").unwrap();
    assert_eq!((&renamed["tool"], &renamed["detail"]["resembles"]), (&json!("detect/Refund"), &json!("detect/refund")));

    // The operator sees both, and the rename against the tool it resembles.
    let listed = d.output(&["tools", "list", "--json"]);
    let listed: Vec<Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |tool: &str| listed.iter().find(|t| t["tool"] == tool).unwrap_or_else(|| panic!("{tool}: {listed:?}"));
    assert_eq!(
        (&row("detect/Refund")["state"], &row("detect/Refund")["resembles"]),
        (&json!("quarantined"), &json!("detect/refund"))
    );
    assert_eq!(row("detect/rotate_credentiaIs")["state"], "quarantined");
    assert_eq!(row("detect/refund")["state"], "pinned");
    assert_eq!(
        (&row("detect/rotate_credentials")["state"], &row("detect/rotate_credentials")["resembles"]),
        (&json!("pinned"), &Value::Null)
    );
    let table = d.output(&["tools", "list"]);
    assert!(String::from_utf8_lossy(&table.stderr).contains("`detect/Refund` is new and resembles `detect/refund`"));
    let diff = String::from_utf8(d.output(&["tools", "diff", "detect/Refund"]).stdout).unwrap();
    assert!(diff.starts_with("--- pinned detect/Refund ") && diff.contains("the pin of detect/refund"), "{diff}");
    assert!(diff.contains("-  \"name\": \"refund\"") && diff.contains("+  \"name\": \"Refund\""), "{diff}");

    let out = d.output(&["tools", "accept", "detect/Refund", "--as", "sec@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer = call(&mut s, 8, "Refund", json!({"order": "A-1"}));
    assert_eq!(answer["result"]["content"][0]["text"], "refunded order A-1", "accepted: it runs: {answer}");
    denied(&call(&mut s, 9, "rotate_credentiaIs", json!({"service": "db"})));
    // Listed again: nothing new to report.
    list(&mut s, 10);
    assert_eq!(rug_pull_rules(&d).len(), 3);
    s.finish();
    d.verify_ok();
}

/// An upstream that answers requests it was never sent (an id the client has not used yet)
/// and answers one twice: the client sees only the one real answer to each request, the log
/// records the others as protocol errors from the upstream, and the session goes on.
#[test]
fn answers_the_upstream_was_never_asked_for_do_not_reach_the_client() {
    let d = deployment_running(ALLOW_ALL, "", &["--unsolicited"]);
    let mut s = session(&d);
    for id in [2, 3] {
        s.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        // The next line is the answer to this ping, not the forged one nor the repeat.
        let answer = s.recv();
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": id, "result": {}}));
    }
    assert_eq!(call(&mut s, 4, "weather", json!({"city": "Oslo"}))["result"]["content"][0]["text"], "sunny in Oslo");
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");
    let events = d.events();
    let mut unsolicited: Vec<&str> = of_kind(&events, "protocol.error")
        .into_iter()
        .filter(|e| e["detail"]["from"] == "upstream")
        .filter_map(|e| e["detail"]["request_id"].as_str())
        .collect();
    // Ping 2: a forged answer to 3 (not sent yet), then 2 again; ping 3: to 4, then 3 again.
    // (Frames read together are recorded concurrently: their order in the log may vary.)
    unsolicited.sort_unstable();
    assert_eq!(unsolicited, ["2", "3", "3", "4"]);
    d.verify_ok();
}

/// The same through `custos serve`: the session's pipeline drops them and records them.
#[test]
fn serve_drops_answers_the_upstream_was_never_asked_for() {
    use common::harness::{header, http, issue_key, Served, INIT};
    let d = deployment_running(ALLOW_ALL, "", &["--unsolicited"]);
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("detect");
    let auth = format!("Bearer {key}");
    let (status, headers, body) = http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    assert_eq!(status, 200, "{body}");
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let post = |body: &str| {
        let headers = [("Authorization", auth.as_str()), ("Accept", "application/json"), ("Mcp-Session-Id", &session)];
        http("POST", &url, &headers, body)
    };
    post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    for id in [2, 3] {
        let (status, _, body) = post(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"jsonrpc": "2.0", "id": id, "result": {}}));
    }
    let recorded = || {
        let events = d.events();
        let mut ids: Vec<String> = of_kind(&events, "protocol.error")
            .into_iter()
            .filter(|e| e["detail"]["from"] == "upstream")
            .filter_map(|e| e["detail"]["request_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort_unstable();
        (ids.len() == 4).then_some(ids)
    };
    let ids = common::harness::eventually("four unsolicited answers recorded", recorded);
    assert_eq!(ids, ["2", "3", "3", "4"]);
    served.stop();
    d.verify_ok();
}

/// A parameter description that hides an instruction is a poisoning finding on sight; with
/// `quarantine_poisoned`, the tool is refused.
#[test]
fn a_poisoned_descriptor_is_flagged_and_quarantined_by_config() {
    let d = deployment("[detection]\nquarantine_poisoned = \"high\"\n");
    let mut s = session(&d);
    list(&mut s, 2);
    let found = findings(&d);
    assert!(found.iter().any(|(kind, _, action)| kind == "tool_poisoning" && action == "quarantined"), "{found:?}");
    let message = denied(&call(&mut s, 3, "add", json!({"a": 1, "b": 2}))).to_owned();
    assert!(message.contains("quarantined"), "{message}");
    assert!(call(&mut s, 4, "get_issue", json!({"number": 1}))["result"].is_object(), "other tools run");
    s.finish();
}

/// A descriptor poisoned in plain words (none of the rules' phrases) is caught by the learned
/// classifier on `tools/list`, and quarantined because it scores above `quarantine_score`;
/// with the classifier off, nothing is found and the tool runs.
#[test]
fn a_descriptor_poisoned_in_plain_words_is_caught_by_the_classifier_and_quarantined_by_score() {
    let d =
        deployment_running(&format!("{ALLOW_ALL}\n"), "[detection.classifier]\nquarantine_score = 0.5\n", &["--plain"]);
    let mut s = session(&d);
    list(&mut s, 2);
    let events = d.events();
    let on_sync: Vec<&Value> = of_kind(&events, "finding.recorded")
        .into_iter()
        .filter(|e| e["tool"].as_str() == Some("detect/sync_notes"))
        .collect();
    assert_eq!(on_sync.len(), 1, "the classifier alone flags it: {on_sync:?}");
    let detail = &on_sync[0]["detail"];
    assert_eq!((detail["finding"].as_str(), detail["rule"].as_str()), (Some("tool_poisoning"), Some("classifier")));
    assert_eq!(detail["action"], "quarantined");
    let evidence = detail["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("score 0.") && evidence.contains("features:"), "{evidence}");
    let message = denied(&call(&mut s, 3, "sync_notes", json!({"text": "minutes"}))).to_owned();
    assert!(message.contains("quarantined"), "{message}");
    assert!(call(&mut s, 4, "get_issue", json!({"number": 1}))["result"].is_object(), "other tools run");
    s.finish();

    let off = deployment_running(
        &format!("{ALLOW_ALL}\n"),
        "[detection.classifier]\nenabled = false\nquarantine_score = 0.5\n",
        &["--plain"],
    );
    let mut s = session(&off);
    list(&mut s, 2);
    assert!(
        call(&mut s, 3, "sync_notes", json!({"text": "minutes"}))["result"].is_object(),
        "the rules alone let it by"
    );
    s.finish();
    assert!(!findings(&off).iter().any(|(_, rule, _)| rule == "classifier"), "{:?}", findings(&off));
}

/// An injection in plain words in a result is found by the classifier, labels the run as
/// `untrusted_input` and is visible to policy as any injection is: the shipped toxic-flow
/// policy then refuses the egress call it asked for.
#[test]
fn an_injection_in_plain_words_is_found_by_the_classifier_and_stops_egress() {
    let toxic = std::fs::read_to_string(repo_root().join("examples/policies/toxic-flow.cedar")).unwrap();
    let d = deployment_running(&format!("{ALLOW_ALL}\n{toxic}"), "", &["--plain"]);
    let mut s = session(&d);
    list(&mut s, 2);
    let issue = call(&mut s, 3, "get_issue", json!({"number": 3}));
    assert!(issue["result"]["content"][0]["text"].as_str().unwrap().contains("Heads-up"), "recorded, passed");
    let message = denied(&call(&mut s, 4, "create_pull_request", json!({"title": "roadmap"}))).to_owned();
    assert!(message.contains("injected instruction"), "{message}");
    s.finish();
    let found = findings(&d);
    assert!(
        found.contains(&("output_injection".to_owned(), "classifier".to_owned(), "recorded".to_owned())),
        "{found:?}"
    );
    assert!(!found.iter().any(|(kind, rule, _)| kind == "output_injection" && rule != "classifier"), "{found:?}");
}

/// The GitHub data-leak pattern: untrusted input, then private data, then an egress call,
/// which the shipped policy holds for the `security` group. An injected instruction in a
/// result is recorded, labels the run, and stops egress outright.
#[test]
fn the_toxic_flow_policy_holds_egress_and_an_injection_stops_it() {
    let d = deployment("");
    let mut s = session(&d);
    list(&mut s, 2);
    assert!(call(&mut s, 3, "create_pull_request", json!({"title": "a"}))["result"].is_object(), "clean run");
    call(&mut s, 4, "get_issue", json!({"number": 1}));
    call(&mut s, 5, "get_private_file", json!({"path": "roadmap.md"}));
    let held = call(&mut s, 6, "create_pull_request", json!({"title": "b"}));
    assert_eq!(held["error"]["code"], -32004, "held for an approval: {held}");
    s.finish();
    let events = d.events();
    let requested = of_kind(&events, "approval.requested");
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["detail"]["policies"], json!(["toxic-flow-egress"]));
    let labels: Vec<&Value> = of_kind(&events, "run.labeled").iter().map(|e| &e["detail"]["label"]).collect();
    assert_eq!(labels, [&json!("untrusted_input"), &json!("read_sensitive")]);
    assert!(findings(&d).iter().any(|(kind, _, _)| kind == "toxic_flow"));

    // Another run: an injected instruction in an issue.
    let mut s = session(&d);
    list(&mut s, 2);
    let issue = call(&mut s, 3, "get_issue", json!({"number": 2}));
    assert!(
        issue["result"]["content"][0]["text"].as_str().unwrap().contains("Ignore all previous"),
        "recorded, passed"
    );
    let message = denied(&call(&mut s, 4, "create_pull_request", json!({"title": "c"}))).to_owned();
    assert!(message.contains("injected instruction"), "{message}");
    s.finish();
    assert!(findings(&d).iter().any(|(kind, _, action)| kind == "output_injection" && action == "recorded"));
}

/// `[detection] output = "block"` withholds a result that carries an injection.
#[test]
fn an_injected_result_can_be_blocked() {
    let d = deployment("[detection]\noutput = \"block\"\n");
    let mut s = session(&d);
    list(&mut s, 2);
    let message = denied(&call(&mut s, 3, "get_issue", json!({"number": 2}))).to_owned();
    assert!(message.contains("withheld"), "{message}");
    assert!(call(&mut s, 4, "get_issue", json!({"number": 1}))["result"].is_object());
    s.finish();
}

/// The same privileged call again within the window is refused; other arguments are not a replay.
/// With the shipped `replay-needs-approval` policy, a replay waits for a human instead.
#[test]
fn a_replayed_privileged_call_is_denied() {
    let d = deployment_with(ALLOW_ALL, "");
    let mut s = session(&d);
    list(&mut s, 2);
    assert!(call(&mut s, 3, "rotate_credentials", json!({"service": "db"}))["result"].is_object());
    let message = denied(&call(&mut s, 4, "rotate_credentials", json!({"service": "db"}))).to_owned();
    assert!(message.contains("same arguments"), "{message}");
    assert!(call(&mut s, 5, "rotate_credentials", json!({"service": "cache"}))["result"].is_object());
    s.finish();
    assert!(findings(&d)
        .iter()
        .any(|(kind, rule, action)| kind == "replay" && rule == "same_call" && action == "denied"));
}

/// A loop (the same call three times in a row) and a rate limit (five calls a minute) trip.
#[test]
fn loops_and_rate_limits_trip() {
    let d = deployment(
        "[detection]\nloop_threshold = 3\n[[detection.limits]]\ntool = \"detect/weather\"\ncalls_per_minute = 5\n",
    );
    let mut s = session(&d);
    list(&mut s, 2);
    let weather = |city: &str| json!({ "city": city });
    assert!(call(&mut s, 3, "weather", weather("a"))["result"].is_object());
    assert!(call(&mut s, 4, "weather", weather("a"))["result"].is_object());
    let message = denied(&call(&mut s, 5, "weather", weather("a"))).to_owned();
    assert!(message.contains("in a row"), "{message}");
    assert!(call(&mut s, 6, "weather", weather("b"))["result"].is_object(), "another call breaks the loop");
    assert!(call(&mut s, 7, "weather", weather("c"))["result"].is_object());
    let message = denied(&call(&mut s, 8, "weather", weather("d"))).to_owned();
    assert!(message.contains("in the last minute"), "{message}");
    assert!(call(&mut s, 9, "get_issue", json!({"number": 1}))["result"].is_object(), "other tools are not limited");
    s.finish();
    let found = findings(&d);
    assert!(found.iter().any(|(kind, _, _)| kind == "loop"), "{found:?}");
    assert!(found.iter().any(|(kind, _, _)| kind == "rate_limit"), "{found:?}");
}

/// `[detection] output = "redact"` removes the injected sentence and passes the rest.
#[test]
fn an_injected_result_can_be_redacted() {
    let d = deployment("[detection]\noutput = \"redact\"\n");
    let mut s = session(&d);
    list(&mut s, 2);
    let answer = call(&mut s, 3, "get_issue", json!({"number": 2}));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}"));
    assert!(text.starts_with("The build fails on ARM."), "the rest passes: {text}");
    assert!(text.contains("[REMOVED:model_instruction]") && !text.contains("Ignore all previous"), "{text}");
    s.finish();
    assert!(findings(&d).iter().any(|(kind, _, action)| kind == "output_injection" && action == "redacted"));
}

/// A JSON-RPC request id used again in the same session is a replay.
#[test]
fn a_reused_request_id_is_a_replay() {
    let d = deployment_with(ALLOW_ALL, "");
    let mut s = session(&d);
    list(&mut s, 2);
    assert!(call(&mut s, 3, "get_issue", json!({"number": 1}))["result"].is_object());
    let message = denied(&call(&mut s, 3, "get_issue", json!({"number": 1}))).to_owned();
    assert!(message.contains("request id"), "{message}");
    s.finish();
    assert!(findings(&d).iter().any(|(kind, rule, _)| kind == "replay" && rule == "request_id"));
}

/// Rate limits are per agent across its sessions of `custos serve`, not per session.
#[test]
fn serve_counts_an_agents_calls_across_its_sessions() {
    let d = deployment_with(ALLOW_ALL, "[[detection.limits]]\ntool = \"detect/*\"\ncalls_per_minute = 3\n");
    let key = common::harness::issue_key(&d, "operator");
    let served = common::harness::Served::start(&d);
    let url = served.url("detect");
    let report = |calls: &[u32]| {
        let mut args = vec!["--list-tools".to_owned()];
        for n in calls {
            args.extend(["--call".to_owned(), "get_issue".to_owned(), format!("{{\"number\": {n}}}")]);
        }
        args.push("--terminate".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::harness::python_http(&url, &key, &args)
    };
    let first = report(&[1, 1]);
    assert!(first["steps"][1]["ok"] == json!(true) && first["steps"][2]["ok"] == json!(true), "{first}");
    // A new session of the same agent: one call left in this minute.
    let second = report(&[1, 1]);
    assert_eq!(second["steps"][1]["ok"], json!(true), "{second}");
    assert_eq!(second["steps"][2]["ok"], json!(false), "the fourth call in a minute: {second}");
    drop(served);
    assert!(findings(&d).iter().any(|(kind, _, action)| kind == "rate_limit" && action == "denied"));
}
