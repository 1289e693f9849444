//! The leak guard end to end: a careless stdio server given a key by the gateway hands it back
//! base64-, hex-, percent- and `\u`-encoded, in its result and in a log notification; the agent
//! gets `[REDACTED:secret]` in each place and the log a finding per form, naming the secret and
//! the encoding, never the value.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{custos_bin, of_kind, repo_root, Deployment, RawSession, POLICIES};
use serde_json::{json, Value};

const KEY: &str = "sk-test-9Qz!7f3/wE+x~~>?";

#[test]
fn encoded_secrets_from_a_careless_server_are_redacted_in_every_channel() {
    let d = Deployment::new(POLICIES, "");
    let config = std::fs::read_to_string(d.config()).unwrap();
    let upstream = repo_root().join("tests/peers/recording_upstream.py");
    let record = d.dir.path().join("received.jsonl");
    std::fs::write(
        d.config(),
        format!(
            "{config}command = [\"python3\", {:?}, {:?}]\n[servers.tools]\n\"*\" = \"read\"\n[[servers.inject]]\nsecret = \"upstream_key\"\nenv = \"UPSTREAM_KEY\"\n\n[secrets.upstream_key]\nenv = \"LEAK_TEST_KEY\"\n",
            upstream.to_str().unwrap(),
            record.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(custos_bin());
    cmd.arg("run").arg("--config").arg(d.config()).args(["--agent", "reader"]).env("LEAK_TEST_KEY", KEY);
    let mut s = RawSession::spawn(cmd);
    s.initialize();
    s.send_json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "encoded_env", "arguments": {"name": "UPSTREAM_KEY"}}}));
    let (answer, before) = s.recv_answer(&json!(2));
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");

    let texts: Vec<&str> =
        answer["result"]["content"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "[REDACTED:secret]",
            "Basic [REDACTED:secret]",
            "[REDACTED:secret]",
            "https://example.test/cb?k=[REDACTED:secret]",
            "[REDACTED:secret]"
        ],
        "{answer}"
    );
    let log = before.iter().find(|m| m["method"] == "notifications/message").unwrap_or_else(|| panic!("{before:?}"));
    assert_eq!(log["params"]["data"], "key in hex: [REDACTED:secret]");

    let events = d.events();
    let findings: Vec<&Value> = of_kind(&events, "finding.recorded");
    let mut encodings: Vec<&str> = findings
        .iter()
        .filter(|f| f["detail"]["finding"] == "secret_leak")
        .map(|f| {
            assert_eq!(f["detail"]["secret"], "upstream_key");
            f["detail"]["encoding"].as_str().unwrap()
        })
        .collect();
    encodings.sort_unstable();
    assert_eq!(encodings, ["base64", "base64url", "escaped", "hex", "hex", "percent"], "{findings:?}");
    let everything = format!("{}{stderr}", serde_json::to_string(&events).unwrap());
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    for form in [KEY.to_owned(), hex.clone(), hex.to_uppercase()] {
        assert!(!everything.contains(&form), "`{form}` in the log or stderr");
    }
    d.verify_ok();
}
