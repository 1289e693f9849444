//! `custos agents add / list / revoke`: agent identities and their API keys.
//!
//! An agent is declared in the config or registered here; either way its API keys live in the
//! store as hashes. A key is shown once, when it is issued.

use custos_auth::ApiKey;
use custos_core::{Agent, AgentId, EventKind, NewEvent};
use custos_store::{AgentKeyRecord, AgentRegistry, SqlStore};
use serde_json::json;

use crate::cli::{AgentsAddArgs, AgentsCommand};
use crate::context;
use crate::Failure;

pub fn run(cmd: AgentsCommand) -> Result<(), Failure> {
    match cmd {
        AgentsCommand::Add(args) => add(&args),
        AgentsCommand::List { location, json } => list(&location, json),
        AgentsCommand::Revoke { location, id, key } => revoke(&location, &id, key.as_deref()),
    }
}

/// Issues a new API key for `agent` (registering it if needed), recorded as
/// `agent.key_issued`; only the key's hash is stored.
pub(crate) fn issue_key(store: &mut SqlStore, agent: &Agent) -> Result<(ApiKey, AgentKeyRecord), Failure> {
    let key = ApiKey::generate().map_err(Failure::runtime)?;
    let now = custos_gateway::now_ms();
    let record = AgentKeyRecord {
        key_id: key.key_id().to_owned(),
        agent: agent.id.clone(),
        hash: custos_auth::KeyHasher::new(None).hash(&key).encode(),
        created_ms: now,
        revoked_ms: None,
    };
    let mut event = NewEvent::new(EventKind::AgentKeyIssued, now);
    event.agent = Some(agent.id.clone());
    event.detail = json!({ "key_id": record.key_id, "owner": agent.owner, "purpose": agent.purpose });
    store.issue_key(agent, &record, &event).map_err(Failure::usage)?;
    Ok((key, record))
}

fn add(args: &AgentsAddArgs) -> Result<(), Failure> {
    let config = context::load_config(&args.location)?;
    let mut store = context::open_for_writing(&config)?;
    let agent = match config.agent(&args.id) {
        Some(declared) => {
            if args.owner.is_some() || args.purpose.is_some() || !args.groups.is_empty() {
                return Err(Failure::usage(format!(
                    "agent `{}` is declared in `{}`: change its owner, purpose and groups there",
                    args.id,
                    config.path.display()
                )));
            }
            declared.clone()
        }
        None => {
            let registered = store.agents().map_err(Failure::runtime)?.into_iter().find(|r| r.agent.id.0 == args.id);
            match registered {
                Some(r) => r.agent,
                None => new_agent(args)?,
            }
        }
    };
    let (key, record) = issue_key(&mut store, &agent)?;
    // The key alone on stdout, so scripts can capture it; the advice on stderr.
    println!("{}", key.expose());
    eprintln!(
        "custos: issued key `{}` for agent `{}`; store it now: it is shown once and only its hash is kept",
        record.key_id, agent.id
    );
    Ok(())
}

fn new_agent(args: &AgentsAddArgs) -> Result<Agent, Failure> {
    let need = |value: &Option<String>, flag: &str| -> Result<String, Failure> {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(Failure::usage(format!(
                "agent `{}` is new: {flag} is required (every agent is accountable to someone)",
                args.id
            ))),
        }
    };
    if args.id.trim().is_empty() || args.id.chars().any(char::is_control) {
        return Err(Failure::usage(format!("`{}` is not an agent id", args.id.escape_debug())));
    }
    Ok(Agent {
        id: AgentId(args.id.clone()),
        owner: need(&args.owner, "--owner")?,
        purpose: need(&args.purpose, "--purpose")?,
        groups: args.groups.clone(),
    })
}

fn list(location: &crate::cli::Location, json: bool) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let db = context::database(&config);
    let (registered, keys) = if db.exists() {
        // Read-write: opening brings a database written by an earlier Custos up to this schema.
        let store = context::writer(&db)?;
        (store.agents().map_err(Failure::runtime)?, store.agent_keys().map_err(Failure::runtime)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut rows: Vec<(Agent, &str, Option<i64>)> = config.agents.iter().map(|a| (a.clone(), "config", None)).collect();
    for r in &registered {
        match rows.iter_mut().find(|(a, _, _)| a.id == r.agent.id) {
            Some(row) => row.2 = r.revoked_ms,
            None => rows.push((r.agent.clone(), "registry", r.revoked_ms)),
        }
    }
    for (agent, source, revoked) in rows {
        let mine: Vec<&AgentKeyRecord> = keys.iter().filter(|k| k.agent == agent.id).collect();
        let active: Vec<&str> = mine.iter().filter(|k| k.revoked_ms.is_none()).map(|k| k.key_id.as_str()).collect();
        if json {
            let v = json!({
                "id": agent.id, "owner": agent.owner, "purpose": agent.purpose, "groups": agent.groups,
                "source": source, "revoked": revoked.is_some(), "active_keys": active,
                "revoked_keys": mine.len() - active.len(),
            });
            println!("{v}");
        } else {
            let state = if revoked.is_some() { "revoked" } else { "active" };
            println!(
                "{:<20} {state:<8} {source:<8} owner={} keys={} ({} revoked) groups={}  {}",
                agent.id,
                agent.owner,
                active.len(),
                mine.len() - active.len(),
                agent.groups.join(","),
                agent.purpose,
            );
        }
    }
    Ok(())
}

fn revoke(location: &crate::cli::Location, id: &str, key: Option<&str>) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let mut store = context::open_for_writing(&config)?;
    let known =
        config.agent(id).is_some() || store.agents().map_err(Failure::runtime)?.iter().any(|r| r.agent.id.0 == id);
    if !known {
        return Err(Failure::usage(format!("unknown agent `{id}`")));
    }
    let now = custos_gateway::now_ms();
    let mut event = NewEvent::new(EventKind::AgentKeyRevoked, now);
    event.agent = Some(AgentId(id.to_owned()));
    event.detail = json!({ "scope": if key.is_some() { "key" } else { "agent" } });
    let key = key.map(|k| k.strip_prefix("cst_").unwrap_or(k));
    let revoked = store.revoke(&AgentId(id.to_owned()), key, &event).map_err(Failure::runtime)?;
    match (key, revoked.is_empty()) {
        (Some(k), true) => return Err(Failure::usage(format!("agent `{id}` has no active key `{k}`"))),
        (Some(_), false) => println!("revoked key {} of agent `{id}`", revoked.join(", ")),
        (None, _) => println!("revoked agent `{id}` and {} active keys", revoked.len()),
    }
    Ok(())
}
