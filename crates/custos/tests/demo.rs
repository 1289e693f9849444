//! `custos demo` end to end: the real binary writes its deployment, starts its gateway and the
//! demo servers (itself, as `custos demo-server`), plays the four workflows, and reports them
//! from the audit log. The checks are on what the log says happened.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use common::harness::custos_bin;
use serde_json::Value;

fn workflow<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workflows"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap()
}

/// The steps of `workflow` calling `tool`, in order.
fn steps<'a>(report: &'a Value, name: &str, tool: &str) -> Vec<&'a Value> {
    workflow(report, name)["steps"].as_array().unwrap().iter().filter(|s| s["tool"] == tool).collect()
}

fn has_finding(step: &Value, kind: &str) -> bool {
    step["findings"].as_array().unwrap().iter().any(|k| k == kind)
}

/// An allowed call to the billing API: the gateway minted a token for it (recorded with the
/// call's credentials, never the agent's key), and the API answered that it saw exactly that
/// token (it takes nothing but a live bearer JWT: the agent's API key is not one).
fn assert_minted_for_the_call(step: &Value) {
    let token = &step["token"];
    let jti = token["jti"].as_str().unwrap_or_else(|| panic!("no minted token: {step}"));
    assert!(jti.len() >= 16, "{step}");
    assert!(token["name"].as_str().unwrap().starts_with("signing_key:"), "{step}");
    assert!(token["expires_at"].as_u64().unwrap() > 1_700_000_000, "{step}");
    assert_eq!(step["upstream_saw"]["jti"], jti, "{step}");
    assert_eq!(step["upstream_saw"]["exp"], token["expires_at"], "{step}");
    assert_eq!(step["upstream_saw"]["kid"], token["fingerprint"], "{step}");
    assert!(step["upstream_saw"]["aud"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{step}");
}

/// A held step: approved by the demo approver, then allowed.
fn assert_approved(step: &Value) {
    assert_eq!(step["decision"], "allow", "{step}");
    assert!(step["held"].is_string(), "{step}");
    let approval = &step["approval"];
    assert!(approval["id"].as_str().unwrap().starts_with("apr_"), "{step}");
    assert_eq!(approval["decided_by"], "demo-approver@custos.example", "{step}");
    assert_eq!(approval["state"], "used", "{step}");
}

#[test]
fn the_demo_governs_four_workflows_and_its_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(custos_bin()).args(["demo", "--json", "--data-dir"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "custos demo failed: {stderr}");
    assert!(started.elapsed().as_secs() < 30, "the demo took {:?}", started.elapsed());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let workflows = report["workflows"].as_array().unwrap();
    let names: Vec<&str> = workflows.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["support", "coding", "procurement", "ops"]);
    for w in workflows {
        assert_eq!(w["completed"], true, "{w}");
        assert_eq!(w["run"], format!("demo-{}", w["name"].as_str().unwrap()));
    }

    // support: refunds through the billing API (REST), in the run of the MCP session: 80 EUR
    // allowed, 250 EUR held and approved, each with a token minted for that call; the injected
    // ticket is flagged and the 5000 EUR refund it asked for is denied, with no token minted.
    let refunds = steps(&report, "support", "billing/create_refund");
    assert_eq!(refunds.len(), 3);
    assert_eq!(refunds[0]["arguments"]["body"]["amount"], 80);
    assert_eq!(refunds[0]["decision"], "allow");
    assert!(refunds[0]["approval"].is_null());
    assert_minted_for_the_call(refunds[0]);
    assert_eq!(refunds[1]["arguments"]["body"]["amount"], 250);
    assert_approved(refunds[1]);
    assert_minted_for_the_call(refunds[1]);
    assert_ne!(refunds[0]["token"]["jti"], refunds[1]["token"]["jti"]);
    assert_eq!(refunds[2]["arguments"]["body"]["amount"], 5000);
    assert_eq!(refunds[2]["decision"], "deny", "{}", refunds[2]);
    // Denied for the injection the run's MCP session found: one run, whichever way it calls.
    assert!(
        refunds[2]["policies"].as_array().unwrap().iter().any(|p| p == "no-refund-after-injection"),
        "{}",
        refunds[2]
    );
    assert!(refunds[2]["token"].is_null() && refunds[2]["upstream_saw"].is_null(), "{}", refunds[2]);
    assert!(steps(&report, "support", "helpdesk/issue_refund").is_empty());
    // Its MCP calls and its API calls are numbered as one run: no step twice.
    let support = workflows.iter().find(|w| w["name"] == "support").unwrap();
    let numbers: Vec<u64> = support["steps"].as_array().unwrap().iter().map(|s| s["step"].as_u64().unwrap()).collect();
    let mut unique = numbers.clone();
    unique.dedup();
    assert_eq!(numbers, unique, "{numbers:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let injected = steps(&report, "support", "helpdesk/get_ticket")
        .into_iter()
        .find(|s| s["arguments"]["ticket_id"] == "T-1002")
        .unwrap();
    assert_eq!(injected["decision"], "allow");
    assert!(has_finding(injected, "output_injection"), "{injected}");

    // coding: the rug pull is found and the changed tool refused; the merge is held, approved.
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["kind"] == "rug_pull" && f["tool"] == "codehost/run_tests"), "{findings:?}");
    let tests = steps(&report, "coding", "codehost/run_tests");
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["decision"], "deny", "{}", tests[0]);
    assert!(has_finding(tests[0], "rug_pull"), "{}", tests[0]);
    assert_eq!(steps(&report, "coding", "codehost/open_pull_request")[0]["decision"], "allow");
    assert_approved(steps(&report, "coding", "codehost/merge_pull_request")[0]);

    // procurement: the finance update held and approved; deleting a supplier denied.
    assert_approved(steps(&report, "procurement", "procurement/update_finance_system")[0]);
    let delete = steps(&report, "procurement", "procurement/delete_supplier");
    assert_eq!(delete[0]["decision"], "deny");
    assert!(delete[0]["policies"].as_array().unwrap().iter().any(|p| p == "never-delete-suppliers"));

    // ops: the first rollback held and approved, the same one again denied as a replay.
    let rollbacks = steps(&report, "ops", "ops/rollback_service");
    assert_eq!(rollbacks.len(), 2);
    assert_approved(rollbacks[0]);
    assert_eq!(rollbacks[1]["decision"], "deny", "{}", rollbacks[1]);
    assert!(has_finding(rollbacks[1], "replay"), "{}", rollbacks[1]);

    // The log's chain holds, by the demo's own check and by `custos audit verify`.
    assert_eq!(report["audit"]["ok"], true);
    assert!(report["audit"]["events"].as_u64().unwrap() > 40);
    assert_eq!(report["audit"]["head"].as_str().unwrap().len(), 64);
    let config = report["config"].as_str().unwrap();
    let verify = Command::new(custos_bin()).args(["audit", "verify", "--config", config]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    // The deployment given with --data-dir is kept.
    assert!(dir.path().join("custos.toml").exists());
}

#[test]
fn the_demo_prints_plain_timelines_when_not_on_a_terminal() {
    let out = Command::new(custos_bin()).arg("demo").env_remove("NO_COLOR").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for name in ["support", "coding", "procurement", "ops"] {
        assert!(stdout.contains(&format!("== {name}: ")), "{stdout}");
    }
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(stdout.contains("ALLOW") && stdout.contains("DENY") && stdout.contains("HOLD"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "colour codes when stdout is not a terminal: {stdout}");
    assert!(stdout.contains("custos audit query --run demo-support --config"), "{stdout}");
    // The refunds go through the billing API, each allowed one with a token minted for it.
    let refund_lines = stdout.lines().filter(|l| l.contains("billing/create_refund (body={amount=")).count();
    assert_eq!(refund_lines, 3, "{stdout}");
    let tokens: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("token ")).collect();
    assert_eq!(tokens.len(), 2, "{stdout}");
    for line in tokens {
        assert!(
            line.contains(" minted for this call, key ") && line.ends_with("UTC; the API saw this token"),
            "{line}"
        );
    }
}
