//! `custos report drift`: how each agent's access compares with its use, for access reviews.
//!
//! "Granted" is what the agent's policies may ever allow among the tools the inventory knows
//! (the same question the gateway asks to hide tools from `tools/list`); "used" is what the log
//! says the agent was allowed to call in the window. Their differences are the review's
//! candidates: access to remove, access used that policy no longer grants, a first use of a
//! tool that can change things, an agent with nobody accountable, an agent gone quiet.

use std::collections::{BTreeMap, BTreeSet};

use custos_config::Config;
use custos_core::{Agent, EventKind, ToolClass, ToolRef};
use custos_policy::{PolicyEngine, ToolInfo};
use custos_store::{AgentRegistry, EventQuery, SqliteStore, Store, ToolRecord};
use serde_json::{json, Value};

use super::DAY_MS;
use crate::cli::{Location, ReportCommand};
use crate::context;
use crate::Failure;

pub fn run(cmd: ReportCommand) -> Result<(), Failure> {
    match cmd {
        ReportCommand::Drift { location, days, json } => drift(&location, days, json),
    }
}

/// A first allowed call, ever, of a write or privileged tool by the agent, inside the window.
#[derive(Debug)]
struct FirstUse {
    tool: ToolRef,
    class: ToolClass,
    time_ms: i64,
}

/// The drift of one agent.
#[derive(Debug)]
struct AgentDrift {
    agent: Agent,
    /// `config` or `registry`.
    source: &'static str,
    granted: BTreeSet<ToolRef>,
    used: BTreeSet<ToolRef>,
    /// Used in the window but not granted by today's policies.
    used_not_granted_now: BTreeSet<ToolRef>,
    first_uses: Vec<FirstUse>,
    last_seen_ms: Option<i64>,
    inactive: bool,
}

impl AgentDrift {
    fn granted_unused(&self) -> Vec<&ToolRef> {
        self.granted.difference(&self.used).collect()
    }

    fn no_owner(&self) -> bool {
        self.agent.owner.trim().is_empty()
    }

    fn to_json(&self, days: u64) -> Value {
        json!({
            "agent": self.agent.id,
            "owner": self.agent.owner,
            "source": self.source,
            "days": days,
            "granted": self.granted,
            "used": self.used,
            "granted_unused": self.granted_unused(),
            "used_not_granted_now": self.used_not_granted_now,
            "first_uses": self.first_uses.iter().map(|f| json!({
                "tool": f.tool, "class": f.class, "time": super::rfc3339(f.time_ms), "time_ms": f.time_ms,
            })).collect::<Vec<_>>(),
            "no_owner": self.no_owner(),
            "last_seen": self.last_seen_ms.map(super::rfc3339),
            "last_seen_ms": self.last_seen_ms,
            "inactive": self.inactive,
        })
    }
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
    for (agent, source) in agents(&config, store.as_ref())? {
        let drift = match &store {
            Some(store) => agent_drift(&config, &engine, store, &tools, agent, source, since_ms)?,
            // Nothing recorded: everything granted is unused, and nobody was ever seen.
            None => {
                let granted = tools_granted(&config, &engine, &tools, &agent);
                AgentDrift {
                    agent,
                    source,
                    granted,
                    used: BTreeSet::new(),
                    used_not_granted_now: BTreeSet::new(),
                    first_uses: Vec::new(),
                    last_seen_ms: None,
                    inactive: true,
                }
            }
        };
        report.push(drift);
    }
    if json {
        for d in &report {
            println!("{}", d.to_json(days));
        }
    } else {
        print_report(&report, days);
    }
    Ok(())
}

/// Agents from the config, then those registered at run time, revoked ones left out: a revoked
/// agent has nothing left to review.
fn agents(config: &Config, store: Option<&SqliteStore>) -> Result<Vec<(Agent, &'static str)>, Failure> {
    let mut agents: Vec<(Agent, &'static str)> = config.agents.iter().map(|a| (a.clone(), "config")).collect();
    let registered = match store {
        Some(store) => store.agents().map_err(Failure::runtime)?,
        None => Vec::new(),
    };
    for r in registered {
        let declared = agents.iter().any(|(a, _)| a.id == r.agent.id);
        if r.revoked_ms.is_some() {
            agents.retain(|(a, _)| a.id != r.agent.id);
        } else if !declared {
            agents.push((r.agent, "registry"));
        }
    }
    Ok(agents)
}

/// The class the gateway gives `tool`, and whether `agent`'s policies may ever allow it.
fn grant(
    config: &Config,
    engine: &PolicyEngine,
    agent: &Agent,
    tool: &ToolRef,
    descriptor: Option<&Value>,
) -> (ToolClass, bool) {
    let class = super::tools::class_of(config, tool, descriptor);
    let annotations = descriptor.and_then(|d| d.get("annotations"));
    (class, engine.may_ever_allow(agent, &ToolInfo { tool, class, annotations }))
}

fn tools_granted(config: &Config, engine: &PolicyEngine, tools: &[ToolRecord], agent: &Agent) -> BTreeSet<ToolRef> {
    tools
        .iter()
        .filter(|t| grant(config, engine, agent, &t.tool, Some(&t.descriptor)).1)
        .map(|t| t.tool.clone())
        .collect()
}

fn agent_drift(
    config: &Config,
    engine: &PolicyEngine,
    store: &SqliteStore,
    tools: &[ToolRecord],
    agent: Agent,
    source: &'static str,
    since_ms: i64,
) -> Result<AgentDrift, Failure> {
    let granted = tools_granted(config, engine, tools, &agent);
    let allowed = |tool: Option<String>, since_ms: Option<i64>, limit: Option<usize>| EventQuery {
        agent: Some(agent.id.0.clone()),
        kind: Some(EventKind::CallDecided),
        decision: Some("allow".to_owned()),
        tool,
        since_ms,
        limit,
        ..EventQuery::default()
    };
    let mut used: BTreeMap<ToolRef, i64> = BTreeMap::new();
    for e in store.query(&allowed(None, Some(since_ms), None)).map_err(Failure::runtime)? {
        if let Some(tool) = e.event.tool {
            used.entry(tool).or_insert(e.event.time_ms);
        }
    }
    let descriptor = |tool: &ToolRef| tools.iter().find(|t| &t.tool == tool).map(|t| &t.descriptor);
    let mut used_not_granted_now = BTreeSet::new();
    let mut first_uses = Vec::new();
    for (tool, first_in_window_ms) in &used {
        // A tool used but not in the inventory (listed through no gateway that shares this
        // database) is still judged, with what the config alone says of it.
        let (class, may) = grant(config, engine, &agent, tool, descriptor(tool));
        if !may {
            used_not_granted_now.insert(tool.clone());
        }
        if class != ToolClass::Read {
            // The first allowed call ever: the earliest match, one indexed read.
            let first = store.query(&allowed(Some(tool.to_string()), None, Some(1))).map_err(Failure::runtime)?;
            let first_ms = first.first().map_or(*first_in_window_ms, |e| e.event.time_ms);
            if first_ms >= since_ms {
                first_uses.push(FirstUse { tool: tool.clone(), class, time_ms: first_ms });
            }
        }
    }
    let last = store
        .last(&EventQuery { agent: Some(agent.id.0.clone()), ..EventQuery::default() })
        .map_err(Failure::runtime)?;
    let last_seen_ms = last.map(|e| e.event.time_ms);
    Ok(AgentDrift {
        agent,
        source,
        granted,
        used: used.into_keys().collect(),
        used_not_granted_now,
        first_uses,
        last_seen_ms,
        inactive: last_seen_ms.is_none_or(|ms| ms < since_ms),
    })
}

fn print_report(report: &[AgentDrift], days: u64) {
    if report.is_empty() {
        eprintln!("custos: no agents: none declared in the config and none registered");
        return;
    }
    let list = |tools: Vec<&ToolRef>| {
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
