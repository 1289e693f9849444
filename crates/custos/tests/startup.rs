//! What `custos` refuses to start with, and the files `custos init` writes.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Stdio};

use common::harness::{custos_bin, repo_root, sample_server, Deployment, POLICIES};

fn run_sample(d: &Deployment, args: &[&str]) -> (i32, String) {
    let out = d.custos(&["run"]).args(args).arg("--").arg(sample_server()).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unknown_agent_refuses_to_start() {
    let d = Deployment::new(POLICIES, "");
    let (code, err) = run_sample(&d, &["--agent", "mallory"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown agent `mallory`") && err.contains("[[agents]]"), "{err}");
    assert!(!d.database().exists(), "nothing was recorded for a run that never started");
}

#[test]
fn an_invalid_policy_refuses_to_start_naming_file_line_and_column() {
    let d = Deployment::new("permit (principal, action, resource)\nwhen { principal.nope == 1 };\n", "");
    let (code, err) = run_sample(&d, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("test.cedar:1:1") || err.contains("test.cedar:2:"), "{err}");
    let d = Deployment::new("permit (principal, action, resource;\n", "");
    let (code, err) = run_sample(&d, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("test.cedar:1:"), "{err}");
    let check = d.output(&["policy", "check"]);
    assert_eq!(check.status.code(), Some(3));
}

#[test]
fn a_missing_policy_file_refuses_to_start() {
    let d = Deployment::new(POLICIES, "");
    std::fs::remove_file(d.dir.path().join("policies/test.cedar")).unwrap();
    let (code, err) = run_sample(&d, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read policy file") && err.contains("test.cedar"), "{err}");
}

#[test]
fn an_unusable_data_directory_refuses_to_start() {
    let d = Deployment::new(POLICIES, "");
    // A path under a regular file cannot be a directory, even for root.
    let blocker = d.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let (code, err) = run_sample(&d, &["--data-dir", blocker.join("data").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot use data directory") && err.contains("--data-dir"), "{err}");
}

#[test]
fn a_config_with_an_unknown_key_names_it() {
    let d = Deployment::new(POLICIES, "");
    let text = std::fs::read_to_string(d.config()).unwrap().replace("[policy]\n", "[policy]\nfilez = []\n");
    std::fs::write(d.config(), text).unwrap();
    let (code, err) = run_sample(&d, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("custos.toml:") && err.contains("unknown field `filez`"), "{err}");
}

#[test]
fn a_missing_upstream_command_is_a_clear_error() {
    let d = Deployment::new(POLICIES, "");
    let out = d.custos(&["run"]).arg("--").arg("/nonexistent/server").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start upstream `/nonexistent/server`"));
}

#[test]
fn init_writes_a_config_that_loads_and_policies_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(custos_bin()).arg("init").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = dir.path().join("custos.toml");
    let check = Command::new(custos_bin()).args(["policy", "check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // The starter policy: a reader may call read tools only.
    let explain = |agent: &str, tool: &str| -> String {
        let out = Command::new(custos_bin())
            .args(["policy", "explain", "--json", "--agent", agent, "--tool", tool, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["explanation"]["decision"]["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(explain("reader", "tools/get_weather"), "allow");
    assert_eq!(explain("reader", "tools/update_record"), "deny");
    assert_eq!(explain("operator", "tools/delete_user"), "deny");
    // A second init does not overwrite.
    let again = Command::new(custos_bin()).arg("init").arg(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn policy_explain_names_the_deciding_policy_and_its_position() {
    let d = Deployment::new(POLICIES, "");
    let out = d.output(&["policy", "explain", "--agent", "operator", "--tool", "sample/delete_everything"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("deny") && text.contains("never-delete") && text.contains("test.cedar:"), "{text}");
    let out = d.output(&["policy", "explain", "--agent", "reader", "--tool", "sample/echo", "--class", "read"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("readers-read"));
    let bad = d.output(&["policy", "explain", "--agent", "reader", "--tool", "echo"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Every example config in the repository loads and its policies validate.
#[test]
fn every_example_config_in_the_repo_loads() {
    let mut configs = Vec::new();
    let examples = repo_root().join("examples");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let config = entry.unwrap().path().join("custos.toml");
        if config.exists() {
            configs.push(config);
        }
    }
    assert!(!configs.is_empty(), "no example configs under {}", examples.display());
    for config in configs {
        let out = Command::new(custos_bin()).args(["policy", "check", "--config"]).arg(&config).output().unwrap();
        assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    }
}

/// A log written before the agent registry existed (no `agents` tables) is brought up to the
/// current schema by the commands that read the registry, not refused.
#[test]
fn a_database_from_before_the_agent_registry_still_works() {
    let d = Deployment::new(POLICIES, "");
    let mut s = common::harness::RawSession::sample(&d, &[]);
    s.initialize();
    s.finish();
    let db = rusqlite::Connection::open(d.database()).unwrap();
    db.execute_batch("DROP TABLE agent_keys; DROP TABLE agents;").unwrap();
    drop(db);
    let (code, err) = run_sample(&d, &[]);
    assert_eq!(code, 0, "{err}");
    let list = d.output(&["agents", "list"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    d.verify_ok();
}
