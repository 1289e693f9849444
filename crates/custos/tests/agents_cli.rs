//! `custos agents add / list / revoke` through the binary: keys are shown once, stored only as
//! hashes, and revocation takes effect on the next use.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::harness::{of_kind, Deployment, RawSession, POLICIES};
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn a_key_is_printed_once_and_only_its_hash_is_stored() {
    let d = Deployment::new(POLICIES, "");
    let key = stdout(&d.output(&[
        "agents",
        "add",
        "ci-bot",
        "--owner",
        "ops@example.com",
        "--purpose",
        "ci",
        "--group",
        "readers",
    ]));
    let key = key.trim();
    assert!(key.starts_with("cst_") && key.len() > 40, "{key}");
    // `cst_<8-character id>_<secret>`; the secret may itself contain `_`.
    let (key_id, secret) = key.strip_prefix("cst_").unwrap().split_at(8);
    let secret = secret.strip_prefix('_').unwrap();

    // Nothing on disk holds the secret: not the database, not its WAL, not the audit events.
    for entry in std::fs::read_dir(d.dir.path().join(".custos")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret leaked to disk");
    }
    let events = d.events();
    let issued = of_kind(&events, "agent.key_issued");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["agent"], "ci-bot");
    assert_eq!(issued[0]["detail"]["key_id"], key_id);

    let list: Vec<Value> =
        stdout(&d.output(&["agents", "list", "--json"])).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bot = list.iter().find(|a| a["id"] == "ci-bot").unwrap();
    assert_eq!((bot["source"].as_str(), bot["active_keys"].clone()), (Some("registry"), json!([key_id])));
    assert!(list.iter().any(|a| a["id"] == "reader" && a["source"] == "config"));

    // A registered agent can act (here through custos run), until it is revoked.
    let mut s = RawSession::sample(&d, &["--agent", "ci-bot"]);
    s.initialize();
    s.finish();
    let out = d.output(&["agents", "revoke", "ci-bot"]);
    assert!(stdout(&out).contains("revoked agent `ci-bot` and 1 active keys"));
    let refused =
        d.custos(&["run", "--agent", "ci-bot"]).arg("--").arg(common::harness::sample_server()).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agent `ci-bot` is revoked"));
    assert_eq!(of_kind(&d.events(), "agent.key_revoked")[0]["detail"]["key_ids"], json!([key_id]));
    d.verify_ok();
}

#[test]
fn config_agents_get_keys_and_single_keys_can_be_revoked() {
    let d = Deployment::new(POLICIES, "");
    let k1 = stdout(&d.output(&["agents", "add", "reader"])).trim().to_owned();
    let k2 = stdout(&d.output(&["agents", "add", "reader"])).trim().to_owned();
    assert_ne!(k1, k2);
    // Either spelling of the key id is accepted: `cst_<id>` or `<id>`.
    let id1 = k1.get(..12).unwrap().to_owned();
    let out = d.output(&["agents", "revoke", "reader", "--key", &id1]);
    assert!(stdout(&out).contains(&id1[4..]));
    // Twice: nothing left to revoke under that id.
    let again = d.output(&["agents", "revoke", "reader", "--key", &id1]);
    assert_eq!(again.status.code(), Some(2));
    let list: Vec<Value> =
        stdout(&d.output(&["agents", "list", "--json"])).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let reader = list.iter().find(|a| a["id"] == "reader").unwrap();
    assert_eq!(reader["active_keys"].as_array().unwrap().len(), 1);
    assert_eq!(reader["revoked_keys"], 1);
    assert_eq!(reader["revoked"], false);
}

#[test]
fn bad_agent_commands_say_what_to_fix() {
    let d = Deployment::new(POLICIES, "");
    for (args, needle) in [
        (vec!["agents", "add", "new-bot"], "--owner is required"),
        (vec!["agents", "add", "new-bot", "--owner", "o"], "--purpose is required"),
        (vec!["agents", "add", "reader", "--owner", "x"], "is declared in"),
        (vec!["agents", "revoke", "nobody"], "unknown agent `nobody`"),
    ] {
        let out = d.output(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
