//! Checks the test client against the sample server directly, with no gateway
//! in between, so that gateway tests can trust both ends.
//!
//! Needs the sample server binary, which Cargo does not build for this crate:
//!
//! ```text
//! cargo build -p custos-sample-server && cargo test -p custos --test sample_server_smoke
//! ```

#![allow(clippy::expect_used, reason = "test helpers: any failure should fail the test")]
#![expect(deprecated, reason = "log notifications are deprecated by SEP-2577 but still in MCP 2025-11-25")]

mod common;

use std::path::PathBuf;

use common::rmcp_client::{self, text, Received, ROOT_A, ROOT_B, SAMPLING_PREFIX};
use rmcp::{
    model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents},
    service::QuitReason,
    ServiceError,
};
use serde_json::json;

/// `target/<profile>/custos-sample-server`, beside this test's `deps/` directory.
fn sample_server_path() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("custos-sample-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "sample server binary not found at {}; build it first with \
         `cargo build -p custos-sample-server` (same profile as the tests)",
        path.display()
    );
    path
}

#[tokio::test]
async fn sample_server_answers_every_kind_of_traffic() {
    let client = rmcp_client::connect(tokio::process::Command::new(sample_server_path())).await.unwrap();
    let peer = client.peer();

    let info = peer.peer_info().expect("server info after initialize");
    assert_eq!(info.server_info.as_ref().map(|i| i.name.as_str()), Some("custos-sample-server"));
    client.ping().await.unwrap();

    // Tools, with honest annotations.
    let tools = peer.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "add",
            "ask_model",
            "ask_user",
            "big_output",
            "count_with_progress",
            "crash",
            "delete_everything",
            "echo",
            "fail",
            "list_roots",
            "log_message",
            "write_note",
        ]
    );
    for tool in &tools {
        assert!(tool.annotations.is_some(), "`{}` has no annotations", tool.name);
    }
    let annotations = |name: &str| tools.iter().find(|t| t.name == name).and_then(|t| t.annotations.clone()).unwrap();
    assert_eq!(annotations("echo").read_only_hint, Some(true));
    assert_eq!(annotations("write_note").read_only_hint, Some(false));
    assert_eq!(annotations("write_note").destructive_hint, Some(false));
    assert_eq!(annotations("delete_everything").destructive_hint, Some(true));

    // Plain calls.
    let echoed = client.call("echo", json!({ "text": "hi there" })).await.unwrap();
    assert_eq!(text(&echoed), "hi there");
    assert_ne!(echoed.is_error, Some(true));
    let sum = client.call("add", json!({ "a": 2, "b": 40 })).await.unwrap();
    assert_eq!(text(&sum), "42");

    // Server-to-client requests.
    let sampled = client.call("ask_model", json!({ "prompt": "what is 6 x 7?" })).await.unwrap();
    assert_eq!(text(&sampled), format!("model said: {SAMPLING_PREFIX}what is 6 x 7?"));
    let roots = client.call("list_roots", json!({})).await.unwrap();
    assert_eq!(text(&roots), format!("{ROOT_A},{ROOT_B}"));
    let elicited = client.call("ask_user", json!({ "question": "proceed?" })).await.unwrap();
    let elicited: serde_json::Value = serde_json::from_str(&text(&elicited)).unwrap();
    assert_eq!(elicited, json!({ "action": "accept", "content": { "answer": "yes" } }));

    // Notifications: rmcp gives every request a progress token.
    let counted = client.call("count_with_progress", json!({ "n": 3 })).await.unwrap();
    assert_eq!(text(&counted), "counted 3");
    let progress =
        client.wait_until(|r| r.iter().filter(|n| matches!(n, Received::Progress(_))).count() >= 3).await.unwrap();
    let steps: Vec<f64> = progress
        .iter()
        .filter_map(|n| match n {
            Received::Progress(p) => Some(p.progress),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [1.0, 2.0, 3.0]);

    let logged = client.call("log_message", json!({ "text": "note this" })).await.unwrap();
    assert_eq!(text(&logged), "logged");
    let received = client.wait_until(|r| r.iter().any(|n| matches!(n, Received::Log(_)))).await.unwrap();
    let log = received
        .iter()
        .find_map(|n| match n {
            Received::Log(log) => Some(log),
            _ => None,
        })
        .unwrap();
    assert_eq!(log.data, json!("note this"));

    // Resources and prompts.
    let resources = peer.list_all_resources().await.unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, "sample://greeting");
    let read = peer.read_resource(ReadResourceRequestParams::new("sample://greeting")).await.unwrap();
    match &read.contents[..] {
        [ResourceContents::TextResourceContents { text, .. }] => {
            assert_eq!(text, "hello from the sample server");
        }
        other => panic!("unexpected resource contents: {other:?}"),
    }
    let prompts = peer.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, "greet");
    let prompt = peer
        .get_prompt(
            GetPromptRequestParams::new("greet").with_arguments(json!({ "name": "Ada" }).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(prompt.messages.len(), 1);
    assert_eq!(prompt.messages[0].content.as_text().map(|t| t.text.as_str()), Some("Say hello to Ada"));

    // Tool errors and large results.
    let failed = client.call("fail", json!({})).await.unwrap();
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text(&failed), "failed on purpose");
    let big = client.call("big_output", json!({ "bytes": 100_000 })).await.unwrap();
    let big = text(&big);
    assert_eq!(big.len(), 100_000);
    assert!(big.bytes().all(|b| b == b'x'));

    // The upstream dies mid-call: the call fails and the connection ends.
    let crashed = client.call("crash", json!({})).await;
    assert!(matches!(crashed, Err(ServiceError::TransportClosed)), "unexpected crash outcome: {crashed:?}");
    assert!(matches!(client.wait_closed().await.unwrap(), QuitReason::Closed));
}
