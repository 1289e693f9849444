//! The `approvals` table: each change made together with its event, in the caller's write
//! transaction (`BEGIN IMMEDIATE`), so a state check and the change it allows cannot be split by
//! another writer, in this process or another.

use std::path::Path;

use custos_core::{AgentId, EventKind, NewEvent, RunId};
use serde_json::json;

use super::{append_in, write_error};
use crate::approvals::{
    ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalRefusal, ApprovalStatus, ApprovalWrite,
};
use crate::error::StoreError;
use crate::sql::{args, Arg, DbError, Row, Sql};

const COLUMNS: &str = "id, digest, status, agent, run, step, tool, created_ms, expires_ms, request, decided_by, \
                       decided_ms, reason, used_ms";

/// Applies one approval write inside the caller's write transaction.
pub(crate) fn write_in(db: &mut dyn Sql, path: &Path, write: &ApprovalWrite) -> Result<ApprovalOutcome, StoreError> {
    match write {
        ApprovalWrite::Request(record) => request_in(db, path, record),
        ApprovalWrite::Decide { id, approver, identity, approve, reason, now_ms } => {
            let who = Who { approver, identity };
            decide_in(db, path, id, &who, *approve, reason.as_deref(), *now_ms)
        }
        ApprovalWrite::Consume { id, digest, now_ms } => consume_in(db, path, id, digest, *now_ms),
        ApprovalWrite::Refuse { id, approver, identity, reason, now_ms } => {
            let record = get_in(db, path, id, write_error)?;
            refuse(db, path, record.as_ref(), id, &Who { approver, identity }, reason, *now_ms)?;
            Ok(ApprovalOutcome::Refused { record, refusal: ApprovalRefusal::Rule })
        }
        ApprovalWrite::Expire { id, now_ms } => match get_in(db, path, id, write_error)? {
            None => Ok(ApprovalOutcome::Refused { record: None, refusal: ApprovalRefusal::Unknown }),
            Some(mut record) => {
                expire_if_due(db, path, &mut record, *now_ms)?;
                Ok(ApprovalOutcome::Checked(record))
            }
        },
    }
}

fn request_in(db: &mut dyn Sql, path: &Path, record: &ApprovalRecord) -> Result<ApprovalOutcome, StoreError> {
    if record.status != ApprovalStatus::Pending {
        return Err(StoreError::InvalidEvent { reason: "a new approval request must be pending".into() });
    }
    let now = record.created_ms;
    let open = select(
        db,
        path,
        "WHERE digest = ?1 AND status IN ('pending', 'approved') ORDER BY created_ms DESC, id",
        &args![&record.digest],
        write_error,
    )?;
    let mut found = None;
    for mut existing in open {
        if expire_if_due(db, path, &mut existing, now)? {
            continue;
        }
        found.get_or_insert(existing);
    }
    if let Some(existing) = found {
        return Ok(ApprovalOutcome::Requested { record: existing, created: false });
    }
    let request = serde_json::to_string(&json!({
        "principal": record.principal,
        "descriptor_sha256": record.descriptor_sha256,
        "arguments": record.arguments,
        "policies": record.policies,
        "groups": record.groups,
    }))
    .map_err(|e| StoreError::InvalidEvent { reason: format!("approval request cannot be stored: {e}") })?;
    let step = i64::try_from(record.step)
        .map_err(|_| StoreError::InvalidEvent { reason: format!("step {} is out of range", record.step) })?;
    db.execute(
        "INSERT INTO approvals (id, digest, status, agent, run, step, tool, created_ms, expires_ms, request)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &args![
            &record.id,
            &record.digest,
            &record.agent.0,
            &record.run.0,
            step,
            &record.tool.to_string(),
            record.created_ms,
            record.expires_ms,
            &request
        ],
    )
    .map_err(|e| write_error(path, e))?;
    append_in(db, path, &[event(EventKind::ApprovalRequested, Some(record), now, record.request_detail())])?;
    Ok(ApprovalOutcome::Requested { record: record.clone(), created: true })
}

/// Who decides: the name compared with group members, and how it was established.
struct Who<'a> {
    approver: &'a str,
    identity: &'a serde_json::Value,
}

fn decide_in(
    db: &mut dyn Sql,
    path: &Path,
    id: &str,
    who: &Who<'_>,
    approve: bool,
    reason: Option<&str>,
    now: i64,
) -> Result<ApprovalOutcome, StoreError> {
    let Some(mut record) = get_in(db, path, id, write_error)? else {
        refuse(db, path, None, id, who, "unknown approval", now)?;
        return Ok(ApprovalOutcome::Refused { record: None, refusal: ApprovalRefusal::Unknown });
    };
    if expire_if_due(db, path, &mut record, now)? || record.status == ApprovalStatus::Expired {
        refuse(db, path, Some(&record), id, who, "expired", now)?;
        return Ok(ApprovalOutcome::Refused { record: Some(record), refusal: ApprovalRefusal::Expired });
    }
    if record.status != ApprovalStatus::Pending {
        let why = format!("already {}", record.status);
        refuse(db, path, Some(&record), id, who, &why, now)?;
        return Ok(ApprovalOutcome::Refused { record: Some(record), refusal: ApprovalRefusal::NotPending });
    }
    let status = if approve { ApprovalStatus::Approved } else { ApprovalStatus::Denied };
    // INVARIANT: the status condition repeats the check above inside the same write
    // transaction; it can only fail if the caller broke the transaction contract.
    let changed = db
        .execute(
            "UPDATE approvals SET status = ?2, decided_by = ?3, decided_ms = ?4, reason = ?5
             WHERE id = ?1 AND status = 'pending'",
            &args![id, status.as_str(), who.approver, now, reason],
        )
        .map_err(|e| write_error(path, e))?;
    if changed != 1 {
        return Err(StoreError::Internal { reason: format!("approval `{id}` changed during its decision") });
    }
    record.status = status;
    record.decided_by = Some(who.approver.to_owned());
    record.decided_ms = Some(now);
    record.reason = reason.map(str::to_owned);
    let kind = if approve { EventKind::ApprovalApproved } else { EventKind::ApprovalDenied };
    let detail = json!({
        "id": id, "digest": record.digest, "approver": who.approver, "identity": who.identity, "reason": reason,
    });
    append_in(db, path, &[event(kind, Some(&record), now, detail)])?;
    Ok(ApprovalOutcome::Decided(record))
}

fn consume_in(db: &mut dyn Sql, path: &Path, id: &str, digest: &str, now: i64) -> Result<ApprovalOutcome, StoreError> {
    // Appends `approval.replay_refused` for this attempt.
    let replay = |db: &mut dyn Sql, record: Option<&ApprovalRecord>, reason: &str| {
        let detail = json!({ "id": id, "presented_digest": digest, "reason": reason });
        append_in(db, path, &[event(EventKind::ApprovalReplayRefused, record, now, detail)]).map(|_| ())
    };
    let Some(mut record) = get_in(db, path, id, write_error)? else {
        replay(db, None, "unknown approval")?;
        return Ok(ApprovalOutcome::Refused { record: None, refusal: ApprovalRefusal::Unknown });
    };
    expire_if_due(db, path, &mut record, now)?;
    let refusal = match record.status {
        ApprovalStatus::Used => Some((ApprovalRefusal::Replayed, "already used".to_owned())),
        ApprovalStatus::Expired => Some((ApprovalRefusal::Expired, "expired".to_owned())),
        ApprovalStatus::Pending | ApprovalStatus::Denied => {
            Some((ApprovalRefusal::NotPending, format!("not approved ({})", record.status)))
        }
        ApprovalStatus::Approved if record.digest != digest => {
            Some((ApprovalRefusal::Mismatch, "the call does not match the approved digest".to_owned()))
        }
        ApprovalStatus::Approved => None,
    };
    if let Some((refusal, reason)) = refusal {
        replay(db, Some(&record), &reason)?;
        return Ok(ApprovalOutcome::Refused { record: Some(record), refusal });
    }
    let changed = db
        .execute(
            "UPDATE approvals SET status = 'used', used_ms = ?2 WHERE id = ?1 AND status = 'approved'",
            &args![id, now],
        )
        .map_err(|e| write_error(path, e))?;
    if changed != 1 {
        return Err(StoreError::Internal { reason: format!("approval `{id}` changed during its use") });
    }
    record.status = ApprovalStatus::Used;
    record.used_ms = Some(now);
    let detail = json!({ "id": id, "digest": record.digest, "approved_by": record.decided_by });
    append_in(db, path, &[event(EventKind::ApprovalUsed, Some(&record), now, detail)])?;
    Ok(ApprovalOutcome::Consumed(record))
}

/// Appends `approval.refused` for `approver`'s attempt on `id`.
fn refuse(
    db: &mut dyn Sql,
    path: &Path,
    record: Option<&ApprovalRecord>,
    id: &str,
    who: &Who<'_>,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    let detail = json!({ "id": id, "approver": who.approver, "identity": who.identity, "reason": reason });
    append_in(db, path, &[event(EventKind::ApprovalRefused, record, now, detail)]).map(|_| ())
}

/// Marks `record` expired (with `approval.expired`) if it is open and due at `now`; says
/// whether it did.
fn expire_if_due(db: &mut dyn Sql, path: &Path, record: &mut ApprovalRecord, now: i64) -> Result<bool, StoreError> {
    if !(record.status.is_open() && now >= record.expires_ms) {
        return Ok(false);
    }
    db.execute("UPDATE approvals SET status = 'expired' WHERE id = ?1", &args![&record.id])
        .map_err(|e| write_error(path, e))?;
    let detail = json!({ "id": record.id, "digest": record.digest, "was": record.status.as_str() });
    record.status = ApprovalStatus::Expired;
    append_in(db, path, &[event(EventKind::ApprovalExpired, Some(record), now, detail)])?;
    Ok(true)
}

/// An approval event attributed to the request's agent, run, step and tool.
fn event(kind: EventKind, record: Option<&ApprovalRecord>, now: i64, detail: serde_json::Value) -> NewEvent {
    let mut e = NewEvent::new(kind, now);
    if let Some(r) = record {
        e.agent = Some(r.agent.clone());
        e.run = Some(r.run.clone());
        e.step = Some(r.step);
        e.tool = Some(r.tool.clone());
    }
    e.detail = detail;
    e
}

/// The request with this id.
pub(crate) fn get_in(
    db: &mut dyn Sql,
    path: &Path,
    id: &str,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Option<ApprovalRecord>, StoreError> {
    Ok(select(db, path, "WHERE id = ?1", &args![id], error)?.into_iter().next())
}

/// The requests matching `q`, newest first.
pub(crate) fn query_in(
    db: &mut dyn Sql,
    path: &Path,
    q: &ApprovalQuery,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut clause = String::new();
    let mut args = Vec::new();
    if let Some(status) = q.status {
        // An open request past its expiry counts as expired, marked or not.
        let now = Arg::Int(q.now_ms);
        match status {
            ApprovalStatus::Pending | ApprovalStatus::Approved => {
                clause.push_str("WHERE status = ? AND expires_ms > ?");
                args.push(Arg::Text(status.as_str()));
                args.push(now);
            }
            ApprovalStatus::Expired => {
                clause
                    .push_str("WHERE (status = 'expired' OR (status IN ('pending', 'approved') AND expires_ms <= ?))");
                args.push(now);
            }
            ApprovalStatus::Denied | ApprovalStatus::Used => {
                clause.push_str("WHERE status = ?");
                args.push(Arg::Text(status.as_str()));
            }
        }
    }
    clause.push_str(" ORDER BY created_ms DESC, id");
    if let Some(limit) = q.limit {
        clause.push_str(" LIMIT ?");
        args.push(Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    select(db, path, &clause, &args, error)
}

fn select(
    db: &mut dyn Sql,
    path: &Path,
    clause: &str,
    args: &[Arg<'_>],
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM approvals {clause}");
    let rows = db.query(&sql, args).map_err(|e| error(path, e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(decode(path, raw(row).map_err(|e| error(path, e))?)?);
    }
    Ok(out)
}

/// One row as stored, before its JSON and names are checked.
struct RawApproval {
    id: String,
    digest: String,
    status: String,
    agent: String,
    run: String,
    step: i64,
    tool: String,
    created_ms: i64,
    expires_ms: i64,
    request: String,
    decided_by: Option<String>,
    decided_ms: Option<i64>,
    reason: Option<String>,
    used_ms: Option<i64>,
}

fn raw(row: &Row) -> Result<RawApproval, DbError> {
    Ok(RawApproval {
        id: row.text(0)?,
        digest: row.text(1)?,
        status: row.text(2)?,
        agent: row.text(3)?,
        run: row.text(4)?,
        step: row.int(5)?,
        tool: row.text(6)?,
        created_ms: row.int(7)?,
        expires_ms: row.int(8)?,
        request: row.text(9)?,
        decided_by: row.opt_text(10)?,
        decided_ms: row.opt_int(11)?,
        reason: row.opt_text(12)?,
        used_ms: row.opt_int(13)?,
    })
}

fn decode(path: &Path, r: RawApproval) -> Result<ApprovalRecord, StoreError> {
    let id = r.id;
    let bad = |what: &str| StoreError::Corrupt { path: path.to_owned(), reason: format!("approval `{id}` has {what}") };
    let request: serde_json::Value = serde_json::from_str(&r.request).map_err(|_| bad("a request that is not json"))?;
    let strings = |key: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_value(request.get(key).cloned().unwrap_or_else(|| json!([])))
            .map_err(|_| bad(&format!("a `{key}` that is not a list of strings")))
    };
    Ok(ApprovalRecord {
        digest: r.digest,
        status: ApprovalStatus::parse(&r.status).ok_or_else(|| bad("an unknown status"))?,
        agent: AgentId(r.agent),
        principal: strings("principal")?,
        run: RunId(r.run),
        step: u64::try_from(r.step).map_err(|_| bad("a negative step"))?,
        tool: r.tool.parse().map_err(|_| bad("a malformed tool name"))?,
        descriptor_sha256: request.get("descriptor_sha256").and_then(|v| v.as_str()).map(str::to_owned),
        arguments: request.get("arguments").cloned().unwrap_or(serde_json::Value::Null),
        policies: strings("policies")?,
        groups: strings("groups")?,
        created_ms: r.created_ms,
        expires_ms: r.expires_ms,
        decided_by: r.decided_by,
        decided_ms: r.decided_ms,
        reason: r.reason,
        used_ms: r.used_ms,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::SqlStore;
    use crate::approvals::{
        ApprovalOutcome, ApprovalQuery, ApprovalRecord, ApprovalRefusal, ApprovalStatus, ApprovalWrite,
    };
    use crate::conformance::on_both_stores;
    use crate::store::{ApprovalStore, EventQuery, Store};
    use custos_core::{AgentId, EventKind, RunId, ToolRef};
    use serde_json::json;

    fn record(id: &str, digest: &str, created_ms: i64) -> ApprovalRecord {
        ApprovalRecord {
            id: id.into(),
            digest: digest.into(),
            agent: AgentId("bot".into()),
            principal: vec!["alice".into()],
            run: RunId("r".into()),
            step: 1,
            tool: ToolRef::new("bank", "pay").unwrap(),
            descriptor_sha256: None,
            arguments: json!({"amount": 1}),
            policies: vec!["p".into()],
            groups: vec!["finance".into()],
            created_ms,
            expires_ms: created_ms + 100,
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_ms: None,
            reason: None,
            used_ms: None,
        }
    }

    fn kinds(store: &SqlStore) -> Vec<&'static str> {
        store.query(&EventQuery::default()).unwrap().iter().map(|e| e.event.kind.as_str()).collect()
    }

    #[test]
    fn a_database_from_before_approvals_gets_the_table_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custos.db");
        {
            let mut store = SqlStore::open(&path).unwrap();
            store.append(&[custos_core::NewEvent::new(EventKind::RunStarted, 1)]).unwrap();
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE approvals").unwrap();
        drop(conn);
        let mut store = SqlStore::open(&path).unwrap();
        let outcome = store.write_approval(&ApprovalWrite::Request(Box::new(record("a1", "d", 0)))).unwrap();
        assert!(matches!(outcome, ApprovalOutcome::Requested { created: true, .. }));
        assert!(store.verify().unwrap().is_ok());
    }

    on_both_stores! {
        fn a_request_is_decided_once_used_once_and_expires(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let requested = |store: &mut SqlStore, id: &str, at: i64| match store
                .write_approval(&ApprovalWrite::Request(Box::new(record(id, "d1", at))))
                .unwrap()
            {
                ApprovalOutcome::Requested { record, created } => (record.id, created),
                other => panic!("{other:?}"),
            };
            assert_eq!(requested(&mut store, "a1", 0), ("a1".into(), true));
            assert_eq!(requested(&mut store, "a2", 50), ("a1".into(), false), "open for the digest: the same one");

            let decide = |id: &str, now_ms| ApprovalWrite::Decide {
                id: id.into(),
                approver: "carol".into(),
                identity: json!({ "method": "cli" }),
                approve: true,
                reason: None,
                now_ms,
            };
            assert!(matches!(store.write_approval(&decide("a1", 60)).unwrap(), ApprovalOutcome::Decided(_)));
            let again = store.write_approval(&decide("a1", 61)).unwrap();
            assert!(matches!(again, ApprovalOutcome::Refused { refusal: ApprovalRefusal::NotPending, .. }));
            let consume = |digest: &str, now_ms| ApprovalWrite::Consume { id: "a1".into(), digest: digest.into(), now_ms };
            let other = store.write_approval(&consume("d2", 62)).unwrap();
            assert!(matches!(other, ApprovalOutcome::Refused { refusal: ApprovalRefusal::Mismatch, .. }));
            assert!(matches!(store.write_approval(&consume("d1", 63)).unwrap(), ApprovalOutcome::Consumed(_)));
            let replay = store.write_approval(&consume("d1", 64)).unwrap();
            assert!(matches!(replay, ApprovalOutcome::Refused { refusal: ApprovalRefusal::Replayed, .. }));

            // A new request for the digest, approved, then used after its expiry: refused, and the
            // expiry recorded.
            assert_eq!(requested(&mut store, "a3", 200), ("a3".into(), true));
            assert!(matches!(store.write_approval(&decide("a3", 210)).unwrap(), ApprovalOutcome::Decided(_)));
            let late = store.write_approval(&ApprovalWrite::Consume { id: "a3".into(), digest: "d1".into(), now_ms: 300 });
            assert!(matches!(late.unwrap(), ApprovalOutcome::Refused { refusal: ApprovalRefusal::Expired, .. }));
            // A pending request past its expiry is marked when the digest is requested again.
            assert_eq!(requested(&mut store, "a4", 400), ("a4".into(), true));
            assert_eq!(requested(&mut store, "a5", 600), ("a5".into(), true));
            assert_eq!(store.approval("a4").unwrap().unwrap().status, ApprovalStatus::Expired);

            assert_eq!(
                kinds(&store),
                [
                    "approval.requested",
                    "approval.approved",
                    "approval.refused",
                    "approval.replay_refused",
                    "approval.used",
                    "approval.replay_refused",
                    "approval.requested",
                    "approval.approved",
                    "approval.expired",
                    "approval.replay_refused",
                    "approval.requested",
                    "approval.expired",
                    "approval.requested",
                ]
            );
            let q = |status| ApprovalQuery { status: Some(status), now_ms: 650, limit: None };
            let ids = |status| store.approvals(&q(status)).unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>();
            assert_eq!(ids(ApprovalStatus::Pending), ["a5"]);
            assert_eq!(ids(ApprovalStatus::Expired), ["a4", "a3"]);
            assert_eq!(ids(ApprovalStatus::Used), ["a1"]);
            assert_eq!(store.approvals(&ApprovalQuery { limit: Some(2), ..q(ApprovalStatus::Pending) }).unwrap().len(), 1);
            assert!(store.approval("nope").unwrap().is_none());
            assert!(store.verify().unwrap().is_ok(), "the projection is not part of the chain");
        }
    }
}
