//! The `tool_pins` table: each change made in the caller's write transaction together with the
//! event that records it, so a pin and the log cannot disagree.

use std::collections::HashMap;
use std::path::Path;

use custos_core::{Digest, NewEvent, ToolRef};
use serde_json::{json, Value};

use super::{append_in, tools_in, write_error};
use crate::error::StoreError;
use crate::pins::{name_key, nameless_digest, PinSource, Resemblance, ToolPin};
use crate::sql::{args, DbError, Sql};
use crate::store::ToolRecord;

/// What a listing is compared with.
pub(crate) struct PinState {
    pub(crate) digest: Digest,
    pub(crate) descriptor: Value,
    /// The last digest a `rug_pull` finding was recorded for; cleared when the tool is listed
    /// with its pin again or pinned anew.
    pub(crate) flagged: Option<Digest>,
}

fn corrupt(path: &Path, tool: &str, what: &str) -> StoreError {
    StoreError::Corrupt { path: path.to_owned(), reason: format!("pin of `{tool}` has {what}") }
}

fn parse_digest(path: &Path, tool: &str, text: &str) -> Result<Digest, StoreError> {
    text.parse().map_err(|_| corrupt(path, tool, "a malformed digest"))
}

/// The pin of `tool`, inside a write transaction.
pub(crate) fn pin_state_in(db: &mut dyn Sql, path: &Path, tool: &str) -> Result<Option<PinState>, StoreError> {
    let row = db
        .query_opt("SELECT digest, descriptor, flagged_digest FROM tool_pins WHERE tool = ?1", &args![tool])
        .and_then(|row| row.map(|r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?))).transpose())
        .map_err(|e| write_error(path, e))?;
    let Some((digest, descriptor, flagged)) = row else { return Ok(None) };
    Ok(Some(PinState {
        digest: parse_digest(path, tool, &digest)?,
        descriptor: serde_json::from_str(&descriptor)
            .map_err(|_| corrupt(path, tool, "a descriptor that is not json"))?,
        flagged: flagged.map(|f| parse_digest(path, tool, &f)).transpose()?,
    }))
}

/// Pins a tool to its first listing; `descriptor` is its stored JSON text.
pub(crate) fn pin_first_sight_in(
    db: &mut dyn Sql,
    path: &Path,
    tool: &str,
    digest: &Digest,
    descriptor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO tool_pins (tool, digest, descriptor, pinned_ms, source, pinned_by) VALUES (?1, ?2, ?3, ?4, ?5, '')",
        &args![tool, &digest.to_hex(), descriptor, now_ms, PinSource::FirstSight.as_str()],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

/// The pins of one server as a tool with no pin of its own is compared with them: those from
/// before the listing being recorded, and those it made so far.
pub(crate) struct ServerPins {
    entries: Vec<PinEntry>,
    /// The first entry of each name key, and of each nameless digest among the prior pins: a
    /// listing of many new tools looks each up once, not against every pin.
    by_key: HashMap<String, usize>,
    by_nameless: HashMap<Digest, usize>,
}

/// One pin of [`ServerPins`].
pub(crate) struct PinEntry {
    pub(crate) name: String,
    /// [`name_key`] of the name.
    key: String,
    /// [`nameless_digest`] of the pinned descriptor.
    nameless: Digest,
    pub(crate) digest: Digest,
    /// The pinned descriptor as stored, and read.
    pub(crate) text: String,
    pub(crate) descriptor: Value,
    /// Pinned before the listing being recorded.
    prior: bool,
}

impl ServerPins {
    /// The pin that a tool named `name`, listed with `descriptor`, resembles, and how: the same
    /// descriptor first, else a look-alike name (as [`Resemblance::between`] orders them). The
    /// same descriptor counts only against pins from before this listing: two tools that
    /// share a descriptor in one listing are two tools, not a rename; a look-alike name counts
    /// against those made earlier in the listing too (shadowing from the first listing on).
    pub(crate) fn resembled(&self, name: &str, descriptor: &Value) -> Option<(&PinEntry, Resemblance)> {
        // A tool looked up here has no pin under its name, so no entry is its own; the name
        // check only keeps that true by construction.
        let other = |i: &usize| self.entries.get(*i).filter(|e| e.name != name);
        if let Some(entry) = self.by_nameless.get(&nameless_digest(descriptor)).and_then(other) {
            return Some((entry, Resemblance::Renamed));
        }
        self.by_key.get(&name_key(name)).and_then(other).map(|e| (e, Resemblance::ConfusableName))
    }

    /// Remembers a pin this listing made, so the tools listed after it are compared with it.
    pub(crate) fn add(&mut self, name: &str, digest: Digest, text: &str, descriptor: &Value) {
        self.push(PinEntry {
            name: name.to_owned(),
            key: name_key(name),
            nameless: nameless_digest(descriptor),
            digest,
            text: text.to_owned(),
            descriptor: descriptor.clone(),
            prior: false,
        });
    }

    fn push(&mut self, entry: PinEntry) {
        let at = self.entries.len();
        self.by_key.entry(entry.key.clone()).or_insert(at);
        if entry.prior {
            self.by_nameless.entry(entry.nameless).or_insert(at);
        }
        self.entries.push(entry);
    }
}

/// The pins of `server`, inside a write transaction. A new tool's first sighting reads them
/// once per listing: linear in the server's pins, and only when it lists a tool without one.
pub(crate) fn server_pins_in(db: &mut dyn Sql, path: &Path, server: &str) -> Result<ServerPins, StoreError> {
    // A range rather than LIKE, as in event queries: '0' is the character after '/'.
    let rows = db
        .query(
            "SELECT tool, digest, descriptor FROM tool_pins WHERE tool >= ?1 AND tool < ?2 ORDER BY tool",
            &args![&format!("{server}/"), &format!("{server}0")],
        )
        .map_err(|e| write_error(path, e))?;
    let mut pins = ServerPins { entries: Vec::new(), by_key: HashMap::new(), by_nameless: HashMap::new() };
    for row in &rows {
        let (tool, digest, text) =
            (|| Ok::<_, DbError>((row.text(0)?, row.text(1)?, row.text(2)?)))().map_err(|e| write_error(path, e))?;
        let descriptor: Value =
            serde_json::from_str(&text).map_err(|_| corrupt(path, &tool, "a descriptor that is not json"))?;
        let Some((_, name)) = tool.split_once('/') else { return Err(corrupt(path, &tool, "a malformed tool name")) };
        pins.push(PinEntry {
            name: name.to_owned(),
            key: name_key(name),
            nameless: nameless_digest(&descriptor),
            digest: parse_digest(path, &tool, &digest)?,
            text,
            descriptor,
            prior: true,
        });
    }
    Ok(pins)
}

/// Pins a tool seen for the first time to the descriptor of the tool it resembles, already
/// flagged with its listed digest: the finding recorded with it is the one for that digest.
pub(crate) fn pin_borrowed_in(
    db: &mut dyn Sql,
    path: &Path,
    tool: &str,
    resembled: &PinEntry,
    listed: &Digest,
    now_ms: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO tool_pins (tool, digest, descriptor, pinned_ms, source, pinned_by, flagged_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6)",
        &args![
            tool,
            &resembled.digest.to_hex(),
            &resembled.text,
            now_ms,
            PinSource::FirstSight.as_str(),
            &listed.to_hex()
        ],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

pub(crate) fn set_flagged_in(
    db: &mut dyn Sql,
    path: &Path,
    tool: &str,
    digest: Option<&Digest>,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE tool_pins SET flagged_digest = ?2 WHERE tool = ?1",
        &args![tool, digest.map(Digest::to_hex).as_ref()],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

/// Replaces (or creates) a pin; a new pin has no finding against it yet.
fn put_pin_in(db: &mut dyn Sql, path: &Path, pin: &ToolPin) -> Result<(), StoreError> {
    let tool = pin.tool.to_string();
    let text = serde_json::to_string(&pin.descriptor)
        .map_err(|e| StoreError::InvalidEvent { reason: format!("descriptor of `{tool}` cannot be stored: {e}") })?;
    db.execute(
        "INSERT INTO tool_pins (tool, digest, descriptor, pinned_ms, source, pinned_by, flagged_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
         ON CONFLICT (tool) DO UPDATE SET digest = excluded.digest, descriptor = excluded.descriptor,
             pinned_ms = excluded.pinned_ms, source = excluded.source, pinned_by = excluded.pinned_by,
             flagged_digest = NULL",
        &args![&tool, &pin.digest.to_hex(), &text, pin.pinned_ms, pin.source.as_str(), &pin.by],
    )
    .map_err(|e| write_error(path, e))?;
    Ok(())
}

/// Adds `fields` to an event's object detail (a detail of another shape is the caller's and is
/// left alone).
fn extended(event: &NewEvent, fields: &[(&str, Value)]) -> NewEvent {
    let mut event = event.clone();
    if let Some(detail) = event.detail.as_object_mut() {
        for (key, value) in fields {
            detail.insert((*key).to_owned(), value.clone());
        }
    }
    event
}

pub(crate) fn pin_tool_in(
    db: &mut dyn Sql,
    path: &Path,
    tool: &ToolRef,
    descriptor: &Value,
    digest: &Digest,
    by: &str,
    event: &NewEvent,
) -> Result<(), StoreError> {
    let name = tool.to_string();
    if Digest::of_json(descriptor) != *digest {
        return Err(StoreError::PinMismatch { tool: name });
    }
    let previous = pin_state_in(db, path, &name)?;
    let pin = ToolPin {
        tool: tool.clone(),
        digest: *digest,
        descriptor: descriptor.clone(),
        pinned_ms: event.time_ms,
        source: PinSource::Pinned,
        by: by.to_owned(),
    };
    put_pin_in(db, path, &pin)?;
    let event = match previous {
        Some(previous) => extended(event, &[("previous_digest", json!(previous.digest.to_hex()))]),
        None => event.clone(),
    };
    append_in(db, path, std::slice::from_ref(&event)).map(|_| ())
}

pub(crate) fn accept_tool_in(
    db: &mut dyn Sql,
    path: &Path,
    tool: &ToolRef,
    by: &str,
    event: &NewEvent,
) -> Result<ToolRecord, StoreError> {
    let name = tool.to_string();
    let Some(listed) = tools_in(db, path, Some(&name), write_error)?.into_iter().next() else {
        return Err(StoreError::UnknownTool { tool: name });
    };
    let Some(previous) = listed.pinned_digest.filter(|_| listed.quarantined()) else {
        return Err(StoreError::NothingToAccept { tool: name });
    };
    let pin = ToolPin {
        tool: tool.clone(),
        digest: listed.digest,
        descriptor: listed.descriptor.clone(),
        pinned_ms: event.time_ms,
        source: PinSource::Accepted,
        by: by.to_owned(),
    };
    put_pin_in(db, path, &pin)?;
    let event =
        extended(event, &[("previous_digest", json!(previous.to_hex())), ("digest", json!(listed.digest.to_hex()))]);
    append_in(db, path, std::slice::from_ref(&event))?;
    Ok(ToolRecord { pinned_digest: Some(pin.digest), pinned_descriptor: Some(pin.descriptor), ..listed })
}

pub(crate) fn pinned_digest_in(db: &mut dyn Sql, path: &Path, tool: &ToolRef) -> Result<Option<Digest>, StoreError> {
    let name = tool.to_string();
    let found = db
        .query_opt("SELECT digest FROM tool_pins WHERE tool = ?1", &args![&name])
        .and_then(|row| row.map(|r| r.text(0)).transpose());
    match found {
        Ok(digest) => digest.map(|d| parse_digest(path, &name, &d)).transpose(),
        // A database opened read-only before any newer custos opened it read-write: no pins.
        Err(_) if !has_pins_table(db, path, super::read_error)? => Ok(None),
        Err(e) => Err(super::read_error(path, e)),
    }
}

/// Every pin, by tool; only `tool`'s when given.
pub(crate) fn pins_in(db: &mut dyn Sql, path: &Path, only: Option<&str>) -> Result<Vec<ToolPin>, StoreError> {
    if !has_pins_table(db, path, super::read_error)? {
        return Ok(Vec::new());
    }
    let filter = if only.is_some() { "WHERE tool = ?1" } else { "ORDER BY tool" };
    let sql = format!("SELECT tool, digest, descriptor, pinned_ms, source, pinned_by FROM tool_pins {filter}");
    let rows = match only {
        Some(tool) => db.query(&sql, &args![tool]),
        None => db.query(&sql, &[]),
    }
    .map_err(|e| super::read_error(path, e))?;
    let columns = |row: &crate::sql::Row| -> Result<_, DbError> {
        Ok((row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?, row.text(4)?, row.text(5)?))
    };
    let mut pins = Vec::with_capacity(rows.len());
    for row in &rows {
        let (tool, digest, descriptor, pinned_ms, source, by) = columns(row).map_err(|e| super::read_error(path, e))?;
        pins.push(ToolPin {
            tool: tool.parse().map_err(|_| corrupt(path, &tool, "a malformed tool name"))?,
            digest: parse_digest(path, &tool, &digest)?,
            descriptor: serde_json::from_str(&descriptor)
                .map_err(|_| corrupt(path, &tool, "a descriptor that is not json"))?,
            pinned_ms,
            source: source.parse().map_err(|_| corrupt(path, &tool, "an unknown source"))?,
            by,
        });
    }
    Ok(pins)
}

/// Whether the file has the pins table: every read-write open adds it, a read-only open of an
/// older file does not.
pub(crate) fn has_pins_table(
    db: &mut dyn Sql,
    path: &Path,
    error: fn(&Path, DbError) -> StoreError,
) -> Result<bool, StoreError> {
    db.table_exists("tool_pins").map_err(|e| error(path, e))
}
