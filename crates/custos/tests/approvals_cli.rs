//! `custos approvals list / show / approve / deny` through the binary, and the same through the
//! admin API of `custos serve`. The held call is made through the library against the
//! deployment's database, as the gateway makes it; the decision comes from another process.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::harness::{http, of_kind, sample_server, Deployment, Served, POLICIES};
use custos_approvals::{call_digest, ApprovalError, ApprovalState, Approvals, CallToApprove};
use custos_core::{AgentId, RunId, ToolRef};
use custos_store::{AuditLog, SqlStore};
use serde_json::{json, Value};

const GROUPS: &str = r#"
[approvals.groups.finance]
members = ["carol@example.com", "bob@example.com", "operator"]
"#;

/// A secret the agent passed in its arguments: it must never be shown or stored.
const SECRET: &str = "sk-live-secret-value-1234567890";

/// The gateway's side: an approval queue on the deployment's database, in this process.
struct Gateway {
    runtime: tokio::runtime::Runtime,
    audit: AuditLog,
    approvals: Approvals,
}

impl Gateway {
    fn open(d: &Deployment) -> Self {
        let config = custos_config::Config::load(&d.config()).unwrap();
        std::fs::create_dir_all(d.database().parent().unwrap()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let store = SqlStore::open(d.database()).unwrap();
        let (audit, approvals) = runtime.block_on(async {
            let audit = AuditLog::start(Box::new(store)).unwrap();
            let approvals = Approvals::new(audit.clone(), d.database(), config.approvals.clone()).unwrap();
            (audit, approvals)
        });
        Self { runtime, audit, approvals }
    }

    /// Holds `operator`'s call of `sample/write_note` with `amount`; returns the request id and
    /// the call's digest.
    fn hold(&self, d: &Deployment, amount: u64) -> (String, String) {
        let config = custos_config::Config::load(&d.config()).unwrap();
        let agent = config.agent("operator").unwrap().clone();
        let principal = vec!["bob@example.com".to_owned(), "operator".to_owned()];
        let run = RunId("run-7".into());
        let tool = ToolRef::new("sample", "write_note").unwrap();
        let arguments = json!({"title": "pay", "amount": amount, "api_key": SECRET});
        let (policies, groups) = (vec!["notes-need-finance".to_owned()], vec!["finance".to_owned()]);
        let call = CallToApprove {
            agent: &agent,
            principal: &principal,
            run: &run,
            step: 2,
            tool: &tool,
            descriptor_sha256: None,
            arguments: &arguments,
            policies: &policies,
            groups: &groups,
        };
        let request = self.runtime.block_on(self.approvals.hold(&call)).unwrap();
        (request.id, call_digest(&AgentId("operator".into()), &run, &tool, None, &arguments))
    }

    /// What the waiting gateway sees within `bound`.
    fn wait(&self, id: &str) -> ApprovalState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        self.runtime.block_on(self.approvals.wait(id, deadline)).unwrap()
    }

    fn consume(&self, id: &str, digest: &str) -> Result<(), ApprovalError> {
        self.runtime.block_on(self.approvals.consume(id, digest))
    }

    fn close(self) {
        self.runtime.block_on(self.audit.shutdown());
    }
}

fn text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `custos ARGS…` with no approver in the environment unless `approver` is given.
fn custos(d: &Deployment, args: &[&str], approver: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = d.custos(args);
    cmd.env_remove("CUSTOS_APPROVER").stdin(std::process::Stdio::null());
    if let Some(a) = approver {
        cmd.env("CUSTOS_APPROVER", a);
    }
    text(&cmd.output().unwrap())
}

#[test]
fn an_approval_from_another_terminal_lets_the_exact_call_through_once() {
    let d = Deployment::new(POLICIES, GROUPS);
    let gateway = Gateway::open(&d);
    let (id, digest) = gateway.hold(&d, 1200);

    let (code, out, _) = custos(&d, &["approvals", "list"], None);
    assert_eq!(code, Some(0));
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("pending") && row.contains("sample/write_note") && row.contains("finance"), "{row}");
    let (code, out, _) = custos(&d, &["approvals", "list", "--json"], None);
    assert_eq!(code, Some(0));
    let listed: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["id"].as_str(), listed[0]["state"].as_str()), (Some(id.as_str()), Some("pending")));
    assert_eq!(listed[0]["arguments"], json!({"title": "pay", "amount": 1200, "api_key": "[redacted]"}));
    assert_eq!(listed[0]["digest"], json!(digest));
    let (code, out, _) = custos(&d, &["approvals", "show", &id], None);
    assert_eq!(code, Some(0));
    for needle in
        ["state      pending", "agent      operator", "bob@example.com -> operator", "run-7 (step 2)", "[redacted]"]
    {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(!out.contains(SECRET));

    // Who decides must be said; and only a member of the group who is neither the agent nor
    // the human it acts for may.
    let (code, _, err) = custos(&d, &["approvals", "approve", &id], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--as") && err.contains("CUSTOS_APPROVER"), "{err}");
    for (who, needle) in [
        ("dave@example.com", "not a member of the approver groups `finance`"),
        ("operator", "an agent cannot approve its own call"),
        ("bob@example.com", "on their behalf"),
    ] {
        let (code, _, err) = custos(&d, &["approvals", "approve", &id, "--as", who], None);
        assert_eq!(code, Some(1), "{who}: {err}");
        assert!(err.contains(needle) && err.contains(&format!("`{who}`")), "{who}: {err}");
    }
    assert_eq!(gateway.approvals.get(&id).unwrap().unwrap().state, ApprovalState::Pending);

    let (code, out, err) =
        custos(&d, &["approvals", "approve", &id, "--reason", "invoice checked"], Some("carol@example.com"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("approved {id}")) && out.contains("`sample/write_note`"), "{out}");
    let (code, _, err) = custos(&d, &["approvals", "approve", &id, "--as", "carol@example.com"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("already approved"), "{err}");

    // The gateway sees the decision made by the other process, and the call goes through once.
    match gateway.wait(&id) {
        ApprovalState::Approved { by, reason, .. } => {
            assert_eq!((by.as_str(), reason.as_deref()), ("carol@example.com", Some("invoice checked")));
        }
        other => panic!("{other:?}"),
    }
    let mut other_args_digest = digest.clone();
    other_args_digest.replace_range(..4, "0000");
    assert!(matches!(gateway.consume(&id, &other_args_digest), Err(ApprovalError::Mismatch { .. })));
    gateway.consume(&id, &digest).unwrap();
    assert!(matches!(gateway.consume(&id, &digest), Err(ApprovalError::Replayed { .. })));
    gateway.close();

    let (_, out, _) = custos(&d, &["approvals", "show", &id, "--json"], None);
    let shown: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((shown["state"].as_str(), shown["decided_by"].as_str()), (Some("used"), Some("carol@example.com")));
    let (code, out, _) = custos(&d, &["approvals", "list"], None);
    assert_eq!((code, out.as_str()), (Some(0), ""), "nothing waits any more");
    let (_, out, _) = custos(&d, &["approvals", "list", "--all", "--json"], None);
    assert_eq!(out.lines().count(), 1);

    let events = d.events();
    assert_eq!(of_kind(&events, "approval.requested").len(), 1);
    let refused = of_kind(&events, "approval.refused");
    let approvers: Vec<&str> = refused.iter().map(|e| e["detail"]["approver"].as_str().unwrap()).collect();
    assert_eq!(approvers, ["dave@example.com", "operator", "bob@example.com", "carol@example.com"]);
    let approved = of_kind(&events, "approval.approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["detail"]["approver"], "carol@example.com");
    assert_eq!(approved[0]["detail"]["identity"]["method"], "cli", "a name asserted on the command line");
    assert_eq!((approved[0]["agent"].as_str(), approved[0]["run"].as_str()), (Some("operator"), Some("run-7")));
    assert_eq!(of_kind(&events, "approval.used").len(), 1);
    assert_eq!(of_kind(&events, "approval.replay_refused").len(), 2);
    assert!(!serde_json::to_string(&events).unwrap().contains(SECRET));
    // The kinds are known to `audit query --kind`.
    let out = d.output(&["audit", "query", "--kind", "approval.used", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    d.verify_ok();
}

#[test]
fn a_denial_needs_a_reason_and_unknown_ids_are_refused() {
    let d = Deployment::new(POLICIES, GROUPS);
    // Nothing recorded yet: nothing to list, nothing to decide.
    assert_eq!(custos(&d, &["approvals", "list"], None).0, Some(0));
    let (code, _, err) =
        custos(&d, &["approvals", "deny", "apr_00", "--as", "carol@example.com", "--reason", "x"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown approval `apr_00`"), "{err}");

    let gateway = Gateway::open(&d);
    let (id, digest) = gateway.hold(&d, 50);
    let (code, _, err) = custos(&d, &["approvals", "deny", &id, "--as", "carol@example.com"], None);
    assert_eq!(code, Some(2), "clap requires --reason: {err}");
    let (code, _, err) = custos(&d, &["approvals", "deny", &id, "--as", "carol@example.com", "--reason", " "], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a denial needs a reason"), "{err}");
    let (code, out, err) =
        custos(&d, &["approvals", "deny", &id, "--as", "carol@example.com", "--reason", "too much"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("denied {id}")), "{out}");
    assert!(matches!(gateway.wait(&id), ApprovalState::Denied { ref by, .. } if by == "carol@example.com"));
    assert!(matches!(gateway.consume(&id, &digest), Err(ApprovalError::NotApproved { state: "denied", .. })));
    gateway.close();

    for args in
        [&["approvals", "approve", "apr_nope", "--as", "carol@example.com"][..], &["approvals", "show", "apr_nope"][..]]
    {
        let (code, _, err) = custos(&d, args, None);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("unknown approval `apr_nope`"), "{err}");
    }
    let (code, _, err) = custos(&d, &["approvals", "approve", &id, "--as", "carol@example.com"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("already denied"), "{err}");
    let events = d.events();
    assert_eq!(of_kind(&events, "approval.denied")[0]["detail"]["reason"], "too much");
    d.verify_ok();
}

/// A deployment whose `sample` server has a command (so `custos serve` serves it) and whose
/// admin API is on.
fn served_deployment() -> Deployment {
    served_deployment_with("assert_approvers = true\n")
}

/// [`served_deployment`] with `admin` added to its `[admin]` section.
fn served_deployment_with(admin: &str) -> Deployment {
    let extra = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n{admin}{GROUPS}");
    let d = Deployment::new(POLICIES, &extra);
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "name = \"sample\"\n",
        &format!("name = \"sample\"\ncommand = [{:?}]\n", sample_server().to_str().unwrap()),
    );
    std::fs::write(d.config(), text).unwrap();
    std::fs::write(d.dir.path().join("admin.token"), "admin-token-for-tests-0123456789\n").unwrap();
    d
}

/// By default the admin token cannot name an approver: a decision through the admin API is
/// refused (403), recorded with the approver it named and how, and changes nothing.
#[test]
fn the_admin_token_may_not_name_an_approver_unless_configured() {
    let d = served_deployment_with("");
    let served = Served::start(&d);
    let admin = served.admin.clone().unwrap();
    let auth = ("Authorization", "Bearer admin-token-for-tests-0123456789");
    let gateway = Gateway::open(&d);
    let (id, _) = gateway.hold(&d, 10);
    let (status, _, body) = http(
        "POST",
        &format!("{admin}/v1/approvals/{id}/approve"),
        &[auth, ("Content-Type", "application/json")],
        r#"{"approver": "carol@example.com"}"#,
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, body["error"].as_str()), (403, Some("approver_not_asserted")), "{body}");
    let (_, _, shown) = http("GET", &format!("{admin}/v1/approvals/{id}"), &[auth], "");
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap()["state"], "pending", "nothing was decided");
    drop(served);
    let events = d.events();
    let refused = of_kind(&events, "approval.refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["detail"]["approver"], "carol@example.com");
    assert_eq!(refused[0]["detail"]["identity"]["method"], "admin-token");
    assert!(of_kind(&events, "approval.approved").is_empty());
}

#[test]
fn the_admin_api_lists_shows_and_decides_approvals() {
    let d = served_deployment();
    let served = Served::start(&d);
    let admin = served.admin.clone().unwrap();
    let auth = ("Authorization", "Bearer admin-token-for-tests-0123456789");
    let gateway = Gateway::open(&d);
    let (first, digest) = gateway.hold(&d, 10);
    let (second, _) = gateway.hold(&d, 20);

    let get = |path: &str| {
        let (status, _, body) = http("GET", &format!("{admin}{path}"), &[auth], "");
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let post = |path: &str, body: &str| {
        let (status, _, body) =
            http("POST", &format!("{admin}{path}"), &[auth, ("Content-Type", "application/json")], body);
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };

    assert_eq!(http("GET", &format!("{admin}/v1/approvals"), &[], "").0, 401);
    let (status, body) = get("/v1/approvals?state=pending");
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["approvals"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    assert_eq!(get("/v1/approvals?state=nonsense").0, 400);
    let (status, body) = get(&format!("/v1/approvals/{first}"));
    assert_eq!((status, body["state"].as_str()), (200, Some("pending")));
    assert_eq!(body["arguments"]["api_key"], "[redacted]");
    let (status, body) = get("/v1/approvals/apr_nope");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let approve = format!("/v1/approvals/{first}/approve");
    assert_eq!(post(&approve, "not json").0, 400);
    assert_eq!(post(&approve, r#"{"reason": "no approver"}"#).0, 400);
    assert_eq!(post(&approve, r#"{"approver": "carol@example.com", "extra": 1}"#).0, 400);
    let (status, body) = post(&approve, r#"{"approver": "operator"}"#);
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert!(body["error_description"].as_str().unwrap().contains("own call"), "{body}");
    assert_eq!(post(&approve, r#"{"approver": "bob@example.com"}"#).0, 403);
    assert_eq!(post(&approve, r#"{"approver": "mallory@example.com"}"#).0, 403);
    let (status, body) = post(&approve, r#"{"approver": "carol@example.com", "reason": "fine"}"#);
    assert_eq!(
        (status, body["state"].as_str(), body["decided_by"].as_str()),
        (200, Some("approved"), Some("carol@example.com"))
    );
    let (status, body) = post(&approve, r#"{"approver": "carol@example.com"}"#);
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    assert_eq!(post("/v1/approvals/apr_nope/approve", r#"{"approver": "carol@example.com"}"#).0, 404);

    let deny = format!("/v1/approvals/{second}/deny");
    let (status, body) = post(&deny, r#"{"approver": "carol@example.com"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("reason"), "{body}");
    let (status, body) = post(&deny, r#"{"approver": "carol@example.com", "reason": "not today"}"#);
    assert_eq!((status, body["state"].as_str(), body["reason"].as_str()), (200, Some("denied"), Some("not today")));

    // The decision made through the gateway's admin API is the one the waiting call sees.
    assert!(matches!(gateway.wait(&first), ApprovalState::Approved { .. }));
    gateway.consume(&first, &digest).unwrap();
    gateway.close();
    let (_, body) = get(&format!("/v1/approvals/{first}"));
    assert_eq!(body["state"], "used");
    let (_, body) = get("/v1/approvals?state=pending");
    assert_eq!(body["approvals"], json!([]));
    let (status, body) = get("/v1/audit?kind=approval.refused");
    assert_eq!(status, 200);
    // operator, bob, mallory, carol a second time, and the unknown id.
    assert_eq!(body["events"].as_array().unwrap().len(), 5, "{body}");
    let openapi = http("GET", &format!("{admin}/openapi.json"), &[], "").2;
    assert!(openapi.contains("/v1/approvals/{id}/approve"));
    served.stop();
    d.verify_ok();
}
