//! The hash chain: how an event becomes a stored body and digest, and how a stored log is
//! walked and its first problem classified.
//!
//! Nothing here knows which database holds the rows, so every store implementation encodes and
//! verifies exactly the same way and a log can move between them.
//!
//! # Body
//!
//! An event's body is the canonical JSON ([`custos_core::canonical_json`]) of
//! `{"seq","prev","time_ms","kind","agent","run","step","tool","decision","detail"}`, where
//! `prev` is the previous event's digest in hex ([`Digest::ZERO`] for event 1), and its digest
//! is SHA-256 of those bytes. Because `seq` and `prev` are inside what is hashed, an event cannot
//! be changed, removed, moved or inserted without breaking a digest or a link.
//!
//! The columns a store keeps beside the body for searching (kind, time, agent, ...) are derived
//! from it; verification checks they still agree, so a search cannot be steered by editing them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

use custos_core::{write_canonical, AgentId, Digest, EventKind, NewEvent, RunId, ToolRef};
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::StoreError;

/// The columns derived from the body for searching, in the order [`derived_columns`] fills them.
pub(crate) const DERIVED_COLUMNS: [&str; 7] = ["kind", "time_ms", "agent", "run", "step", "tool", "decision"];

/// One database cell, as far as the chain cares: enough to compare a derived column with the
/// body without tying this module to a driver.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    /// A real or a blob: never what the store writes, so it never matches.
    Other,
}

impl Cell {
    fn opt_text(s: Option<String>) -> Self {
        s.map_or(Self::Null, Self::Text)
    }

    fn as_ref(&self) -> CellRef<'_> {
        match self {
            Self::Null => CellRef::Null,
            Self::Int(i) => CellRef::Int(*i),
            Self::Text(s) => CellRef::Text(s),
            Self::Other => CellRef::Other,
        }
    }
}

/// A [`Cell`] borrowed from wherever the row is held: the driver's current row, an owned
/// [`RawRow`] or a [`Batch`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum CellRef<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// A real or a blob: never what the store writes, so it never matches.
    Other,
}

/// An event ready to insert: its body, digest and derived columns.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub body: String,
    pub hash: Digest,
    pub columns: [Cell; 7],
}

/// How deep arrays and objects may nest in an event's detail. The decoder reads a body with
/// `serde_json`, which stops at 128 levels; a detail deeper than this is refused when it is
/// written, so the log never holds an event that its own reader cannot read back.
pub const MAX_DETAIL_DEPTH: usize = 100;

/// Encodes `event` as event number `seq` chained to `prev`.
///
/// INVARIANT: what this writes, [`decode`] reads back as the same event: every field but the
/// detail has a type whose text form parses back (a `ToolRef` is checked when it is built), and
/// the detail is refused here when it nests past what the decoder reads.
pub(crate) fn encode(seq: u64, prev: &Digest, event: &NewEvent) -> Result<Encoded, StoreError> {
    if depth(&event.detail) > MAX_DETAIL_DEPTH {
        return Err(StoreError::InvalidEvent {
            reason: format!("the detail of a `{}` event nests deeper than {MAX_DETAIL_DEPTH} levels", event.kind),
        });
    }
    let columns = derived_columns(event)?;
    // The canonical form of the body object, written field by field in sorted key order rather
    // than built as a map first: the detail is not copied.
    // `None`: the event's own detail, written where it is instead of copied into a value.
    let fields: [(&str, Option<Value>); 10] = [
        ("agent", Some(Value::from(event.agent.as_ref().map(|a| a.0.as_str())))),
        ("decision", Some(Value::from(event.decision.as_deref()))),
        ("detail", None),
        ("kind", Some(Value::from(event.kind.as_str()))),
        ("prev", Some(Value::from(prev.to_hex()))),
        ("run", Some(Value::from(event.run.as_ref().map(|r| r.0.as_str())))),
        ("seq", Some(Value::from(seq))),
        ("step", Some(Value::from(event.step))),
        ("time_ms", Some(Value::from(event.time_ms))),
        ("tool", Some(Value::from(event.tool.as_ref().map(ToString::to_string)))),
    ];
    let mut bytes = Vec::with_capacity(256);
    bytes.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        write_canonical(&Value::from(*key), &mut bytes);
        bytes.push(b':');
        write_canonical(value.as_ref().unwrap_or(&event.detail), &mut bytes);
    }
    bytes.push(b'}');
    let hash = Digest::of(&bytes);
    let body = String::from_utf8(bytes)
        .map_err(|e| StoreError::Internal { reason: format!("canonical json is not utf-8: {e}") })?;
    Ok(Encoded { body, hash, columns })
}

/// How many arrays and objects deep `value` nests (a scalar is 0), walked without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|c| (c, d + 1))),
            _ => continue,
        }
        deepest = deepest.max(d + 1);
    }
    deepest
}

/// `value` with every array or object deeper than `levels` replaced by a string saying so: for
/// copying JSON that a peer sent (a tool's result, its arguments) into an event's detail, which
/// must stay within [`MAX_DETAIL_DEPTH`]. The digest of the original is recorded beside it.
pub fn shallow(value: &Value, levels: usize) -> Value {
    match value {
        Value::Array(_) | Value::Object(_) if levels == 0 => Value::from("[nested deeper than the log records]"),
        Value::Array(items) => Value::Array(items.iter().map(|v| shallow(v, levels - 1)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shallow(v, levels - 1))).collect()),
        other => other.clone(),
    }
}

/// The searchable columns of `event`, in [`DERIVED_COLUMNS`] order.
pub(crate) fn derived_columns(event: &NewEvent) -> Result<[Cell; 7], StoreError> {
    let step = match event.step {
        None => Cell::Null,
        Some(step) => Cell::Int(
            i64::try_from(step)
                .map_err(|_| StoreError::InvalidEvent { reason: format!("step {step} is out of range") })?,
        ),
    };
    Ok([
        Cell::Text(event.kind.as_str().to_owned()),
        Cell::Int(event.time_ms),
        Cell::opt_text(event.agent.as_ref().map(|a| a.0.clone())),
        Cell::opt_text(event.run.as_ref().map(|r| r.0.clone())),
        step,
        Cell::opt_text(event.tool.as_ref().map(ToString::to_string)),
        Cell::opt_text(event.decision.clone()),
    ])
}

/// A body read back: its claimed link, and the event.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub prev: Digest,
    pub event: NewEvent,
}

/// Why a body could not be read back.
#[derive(Debug)]
pub(crate) enum DecodeError {
    NotJson,
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("content is not valid json"),
            Self::Malformed(why) => write!(f, "content is not a well-formed event: {why}"),
        }
    }
}

/// Reads a stored body back into an event.
pub(crate) fn decode(body: &str) -> Result<Decoded, DecodeError> {
    let fields = BodyFields::<Value>::read(body)?;
    // A body without its position is not one the store wrote (the walk reads it to check it).
    let (_, prev) = fields.link()?;
    let tool = fields.tool.as_deref().map(str::parse::<ToolRef>).transpose();
    let owned = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
    let event = NewEvent {
        kind: fields.kind,
        time_ms: fields.time_ms,
        agent: owned(fields.agent).map(AgentId),
        run: owned(fields.run).map(RunId),
        step: fields.step,
        tool: tool.map_err(|e| DecodeError::Malformed(e.to_string()))?,
        decision: owned(fields.decision),
        detail: fields.detail,
    };
    Ok(Decoded { prev, event })
}

/// The outcome of walking the whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every event is intact and linked to the one before it. `head` is the last event's digest:
    /// record it elsewhere to detect later truncation or rewriting of the tail, which no chain
    /// can detect on its own.
    Ok { count: u64, head: Option<Digest> },
    /// The first problem found walking in `seq` order; events after it were not checked.
    Broken { seq: u64, problem: Tamper, detail: String },
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }
}

/// What kind of tampering (or damage) the first problem looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tamper {
    /// An event's content, digest or searchable columns were changed, or an event was rewritten
    /// with a recomputed digest that its successor does not link to.
    Modified,
    /// An event is missing: a gap in numbering, or later events renumbered to close it.
    Deleted,
    /// An event that was never appended sits in the log.
    Inserted,
    /// Events are out of their original order.
    Reordered,
}

impl Tamper {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
        }
    }
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored row as a store reads it for verification.
#[derive(Clone, Debug)]
pub(crate) struct RawRow {
    /// The row's own sequence number (the primary key), which may disagree with the body's.
    pub seq: i64,
    pub hash: Cell,
    pub body: Cell,
    /// In [`DERIVED_COLUMNS`] order.
    pub columns: [Cell; 7],
}

impl RawRow {
    fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            seq: self.seq,
            hash: self.hash.as_ref(),
            body: self.body.as_ref(),
            columns: self.columns.each_ref().map(Cell::as_ref),
        }
    }
}

/// One stored row, its cells borrowed: what a store hands [`Batch::push`] while the row is current.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RowRef<'a> {
    /// The row's own sequence number (the primary key), which may disagree with the body's.
    pub seq: i64,
    pub hash: CellRef<'a>,
    pub body: CellRef<'a>,
    /// In [`DERIVED_COLUMNS`] order.
    pub columns: [CellRef<'a>; 7],
}

/// Where a walk reads its rows from, in ascending row `seq` order, one at a time.
pub(crate) trait ReadRows {
    type Error;

    /// Reads the next row into `batch`; `Ok(false)` when there are no more rows.
    fn read_into(&mut self, batch: &mut Batch) -> Result<bool, Self::Error>;
}

/// Owned rows, each copied into the batch.
impl<I, E> ReadRows for I
where
    I: Iterator<Item = Result<RawRow, E>>,
{
    type Error = E;

    fn read_into(&mut self, batch: &mut Batch) -> Result<bool, E> {
        match self.next() {
            Some(row) => {
                batch.push(row?.as_ref());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Rows read for inspection. Their text is copied into one buffer and their cells point into it,
/// so reading a row allocates nothing once the buffers have grown to a batch's size; a batch's
/// buffers are reused for the batch after next.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Every text cell of the batch, one after another.
    text: String,
    rows: Vec<SlotRow>,
}

/// A row of a [`Batch`]: its cells as places in the batch's text.
#[derive(Debug)]
struct SlotRow {
    seq: i64,
    hash: Slot,
    body: Slot,
    columns: [Slot; 7],
}

/// A [`CellRef`] whose text is `start..end` of the batch's text.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Null,
    Int(i64),
    Text { start: usize, end: usize },
    Other,
}

impl Batch {
    /// Copies `row` to the end of the batch.
    pub(crate) fn push(&mut self, row: RowRef<'_>) {
        let mut slot = |cell: CellRef<'_>| match cell {
            CellRef::Null => Slot::Null,
            CellRef::Int(i) => Slot::Int(i),
            CellRef::Text(s) => {
                let start = self.text.len();
                self.text.push_str(s);
                Slot::Text { start, end: self.text.len() }
            }
            CellRef::Other => Slot::Other,
        };
        let (hash, body) = (slot(row.hash), slot(row.body));
        let columns = row.columns.map(&mut slot);
        self.rows.push(SlotRow { seq: row.seq, hash, body, columns });
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }

    fn cell(&self, slot: Slot) -> CellRef<'_> {
        match slot {
            Slot::Null => CellRef::Null,
            Slot::Int(i) => CellRef::Int(i),
            // INVARIANT: a text slot is the range `push` copied its text to, so `get` finds it;
            // were it ever not found, the cell would read as one that matches nothing.
            Slot::Text { start, end } => self.text.get(start..end).map_or(CellRef::Other, CellRef::Text),
            Slot::Other => CellRef::Other,
        }
    }

    fn row(&self, row: &SlotRow) -> RowRef<'_> {
        RowRef {
            seq: row.seq,
            hash: self.cell(row.hash),
            body: self.cell(row.body),
            columns: row.columns.map(|slot| self.cell(slot)),
        }
    }

    /// Inspects every row, in order, onto the end of `out`.
    fn inspect_into(&self, out: &mut VecDeque<Inspected>) {
        out.extend(self.rows.iter().map(|row| inspect(self.row(row))));
    }
}

/// Walks `rows`, which must come in ascending row `seq` order, and reports the first problem.
///
/// Streaming: it holds a few batches of rows (see [`in_flight`]) and two digests, whatever the
/// length of the log. Errors from `rows` (the database failing mid-walk) are passed through.
pub(crate) fn verify_rows<R: ReadRows>(rows: R) -> Result<VerifyReport, R::Error> {
    verify_rows_with(rows, in_flight())
}

/// [`verify_rows`] with at most `in_flight` batches inspected at once.
fn verify_rows_with<R: ReadRows>(rows: R, in_flight: usize) -> Result<VerifyReport, R::Error> {
    std::thread::scope(|scope| {
        let mut rows = Inspecting {
            rows,
            scope,
            in_flight: in_flight.max(1),
            running: VecDeque::new(),
            ready: VecDeque::new(),
            spare: Vec::new(),
            error: None,
            read_all: false,
        }
        .peekable();
        let mut walk = Walk { expected: 1, last: Digest::ZERO, before_last: None };
        while let Some(row) = rows.next() {
            let row = row?;
            // The next row is consulted to tell a swap from a renumbering and to tell which side
            // of a broken link was rewritten. A next row that fails its own checks gives no
            // evidence.
            let next = match rows.peek() {
                Some(Ok(Inspected { checked: Ok(next), .. })) => Some(next),
                _ => None,
            };
            if let Some(broken) = walk.step(&row, next) {
                return Ok(broken);
            }
        }
        let count = walk.expected.saturating_sub(1);
        Ok(VerifyReport::Ok { count, head: (count > 0).then_some(walk.last) })
    })
}

/// Rows inspected in batches: each batch is inspected (digest, decode, columns) on a thread of
/// its own while the reader reads the next ones; rows still come out in order.
const INSPECT_BATCH: usize = 4096;

/// How many batches are inspected at once: one per core and one more. Inspecting a row costs
/// more than reading it, so with two cores the reader and two inspecting threads share both
/// cores, where one inspecting thread would leave the reader's core idle half the time. The
/// cap bounds memory (a batch is about two megabytes) on machines with many cores.
fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).saturating_add(1).min(9)
}

/// A batch's buffers and the rows inspected from it.
type Inspection = (Batch, VecDeque<Inspected>);

struct Inspecting<'scope, 'env, R: ReadRows> {
    rows: R,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// How many batches may be inspected at once.
    in_flight: usize,
    /// The batches being inspected, oldest first.
    running: VecDeque<std::thread::ScopedJoinHandle<'scope, Inspection>>,
    /// The inspected rows being handed out.
    ready: VecDeque<Inspected>,
    /// Buffers of batches already handed out, to read the next batches into.
    spare: Vec<Inspection>,
    /// What reading failed with, handed out after every row read before it.
    error: Option<R::Error>,
    read_all: bool,
}

impl<R: ReadRows> Inspecting<'_, '_, R> {
    /// Reads up to [`INSPECT_BATCH`] rows into `batch`, noting the end or an error.
    fn read_batch(&mut self, batch: &mut Batch) {
        while batch.len() < INSPECT_BATCH && !self.read_all {
            match self.rows.read_into(batch) {
                Ok(true) => {}
                Ok(false) => self.read_all = true,
                Err(e) => {
                    self.error = Some(e);
                    self.read_all = true;
                }
            }
        }
    }
}

impl<R: ReadRows> Iterator for Inspecting<'_, '_, R> {
    type Item = Result<Inspected, R::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.ready.pop_front() {
                return Some(Ok(row));
            }
            // Read ahead while the batches before are inspected.
            while self.running.len() < self.in_flight && !self.read_all {
                let (mut batch, mut inspected) = self.spare.pop().unwrap_or_default();
                batch.clear();
                self.read_batch(&mut batch);
                if batch.len() == 0 {
                    self.spare.push((batch, inspected));
                } else {
                    self.running.push_back(self.scope.spawn(move || {
                        batch.inspect_into(&mut inspected);
                        (batch, inspected)
                    }));
                }
            }
            // INVARIANT: batches are joined in the order they were read.
            let Some(oldest) = self.running.pop_front() else {
                // Every row read has been handed out: what reading failed with comes last.
                return self.error.take().map(Err);
            };
            match oldest.join() {
                Ok((batch, inspected)) => {
                    // `ready` is empty: its buffer goes with the batch's to a later batch.
                    let emptied = std::mem::replace(&mut self.ready, inspected);
                    self.spare.push((batch, emptied));
                }
                Err(panicked) => std::panic::resume_unwind(panicked),
            }
        }
    }
}

/// A row after the checks that need no other row.
#[derive(Debug)]
struct Inspected {
    seq: i64,
    /// `Err` holds the detail of a [`Tamper::Modified`] finding.
    checked: Result<Checked, String>,
}

/// What a row that is consistent with itself claims about its place in the chain.
#[derive(Debug)]
struct Checked {
    body_seq: u64,
    prev: Digest,
    hash: Digest,
}

fn inspect(row: RowRef<'_>) -> Inspected {
    Inspected { seq: row.seq, checked: check_row(&row) }
}

/// Checks a row against itself: digest, body and derived columns.
fn check_row(row: &RowRef<'_>) -> Result<Checked, String> {
    let n = row.seq;
    let CellRef::Text(body) = row.body else {
        return Err(format!("event {n}: content is not text"));
    };
    let CellRef::Text(stored) = row.hash else {
        return Err(format!("event {n}: stored digest is not text"));
    };
    let hash = Digest::of(body.as_bytes());
    // The store writes lowercase hex: anything else (uppercase, another length) does not match.
    if stored.as_bytes() != hash.hex().as_slice() {
        return Err(format!("event {n}: stored digest does not match its content"));
    }
    // The detail is hashed, never compared: read as JSON, not built.
    let fields = BodyFields::<IgnoredAny>::read(body).map_err(|e| format!("event {n}: {e}"))?;
    let expected = fields.columns().map_err(|e| format!("event {n}: {e}"))?;
    for ((name, want), got) in DERIVED_COLUMNS.iter().zip(&expected).zip(&row.columns) {
        if !want.is(*got) {
            return Err(format!("event {n}: column `{name}` does not match its content"));
        }
    }
    let (body_seq, prev) = fields.link().map_err(|e| format!("event {n}: {e}"))?;
    Ok(Checked { body_seq, prev, hash })
}

/// A stored body's fields, strings borrowed from it where they have no escapes. `D` is what
/// the detail is read as: a [`Value`] to rebuild the event, [`IgnoredAny`] to check a body
/// without building its detail (most of the work of decoding, saved per event by `verify`).
#[derive(serde::Deserialize)]
struct BodyFields<'a, D> {
    seq: Option<u64>,
    #[serde(borrow)]
    prev: Option<Cow<'a, str>>,
    kind: EventKind,
    time_ms: i64,
    #[serde(borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run: Option<Cow<'a, str>>,
    step: Option<u64>,
    #[serde(borrow)]
    tool: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Option<Cow<'a, str>>,
    detail: D,
}

/// A derived column's value as the body implies it.
enum Want<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl Want<'_> {
    fn text<'b>(s: Option<&'b Cow<'_, str>>) -> Want<'b> {
        s.map_or(Want::Null, |s| Want::Text(s))
    }

    fn is(&self, cell: CellRef<'_>) -> bool {
        match (self, cell) {
            (Want::Null, CellRef::Null) => true,
            (Want::Int(a), CellRef::Int(b)) => *a == b,
            (Want::Text(a), CellRef::Text(b)) => *a == b,
            _ => false,
        }
    }
}

impl<'a, D: serde::Deserialize<'a>> BodyFields<'a, D> {
    fn read(body: &'a str) -> Result<Self, DecodeError> {
        serde_json::from_str(body).map_err(|e| {
            if e.is_data() {
                DecodeError::Malformed(e.to_string())
            } else {
                DecodeError::NotJson
            }
        })
    }

    /// The body's position and the digest it links to.
    fn link(&self) -> Result<(u64, Digest), DecodeError> {
        let seq = self.seq.ok_or_else(|| DecodeError::Malformed("no `seq` number".into()))?;
        let prev = self.prev.as_deref().and_then(|p| p.parse::<Digest>().ok());
        Ok((seq, prev.ok_or_else(|| DecodeError::Malformed("no `prev` digest".into()))?))
    }

    /// The derived columns, in [`DERIVED_COLUMNS`] order, as [`derived_columns`] gives them.
    fn columns(&self) -> Result<[Want<'_>; 7], DecodeError> {
        if let Some(tool) = &self.tool {
            // As `ToolRef` parses it; a parsed tool prints back as the same text.
            if !matches!(tool.split_once('/'), Some((server, name)) if !server.is_empty() && !name.is_empty()) {
                return Err(DecodeError::Malformed(format!("`{tool}` is not a tool reference: expected SERVER/TOOL")));
            }
        }
        let step = match self.step {
            None => Want::Null,
            Some(step) => {
                Want::Int(i64::try_from(step).map_err(|_| DecodeError::Malformed("step out of range".into()))?)
            }
        };
        Ok([
            Want::Text(self.kind.as_str()),
            Want::Int(self.time_ms),
            Want::text(self.agent.as_ref()),
            Want::text(self.run.as_ref()),
            step,
            Want::text(self.tool.as_ref()),
            Want::text(self.decision.as_ref()),
        ])
    }
}

/// The state of a walk: where it is and the last two digests.
struct Walk {
    /// The row number the next row must have; one more than the rows accepted so far.
    expected: u64,
    /// The digest of the last accepted row; [`Digest::ZERO`] before the first.
    last: Digest,
    /// The digest of the row before that, to recognise a link that skips an inserted event.
    before_last: Option<Digest>,
}

impl Walk {
    /// Accepts `row` or returns the first problem it shows.
    fn step(&mut self, row: &Inspected, next: Option<&Checked>) -> Option<VerifyReport> {
        let broken = |seq: u64, problem: Tamper, detail: String| Some(VerifyReport::Broken { seq, problem, detail });
        let expected = self.expected;

        // 1. Numbering: rows are read in order, so a row numbered past the expected one means
        // the rows in between are gone.
        let n = match u64::try_from(row.seq) {
            Ok(n) if n >= 1 => n,
            _ => {
                let detail = format!("a row numbered {} comes before event 1", row.seq);
                return broken(0, Tamper::Inserted, detail);
            }
        };
        if n > expected {
            let detail = if n == expected.saturating_add(1) {
                format!("event {expected} is missing")
            } else {
                format!("events {expected} to {} are missing", n.saturating_sub(1))
            };
            return broken(expected, Tamper::Deleted, detail);
        }
        if n < expected {
            // Only a store that returns rows out of order gets here; say so rather than guess.
            return broken(n, Tamper::Reordered, format!("event {n} is read out of order"));
        }

        // 2. The row against itself.
        let checked = match &row.checked {
            Ok(checked) => checked,
            Err(detail) => return broken(n, Tamper::Modified, detail.clone()),
        };

        // 3. The row's number against the number its (intact) content claims.
        let b = checked.body_seq;
        let next_b = next.map(|c| c.body_seq);
        if b > n {
            if next_b == Some(n) {
                let detail = format!("event {n}: swapped; its row holds event {b} and the next row holds event {n}");
                return broken(n, Tamper::Reordered, detail);
            }
            // Everything after the hole moved down by the same amount: the hole was closed up.
            if b == n.saturating_add(1) || next_b.is_none() || next_b == b.checked_add(1) {
                let detail = if b == n.saturating_add(1) {
                    format!("event {n} is missing: later events were renumbered to close the gap")
                } else {
                    format!(
                        "events {n} to {} are missing: later events were renumbered to close the gap",
                        b.saturating_sub(1)
                    )
                };
                return broken(n, Tamper::Deleted, detail);
            }
            return broken(n, Tamper::Reordered, format!("event {n}: holds the content of event {b}"));
        }
        if b < n {
            // The original event `b` was pushed down to row `n`: rows `b..n` were inserted before
            // it, the first of them at row `b` (which looked intact on its own).
            if b.saturating_add(1) == n || next_b.is_none() || next_b == b.checked_add(1) {
                let detail = format!("event {b}: inserted; the original event {b} was pushed down to row {n}");
                return broken(b, Tamper::Inserted, detail);
            }
            return broken(n, Tamper::Reordered, format!("event {n}: holds the content of event {b}"));
        }

        // 4. The link to the previous event.
        if checked.prev != self.last {
            if n == 1 {
                let detail = "event 1: does not start the chain (its previous digest is not zero)";
                return broken(1, Tamper::Modified, detail.to_owned());
            }
            let p = n.saturating_sub(1);
            // If the next event does not link to this one either, this one was rewritten (and
            // its digest recomputed): whatever it links to, it is not what was appended.
            if next.is_some_and(|c| c.prev != checked.hash) {
                let detail = format!(
                    "event {n}: rewritten; it does not link to event {p} and the next event does not link to it"
                );
                return broken(n, Tamper::Modified, detail);
            }
            // This event is genuine (its successor links to it) and links past its predecessor:
            // the predecessor was slipped in.
            if self.before_last == Some(checked.prev) {
                let detail = format!("event {p}: inserted; event {n} links to the event before it");
                return broken(p, Tamper::Inserted, detail);
            }
            // This event is genuine but does not link to its predecessor: the predecessor was
            // rewritten and its digest recomputed.
            let detail = format!("event {p}: rewritten; event {n} does not link to its digest");
            return broken(p, Tamper::Modified, detail);
        }

        self.before_last = Some(self.last);
        self.last = checked.hash;
        self.expected = n.saturating_add(1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_core::{AgentId, EventKind, ToolRef};
    use serde_json::json;

    fn event(i: u64) -> NewEvent {
        let mut e = NewEvent::new(EventKind::CallDecided, 1_000 + i as i64);
        e.agent = Some(AgentId("bot".into()));
        e.step = Some(i);
        e.tool = Some(ToolRef::new("files", "read").unwrap());
        e.decision = Some("allow".into());
        e.detail = json!({"n": i});
        e
    }

    /// A clean chain of `n` rows as a store would hold them.
    fn chain(n: u64) -> Vec<RawRow> {
        let mut prev = Digest::ZERO;
        (1..=n)
            .map(|seq| {
                let enc = encode(seq, &prev, &event(seq)).unwrap();
                prev = enc.hash;
                row(seq as i64, enc)
            })
            .collect()
    }

    fn row(seq: i64, enc: Encoded) -> RawRow {
        RawRow { seq, hash: Cell::Text(enc.hash.to_hex()), body: Cell::Text(enc.body), columns: enc.columns }
    }

    fn walk(rows: Vec<RawRow>) -> VerifyReport {
        verify_rows(rows.into_iter().map(Ok::<_, ()>)).unwrap()
    }

    fn broken(report: &VerifyReport) -> (u64, Tamper) {
        match report {
            VerifyReport::Broken { seq, problem, .. } => (*seq, *problem),
            VerifyReport::Ok { .. } => panic!("expected a broken chain"),
        }
    }

    #[test]
    fn body_is_canonical_json_with_every_key() {
        let enc = encode(1, &Digest::ZERO, &event(1)).unwrap();
        let expected = format!(
            r#"{{"agent":"bot","decision":"allow","detail":{{"n":1}},"kind":"call.decided","prev":"{}","run":null,"seq":1,"step":1,"time_ms":1001,"tool":"files/read"}}"#,
            Digest::ZERO.to_hex()
        );
        assert_eq!(enc.body, expected);
        assert_eq!(enc.hash, Digest::of(expected.as_bytes()));
    }

    #[test]
    fn body_decodes_to_the_same_event() {
        let enc = encode(7, &Digest::of(b"p"), &event(7)).unwrap();
        let dec = decode(&enc.body).unwrap();
        assert_eq!((dec.prev, dec.event), (Digest::of(b"p"), event(7)));
        assert_eq!(BodyFields::<IgnoredAny>::read(&enc.body).unwrap().link().unwrap(), (7, Digest::of(b"p")));
    }

    /// A detail `levels` arrays deep.
    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn a_detail_the_decoder_could_not_read_is_refused_when_written() {
        let mut e = event(1);
        e.detail = json!({ "result": nested(MAX_DETAIL_DEPTH - 1) });
        let enc = encode(1, &Digest::ZERO, &e).unwrap();
        assert_eq!(decode(&enc.body).unwrap().event, e);
        e.detail = json!({ "result": nested(MAX_DETAIL_DEPTH) });
        assert!(matches!(encode(1, &Digest::ZERO, &e), Err(StoreError::InvalidEvent { .. })));
        // Past the bound the decoder would fail: the bound is what keeps the two in step.
        e.detail = json!({ "result": nested(200) });
        let body = serde_json::to_string(&json!({"seq": 1, "prev": Digest::ZERO.to_hex(), "kind": "call.decided",
            "time_ms": 1, "detail": e.detail}))
        .unwrap();
        assert!(decode(&body).is_err());
        // Copied through `shallow`, any depth fits.
        e.detail = json!({ "result": shallow(&nested(500), 32) });
        assert!(encode(1, &Digest::ZERO, &e).is_ok());
        assert_eq!(shallow(&json!({"a": [1, {"b": 2}]}), 2), json!({"a": [1, "[nested deeper than the log records]"]}));
    }

    /// Any JSON detail of bounded depth: what events carry.
    fn detail() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("json numbers are finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

        /// Whatever an event of any kind carries, the body the writer makes is one the decoder
        /// reads back, and reading it back and writing it again gives the same bytes: the
        /// stored digest is the digest of what the reader sees.
        #[test]
        fn every_event_kind_round_trips(
            kind in proptest::sample::select(EventKind::ALL.to_vec()),
            time_ms in proptest::prelude::any::<i64>(),
            agent in proptest::option::of(proptest::prelude::any::<String>()),
            run in proptest::option::of(proptest::prelude::any::<String>()),
            step in proptest::option::of(0..=i64::MAX as u64),
            tool in proptest::option::of(("[^/]{1,12}", proptest::prelude::any::<String>())),
            decision in proptest::option::of(proptest::prelude::any::<String>()),
            detail in detail(),
            seq in 1..=i64::MAX as u64,
        ) {
            let mut e = NewEvent::new(kind, time_ms);
            e.agent = agent.map(AgentId);
            e.run = run.map(custos_core::RunId);
            e.step = step;
            // Every tool a `ToolRef` can hold; the ones it refuses never reach the writer.
            e.tool = tool.and_then(|(server, name)| ToolRef::new(server, name).ok());
            e.decision = decision;
            e.detail = detail;
            let prev = Digest::of(&seq.to_be_bytes());
            let enc = encode(seq, &prev, &e).unwrap();
            let dec = decode(&enc.body).unwrap();
            proptest::prop_assert_eq!(dec.prev, prev);
            let again = encode(seq, &prev, &dec.event).unwrap();
            proptest::prop_assert_eq!(&again.body, &enc.body);
            proptest::prop_assert_eq!(again.hash, enc.hash);
            proptest::prop_assert_eq!(&dec.event.tool, &e.tool);
            // The walk accepts the row as the store writes it.
            proptest::prop_assert!(walk(vec![row(1, encode(1, &Digest::ZERO, &e).unwrap())]).is_ok());
        }
    }

    #[test]
    fn step_beyond_the_column_range_is_refused() {
        let mut e = event(1);
        e.step = Some(u64::MAX);
        assert!(matches!(encode(1, &Digest::ZERO, &e), Err(StoreError::InvalidEvent { .. })));
    }

    #[test]
    fn clean_chain_reports_count_and_head() {
        let rows = chain(4);
        let head = match &rows[3].hash {
            Cell::Text(h) => h.parse::<Digest>().unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(walk(rows), VerifyReport::Ok { count: 4, head: Some(head) });
        assert_eq!(walk(Vec::new()), VerifyReport::Ok { count: 0, head: None });
    }

    #[test]
    fn link_that_skips_an_event_names_the_skipped_one_inserted() {
        // Row 3 is a forgery linked to event 2, and what was event 3 was re-encoded as event 4
        // (digest recomputed) but still links to event 2.
        let mut rows = chain(2);
        let h2 = match &rows[1].hash {
            Cell::Text(h) => h.parse::<Digest>().unwrap(),
            _ => unreachable!(),
        };
        let mut forged = event(3);
        forged.decision = Some("deny".into());
        let forged = encode(3, &h2, &forged).unwrap();
        let shifted = encode(4, &h2, &event(3)).unwrap();
        rows.push(row(3, forged));
        rows.push(row(4, shifted));
        assert_eq!(broken(&walk(rows)), (3, Tamper::Inserted));
    }

    #[test]
    fn rewritten_link_names_the_side_that_changed() {
        // Event 2 re-encoded with a different prev: neither neighbour links to it.
        let mut rows = chain(3);
        rows[1] = row(2, encode(2, &Digest::of(b"elsewhere"), &event(2)).unwrap());
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));

        // Event 2 rewritten with a recomputed digest: event 3 no longer links to it.
        let mut rows = chain(3);
        let h1 = match &rows[0].hash {
            Cell::Text(h) => h.parse::<Digest>().unwrap(),
            _ => unreachable!(),
        };
        let mut e = event(2);
        e.decision = Some("deny".into());
        rows[1] = row(2, encode(2, &h1, &e).unwrap());
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
    }

    #[test]
    fn event_relinked_past_its_predecessor_is_modified_not_inserted() {
        // Event 3 re-encoded to link to event 1: it looks like event 2 was inserted, but event 4
        // does not link to event 3 either, so event 3 is the one that changed.
        let mut rows = chain(4);
        let h1 = match &rows[0].hash {
            Cell::Text(h) => h.parse::<Digest>().unwrap(),
            _ => unreachable!(),
        };
        rows[2] = row(3, encode(3, &h1, &event(3)).unwrap());
        assert_eq!(broken(&walk(rows)), (3, Tamper::Modified));
    }

    #[test]
    fn first_event_must_link_to_zero() {
        let rows = vec![row(1, encode(1, &Digest::of(b"x"), &event(1)).unwrap())];
        assert_eq!(broken(&walk(rows)), (1, Tamper::Modified));
    }

    #[test]
    fn non_text_cells_are_modifications() {
        let mut rows = chain(2);
        rows[1].body = Cell::Other;
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        let mut rows = chain(2);
        rows[0].hash = Cell::Int(5);
        assert_eq!(broken(&walk(rows)), (1, Tamper::Modified));
    }

    #[test]
    fn rows_numbered_before_one_are_inserted() {
        let mut rows = chain(1);
        rows[0].seq = 0;
        assert_eq!(broken(&walk(rows)), (0, Tamper::Inserted));
    }

    #[test]
    fn batches_hand_rows_out_in_order_and_a_tamper_on_their_edge_is_found() {
        let n = INSPECT_BATCH as u64 * 2 + 10;
        let rows = chain(n);
        let head = match rows.last().map(|r| &r.hash) {
            Some(Cell::Text(hex)) => hex.parse().ok(),
            _ => None,
        };
        assert!(head.is_some());
        assert_eq!(walk(rows), VerifyReport::Ok { count: n, head });
        // The last row of a batch and the first of the next, swapped: only the order is wrong.
        let edge = INSPECT_BATCH;
        let mut rows = chain(n);
        rows.swap(edge - 1, edge);
        let (first, second) = (rows[edge - 1].seq, rows[edge].seq);
        (rows[edge - 1].seq, rows[edge].seq) = (second, first);
        assert_eq!(broken(&walk(rows)), (edge as u64, Tamper::Reordered));
        // The first row of the second batch, rewritten.
        let mut rows = chain(n);
        rows[edge].body = Cell::Text("{}".into());
        assert_eq!(broken(&walk(rows)), (edge as u64 + 1, Tamper::Modified));
    }

    #[test]
    fn a_read_error_comes_after_every_row_read_before_it() {
        let n = INSPECT_BATCH + 5;
        let mut rows: Vec<Result<RawRow, &str>> = chain(n as u64).into_iter().map(Ok).collect();
        rows.push(Err("disk gone"));
        rows.extend(chain(3).into_iter().map(Ok));
        assert_eq!(verify_rows(rows.into_iter()), Err("disk gone"));
        // A tampered row before the error is reported, not the error.
        let mut rows: Vec<Result<RawRow, &str>> = chain(n as u64).into_iter().map(Ok).collect();
        if let Some(Ok(row)) = rows.get_mut(n - 2) {
            row.body = Cell::Text("{}".into());
        }
        rows.push(Err("disk gone"));
        assert_eq!(broken(&verify_rows(rows.into_iter()).unwrap()), (n as u64 - 1, Tamper::Modified));
    }

    #[test]
    fn any_number_of_batches_in_flight_hands_rows_out_in_order() {
        let b = INSPECT_BATCH;
        let n = b * 3 + 7;
        let clean = chain(n as u64);
        let head = match clean.last().map(|r| &r.hash) {
            Some(Cell::Text(hex)) => hex.parse().ok(),
            _ => None,
        };
        for in_flight in 1..=4 {
            let walk = |rows: Vec<RawRow>| verify_rows_with(rows.into_iter().map(Ok::<_, ()>), in_flight).unwrap();
            assert_eq!(walk(clean.clone()), VerifyReport::Ok { count: n as u64, head }, "{in_flight} in flight");
            // A row rewritten at either edge of any batch is found at its own place.
            for at in [0, b - 1, b, 2 * b - 1, 2 * b, 3 * b - 1, 3 * b, n - 1] {
                let mut rows = clean.clone();
                rows[at].body = Cell::Text("{}".into());
                assert_eq!(broken(&walk(rows)), (at as u64 + 1, Tamper::Modified), "{in_flight} in flight, row {at}");
            }
            // A read error on a batch's edge comes after every row before it, and a problem in
            // those rows is reported rather than the error.
            for at in [1, b - 1, b, 2 * b + 1, n] {
                let with_error = |rows: Vec<RawRow>| {
                    let mut rows: Vec<Result<RawRow, &str>> = rows.into_iter().map(Ok).collect();
                    rows.insert(at, Err("disk gone"));
                    verify_rows_with(rows.into_iter(), in_flight)
                };
                assert_eq!(with_error(clean.clone()), Err("disk gone"), "{in_flight} in flight, error at {at}");
                let mut rows = clean.clone();
                rows[at - 1].body = Cell::Text("{}".into());
                let report = with_error(rows).unwrap();
                assert_eq!(broken(&report), (at as u64, Tamper::Modified), "{in_flight} in flight, error at {at}");
            }
        }
    }

    #[test]
    fn a_batch_reads_back_every_cell_as_pushed_and_again_once_reused() {
        let row = |seq: i64, text: &'static str| RowRef {
            seq,
            hash: CellRef::Text(text),
            body: CellRef::Null,
            columns: [
                CellRef::Int(-seq),
                CellRef::Other,
                CellRef::Text(""),
                CellRef::Text(text),
                CellRef::Null,
                CellRef::Text("x"),
                CellRef::Int(i64::MAX),
            ],
        };
        let mut batch = Batch::default();
        // The second round reuses the first round's buffers with shorter and longer text.
        for texts in [["", "\u{e9}\u{1f600}", "plain"], ["a longer text than before", "", "\u{e9}"]] {
            batch.clear();
            let pushed: Vec<RowRef<'_>> = texts.iter().zip(1..).map(|(text, seq)| row(seq, text)).collect();
            for r in &pushed {
                batch.push(*r);
            }
            assert_eq!(batch.len(), pushed.len());
            let read: Vec<RowRef<'_>> = batch.rows.iter().map(|r| batch.row(r)).collect();
            assert_eq!(read, pushed);
        }
    }

    /// Row 2 of a clean chain of 3 with its body rewritten by `edit`, its digest recomputed and
    /// its columns left as they were, unless `columns` changes them too.
    fn rewritten(edit: &str, with: &str, columns: impl FnOnce(&mut [Cell; 7])) -> Vec<RawRow> {
        let mut rows = chain(3);
        let Cell::Text(body) = &rows[1].body else { unreachable!() };
        assert!(body.contains(edit), "{body}");
        let body = body.replace(edit, with);
        rows[1].hash = Cell::Text(Digest::of(body.as_bytes()).to_hex());
        rows[1].body = Cell::Text(body);
        columns(&mut rows[1].columns);
        rows
    }

    #[test]
    fn what_the_checks_read_of_a_body_is_as_strict_as_decoding_it() {
        // An uppercase stored digest is not what the store writes.
        let mut rows = chain(3);
        if let Cell::Text(hex) = &rows[1].hash {
            rows[1].hash = Cell::Text(hex.to_uppercase());
        }
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        // A tool that is not SERVER/TOOL, even with the column to match.
        let rows = rewritten("\"files/read\"", "\"files\"", |c| c[5] = Cell::Text("files".into()));
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        // An unknown kind, a step past the column's range, a detail that is not JSON.
        let rows = rewritten("\"call.decided\"", "\"call.guessed\"", |c| c[0] = Cell::Text("call.guessed".into()));
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        let rows = rewritten("\"step\":2", "\"step\":18446744073709551615", |_| {});
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        let rows = rewritten("\"detail\":{\"n\":2}", "\"detail\":{\"n\":2", |_| {});
        assert_eq!(broken(&walk(rows)), (2, Tamper::Modified));
        // Escaped strings read the same as plain ones: a clean chain whose agent needs escapes.
        let mut prev = Digest::ZERO;
        let rows: Vec<RawRow> = (1..=3)
            .map(|seq| {
                let mut e = event(seq);
                e.agent = Some(AgentId("bot \"quoted\" \u{e9}".into()));
                let enc = encode(seq, &prev, &e).unwrap();
                prev = enc.hash;
                row(seq as i64, enc)
            })
            .collect();
        assert!(matches!(walk(rows), VerifyReport::Ok { count: 3, .. }));
    }
}
