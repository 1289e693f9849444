//! `custos demo`: four agent workflows governed end to end, on a deployment of their own.
//!
//! The command writes a config, policies, their schema and an OpenAPI document
//! (`examples/demo/`, embedded in the binary) into a fresh folder, starts the billing API (a
//! plain REST API, in this process on `127.0.0.1:0`), then the gateway in this process exactly
//! as `custos serve` does (the embedded store, `127.0.0.1:0`, the `[[apis]]` loaded, no admin
//! API), issues each agent an API key, and plays one scripted agent per workflow over real
//! Streamable HTTP, and plain HTTP for the API (the support bot's refunds, each with a token the
//! gateway mints for that call). The tool servers are this binary again (`custos demo-server
//! NAME`, hidden), so nothing but the binary is needed. A background
//! approver decides held calls (or asks on the terminal with `--interactive`). At the end each
//! workflow's timeline is read back from the audit log, and the log's chain is verified.
//!
//! # Layout
//!
//! - `demo.rs`: the deployment, the gateway, the scripts and the approver.
//! - `demo/client.rs`: the scripted agents' MCP client.
//! - `demo/report.rs`: the timelines, findings and chain check, from the audit log.

mod client;
mod report;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custos_approvals::{ApprovalFilter, ApprovalRequest, Approvals, Verdict};
use custos_http::auth::Authenticator;
use custos_http::AppState;
use custos_store::{AuditLog, DbLocation, SqlStore};
use serde_json::{json, Value};

use crate::cli::{DemoArgs, Location};
use crate::context;
use crate::Failure;

use client::McpClient;
use report::Workflow;

/// The config, with `{EXE}` (this binary), `{DATA}` (the deployment's folder) and `{BILLING}`
/// (the billing API's address, `127.0.0.1:PORT`) to fill in. The template itself loads as a
/// config (`tests/startup.rs` checks every example), so each placeholder sits where a value of
/// its kind may.
const CONFIG_TEMPLATE: &str = include_str!("../../../../examples/demo/custos.toml");

/// The policy files the config names, by file name.
const POLICIES: [(&str, &str); 5] = [
    ("support.cedar", include_str!("../../../../examples/demo/policies/support.cedar")),
    ("coding.cedar", include_str!("../../../../examples/demo/policies/coding.cedar")),
    ("procurement.cedar", include_str!("../../../../examples/demo/policies/procurement.cedar")),
    ("ops.cedar", include_str!("../../../../examples/demo/policies/ops.cedar")),
    // The shipped toxic-flow rules (a copy of `examples/policies/toxic-flow.cedar`).
    ("toxic-flow.cedar", include_str!("../../../../examples/demo/policies/toxic-flow.cedar")),
];

/// The schema the policies are checked against: the shipped one, with the billing API's
/// request body among the arguments (written into `policies/`).
const SCHEMA: (&str, &str) = ("demo.cedarschema", include_str!("../../../../examples/demo/policies/demo.cedarschema"));

/// The billing API's OpenAPI document, which the config's `[[apis]]` imports.
const BILLING_OPENAPI: (&str, &str) = ("billing.yaml", include_str!("../../../../examples/demo/billing.yaml"));

/// Who the demo's approver is: a member of every approver group in the demo config.
const APPROVER: &str = "demo-approver@custos.example";
const APPROVER_REASON: &str = "approved by the demo approver";

/// How often the approver looks for held calls.
const APPROVER_POLL: Duration = Duration::from_millis(50);
/// How long one step may take before its workflow is given up: far more than the demo needs,
/// and more than the config's 15 s approval timeout, so a held call's own timeout is seen.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// With `--interactive` a human answers: held calls wait this long, steps a little longer.
const INTERACTIVE_APPROVAL_TIMEOUT_MS: u64 = 120_000;

/// One step of a script.
enum Action {
    /// `tools/list`.
    List,
    /// `tools/call` of a tool with its arguments.
    Call(&'static str, Value),
    /// A plain HTTP request through the gateway's API proxy: method, path (`/api/{name}/…`),
    /// JSON body; in the run of the script's MCP session.
    Http(&'static str, &'static str, Value),
}

/// One scripted agent: who it is, the server it talks MCP to, what it does.
struct Script {
    name: &'static str,
    agent: &'static str,
    server: &'static str,
    actions: Vec<Action>,
}

/// The four workflows. What each step should lead to is in the comments: the demo does not
/// assert it (the timeline shows what happened), `tests/demo.rs` does.
fn scripts() -> Vec<Script> {
    use Action::{Call, Http, List};
    vec![
        Script {
            name: "support",
            agent: "support-bot",
            server: "helpdesk",
            actions: vec![
                List,
                Call("get_ticket", json!({ "ticket_id": "T-1001" })),
                Call("lookup_customer", json!({ "customer_id": "C-42" })),
                // Refunds go to the billing API (REST), each with a token minted for it.
                // 80 EUR: under the limit, allowed.
                Http(
                    "POST",
                    "/api/billing/refunds",
                    json!({ "customer_id": "C-42", "amount": 80, "reason": "duplicate charge (T-1001)" }),
                ),
                Call("get_ticket", json!({ "ticket_id": "T-1003" })),
                // 250 EUR: held for a support lead, then allowed.
                Http(
                    "POST",
                    "/api/billing/refunds",
                    json!({ "customer_id": "C-42", "amount": 250, "reason": "broken laptop (T-1003)" }),
                ),
                // Carries an injected instruction: an `output_injection` finding.
                Call("get_ticket", json!({ "ticket_id": "T-1002" })),
                // What the injection asked for: denied, whoever would approve (over the
                // agent's limit; and, once the API call sees the findings of the MCP calls in
                // its run, after an injection).
                Http(
                    "POST",
                    "/api/billing/refunds",
                    json!({ "customer_id": "C-77", "amount": 5000, "reason": "as instructed in T-1002" }),
                ),
            ],
        },
        Script {
            name: "coding",
            agent: "coding-bot",
            server: "codehost",
            actions: vec![
                List,
                Call("read_file", json!({ "path": "src/billing.rs" })),
                Call(
                    "propose_patch",
                    json!({
                        "path": "src/billing.rs",
                        "diff": "-    charge(order);\n-    charge(order);\n+    charge(order);\n",
                    }),
                ),
                // The server changed `run_tests` since the first listing: a rug pull.
                List,
                // Quarantined until an operator accepts the new descriptor: denied.
                Call("run_tests", json!({})),
                Call("open_pull_request", json!({ "title": "Charge each order once", "patch_id": "P-1" })),
                // Held for a maintainer, then allowed.
                Call("merge_pull_request", json!({ "number": 17 })),
            ],
        },
        Script {
            name: "procurement",
            agent: "procurement-bot",
            server: "procurement",
            actions: vec![
                Call("get_supplier", json!({ "supplier_id": "S-9" })),
                Call("draft_renewal", json!({ "supplier_id": "S-9", "amount": 52000 })),
                // Held for finance, then allowed.
                Call("update_finance_system", json!({ "draft_id": "D-1", "amount": 52000 })),
                // Forbidden outright.
                Call("delete_supplier", json!({ "supplier_id": "S-9" })),
            ],
        },
        Script {
            name: "ops",
            agent: "ops-bot",
            server: "ops",
            actions: vec![
                Call("query_metrics", json!({ "service": "checkout" })),
                Call("list_deployments", json!({ "service": "checkout" })),
                // Held for an SRE, then allowed.
                Call("rollback_service", json!({ "service": "checkout", "version": "v2.3.0" })),
                // The same privileged call again: a replay, denied.
                Call("rollback_service", json!({ "service": "checkout", "version": "v2.3.0" })),
            ],
        },
    ]
}

/// `custos demo-server NAME`: one of the demo's tool servers on stdin/stdout.
pub fn serve_demo_server(name: &str) -> Result<(), Failure> {
    let runtime = super::runtime()?;
    runtime
        .block_on(custos_demo_servers::serve_stdio(name))
        .map_err(|e| Failure::runtime(format!("demo server `{name}`: {e}")))
}

pub fn run(args: &DemoArgs) -> Result<(), Failure> {
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (temporary_dir()?, true),
    };
    let result = demo(args, &dir, temporary && !args.keep);
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else if temporary {
        eprintln!("custos: the demo's deployment is kept in `{}`", dir.display());
    }
    result
}

/// What the demo found, for printing.
struct Summary {
    dir: PathBuf,
    config: PathBuf,
    gateway: SocketAddr,
    workflows: Vec<Workflow>,
    findings: Vec<Value>,
    audit: report::Audit,
}

fn demo(args: &DemoArgs, dir: &Path, removed: bool) -> Result<(), Failure> {
    // The billing API's port first: the config names its URL.
    let billing = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Failure::runtime(format!("cannot listen for the demo's billing API: {e}")))?;
    let billing_addr = billing.local_addr().map_err(Failure::runtime)?.to_string();
    let (dir, config_path) = write_deployment(dir, &billing_addr)?;
    let mut config = context::load_config(&Location { config: Some(config_path.clone()), data_dir: None })?;
    // The gateway's own port, whatever the config says; no admin API.
    config.serve.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin = None;
    if args.console {
        console_config(&mut config);
    }
    let step_timeout = if args.interactive || args.console {
        config.approvals.timeout_ms = INTERACTIVE_APPROVAL_TIMEOUT_MS;
        Duration::from_millis(INTERACTIVE_APPROVAL_TIMEOUT_MS) + STEP_TIMEOUT
    } else {
        STEP_TIMEOUT
    };

    // As `custos serve` starts: policy, store, keys, broker, detectors.
    let policy = Arc::new(super::run::load_policy(&config)?);
    let mut store = context::open_for_writing(&config)?;
    let db = context::database(&config);
    let keys = issue_keys(&config, &mut store)?;
    let serving: Vec<&str> = config
        .servers
        .iter()
        .filter(|s| s.is_served())
        .map(|s| s.name.as_str())
        .chain(config.apis.iter().map(|a| a.name.as_str()))
        .collect();
    let broker = crate::credentials::start(&config, &serving, &mut store)?;
    let registry = context::reader(&db)?;
    let reader = context::reader(&db)?;
    let detection = super::run::detection(&config, &db)?;

    let runtime = super::runtime()?;
    let summary = runtime.block_on(async {
        let apis = super::serve::load_apis(&config, broker.as_ref().map(|started| started.broker.clone())).await?;
        let listener = tokio::net::TcpListener::bind(config.serve.listen)
            .await
            .map_err(|e| Failure::runtime(format!("cannot listen on `{}`: {e}", config.serve.listen)))?;
        let addr = listener.local_addr().map_err(Failure::runtime)?;
        let billing = tokio::net::TcpListener::from_std(billing).map_err(Failure::runtime)?;
        let audit = AuditLog::start(Box::new(store)).map_err(Failure::runtime)?;
        let auth = Authenticator::new(config.agents.clone(), registry, None, Vec::new())
            .with_spiffe_ids(config.spiffe_ids.clone());
        if let Some(started) = &broker {
            crate::credentials::spawn_key_reload(started.broker.clone(), started.master.clone(), &db)?;
        }
        let console = if args.console {
            let listener = custos_http::bind(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(Failure::runtime)?;
            let url = format!("http://{}", listener.local_addr().map_err(Failure::runtime)?);
            config.approvals.console_url = Some(url.clone());
            Some((listener, url))
        } else {
            None
        };
        let approvals = super::serve::approvals(&config, audit.clone(), &db, None)?;
        let mut state = AppState::new(config.clone(), policy, audit.clone(), auth, reader, addr)
            .with_approvals(approvals.clone())
            .with_apis(apis);
        if let Some(started) = broker {
            state = state.with_broker(started.broker);
        }
        let state = Arc::new(state.with_detection(detection));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let console_url = match console {
            Some((listener, console_url)) => {
                start_console(&config, &state, &audit, &approvals, &db, listener, &console_url, stopped.clone())
                    .await?;
                Some(console_url)
            }
            None => None,
        };
        let mut billing_stopped = stopped.clone();
        tokio::spawn(async move {
            let until = async move {
                let _ = billing_stopped.wait_for(|stop| *stop).await;
            };
            if let Err(e) = custos_demo_servers::serve_billing(billing, until).await {
                eprintln!("custos: the demo's billing API stopped: {e}");
            }
        });
        let mut until_stopped = stopped.clone();
        let server = tokio::spawn(custos_http::serve(state, listener, async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        }));
        // With the console, a human decides in the browser.
        let approver = (!args.console).then(|| tokio::spawn(approve(approvals.clone(), args.interactive, stopped)));
        if !args.json {
            eprintln!("custos: demo gateway on http://{addr}; deployment in `{}`", dir.display());
        }

        // With the console the demo runs until Ctrl-C, which may come while a call is held.
        let (interrupt, mut interrupted) = tokio::sync::watch::channel(false);
        if args.console {
            tokio::spawn(async move {
                let signal = custos_gateway::shutdown_signal().await;
                eprintln!("custos: {signal}: stopping the demo");
                let _ = interrupt.send(true);
            });
        }
        let mut outcomes = Vec::new();
        for script in scripts() {
            let key = keys.iter().find(|(agent, _)| agent == script.agent).map(|(_, key)| key.as_str());
            let error = match key {
                Some(key) => tokio::select! {
                    error = play(addr, key, &script, step_timeout) => error,
                    _ = interrupted.wait_for(|i| *i) => Some("interrupted".to_owned()),
                },
                None => Some(format!("agent `{}` has no key", script.agent)),
            };
            if let Some(e) = &error {
                eprintln!("custos: workflow `{}` did not complete: {e}", script.name);
            }
            outcomes.push((script.name, script.agent, error));
        }

        let read = |outcomes: Vec<(&'static str, &'static str, Option<String>)>| {
            // Everything in the summary is read back from the log.
            let store = context::reader(&db)?;
            let mut workflows = Vec::new();
            for (name, agent, error) in outcomes {
                workflows.push(Workflow::read(&store, &approvals, (name, agent, run_id(name)), error)?);
            }
            Ok::<_, Failure>(Summary {
                dir: dir.clone(),
                config: config_path.clone(),
                gateway: addr,
                findings: report::findings(&store)?,
                audit: report::verify(&store)?,
                workflows,
            })
        };
        if let Some(console_url) = console_url.as_ref().filter(|_| !*interrupted.borrow()) {
            // The summary now, while the gateway and the console keep serving for the browser.
            audit.flush().await.map_err(Failure::runtime)?;
            let summary = read(outcomes.clone())?;
            print_summary(args, &summary, removed);
            eprintln!(
                "custos: the gateway and the console keep running at {console_url}/console/ — press Ctrl-C to stop"
            );
            let _ = interrupted.wait_for(|i| *i).await;
        }

        let _ = stop.send(true);
        if let Some(approver) = approver {
            let _ = approver.await;
        }
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("custos: the demo gateway stopped: {e}"),
            Ok(Err(e)) => eprintln!("custos: the demo gateway stopped: {e}"),
            Err(_) => eprintln!("custos: the demo gateway did not stop within 5 s"),
        }
        audit.shutdown().await;
        Ok::<_, Failure>((read(outcomes)?, console_url.is_some()))
    })?;
    let (summary, printed) = summary;

    if !printed {
        print_summary(args, &summary, removed);
    }
    if let Some(problem) = &summary.audit.problem {
        return Err(Failure::check(format!("the audit log does not verify: {problem}")));
    }
    let incomplete: Vec<&str> = summary.workflows.iter().filter(|w| !w.completed()).map(|w| w.name).collect();
    if !incomplete.is_empty() {
        return Err(Failure::runtime(format!("workflows that did not complete: {}", incomplete.join(", "))));
    }
    Ok(())
}

fn print_summary(args: &DemoArgs, summary: &Summary, removed: bool) {
    if args.json {
        print_json(summary);
    } else {
        print_plain(summary, use_color(args), removed);
    }
}

/// `--console`: the demo's deployment gains a console on a port of its own, on loopback,
/// where the demo approver signs in with a one-time link.
fn console_config(config: &mut custos_config::Config) {
    config.console = Some(custos_config::ConsoleConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        public_url: None,
        session_idle_timeout_secs: custos_config::DEFAULT_CONSOLE_IDLE_SECS,
        session_max_secs: custos_config::DEFAULT_CONSOLE_MAX_SECS,
        login_link_ttl_secs: custos_config::DEFAULT_LOGIN_LINK_TTL_SECS,
        local_sign_in: true,
        tls: None,
        oidc: None,
    });
}

/// Serves the console until `stopped`, and prints a one-time sign-in link for the demo
/// approver (recorded in the log first, as `custos console login-link` records one).
#[expect(clippy::too_many_arguments, reason = "the pieces of the demo's gateway the console shares")]
async fn start_console(
    config: &custos_config::Config,
    state: &Arc<AppState>,
    audit: &AuditLog,
    approvals: &Approvals,
    db: &DbLocation,
    listener: tokio::net::TcpListener,
    base: &str,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Failure> {
    let console = super::serve::console(config, &state.policy, audit, approvals, db, base).await?;
    let routes = custos_console::router(console);
    let app = state.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = custos_http::admin::serve_routes(app, routes, listener, "console", None, shutdown).await {
            eprintln!("custos: the console stopped: {e}");
        }
    });
    let ttl = config.console.as_ref().map_or(custos_config::DEFAULT_LOGIN_LINK_TTL_SECS, |c| c.login_link_ttl_secs);
    let link = custos_console::link::issue(APPROVER, ttl, custos_gateway::now_ms()).map_err(Failure::runtime)?;
    audit.append(vec![link.event]).await.map_err(Failure::runtime)?;
    eprintln!("custos: the console is open; sign in as {APPROVER} (one-time link, {ttl} s) and decide the held calls:");
    // stdout: the link alone on its line, for a script or a test to read.
    println!("sign-in link: {}", custos_console::link::url(base, &link.token));
    Ok(())
}

/// The run a workflow's calls are recorded in.
fn run_id(workflow: &str) -> String {
    format!("demo-{workflow}")
}

/// A new folder under the system's temporary directory.
fn temporary_dir() -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("custos-demo-{}-{}", std::process::id(), custos_gateway::now_ms()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::runtime(format!("cannot create a temporary folder `{}`: {e}", dir.display())))?;
    Ok(dir)
}

/// Writes the config, the policies, their schema and the billing API's document into `dir`
/// (created if missing, and refused if it already
/// holds an audit log: the demo's runs and pins would mix with what is there). Returns the
/// folder as an absolute path, and the config's path.
fn write_deployment(dir: &Path, billing_addr: &str) -> Result<(PathBuf, PathBuf), Failure> {
    let cannot = |what: &Path, e: std::io::Error| Failure::usage(format!("cannot write `{}`: {e}", what.display()));
    std::fs::create_dir_all(dir.join("policies")).map_err(|e| cannot(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| cannot(dir, e))?;
    if context::database_file(&dir).exists() {
        return Err(Failure::usage(format!(
            "`{}` already holds an audit log: give the demo an empty or new folder",
            dir.display()
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::runtime(format!("cannot find this program's own path to start the demo servers: {e}")))?;
    let config = CONFIG_TEMPLATE
        .replace("{EXE}", &toml_escape(&exe.to_string_lossy()))
        .replace("{DATA}", &toml_escape(&dir.to_string_lossy()))
        .replace("{BILLING}", &toml_escape(billing_addr));
    let config_path = dir.join("custos.toml");
    std::fs::write(&config_path, config).map_err(|e| cannot(&config_path, e))?;
    for (name, text) in POLICIES.iter().chain([&SCHEMA]) {
        let path = dir.join("policies").join(name);
        std::fs::write(&path, text).map_err(|e| cannot(&path, e))?;
    }
    let (name, text) = BILLING_OPENAPI;
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| cannot(&path, e))?;
    Ok((dir, config_path))
}

/// `s` as the inside of a TOML basic string.
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// An API key for every agent of the config, issued as `custos agents add` issues one; the
/// keys themselves stay in memory.
fn issue_keys(config: &custos_config::Config, store: &mut SqlStore) -> Result<Vec<(String, String)>, Failure> {
    let mut keys = Vec::new();
    for agent in &config.agents {
        let (key, _) = super::agents::issue_key(store, agent)?;
        keys.push((agent.id.0.clone(), key.expose().to_owned()));
    }
    Ok(keys)
}

/// Plays one script; `Some(why)` when a step got no answer.
async fn play(addr: SocketAddr, key: &str, script: &Script, timeout: Duration) -> Option<String> {
    let mut client = McpClient::new(addr, script.server, key, &run_id(script.name), timeout);
    let played = async {
        client.initialize().await.map_err(|e| format!("initialize: {e}"))?;
        for (n, action) in script.actions.iter().enumerate() {
            let (method, params, what) = match action {
                Action::List => ("tools/list", json!({}), "tools/list".to_owned()),
                Action::Call(tool, arguments) => {
                    ("tools/call", json!({ "name": tool, "arguments": arguments }), format!("{}/{tool}", script.server))
                }
                Action::Http(method, path, body) => {
                    // Any HTTP answer is an answer (a 403 is the gateway's refusal); only no
                    // answer at all stops the script.
                    client
                        .api(method, path, Some(body))
                        .await
                        .map_err(|e| format!("action {} ({method} {path}): {e}", n + 1))?;
                    continue;
                }
            };
            client.request(method, params).await.map_err(|e| format!("action {} ({what}): {e}", n + 1))?;
        }
        Ok::<(), String>(())
    }
    .await;
    // Ends the session (and its server) either way; best effort when the gateway is what failed.
    client.close().await;
    played.err()
}

/// Decides every held call until stopped: approves it as the demo approver, or asks on the
/// terminal with `--interactive`. Polls, as an approver in another process would.
async fn approve(approvals: Approvals, interactive: bool, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut seen = HashSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(APPROVER_POLL) => {}
        }
        let pending = match approvals.list(ApprovalFilter::pending()) {
            Ok(pending) => pending,
            Err(e) => {
                eprintln!("custos: the demo approver cannot read the queue: {e}");
                continue;
            }
        };
        for request in pending {
            if !seen.insert(request.id.clone()) {
                continue;
            }
            let (verdict, reason) =
                if interactive { ask(&request).await } else { (Verdict::Approve, APPROVER_REASON.to_owned()) };
            let approver = custos_approvals::Approver::asserted(APPROVER, custos_approvals::ApproverMethod::Demo);
            if let Err(e) = approvals.decide(&request.id, &approver, verdict, Some(&reason)).await {
                eprintln!("custos: the demo approver cannot decide `{}`: {e}", request.id);
            }
        }
    }
}

/// Shows a held call on stderr and reads `y` or `n` from stdin.
async fn ask(request: &ApprovalRequest) -> (Verdict, String) {
    eprintln!();
    eprintln!(
        "custos: `{}` by agent `{}` (run {}, step {}) is held",
        request.tool, request.agent, request.run, request.step
    );
    eprintln!("  arguments  {}", request.arguments);
    eprintln!("  policies   {}", request.policies.join(", "));
    eprintln!("  groups     {}", request.groups.join(", "));
    eprint!("approve as {APPROVER}? [y/n] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    match answer {
        Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes") => {
            (Verdict::Approve, "approved at the demo's prompt".to_owned())
        }
        _ => (Verdict::Deny, "denied at the demo's prompt".to_owned()),
    }
}

/// Colour on a terminal, unless `--no-color` or `NO_COLOR` says otherwise.
fn use_color(args: &DemoArgs) -> bool {
    !args.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

fn print_json(s: &Summary) {
    let workflows: Vec<Value> = s.workflows.iter().map(Workflow::to_json).collect();
    let out = json!({
        "data_dir": s.dir,
        "config": s.config,
        "gateway": format!("http://{}", s.gateway),
        "workflows": workflows,
        "findings": s.findings,
        "audit": { "ok": s.audit.ok, "events": s.audit.events, "head": s.audit.head, "problem": s.audit.problem },
    });
    println!("{out}");
}

fn print_plain(s: &Summary, color: bool, removed: bool) {
    println!("custos demo: four agent workflows through a Custos gateway (http://{})", s.gateway);
    println!("every step below is read back from the audit log in {}", s.dir.display());
    for w in &s.workflows {
        w.print(color);
    }
    println!();
    let kinds: Vec<String> = {
        let mut kinds: Vec<String> = Vec::new();
        for f in &s.findings {
            let kind = f.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    };
    println!("findings: {} ({})", s.findings.len(), kinds.join(", "));
    match &s.audit.problem {
        None => println!("audit log verified: {} events, hash chain intact, head {}", s.audit.events, s.audit.head),
        Some(problem) => println!("audit log NOT verified: {problem}"),
    }
    println!();
    if removed {
        println!("The deployment was temporary and is gone; keep it with --keep or --data-dir DIR, then explore:");
    } else {
        println!("Explore what was recorded:");
    }
    let config = s.config.display();
    println!("  custos audit query --run demo-support --config {config}");
    println!("  custos findings --config {config}");
    println!("  custos approvals list --all --config {config}");
    println!("  custos tools list --config {config}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_carries_the_shipped_toxic_flow_rules_unchanged() {
        let shipped = include_str!("../../../../examples/policies/toxic-flow.cedar");
        assert!(POLICIES.iter().any(|(name, text)| *name == "toxic-flow.cedar" && text.ends_with(shipped)));
    }

    #[test]
    fn every_policy_file_the_config_names_is_written() {
        for (name, _) in POLICIES.iter().chain([&SCHEMA]) {
            assert!(CONFIG_TEMPLATE.contains(&format!("\"policies/{name}\"")), "{name}");
        }
        assert_eq!(CONFIG_TEMPLATE.matches("policies/").count(), POLICIES.len() + 1);
        assert!(CONFIG_TEMPLATE.contains(&format!("openapi = \"{}\"", BILLING_OPENAPI.0)));
    }

    #[test]
    fn the_demo_schema_is_the_shipped_one_with_the_refund_body() {
        let shipped = include_str!("../../../custos-policy/schema/custos.cedarschema");
        let body = "    // The JSON body of a call to an HTTP API (`[[apis]]`): here the billing API's refund.\n    \
                    body?: { customer_id?: String, amount?: Long, reason?: String },\n";
        let query = "    query?: String,\n";
        assert_eq!(SCHEMA.1, shipped.replace(query, &format!("{query}{body}")));
    }
}
