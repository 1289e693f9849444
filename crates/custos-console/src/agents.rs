//! Agents: who owns each, what it is for, its groups and keys, when it was last seen, and its
//! drift (tools granted but unused in the window), computed as `custos report drift` does.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_store::{AgentRegistry, SqlStore, Store, StoreError};

use crate::auth::Signed;
use crate::calls::{self, MAX_ROWS};
use crate::console::{now_ms, Console};
use crate::drift::{self, AgentDrift};
use crate::page::{self, Frame};

/// The review window when the query names none, as `custos report drift`.
const DEFAULT_DAYS: u64 = 30;
const DAY_MS: i64 = 86_400_000;

/// One key of an agent.
#[derive(Debug)]
pub struct KeyRow {
    pub id: String,
    pub created: String,
    pub revoked: String,
}

/// One agent.
#[derive(Debug)]
pub struct AgentRow {
    pub id: String,
    pub source: String,
    pub owner: String,
    pub purpose: String,
    pub groups: String,
    pub keys: Vec<KeyRow>,
    pub last_seen: String,
    pub revoked: bool,
    pub granted: usize,
    pub used: usize,
    pub unused: Vec<String>,
    pub not_granted_now: Vec<String>,
    pub first_uses: Vec<String>,
    pub inactive: bool,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    frame: Frame,
    rows: Vec<AgentRow>,
    days: u64,
}

/// `GET /console/agents?days=N`.
pub async fn agents(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let frame = Frame::signed_in(&session, "agents");
    let days = match params.get("days").map(|d| d.trim()).filter(|d| !d.is_empty()) {
        None => DEFAULT_DAYS,
        Some(d) => match d.parse::<u64>() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => {
                let bad =
                    calls::BadInput(format!("`days` must be a number from 1 to 3650, not `{}`", d.escape_debug()));
                return calls::bad_request(frame, bad);
            }
        },
    };
    let since_ms = now_ms().saturating_sub(i64::try_from(days).unwrap_or(0).saturating_mul(DAY_MS));
    match c.read(|store| rows(&c, store, since_ms)) {
        Ok(rows) => page::html(StatusCode::OK, &AgentsPage { frame, rows, days }),
        Err(e) => calls::unavailable(frame, &e),
    }
}

fn rows(c: &Console, store: &SqlStore, since_ms: i64) -> Result<Vec<AgentRow>, StoreError> {
    let tools = store.tools()?;
    let keys = store.agent_keys()?;
    let registered = store.agents()?;
    let key_rows = |id: &str| -> Vec<KeyRow> {
        keys.iter()
            .filter(|k| k.agent.0 == id)
            .map(|k| KeyRow {
                id: k.key_id.clone(),
                created: page::time(k.created_ms),
                revoked: k.revoked_ms.map_or_else(String::new, page::time),
            })
            .collect()
    };
    let mut out = Vec::new();
    for (agent, source) in drift::agents(&c.config, Some(store))?.into_iter().take(MAX_ROWS) {
        let d = drift::agent_drift(&c.config, &c.policy, store, &tools, agent, source, since_ms)?;
        out.push(row(&d, key_rows(&d.agent.id.0)));
    }
    // Revoked agents have no drift to review, but their keys and last use still matter.
    for r in registered.into_iter().filter(|r| r.revoked_ms.is_some()).take(MAX_ROWS.saturating_sub(out.len())) {
        let last = store.last(&custos_store::EventQuery { agent: Some(r.agent.id.0.clone()), ..Default::default() })?;
        let mut d = AgentDrift::unrecorded(&c.config, &c.policy, &[], r.agent, "registry");
        d.last_seen_ms = last.map(|e| e.event.time_ms);
        let mut row = row(&d, key_rows(&d.agent.id.0));
        row.revoked = true;
        out.push(row);
    }
    Ok(out)
}

fn row(d: &AgentDrift, keys: Vec<KeyRow>) -> AgentRow {
    let names = |tools: Vec<&custos_core::ToolRef>| tools.iter().map(ToString::to_string).collect::<Vec<_>>();
    AgentRow {
        id: d.agent.id.0.clone(),
        source: d.source.to_owned(),
        owner: if d.no_owner() { String::new() } else { d.agent.owner.clone() },
        purpose: d.agent.purpose.clone(),
        groups: d.agent.groups.join(", "),
        keys,
        last_seen: d.last_seen_ms.map_or_else(|| "never".to_owned(), page::time),
        revoked: false,
        granted: d.granted.len(),
        used: d.used.len(),
        unused: names(d.granted_unused()),
        not_granted_now: names(d.used_not_granted_now.iter().collect()),
        first_uses: d
            .first_uses
            .iter()
            .map(|f| format!("{} ({}, {})", f.tool, f.class, page::time(f.time_ms)))
            .collect(),
        inactive: d.inactive,
    }
}
