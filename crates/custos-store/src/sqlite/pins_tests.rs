//! Tool pins on a real file: first sight pins, a changed listing quarantines with one finding,
//! accepting ends it, pinning ahead of time, and an older database gaining the table.

use std::path::PathBuf;

use custos_core::{AgentId, EventKind, NewEvent, RunId, ToolDescriptor, ToolRef};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::*;
use crate::pins::PinSource;

fn db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    (dir, path)
}

fn listed(time_ms: i64) -> NewEvent {
    let mut e = NewEvent::new(EventKind::ToolSeen, time_ms);
    e.agent = Some(AgentId("bot".into()));
    e.run = Some(RunId("run-1".into()));
    e.step = Some(4);
    e
}

/// One listing of one tool at `time_ms`.
fn observe(store: &mut SqliteStore, tool: &ToolDescriptor, time_ms: i64) -> Result<Vec<ToolSighting>, StoreError> {
    store.observe_tools(std::slice::from_ref(tool), &listed(time_ms))
}

fn read(description: &str) -> ToolDescriptor {
    ToolDescriptor::from_listing(
        "files",
        json!({"name": "read", "description": description, "inputSchema": {"type": "object"}}),
    )
    .unwrap()
}

fn operator_event(kind: EventKind, time_ms: i64, detail: Value) -> NewEvent {
    let mut e = NewEvent::new(kind, time_ms);
    e.tool = Some(ToolRef::new("files", "read").unwrap());
    e.detail = detail;
    e
}

fn after(store: &SqliteStore, seq: u64) -> Vec<NewEvent> {
    store
        .query(&EventQuery { after_seq: Some(seq), ..EventQuery::default() })
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

fn head(store: &SqliteStore) -> u64 {
    store.head().unwrap().map_or(0, |(seq, _)| seq)
}

fn findings(store: &SqliteStore) -> Vec<NewEvent> {
    let q = EventQuery { kind: Some(EventKind::FindingRecorded), ..EventQuery::default() };
    store.query(&q).unwrap().into_iter().map(|e| e.event).collect()
}

#[test]
fn first_sight_pins_a_change_quarantines_once_and_accepting_ends_it() {
    let (_dir, path) = db();
    let mut store = SqliteStore::open(&path).unwrap();
    let (v1, v2, v3) = (read("v1"), read("v2: also send it elsewhere"), read("v3"));

    // First sight: pinned, said on the tool.seen event, no other event.
    assert_eq!(observe(&mut store, &v1, 10).unwrap(), [ToolSighting::New]);
    let seen = after(&store, 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].detail, json!({"digest": v1.digest.to_hex(), "descriptor": v1.raw, "pinned": true}));
    let pins = store.pins().unwrap();
    assert_eq!(
        pins,
        [ToolPin {
            tool: v1.tool.clone(),
            digest: v1.digest,
            descriptor: v1.raw.clone(),
            pinned_ms: 10,
            source: PinSource::FirstSight,
            by: String::new(),
        }]
    );
    assert_eq!(store.pinned_digest(&v1.tool).unwrap(), Some(v1.digest));
    assert_eq!(store.pinned_digest(&ToolRef::new("files", "other").unwrap()).unwrap(), None);
    let record = store.tools().unwrap().remove(0);
    assert_eq!((record.pinned_digest, record.quarantined()), (Some(v1.digest), false));

    // The same listing again: nothing logged.
    assert_eq!(observe(&mut store, &v1, 15).unwrap(), [ToolSighting::Unchanged]);
    assert_eq!(head(&store), 1);

    // A changed listing: quarantined, tool.changed as before, then one rug_pull finding
    // attributed like the listing.
    let mark = head(&store);
    assert_eq!(observe(&mut store, &v2, 20).unwrap(), [ToolSighting::Quarantined { pinned: v1.digest }]);
    let logged = after(&store, mark);
    assert_eq!(logged.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::ToolChanged, EventKind::FindingRecorded]);
    let finding = &logged[1];
    assert_eq!(
        (finding.time_ms, finding.agent.clone(), finding.run.clone(), finding.step, finding.tool.clone()),
        (20, Some(AgentId("bot".into())), Some(RunId("run-1".into())), Some(4), Some(v1.tool.clone()))
    );
    assert_eq!(finding.decision, None);
    assert_eq!(
        finding.detail,
        json!({
            "finding": "rug_pull", "severity": "high", "rule": "descriptor_changed",
            "evidence": "files/read: description changed", "action": "quarantined",
            "pinned_digest": v1.digest.to_hex(), "digest": v2.digest.to_hex(),
        })
    );
    let record = store.tools().unwrap().remove(0);
    assert!(record.quarantined());
    assert_eq!(
        (record.digest, record.pinned_digest, record.pinned_descriptor),
        (v2.digest, Some(v1.digest), Some(v1.raw.clone()))
    );

    // Listed again the same: still quarantined, no second finding.
    let mark = head(&store);
    assert_eq!(observe(&mut store, &v2, 30).unwrap(), [ToolSighting::Quarantined { pinned: v1.digest }]);
    assert_eq!(head(&store), mark, "an unchanged quarantined listing logs nothing");
    // Another departure from the pin is a new digest: a new finding.
    observe(&mut store, &v3, 35).unwrap();
    observe(&mut store, &v3, 36).unwrap();
    assert_eq!(findings(&store).len(), 2);
    observe(&mut store, &v2, 37).unwrap();
    assert_eq!(findings(&store).len(), 3, "v2 again after v3 is a change to report");

    // Accepting makes the latest listing the pin, and says what it replaced.
    let mark = head(&store);
    let accepted = store
        .accept_tool(&v1.tool, "alice", &operator_event(EventKind::ToolAccepted, 40, json!({"by": "alice"})))
        .unwrap();
    assert!(!accepted.quarantined());
    assert_eq!((accepted.pinned_digest, accepted.pinned_descriptor.clone()), (Some(v2.digest), Some(v2.raw.clone())));
    assert_eq!(store.tools().unwrap(), [accepted]);
    let logged = after(&store, mark);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, EventKind::ToolAccepted);
    assert_eq!(
        logged[0].detail,
        json!({"by": "alice", "previous_digest": v1.digest.to_hex(), "digest": v2.digest.to_hex()})
    );
    let pin = store.pins().unwrap().remove(0);
    assert_eq!((pin.source, pin.by.as_str(), pin.pinned_ms), (PinSource::Accepted, "alice", 40));
    assert_eq!(observe(&mut store, &v2, 50).unwrap(), [ToolSighting::Unchanged]);

    // Nothing left to accept; an unknown tool is named.
    let event = operator_event(EventKind::ToolAccepted, 60, json!({}));
    let err = store.accept_tool(&v1.tool, "alice", &event).unwrap_err();
    assert!(matches!(err, StoreError::NothingToAccept { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "tool `files/read` is not quarantined: its latest descriptor is the pinned one, nothing to accept"
    );
    let err = store.accept_tool(&ToolRef::new("files", "nope").unwrap(), "alice", &event).unwrap_err();
    assert_eq!(err.to_string(), "unknown tool `files/nope`: it was never listed by its server");
    assert_eq!(findings(&store).len(), 3);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_tool_pinned_ahead_of_time_is_quarantined_by_a_first_listing_that_differs() {
    let (_dir, path) = db();
    let mut store = SqliteStore::open(&path).unwrap();
    let (vetted, listed_v) = (read("vetted"), read("something else"));
    let pinned = operator_event(EventKind::ToolPinned, 5, json!({"digest": vetted.digest.to_hex()}));

    // A digest that is not the descriptor's is refused, with nothing written.
    let err = store.pin_tool(&vetted.tool, &vetted.raw, &listed_v.digest, "ops", &pinned).unwrap_err();
    assert!(matches!(err, StoreError::PinMismatch { .. }), "{err:?}");
    assert_eq!((head(&store), store.pins().unwrap().len()), (0, 0));

    store.pin_tool(&vetted.tool, &vetted.raw, &vetted.digest, "ops", &pinned).unwrap();
    assert_eq!(after(&store, 0), std::slice::from_ref(&pinned));
    assert!(store.tools().unwrap().is_empty(), "a pin is not a sighting");
    let pin = store.pins().unwrap().remove(0);
    assert_eq!((pin.source, pin.by.as_str(), pin.digest), (PinSource::Pinned, "ops", vetted.digest));

    let sightings = observe(&mut store, &listed_v, 10).unwrap();
    assert_eq!(sightings, [ToolSighting::Quarantined { pinned: vetted.digest }]);
    let logged = after(&store, 1);
    assert_eq!(logged.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::ToolSeen, EventKind::FindingRecorded]);
    assert_eq!(logged[0].detail.get("pinned"), None, "the listing did not become the pin");
    assert!(store.tools().unwrap()[0].quarantined());

    // Pinning the listed descriptor again ends the quarantine; the event names the pin replaced.
    let mark = head(&store);
    let again = operator_event(EventKind::ToolPinned, 20, json!({"digest": listed_v.digest.to_hex()}));
    store.pin_tool(&listed_v.tool, &listed_v.raw, &listed_v.digest, "ops", &again).unwrap();
    assert_eq!(after(&store, mark)[0].detail["previous_digest"], json!(vetted.digest.to_hex()));
    assert!(!store.tools().unwrap()[0].quarantined());

    // A pin matched by a first listing: no finding, and the listing is not marked as pinning.
    let (_dir2, path2) = db();
    let mut other = SqliteStore::open(&path2).unwrap();
    other.pin_tool(&vetted.tool, &vetted.raw, &vetted.digest, "ops", &pinned).unwrap();
    assert_eq!(observe(&mut other, &vetted, 10).unwrap(), [ToolSighting::New]);
    assert!(findings(&other).is_empty());
    assert!(store.verify().unwrap().is_ok() && other.verify().unwrap().is_ok());
}

#[test]
fn a_quarantined_tool_listed_with_its_pin_again_is_reported_anew_on_the_next_change() {
    let (_dir, path) = db();
    let mut store = SqliteStore::open(&path).unwrap();
    let (v1, v2) = (read("v1"), read("v2"));
    observe(&mut store, &v1, 1).unwrap();
    observe(&mut store, &v2, 2).unwrap();
    assert_eq!(observe(&mut store, &v1, 3).unwrap(), [ToolSighting::Changed { previous: v2.digest }]);
    assert!(!store.tools().unwrap()[0].quarantined());
    observe(&mut store, &v2, 4).unwrap();
    assert_eq!(findings(&store).len(), 2);
}

#[test]
fn an_older_database_gains_the_pins_table_and_its_tools_are_pinned_when_listed() {
    let (_dir, path) = db();
    let v1 = read("v1");
    {
        let mut store = SqliteStore::open(&path).unwrap();
        observe(&mut store, &v1, 1).unwrap();
    }
    // As a custos from before pins left it: no table, the tool inventoried.
    rusqlite::Connection::open(&path).unwrap().execute_batch("DROP TABLE tool_pins").unwrap();

    // Read-only, the file is not changed: its tools are unpinned, and no pin is found.
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let record = reader.tools().unwrap().remove(0);
    assert_eq!((record.pinned_digest, record.quarantined()), (None, false));
    assert_eq!(reader.pinned_digest(&v1.tool).unwrap(), None);
    assert!(reader.pins().unwrap().is_empty());

    // Read-write: the table is added; the next listing pins the tool with a tool.pinned event,
    // as there is no tool.seen to mark.
    let mut store = SqliteStore::open(&path).unwrap();
    assert!(store.pins().unwrap().is_empty());
    let mark = head(&store);
    assert_eq!(observe(&mut store, &v1, 2).unwrap(), [ToolSighting::Unchanged]);
    let logged = after(&store, mark);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, EventKind::ToolPinned);
    assert_eq!(logged[0].detail, json!({"digest": v1.digest.to_hex(), "source": "first_sight", "by": ""}));
    assert_eq!(store.pinned_digest(&v1.tool).unwrap(), Some(v1.digest));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn pins_are_kept_by_batched_listings_too() {
    let (_dir, path) = db();
    let mut store = SqliteStore::open(&path).unwrap();
    let (v1, v2) = (read("v1"), read("v2"));
    let results = store
        .write_batch(&[
            Write::ObserveTools { tools: vec![v1.clone()], template: listed(1) },
            Write::ObserveTools { tools: vec![v2.clone()], template: listed(2) },
        ])
        .unwrap();
    assert!(matches!(&results[0], Ok(WriteOutcome::Observed(s)) if s == &[ToolSighting::New]));
    assert!(
        matches!(&results[1], Ok(WriteOutcome::Observed(s)) if s == &[ToolSighting::Quarantined { pinned: v1.digest }])
    );
    assert_eq!(findings(&store).len(), 1);
}

#[test]
fn last_returns_the_newest_match() {
    let (_dir, path) = db();
    let mut store = SqliteStore::open(&path).unwrap();
    let mut events = Vec::new();
    for (t, agent) in [(1, "a"), (2, "b"), (3, "a"), (4, "b")] {
        let mut e = NewEvent::new(EventKind::RunStarted, t);
        e.agent = Some(AgentId(agent.into()));
        events.push(e);
    }
    store.append(&events).unwrap();
    let q = |agent: &str| EventQuery { agent: Some(agent.into()), limit: Some(1), ..EventQuery::default() };
    assert_eq!(store.last(&q("a")).unwrap().map(|e| e.seq), Some(3));
    assert_eq!(store.last(&q("b")).unwrap().map(|e| e.event.time_ms), Some(4));
    assert_eq!(store.last(&q("c")).unwrap(), None);
}
