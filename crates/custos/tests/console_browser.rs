//! The console of `custos serve` driven in a real browser: Debian's Chromium through Playwright
//! (`tests/peers/console_browser.py`), approvers signing in through a real OpenID provider
//! (`tests/peers/oidc_provider.mjs`) or a one-time link, while the official MCP Python SDK's
//! call waits for them. What needs no browser (forged cookies, missing CSRF tokens, a link used
//! twice) is checked with plain HTTP at the end of the file.
//!
//! Without Chromium or Playwright the browser tests are skipped with a message, except in CI
//! (`CI=true`), where `.ci/run` installs both and their absence fails. With
//! `CUSTOS_SCREENSHOTS=1` the screenshots go to `docs/console-inbox.png` and
//! `docs/console-run.png`; otherwise into the test's temporary directory.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use common::harness::{
    eventually, header, http, issue_key, of_kind, peers_python, repo_root, sample_server, Deployment,
};
use serde_json::{json, Value};

/// Operators may call the sample server's tools; privileged ones (`write_note` here) need a
/// yes from `support-leads`.
const POLICIES: &str = r#"
@id("operators-call")
permit (principal in Custos::Group::"operators", action == Custos::Action::"call_tool", resource);

@id("privileged-needs-support-leads")
@approval("support-leads")
@reason("privileged tools need a support lead")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { resource.class == "privileged" }
unless { context.approval.granted };
"#;

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The longest one browser step may take (Playwright's own waits are bounded by it too).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the console must have its live calls (`/console/calls`) and run (`/console/runs/RUN`)
/// pages. While `false`, a 404 from them skips their checks with a note; set it once they are
/// merged, so a missing page fails.
const EXPECT_CALLS_AND_RUNS_PAGES: bool = true;

/// One browser at a time: Chromium is the heaviest thing these tests start (2 cores).
static BROWSER: Mutex<()> = Mutex::new(());

// --- What the tests need on the machine -------------------------------------------------------

/// Whether Chromium and Playwright are installed. Without them a browser test is skipped with
/// a message, except in CI (`CI=true`), where `.ci/run` installs them: there it fails.
fn browser_installed() -> bool {
    let python = repo_root().join(".venv-peers/bin/python");
    let playwright = python.exists()
        && Command::new(&python)
            .args(["-c", "import playwright.sync_api"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let missing = match (Path::new(CHROMIUM).exists(), playwright) {
        (true, true) => return true,
        (false, _) => format!("`{CHROMIUM}` (apt-get install chromium)"),
        (true, false) => "Playwright for Python in `.venv-peers` (run `.ci/setup-peers`)".to_owned(),
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{missing} is missing in CI: `.ci/run` should install it");
    eprintln!("skipped: {missing} is missing");
    false
}

/// Whether `.ci/setup-peers` installed `oidc-provider`; the same rule as [`browser_installed`].
fn provider_installed() -> bool {
    let package = repo_root().join("tests/peers/node_modules/oidc-provider/package.json");
    if package.exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`{}` is missing in CI: `.ci/setup-peers` should have installed it",
        package.display()
    );
    eprintln!("skipped: `{}` is missing; run `.ci/setup-peers`", package.display());
    false
}

/// A port no one listens on now: bound on 127.0.0.1 by the OS and released. The console binds
/// it next; the OpenID provider must know the redirect URI before the console starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// --- The peers ------------------------------------------------------------------------------

/// The real OpenID provider, killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(redirect_uri: &str) -> Self {
        let script = repo_root().join("tests/peers/oidc_provider.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--client-id", "custos-console", "--redirect-uri", redirect_uri])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let first = first_line(child.stdout.take().unwrap(), Duration::from_secs(60));
        let Some(issuer) = first.as_deref().and_then(|l| l.strip_prefix("issuer ")).map(str::to_owned) else {
            let _ = child.kill();
            panic!("the OpenID provider did not start: {first:?}");
        };
        Self { child, issuer }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line `out` gives within `wait`; the rest is drained so the writer never blocks.
fn first_line(out: impl std::io::Read + Send + 'static, wait: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    rx.recv_timeout(wait).ok().flatten()
}

/// A running `custos serve` with its console on its own listener; killed when dropped.
struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT` of the MCP endpoints.
    base: String,
    /// `http://127.0.0.1:PORT` of the console.
    console: String,
}

impl Gateway {
    fn start(d: &Deployment) -> Self {
        let mut child = d
            .custos(&["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut base, mut console) = (None, None);
        while base.is_none() || console.is_none() {
            let line = rx.recv_timeout(common::harness::ANSWER_TIMEOUT).expect("custos serve did not start");
            if let Some(b) = line.strip_prefix("listening on ") {
                base = Some(b.to_owned());
            } else if let Some(c) = line.strip_prefix("console on ") {
                console = Some(c.trim_end_matches('/').trim_end_matches("/console").to_owned());
            }
        }
        Self { child, base: base.unwrap(), console: console.unwrap() }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deployment whose `sample` server has a privileged `write_note`; `console` goes into the
/// config (the `[console]` part and the approver group).
fn deployment(console: &str) -> Deployment {
    let d = Deployment::new(POLICIES, &format!("[approvals]\ntimeout_ms = 45000\n{console}"));
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "name = \"sample\"\n",
        &format!(
            "name = \"sample\"\ncommand = [{:?}]\ntools = {{ \"write_note\" = \"privileged\" }}\n",
            sample_server().to_str().unwrap()
        ),
    );
    std::fs::write(d.config(), text).unwrap();
    d
}

/// A console whose approvers sign in with the OpenID provider; `support-leads` are whoever the
/// provider puts in its `support-leads` group.
struct OidcSetup {
    // Dropped in this order: the gateway before the provider it was configured with.
    gateway: Gateway,
    provider: Provider,
    d: Deployment,
    key: String,
}

fn oidc_setup() -> OidcSetup {
    let port = free_port();
    let provider = Provider::start(&format!("http://127.0.0.1:{port}/console/oidc/callback"));
    let d = deployment(&format!(
        "[approvals.groups.support-leads]\nidp_groups = [\"support-leads\"]\n\
         [console]\nlisten = \"127.0.0.1:{port}\"\n\
         [console.oidc]\nissuer = {:?}\nclient_id = \"custos-console\"\nscopes = [\"openid\", \"email\", \"groups\"]\n",
        provider.issuer
    ));
    let key = issue_key(&d, "operator");
    let gateway = Gateway::start(&d);
    assert_eq!(gateway.console, format!("http://127.0.0.1:{port}"));
    OidcSetup { gateway, provider, d, key }
}

/// A console without an identity provider: approvers sign in with one-time links, and
/// `support-leads` is carol.
struct LinkSetup {
    gateway: Gateway,
    d: Deployment,
    key: String,
}

fn link_setup() -> LinkSetup {
    let d = deployment(
        "[approvals.groups.support-leads]\nmembers = [\"carol@example.com\"]\n\
         [console]\nlisten = \"127.0.0.1:0\"\n",
    );
    let key = issue_key(&d, "operator");
    let gateway = Gateway::start(&d);
    LinkSetup { gateway, d, key }
}

/// `custos console login-link --as WHO --url BASE`: the link.
fn login_link(d: &Deployment, who: &str, base: &str) -> String {
    let out = d.output(&["console", "login-link", "--as", who, "--url", base]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(link.starts_with(&format!("{base}/console/login?token=")), "{link}");
    link
}

/// The official MCP Python SDK's client listing the tools (as a client does first: a tool whose
/// descriptor the gateway has not seen is privileged) and making one call through the gateway,
/// in its own process; killed when dropped (a held call it still waits on ends with it).
struct SdkCall {
    child: Child,
}

impl SdkCall {
    fn start(g: &Gateway, key: &str, tool: &str, arguments: Value) -> Self {
        let child = Command::new(peers_python())
            .arg(repo_root().join("tests/peers/mcp_http_client.py"))
            .arg(format!("{}/mcp/sample", g.base))
            .args(["--bearer", key, "--list-tools", "--call", tool, &arguments.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Waits for the client; its call step.
    fn finish(mut self) -> Value {
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(self.child.wait().unwrap().success(), "the SDK client failed: {out}");
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        report["steps"].as_array().unwrap().iter().find(|s| s["op"] == "call").unwrap().clone()
    }
}

impl Drop for SdkCall {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `approval.requested` event of the `n`th held call (1-based), once it is in the log.
fn nth_request(d: &Deployment, n: usize) -> Value {
    eventually("the held call's approval request", || {
        of_kind(&d.events(), "approval.requested").get(n - 1).map(|e| (*e).clone())
    })
}

/// The first event of `kind` for which `matches` holds, once it is in the log.
fn logged(d: &Deployment, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("a matching {kind} event"), || {
        of_kind(&d.events(), kind).into_iter().find(|e| matches(e)).cloned()
    })
}

// --- The browser ----------------------------------------------------------------------------

/// `tests/peers/console_browser.py`: one Chromium with a fresh profile, driven op by op.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Browser {
    fn start(console: &str, profile: &Path) -> Self {
        let mut child = Command::new(peers_python())
            .arg(repo_root().join("tests/peers/console_browser.py"))
            .args(["--base", console, "--user-data-dir"])
            .arg(profile)
            .args(["--timeout", &(STEP_TIMEOUT.as_secs() - 5).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, answers) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { stdin: child.stdin.take().unwrap(), child, answers }
    }

    /// Runs one op; its answer, which must say `ok`.
    fn op(&mut self, op: Value) -> Value {
        writeln!(self.stdin, "{op}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.answers.recv_timeout(STEP_TIMEOUT).unwrap_or_else(|e| panic!("{op}: no answer: {e}"));
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{op}: {e}: {line}"));
        assert_eq!(answer["ok"], true, "{op} failed: {answer:#}");
        answer
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, r#"{{"op":"quit"}}"#);
        let _ = self.stdin.flush();
        // Closing stdin ends the driver, which closes Chromium; a stuck one is killed.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshot `name` goes: `docs/` with `CUSTOS_SCREENSHOTS=1`, else `scratch`.
fn screenshot_path(name: &str, scratch: &Path) -> PathBuf {
    if std::env::var("CUSTOS_SCREENSHOTS").as_deref() == Ok("1") {
        repo_root().join("docs").join(name)
    } else {
        scratch.join(name)
    }
}

/// Asserts `path` is a PNG of 1280x800 (its IHDR chunk).
fn assert_png_1280x800(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let size = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1280, 800), "{}", path.display());
}

// --- The browser tests ----------------------------------------------------------------------

/// Alice, a support lead by the provider's word, signs in through the provider's own pages,
/// finds the waiting call in the inbox and approves it with confirmation; the SDK's call then
/// completes, and the log says who decided, how she signed in and in which session.
#[test]
fn an_oidc_approver_approves_a_held_call_in_the_browser_and_the_sdk_call_completes() {
    if !browser_installed() || !provider_installed() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = oidc_setup();
    let call = SdkCall::start(&s.gateway, &s.key, "write_note", json!({"title": "refund 120", "body": "ticket 7"}));
    let requested = nth_request(&s.d, 1);
    let id = requested["detail"]["id"].as_str().unwrap().to_owned();
    let run = requested["run"].as_str().unwrap_or_default().to_owned();

    let mut b = Browser::start(&s.gateway.console, &s.d.dir.path().join("chromium"));
    let signed = b.op(json!({"op": "sign_in_oidc", "email": "alice@example.com"}));
    assert_eq!(signed["who"], "alice@example.com", "{signed}");
    assert!(signed["provider_page"].as_str().unwrap().starts_with(&s.provider.issuer), "{signed}");
    assert_eq!((signed["http_only"].clone(), signed["same_site"].clone()), (json!(true), json!("Strict")));
    let fingerprint = signed["fingerprint"].as_str().unwrap().to_owned();

    let inbox = b.op(json!({"op": "inbox", "id": id}));
    assert!(inbox["row"].as_str().unwrap().contains("write_note"), "{inbox}");
    assert_eq!(inbox["ids"], json!([id]), "only the waiting call is pending");
    let shot = screenshot_path("console-inbox.png", s.d.dir.path());
    b.op(json!({"op": "screenshot", "path": shot}));
    assert_png_1280x800(&shot);

    let page = b.op(json!({"op": "open", "id": id}));
    assert_eq!((page["state"].clone(), page["can_decide"].clone()), (json!("pending"), json!(true)), "{page}");
    let decided = b.op(json!({"op": "decide", "id": id, "verdict": "approve", "reason": "refund checked"}));
    assert_eq!((decided["confirm_status"].clone(), decided["status"].clone()), (json!(200), json!(200)), "{decided}");
    assert!(decided["url"].as_str().unwrap().ends_with(&format!("/console/approvals/{id}")), "{decided}");
    // Approved, or already used by the waiting call.
    assert!(["approved", "used"].contains(&decided["state"].as_str().unwrap()), "{decided}");

    let step = call.finish();
    assert_eq!((step["ok"].clone(), step["is_error"].clone()), (json!(true), json!(false)), "{step}");
    assert!(step.to_string().contains("saved refund 120"), "{step}");

    let approved = logged(&s.d, "approval.approved", |e| e["detail"]["id"] == id.as_str());
    let who = &approved["detail"];
    assert_eq!(who["approver"], "alice@example.com", "{approved}");
    assert_eq!(who["reason"], "refund checked", "{approved}");
    assert_eq!(who["identity"]["method"], "oidc", "{approved}");
    assert_eq!(who["identity"]["issuer"], s.provider.issuer.as_str(), "{approved}");
    assert_eq!(who["identity"]["subject"], "u-alice", "{approved}");
    assert_eq!(who["identity"]["session"], fingerprint.as_str(), "the session that decided: {approved}");
    let signed_in = logged(&s.d, "console.signed_in", |e| e["detail"]["identity"]["session"] == fingerprint.as_str());
    assert_eq!(signed_in["detail"]["identity"]["subject"], "u-alice", "{signed_in}");
    logged(&s.d, "approval.used", |e| e["detail"]["id"] == id.as_str());

    // The run's timeline, once the console has that page.
    let timeline = b.op(json!({"op": "run", "run": run}));
    if timeline["status"] == 404 && !EXPECT_CALLS_AND_RUNS_PAGES {
        eprintln!("note: /console/runs/{{run}} answers 404: the run timeline screenshot is not taken yet");
    } else {
        assert_eq!(timeline["status"], 200, "{timeline}");
        let shot = screenshot_path("console-run.png", s.d.dir.path());
        b.op(json!({"op": "screenshot", "path": shot}));
        assert_png_1280x800(&shot);
    }
    drop(b);
    s.d.verify_ok();

    // The run's report names the approver as the identity provider vouched for her.
    let report = s.d.output(&["report", "run", &run]);
    let html = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let identity =
        format!("method <code>oidc</code>, issuer <code>{}</code>, subject <code>u-alice</code>", s.provider.issuer);
    assert!(html.contains(&identity), "no {identity} in the report");
    assert!(html.contains("<strong class=\"approver\">alice@example.com</strong>"), "no approver in the report");
}

/// A denial needs a reason: without one the page refuses (400) and nothing is decided; with
/// one the waiting SDK call fails with an error that names it.
#[test]
fn an_oidc_approver_denies_with_a_reason_and_an_empty_reason_is_refused() {
    if !browser_installed() || !provider_installed() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = oidc_setup();
    let call = SdkCall::start(&s.gateway, &s.key, "write_note", json!({"title": "rollback", "body": "prod"}));
    let id = nth_request(&s.d, 1)["detail"]["id"].as_str().unwrap().to_owned();

    let mut b = Browser::start(&s.gateway.console, &s.d.dir.path().join("chromium"));
    b.op(json!({"op": "sign_in_oidc", "email": "alice@example.com"}));
    let empty = b.op(json!({"op": "deny_empty", "id": id}));
    assert_eq!(empty["status"], 400, "{empty}");
    assert_eq!(empty["confirm_shown"], false, "{empty}");
    assert!(empty["error_text"].as_str().unwrap().contains("reason"), "{empty}");
    let page = b.op(json!({"op": "open", "id": id}));
    assert_eq!(page["state"], "pending", "nothing was decided: {page}");

    let reason = "not during the release freeze";
    let decided = b.op(json!({"op": "decide", "id": id, "verdict": "deny", "reason": reason}));
    assert_eq!((decided["status"].clone(), decided["state"].clone()), (json!(200), json!("denied")), "{decided}");
    assert!(decided["decision"].as_str().unwrap().contains(reason), "{decided}");

    let step = call.finish();
    assert_eq!(step["ok"], false, "a denied call must not complete: {step}");
    let message = step["error"]["message"].as_str().unwrap();
    assert!(message.contains("denied") && message.contains(reason), "{step}");

    let events = s.d.events();
    let denied = of_kind(&events, "approval.denied");
    assert_eq!(denied.len(), 1, "one decision, the one with a reason");
    assert_eq!(denied[0]["detail"]["reason"], reason);
    assert_eq!(denied[0]["detail"]["identity"]["subject"], "u-alice");
    assert!(of_kind(&events, "approval.approved").is_empty());
    assert!(of_kind(&events, "call.finished").is_empty(), "the denied call never ran");
}

/// Bob signs in, but his provider groups are not `support-leads`: the page says he cannot
/// decide, and a decide post forced from the page with his valid CSRF token is refused (403)
/// and recorded.
#[test]
fn an_approver_outside_the_group_sees_cannot_and_a_forced_post_is_refused() {
    if !browser_installed() || !provider_installed() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = oidc_setup();
    let _call = SdkCall::start(&s.gateway, &s.key, "write_note", json!({"title": "wire", "body": "9000"}));
    let id = nth_request(&s.d, 1)["detail"]["id"].as_str().unwrap().to_owned();

    let mut b = Browser::start(&s.gateway.console, &s.d.dir.path().join("chromium"));
    let signed = b.op(json!({"op": "sign_in_oidc", "email": "bob@example.com"}));
    assert_eq!(signed["who"], "bob@example.com");
    let page = b.op(json!({"op": "open", "id": id}));
    assert_eq!(page["state"], "pending", "{page}");
    assert!(page["cannot"].is_string(), "bob is not a support lead: {page}");
    assert_eq!(page["can_decide"], false, "{page}");

    let forced = b.op(json!({"op": "forced_post", "id": id, "verdict": "approve"}));
    assert_eq!(forced["status"], 403, "{forced}");
    let refused = logged(&s.d, "approval.refused", |e| e["detail"]["approver"] == "bob@example.com");
    assert_eq!(refused["detail"]["identity"]["method"], "oidc", "{refused}");
    assert_eq!(refused["detail"]["identity"]["subject"], "u-bob", "{refused}");
    let page = b.op(json!({"op": "open", "id": id}));
    assert_eq!(page["state"], "pending", "nothing was decided: {page}");
    assert!(of_kind(&s.d.events(), "approval.approved").is_empty());

    // Callbacks the console did not begin, or that the provider refused: a page, a record, no
    // session. And with a provider, sign-in links are off.
    let console = &s.gateway.console;
    let callback = format!("{console}/console/oidc/callback");
    let (status, headers, page) = common::harness::http("GET", &format!("{callback}?code=c&state=forged"), &[], "");
    assert_eq!(status, 401, "{page}");
    assert!(common::harness::header(&headers, "set-cookie").is_none(), "no session");
    logged(&s.d, "console.refused", |e| e["detail"]["reason"] == "state_mismatch");
    let (status, _, page) = common::harness::http("GET", &format!("{callback}?error=access_denied&state=x"), &[], "");
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("access_denied"), "{page}");
    logged(&s.d, "console.refused", |e| e["detail"]["reason"] == "provider_error");
    let (status, _, _) = common::harness::http("GET", &format!("{console}/console/login?token=t"), &[], "");
    assert_eq!(status, 404, "sign-in links are off with an identity provider");
}

/// Without an identity provider: carol signs in with a one-time link in the browser, watches
/// the live call feed (once the console has it), and approves a held call.
#[test]
fn a_login_link_signs_in_in_the_browser_and_its_approver_approves() {
    if !browser_installed() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = link_setup();
    let link = login_link(&s.d, "carol@example.com", &s.gateway.console);

    let mut b = Browser::start(&s.gateway.console, &s.d.dir.path().join("chromium"));
    let signed = b.op(json!({"op": "sign_in_link", "url": link}));
    assert_eq!((signed["status"].clone(), signed["who"].clone()), (json!(200), json!("carol@example.com")));
    let fingerprint = signed["fingerprint"].as_str().unwrap().to_owned();

    // The live feed: a new call shows up without a reload.
    let watch = b.op(json!({"op": "calls_watch"}));
    if watch["status"] == 404 && !EXPECT_CALLS_AND_RUNS_PAGES {
        eprintln!("note: /console/calls answers 404: the live feed is not checked yet");
    } else {
        assert_eq!(watch["status"], 200, "{watch}");
        let step = SdkCall::start(&s.gateway, &s.key, "add", json!({"a": 2, "b": 3})).finish();
        assert_eq!(step["ok"], true, "{step}");
        let seen = b.op(json!({"op": "calls_wait", "text": "add"}));
        assert_eq!(seen["reloaded"], false, "the row must arrive over the stream: {seen}");
    }

    let call = SdkCall::start(&s.gateway, &s.key, "write_note", json!({"title": "invoice", "body": "paid"}));
    let id = nth_request(&s.d, 1)["detail"]["id"].as_str().unwrap().to_owned();
    b.op(json!({"op": "inbox", "id": id}));
    let decided = b.op(json!({"op": "decide", "id": id, "verdict": "approve"}));
    assert_eq!(decided["status"], 200, "{decided}");
    let step = call.finish();
    assert_eq!((step["ok"].clone(), step["is_error"].clone()), (json!(true), json!(false)), "{step}");

    let approved = logged(&s.d, "approval.approved", |e| e["detail"]["id"] == id.as_str());
    assert_eq!(approved["detail"]["approver"], "carol@example.com", "{approved}");
    assert_eq!(approved["detail"]["identity"]["method"], "login-link", "{approved}");
    assert_eq!(approved["detail"]["identity"]["session"], fingerprint.as_str(), "{approved}");

    // Signing out ends the session: the inbox sends the browser back to sign in.
    let out = b.op(json!({"op": "sign_out"}));
    assert!(out["url"].as_str().unwrap().contains("/console/sign-in?ended=signed_out"), "{out}");
    assert!(out["who"].is_null(), "{out}");
    let inbox = b.op(json!({"op": "inbox"}));
    assert!(inbox["ids"].as_array().unwrap().is_empty(), "{inbox}");
    logged(&s.d, "console.signed_out", |e| e["detail"]["session"] == fingerprint.as_str());
}

// --- Plain HTTP: what no page would send ---------------------------------------------------

/// Signs in over plain HTTP with a fresh link for `who`: the session cookie's `name=value`.
fn http_sign_in(s: &LinkSetup, who: &str) -> String {
    let link = login_link(&s.d, who, &s.gateway.console);
    let token = link.split_once("token=").unwrap().1.to_owned();
    let (status, headers, body) = http(
        "POST",
        &format!("{}/console/login", s.gateway.console),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={token}"),
    );
    assert_eq!(status, 303, "{body}");
    header(&headers, "set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

/// A link signs in once; a decide post without the session's CSRF token, or from another
/// site, is refused and recorded; a forged session cookie is sent to sign in and recorded.
#[test]
fn links_sign_in_once_and_forged_sessions_and_forms_without_csrf_are_refused() {
    let s = link_setup();
    let console = &s.gateway.console;
    let form = ("Content-Type", "application/x-www-form-urlencoded");

    // A link used twice: the second use is refused.
    let link = login_link(&s.d, "carol@example.com", console);
    let token = link.split_once("token=").unwrap().1.to_owned();
    let login = format!("{console}/console/login");
    let (first, headers, body) = http("POST", &login, &[form], &format!("token={token}"));
    assert_eq!(first, 303, "{body}");
    assert!(header(&headers, "set-cookie").is_some_and(|c| c.contains("HttpOnly")));
    let (second, headers, body) = http("POST", &login, &[form], &format!("token={token}"));
    assert_eq!(second, 401, "{body}");
    assert!(header(&headers, "set-cookie").is_none(), "no session for a used link");
    assert!(body.contains("id=\"error\""), "{body}");
    logged(&s.d, "console.refused", |e| e["detail"]["reason"] == "used_link");

    // A decide post without the CSRF token, from a real session.
    let call = SdkCall::start(&s.gateway, &s.key, "write_note", json!({"title": "t", "body": "b"}));
    let id = nth_request(&s.d, 1)["detail"]["id"].as_str().unwrap().to_owned();
    let cookie = http_sign_in(&s, "carol@example.com");
    let decide = format!("{console}/console/approvals/{id}/decide");
    let (status, _, body) =
        http("POST", &decide, &[form, ("Cookie", &cookie)], "verdict=approve&reason=looks+fine&confirm=yes");
    assert_eq!(status, 403, "{body}");
    logged(&s.d, "console.refused", |e| {
        e["detail"]["reason"] == "csrf_missing" && e["detail"]["approver"] == "carol@example.com"
    });
    // The right token, from another site.
    let (_, _, page) = http("GET", &format!("{console}/console/approvals/{id}"), &[("Cookie", &cookie)], "");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let (status, _, body) = http(
        "POST",
        &decide,
        &[form, ("Cookie", &cookie), ("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        &format!("csrf={csrf}&verdict=approve&confirm=yes"),
    );
    assert_eq!(status, 403, "{body}");
    logged(&s.d, "console.refused", |e| e["detail"]["reason"] == "cross_site_form");
    assert!(of_kind(&s.d.events(), "approval.approved").is_empty(), "nothing was decided");
    // With the token, from the console itself, it is decided (the refusals above were not luck).
    let (status, headers, body) = http(
        "POST",
        &decide,
        &[form, ("Cookie", &cookie), ("Origin", console)],
        &format!("csrf={csrf}&verdict=approve&confirm=yes"),
    );
    assert_eq!(
        (status, header(&headers, "location")),
        (303, Some(format!("/console/approvals/{id}").as_str())),
        "{body}"
    );
    assert_eq!(call.finish()["ok"], true);

    // A forged session cookie.
    let forged = "custos_console=AAAAforgedforgedforgedforgedforgedforgedforg";
    let (status, headers, body) = http("GET", &format!("{console}/console/approvals"), &[("Cookie", forged)], "");
    assert_eq!(status, 303, "{body}");
    assert_eq!(header(&headers, "location"), Some("/console/sign-in?ended=unknown_session"));
    logged(&s.d, "console.refused", |e| e["detail"]["reason"] == "unknown_session");
    let (status, _, _) =
        http("POST", &decide, &[form, ("Cookie", forged)], &format!("csrf={csrf}&verdict=deny&reason=x&confirm=yes"));
    assert_eq!(status, 303, "a forged cookie decides nothing");
    s.d.verify_ok();
}
