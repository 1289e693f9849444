//! One sink's thread: follows the log from the sink's cursor and delivers what is new.
//!
//! Like `custos serve`'s checkpointer, it reads with its own read-only connection a batch at a
//! time (memory does not grow with the log) and never writes to the database, so a sink that is
//! slow or down costs the governed calls nothing. Every `flush_every` it delivers whatever was
//! appended, in batches of at most `batch` events, each moving the cursor only once
//! acknowledged. A failed batch is sent again, whole, after a backoff that doubles up to
//! [`MAX_BACKOFF`]. At shutdown it delivers what is left, trying for at most [`FINAL_FLUSH`];
//! what it could not deliver is sent after the next start, from the cursor.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_store::{DbLocation, EventQuery, SqlStore, Store};

use crate::{Cursor, Format, Record, SiemError, Sink};

/// The first wait after a failed batch; it doubles with each failure in a row.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping gateway keeps trying to deliver what is left.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// How one sink follows the log.
#[derive(Clone, Debug)]
pub struct Follow {
    /// Names the sink in messages and its cursor file.
    pub name: String,
    pub format: Format,
    /// Events per delivery, at most.
    pub batch: usize,
    /// How often new events are looked for.
    pub flush_every: Duration,
}

/// A running sink; [`Running::stop`] delivers what is left and ends it.
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Starts delivering the events of the log in `db` (the embedded file or PostgreSQL) to `sink`,
/// from its cursor in `cursor_dir`. An unreadable cursor or log stops start-up; an unreachable
/// receiver does not.
pub fn start(
    follow: Follow,
    mut sink: Box<dyn Sink>,
    db: &DbLocation,
    cursor_dir: &Path,
) -> Result<Running, SiemError> {
    let store = SqlStore::open_read_only(db).map_err(|e| SiemError::Log(e.to_string()))?;
    let mut cursor = Cursor::open(cursor_dir, &follow.name)?;
    check_cursor(&store, &cursor)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("custos-sink-{}", follow.name))
        .spawn(move || {
            let mut backoff = MIN_BACKOFF;
            let mut failing: Option<String> = None;
            let mut deadline: Option<Instant> = None;
            loop {
                let last = stopping.load(Ordering::Relaxed);
                if last && deadline.is_none() {
                    deadline = Some(Instant::now() + FINAL_FLUSH);
                }
                let outcome = pump(&store, &mut cursor, sink.as_mut(), &follow, deadline);
                match outcome {
                    Ok(()) => {
                        if failing.take().is_some() {
                            eprintln!("custos: sink `{}`: delivering again", follow.name);
                        }
                        backoff = MIN_BACKOFF;
                        if last {
                            break;
                        }
                        std::thread::park_timeout(follow.flush_every);
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if failing.as_deref() != Some(text.as_str()) {
                            eprintln!(
                                "custos: sink `{}`: {text} (retrying; undelivered events wait in the log)",
                                follow.name
                            );
                            failing = Some(text);
                        }
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            eprintln!(
                                "custos: sink `{}`: stopping with events after {} undelivered; they are sent after the next start",
                                follow.name,
                                cursor.seq()
                            );
                            break;
                        }
                        std::thread::park_timeout(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            sink.flush();
        })
        .map_err(|e| SiemError::Config(format!("cannot start the sink thread: {e}")))?;
    Ok(Running { stop, thread })
}

/// Refuses a cursor the log does not bear out: past its end, or at an event whose digest is not
/// the one delivered (a log replaced, cut or rewritten since). Following it would skip events,
/// or send a different history as if it continued the old one.
pub fn check_cursor(store: &dyn Store, cursor: &Cursor) -> Result<(), SiemError> {
    if cursor.seq() == 0 {
        return Ok(());
    }
    let q = EventQuery { after_seq: Some(cursor.seq() - 1), limit: Some(1), ..EventQuery::default() };
    let at = store.query(&q).map_err(|e| SiemError::Log(e.to_string()))?;
    let found = at.first().filter(|e| e.seq == cursor.seq());
    let fix = format!("remove `{}` to deliver the log from its start", cursor.path().display());
    match (found, cursor.uid()) {
        (None, _) => Err(SiemError::Config(format!(
            "the sink delivered up to event {}, past the end of this log: {fix}",
            cursor.seq()
        ))),
        (Some(e), Some(uid)) if e.hash.to_hex() != uid => Err(SiemError::Config(format!(
            "event {} is not the one the sink delivered: the log was replaced or rewritten; {fix}",
            cursor.seq()
        ))),
        _ => Ok(()),
    }
}

/// Delivers the events after the cursor, a batch at a time, until the log has no more (or the
/// shutdown `deadline` passes).
pub fn pump(
    store: &dyn Store,
    cursor: &mut Cursor,
    sink: &mut dyn Sink,
    follow: &Follow,
    deadline: Option<Instant>,
) -> Result<(), SiemError> {
    loop {
        let q = EventQuery { after_seq: Some(cursor.seq()), limit: Some(follow.batch), ..EventQuery::default() };
        let page = store.query(&q).map_err(|e| SiemError::Log(e.to_string()))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        let (seq, uid) = (last.seq, last.hash.to_hex());
        let records: Vec<Record> = page.iter().map(|e| Record::encode(follow.format, e)).collect();
        sink.deliver(&records)?;
        // INVARIANT: the cursor moves only past what the receiver acknowledged.
        cursor.advance(seq, &uid)?;
        sink.flush();
        if page.len() < follow.batch || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
    }
}
