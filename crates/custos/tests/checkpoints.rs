//! Signed checkpoints of the audit log (`custos audit checkpoint`, `verify --checkpoint`,
//! `proof`, `consistency`), checked by the binary and by an independent verifier
//! (`tests/peers/verify_checkpoint.py`, Python's `cryptography`), and held against a truncated
//! log and a log whose tail was rewritten with valid hashes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use common::harness::{eventually, open_session, peers_python, post_in, repo_root, Deployment, Served, POLICIES};
use serde_json::Value;

/// A deployment whose log the tests grow one event at a time.
fn deployment() -> Deployment {
    Deployment::new(POLICIES, "[console]\nlisten = \"127.0.0.1:0\"\n")
}

/// Appends one event (`console.link_issued`).
fn record_one(d: &Deployment, n: usize) {
    let out = d.output(&["console", "login-link", "--as", &format!("approver-{n}@example.com")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn json_out(d: &Deployment, args: &[&str]) -> Value {
    let out = d.output(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The independent verifier's verdict.
fn python_verifies(d: &Deployment, key: &str, checkpoint: &str, proof: Option<&str>) -> Value {
    let events = d.output(&["audit", "query", "--json"]);
    let path = d.dir.path().join("events.jsonl");
    std::fs::write(&path, &events.stdout).unwrap();
    let mut cmd = Command::new(peers_python());
    cmd.arg(repo_root().join("tests/peers/verify_checkpoint.py"))
        .args(["--public-key", key, "--checkpoint", checkpoint, "--events"])
        .arg(&path);
    if let Some(proof) = proof {
        cmd.args(["--proof", proof]);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_checkpoint_holds_the_log_to_its_events_for_us_and_for_an_independent_verifier() {
    let d = deployment();
    for n in 0..9 {
        record_one(&d, n);
    }
    let dir = d.dir.path();
    let first = dir.join("first.json");
    let cp = json_out(&d, &["audit", "checkpoint", "--out", first.to_str().unwrap()]);
    assert_eq!(cp["size"], 9);
    let key = json_out(&d, &["audit", "checkpoint-key"]);
    let public = key["public_key"].as_str().unwrap().to_owned();
    assert_eq!(key["key_id"], cp["key_id"]);

    let held = d.output(&["audit", "verify", "--checkpoint", first.to_str().unwrap()]);
    assert!(held.status.success(), "{}", String::from_utf8_lossy(&held.stdout));
    let proof = dir.join("proof.json");
    let p = d.output(&["audit", "proof", "--seq", "4", "--size", "9"]);
    assert!(p.status.success());
    std::fs::write(&proof, &p.stdout).unwrap();
    let verdict = python_verifies(&d, &public, first.to_str().unwrap(), Some(proof.to_str().unwrap()));
    assert_eq!(verdict["ok"], true, "{verdict}");

    // The log grows: a later checkpoint extends the first.
    for n in 9..14 {
        record_one(&d, n);
    }
    let second = dir.join("second.json");
    json_out(&d, &["audit", "checkpoint", "--out", second.to_str().unwrap()]);
    let consistent = json_out(&d, &["audit", "consistency", first.to_str().unwrap(), second.to_str().unwrap()]);
    assert_eq!(consistent["consistent"], true);
    assert!(!consistent["proof"].as_array().unwrap().is_empty());

    // Another key's checkpoint, or one edited after signing, is refused.
    let mut edited: Value = serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    edited["size"] = 8.into();
    let forged = dir.join("forged.json");
    std::fs::write(&forged, edited.to_string()).unwrap();
    let out = d.output(&["audit", "verify", "--checkpoint", forged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(python_verifies(&d, &public, forged.to_str().unwrap(), None)["reason"], "bad signature");
    let other = "0".repeat(64);
    let out = d.output(&["audit", "verify", "--checkpoint", first.to_str().unwrap(), "--public-key", &other]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn truncation_and_a_tail_rewritten_with_valid_hashes_break_the_checkpoint_but_not_the_chain() {
    let d = deployment();
    for n in 0..10 {
        record_one(&d, n);
    }
    let cp = d.dir.path().join("cp.json");
    let signed = json_out(&d, &["audit", "checkpoint", "--out", cp.to_str().unwrap()]);
    let public = json_out(&d, &["audit", "checkpoint-key"])["public_key"].as_str().unwrap().to_owned();

    // Truncated: the chain alone cannot tell.
    let db = rusqlite::Connection::open(d.database()).unwrap();
    db.execute_batch("DELETE FROM events WHERE seq > 7;").unwrap();
    drop(db);
    assert!(d.output(&["audit", "verify"]).status.success(), "a cut tail leaves a valid chain");
    let out = d.output(&["audit", "verify", "--checkpoint", cp.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let verdict: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').nth(1).unwrap()).unwrap();
    assert!(verdict["problem"].as_str().unwrap().contains("truncated"), "{verdict}");
    assert!(python_verifies(&d, &public, cp.to_str().unwrap(), None)["reason"].as_str().unwrap().contains("truncated"));

    // Regrown by the real writer: every hash recomputed, the chain valid, the history not.
    for n in 20..25 {
        record_one(&d, n);
    }
    assert!(d.output(&["audit", "verify"]).status.success(), "a rewritten tail with recomputed hashes");
    let out = d.output(&["audit", "verify", "--checkpoint", cp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rewritten"), "{}", String::from_utf8_lossy(&out.stdout));
    let verdict = python_verifies(&d, &public, cp.to_str().unwrap(), None);
    assert_eq!((verdict["ok"].clone(), signed["size"].clone()), (Value::Bool(false), 10.into()), "{verdict}");
}

/// `[audit.checkpoints]`: `custos serve` signs checkpoints as the log grows and a last one when
/// it stops, kept in its folder and published to a file; each holds the log.
#[test]
fn custos_serve_signs_checkpoints_as_the_log_grows_and_when_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let posted = tmp.path().join("posted.jsonl");
    // The sink refuses the first POST: the publisher tries again.
    let sink = common::harness::Peer::start("post_sink.py", &[posted.to_str().unwrap(), "--fail", "1"]);
    let d = Deployment::serving_sample(&format!(
        "[audit.checkpoints]\nevery_events = 3\nevery_secs = 1\npublish_file = \"published.json\"\n\
         publish_url = \"http://127.0.0.1:{}/checkpoints\"\n",
        sink.port
    ));
    let key = common::harness::issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    for id in 2..6 {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"t{id}"}}}}}}"#
        );
        assert_eq!(post_in(&url, &key, &session, &call).0, 200);
    }
    let folder = d.dir.path().join(".custos/checkpoints");
    let published = d.dir.path().join("published.json");
    let first = eventually("a checkpoint while serving", || {
        std::fs::read_dir(&folder)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
    });
    let out = d.output(&["audit", "verify", "--checkpoint", first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(served.stop().success());

    // The last checkpoint, published, covers the whole log.
    let last: Value = serde_json::from_str(&std::fs::read_to_string(&published).unwrap()).unwrap();
    let count = d.verify_ok();
    assert_eq!(last["size"], count, "the final checkpoint covers every event");
    let out = d.output(&["audit", "verify", "--checkpoint", published.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let public = json_out(&d, &["audit", "checkpoint-key"])["public_key"].as_str().unwrap().to_owned();
    assert_eq!(python_verifies(&d, &public, published.to_str().unwrap(), None)["ok"], true);
    // Every checkpoint was POSTed too (the first after one refusal), the last as published.
    let posts: Vec<Value> =
        std::fs::read_to_string(&posted).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(posts.last(), Some(&last), "{posts:?}");
    let kept = std::fs::read_dir(&folder)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(posts.len(), kept, "one POST per checkpoint kept");
    drop(sink);
    assert!(std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| { !e.file_name().to_string_lossy().ends_with(".tmp") }));
}
