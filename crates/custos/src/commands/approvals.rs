//! `custos approvals list / show / approve / deny`: the approval queue, from any terminal.
//!
//! A held call waits in `custos run` or `custos serve`; an approver decides it here, against the
//! same data directory. The decision is one write transaction in the shared database, which the
//! waiting gateway sees within a poll interval. Exit codes: 0 done, 1 refused (not in the
//! group, own call, already decided, expired, unknown id), 2 usage.

use std::time::{Duration, UNIX_EPOCH};

use custos_approvals::{ApprovalError, ApprovalFilter, ApprovalRequest, ApprovalState, Approvals, Verdict};
use custos_config::Config;
use custos_store::AuditLog;

use crate::cli::{ApprovalsCommand, DecideArgs, DenyArgs, Location};
use crate::context;
use crate::Failure;

/// Where `--as` comes from when it is not given.
const APPROVER_ENV: &str = "CUSTOS_APPROVER";

pub fn run(cmd: ApprovalsCommand) -> Result<(), Failure> {
    match cmd {
        ApprovalsCommand::List { location, all, json } => list(&location, all, json),
        ApprovalsCommand::Show { location, id, json } => show(&location, &id, json),
        ApprovalsCommand::Approve(DecideArgs { location, id, approver, reason }) => {
            decide(&location, &id, approver, Verdict::Approve, reason.as_deref())
        }
        ApprovalsCommand::Deny(DenyArgs { location, id, approver, reason }) => {
            decide(&location, &id, approver, Verdict::Deny, Some(&reason))
        }
    }
}

fn list(location: &Location, all: bool, json: bool) -> Result<(), Failure> {
    let filter = if all { ApprovalFilter::default() } else { ApprovalFilter::pending() };
    let requests = with_queue(location, |q| async move { q.list(filter) })?.unwrap_or_default();
    if json {
        for r in &requests {
            println!("{}", r.to_json());
        }
        return Ok(());
    }
    if requests.is_empty() {
        eprintln!("custos: {}", if all { "no approval requests" } else { "no approval requests waiting" });
        return Ok(());
    }
    println!("{:<36}  {:<8}  {:<16}  {:<24}  {:<16}  {:<10}  GROUPS", "ID", "STATE", "AGENT", "TOOL", "RUN", "EXPIRES");
    let now = custos_gateway::now_ms();
    for r in &requests {
        let expires = if matches!(r.state, ApprovalState::Pending | ApprovalState::Approved { .. }) {
            format!("in {}", span(r.expires_ms.saturating_sub(now)))
        } else {
            "-".to_owned()
        };
        println!(
            "{:<36}  {:<8}  {:<16}  {:<24}  {:<16}  {:<10}  {}",
            r.id,
            r.state.name(),
            r.agent.0,
            r.tool.to_string(),
            format!("{}#{}", r.run.0, r.step),
            expires,
            r.groups.join(",")
        );
    }
    Ok(())
}

fn show(location: &Location, id: &str, json: bool) -> Result<(), Failure> {
    let found = with_queue(location, |q| async move { q.get(id) })?.flatten();
    let Some(r) = found else { return Err(refused(&ApprovalError::Unknown { id: id.to_owned() })) };
    if json {
        println!("{}", r.to_json());
        return Ok(());
    }
    print_request(&r);
    Ok(())
}

fn decide(
    location: &Location,
    id: &str,
    approver: Option<String>,
    verdict: Verdict,
    reason: Option<&str>,
) -> Result<(), Failure> {
    let approver = approver.or_else(|| std::env::var(APPROVER_ENV).ok()).filter(|a| !a.trim().is_empty());
    let Some(approver) = approver else {
        return Err(Failure::usage(format!("who decides? pass --as APPROVER or set {APPROVER_ENV}")));
    };
    let decided = with_queue(location, |q| {
        let approver = custos_approvals::Approver::asserted(approver.clone(), custos_approvals::ApproverMethod::Cli);
        async move { q.decide(id, &approver, verdict, reason).await }
    })?;
    let Some(r) = decided else { return Err(refused(&ApprovalError::Unknown { id: id.to_owned() })) };
    let call = format!("`{}` by agent `{}` in run `{}` step {}", r.tool, r.agent, r.run, r.step);
    match verdict {
        Verdict::Approve => {
            println!("approved {} ({call}): that exact call may go through once, until {}", r.id, rfc3339(r.expires_ms))
        }
        Verdict::Deny => println!("denied {} ({call})", r.id),
    }
    Ok(())
}

/// Runs `f` on an approval queue over the data directory's database, and shuts the audit writer
/// down (everything recorded) before returning. `None` when nothing was ever recorded there.
fn with_queue<T, F, Fut>(location: &Location, f: F) -> Result<Option<T>, Failure>
where
    F: FnOnce(Approvals) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApprovalError>>,
{
    let config = context::load_config(location)?;
    let db = context::database(&config);
    if !db.exists() {
        return Ok(None);
    }
    let settings = deciding_settings(&config);
    // Read-write: opening brings a database written by an earlier Custos up to this schema.
    let store = context::writer(&db)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let audit = AuditLog::start(Box::new(store)).map_err(Failure::runtime)?;
        let result = match Approvals::new(audit.clone(), &db, settings) {
            Ok(queue) => f(queue).await,
            Err(e) => Err(e),
        };
        audit.shutdown().await;
        result.map(Some).map_err(|e| refused(&e))
    })
}

/// The config's approval settings without webhooks: deciding never notifies, and an approver
/// need not be able to read the webhook secrets.
fn deciding_settings(config: &Config) -> custos_config::ApprovalSettings {
    let mut settings = config.approvals.clone();
    for group in &mut settings.groups {
        group.webhook = None;
    }
    settings
}

/// An approval error as an exit code: 1 when refused or failed, 2 when asked wrongly.
fn refused(e: &ApprovalError) -> Failure {
    match e {
        ApprovalError::ReasonRequired | ApprovalError::InvalidApprover { .. } => Failure::usage(e),
        _ => Failure::runtime(e),
    }
}

fn print_request(r: &ApprovalRequest) {
    let now = custos_gateway::now_ms();
    println!("approval   {}", r.id);
    println!("state      {}", r.state.name());
    println!("agent      {}", r.agent);
    if !r.principal.is_empty() {
        println!("principal  {}", r.principal.join(" -> "));
    }
    println!("run        {} (step {})", r.run, r.step);
    println!("tool       {}", r.tool);
    let arguments = serde_json::to_string_pretty(&r.arguments).unwrap_or_default();
    println!("arguments  {}", arguments.replace('\n', "\n           "));
    println!("policies   {}", r.policies.join(", "));
    println!("groups     {}", r.groups.join(", "));
    println!("digest     {}", r.digest);
    if let Some(d) = &r.descriptor_sha256 {
        println!("descriptor {d}");
    }
    println!("created    {}", rfc3339(r.created_ms));
    let left = r.expires_ms.saturating_sub(now);
    let when = if left > 0 { format!(" (in {})", span(left)) } else { String::new() };
    println!("expires    {}{when}", rfc3339(r.expires_ms));
    match &r.state {
        ApprovalState::Approved { by, at_ms, reason } | ApprovalState::Denied { by, at_ms, reason } => {
            println!("decided    by {by} at {}", rfc3339(*at_ms));
            if let Some(reason) = reason {
                println!("reason     {reason}");
            }
        }
        ApprovalState::Used { at_ms, approved_by } => {
            if let Some(by) = approved_by {
                println!("approved   by {by}");
            }
            println!("used       {}", rfc3339(*at_ms));
        }
        ApprovalState::Pending | ApprovalState::Expired => {}
    }
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A duration in the largest two units, e.g. `14m 59s`.
fn span(ms: i64) -> String {
    let secs = Duration::from_millis(u64::try_from(ms).unwrap_or(0)).as_secs();
    humantime::format_duration(Duration::from_secs(secs)).to_string().split(' ').take(2).collect::<Vec<_>>().join(" ")
}
