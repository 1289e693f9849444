//! Tampering with a real database file behind the store's back, and what `verify` reports.
//!
//! Each case builds a clean six-event log, changes the file directly with SQL as an attacker
//! with write access would, and checks the first problem `verify` names.

use std::path::{Path, PathBuf};

use custos_core::{AgentId, Digest, EventKind, NewEvent, RunId, ToolRef};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter};
use serde_json::json;

use super::*;
use crate::Tamper;

const EVENTS: u64 = 6;

fn sample(i: u64) -> NewEvent {
    let mut e = NewEvent::new(EventKind::CallDecided, 1_000 + i as i64);
    e.agent = Some(AgentId("support-bot".into()));
    e.run = Some(RunId("run-1".into()));
    e.step = Some(i);
    e.tool = Some(ToolRef::new("billing", "refund").unwrap());
    e.decision = Some(if i == 3 { "deny" } else { "allow" }.into());
    e.detail = json!({"note": format!("event {i}")});
    e
}

/// A clean log of [`EVENTS`] events; returns its path and the stored events.
fn clean_log(dir: &Path) -> (PathBuf, Vec<StoredEvent>) {
    let path = dir.join("audit.db");
    let mut store = SqlStore::open(&path).unwrap();
    let events: Vec<_> = (1..=EVENTS).map(sample).collect();
    let stored = store.append(&events).unwrap();
    (path, stored)
}

/// All stored columns of row `seq` except `seq`, in table order.
fn row(conn: &Connection, seq: i64) -> Vec<SqlValue> {
    conn.query_row(
        "SELECT hash, body, kind, time_ms, agent, run, step, tool, decision FROM events WHERE seq = ?1",
        [seq],
        |r| (0..9).map(|i| r.get::<_, SqlValue>(i)).collect(),
    )
    .unwrap()
}

fn put(conn: &Connection, seq: i64, values: Vec<SqlValue>) {
    let mut args = vec![SqlValue::Integer(seq)];
    args.extend(values);
    conn.execute(
        "INSERT OR REPLACE INTO events (seq, hash, body, kind, time_ms, agent, run, step, tool, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params_from_iter(args),
    )
    .unwrap();
}

/// Writes `event` as row `seq`, chained to `prev`, exactly as the store would have.
fn forge(conn: &Connection, seq: i64, prev: &Digest, event: &NewEvent) {
    let enc = chain::encode(seq as u64, prev, event).unwrap();
    let mut values = vec![SqlValue::Text(enc.hash.to_hex()), SqlValue::Text(enc.body)];
    values.extend(enc.columns.map(|cell| match cell {
        Cell::Null | Cell::Other => SqlValue::Null,
        Cell::Int(i) => SqlValue::Integer(i),
        Cell::Text(s) => SqlValue::Text(s),
    }));
    put(conn, seq, values);
}

fn swap(conn: &Connection, a: i64, b: i64) {
    let (row_a, row_b) = (row(conn, a), row(conn, b));
    put(conn, a, row_b);
    put(conn, b, row_a);
}

/// Moves every row from `from` on by `by` (negative: down), as a cover-up would.
fn renumber(conn: &Connection, from: i64, by: i64) {
    // Through negative numbers, so no row collides with one not yet moved.
    conn.execute("UPDATE events SET seq = -seq WHERE seq >= ?1", [from]).unwrap();
    conn.execute("UPDATE events SET seq = -seq + ?1 WHERE seq < 0", [by]).unwrap();
}

fn delete(conn: &Connection, seq: i64) {
    conn.execute("DELETE FROM events WHERE seq = ?1", [seq]).unwrap();
}

fn set(conn: &Connection, seq: i64, column: &str, value: SqlValue) {
    conn.execute(&format!("UPDATE events SET {column} = ?1 WHERE seq = ?2"), params![value, seq]).unwrap();
}

trait AsDigest {
    fn as_digest(&self) -> Digest;
}

impl AsDigest for SqlValue {
    fn as_digest(&self) -> Digest {
        match self {
            SqlValue::Text(h) => h.parse().unwrap(),
            other => panic!("not a digest: {other:?}"),
        }
    }
}

type Tampering = fn(&Connection, &[StoredEvent]);

#[test]
fn verify_names_the_first_problem_and_its_kind() {
    let cases: Vec<(&str, Tampering, Tamper, u64)> = vec![
        (
            "one byte of a body changed",
            |c, _| {
                let body = match &row(c, 3)[1] {
                    SqlValue::Text(b) => b.replacen("\"event 3\"", "\"Event 3\"", 1),
                    _ => unreachable!(),
                };
                set(c, 3, "body", SqlValue::Text(body));
            },
            Tamper::Modified,
            3,
        ),
        (
            "digest column changed",
            |c, _| {
                set(c, 3, "hash", SqlValue::Text(Digest::of(b"forged").to_hex()));
            },
            Tamper::Modified,
            3,
        ),
        (
            "derived decision column changed",
            |c, _| {
                set(c, 3, "decision", SqlValue::Text("allow".into()));
            },
            Tamper::Modified,
            3,
        ),
        ("derived step column cleared", |c, _| set(c, 4, "step", SqlValue::Null), Tamper::Modified, 4),
        (
            "body replaced by non-json with a matching digest",
            |c, _| {
                set(c, 3, "body", SqlValue::Text("not json".into()));
                set(c, 3, "hash", SqlValue::Text(Digest::of(b"not json").to_hex()));
            },
            Tamper::Modified,
            3,
        ),
        (
            "event rewritten with a recomputed digest",
            |c, s| {
                let mut e = sample(3);
                e.decision = Some("allow".into());
                forge(c, 3, &s[1].hash, &e);
            },
            Tamper::Modified,
            3,
        ),
        (
            "event relinked to another predecessor with a recomputed digest",
            |c, s| {
                forge(c, 3, &s[0].hash, &sample(3));
            },
            Tamper::Modified,
            3,
        ),
        ("one row deleted", |c, _| delete(c, 3), Tamper::Deleted, 3),
        ("first row deleted", |c, _| delete(c, 1), Tamper::Deleted, 1),
        (
            "one row deleted, later rows renumbered",
            |c, _| {
                delete(c, 3);
                renumber(c, 4, -1);
            },
            Tamper::Deleted,
            3,
        ),
        (
            "two rows deleted, later rows renumbered",
            |c, _| {
                delete(c, 3);
                delete(c, 4);
                renumber(c, 5, -2);
            },
            Tamper::Deleted,
            3,
        ),
        (
            "second to last row deleted, last renumbered",
            |c, _| {
                delete(c, 5);
                renumber(c, 6, -1);
            },
            Tamper::Deleted,
            5,
        ),
        ("two adjacent rows swapped", |c, _| swap(c, 3, 4), Tamper::Reordered, 3),
        ("two distant rows swapped", |c, _| swap(c, 2, 5), Tamper::Reordered, 2),
        (
            "forged event inserted, later rows shifted",
            |c, s| {
                renumber(c, 3, 1);
                let mut e = sample(3);
                e.detail = json!({"note": "forged"});
                forge(c, 3, &s[1].hash, &e);
            },
            Tamper::Inserted,
            3,
        ),
        (
            "forged event inserted, later events re-encoded after it but one link missed",
            |c, s| {
                // The forger re-encoded every displaced event with its new number and relinked them,
                // except the first, which still links to its real predecessor.
                let forged = NewEvent { detail: json!({"note": "forged"}), ..sample(3) };
                forge(c, 3, &s[1].hash, &forged);
                let mut prev = s[1].hash;
                for (i, original) in s.iter().enumerate().skip(2) {
                    let seq = i as i64 + 2;
                    forge(c, seq, &prev, &original.event);
                    prev = row(c, seq)[0].as_digest();
                }
            },
            Tamper::Inserted,
            3,
        ),
    ];

    for (name, tamper, problem, seq) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, stored) = clean_log(dir.path());
        tamper(&Connection::open(&path).unwrap(), &stored);
        let report = SqlStore::open_read_only(&path).unwrap().verify().unwrap();
        let VerifyReport::Broken { seq: found_seq, problem: found, detail } = &report else {
            panic!("{name}: tampering went unnoticed: {report:?}");
        };
        assert_eq!((*found, *found_seq), (problem, seq), "{name}: {detail}");
        assert_eq!(detail, &detail.to_lowercase(), "{name}: detail is lowercase");
        assert!(!detail.contains('\n'), "{name}: detail is one line");
        assert!(detail.starts_with("event"), "{name}: {detail}");
        assert!(detail.contains(&seq.to_string()), "{name}: detail names the event: {detail}");
    }
}

#[test]
fn clean_log_verifies_with_count_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stored) = clean_log(dir.path());
    let store = SqlStore::open_read_only(&path).unwrap();
    let head = stored.last().unwrap().hash;
    assert_eq!(store.verify().unwrap(), VerifyReport::Ok { count: EVENTS, head: Some(head) });
    assert_eq!(store.head().unwrap(), Some((EVENTS, head)));
}

#[test]
fn empty_log_verifies_with_count_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(dir.path().join("audit.db")).unwrap();
    assert_eq!(store.verify().unwrap(), VerifyReport::Ok { count: 0, head: None });
}

#[test]
fn rewriting_the_last_event_changes_only_the_head() {
    // No chain can notice its own tail being rewritten or cut; only a head recorded elsewhere
    // can. This pins that limit down so nobody assumes otherwise.
    let dir = tempfile::tempdir().unwrap();
    let (path, stored) = clean_log(dir.path());
    let conn = Connection::open(&path).unwrap();
    forge(&conn, EVENTS as i64, &stored[4].hash, &NewEvent { decision: Some("deny".into()), ..sample(EVENTS) });
    let report = SqlStore::open_read_only(&path).unwrap().verify().unwrap();
    let VerifyReport::Ok { count, head } = report else { panic!("{report:?}") };
    assert_eq!(count, EVENTS);
    assert_ne!(head, Some(stored[5].hash));
}

#[test]
fn text_that_is_not_utf8_is_a_read_error() {
    // SQLite stores whatever bytes it is given as text; the walk refuses them as the driver does.
    for column in ["hash", "body", "kind", "decision"] {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = clean_log(dir.path());
        let conn = Connection::open(&path).unwrap();
        conn.execute(&format!("UPDATE events SET {column} = CAST(x'6162ff' AS TEXT) WHERE seq = 3"), []).unwrap();
        let err = SqlStore::open_read_only(&path).unwrap().verify().unwrap_err();
        assert!(matches!(&err, StoreError::Read { reason, .. } if reason.contains("utf-8")), "{column}: {err:?}");
    }
}

#[test]
#[ignore = "slow: run with --ignored to check verification of a large log"]
fn verify_streams_a_large_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = SqlStore::open(&path).unwrap();
    let count: u64 = std::env::var("CUSTOS_VERIFY_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let chunk: Vec<_> = (1..=10_000).map(sample).collect();
    for _ in 0..count / 10_000 {
        store.append(&chunk).unwrap();
    }
    let started = std::time::Instant::now();
    let report = store.verify().unwrap();
    eprintln!("verified {count} events in {:?}", started.elapsed());
    assert!(matches!(report, VerifyReport::Ok { count: c, .. } if c == count));
}
