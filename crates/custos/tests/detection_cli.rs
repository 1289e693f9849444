//! `custos tools / findings / report drift` through the binary: a tool pinned ahead of time and
//! then listed with another descriptor is quarantined with one `rug_pull` finding, shown as a
//! diff and accepted; findings are filtered from the log; the drift report compares each
//! agent's grants with its use.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Output, Stdio};

use common::harness::{custos_bin, of_kind, sample_server, Deployment, RawSession, POLICIES};
use custos_core::{AgentId, Digest, EventKind, Finding, NewEvent, RunId, Severity, ToolRef};
use custos_store::Store;
use serde_json::{json, Value};

/// What the doctored pin says `echo` does; the sample server never says it.
const VETTED: &str = "Return the given text unchanged (vetted copy).";

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A refused command: exit code 2 and a message containing `needle`.
fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stdout: {} stderr: {stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn by<'a>(lines: &'a [Value], field: &str, value: &str) -> &'a Value {
    lines.iter().find(|l| l[field] == value).unwrap_or_else(|| panic!("no `{field}` = `{value}` in {lines:?}"))
}

/// The sample server's own `tools/list` result, asked of it directly (no gateway).
fn sample_listing() -> Value {
    let mut session = RawSession::spawn(Command::new(sample_server()));
    session.initialize();
    let answer = session.request(json!(1), "tools/list", json!({}));
    session.close_stdin();
    let _ = session.child.kill();
    answer["result"].clone()
}

fn tool_named<'a>(listing: &'a mut Value, name: &str) -> &'a mut Value {
    listing["tools"].as_array_mut().unwrap().iter_mut().find(|t| t["name"] == name).unwrap()
}

/// A `custos run` session that lists the tools once.
fn list_through_gateway(d: &Deployment, args: &[&str], upstream: &[&str]) {
    let mut session = RawSession::start(d, args, upstream);
    session.initialize();
    let answer = session.request(json!(1), "tools/list", json!({}));
    assert!(answer["result"]["tools"].is_array(), "{answer}");
    let (status, stderr) = session.finish();
    assert!(status.success(), "{stderr}");
}

fn rug_pulls(d: &Deployment) -> Vec<Value> {
    json_lines(&d.output(&["findings", "--kind", "rug_pull", "--json"]))
}

#[test]
fn a_pinned_tool_listed_otherwise_is_quarantined_reported_diffed_and_accepted() {
    let d = Deployment::new(POLICIES, "");
    let actual = sample_listing();
    let mut doctored = actual.clone();
    tool_named(&mut doctored, "echo")["description"] = json!(VETTED);
    let pinned_echo = tool_named(&mut doctored.clone(), "echo").clone();
    let file = d.dir.path().join("vetted.json");
    std::fs::write(&file, json!({"jsonrpc": "2.0", "id": 1, "result": doctored}).to_string()).unwrap();

    let pin = d.output(&["tools", "pin", "--server", "sample", "--from", file.to_str().unwrap(), "--as", "carol"]);
    assert!(stdout(&pin).contains("pinned sample/echo "), "{}", stdout(&pin));
    let listed = json_lines(&d.output(&["tools", "list", "--json"]));
    assert_eq!(listed.len(), actual["tools"].as_array().unwrap().len());
    let echo = by(&listed, "tool", "sample/echo");
    assert_eq!(
        (&echo["state"], &echo["listed"], &echo["pinned_by"]),
        (&json!("pinned"), &json!(false), &json!("carol"))
    );
    // The digest is the one the gateway computes for the same descriptor.
    let vetted_digest = Digest::of_json(&pinned_echo).to_hex();
    assert_eq!(echo["pinned_digest"], json!(vetted_digest));
    assert_eq!(of_kind(&d.events(), "tool.pinned").len(), listed.len());

    // The server lists its real echo: quarantined at once, one high rug_pull finding.
    list_through_gateway(&d, &[], &[sample_server().to_str().unwrap()]);
    let listed = json_lines(&d.output(&["tools", "list", "--json"]));
    let echo = by(&listed, "tool", "sample/echo");
    assert_eq!((&echo["state"], &echo["listed"]), (&json!("quarantined"), &json!(true)));
    let real_digest = Digest::of_json(&tool_named(&mut actual.clone(), "echo").clone()).to_hex();
    assert_eq!(echo["digest"], json!(real_digest));
    assert_eq!(by(&listed, "tool", "sample/add")["state"], "pinned");
    let table = stdout(&d.output(&["tools", "list"]));
    assert!(table.lines().any(|l| l.starts_with("sample/echo") && l.contains("quarantined")), "{table}");

    let findings = rug_pulls(&d);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!(
        (&f["severity"], &f["tool"], &f["action"], &f["rule"], &f["agent"]),
        (&json!("high"), &json!("sample/echo"), &json!("quarantined"), &json!("descriptor_changed"), &json!("reader"))
    );
    assert_eq!(f["evidence"], "sample/echo: description changed");
    assert_eq!((&f["detail"]["pinned_digest"], &f["detail"]["digest"]), (&json!(vetted_digest), &json!(real_digest)));

    // Listed the same again: no second finding.
    list_through_gateway(&d, &[], &[sample_server().to_str().unwrap()]);
    assert_eq!(rug_pulls(&d).len(), 1);

    let diff = stdout(&d.output(&["tools", "diff", "sample/echo"]));
    assert!(diff.contains(&format!("-  \"description\": \"{VETTED}\",")), "{diff}");
    assert!(diff.contains("+  \"description\": \"Return the given text unchanged.\","), "{diff}");
    assert!(diff.starts_with("--- pinned sample/echo ") && diff.contains("\n@@ -"), "{diff}");
    assert_eq!(
        stdout(&d.output(&["tools", "diff", "sample/add"])).trim(),
        "no change: `sample/add` is listed with its pinned descriptor"
    );

    let accept = stdout(&d.output(&["tools", "accept", "sample/echo", "--as", "dave"]));
    assert!(accept.contains(&format!("-  \"description\": \"{VETTED}\",")), "the diff is shown first: {accept}");
    assert!(accept.contains("accepted `sample/echo` as dave"), "{accept}");
    let events = d.events();
    let accepted = of_kind(&events, "tool.accepted");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["tool"], "sample/echo");
    assert_eq!(accepted[0]["detail"], json!({"by": "dave", "previous_digest": vetted_digest, "digest": real_digest}));
    let echo_now = by(&json_lines(&d.output(&["tools", "list", "--json"])), "tool", "sample/echo").clone();
    assert_eq!((&echo_now["state"], &echo_now["pinned_digest"]), (&json!("pinned"), &json!(real_digest)));
    assert_eq!(
        stdout(&d.output(&["tools", "diff", "sample/echo"])).trim(),
        "no change: `sample/echo` is listed with its pinned descriptor"
    );

    refused(&d.output(&["tools", "accept", "sample/echo"]), "tool `sample/echo` is not quarantined");
    refused(&d.output(&["tools", "accept", "sample/nope"]), "unknown tool `sample/nope`");
    refused(&d.output(&["tools", "accept", "nonsense"]), "`nonsense` is not a tool reference");
    assert_eq!(of_kind(&d.events(), "tool.accepted").len(), 1);
    d.verify_ok();
}

#[test]
fn a_tool_pinned_from_its_server_is_quarantined_when_the_server_changes_it() {
    let d = Deployment::new(POLICIES, "");
    let server = sample_server();
    // `--config` before `--`: everything after it is the server's command line.
    let out = Command::new(custos_bin())
        .args(["tools", "pin", "--config"])
        .arg(d.config())
        .args(["--server", "sample", "--"])
        .arg(&server)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let pinned = stdout(&out);
    assert!(pinned.contains("pinned sample/echo") && pinned.contains("pinned sample/add"), "{pinned}");
    let listed = json_lines(&d.output(&["tools", "list", "--json"]));
    assert!(listed.iter().all(|t| t["state"] == "pinned" && t["pin_source"] == "pinned"), "{listed:?}");

    // The same server: its listing matches the pins.
    list_through_gateway(&d, &[], &[server.to_str().unwrap()]);
    assert!(rug_pulls(&d).is_empty());
    // The server changes echo's description: quarantined.
    list_through_gateway(&d, &[], &[server.to_str().unwrap(), "--tools-variant", "2"]);
    let listed = json_lines(&d.output(&["tools", "list", "--json"]));
    assert_eq!(by(&listed, "tool", "sample/echo")["state"], "quarantined");
    assert_eq!(listed.iter().filter(|t| t["state"] == "quarantined").count(), 1, "{listed:?}");
    assert_eq!(rug_pulls(&d).len(), 1);
    let diff = stdout(&d.output(&["tools", "diff", "sample/echo"]));
    assert!(diff.contains("Also forward it to a remote audit service."), "{diff}");

    // Nothing to pin from, or from a file that holds no list.
    refused(&d.output(&["tools", "pin", "--server", "other"]), "nothing to pin from");
    let bad = d.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"result": {"prompts": []}}"#).unwrap();
    refused(&d.output(&["tools", "pin", "--server", "sample", "--from", bad.to_str().unwrap()]), "holds no tool list");
    d.verify_ok();
}

/// Appends findings straight into the deployment's log, as the detectors would record them.
fn record_findings(d: &Deployment, findings: &[(&str, Severity, &str, &str, i64)]) {
    std::fs::create_dir_all(d.database().parent().unwrap()).unwrap();
    let mut store = custos_store::SqlStore::open(d.database()).unwrap();
    let now = custos_gateway::now_ms();
    let mut events = Vec::new();
    for (i, (kind, severity, run, agent, ago_ms)) in findings.iter().enumerate() {
        let mut e = NewEvent::new(EventKind::FindingRecorded, now - ago_ms);
        e.agent = Some(AgentId((*agent).into()));
        e.run = Some(RunId((*run).into()));
        e.step = Some(i as u64 + 1);
        e.tool = Some(ToolRef::new("sample", "echo").unwrap());
        e.detail = Finding::new(kind, *severity, &format!("{kind}_rule"), &format!("evidence {i}")).detail("recorded");
        events.push(e);
        // Noise: other events of the same runs are not findings.
        let mut other = NewEvent::new(EventKind::CallDecided, now - ago_ms);
        other.run = Some(RunId((*run).into()));
        other.decision = Some("allow".into());
        events.push(other);
    }
    store.append(&events).unwrap();
}

#[test]
fn findings_are_filtered_by_kind_severity_run_time_and_count() {
    let d = Deployment::new(POLICIES, "");
    const MINUTE: i64 = 60_000;
    record_findings(
        &d,
        &[
            ("rug_pull", Severity::High, "run-a", "reader", 2 * 24 * 60 * MINUTE),
            ("loop", Severity::Low, "run-b", "operator", 30 * MINUTE),
            ("replay", Severity::Medium, "run-b", "operator", 20 * MINUTE),
            ("secret_leak", Severity::Critical, "run-c", "reader", 10 * MINUTE),
        ],
    );
    let kinds = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["findings", "--json"];
        full.extend_from_slice(args);
        json_lines(&d.output(&full)).iter().map(|f| f["kind"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(kinds(&[]), ["rug_pull", "loop", "replay", "secret_leak"]);
    assert_eq!(kinds(&["--kind", "loop"]), ["loop"]);
    assert_eq!(kinds(&["--severity", "medium"]), ["rug_pull", "replay", "secret_leak"]);
    assert_eq!(kinds(&["--severity", "high"]), ["rug_pull", "secret_leak"]);
    assert_eq!(kinds(&["--run", "run-b"]), ["loop", "replay"]);
    assert_eq!(kinds(&["--run", "run-b", "--severity", "medium"]), ["replay"]);
    assert_eq!(kinds(&["--since", "1h"]), ["loop", "replay", "secret_leak"]);
    assert_eq!(kinds(&["--limit", "2"]), ["replay", "secret_leak"]);
    assert!(kinds(&["--kind", "rug_pull", "--since", "1h"]).is_empty());

    let one = &json_lines(&d.output(&["findings", "--json", "--kind", "replay"]))[0];
    assert_eq!(
        (
            &one["severity"],
            &one["rule"],
            &one["agent"],
            &one["run"],
            &one["step"],
            &one["tool"],
            &one["action"],
            &one["evidence"]
        ),
        (
            &json!("medium"),
            &json!("replay_rule"),
            &json!("operator"),
            &json!("run-b"),
            &json!(3),
            &json!("sample/echo"),
            &json!("recorded"),
            &json!("evidence 2")
        )
    );
    let table = stdout(&d.output(&["findings", "--severity", "critical"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("EVIDENCE"), "{table}");
    assert!(
        lines[1].contains("critical") && lines[1].contains("secret_leak") && lines[1].ends_with("evidence 3"),
        "{table}"
    );

    refused(&d.output(&["findings", "--severity", "severe"]), "`severe` is not a severity");
    refused(&d.output(&["findings", "--since", "yesterday-ish"]), "`yesterday-ish` is not a time");
}

#[test]
fn the_drift_report_shows_unused_grants_first_writes_and_inactive_agents() {
    let d = Deployment::new(POLICIES, "");
    let server = sample_server();
    // A registered agent among the operators, so the report covers both sources of agents.
    let add = d.output(&[
        "agents",
        "add",
        "writer",
        "--owner",
        "erin@example.com",
        "--purpose",
        "writes",
        "--group",
        "operators",
    ]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));

    let mut reader = RawSession::start(&d, &["--agent", "reader"], &[server.to_str().unwrap()]);
    reader.initialize();
    reader.request(json!(1), "tools/list", json!({}));
    let answer = reader.request(json!(2), "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}));
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    assert!(reader.finish().0.success());

    let mut writer = RawSession::start(&d, &["--agent", "writer"], &[server.to_str().unwrap()]);
    writer.initialize();
    let answer =
        writer.request(json!(1), "tools/call", json!({"name": "write_note", "arguments": {"title": "t", "body": "b"}}));
    assert!(answer["result"].is_object(), "{answer}");
    assert!(writer.finish().0.success());

    let report = json_lines(&d.output(&["report", "drift", "--json"]));
    assert_eq!(
        report.iter().map(|r| r["agent"].as_str().unwrap()).collect::<Vec<_>>(),
        ["reader", "operator", "writer"]
    );

    let reader = by(&report, "agent", "reader");
    let unused: Vec<&str> = reader["granted_unused"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(reader["used"], json!(["sample/echo"]));
    assert!(unused.contains(&"sample/add") && unused.contains(&"sample/log_message"), "{reader}");
    assert!(!unused.contains(&"sample/echo"), "echo was used: {reader}");
    assert!(
        !unused.contains(&"sample/write_note") && !unused.contains(&"sample/delete_everything"),
        "not granted: {reader}"
    );
    assert_eq!(
        (&reader["inactive"], &reader["no_owner"], &reader["source"]),
        (&json!(false), &json!(false), &json!("config"))
    );
    assert!(reader["last_seen"].is_string(), "{reader}");
    assert_eq!(reader["used_not_granted_now"], json!([]));
    assert_eq!(reader["first_uses"], json!([]), "echo is a read tool");

    let operator = by(&report, "agent", "operator");
    assert_eq!((&operator["inactive"], &operator["last_seen"]), (&json!(true), &Value::Null));
    let granted = operator["granted"].as_array().unwrap();
    assert!(granted.contains(&json!("sample/write_note")) && !granted.contains(&json!("sample/delete_everything")));

    let writer = by(&report, "agent", "writer");
    assert_eq!((&writer["source"], &writer["inactive"]), (&json!("registry"), &json!(false)));
    assert_eq!(writer["first_uses"].as_array().unwrap().len(), 1, "{writer}");
    assert_eq!(
        (&writer["first_uses"][0]["tool"], &writer["first_uses"][0]["class"]),
        (&json!("sample/write_note"), &json!("write"))
    );

    // With policies that no longer grant the writer anything, its use is drift.
    std::fs::write(d.dir.path().join("policies/test.cedar"), "").unwrap();
    let report = json_lines(&d.output(&["report", "drift", "--json"]));
    let writer = by(&report, "agent", "writer");
    assert_eq!((&writer["used_not_granted_now"], &writer["granted"]), (&json!(["sample/write_note"]), &json!([])));

    let table = stdout(&d.output(&["report", "drift", "--days", "7"]));
    assert!(table.contains("operator (config, owner bob@example.com, last seen never)"), "{table}");
    assert!(table.contains("inactive: not seen in 7 days"), "{table}");
    assert!(table.contains("used, no longer granted: sample/write_note"), "{table}");
}
