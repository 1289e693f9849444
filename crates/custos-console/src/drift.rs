//! Access drift: how each agent's access compares with its use, for access reviews. Shared by
//! `custos report drift` and the console's agents page, so both say the same.
//!
//! "Granted" is what the agent's policies may ever allow among the tools the inventory knows
//! (the same question the gateway asks to hide tools from `tools/list`); "used" is what the log
//! says the agent was allowed to call in the window. Their differences are the review's
//! candidates: access to remove, access used that policy no longer grants, a first use of a
//! tool that can change things, an agent with nobody accountable, an agent gone quiet.

use std::collections::{BTreeMap, BTreeSet};

use custos_config::Config;
use custos_core::{Agent, EventKind, ToolClass, ToolDescriptor, ToolRef};
use custos_policy::{PolicyEngine, ToolInfo};
use custos_store::{AgentRegistry, EventQuery, SqlStore, Store, StoreError, ToolRecord};
use serde_json::Value;

/// A first allowed call, ever, of a write or privileged tool by the agent, inside the window.
#[derive(Debug)]
pub struct FirstUse {
    pub tool: ToolRef,
    pub class: ToolClass,
    pub time_ms: i64,
}

/// The drift of one agent.
#[derive(Debug)]
pub struct AgentDrift {
    pub agent: Agent,
    /// `config` or `registry`.
    pub source: &'static str,
    pub granted: BTreeSet<ToolRef>,
    pub used: BTreeSet<ToolRef>,
    /// Used in the window but not granted by today's policies.
    pub used_not_granted_now: BTreeSet<ToolRef>,
    pub first_uses: Vec<FirstUse>,
    pub last_seen_ms: Option<i64>,
    pub inactive: bool,
}

impl AgentDrift {
    /// Granted but not used in the window: candidates to remove.
    pub fn granted_unused(&self) -> Vec<&ToolRef> {
        self.granted.difference(&self.used).collect()
    }

    pub fn no_owner(&self) -> bool {
        self.agent.owner.trim().is_empty()
    }

    /// The drift of an agent when nothing is recorded: everything granted is unused, and nobody
    /// was ever seen.
    pub fn unrecorded(
        config: &Config,
        engine: &PolicyEngine,
        tools: &[ToolRecord],
        agent: Agent,
        source: &'static str,
    ) -> Self {
        let granted = tools_granted(config, engine, tools, &agent);
        Self {
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
}

/// Agents from the config, then those registered at run time, revoked ones left out: a revoked
/// agent has nothing left to review.
pub fn agents(config: &Config, store: Option<&SqlStore>) -> Result<Vec<(Agent, &'static str)>, StoreError> {
    let mut agents: Vec<(Agent, &'static str)> = config.agents.iter().map(|a| (a.clone(), "config")).collect();
    let registered = match store {
        Some(store) => store.agents()?,
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

/// The class the gateway gives `tool`: its server's classification of its descriptor, and
/// privileged when the config has no such server.
pub fn class_of(config: &Config, tool: &ToolRef, descriptor: Option<&Value>) -> ToolClass {
    let descriptor = descriptor.and_then(|d| ToolDescriptor::from_listing(tool.server(), d.clone()));
    config.server(tool.server()).map_or(ToolClass::Privileged, |s| s.classes.classify(tool.name(), descriptor.as_ref()))
}

/// The class the gateway gives `tool`, and whether `agent`'s policies may ever allow it.
fn grant(
    config: &Config,
    engine: &PolicyEngine,
    agent: &Agent,
    tool: &ToolRef,
    descriptor: Option<&Value>,
) -> (ToolClass, bool) {
    let class = class_of(config, tool, descriptor);
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

/// The drift of `agent` over the window from `since_ms`, `tools` being the inventory.
pub fn agent_drift(
    config: &Config,
    engine: &PolicyEngine,
    store: &dyn Store,
    tools: &[ToolRecord],
    agent: Agent,
    source: &'static str,
    since_ms: i64,
) -> Result<AgentDrift, StoreError> {
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
    for e in store.query(&allowed(None, Some(since_ms), None))? {
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
            let first = store.query(&allowed(Some(tool.to_string()), None, Some(1)))?;
            let first_ms = first.first().map_or(*first_in_window_ms, |e| e.event.time_ms);
            if first_ms >= since_ms {
                first_uses.push(FirstUse { tool: tool.clone(), class, time_ms: first_ms });
            }
        }
    }
    let last = store.last(&EventQuery { agent: Some(agent.id.0.clone()), ..EventQuery::default() })?;
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
