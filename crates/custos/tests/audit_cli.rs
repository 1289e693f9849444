//! `custos audit verify / query / tail` through the binary, including tampering with the
//! database file the way an attacker with file access would.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{Deployment, RawSession, POLICIES};
use serde_json::{json, Value};

/// A deployment whose log holds a few runs' worth of events.
fn recorded() -> Deployment {
    let d = Deployment::new(POLICIES, "");
    let mut s = RawSession::sample(&d, &["--run", "tamper"]);
    s.initialize();
    s.request(json!(1), "tools/list", json!({}));
    for i in 0..3 {
        s.request(json!(10 + i), "tools/call", json!({"name": "echo", "arguments": {"text": format!("m{i}")}}));
    }
    s.request(json!(20), "tools/call", json!({"name": "write_note", "arguments": {"title": "t", "body": "b"}}));
    let (status, _) = s.finish();
    assert!(status.success());
    d
}

fn tamper(d: &Deployment, sql: &str) {
    let db = rusqlite::Connection::open(d.database()).unwrap();
    db.execute_batch(sql).unwrap();
}

fn verify(d: &Deployment) -> (i32, Value, String) {
    let json = d.output(&["audit", "verify", "--json"]);
    let text = d.output(&["audit", "verify"]);
    (
        json.status.code().unwrap(),
        serde_json::from_slice(&json.stdout).unwrap(),
        String::from_utf8(text.stdout).unwrap(),
    )
}

#[test]
fn a_clean_log_verifies_with_count_and_head() {
    let d = recorded();
    let (code, report, text) = verify(&d);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    let count = report["count"].as_u64().unwrap();
    assert!(count > 10);
    assert!(text.starts_with(&format!("OK: {count} events, head {}", report["head"].as_str().unwrap())), "{text}");
}

#[test]
fn changing_one_byte_of_one_event_is_found_and_named() {
    let d = recorded();
    tamper(
        &d,
        "UPDATE events SET body = replace(body, '\"m1\"', '\"m7\"') WHERE seq = 5;\
                UPDATE events SET body = replace(body, 'tamper', 'tampex') WHERE seq = 6;",
    );
    let (code, report, text) = verify(&d);
    assert_eq!(code, 3);
    assert_eq!((report["seq"].as_u64(), report["problem"].as_str()), (Some(6), Some("modified")), "{report}");
    assert!(text.starts_with("BROKEN at event 6: modified"), "{text}");
}

#[test]
fn deleting_one_event_is_found_and_named() {
    let d = recorded();
    tamper(&d, "DELETE FROM events WHERE seq = 7;");
    let (code, report, _) = verify(&d);
    assert_eq!(code, 3);
    assert_eq!((report["seq"].as_u64(), report["problem"].as_str()), (Some(7), Some("deleted")), "{report}");
}

#[test]
fn swapping_two_events_is_found_and_named() {
    let d = recorded();
    tamper(
        &d,
        "UPDATE events SET seq = -8 WHERE seq = 8;\
         UPDATE events SET seq = 8 WHERE seq = 9;\
         UPDATE events SET seq = 9 WHERE seq = -8;",
    );
    let (code, report, _) = verify(&d);
    assert_eq!(code, 3);
    assert_eq!((report["seq"].as_u64(), report["problem"].as_str()), (Some(8), Some("reordered")), "{report}");
}

#[test]
fn query_filters_and_tail() {
    let d = recorded();
    let lines = |args: &[&str]| -> Vec<Value> {
        let out = d.output(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let allowed = lines(&["audit", "query", "--decision", "allow", "--json"]);
    assert_eq!(allowed.len(), 3);
    assert!(allowed.iter().all(|e| e["tool"] == "sample/echo" && e["kind"] == "call.decided"));
    let by_tool = lines(&["audit", "query", "--tool", "sample/write_note", "--json"]);
    let kinds: Vec<&str> = by_tool.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tool.seen", "call.requested", "call.decided"], "a denied call never finishes");
    let by_kind = lines(&["audit", "query", "--kind", "run.started", "--agent", "reader", "--since", "1h", "--json"]);
    assert_eq!(by_kind.len(), 1);
    assert!(lines(&["audit", "query", "--since", "2999-01-01T00:00:00Z", "--json"]).is_empty());
    let tail = lines(&["audit", "tail", "-n", "2", "--json"]);
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1]["kind"], "run.ended");
    let text = d.output(&["audit", "query", "--decision", "deny"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("decision=deny") && text.contains("tool=sample/write_note"), "{text}");
    // Bad filters are usage errors that say what is expected.
    for (args, needle) in [
        (vec!["audit", "query", "--decision", "maybe"], "expected allow, deny or hold"),
        (vec!["audit", "query", "--kind", "nope"], "is not an event kind"),
        (vec!["audit", "query", "--since", "yesterday-ish"], "is not a time"),
    ] {
        let out = d.output(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}");
    }
}

#[test]
fn tail_follow_prints_events_appended_later() {
    use std::io::{BufRead, BufReader};
    let d = recorded();
    let mut tail =
        d.custos(&["audit", "tail", "-f", "-n", "0", "--json"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut s = RawSession::sample(&d, &["--run", "followed"]);
    s.initialize();
    s.finish();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!((first["kind"].as_str(), first["run"].as_str()), (Some("run.started"), Some("followed")));
    tail.kill().unwrap();
    let _ = tail.wait();
}
