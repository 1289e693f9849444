//! `[store]` through the binary: every command opens the database the config names, and a
//! PostgreSQL database it cannot use is named by its URL, never with its password, and never
//! silently replaced by the embedded file.
//!
//! No PostgreSQL server is needed: `127.0.0.1:1` has nothing listening, so whatever the store
//! does with the URL (refuse it, or try to connect), the command must fail the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Output;

use common::harness::{Deployment, POLICIES};

const STORE: &str = "[store]\nurl = \"postgres://custos:PW@127.0.0.1:1/custos\"\nconnect_timeout_ms = 500\n";
/// How the URL is named: without its password.
const NAMED: &str = "postgres://custos@127.0.0.1:1/custos";

/// Fails, names the database by its URL, and shows the password nowhere.
fn assert_refused_naming_the_url(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded:\n{stdout}\n{stderr}");
    assert!(stderr.contains(NAMED), "{what} does not name the database:\n{stderr}");
    assert!(!stdout.contains("PW") && !stderr.contains("PW"), "{what} shows the password:\n{stdout}\n{stderr}");
}

#[test]
fn audit_verify_names_the_postgres_url_without_its_password() {
    let d = Deployment::new(POLICIES, STORE);
    let out = d.output(&["audit", "verify"]);
    assert_refused_naming_the_url("audit verify", &out);
    assert!(!d.database().exists(), "the embedded file was used instead of PostgreSQL");
}

#[test]
fn every_command_that_opens_the_store_uses_postgres_and_hides_the_password() {
    let d = Deployment::new(POLICIES, STORE);
    for args in [
        &["audit", "verify", "--json"][..],
        &["audit", "query", "--json"],
        &["agents", "list"],
        &["approvals", "list"],
        &["tools", "list"],
        &["inventory", "credentials"],
        &["findings"],
    ] {
        let out = d.output(args);
        assert_refused_naming_the_url(&args.join(" "), &out);
    }
    assert!(!d.database().exists(), "the embedded file was used instead of PostgreSQL");
}

#[test]
fn serve_refuses_to_start_naming_the_postgres_url_and_keeps_the_data_directory() {
    // Never started: the store is opened before any upstream.
    let d = Deployment::serving(POLICIES, STORE, &["/nonexistent/upstream"]);
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    assert_refused_naming_the_url("serve", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[store]"), "no hint at the config's [store]:\n{stderr}");
    // The data directory still holds what is not in the database (the master key, cursors).
    assert!(d.dir.path().join(".custos").is_dir());
    assert!(!d.database().exists(), "the embedded file was used instead of PostgreSQL");
}
