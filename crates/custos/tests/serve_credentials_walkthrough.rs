//! The README's "Credentials: step by step" on a fresh folder, command by command: `custos
//! init`, the README's own config block (read from README.md, with only the server's command and
//! URL put in), a secret from the environment, one from a file and one set with `custos secrets
//! set`, `custos agents add`, `custos serve`. The gateway must start with no signing key, the
//! agent's calls must reach a stdio upstream (the official Python SDK's server) with two secrets
//! in its environment and a remote one with a key in its `Authorization` header, and after
//! `custos keys rotate` a token from `custos token mint --audience <gateway>` must authenticate to
//! the gateway that is already running.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::harness::{
    custos_bin, eventually, http, of_kind, peers_python, python_http, repo_root, Deployment, Peer, Served, INIT,
};
use serde_json::Value;

/// The first line of the README's config block for the walkthrough.
const README_BLOCK: &str = "```toml\n# added to the custos.toml that `custos init` wrote\n";

/// `custos ARGS…` run in `dir`, as a user in that folder types it (no `--config`).
fn custos_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(custos_bin());
    cmd.args(args).current_dir(dir);
    cmd
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// `custos serve` running in a folder, killed when dropped.
struct Gateway {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Gateway {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join("serve.log");
        let mut cmd = custos_in(dir, &["serve", "--listen", "127.0.0.1:0"]);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let Some(base) = first.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.wait();
            panic!("custos serve did not start: {first}{}", std::fs::read_to_string(&log).unwrap());
        };
        Self { child, base, log }
    }

    fn jwks(&self) -> Value {
        let (status, _, body) = http("GET", &format!("{}/.well-known/jwks.json", self.base), &[], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The status of an `initialize` to `server` carrying `Authorization: Bearer <credential>`.
    fn initialize_with(&self, server: &str, credential: &str) -> (u16, String) {
        let auth = format!("Bearer {credential}");
        let (status, _, body) = http(
            "POST",
            &format!("{}/mcp/{server}", self.base),
            &[("Authorization", &auth), ("Content-Type", "application/json"), ("Accept", "application/json")],
            INIT,
        );
        (status, body)
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_hex() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap();
    String::from_utf8(bytes).unwrap().trim().replace('-', "")
}

fn sha256_hex(text: &str) -> String {
    custos_core::Digest::of(text.as_bytes()).to_hex()
}

/// The text of step `i` of a Python client report.
fn text(report: &Value, i: usize) -> String {
    report["steps"][i]["content"][0].as_str().unwrap_or_else(|| panic!("step {i}: {report}")).to_owned()
}

/// The README's walkthrough config block, with `command` and `url` in place of the README's
/// placeholders (each must be there, so the test follows the README as it is written).
fn readme_config(command: &[String], url: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find(README_BLOCK).expect("the README's walkthrough config block") + "```toml\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    let placeholders = [
        ("command = [\"billing-mcp-server\", \"--stdio\"]", format!("command = {command:?}")),
        ("url = \"https://crm.internal/mcp\"", format!("url = {url:?}")),
    ];
    let mut config = block.to_owned();
    for (placeholder, real) in placeholders {
        assert!(config.contains(placeholder), "the README's block no longer has `{placeholder}`:\n{block}");
        config = config.replace(placeholder, &real);
    }
    config
}

#[test]
fn the_readme_walkthrough_serves_three_secrets_and_the_gateways_own_tokens_on_a_fresh_folder() {
    let root = tempfile::tempdir().unwrap();
    let billing_key = format!("billing-{}", random_hex());
    let github_token = format!("ghp_{}", random_hex());
    let crm_key = format!("crm-{}", random_hex());
    let remote = Peer::start("broker_upstream.py", &["http"]);

    // custos init gateway && cd gateway
    ok(custos_in(root.path(), &["init", "gateway"]).output().unwrap());
    let dir = root.path().join("gateway");
    // Add to custos.toml, with your server's command and URL.
    let python = peers_python().to_string_lossy().into_owned();
    let script = repo_root().join("tests/peers/broker_upstream.py").to_string_lossy().into_owned();
    let block = readme_config(&[python, script, "stdio".to_owned()], &format!("http://127.0.0.1:{}/mcp", remote.port));
    let mut config = std::fs::OpenOptions::new().append(true).open(dir.join("custos.toml")).unwrap();
    writeln!(config, "\n{block}").unwrap();
    drop(config);
    // printf %s "$BILLING_KEY" | custos secrets set billing_key
    let mut set = custos_in(&dir, &["secrets", "set", "billing_key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin.take().unwrap().write_all(billing_key.as_bytes()).unwrap();
    ok(set.wait_with_output().unwrap());
    // mkdir -p secrets && printf %s "$GITHUB_TOKEN" > secrets/github && chmod 600 secrets/github
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/github"), &github_token).unwrap();
    std::fs::set_permissions(dir.join("secrets/github"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // custos agents add reader
    let key = ok(custos_in(&dir, &["agents", "add", "reader"]).output().unwrap()).trim().to_owned();
    // export CRM_API_KEY=…; custos serve
    let gateway = Gateway::start(&dir, &[("CRM_API_KEY", &crm_key)]);

    // The agent calls each upstream with its API key; each got its secrets, exactly.
    let billing = python_http(
        &format!("{}/mcp/billing", gateway.base),
        &key,
        &[
            "--call",
            "digest",
            r#"{"name": "BILLING_API_KEY"}"#,
            "--call",
            "digest",
            r#"{"name": "GITHUB_TOKEN"}"#,
            "--call",
            "environment",
            "{}",
            "--terminate",
        ],
    );
    assert_eq!(text(&billing, 0), sha256_hex(&billing_key), "{billing}");
    assert_eq!(text(&billing, 1), sha256_hex(&github_token), "{billing}");
    let environment = text(&billing, 2);
    assert!(environment.contains("BILLING_API_KEY=[REDACTED:secret]"), "{environment}");
    assert!(environment.contains("GITHUB_TOKEN=[REDACTED:secret]"), "{environment}");
    assert!(!environment.contains("CRM_API_KEY"), "a secret's source variable is not inherited: {environment}");
    let crm = python_http(
        &format!("{}/mcp/crm", gateway.base),
        &key,
        &["--call", "digest", r#"{"name": "authorization"}"#, "--terminate"],
    );
    assert_eq!(text(&crm, 0), sha256_hex(&format!("Bearer {crm_key}")), "{crm}");

    // No signing key yet: an empty key set, and the inventory says so without failing.
    assert_eq!(gateway.jwks(), serde_json::json!({ "keys": [] }));
    let inventory = ok(custos_in(&dir, &["inventory", "credentials", "--json"]).output().unwrap());
    let names: Vec<String> = inventory
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["credential"].as_str().unwrap().to_owned())
        .collect();
    for name in ["billing_key", "crm_key", "github_token"] {
        assert!(names.iter().any(|n| n == name), "{name} in {inventory}");
    }
    assert!(!names.iter().any(|n| n.starts_with("signing_key:")), "{inventory}");

    // In another terminal: custos keys rotate; custos token mint --agent reader --audience <gateway>
    ok(custos_in(&dir, &["keys", "rotate"]).output().unwrap());
    let token =
        ok(custos_in(&dir, &["token", "mint", "--agent", "reader", "--audience", &gateway.base]).output().unwrap())
            .trim()
            .to_owned();
    // A bound on how long the running gateway may take to read the new key, not a fixed wait.
    eventually("the running gateway to accept its own token", || {
        let (status, _) = gateway.initialize_with("billing", &token);
        (status == 200).then_some(())
    });
    let kids: Vec<Value> = gateway.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids.len(), 1, "{kids:?}");

    let base = gateway.base.clone();
    let stderr = gateway.stop();
    let events = events_in(&dir);
    let produced = [stderr, serde_json::to_string(&events).unwrap(), billing.to_string(), crm.to_string()];
    for text in &produced {
        for secret in [&billing_key, &github_token, &crm_key] {
            assert!(!text.contains(secret.as_str()), "a secret value leaked");
        }
    }
    let minted = of_kind(&events, "token.minted");
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0]["detail"]["audience"], base.as_str());
    ok(custos_in(&dir, &["audit", "verify"]).output().unwrap());
}

/// Every event of the log in `dir`.
fn events_in(dir: &Path) -> Vec<Value> {
    ok(custos_in(dir, &["audit", "query", "--json"]).output().unwrap())
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A gateway whose config holds and mints nothing still starts with its keys in hand: a first
/// key made later by `custos token mint` (which makes one when there is none) is published, and
/// the token it signs authenticates, without a restart.
#[test]
fn a_gateway_without_credentials_accepts_its_own_tokens_once_a_key_exists() {
    let d = Deployment::serving_sample("");
    let served = Served::start(&d);
    let (status, _, body) = http("GET", &format!("{}/.well-known/jwks.json", served.base), &[], "");
    assert_eq!((status, body.as_str()), (200, r#"{"keys":[]}"#));

    let out = d.output(&["token", "mint", "--agent", "reader", "--audience", &served.base]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let auth = format!("Bearer {token}");
    eventually("the running gateway to accept its own token", || {
        let (status, _, _) = http(
            "POST",
            &served.url("sample"),
            &[("Authorization", &auth), ("Content-Type", "application/json"), ("Accept", "application/json")],
            INIT,
        );
        (status == 200).then_some(())
    });
    let (_, _, body) = http("GET", &format!("{}/.well-known/jwks.json", served.base), &[], "");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
}
