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

/// The log exported as the independent verifier reads it.
fn export_events(d: &Deployment) -> std::path::PathBuf {
    let events = d.output(&["audit", "query", "--json"]);
    let path = d.dir.path().join("events.jsonl");
    std::fs::write(&path, &events.stdout).unwrap();
    path
}

/// The independent verifier's verdict on `events` (a file), with its extra arguments.
fn python_verdict(events: &std::path::Path, key: &str, checkpoint: &str, extra: &[&str]) -> Value {
    let out = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/verify_checkpoint.py"))
        .args(["--public-key", key, "--checkpoint", checkpoint, "--events"])
        .arg(events)
        .args(extra)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

/// The independent verifier's verdict on the log as it is now.
fn python_verifies(d: &Deployment, key: &str, checkpoint: &str, proof: Option<&str>) -> Value {
    let extra: Vec<&str> = proof.map(|p| vec!["--proof", p]).unwrap_or_default();
    python_verdict(&export_events(d), key, checkpoint, &extra)
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
    let (old, new) = (first.to_str().unwrap(), second.to_str().unwrap());
    let proof_file = dir.join("consistency.json");
    std::fs::write(&proof_file, consistent.to_string()).unwrap();
    let events = export_events(&d);
    let verdict = python_verdict(&events, &public, new, &["--old", old, "--consistency", proof_file.to_str().unwrap()]);
    assert_eq!(verdict["ok"], true, "{verdict}");

    // An auditor with the two checkpoints, the proof and the public key, and no deployment at all.
    let elsewhere = tempfile::tempdir().unwrap();
    let offline = |proof: &std::path::Path| {
        Command::new(common::harness::custos_bin())
            .current_dir(elsewhere.path())
            .args(["audit", "consistency", old, new, "--public-key", &public, "--proof"])
            .arg(proof)
            .output()
            .unwrap()
    };
    let out = offline(&proof_file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!elsewhere.path().join(".custos").exists(), "the offline check made no deployment");
    let mut bent = consistent.clone();
    bent["proof"][0] = Value::String("ab".repeat(32));
    let bent_file = dir.join("bent.json");
    std::fs::write(&bent_file, bent.to_string()).unwrap();
    let out = offline(&bent_file);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rewritten"), "{}", String::from_utf8_lossy(&out.stderr));
    let verdict = python_verdict(&events, &public, new, &["--old", old, "--consistency", bent_file.to_str().unwrap()]);
    assert_eq!(verdict["ok"], false, "{verdict}");

    // One event edited in the export (its digest kept): the verifier recomputes the digest.
    let text = std::fs::read_to_string(&events).unwrap();
    let edited = text.replacen("approver-3@example.com", "approver-X@example.com", 1);
    assert_ne!(edited, text);
    std::fs::write(&events, edited).unwrap();
    let verdict = python_verdict(&events, &public, new, &[]);
    assert!(verdict["reason"].as_str().unwrap().contains("digest"), "{verdict}");

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

    // A checkpoint of the rewritten log does not extend the one signed before.
    let later = d.dir.path().join("later.json");
    json_out(&d, &["audit", "checkpoint", "--out", later.to_str().unwrap()]);
    let out = d.output(&["audit", "consistency", cp.to_str().unwrap(), later.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rewritten"), "{}", String::from_utf8_lossy(&out.stderr));
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
    // POSTed too (the first after one refusal): only ever a later one, the last as published.
    let posts = posted_sizes(&posted);
    assert!(posts.windows(2).all(|w| w[0] < w[1]), "nothing sent twice: {posts:?}");
    assert_eq!(posts.last(), last["size"].as_u64().as_ref(), "{posts:?}");
    assert_eq!(cursor(&folder), last["size"].as_u64());
    drop(sink);
    assert!(std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| { !e.file_name().to_string_lossy().ends_with(".tmp") }));
}

/// The sizes of the checkpoints a sink accepted, in order.
fn posted_sizes(file: &std::path::Path) -> Vec<u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["size"].as_u64().unwrap()).collect()
}

/// The publication cursor: the size the URL last acknowledged.
fn cursor(folder: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(folder.join("published.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["size"].as_u64()
}

/// The URL is down for a whole run of the gateway: its last checkpoint is sent when the next run
/// starts and the URL is back, and one acknowledged is never sent again.
#[test]
fn a_checkpoint_the_url_missed_is_sent_by_the_next_run_and_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (posted, up) = (tmp.path().join("posted.jsonl"), tmp.path().join("up"));
    let sink =
        common::harness::Peer::start("post_sink.py", &[posted.to_str().unwrap(), "--fail-until", up.to_str().unwrap()]);
    let d = Deployment::serving_sample(&format!(
        "[audit.checkpoints]\nevery_events = 1000\nevery_secs = 3600\n\
         publish_url = \"http://127.0.0.1:{}/checkpoints\"\n",
        sink.port
    ));
    let key = common::harness::issue_key(&d, "reader");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    assert_eq!(post_in(&url, &key, &session, call).0, 200);
    assert!(served.stop().success());
    let folder = d.dir.path().join(".custos/checkpoints");
    let signed = d.verify_ok();
    assert!(posted_sizes(&posted).is_empty(), "the URL was down");
    assert_eq!(cursor(&folder), None, "nothing acknowledged");

    std::fs::write(&up, "").unwrap();
    let served = Served::start(&d);
    let sent = eventually("the missed checkpoint sent", || posted_sizes(&posted).last().copied());
    assert!(sent >= signed, "{sent} < {signed}");
    assert!(served.stop().success());
    let after_second = posted_sizes(&posted);
    assert_eq!(cursor(&folder), after_second.last().copied());

    // A third run over an acknowledged log sends nothing again.
    let served = Served::start(&d);
    assert!(served.stop().success());
    let now = posted_sizes(&posted);
    assert!(now.windows(2).all(|w| w[0] < w[1]), "nothing sent twice: {now:?}");
    assert_eq!(cursor(&folder), now.last().copied());
    drop(sink);
}
