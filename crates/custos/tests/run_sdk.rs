//! `custos run` between real MCP SDK peers: the official Rust SDK (rmcp) client against the
//! repo's rmcp sample server, and the official Python SDK client against the official
//! server-everything (npm).

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{of_kind, peers_python, server_everything, Deployment, POLICIES};
use common::rmcp_client::{connect, text, Received};
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_through_custos_allow_deny_hide_and_pass_through_both_ways() {
    let d = Deployment::new(POLICIES, "");
    let mut client = connect(d.run_sample_tokio(&["--agent", "reader", "--run", "sdk-run"])).await.unwrap();
    let peer = client.peer().clone();

    // Hidden: a reader only sees read tools.
    let tools: Vec<String> = peer.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(tools.contains(&"echo".to_owned()) && tools.contains(&"add".to_owned()), "{tools:?}");
    for hidden in ["write_note", "delete_everything", "crash"] {
        assert!(!tools.contains(&hidden.to_owned()), "{hidden} should be hidden from a reader: {tools:?}");
    }

    // Allowed.
    assert_eq!(text(&client.call("echo", json!({"text": "hi"})).await.unwrap()), "hi");
    // Denied, with the policy named.
    let err = client.call("write_note", json!({"title": "t", "body": "b"})).await.unwrap_err().to_string();
    assert!(err.contains("custos denied `sample/write_note`") && err.contains("default deny"), "{err}");

    // Server-to-client requests cross the gateway and their answers come back.
    let sampled = client.call("ask_model", json!({"prompt": "2+2?"})).await.unwrap();
    assert_eq!(text(&sampled), "model said: sampled: 2+2?");
    let roots = client.call("list_roots", json!({})).await.unwrap();
    assert_eq!(text(&roots), "file:///tmp/root-a,file:///tmp/root-b");
    let elicited: Value =
        serde_json::from_str(&text(&client.call("ask_user", json!({"question": "ok?"})).await.unwrap())).unwrap();
    assert_eq!(elicited["action"], "accept");

    // Notifications: progress and logging.
    assert_eq!(text(&client.call("count_with_progress", json!({"n": 3})).await.unwrap()), "counted 3");
    client.wait_until(|r| r.iter().filter(|n| matches!(n, Received::Progress(_))).count() >= 3).await.unwrap();
    client.call("log_message", json!({"text": "note"})).await.unwrap();
    client.wait_until(|r| r.iter().any(|n| matches!(n, Received::Log(_)))).await.unwrap();

    // Resources, prompts, ping.
    let read = peer.read_resource(ReadResourceRequestParams::new("sample://greeting")).await.unwrap();
    assert!(
        matches!(&read.contents[..], [ResourceContents::TextResourceContents { text, .. }] if text == "hello from the sample server")
    );
    let prompt = peer
        .get_prompt(
            GetPromptRequestParams::new("greet").with_arguments(json!({"name": "Ada"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(prompt.messages[0].content.as_text().map(|t| t.text.as_str()), Some("Say hello to Ada"));
    client.ping().await.unwrap();

    // A tool error is a result, recorded as such.
    let failed = client.call("fail", json!({})).await.unwrap();
    assert_eq!(failed.is_error, Some(true));
    client.close().await.unwrap();

    let events = d.events();
    let decided: Vec<(&str, &str)> = of_kind(&events, "call.decided")
        .iter()
        .map(|e| (e["tool"].as_str().unwrap(), e["decision"].as_str().unwrap()))
        .collect();
    assert!(decided.contains(&("sample/echo", "allow")));
    assert!(decided.contains(&("sample/write_note", "deny")));
    let outcomes: Vec<&str> =
        of_kind(&events, "call.finished").iter().map(|e| e["detail"]["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.contains(&"tool_error") && outcomes.contains(&"ok"), "{outcomes:?}");
    assert!(events.iter().all(|e| e["agent"] == "reader" && e["run"] == "sdk-run"));
    assert!(of_kind(&events, "tool.seen").len() >= 10, "the inventory records every listed tool, hidden or not");
    let steps: Vec<u64> = of_kind(&events, "call.requested").iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>(), "steps are numbered in order");
    d.verify_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_mode_lists_every_tool_but_still_decides_each_call() {
    let d = Deployment::new(POLICIES, "");
    std::fs::write(
        d.config(),
        std::fs::read_to_string(d.config()).unwrap().replace("[policy]\n", "[policy]\ntools_list = \"show\"\n"),
    )
    .unwrap();
    let client = connect(d.run_sample_tokio(&[])).await.unwrap();
    let tools: Vec<String> =
        client.peer().list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(tools.contains(&"delete_everything".to_owned()), "{tools:?}");
    assert!(client.call("delete_everything", json!({"confirm": true})).await.is_err());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_sees_the_upstream_crash_as_an_error() {
    let d = Deployment::new(POLICIES, "");
    let client = connect(d.run_sample_tokio(&["--agent", "operator"])).await.unwrap();
    let err = client.call("crash", json!({})).await.unwrap_err().to_string();
    assert!(err.contains("exited"), "{err}");
    client.wait_closed().await.unwrap();
    assert_eq!(of_kind(&d.events(), "upstream.exited").len(), 1);
    d.verify_ok();
}

/// Python SDK client → custos run → server-everything: neither peer written here.
#[test]
fn python_sdk_client_and_server_everything_through_custos() {
    let policies = r#"
@id("agents-may-echo-sum-sample")
permit (principal, action == Custos::Action::"call_tool", resource)
when { ["echo", "get-sum", "trigger-sampling-request", "trigger-long-running-operation"].contains(resource.name) };
"#;
    let d = Deployment::new(policies, "[[servers]]\nname = \"everything\"\n");
    let everything = server_everything();
    let out = std::process::Command::new(peers_python())
        .arg(common::harness::repo_root().join("tests/peers/mcp_client.py"))
        .args(["--list-tools"])
        .args(["--call", "echo", r#"{"message":"through custos"}"#])
        .args(["--call", "get-env", "{}"])
        .args(["--call", "get-sum", r#"{"a":2,"b":3}"#])
        .args(["--call", "trigger-sampling-request", r#"{"prompt":"hello","maxTokens":20}"#])
        .args(["--call", "trigger-long-running-operation", r#"{"duration":0.2,"steps":2}"#])
        .args(["--sample-reply", "pong from python"])
        .args(["--resources", "--prompts", "--ping", "--"])
        .arg(common::harness::custos_bin())
        .args(["run", "--config"])
        .arg(d.config())
        .args(["--agent", "reader", "--server", "everything", "--", "node", &everything, "stdio"])
        .output()
        .unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let tools: Vec<&str> = steps[0]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tools.contains(&"echo") && !tools.contains(&"get-env"), "get-env is hidden: {tools:?}");
    assert_eq!(steps[1]["content"][0], "Echo: through custos");
    assert_eq!(steps[2]["ok"], false, "{}", steps[2]);
    assert_eq!(steps[2]["error"]["code"], -32001);
    assert!(steps[2]["error"]["message"].as_str().unwrap().contains("everything/get-env"));
    assert_eq!(steps[3]["content"][0], "The sum of 2 and 3 is 5.");
    assert!(steps[4]["content"][0].as_str().unwrap().contains("pong from python"), "{}", steps[4]);
    assert_eq!(steps[5]["progress"].as_array().unwrap().len(), 2, "progress notifications pass through");
    assert!(!steps[6]["resources"].as_array().unwrap().is_empty());
    assert!(!steps[7]["prompts"].as_array().unwrap().is_empty());
    assert_eq!(steps[8]["ok"], true);
    assert_eq!(report["sampling_requests"], 1);

    let events = d.events();
    let denied: Vec<&str> = of_kind(&events, "call.decided")
        .iter()
        .filter(|e| e["decision"] == "deny")
        .map(|e| e["tool"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["everything/get-env"]);
    assert_eq!(of_kind(&events, "call.finished").len(), 4);
    d.verify_ok();
}
