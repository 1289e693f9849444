//! The agent registry: agents added at run time and every agent's API keys (hashes only).

use std::path::Path;

use custos_core::{Agent, AgentId};
use rusqlite::{params, Connection, OptionalExtension};

use super::{read_error, write_error};
use crate::error::StoreError;
use crate::store::{AgentKeyRecord, AgentRecord};

pub(super) fn issue_key_in(
    conn: &Connection,
    path: &Path,
    agent: &Agent,
    key: &AgentKeyRecord,
) -> Result<(), StoreError> {
    let groups = serde_json::to_string(&agent.groups).unwrap_or_else(|_| "[]".to_owned());
    // The first registration fixes owner and purpose; a new key does not rewrite them.
    conn.execute(
        "INSERT OR IGNORE INTO agents (id, owner, purpose, groups, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![agent.id.0, agent.owner, agent.purpose, groups, key.created_ms],
    )
    .map_err(|e| write_error(path, e))?;
    let revoked: Option<Option<i64>> = conn
        .query_row("SELECT revoked_ms FROM agents WHERE id = ?1", [&agent.id.0], |row| row.get(0))
        .optional()
        .map_err(|e| write_error(path, e))?;
    if let Some(Some(_)) = revoked {
        return Err(StoreError::InvalidEvent {
            reason: format!("agent `{}` is revoked; register it under a new id", agent.id),
        });
    }
    conn.execute(
        "INSERT INTO agent_keys (key_id, agent, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![key.key_id, key.agent.0, key.hash, key.created_ms],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

pub(super) fn revoke_in(
    conn: &Connection,
    path: &Path,
    agent: &AgentId,
    key_id: Option<&str>,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT key_id FROM agent_keys WHERE agent = ?1 AND revoked_ms IS NULL AND (?2 IS NULL OR key_id = ?2)
             ORDER BY created_ms, key_id",
        )
        .map_err(|e| write_error(path, e))?;
    let ids = stmt
        .query_map(params![agent.0, key_id], |row| row.get::<_, String>(0))
        .map_err(|e| write_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| write_error(path, e))?;
    for id in &ids {
        conn.execute("UPDATE agent_keys SET revoked_ms = ?1 WHERE key_id = ?2", params![now_ms, id])
            .map_err(|e| write_error(path, e))?;
    }
    if key_id.is_none() {
        // The whole agent: it stays revoked even if a key is issued by mistake later.
        let groups = "[]";
        conn.execute(
            "INSERT OR IGNORE INTO agents (id, owner, purpose, groups, created_ms) VALUES (?1, '', '', ?2, ?3)",
            params![agent.0, groups, now_ms],
        )
        .map_err(|e| write_error(path, e))?;
        conn.execute(
            "UPDATE agents SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL",
            params![now_ms, agent.0],
        )
        .map_err(|e| write_error(path, e))?;
    }
    Ok(ids)
}

/// Every agent, or the one with id `id`: one query by primary key, as authentication runs it
/// on every request.
pub(super) fn agents_in(conn: &Connection, path: &Path, id: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
    let sql = match id {
        Some(_) => "SELECT id, owner, purpose, groups, created_ms, revoked_ms FROM agents WHERE id = ?1",
        None => "SELECT id, owner, purpose, groups, created_ms, revoked_ms FROM agents ORDER BY id",
    };
    let mut stmt = conn.prepare_cached(sql).map_err(|e| read_error(path, e))?;
    let columns = |row: &rusqlite::Row<'_>| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, Option<i64>>(5)?,
        ))
    };
    let rows = match id {
        Some(id) => stmt.query_map([id], columns),
        None => stmt.query_map([], columns),
    }
    .map_err(|e| read_error(path, e))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, owner, purpose, groups, created_ms, revoked_ms) = row.map_err(|e| read_error(path, e))?;
        let groups = serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("agent `{id}` has groups that are not a json list"),
        })?;
        out.push(AgentRecord { agent: Agent { id: AgentId(id), owner, purpose, groups }, created_ms, revoked_ms });
    }
    Ok(out)
}

pub(super) fn keys_in(conn: &Connection, path: &Path, key_id: Option<&str>) -> Result<Vec<AgentKeyRecord>, StoreError> {
    // Two statements, not one with `?1 IS NULL OR key_id = ?1`: SQLite cannot use the primary
    // key for that, and finding one key runs on every request an agent makes. Both are cached.
    let sql = match key_id {
        Some(_) => "SELECT key_id, agent, hash, created_ms, revoked_ms FROM agent_keys WHERE key_id = ?1",
        None => "SELECT key_id, agent, hash, created_ms, revoked_ms FROM agent_keys ORDER BY agent, created_ms, key_id",
    };
    let mut stmt = conn.prepare_cached(sql).map_err(|e| read_error(path, e))?;
    let record = |row: &rusqlite::Row<'_>| {
        Ok(AgentKeyRecord {
            key_id: row.get(0)?,
            agent: AgentId(row.get(1)?),
            hash: row.get(2)?,
            created_ms: row.get(3)?,
            revoked_ms: row.get(4)?,
        })
    };
    let rows = match key_id {
        Some(id) => stmt.query_map([id], record),
        None => stmt.query_map([], record),
    }
    .map_err(|e| read_error(path, e))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| read_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::{AgentKeyRecord, AgentRegistry, Store};
    use custos_core::{Agent, AgentId, EventKind, NewEvent};

    fn agent(id: &str) -> Agent {
        Agent { id: AgentId(id.into()), owner: "o@example.com".into(), purpose: "p".into(), groups: vec!["g".into()] }
    }

    fn key(id: &str, agent: &str) -> AgentKeyRecord {
        AgentKeyRecord {
            key_id: id.into(),
            agent: AgentId(agent.into()),
            hash: format!("sha256:{}", "0".repeat(64)),
            created_ms: 1,
            revoked_ms: None,
        }
    }

    #[test]
    fn keys_are_issued_found_and_revoked_with_events_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("custos.db")).unwrap();
        let issued = NewEvent::new(EventKind::AgentKeyIssued, 1);
        store.issue_key(&agent("a"), &key("k1", "a"), &issued).unwrap();
        store.issue_key(&agent("a"), &key("k2", "a"), &issued).unwrap();
        store.issue_key(&agent("b"), &key("k3", "b"), &issued).unwrap();
        assert_eq!(store.agents().unwrap().len(), 2);
        assert_eq!(store.find_key("k2").unwrap().unwrap().agent.0, "a");
        assert!(store.find_key("nope").unwrap().is_none());

        let revoked = NewEvent::new(EventKind::AgentKeyRevoked, 2);
        assert_eq!(store.revoke(&AgentId("a".into()), Some("k1"), &revoked).unwrap(), ["k1"]);
        assert!(store.revoke(&AgentId("a".into()), Some("k1"), &revoked).unwrap().is_empty(), "twice is a no-op");
        assert_eq!(store.find_key("k1").unwrap().unwrap().revoked_ms, Some(2));
        assert_eq!(store.find_key("k2").unwrap().unwrap().revoked_ms, None);

        // Revoking the agent revokes its remaining keys and the agent itself.
        assert_eq!(store.revoke(&AgentId("a".into()), None, &revoked).unwrap(), ["k2"]);
        let a = store.agents().unwrap().into_iter().find(|r| r.agent.id.0 == "a").unwrap();
        assert_eq!(a.revoked_ms, Some(2));
        assert_eq!(store.find_agent(&AgentId("a".into())).unwrap(), Some(a));
        let b = store.find_agent(&AgentId("b".into())).unwrap().unwrap();
        assert_eq!((b.agent, b.revoked_ms), (agent("b"), None));
        assert!(store.find_agent(&AgentId("nope".into())).unwrap().is_none());
        assert!(store.issue_key(&agent("a"), &key("k4", "a"), &issued).is_err(), "a revoked agent gets no new key");

        let events = store.query(&Default::default()).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["agent.key_issued", "agent.key_issued", "agent.key_issued", "agent.key_revoked", "agent.key_revoked"]
        );
        assert_eq!(events[4].event.detail["key_ids"], serde_json::json!(["k2"]));
        assert!(store.verify().unwrap().is_ok());
    }
}
