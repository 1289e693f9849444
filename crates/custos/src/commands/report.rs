//! `custos report drift / run / posture`: reports people read.
//!
//! - `drift` (here): how each agent's access compares with its use, for access reviews.
//! - `run` (`report/run.rs`): one run's timeline with the evidence that the log holds.
//! - `posture` (`report/posture.rs`): the controls this configuration switches on, mapped to
//!   the frameworks in `report/frameworks.rs`, with evidence counted from the log, and the gaps.
//!
//! The HTML pages are self-contained: one inline stylesheet (`templates/report.css`) admitted
//! by its digest in a Content-Security-Policy that allows nothing else, no script, nothing
//! fetched; every value escaped.
//!
//! Drift:
//! "Granted" is what the agent's policies may ever allow among the tools the inventory knows
//! (the same question the gateway asks to hide tools from `tools/list`); "used" is what the log
//! says the agent was allowed to call in the window. Their differences are the review's
//! candidates: access to remove, access used that policy no longer grants, a first use of a
//! tool that can change things, an agent with nobody accountable, an agent gone quiet.

use custos_console::drift::{self, AgentDrift};
use custos_store::Store;
use serde_json::{json, Value};

use super::DAY_MS;
use crate::cli::{Location, ReportCommand};
use crate::context;
use crate::Failure;

mod frameworks;
mod posture;
mod run;

/// The reports' stylesheet, inlined into each page.
pub const STYLE: &str = include_str!("../../templates/report.css");

pub fn run(cmd: ReportCommand) -> Result<(), Failure> {
    match cmd {
        ReportCommand::Drift { location, days, json } => drift(&location, days, json),
        ReportCommand::Run { location, run, format, out } => run::run(&location, &run, format, out.as_deref()),
        ReportCommand::Posture { location, format, out } => posture::run(&location, format, out.as_deref()),
    }
}

/// The Content-Security-Policy of a report page: its own stylesheet, by digest, and nothing
/// else (no script, no fetch, no form, no frame, no base).
pub fn page_csp() -> String {
    use base64::Engine as _;
    let digest = custos_core::Digest::of(STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_bytes());
    format!("default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; form-action 'none'")
}

/// Writes `text` to `out`, or to stdout.
pub fn write_out(out: Option<&std::path::Path>, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    match out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", path.display())))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(Failure::runtime)
        }
    }
}

fn to_json(d: &AgentDrift, days: u64) -> Value {
    json!({
        "agent": d.agent.id,
        "owner": d.agent.owner,
        "source": d.source,
        "days": days,
        "granted": d.granted,
        "used": d.used,
        "granted_unused": d.granted_unused(),
        "used_not_granted_now": d.used_not_granted_now,
        "first_uses": d.first_uses.iter().map(|f| json!({
            "tool": f.tool, "class": f.class, "time": super::rfc3339(f.time_ms), "time_ms": f.time_ms,
        })).collect::<Vec<_>>(),
        "no_owner": d.no_owner(),
        "last_seen": d.last_seen_ms.map(super::rfc3339),
        "last_seen_ms": d.last_seen_ms,
        "inactive": d.inactive,
    })
}

fn drift(location: &Location, days: u64, json: bool) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let engine = super::run::load_policy(&config)?;
    let store = super::open_existing(&config)?;
    let now = custos_gateway::now_ms();
    let window_ms = i64::try_from(days).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
    let since_ms = now.saturating_sub(window_ms);
    let tools = match &store {
        Some(store) => store.tools().map_err(Failure::runtime)?,
        None => Vec::new(),
    };
    let mut report = Vec::new();
    for (agent, source) in drift::agents(&config, store.as_ref()).map_err(Failure::runtime)? {
        let drift = match &store {
            Some(store) => drift::agent_drift(&config, &engine, store, &tools, agent, source, since_ms)
                .map_err(Failure::runtime)?,
            None => AgentDrift::unrecorded(&config, &engine, &tools, agent, source),
        };
        report.push(drift);
    }
    if json {
        for d in &report {
            println!("{}", to_json(d, days));
        }
    } else {
        print_report(&report, days);
    }
    Ok(())
}

fn print_report(report: &[AgentDrift], days: u64) {
    if report.is_empty() {
        eprintln!("custos: no agents: none declared in the config and none registered");
        return;
    }
    let list = |tools: Vec<&custos_core::ToolRef>| {
        if tools.is_empty() {
            "-".to_owned()
        } else {
            tools.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    for (i, d) in report.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let owner = if d.no_owner() { "NO OWNER" } else { d.agent.owner.as_str() };
        let seen = d.last_seen_ms.map_or_else(|| "never".to_owned(), super::rfc3339);
        println!("{} ({}, owner {owner}, last seen {seen})", d.agent.id, d.source);
        println!("  granted: {}, used in the last {days} days: {}", d.granted.len(), d.used.len());
        println!("  granted, unused (candidates to remove): {}", list(d.granted_unused()));
        println!("  used, no longer granted: {}", list(d.used_not_granted_now.iter().collect()));
        let firsts: Vec<String> =
            d.first_uses.iter().map(|f| format!("{} ({}, {})", f.tool, f.class, super::rfc3339(f.time_ms))).collect();
        println!(
            "  first uses of write or privileged tools: {}",
            if firsts.is_empty() { "-".to_owned() } else { firsts.join(", ") }
        );
        let mut warnings = Vec::new();
        if d.no_owner() {
            warnings.push("no owner: nobody is accountable for it".to_owned());
        }
        if d.inactive {
            warnings.push(format!("inactive: not seen in {days} days (offboarding candidate)"));
        }
        if !warnings.is_empty() {
            println!("  warnings: {}", warnings.join("; "));
        }
    }
}
