//! The SQLite store on real files: appending, the inventory, queries, schema checks, and several
//! writers sharing one file.

use std::path::{Path, PathBuf};
use std::thread;

use custos_core::{AgentId, Digest, EventKind, NewEvent, RunId, ToolDescriptor, ToolRef};
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::conformance::on_both_stores;

fn db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    (dir, path)
}

fn event(kind: EventKind, time_ms: i64, agent: &str, run: &str) -> NewEvent {
    let mut e = NewEvent::new(kind, time_ms);
    e.agent = Some(AgentId(agent.into()));
    e.run = Some(RunId(run.into()));
    e
}

fn decided(time_ms: i64, agent: &str, run: &str, tool: &str, decision: &str) -> NewEvent {
    let mut e = event(EventKind::CallDecided, time_ms, agent, run);
    e.tool = Some(tool.parse().unwrap());
    e.decision = Some(decision.into());
    e.detail = json!({"reason": format!("{decision} at {time_ms}")});
    e
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Writes a `meta` schema version straight into the file.
fn set_schema_version(path: &Path, version: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [version]).unwrap();
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    let (_dir, path) = db();
    drop(SqlStore::open(&path).unwrap());
    set_schema_version(&path, "2");
    for result in [SqlStore::open(&path), SqlStore::open_read_only(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 2, supported: 1, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "audit database `{}` has schema version 2, newer than 1 which this custos understands: upgrade custos",
                path.display()
            )
        );
    }
}

#[test]
fn files_that_are_not_audit_databases_are_refused() {
    let (dir, path) = db();
    std::fs::write(&path, "this is a text file, not a database. ".repeat(100)).unwrap();
    for result in [SqlStore::open(&path), SqlStore::open_read_only(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("audit database `{}` is damaged: ", path.display())), "{err}");
    }

    let other = dir.path().join("other.db");
    Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let err = SqlStore::open_read_only(&other).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().ends_with("no schema version: not a custos audit database"), "{err}");

    let bad_version = dir.path().join("bad-version.db");
    drop(SqlStore::open(&bad_version).unwrap());
    set_schema_version(&bad_version, "one");
    let err = SqlStore::open(&bad_version).unwrap_err();
    assert!(err.to_string().ends_with("schema version `one` is not a number"), "{err}");
}

#[test]
fn missing_files_and_directories_are_open_errors_naming_the_path() {
    let (dir, _) = db();
    let in_missing_dir = dir.path().join("no/such/dir/audit.db");
    let missing = dir.path().join("missing.db");
    for (path, result) in
        [(&in_missing_dir, SqlStore::open(&in_missing_dir)), (&missing, SqlStore::open_read_only(&missing))]
    {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("cannot open audit database `{}`: ", path.display())), "{msg}");
        assert!(!msg.contains('\n'));
    }
}

on_both_stores! {
    fn appends_are_numbered_and_chained_across_calls_and_reopens(path: DbLocation) {
        let mut store = SqlStore::open(&path).unwrap();
        assert_eq!(store.head().unwrap(), None);
        let first =
            store.append(&[event(EventKind::RunStarted, 1, "a", "r"), decided(2, "a", "r", "s/t", "allow")]).unwrap();
        assert_eq!(seqs(&first), [1, 2]);
        assert_eq!(first[0].prev, Digest::ZERO);
        assert_eq!(first[1].prev, first[0].hash);
        drop(store);

        // A new connection reads the head from the file, not from anything it remembered.
        let mut store = SqlStore::open(&path).unwrap();
        let second = store.append(&[event(EventKind::RunEnded, 3, "a", "r")]).unwrap();
        assert_eq!(seqs(&second), [3]);
        assert_eq!(second[0].prev, first[1].hash);
        assert_eq!(store.head().unwrap(), Some((3, second[0].hash)));
        assert_eq!(store.query(&EventQuery::default()).unwrap(), [first, second.clone()].concat());
        assert_eq!(store.verify().unwrap(), VerifyReport::Ok { count: 3, head: Some(second[0].hash) });
        assert!(store.append(&[]).unwrap().is_empty());
    }

    fn two_stores_on_one_file_append_interleaved_from_two_threads(path: DbLocation) {
        drop(SqlStore::open(&path).unwrap());
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|agent| {
                let path = path.clone();
                thread::spawn(move || {
                    let mut store = SqlStore::open(&path).unwrap();
                    (0..100)
                        .map(|i| {
                            let pair = [
                                event(EventKind::CallRequested, i, agent, agent),
                                event(EventKind::CallFinished, i, agent, agent),
                            ];
                            seqs(&store.append(&pair).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = Vec::new();
        for writer in writers {
            for pair in writer.join().unwrap() {
                // One append is one transaction: its events are adjacent whatever the other did.
                assert_eq!(pair[1], pair[0] + 1);
                all.extend(pair);
            }
        }
        all.sort_unstable();
        assert_eq!(all, (1..=400).collect::<Vec<_>>());
        let store = SqlStore::open_read_only(&path).unwrap();
        let report = store.verify().unwrap();
        assert!(matches!(report, VerifyReport::Ok { count: 400, head: Some(_) }), "{report:?}");
    }

    fn observe_tools_logs_new_and_changed_tools_and_only_touches_unchanged_ones(path: DbLocation) {
        let mut store = SqlStore::open(&path).unwrap();
        let read_v1 = ToolDescriptor::from_listing("files", json!({"name": "read", "description": "v1"})).unwrap();
        let read_v2 = ToolDescriptor::from_listing("files", json!({"name": "read", "description": "v2"})).unwrap();
        let write = ToolDescriptor::from_listing("files", json!({"name": "write"})).unwrap();
        let listed = |time_ms| {
            let mut e = event(EventKind::RunStarted, time_ms, "bot", "run-1");
            e.decision = Some("allow".into()); // replaced: tool events carry no decision
            e
        };

        let first = store.observe_tools(&[read_v1.clone(), write.clone()], &listed(10)).unwrap();
        assert_eq!(first, [ToolSighting::New, ToolSighting::New]);
        let seen = store.query(&EventQuery::default()).unwrap();
        assert_eq!(seqs(&seen), [1, 2]);
        let e = &seen[0].event;
        assert_eq!(e.kind, EventKind::ToolSeen);
        assert_eq!(
            (e.time_ms, e.agent.clone(), e.run.clone()),
            (10, Some(AgentId("bot".into())), Some(RunId("run-1".into())))
        );
        assert_eq!(e.tool, Some(ToolRef::new("files", "read").unwrap()));
        assert_eq!(e.decision, None);
        // The first sighting is the pin (see `pins_tests.rs`).
        assert_eq!(e.detail, json!({"digest": read_v1.digest.to_hex(), "descriptor": read_v1.raw, "pinned": true}));

        let again = store.observe_tools(&[read_v1.clone(), write.clone()], &listed(20)).unwrap();
        assert_eq!(again, [ToolSighting::Unchanged, ToolSighting::Unchanged]);
        assert_eq!(store.head().unwrap().unwrap().0, 2, "an unchanged listing logs nothing");

        // Changed from the pin: quarantined, with a finding after the tool.changed.
        let changed = store.observe_tools(&[read_v2.clone(), write.clone()], &listed(30)).unwrap();
        assert_eq!(changed, [ToolSighting::Quarantined { pinned: read_v1.digest }, ToolSighting::Unchanged]);
        let logged = store.query(&EventQuery { after_seq: Some(2), ..Default::default() }).unwrap();
        assert_eq!(seqs(&logged), [3, 4]);
        assert_eq!(logged[1].event.kind, EventKind::FindingRecorded);
        assert_eq!(logged[0].event.kind, EventKind::ToolChanged);
        assert_eq!(
            logged[0].event.detail,
            json!({
                "previous_digest": read_v1.digest.to_hex(),
                "digest": read_v2.digest.to_hex(),
                "descriptor": read_v2.raw,
            })
        );

        let inventory = store.tools().unwrap();
        assert_eq!(
            inventory,
            [
                ToolRecord {
                    tool: read_v2.tool.clone(),
                    digest: read_v2.digest,
                    descriptor: read_v2.raw.clone(),
                    first_seen_ms: 10,
                    last_seen_ms: 30,
                    pinned_digest: Some(read_v1.digest),
                    pinned_descriptor: Some(read_v1.raw.clone()),
                },
                ToolRecord {
                    tool: write.tool.clone(),
                    digest: write.digest,
                    descriptor: write.raw.clone(),
                    first_seen_ms: 10,
                    last_seen_ms: 30,
                    pinned_digest: Some(write.digest),
                    pinned_descriptor: Some(write.raw.clone()),
                },
            ]
        );
        assert!(store.verify().unwrap().is_ok());
    }

    fn each_query_filter_narrows_the_result(path: DbLocation) {
        let mut store = SqlStore::open(&path).unwrap();
        let mut finished = event(EventKind::CallFinished, 500, "a", "r1");
        finished.tool = Some(ToolRef::new("files", "read").unwrap());
        let stored = store
            .append(&[
                event(EventKind::RunStarted, 100, "a", "r1"),
                decided(200, "a", "r1", "files/read", "allow"),
                decided(300, "b", "r2", "files/write", "deny"),
                decided(400, "a", "r1", "shell/exec", "deny"),
                finished,
                // A server whose name starts with another's must not match the other's prefix.
                decided(600, "c", "r3", "filesystem/read", "allow"),
            ])
            .unwrap();

        let q = EventQuery::default;
        let text = |s: &str| Some(s.to_owned());
        let cases: Vec<(&str, EventQuery, Vec<u64>)> = vec![
            ("no filter", q(), vec![1, 2, 3, 4, 5, 6]),
            ("agent", EventQuery { agent: text("a"), ..q() }, vec![1, 2, 4, 5]),
            ("run", EventQuery { run: text("r2"), ..q() }, vec![3]),
            ("tool exact", EventQuery { tool: text("files/read"), ..q() }, vec![2, 5]),
            ("tool server prefix", EventQuery { tool: text("files/"), ..q() }, vec![2, 3, 5]),
            ("decision", EventQuery { decision: text("deny"), ..q() }, vec![3, 4]),
            ("kind", EventQuery { kind: Some(EventKind::CallDecided), ..q() }, vec![2, 3, 4, 6]),
            ("since", EventQuery { since_ms: Some(400), ..q() }, vec![4, 5, 6]),
            ("after seq", EventQuery { after_seq: Some(4), ..q() }, vec![5, 6]),
            ("limit", EventQuery { limit: Some(2), ..q() }, vec![1, 2]),
            ("page", EventQuery { after_seq: Some(2), limit: Some(2), ..q() }, vec![3, 4]),
            ("combined", EventQuery { agent: text("a"), decision: text("deny"), ..q() }, vec![4]),
            ("no match", EventQuery { agent: text("nobody"), ..q() }, vec![]),
            ("after the end", EventQuery { after_seq: Some(u64::MAX), ..q() }, vec![]),
        ];
        for (name, query, expected) in cases {
            let found = store.query(&query).unwrap();
            assert_eq!(seqs(&found), expected, "{name}");
            for e in &found {
                assert_eq!(e, &stored[e.seq as usize - 1], "{name}: event {} as appended", e.seq);
            }
        }
    }

    fn a_failing_write_in_a_batch_rolls_back_alone(path: DbLocation) {
        let mut store = SqlStore::open(&path).unwrap();
        let mut out_of_range = event(EventKind::CallRequested, 2, "a", "r");
        out_of_range.step = Some(u64::MAX);
        let results = store
            .write_batch(&[
                Write::Append(vec![event(EventKind::RunStarted, 1, "a", "r")]),
                Write::Append(vec![event(EventKind::CallRequested, 2, "a", "r"), out_of_range]),
                Write::Append(vec![event(EventKind::RunEnded, 3, "a", "r")]),
            ])
            .unwrap();
        assert!(matches!(&results[0], Ok(WriteOutcome::Appended(e)) if seqs(e) == [1]));
        let err = results[1].as_ref().unwrap_err();
        assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot record audit event: step {} is out of range", u64::MAX));
        assert!(matches!(&results[2], Ok(WriteOutcome::Appended(e)) if seqs(e) == [2]));
        assert!(matches!(store.verify().unwrap(), VerifyReport::Ok { count: 2, .. }));
    }

    fn a_read_only_store_reads_but_cannot_write(path: DbLocation) {
        SqlStore::open(&path).unwrap().append(&[event(EventKind::RunStarted, 1, "a", "r")]).unwrap();
        let mut reader = SqlStore::open_read_only(&path).unwrap();
        assert_eq!(seqs(&reader.query(&EventQuery::default()).unwrap()), [1]);
        let err = reader.append(&[event(EventKind::RunEnded, 2, "a", "r")]).unwrap_err();
        assert!(matches!(err, StoreError::Write { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("cannot write to audit database `{}`: ", path)), "{err}");
    }
}
