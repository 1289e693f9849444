//! Copying a whole store into an empty one (`custos store migrate`): every table row for row,
//! the log's events exactly as stored (their digests and bodies untouched, so the copy verifies
//! with the same head), secrets and signing keys still sealed. Then the copy is checked.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::StoreError;
use crate::sql::{Arg, DbError, Row, Sql, Value};
use crate::store::Store;
use crate::{SqlStore, VerifyReport};

/// Rows per multi-row `INSERT`: few round trips to a remote server, statements of a bounded
/// size.
const ROWS_PER_INSERT: usize = 100;
/// Events read from the source at a time: the log is copied without holding it in memory.
const EVENTS_PER_PAGE: usize = 10_000;

/// The tables beside the log, each with its columns and an order that makes the copy keep the
/// order a query of the source would give.
const TABLES: [(&str, &str, &str); 9] = [
    ("agents", "id, owner, purpose, groups, created_ms, revoked_ms", "id"),
    ("agent_keys", "key_id, agent, hash, created_ms, revoked_ms", "key_id"),
    ("tools", "tool, digest, descriptor, first_seen_ms, last_seen_ms", "tool"),
    (
        "approvals",
        "id, digest, status, agent, run, step, tool, created_ms, expires_ms, request, decided_by, decided_ms, reason, used_ms",
        "created_ms, id",
    ),
    ("secrets", "name, sealed, fingerprint, created_ms, updated_ms", "name"),
    // Inserted in the order they were added, so ties of `created_ms` keep their order.
    (
        "signing_keys",
        "kid, algorithm, sealed_private, public_jwk, created_ms, retired_ms, publish_until_ms",
        "created_ms, INSERTION",
    ),
    ("revoked_tokens", "jti, revoked_ms, expires_ms", "jti"),
    ("tool_pins", "tool, digest, descriptor, pinned_ms, source, pinned_by, flagged_digest", "tool"),
    ("credential_uses", "credential, server, agent, fingerprint, uses, first_ms, last_ms", "credential, server, agent"),
];

const EVENT_COLUMNS: &str = "seq, hash, body, kind, time_ms, agent, run, step, tool, decision";

/// What [`SqlStore::copy_into`] copied, checked against the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Events in the log, and its head digest (hex), the same in both.
    pub events: u64,
    pub head: Option<String>,
    /// Rows of each table beside the log, by table name.
    pub rows: Vec<(&'static str, u64)>,
}

impl Value {
    fn as_arg(&self) -> Arg<'_> {
        match self {
            Value::Null | Value::Other => Arg::Null,
            Value::Int(n) => Arg::Int(*n),
            Value::Text(s) => Arg::Text(s),
            Value::Blob(b) => Arg::Blob(b),
        }
    }
}

impl SqlStore {
    /// Copies everything this store holds into `target`, which must be empty, in one
    /// transaction of the target; then checks that the copy verifies, has the same head and
    /// the same number of rows in every table.
    ///
    /// Refused, with nothing written, when this log does not verify (a damaged log is not
    /// carried over as if it were sound) or when `target` already holds anything.
    pub fn copy_into(&self, target: &mut SqlStore) -> Result<CopyReport, StoreError> {
        let report = self.verify()?;
        let VerifyReport::Ok { count, head } = report else {
            return Err(self.refused(format!("its log does not verify ({report:?}); run `custos audit verify`")));
        };
        let counts = self.reading(|db, path| table_counts(db, path))?;
        target.in_transaction(|to, to_path| {
            let present = table_counts(to, to_path)?;
            if let Some((table, n)) = present.iter().find(|(_, n)| *n > 0) {
                return Err(StoreError::Write {
                    path: to_path.to_owned(),
                    reason: format!("the target is not empty: `{table}` has {n} rows"),
                });
            }
            let insertion = self.reading(|db, _| Ok(db.insertion_order()))?;
            for (table, columns, order) in TABLES {
                let order = order.replace("INSERTION", insertion);
                let rows = self.reading(|db, path| {
                    db.query(&format!("SELECT {columns} FROM {table} ORDER BY {order}"), &[])
                        .map_err(|e| read_failure(path, &e))
                })?;
                insert(to, to_path, table, columns, &rows)?;
            }
            let mut after = 0_i64;
            loop {
                let page = self.reading(|db, path| {
                    db.query(
                        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                        &[Arg::Int(after), Arg::Int(i64::try_from(EVENTS_PER_PAGE).unwrap_or(i64::MAX))],
                    )
                    .map_err(|e| read_failure(path, &e))
                })?;
                let Some(last) = page.last() else { break };
                after = last.int(0).map_err(|e| read_failure(to_path, &e))?;
                insert(to, to_path, "events", EVENT_COLUMNS, &page)?;
            }
            Ok(())
        })?;
        let copied = target.verify()?;
        let copied_counts = target.reading(|db, path| table_counts(db, path))?;
        match copied {
            VerifyReport::Ok { count: n, head: h } if n == count && h == head && copied_counts == counts => {}
            other => {
                return Err(StoreError::Internal {
                    reason: format!(
                        "the copy does not match its source: {other:?}, rows {copied_counts:?} vs {counts:?}"
                    ),
                })
            }
        }
        Ok(CopyReport { events: count, head: head.map(|h| h.to_hex()), rows: counts })
    }

    fn refused(&self, reason: String) -> StoreError {
        StoreError::Read { path: self.path().to_owned(), reason: format!("cannot copy this store: {reason}") }
    }
}

fn read_failure(path: &Path, e: &DbError) -> StoreError {
    StoreError::Read { path: path.to_owned(), reason: e.to_string() }
}

/// Rows of every table beside the log, in [`TABLES`] order.
fn table_counts(db: &mut dyn Sql, path: &Path) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let mut out = Vec::with_capacity(TABLES.len());
    for (table, _, _) in TABLES {
        let n = db
            .query_opt(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .and_then(|row| row.map_or(Ok(0), |r| r.int(0)))
            .map_err(|e| read_failure(path, &e))?;
        out.push((table, u64::try_from(n).unwrap_or(0)));
    }
    let events = db
        .query_opt("SELECT COUNT(*) FROM events", &[])
        .and_then(|row| row.map_or(Ok(0), |r| r.int(0)))
        .map_err(|e| read_failure(path, &e))?;
    out.push(("events", u64::try_from(events).unwrap_or(0)));
    Ok(out)
}

/// Inserts `rows` into `table`, [`ROWS_PER_INSERT`] per statement.
fn insert(db: &mut dyn Sql, path: &Path, table: &str, columns: &str, rows: &[Row]) -> Result<(), StoreError> {
    let width = columns.split(',').count();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
        let mut args = Vec::with_capacity(chunk.len() * width);
        for (i, row) in chunk.iter().enumerate() {
            if row.0.len() != width {
                return Err(StoreError::Internal { reason: format!("a `{table}` row has {} columns", row.0.len()) });
            }
            let marks: Vec<String> = (1..=width).map(|c| format!("?{}", i * width + c)).collect();
            let _ = write!(sql, "{}({})", if i == 0 { "" } else { ", " }, marks.join(", "));
            args.extend(row.0.iter().map(Value::as_arg));
        }
        db.execute(&sql, &args)
            .map_err(|e| StoreError::Write { path: path.to_owned(), reason: format!("copying `{table}`: {e}") })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use custos_core::{Agent, AgentId, EventKind, NewEvent, RunId, ToolDescriptor, ToolRef};
    use serde_json::json;

    use super::*;
    use crate::approvals::{ApprovalQuery, ApprovalRecord, ApprovalStatus, ApprovalWrite};
    use crate::conformance::{on_both_stores, Fresh};
    use crate::credentials::{SigningKeyRecord, StoredSecret};
    use crate::store::{AgentKeyRecord, AgentRegistry, ApprovalStore, CredentialStore, EventQuery, ToolPins};

    /// Puts something in every table: agents and keys, a secret, two signing keys added in the
    /// same millisecond, a revoked token, tools and their pins (one quarantined), an approval,
    /// events naming credentials.
    pub(crate) fn populate(store: &mut SqlStore) {
        let agent = Agent {
            id: AgentId("bot".into()),
            owner: "o@example.com".into(),
            purpose: "tests".into(),
            groups: vec!["ops".into()],
        };
        let key = AgentKeyRecord {
            key_id: "k1".into(),
            agent: agent.id.clone(),
            hash: format!("sha256:{}", "0".repeat(64)),
            created_ms: 1,
            revoked_ms: None,
        };
        store.issue_key(&agent, &key, &NewEvent::new(EventKind::AgentKeyIssued, 1)).unwrap();
        let secret = StoredSecret {
            name: "api".into(),
            sealed: vec![0, 1, 2, 255],
            fingerprint: "fp".into(),
            created_ms: 2,
            updated_ms: 2,
        };
        store.put_secret(&secret, &NewEvent::new(EventKind::SecretSet, 2)).unwrap();
        for kid in ["z-first", "a-second"] {
            let key = SigningKeyRecord {
                kid: kid.into(),
                algorithm: "EdDSA".into(),
                sealed_private: vec![7; 32],
                public_jwk: json!({"kty": "OKP", "kid": kid}),
                created_ms: 3,
                retired_ms: None,
                publish_until_ms: None,
            };
            store.add_signing_key(&key, 10, &[NewEvent::new(EventKind::SigningKeyCreated, 3)]).unwrap();
        }
        store.revoke_token("jti-1", Some(i64::MAX), &NewEvent::new(EventKind::TokenRevoked, 4)).unwrap();
        let template = NewEvent::new(EventKind::ToolSeen, 5);
        let listed = |description: &str| {
            ["read", "write"]
                .map(|name| {
                    ToolDescriptor::from_listing("files", json!({"name": name, "description": description})).unwrap()
                })
                .to_vec()
        };
        store.observe_tools(&listed("v1"), &template).unwrap();
        store.observe_tools(&listed("v2"), &NewEvent { time_ms: 6, ..template }).unwrap();
        let approval = ApprovalRecord {
            id: "ap-1".into(),
            digest: "d".repeat(64),
            agent: agent.id.clone(),
            principal: vec!["alice".into()],
            run: RunId("run-1".into()),
            step: 2,
            tool: ToolRef::new("files", "write").unwrap(),
            descriptor_sha256: None,
            arguments: json!({"path": "/tmp/x"}),
            policies: vec!["p".into()],
            groups: vec!["ops".into()],
            created_ms: 7,
            expires_ms: 1_000,
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_ms: None,
            reason: None,
            used_ms: None,
        };
        store.write_approval(&ApprovalWrite::Request(Box::new(approval))).unwrap();
        let mut call = NewEvent::new(EventKind::CallFinished, 8);
        call.agent = Some(agent.id);
        call.tool = Some(ToolRef::new("files", "read").unwrap());
        call.detail = json!({"credentials": [{"name": "api", "fingerprint": "fp"}]});
        store.append(&[call]).unwrap();
    }

    /// Every read of `a` and `b` agrees.
    pub(crate) fn assert_same(a: &SqlStore, b: &SqlStore) {
        assert_eq!(a.query(&EventQuery::default()).unwrap(), b.query(&EventQuery::default()).unwrap());
        assert_eq!(a.head().unwrap(), b.head().unwrap());
        assert_eq!(a.agents().unwrap(), b.agents().unwrap());
        assert_eq!(a.agent_keys().unwrap(), b.agent_keys().unwrap());
        assert_eq!(a.tools().unwrap(), b.tools().unwrap());
        assert_eq!(a.pins().unwrap(), b.pins().unwrap());
        assert!(a.secrets().unwrap() == b.secrets().unwrap());
        assert!(a.signing_keys().unwrap() == b.signing_keys().unwrap());
        assert_eq!(a.is_token_revoked("jti-1").unwrap(), b.is_token_revoked("jti-1").unwrap());
        let all = ApprovalQuery { status: None, now_ms: 0, limit: None };
        assert_eq!(a.approvals(&all).unwrap(), b.approvals(&all).unwrap());
        assert_eq!(a.credential_uses().unwrap(), b.credential_uses().unwrap());
    }

    /// `custos store migrate`'s case: an embedded deployment carried into PostgreSQL.
    #[test]
    fn an_embedded_store_is_copied_into_postgres_whole() {
        let (file, pg) = (Fresh::sqlite(), Fresh::postgres());
        let mut source = SqlStore::open(&file.at).unwrap();
        populate(&mut source);
        let mut target = SqlStore::open(&pg.at).unwrap();
        source.copy_into(&mut target).unwrap();
        assert_same(&source, &target);
        assert!(target.verify().unwrap().is_ok());
    }

    #[test]
    fn a_log_that_does_not_verify_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let mut source = SqlStore::open(&path).unwrap();
        populate(&mut source);
        drop(source);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE events SET time_ms = time_ms + 1 WHERE seq = 3", []).unwrap();
        drop(conn);
        let source = SqlStore::open(&path).unwrap();
        let mut target = SqlStore::open(dir.path().join("target.db")).unwrap();
        let err = source.copy_into(&mut target).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
        assert!(target.query(&EventQuery::default()).unwrap().is_empty());
    }

    on_both_stores! {
        fn a_copy_holds_every_table_and_the_same_verifiable_log(path: DbLocation) {
            let mut source = SqlStore::open(&path).unwrap();
            populate(&mut source);
            let other = Fresh::like(&path);
            let mut target = SqlStore::open(&other.at).unwrap();
            let report = source.copy_into(&mut target).unwrap();
            assert_eq!(report.events, source.query(&EventQuery::default()).unwrap().len() as u64);
            assert_eq!(report.head, source.head().unwrap().map(|(_, h)| h.to_hex()));
            assert!(report.rows.iter().filter(|(t, _)| *t != "events").all(|(_, n)| *n > 0), "{report:?}");
            assert_same(&source, &target);
            let keys: Vec<String> = target.signing_keys().unwrap().into_iter().map(|k| k.kid).collect();
            assert_eq!(keys, ["z-first", "a-second"], "ties keep the order they were added in");
            // The copy goes on: the next event chains to the copied head.
            target.append(&[NewEvent::new(EventKind::CallRequested, 9)]).unwrap();
            assert!(target.verify().unwrap().is_ok());
        }

        fn a_target_that_holds_anything_is_refused_and_left_as_it_was(path: DbLocation) {
            let mut source = SqlStore::open(&path).unwrap();
            populate(&mut source);
            let other = Fresh::like(&path);
            let mut target = SqlStore::open(&other.at).unwrap();
            target.append(&[NewEvent::new(EventKind::CallRequested, 1)]).unwrap();
            let err = source.copy_into(&mut target).unwrap_err().to_string();
            assert!(err.contains("not empty") && err.contains("`events` has 1 rows"), "{err}");
            assert_eq!(target.query(&EventQuery::default()).unwrap().len(), 1);
        }
    }
}
