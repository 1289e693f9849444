//! `[audit.checkpoints]`: `custos serve` signs checkpoints of its log as it grows.
//!
//! One thread reads the events appended since it last looked (a page at a time, from its own
//! read-only connection), pushes their digests into a Merkle [`Frontier`] (O(log n) memory,
//! whatever the log's length), and signs a checkpoint every `every_events` new events, or after
//! `every_secs` when the log grew, and once more at shutdown. Each is kept as
//! `<dir>/checkpoint-<size>.json` and copied to `publish_file`, both written whole under a
//! temporary name and then renamed, so a reader never sees half a checkpoint; and POSTed to
//! `publish_url`.
//!
//! Publication has a durable cursor: `<dir>/published.json` holds the size of the last checkpoint
//! the URL acknowledged (a 2xx), written only after the acknowledgement. The latest checkpoint kept
//! is POSTed until one is acknowledged, again after a failure with a growing wait (up to a
//! minute), and at start when the last run stopped before its latest was acknowledged. Only the
//! latest is sent: a checkpoint covers everything every earlier one did, so one missed while the
//! URL was down loses nothing, and one acknowledged is not sent again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_config::CheckpointSettings;
use custos_evidence::merkle::{leaf_hash, Frontier, Hash};
use custos_evidence::{Checkpoint, CheckpointKey};
use custos_store::{DbLocation, EventQuery, SqlStore, Store, StoreError};

/// How often the thread looks for new events.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Events read per query.
const PAGE: usize = 10_000;

/// Calls `each` with the leaf hashes of `store`'s events after `after_seq`, in order, at most
/// `count` of them; returns the last seq read. Reads a page at a time, so memory does not grow
/// with the log.
pub fn each_leaf(
    store: &dyn Store,
    mut after_seq: u64,
    mut count: u64,
    mut each: impl FnMut(Hash),
) -> Result<u64, StoreError> {
    loop {
        let wanted = usize::try_from(count).unwrap_or(usize::MAX).min(PAGE);
        if wanted == 0 {
            return Ok(after_seq);
        }
        let q = EventQuery { after_seq: Some(after_seq), limit: Some(wanted), ..EventQuery::default() };
        let page = store.query(&q)?;
        for e in &page {
            each(leaf_hash(e.hash.as_bytes()));
            after_seq = e.seq;
        }
        count -= page.len() as u64;
        if page.len() < wanted {
            return Ok(after_seq);
        }
    }
}

/// The digests of `store`'s events after `after_seq` pushed into `frontier`, until it holds
/// `until` leaves or the log ends; returns the last seq read.
pub fn extend(store: &dyn Store, frontier: &mut Frontier, after_seq: u64, until: u64) -> Result<u64, StoreError> {
    let count = until.saturating_sub(frontier.size());
    each_leaf(store, after_seq, count, |leaf| frontier.push(leaf))
}

/// The running checkpointer; [`Running::stop`] signs the last checkpoint and ends it.
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

/// POSTs checkpoints to `[audit.checkpoints] publish_url` from the checkpoint thread.
struct Publisher {
    url: hyper::Uri,
    runtime: tokio::runtime::Runtime,
    client: hyper_util::client::legacy::Client<custos_tls::client::HttpsConnector, http_body_util::Full<bytes::Bytes>>,
}

/// Each POST's time limit, and the longest wait before trying again after failures.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
const POST_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The cursor file in the checkpoint folder.
const PUBLISHED: &str = "published.json";

impl Publisher {
    fn new(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| format!("`{url}` is not a url"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the publisher: {e}"))?;
        // The https connector speaks plain http too.
        let tls = custos_tls::client::ClientTls::load(None, None).map_err(|e| e.to_string())?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(tls.connector());
        Ok(Self { url: uri, runtime, client })
    }

    /// One POST of `text`; `Ok` on a 2xx.
    fn post(&self, text: &str) -> Result<(), String> {
        let request = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(text.to_owned())))
            .map_err(|e| e.to_string())?;
        let sent =
            self.runtime.block_on(async { tokio::time::timeout(POST_TIMEOUT, self.client.request(request)).await });
        let why = match sent {
            Ok(Ok(answer)) if answer.status().is_success() => return Ok(()),
            Ok(Ok(answer)) => format!("answered {}", answer.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        let host = self.url.host().unwrap_or_default();
        Err(format!("cannot publish to `{host}`: {why}"))
    }
}

/// Where publication stands: the size the URL last acknowledged, and when to try next.
#[derive(Debug)]
struct Cursor {
    file: PathBuf,
    acknowledged: u64,
    failures: u32,
    next_try: Instant,
}

impl Cursor {
    fn load(dir: &Path) -> Self {
        let file = dir.join(PUBLISHED);
        let acknowledged = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v.get("size").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        Self { file, acknowledged, failures: 0, next_try: Instant::now() }
    }

    fn acknowledge(&mut self, size: u64) -> Result<(), String> {
        write_whole(&self.file, &format!("{{\"size\":{size}}}\n"))?;
        (self.acknowledged, self.failures, self.next_try) = (size, 0, Instant::now());
        Ok(())
    }

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_secs(1u64 << self.failures.min(6)).min(POST_BACKOFF_MAX);
        self.next_try = Instant::now() + wait;
    }
}

/// The latest checkpoint kept in `dir` (largest size), as its size and text.
fn latest_kept(dir: &Path) -> Option<(u64, String)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let size = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("checkpoint-")?.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()?;
    let text = std::fs::read_to_string(dir.join(format!("checkpoint-{size}.json"))).ok()?;
    Some((size, text))
}

struct Checkpointer {
    publisher: Option<(Publisher, Cursor)>,
    /// The latest checkpoint kept: its size and text.
    latest: Option<(u64, String)>,
    settings: CheckpointSettings,
    key: CheckpointKey,
    store: SqlStore,
    frontier: Frontier,
    last_seq: u64,
    signed_size: u64,
    signed_at: Instant,
}

/// Starts signing checkpoints of the log in `db`, on a read-only connection of its own. The directory is made now, so a path that
/// cannot be used stops start-up.
pub fn start(settings: CheckpointSettings, key: CheckpointKey, db: &DbLocation) -> Result<Running, String> {
    std::fs::create_dir_all(&settings.dir)
        .map_err(|e| format!("cannot use the checkpoint folder `{}`: {e}", settings.dir.display()))?;
    let store = SqlStore::open_read_only(db).map_err(|e| crate::context::store_error(db, &e))?;
    let publisher = settings.publish_url.as_deref().map(Publisher::new).transpose()?;
    let publisher = publisher.map(|p| (p, Cursor::load(&settings.dir)));
    let mut c = Checkpointer {
        publisher,
        latest: latest_kept(&settings.dir),
        settings,
        key,
        store,
        frontier: Frontier::new(),
        last_seq: 0,
        signed_size: 0,
        signed_at: Instant::now(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("custos-checkpoints".into())
        .spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                c.tick(false);
                std::thread::park_timeout(LOOK_EVERY);
            }
            c.tick(true);
        })
        .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
    Ok(Running { stop, thread })
}

impl Checkpointer {
    /// Reads what is new and signs when due (`last`: at shutdown, whenever the log grew).
    fn tick(&mut self, last: bool) {
        match extend(&self.store, &mut self.frontier, self.last_seq, u64::MAX) {
            Ok(seq) => self.last_seq = seq,
            Err(e) => {
                eprintln!("custos: checkpoints: cannot read the log: {e}");
                return;
            }
        }
        let grown = self.frontier.size().saturating_sub(self.signed_size);
        let due = grown >= self.settings.every_events
            || (grown > 0 && self.signed_at.elapsed() >= Duration::from_secs(self.settings.every_secs));
        if grown > 0 && (due || last) {
            let checkpoint = self.key.sign(self.frontier.size(), &self.frontier.root(), custos_gateway::now_ms());
            match self.keep(&checkpoint) {
                Ok(()) => {
                    self.signed_size = checkpoint.size;
                    self.signed_at = Instant::now();
                }
                Err(e) => eprintln!("custos: checkpoints: {e}"),
            }
        }
        self.publish(last);
    }

    fn keep(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        let text = serde_json::to_string(checkpoint).map_err(|e| e.to_string())? + "\n";
        write_whole(&self.settings.dir.join(format!("checkpoint-{}.json", checkpoint.size)), &text)?;
        self.latest = Some((checkpoint.size, text.clone()));
        if let Some(publish) = &self.settings.publish_file {
            write_whole(publish, &text)?;
        }
        Ok(())
    }

    /// POSTs the latest checkpoint kept unless the URL has acknowledged it (or a later one), when
    /// the wait after the last failure is over (`last`: at shutdown, whatever the wait).
    fn publish(&mut self, last: bool) {
        let (Some((publisher, cursor)), Some((size, text))) = (&mut self.publisher, &self.latest) else { return };
        if *size <= cursor.acknowledged || !(last || Instant::now() >= cursor.next_try) {
            return;
        }
        match publisher.post(text).and_then(|()| cursor.acknowledge(*size)) {
            Ok(()) => {}
            Err(e) => {
                cursor.failed();
                eprintln!("custos: checkpoints: {e} (the checkpoint of {size} events is sent again later)");
            }
        }
    }
}

/// Writes `text` to `path` under a temporary name, then renames it into place.
fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}
