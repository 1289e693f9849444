//! The group-commit writer against a real database file.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use custos_core::{Digest, EventKind, ToolDescriptor};
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::store::{EventQuery, ToolRecord};
use crate::{SqlStore, VerifyReport};

fn db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    (dir, path)
}

fn event(i: u64) -> NewEvent {
    let mut e = NewEvent::new(EventKind::CallRequested, i as i64);
    e.step = Some(i);
    e
}

fn verify(path: &Path) -> VerifyReport {
    SqlStore::open_read_only(path).unwrap().verify().unwrap()
}

/// Waits (in a test only) until `done` holds, failing after ten seconds.
async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

#[test]
fn handle_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<AuditLog>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_land_once_in_a_verified_chain() {
    let (_dir, path) = db();
    let log = AuditLog::start(Box::new(SqlStore::open(&path).unwrap())).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![event(i)]).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let stored = task.await.unwrap().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].event, event(i as u64));
        seqs.push(stored[0].seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.writes, 200);
    assert!(stats.batches >= 1 && stats.batches <= 200, "{stats:?}");
    log.shutdown().await;
    assert!(matches!(verify(&path), VerifyReport::Ok { count: 200, .. }));
}

/// A store whose first batch waits for the test's signal, so the test can queue requests
/// behind it and know exactly what the next batches hold.
struct Gated {
    inner: SqlStore,
    entered: Option<std_mpsc::Sender<()>>,
    release: Option<std_mpsc::Receiver<()>>,
}

impl Store for Gated {
    fn append(&mut self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.append(events)
    }
    fn observe_tools(
        &mut self,
        tools: &[ToolDescriptor],
        template: &NewEvent,
    ) -> Result<Vec<ToolSighting>, StoreError> {
        self.inner.observe_tools(tools, template)
    }
    fn write_batch(&mut self, writes: &[Write]) -> Result<Vec<WriteResult>, StoreError> {
        if let (Some(entered), Some(release)) = (self.entered.take(), self.release.take()) {
            entered.send(()).unwrap();
            release.recv().unwrap();
        }
        self.inner.write_batch(writes)
    }
    fn query(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.query(q)
    }
    fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
        self.inner.tools()
    }
    fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.verify()
    }
    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError> {
        self.inner.head()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_during_a_commit_share_the_next_transactions() {
    // (max_batch, transactions): the first request alone, then the 49 queued behind it in
    // batches of at most max_batch.
    for (max_batch, batches) in [(256, 2), (8, 1 + 49_u64.div_ceil(8)), (1, 50)] {
        let (_dir, path) = db();
        let (entered_tx, entered) = std_mpsc::channel();
        let (release, release_rx) = std_mpsc::channel();
        let store =
            Gated { inner: SqlStore::open(&path).unwrap(), entered: Some(entered_tx), release: Some(release_rx) };
        let log = AuditLog::start_with(Box::new(store), AuditLogConfig { queue: 1024, max_batch }).unwrap();

        let append = |i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![event(i)]).await })
        };
        let mut tasks = vec![append(0)];
        tokio::task::spawn_blocking(move || entered.recv()).await.unwrap().unwrap();
        tasks.extend((1..50).map(append));
        wait_until(|| log.stats().queued == 49).await;
        release.send(()).unwrap();

        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = log.stats();
        assert_eq!((stats.batches, stats.writes, stats.queued), (batches, 50, 0), "max_batch {max_batch}");
        log.shutdown().await;
        assert!(matches!(verify(&path), VerifyReport::Ok { count: 50, .. }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_queue_applies_backpressure_without_losing_writes() {
    let (_dir, path) = db();
    let config = AuditLogConfig { queue: 1, max_batch: 1 };
    let log = AuditLog::start_with(Box::new(SqlStore::open(&path).unwrap()), config).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![event(i)]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    log.shutdown().await;
    assert!(matches!(verify(&path), VerifyReport::Ok { count: 20, .. }));
}

/// A store whose every transaction fails, like a full disk.
struct Failing;

fn disk_full() -> StoreError {
    StoreError::Write { path: "audit.db".into(), reason: "database or disk is full".into() }
}

impl Store for Failing {
    fn append(&mut self, _: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        Err(disk_full())
    }
    fn observe_tools(&mut self, _: &[ToolDescriptor], _: &NewEvent) -> Result<Vec<ToolSighting>, StoreError> {
        Err(disk_full())
    }
    fn write_batch(&mut self, _: &[Write]) -> Result<Vec<WriteResult>, StoreError> {
        Err(disk_full())
    }
    fn query(&self, _: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        Err(disk_full())
    }
    fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
        Err(disk_full())
    }
    fn verify(&self) -> Result<VerifyReport, StoreError> {
        Err(disk_full())
    }
    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError> {
        Err(disk_full())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_fails_every_waiter_in_it() {
    let log = AuditLog::start(Box::new(Failing)).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![event(i)]).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "cannot write to audit database `audit.db`: database or disk is full");
    }
    let err = log.observe_tools(Vec::new(), event(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Write { .. }));
    // The writer survives a failed transaction; it is the store that is failing.
    log.flush().await.unwrap();
}

#[tokio::test]
async fn flush_then_shutdown_leaves_everything_durable_and_refuses_more() {
    let (_dir, path) = db();
    let log = AuditLog::start(Box::new(SqlStore::open(&path).unwrap())).unwrap();
    let other = log.clone();
    let stored = log.append(vec![event(1), event(2)]).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    let read = ToolDescriptor::from_listing("files", json!({"name": "read"})).unwrap();
    let sightings = log.observe_tools(vec![read.clone()], event(3)).await.unwrap();
    assert_eq!(sightings, [ToolSighting::New]);
    let sightings = other.observe_tools(vec![read], event(4)).await.unwrap();
    assert_eq!(sightings, [ToolSighting::Unchanged]);

    log.flush().await.unwrap();
    assert!(matches!(verify(&path), VerifyReport::Ok { count: 3, .. }));

    log.shutdown().await;
    for err in [other.append(vec![event(5)]).await.unwrap_err(), other.flush().await.unwrap_err()] {
        assert!(matches!(err, StoreError::Closed), "{err:?}");
        assert_eq!(err.to_string(), "the audit log writer has stopped");
    }
    other.shutdown().await; // a second shutdown is harmless
    assert!(matches!(verify(&path), VerifyReport::Ok { count: 3, .. }));
}
