//! `custos store migrate --to postgres://…` against a real cluster (`custos-testpg`): an
//! embedded deployment with agents, a sealed secret, calls and refusals is carried over whole,
//! the same deployment then runs on PostgreSQL and reads back the same log, which verifies and
//! keeps growing; a database that already holds anything is refused; a bad URL is a usage error
//! that does not echo it.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::harness::{issue_key, of_kind, Deployment, RawSession};
use custos_testpg::TestCluster;
use serde_json::{json, Value};

/// A deployment with a stored secret, two agents' keys and a session of allowed and denied
/// calls, all in the embedded file.
fn embedded_deployment() -> Deployment {
    let d = Deployment::new(common::harness::POLICIES, "[secrets.github]\nstore = true\n");
    issue_key(&d, "reader");
    issue_key(&d, "operator");
    let mut set = d.custos(&["secrets", "set", "github"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    set.stdin.take().unwrap().write_all(b"ghp_migrate_test_value_0123456789\n").unwrap();
    assert!(set.wait().unwrap().success());
    let mut s = RawSession::sample(&d, &["--agent", "operator"]);
    s.initialize();
    for (id, name) in [(2, "echo"), (3, "delete_everything"), (4, "echo")] {
        let args = if name == "echo" { json!({"text": format!("call {id}")}) } else { json!({}) };
        s.request(json!(id), "tools/call", json!({"name": name, "arguments": args}));
    }
    assert!(s.finish().0.success());
    d
}

fn migrate(d: &Deployment, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["store", "migrate", "--to", url];
    args.extend(extra);
    d.output(&args)
}

#[test]
fn an_embedded_deployment_moves_to_postgres_whole_and_goes_on_there() {
    let cluster = TestCluster::start();
    let url = cluster.create_database("migrated");
    let d = embedded_deployment();
    let before = d.events();
    assert!(of_kind(&before, "call.decided").iter().any(|e| e["decision"] == "deny"), "{before:?}");

    let out = migrate(&d, &url, &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], before.len());
    assert_eq!(report["verified"], true);
    assert_eq!((report["rows"]["agent_keys"].as_u64(), report["rows"]["secrets"].as_u64()), (Some(2), Some(1)));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(custos_testpg::PASSWORD));

    // The same deployment on PostgreSQL: the same log, and the next calls chain onto it.
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(d.config(), format!("{config}\n[store]\nurl = \"{url}\"\n")).unwrap();
    // The embedded file goes: whatever is read from now on comes from PostgreSQL.
    let data = d.database().parent().unwrap().to_owned();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("custos.db") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(d.events(), before);
    let listed = d.output(&["secrets", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("github"), "the sealed secret came along");
    let mut s = RawSession::sample(&d, &["--agent", "reader"]);
    s.initialize();
    s.request(json!(9), "tools/call", json!({"name": "echo", "arguments": {"text": "on postgres"}}));
    assert!(s.finish().0.success());
    assert!(d.verify_ok() > before.len() as u64);

    // A database that already holds a log is not written over.
    let again = migrate(&embedded_deployment(), &url, &[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("not empty"), "{stderr}");
}

#[test]
fn a_bad_url_is_a_usage_error_that_does_not_echo_it() {
    let d = Deployment::new(common::harness::POLICIES, "");
    issue_key(&d, "reader");
    for url in ["mysql://u:hunter2@h/db", "postgres://u:hunter2@h/db?sslmode=sometimes"] {
        let out = migrate(&d, url, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("store.url") && !stderr.contains("hunter2"), "{stderr}");
    }
}
