//! The agent registry: agents added at run time and every agent's API keys (hashes only).

use std::path::Path;

use custos_core::{Agent, AgentId};

use super::{read_error, write_error};
use crate::error::StoreError;
use crate::sql::{args, DbError, Row, Sql};
use crate::store::{AgentKeyRecord, AgentRecord};

pub(crate) fn issue_key_in(
    db: &mut dyn Sql,
    path: &Path,
    agent: &Agent,
    key: &AgentKeyRecord,
) -> Result<(), StoreError> {
    let groups = serde_json::to_string(&agent.groups).unwrap_or_else(|_| "[]".to_owned());
    // The first registration fixes owner and purpose; a new key does not rewrite them.
    db.execute(
        "INSERT INTO agents (id, owner, purpose, groups, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO NOTHING",
        &args![&agent.id.0, &agent.owner, &agent.purpose, &groups, key.created_ms],
    )
    .map_err(|e| write_error(path, e))?;
    let revoked = db
        .query_opt("SELECT revoked_ms FROM agents WHERE id = ?1", &args![&agent.id.0])
        .and_then(|row| row.map(|r| r.opt_int(0)).transpose())
        .map_err(|e| write_error(path, e))?;
    if let Some(Some(_)) = revoked {
        return Err(StoreError::InvalidEvent {
            reason: format!("agent `{}` is revoked; register it under a new id", agent.id),
        });
    }
    db.execute(
        "INSERT INTO agent_keys (key_id, agent, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
        &args![&key.key_id, &key.agent.0, &key.hash, key.created_ms],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

pub(crate) fn revoke_in(
    db: &mut dyn Sql,
    path: &Path,
    agent: &AgentId,
    key_id: Option<&str>,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let sql = match key_id {
        Some(_) => {
            "SELECT key_id FROM agent_keys WHERE agent = ?1 AND revoked_ms IS NULL AND key_id = ?2
             ORDER BY created_ms, key_id"
        }
        None => "SELECT key_id FROM agent_keys WHERE agent = ?1 AND revoked_ms IS NULL ORDER BY created_ms, key_id",
    };
    let rows = match key_id {
        Some(id) => db.query(sql, &args![&agent.0, id]),
        None => db.query(sql, &args![&agent.0]),
    }
    .map_err(|e| write_error(path, e))?;
    let ids = rows.iter().map(|r| r.text(0)).collect::<Result<Vec<_>, _>>().map_err(|e| write_error(path, e))?;
    for id in &ids {
        db.execute("UPDATE agent_keys SET revoked_ms = ?1 WHERE key_id = ?2", &args![now_ms, id])
            .map_err(|e| write_error(path, e))?;
    }
    if key_id.is_none() {
        // The whole agent: it stays revoked even if a key is issued by mistake later.
        let groups = "[]";
        db.execute(
            "INSERT INTO agents (id, owner, purpose, groups, created_ms) VALUES (?1, '', '', ?2, ?3)
             ON CONFLICT (id) DO NOTHING",
            &args![&agent.0, groups, now_ms],
        )
        .map_err(|e| write_error(path, e))?;
        db.execute("UPDATE agents SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL", &args![now_ms, &agent.0])
            .map_err(|e| write_error(path, e))?;
    }
    Ok(ids)
}

/// Every agent, or the one with id `id`: one query by primary key, as authentication runs it
/// on every request.
pub(crate) fn agents_in(db: &mut dyn Sql, path: &Path, id: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
    let rows = match id {
        Some(id) => {
            db.query("SELECT id, owner, purpose, groups, created_ms, revoked_ms FROM agents WHERE id = ?1", &args![id])
        }
        None => db.query("SELECT id, owner, purpose, groups, created_ms, revoked_ms FROM agents ORDER BY id", &[]),
    }
    .map_err(|e| read_error(path, e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = |row: &Row| {
            Ok::<_, DbError>((row.text(0)?, row.text(1)?, row.text(2)?, row.text(3)?, row.int(4)?, row.opt_int(5)?))
        };
        let (id, owner, purpose, groups, created_ms, revoked_ms) = record(row).map_err(|e| read_error(path, e))?;
        let groups = serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("agent `{id}` has groups that are not a json list"),
        })?;
        out.push(AgentRecord { agent: Agent { id: AgentId(id), owner, purpose, groups }, created_ms, revoked_ms });
    }
    Ok(out)
}

pub(crate) fn keys_in(db: &mut dyn Sql, path: &Path, key_id: Option<&str>) -> Result<Vec<AgentKeyRecord>, StoreError> {
    // Two statements, not one with `?1 IS NULL OR key_id = ?1`: SQLite cannot use the primary
    // key for that, and finding one key runs on every request an agent makes. Both are cached.
    let rows = match key_id {
        Some(id) => {
            db.query("SELECT key_id, agent, hash, created_ms, revoked_ms FROM agent_keys WHERE key_id = ?1", &args![id])
        }
        None => db.query(
            "SELECT key_id, agent, hash, created_ms, revoked_ms FROM agent_keys ORDER BY agent, created_ms, key_id",
            &[],
        ),
    }
    .map_err(|e| read_error(path, e))?;
    let record = |row: &Row| -> Result<AgentKeyRecord, DbError> {
        Ok(AgentKeyRecord {
            key_id: row.text(0)?,
            agent: AgentId(row.text(1)?),
            hash: row.text(2)?,
            created_ms: row.int(3)?,
            revoked_ms: row.opt_int(4)?,
        })
    };
    rows.iter().map(record).collect::<Result<Vec<_>, _>>().map_err(|e| read_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::super::SqlStore;
    use crate::conformance::on_both_stores;
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

    on_both_stores! {
        fn keys_are_issued_found_and_revoked_with_events_in_the_chain(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
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
}
