//! The credential tables (`secrets`, `signing_keys`, `revoked_tokens`, `credential_uses`): each
//! change made together with its event in the caller's write transaction (`BEGIN IMMEDIATE`), so
//! a check and the change it allows (is this kid new? is this token already revoked?) cannot be
//! split by another process.

use std::path::Path;

use custos_core::NewEvent;
use serde_json::Value;

use super::{append_in, write_error};
use crate::credentials::{CredentialUse, SigningKeyRecord, StoredSecret};
use crate::error::StoreError;
use crate::sql::{args, DbError, Row, Sql};

/// How long past its token's expiry a revocation is kept before a later revocation prunes it.
/// Verifiers accept a token a little past `exp` (clock leeway), and the processes sharing the
/// database do not share a clock: a day covers both with room, and still bounds the table by
/// the tokens revoked in their lifetime plus a day.
const REVOCATION_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

pub(crate) fn put_secret_in(
    db: &mut dyn Sql,
    path: &Path,
    secret: &StoredSecret,
    event: &NewEvent,
) -> Result<(), StoreError> {
    // A replacement is a rotation: the whole row, times included, is the new one.
    db.execute(
        "INSERT INTO secrets (name, sealed, fingerprint, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, fingerprint = excluded.fingerprint,
             created_ms = excluded.created_ms, updated_ms = excluded.updated_ms",
        &args![&secret.name, &secret.sealed, &secret.fingerprint, secret.created_ms, secret.updated_ms],
    )
    .map_err(|e| write_error(path, e))?;
    append_in(db, path, std::slice::from_ref(event)).map(|_| ())
}

pub(crate) fn remove_secret_in(
    db: &mut dyn Sql,
    path: &Path,
    name: &str,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    let removed = db.execute("DELETE FROM secrets WHERE name = ?1", &args![name]).map_err(|e| write_error(path, e))?;
    if removed == 0 {
        return Ok(false);
    }
    append_in(db, path, std::slice::from_ref(event))?;
    Ok(true)
}

pub(crate) fn secrets_in(
    db: &mut dyn Sql,
    path: &Path,
    name: Option<&str>,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<StoredSecret>, StoreError> {
    // Two statements rather than `?1 IS NULL OR name = ?1`: the lookup by name, done for
    // every brokered call, must be a primary key read.
    const COLUMNS: &str = "SELECT name, sealed, fingerprint, created_ms, updated_ms FROM secrets";
    let sql = match name {
        Some(_) => format!("{COLUMNS} WHERE name = ?1"),
        None => format!("{COLUMNS} ORDER BY name"),
    };
    let rows = match name {
        Some(name) => db.query(&sql, &args![name]),
        None => db.query(&sql, &[]),
    }
    .map_err(|e| error(path, e))?;
    let secret = |row: &Row| -> Result<StoredSecret, DbError> {
        Ok(StoredSecret {
            name: row.text(0)?,
            sealed: row.blob(1)?,
            fingerprint: row.text(2)?,
            created_ms: row.int(3)?,
            updated_ms: row.int(4)?,
        })
    };
    rows.iter().map(secret).collect::<Result<Vec<_>, _>>().map_err(|e| error(path, e))
}

pub(crate) fn add_signing_key_in(
    db: &mut dyn Sql,
    path: &Path,
    key: &SigningKeyRecord,
    publish_overlap_ms: i64,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    if key.retired_ms.is_some() {
        return Err(StoreError::InvalidEvent {
            reason: format!("new signing key `{}` must be active, not retired", key.kid),
        });
    }
    if publish_overlap_ms < 0 {
        return Err(StoreError::InvalidEvent {
            reason: format!("publish overlap of {publish_overlap_ms} ms is negative"),
        });
    }
    let publish_until = key.created_ms.checked_add(publish_overlap_ms).ok_or_else(|| StoreError::InvalidEvent {
        reason: format!("publish overlap of {publish_overlap_ms} ms is out of range"),
    })?;
    let present = db
        .query_opt("SELECT 1 FROM signing_keys WHERE kid = ?1", &args![&key.kid])
        .map_err(|e| write_error(path, e))?
        .is_some();
    if present {
        return Err(StoreError::AlreadyExists { what: "signing key", id: key.kid.clone() });
    }
    db.execute(
        "UPDATE signing_keys SET retired_ms = ?1, publish_until_ms = ?2 WHERE retired_ms IS NULL",
        &args![key.created_ms, publish_until],
    )
    .map_err(|e| write_error(path, e))?;
    let jwk = serde_json::to_string(&key.public_jwk).map_err(|e| StoreError::InvalidEvent {
        reason: format!("public key of `{}` cannot be stored: {e}", key.kid),
    })?;
    db.execute(
        "INSERT INTO signing_keys (kid, algorithm, sealed_private, public_jwk, created_ms, retired_ms, publish_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
        &args![&key.kid, &key.algorithm, &key.sealed_private, &jwk, key.created_ms, key.publish_until_ms],
    )
    .map_err(|e| write_error(path, e))?;
    append_in(db, path, events).map(|_| ())
}

pub(crate) fn signing_keys_in(
    db: &mut dyn Sql,
    path: &Path,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<SigningKeyRecord>, StoreError> {
    // The insertion order breaks ties of `created_ms`: keys added in the same millisecond stay
    // in the order they were added.
    let sql = format!(
        "SELECT kid, algorithm, sealed_private, public_jwk, created_ms, retired_ms, publish_until_ms
         FROM signing_keys ORDER BY created_ms, {}",
        db.insertion_order()
    );
    let rows = db.query(&sql, &[]).map_err(|e| error(path, e))?;
    let key = |row: &Row| -> Result<(SigningKeyRecord, String), DbError> {
        Ok((
            SigningKeyRecord {
                kid: row.text(0)?,
                algorithm: row.text(1)?,
                sealed_private: row.blob(2)?,
                public_jwk: Value::Null,
                created_ms: row.int(4)?,
                retired_ms: row.opt_int(5)?,
                publish_until_ms: row.opt_int(6)?,
            },
            row.text(3)?,
        ))
    };
    let mut keys = Vec::new();
    for row in &rows {
        let (mut key, jwk) = key(row).map_err(|e| error(path, e))?;
        key.public_jwk = serde_json::from_str(&jwk).map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("signing key `{}` has a public key that is not json", key.kid),
        })?;
        keys.push(key);
    }
    Ok(keys)
}

pub(crate) fn revoke_token_in(
    db: &mut dyn Sql,
    path: &Path,
    jti: &str,
    expires_ms: Option<i64>,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    let now = event.time_ms;
    let inserted = db
        .execute(
            "INSERT INTO revoked_tokens (jti, revoked_ms, expires_ms) VALUES (?1, ?2, ?3) ON CONFLICT (jti) DO NOTHING",
            &args![jti, now, expires_ms],
        )
        .map_err(|e| write_error(path, e))?;
    if inserted == 0 {
        return Ok(false);
    }
    // Pruning here keeps the table bounded without a background task. The token just revoked
    // is spared even if already long expired, so revoking it again still answers false.
    db.execute(
        "DELETE FROM revoked_tokens WHERE expires_ms < ?1 AND jti <> ?2",
        &args![now.saturating_sub(REVOCATION_GRACE_MS), jti],
    )
    .map_err(|e| write_error(path, e))?;
    append_in(db, path, std::slice::from_ref(event))?;
    Ok(true)
}

pub(crate) fn is_token_revoked_in(
    db: &mut dyn Sql,
    path: &Path,
    jti: &str,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<bool, StoreError> {
    let found = db.query_opt("SELECT 1 FROM revoked_tokens WHERE jti = ?1", &args![jti]).map_err(|e| error(path, e))?;
    Ok(found.is_some())
}

/// Counts the credentials `event` names in the use projection, inside the caller's write
/// transaction. Called by [`append_in`] for every event it inserts, so no path that appends
/// can skip it.
pub(crate) fn project_uses(db: &mut dyn Sql, path: &Path, event: &NewEvent) -> Result<(), StoreError> {
    // The common case, an event naming no credentials, costs this one map lookup.
    let Some(Value::Array(entries)) = event.detail.get("credentials") else { return Ok(()) };
    let server = match &event.tool {
        Some(tool) => tool.server(),
        None => event.detail.get("server").and_then(Value::as_str).unwrap_or(""),
    };
    let agent = event.agent.as_ref().map_or("", |a| a.0.as_str());
    // Latest fingerprint by time; on a tie the later event wins, as it is applied last. Every
    // SET expression reads the row as it was, so their order does not matter.
    // The existing row is named (`credential_uses.`) where both it and `excluded` have the
    // column, as PostgreSQL requires; CASE rather than SQLite's two-argument MIN and MAX.
    const UPSERT: &str = "INSERT INTO credential_uses (credential, server, agent, fingerprint, uses, first_ms, last_ms)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
         ON CONFLICT (credential, server, agent) DO UPDATE SET
             uses = credential_uses.uses + 1,
             first_ms = CASE WHEN excluded.first_ms < credential_uses.first_ms
                 THEN excluded.first_ms ELSE credential_uses.first_ms END,
             last_ms = CASE WHEN excluded.last_ms > credential_uses.last_ms
                 THEN excluded.last_ms ELSE credential_uses.last_ms END,
             fingerprint = CASE WHEN excluded.last_ms >= credential_uses.last_ms
                 THEN excluded.fingerprint ELSE credential_uses.fingerprint END";
    let mut counted: Vec<&str> = Vec::with_capacity(entries.len());
    for entry in entries {
        // A malformed entry is the event's author's mistake; the event itself is still worth
        // recording, so it is skipped here rather than failing the append.
        let (Some(name), Some(fingerprint)) =
            (entry.get("name").and_then(Value::as_str), entry.get("fingerprint").and_then(Value::as_str))
        else {
            continue;
        };
        // One event is one use, however many times it lists the credential.
        if name.is_empty() || counted.contains(&name) {
            continue;
        }
        counted.push(name);
        db.execute(UPSERT, &args![name, server, agent, fingerprint, event.time_ms])
            .map_err(|e| write_error(path, e))?;
    }
    Ok(())
}

pub(crate) fn credential_uses_in(
    db: &mut dyn Sql,
    path: &Path,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<Vec<CredentialUse>, StoreError> {
    let rows = db
        .query(
            "SELECT credential, fingerprint, server, agent, uses, first_ms, last_ms FROM credential_uses
             ORDER BY credential, server, agent",
            &[],
        )
        .map_err(|e| error(path, e))?;
    let mut uses = Vec::with_capacity(rows.len());
    for row in &rows {
        let (mut record, count) = use_row(row).map_err(|e| error(path, e))?;
        record.uses = u64::try_from(count).map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("credential use of `{}` has a negative count", record.credential),
        })?;
        uses.push(record);
    }
    Ok(uses)
}

/// One `credential_uses` row, its count still as stored.
fn use_row(row: &Row) -> Result<(CredentialUse, i64), DbError> {
    Ok((
        CredentialUse {
            credential: row.text(0)?,
            fingerprint: row.text(1)?,
            server: row.text(2)?,
            agent: row.text(3)?,
            uses: 0,
            first_ms: row.int(5)?,
            last_ms: row.int(6)?,
        },
        row.int(4)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use custos_core::{AgentId, EventKind, NewEvent, ToolRef};
    use serde_json::json;
    use tempfile::TempDir;

    use super::super::SqlStore;
    use crate::conformance::on_both_stores;
    use crate::credentials::{CredentialUse, SigningKeyRecord, StoredSecret};
    use crate::error::StoreError;
    use crate::store::{CredentialStore, EventQuery, Store, Write, WriteOutcome};

    fn db() -> (TempDir, PathBuf, SqlStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custos.db");
        let store = SqlStore::open(&path).unwrap();
        (dir, path, store)
    }

    fn secret(name: &str, sealed: &[u8], at: i64) -> StoredSecret {
        StoredSecret {
            name: name.into(),
            sealed: sealed.to_vec(),
            fingerprint: format!("fp-{}", sealed.len()),
            created_ms: at,
            updated_ms: at,
        }
    }

    fn key(kid: &str, at: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            algorithm: "EdDSA".into(),
            sealed_private: vec![7; 32],
            public_jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": "abc"}),
            created_ms: at,
            retired_ms: None,
            publish_until_ms: None,
        }
    }

    fn kinds(store: &SqlStore) -> Vec<&'static str> {
        store.query(&EventQuery::default()).unwrap().iter().map(|e| e.event.kind.as_str()).collect()
    }

    /// An event naming `credentials` (name, fingerprint) for `agent`, on `tool` when given.
    fn used(at: i64, agent: Option<&str>, tool: Option<&str>, credentials: &[(&str, &str)]) -> NewEvent {
        let mut e = NewEvent::new(EventKind::CallFinished, at);
        e.agent = agent.map(|a| AgentId(a.into()));
        e.tool = tool.map(|t| t.parse::<ToolRef>().unwrap());
        let list: Vec<_> = credentials.iter().map(|(n, f)| json!({"name": n, "fingerprint": f})).collect();
        e.detail = json!({ "credentials": list });
        e
    }

    fn usage(credential: &str, server: &str, agent: &str, fp: &str, uses: u64, first: i64, last: i64) -> CredentialUse {
        CredentialUse {
            credential: credential.into(),
            fingerprint: fp.into(),
            server: server.into(),
            agent: agent.into(),
            uses,
            first_ms: first,
            last_ms: last,
        }
    }

    #[test]
    fn a_database_from_before_the_credential_tables_gains_them_on_open() {
        let (_dir, path, mut store) = db();
        store.append(&[NewEvent::new(EventKind::RunStarted, 1)]).unwrap();
        drop(store);
        drop_credential_tables(&path);

        let mut store = SqlStore::open(&path).unwrap();
        store.put_secret(&secret("s", b"x", 2), &NewEvent::new(EventKind::SecretSet, 2)).unwrap();
        store.add_signing_key(&key("k", 2), 0, &[NewEvent::new(EventKind::SigningKeyCreated, 2)]).unwrap();
        assert!(store.revoke_token("j", None, &NewEvent::new(EventKind::TokenRevoked, 2)).unwrap());
        store.append(&[used(3, Some("a"), None, &[("s", "x")])]).unwrap();
        assert_eq!(store.credential_uses().unwrap().len(), 1);
        assert!(store.verify().unwrap().is_ok());
    }

    /// Makes `path` look like a database written before the credential tables existed.
    fn drop_credential_tables(path: &Path) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "DROP TABLE secrets; DROP TABLE signing_keys; DROP TABLE revoked_tokens; DROP TABLE credential_uses;",
        )
        .unwrap();
    }

    on_both_stores! {
        fn secrets_are_put_replaced_listed_and_removed_each_with_its_event(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let set = |at| NewEvent::new(EventKind::SecretSet, at);
            store.put_secret(&secret("stripe", b"sealed-1", 10), &set(10)).unwrap();
            store.put_secret(&secret("github", b"sealed-gh", 11), &set(11)).unwrap();
            assert_eq!(kinds(&store), ["secret.set", "secret.set"]);
            assert_eq!(store.secret("stripe").unwrap(), Some(secret("stripe", b"sealed-1", 10)));
            assert_eq!(store.secret("nope").unwrap(), None);

            // A replacement is a rotation: the new value with its own times, the old one gone.
            let rotated = secret("stripe", b"sealed-two", 20);
            store.put_secret(&rotated, &set(20)).unwrap();
            assert_eq!(store.secret("stripe").unwrap(), Some(rotated.clone()));
            assert_eq!(store.secrets().unwrap(), [secret("github", b"sealed-gh", 11), rotated]);
            assert_eq!(kinds(&store).len(), 3);

            let removed = NewEvent::new(EventKind::SecretRemoved, 30);
            assert!(store.remove_secret("stripe", &removed).unwrap());
            assert!(!store.remove_secret("stripe", &removed).unwrap(), "twice removes nothing");
            assert!(!store.remove_secret("never", &removed).unwrap());
            assert_eq!(kinds(&store), ["secret.set", "secret.set", "secret.set", "secret.removed"], "no event for nothing");
            assert_eq!(store.secret("stripe").unwrap(), None);
            assert_eq!(store.secrets().unwrap().len(), 1);
            assert!(store.verify().unwrap().is_ok());
        }

        fn a_secret_whose_event_cannot_be_recorded_is_not_stored(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let mut bad = NewEvent::new(EventKind::SecretSet, 1);
            bad.step = Some(u64::MAX);
            let err = store.put_secret(&secret("stripe", b"s", 1), &bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
            assert_eq!(store.secret("stripe").unwrap(), None);
            assert!(kinds(&store).is_empty());
        }

        fn a_new_signing_key_retires_the_active_one_which_stays_published_for_the_overlap(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let created = |at| NewEvent::new(EventKind::SigningKeyCreated, at);
            store.add_signing_key(&key("k1", 100), 5_000, &[created(100)]).unwrap();
            assert_eq!(store.signing_keys().unwrap(), [key("k1", 100)]);

            let retired = NewEvent::new(EventKind::SigningKeyRetired, 200);
            store.add_signing_key(&key("k2", 200), 5_000, &[created(200), retired]).unwrap();
            let keys = store.signing_keys().unwrap();
            let old = SigningKeyRecord { retired_ms: Some(200), publish_until_ms: Some(5_200), ..key("k1", 100) };
            assert_eq!(keys, [old.clone(), key("k2", 200)], "oldest first; only the newest active");

            // A third key retires only the active one; k1 keeps its own dates.
            store.add_signing_key(&key("k3", 300), 1_000, &[created(300)]).unwrap();
            let k2 = SigningKeyRecord { retired_ms: Some(300), publish_until_ms: Some(1_300), ..key("k2", 200) };
            assert_eq!(store.signing_keys().unwrap(), [old, k2, key("k3", 300)]);
            assert_eq!(
                kinds(&store),
                ["signing_key.created", "signing_key.created", "signing_key.retired", "signing_key.created"]
            );
            assert!(store.verify().unwrap().is_ok());
        }

        fn a_duplicate_kid_is_refused_and_changes_nothing_not_even_the_use_projection(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            store.add_signing_key(&key("k1", 100), 5_000, &[NewEvent::new(EventKind::SigningKeyCreated, 100)]).unwrap();
            let before = (store.signing_keys().unwrap(), kinds(&store));

            // The events would have counted a credential use had the transaction committed.
            let mut created = used(200, Some("ops"), None, &[("signer", "fp")]);
            created.kind = EventKind::SigningKeyCreated;
            let err = store.add_signing_key(&key("k1", 200), 5_000, &[created.clone()]).unwrap_err();
            assert!(matches!(err, StoreError::AlreadyExists { what: "signing key", .. }), "{err:?}");
            assert_eq!(err.to_string(), "signing key `k1` already exists");
            assert_eq!((store.signing_keys().unwrap(), kinds(&store)), before, "k1 still active, no event");
            assert!(store.credential_uses().unwrap().is_empty());

            // The same events with a bad one among them: the new key, the retirement and the
            // projection all roll back with the event that failed.
            let mut bad = NewEvent::new(EventKind::SigningKeyRetired, 200);
            bad.step = Some(u64::MAX);
            assert!(store.add_signing_key(&key("k2", 200), 5_000, &[created, bad]).is_err());
            assert_eq!((store.signing_keys().unwrap(), kinds(&store)), before);
            assert!(store.credential_uses().unwrap().is_empty());

            let retired = SigningKeyRecord { retired_ms: Some(1), ..key("k3", 300) };
            assert!(matches!(store.add_signing_key(&retired, 0, &[]), Err(StoreError::InvalidEvent { .. })));
            assert!(matches!(store.add_signing_key(&key("k3", 300), -1, &[]), Err(StoreError::InvalidEvent { .. })));
            let late = key("k3", i64::MAX);
            assert!(matches!(store.add_signing_key(&late, 1, &[]), Err(StoreError::InvalidEvent { .. })));
            assert_eq!((store.signing_keys().unwrap(), kinds(&store)), before);
        }

        fn a_token_is_revoked_once_with_one_event_and_seen_by_another_process(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let reader = SqlStore::open_read_only(&path).unwrap();
            let revoked = |at| NewEvent::new(EventKind::TokenRevoked, at);
            assert!(!reader.is_token_revoked("jti-1").unwrap());
            assert!(store.revoke_token("jti-1", Some(10_000), &revoked(1_000)).unwrap());
            assert!(!store.revoke_token("jti-1", Some(10_000), &revoked(1_001)).unwrap(), "already revoked");
            assert!(reader.is_token_revoked("jti-1").unwrap(), "read from the file, not a cache");
            assert!(!reader.is_token_revoked("jti-2").unwrap());
            assert_eq!(kinds(&store), ["token.revoked"]);
            assert!(store.verify().unwrap().is_ok());
        }

        fn revocations_long_past_their_expiry_are_pruned_by_later_ones(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let revoked = |at| NewEvent::new(EventKind::TokenRevoked, at);
            let day = super::REVOCATION_GRACE_MS;
            assert!(store.revoke_token("short", Some(1_000), &revoked(500)).unwrap());
            assert!(store.revoke_token("forever", None, &revoked(500)).unwrap());
            // Just within the grace: kept, for verifiers with clock leeway.
            assert!(store.revoke_token("b", Some(10 * day), &revoked(1_000 + day)).unwrap());
            assert!(store.is_token_revoked("short").unwrap());
            // Past it: pruned. A token without expiry, and one revoked after its own expiry, stay.
            assert!(store.revoke_token("stale", Some(0), &revoked(2_000 + day)).unwrap());
            assert!(!store.is_token_revoked("short").unwrap());
            assert!(store.is_token_revoked("forever").unwrap());
            assert!(store.is_token_revoked("b").unwrap());
            assert!(store.is_token_revoked("stale").unwrap());
            assert!(!store.revoke_token("stale", Some(0), &revoked(2_001 + day)).unwrap());
            assert_eq!(kinds(&store).len(), 4);
        }

        fn every_event_naming_credentials_counts_through_append_and_write_batch(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            store
                .append(&[
                    used(100, Some("bot"), Some("github/create_issue"), &[("gh", "fp1")]),
                    // The same credential, server and agent: one row, two uses.
                    used(300, Some("bot"), Some("github/list"), &[("gh", "fp2")]),
                    // No tool: the server comes from the detail; no agent: empty.
                    {
                        let mut e = used(200, None, None, &[("gh", "fp1")]);
                        e.detail["server"] = json!("github");
                        e
                    },
                    // Neither: an empty server. Listed twice, counted once.
                    used(50, Some("bot"), None, &[("stripe", "s1"), ("stripe", "s1")]),
                    NewEvent::new(EventKind::RunStarted, 1),
                ])
                .unwrap();
            // Malformed entries are skipped; the well-formed ones beside them count, and every
            // event is appended all the same.
            let mut malformed = NewEvent::new(EventKind::CallFinished, 400);
            malformed.agent = Some(AgentId("bot".into()));
            malformed.detail = json!({"credentials": [
                "gh",
                {"name": "gh"},
                {"name": 1, "fingerprint": "x"},
                {"name": "", "fingerprint": "x"},
                {"name": "stripe", "fingerprint": "s2"},
            ]});
            let not_a_list = NewEvent {
                detail: json!({"credentials": {"name": "gh", "fingerprint": "x"}}),
                ..NewEvent::new(EventKind::CallFinished, 400)
            };
            let results = store
                .write_batch(&[
                    Write::Append(vec![malformed, not_a_list]),
                    // An earlier event appended later: first_ms moves back, the fingerprint stays.
                    Write::Append(vec![used(20, Some("bot"), Some("github/list"), &[("gh", "fp0")])]),
                ])
                .unwrap();
            assert!(results.iter().all(|r| matches!(r, Ok(WriteOutcome::Appended(_)))), "{results:?}");
            assert_eq!(store.query(&EventQuery::default()).unwrap().len(), 8);

            assert_eq!(
                store.credential_uses().unwrap(),
                [
                    usage("gh", "github", "", "fp1", 1, 200, 200),
                    usage("gh", "github", "bot", "fp2", 3, 20, 300),
                    usage("stripe", "", "bot", "s2", 2, 50, 400),
                ]
            );
            assert!(store.verify().unwrap().is_ok());
        }

        fn a_write_rolled_back_in_a_batch_takes_its_uses_with_it(path: DbLocation) {
            let mut store = SqlStore::open(&path).unwrap();
            let mut bad = NewEvent::new(EventKind::CallFinished, 2);
            bad.step = Some(u64::MAX);
            let results = store
                .write_batch(&[
                    Write::Append(vec![used(1, Some("a"), Some("s/t"), &[("kept", "f")])]),
                    Write::Append(vec![used(2, Some("a"), Some("s/t"), &[("kept", "f"), ("lost", "f")]), bad]),
                ])
                .unwrap();
            assert!(results[0].is_ok() && results[1].is_err(), "{results:?}");
            assert_eq!(store.credential_uses().unwrap(), [usage("kept", "s", "a", "f", 1, 1, 1)]);

            // A failed single append leaves nothing either.
            let mut bad = NewEvent::new(EventKind::CallFinished, 3);
            bad.step = Some(u64::MAX);
            assert!(store.append(&[used(3, Some("a"), Some("s/t"), &[("lost", "f")]), bad]).is_err());
            assert_eq!(store.credential_uses().unwrap().len(), 1);
        }
    }
}
