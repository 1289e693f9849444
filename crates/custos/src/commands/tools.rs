//! `custos tools list / pin / accept / diff`: the tool inventory and its pins, the defence
//! against a rug pull.
//!
//! Every tool is pinned to a descriptor: its first listing, one an operator pinned ahead of time
//! (`pin`, from a saved `tools/list` result or by asking the server), or a changed one an
//! operator reviewed (`diff`) and accepted (`accept`). A listing that differs from the pin
//! quarantines the tool; the store records that, with a `rug_pull` finding, as the listing
//! passes through the gateway. A new tool that resembles a pinned one of its server (a look-alike
//! name, or the same descriptor under another name) is held to that tool's pin: quarantined,
//! diffed against it, and accepted like any change. Digests are computed exactly as the gateway computes them
//! ([`ToolDescriptor::from_listing`]), so a pinned descriptor matches a listed one byte for
//! byte in meaning, whatever its key order or spacing.

use std::collections::BTreeMap;
use std::path::Path;

use custos_config::Config;
use custos_core::{EventKind, NewEvent, ToolClass, ToolDescriptor, ToolRef};
use custos_store::{PinSource, Store, StoreError, ToolPin, ToolPins, ToolRecord};
use serde_json::{json, Value};

use crate::cli::{Location, ToolsCommand, ToolsPinArgs};
use crate::context;
use crate::Failure;

/// Lines of unchanged context around each change in `tools diff`.
const DIFF_CONTEXT: usize = 3;

/// The largest diff computed line by line (lines before × lines after); beyond it, the whole
/// pinned descriptor is shown removed and the listed one added.
const MAX_DIFF_CELLS: usize = 4_000_000;

pub fn run(cmd: ToolsCommand) -> Result<(), Failure> {
    match cmd {
        ToolsCommand::List { location, json } => list(&location, json),
        ToolsCommand::Pin(args) => pin(&args),
        ToolsCommand::Accept { location, tool, by } => accept(&location, &tool, by.as_deref()),
        ToolsCommand::Diff { location, tool } => diff(&location, &tool),
    }
}

// ---- list ----

/// One line of `tools list`: a tool listed by its server, pinned ahead of time, or both.
struct Row<'a> {
    tool: &'a ToolRef,
    record: Option<&'a ToolRecord>,
    pin: Option<&'a ToolPin>,
}

impl Row<'_> {
    fn state(&self) -> &'static str {
        match (self.record, self.pin) {
            (Some(record), _) if record.quarantined() => "quarantined",
            (Some(record), _) if record.pinned_digest.is_some() => "pinned",
            (None, Some(_)) => "pinned",
            _ => "unpinned",
        }
    }

    /// The tool this one is held to the pin of, when it was quarantined on first sight for
    /// resembling it.
    fn resembles(&self) -> Option<ToolRef> {
        self.record.and_then(ToolRecord::resembles).filter(|_| self.state() == "quarantined")
    }

    /// The latest listed descriptor, else the pinned one.
    fn descriptor(&self) -> Option<&Value> {
        self.record.map(|r| &r.descriptor).or(self.pin.map(|p| &p.descriptor))
    }
}

fn list(location: &Location, json: bool) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let (records, pins) = match super::open_existing(&config)? {
        Some(store) => (store.tools().map_err(Failure::runtime)?, store.pins().map_err(Failure::runtime)?),
        None => (Vec::new(), Vec::new()),
    };
    let mut rows: BTreeMap<&ToolRef, Row<'_>> = BTreeMap::new();
    for record in &records {
        rows.insert(&record.tool, Row { tool: &record.tool, record: Some(record), pin: None });
    }
    for pin in &pins {
        rows.entry(&pin.tool).or_insert(Row { tool: &pin.tool, record: None, pin: None }).pin = Some(pin);
    }
    if rows.is_empty() && !json {
        eprintln!("custos: no tools: none listed through the gateway yet and none pinned (custos tools pin)");
        return Ok(());
    }
    let mut table = Vec::new();
    for row in rows.values() {
        let descriptor = row.descriptor();
        let class = class_of(&config, row.tool, descriptor);
        let hint = descriptor.and_then(annotation_hint);
        let digest = row.record.map(|r| r.digest).or(row.pin.map(|p| p.digest));
        let pinned_digest = row.record.and_then(|r| r.pinned_digest).or(row.pin.map(|p| p.digest));
        if json {
            let v = json!({
                "tool": row.tool,
                "class": class,
                "hint": hint,
                "state": row.state(),
                "digest": digest.map(|d| d.to_hex()),
                "pinned_digest": pinned_digest.map(|d| d.to_hex()),
                "listed": row.record.is_some(),
                "first_seen": row.record.map(|r| super::rfc3339(r.first_seen_ms)),
                "last_seen": row.record.map(|r| super::rfc3339(r.last_seen_ms)),
                "pin_source": row.pin.map(|p| p.source.as_str()),
                "pinned_by": row.pin.map(|p| p.by.as_str()),
                "pinned_at": row.pin.map(|p| super::rfc3339(p.pinned_ms)),
                "resembles": row.resembles(),
            });
            println!("{v}");
        } else {
            let seen = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), super::rfc3339);
            table.push([
                row.tool.to_string(),
                class.to_string(),
                hint.unwrap_or("-").to_owned(),
                digest.map_or_else(|| "-".to_owned(), |d| short(&d.to_hex())),
                row.state().to_owned(),
                seen(row.record.map(|r| r.first_seen_ms)),
                seen(row.record.map(|r| r.last_seen_ms)),
            ]);
        }
    }
    if !json {
        super::print_table(["TOOL", "CLASS", "HINT", "DIGEST", "STATE", "FIRST-SEEN", "LAST-SEEN"], &table);
        for row in rows.values() {
            if let Some(other) = row.resembles() {
                eprintln!(
                    "custos: `{}` is new and resembles `{other}` (a possible rename): see custos tools diff {}",
                    row.tool, row.tool
                );
            }
        }
    }
    Ok(())
}

/// The class the gateway gives the tool: the config's rules for its server; a server the config
/// does not describe has only privileged tools.
pub(crate) fn class_of(config: &Config, tool: &ToolRef, descriptor: Option<&Value>) -> ToolClass {
    custos_console::drift::class_of(config, tool, descriptor)
}

/// What the server's own annotations claim, trusted or not: shown beside the class so that a
/// tool calling itself read-only while the config makes it privileged (or the reverse) stands
/// out.
fn annotation_hint(descriptor: &Value) -> Option<&'static str> {
    let annotations = descriptor.get("annotations")?;
    let hint = |key: &str| annotations.get(key).and_then(Value::as_bool);
    match (hint("readOnlyHint"), hint("destructiveHint")) {
        (Some(true), _) => Some("read"),
        (_, Some(false)) => Some("write"),
        (_, Some(true)) => Some("privileged"),
        _ => None,
    }
}

/// The first 12 hex digits of a digest: enough to tell versions apart on screen.
fn short(hex: &str) -> String {
    hex.chars().take(12).collect()
}

// ---- pin ----

fn pin(args: &ToolsPinArgs) -> Result<(), Failure> {
    let config = context::load_config(&args.location)?;
    let server = args.server.trim();
    if server.is_empty() || server.contains('/') || server.chars().any(char::is_control) {
        return Err(Failure::usage(format!("`{}` is not a server name", args.server.escape_debug())));
    }
    let (listing, from) = match &args.from {
        Some(file) => (read_listing(file)?, format!("file:{}", file.display())),
        None => {
            let command = if args.command.is_empty() {
                config.server(server).and_then(|s| s.command.clone()).unwrap_or_default()
            } else {
                args.command.clone()
            };
            if command.is_empty() {
                return Err(Failure::usage(format!(
                    "nothing to pin from: give --from FILE, a command after `--`, or a `command` for server `{server}` in the config"
                )));
            }
            // The same live listing as `custos scan -- CMD`.
            let (_, listing) = super::scan::list_live(&command)?;
            (listing, "command".to_owned())
        }
    };
    let descriptors = descriptors(server, listing)?;
    let by = super::who(args.by.as_deref());
    let mut store = context::open_for_writing(&config)?;
    for d in &descriptors {
        let mut event = NewEvent::new(EventKind::ToolPinned, custos_gateway::now_ms());
        event.tool = Some(d.tool.clone());
        event.detail = json!({
            "digest": d.digest.to_hex(),
            "source": PinSource::Pinned.as_str(),
            "by": by,
            "from": from,
            "descriptor": d.raw,
        });
        store.pin_tool(&d.tool, &d.raw, &d.digest, &by, &event).map_err(Failure::runtime)?;
        println!("pinned {} ({})", d.tool, short(&d.digest.to_hex()));
    }
    // A pin that disagrees with what the server already listed quarantines the tool now.
    for record in store.tools().map_err(Failure::runtime)? {
        if record.quarantined() && descriptors.iter().any(|d| d.tool == record.tool) {
            eprintln!(
                "custos: `{}` was last listed with another descriptor: it is quarantined (see custos tools diff {})",
                record.tool, record.tool
            );
        }
    }
    Ok(())
}

/// A saved `tools/list` result: `{"result":{"tools":[…]}}`, `{"tools":[…]}` or `[…]`.
fn read_listing(file: &Path) -> Result<Vec<Value>, Failure> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Failure::usage(format!("cannot read `{}`: {e}", file.display())))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| Failure::usage(format!("`{}` is not JSON: {e}", file.display())))?;
    let tools = match &value {
        Value::Array(_) => Some(&value),
        Value::Object(_) => value.pointer("/result/tools").or_else(|| value.get("tools")),
        _ => None,
    };
    match tools {
        Some(Value::Array(tools)) => Ok(tools.clone()),
        _ => Err(Failure::usage(format!(
            "`{}` holds no tool list: expected {{\"result\":{{\"tools\":[…]}}}}, {{\"tools\":[…]}} or […]",
            file.display()
        ))),
    }
}

/// The listed tools as the gateway would digest them; refuses an empty list or a nameless tool
/// rather than pin less than was asked.
fn descriptors(server: &str, listing: Vec<Value>) -> Result<Vec<ToolDescriptor>, Failure> {
    if listing.is_empty() {
        return Err(Failure::usage("the tool list is empty: nothing to pin"));
    }
    listing
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            ToolDescriptor::from_listing(server, raw)
                .ok_or_else(|| Failure::usage(format!("tool {} of the list has no string `name`", i + 1)))
        })
        .collect()
}

// ---- diff and accept ----

/// The inventory record of `tool`; a usage error naming the tool when it was never listed.
fn listed_record(store: &dyn Store, tool: &ToolRef) -> Result<ToolRecord, Failure> {
    store
        .tools()
        .map_err(Failure::runtime)?
        .into_iter()
        .find(|r| &r.tool == tool)
        .ok_or_else(|| Failure::usage(StoreError::UnknownTool { tool: tool.to_string() }))
}

fn diff(location: &Location, tool: &str) -> Result<(), Failure> {
    let tool: ToolRef = tool.parse().map_err(Failure::usage)?;
    let config = context::load_config(location)?;
    let store = super::open_existing(&config)?
        .ok_or_else(|| Failure::usage(StoreError::UnknownTool { tool: tool.to_string() }))?;
    let record = listed_record(&store, &tool)?;
    let pin = store.pins().map_err(Failure::runtime)?.into_iter().find(|p| p.tool == tool);
    match (&record.pinned_descriptor, pin) {
        (Some(pinned), Some(pin)) if record.quarantined() => print_diff(&record, pinned, &pin),
        (Some(_), _) => println!("no change: `{tool}` is listed with its pinned descriptor"),
        (None, _) => println!("`{tool}` is not pinned: it will be pinned when next listed"),
    }
    Ok(())
}

fn accept(location: &Location, tool: &str, by: Option<&str>) -> Result<(), Failure> {
    let tool: ToolRef = tool.parse().map_err(Failure::usage)?;
    let config = context::load_config(location)?;
    let mut store = super::open_existing(&config)?
        .ok_or_else(|| Failure::usage(StoreError::UnknownTool { tool: tool.to_string() }))?;
    let record = listed_record(&store, &tool)?;
    let pin = store.pins().map_err(Failure::runtime)?.into_iter().find(|p| p.tool == tool);
    match (&record.pinned_descriptor, pin) {
        (Some(pinned), Some(pin)) if record.quarantined() => print_diff(&record, pinned, &pin),
        _ => return Err(Failure::usage(StoreError::NothingToAccept { tool: tool.to_string() })),
    }
    let by = super::who(by);
    let mut event = NewEvent::new(EventKind::ToolAccepted, custos_gateway::now_ms());
    event.tool = Some(tool.clone());
    event.detail = json!({ "by": by });
    // The store checks again inside its write transaction: another operator may have accepted
    // it, or the server listed yet another descriptor, since the diff above was read.
    let accepted = store.accept_tool(&tool, &by, &event).map_err(|e| match e {
        StoreError::UnknownTool { .. } | StoreError::NothingToAccept { .. } => Failure::usage(e),
        other => Failure::runtime(other),
    })?;
    if accepted.digest != record.digest {
        return Err(Failure::runtime(format!(
            "`{tool}` was listed again while this ran: the descriptor accepted is {}, not the one shown; review it with custos tools diff",
            short(&accepted.digest.to_hex())
        )));
    }
    let previous = record.pinned_digest.map_or_else(|| "-".to_owned(), |d| short(&d.to_hex()));
    println!("accepted `{tool}` as {by}: pinned to {} (was {previous})", short(&accepted.digest.to_hex()));
    Ok(())
}

fn print_diff(record: &ToolRecord, pinned: &Value, pin: &ToolPin) {
    let pinned_by = match (pin.resembles(), pin.source) {
        // A new tool held to the pin of the tool it resembles: the diff is against that tool.
        (Some(other), _) => format!("the pin of {other}, which it resembles"),
        (None, PinSource::FirstSight) => "first sight".to_owned(),
        (None, PinSource::Pinned | PinSource::Accepted) => format!("{} by {}", pin.source, pin.by),
    };
    println!(
        "--- pinned {} {} ({pinned_by}, {})",
        record.tool,
        short(&pin.digest.to_hex()),
        super::rfc3339(pin.pinned_ms)
    );
    println!(
        "+++ listed {} {} (last seen {})",
        record.tool,
        short(&record.digest.to_hex()),
        super::rfc3339(record.last_seen_ms)
    );
    let (old, new) = (pretty_lines(pinned), pretty_lines(&record.descriptor));
    for line in unified(&line_diff(&old, &new)) {
        println!("{line}");
    }
}

/// `value` as pretty-printed canonical JSON, one string per line: object keys sorted at every
/// level (whatever order the server sent), two spaces per level.
fn pretty_lines(value: &Value) -> Vec<String> {
    let mut text = String::new();
    write_pretty(value, 0, &mut text);
    text.lines().map(str::to_owned).collect()
}

fn write_pretty(value: &Value, depth: usize, out: &mut String) {
    let indent = |depth: usize, out: &mut String| out.push_str(&"  ".repeat(depth));
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push_str("{\n");
            let count = entries.len();
            for (i, (key, item)) in entries.into_iter().enumerate() {
                indent(depth + 1, out);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_pretty(item, depth + 1, out);
                out.push_str(if i + 1 < count { ",\n" } else { "\n" });
            }
            indent(depth, out);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(depth + 1, out);
                write_pretty(item, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(depth, out);
            out.push(']');
        }
        // Scalars, `{}` and `[]`: their compact JSON text.
        other => out.push_str(&other.to_string()),
    }
}

/// One line of a line diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The shortest edit from `old` to `new` by longest common subsequence of lines.
fn line_diff<'a>(old: &'a [String], new: &'a [String]) -> Vec<Op<'a>> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > MAX_DIFF_CELLS {
        let removed = old.iter().map(|l| Op::Removed(l.as_str()));
        return removed.chain(new.iter().map(|l| Op::Added(l.as_str()))).collect();
    }
    // lcs[i * (m + 1) + j]: the longest common subsequence of old[i..] and new[j..].
    let width = m + 1;
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let value = if old.get(i) == new.get(j) {
                lcs.get((i + 1) * width + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = lcs.get((i + 1) * width + j).copied().unwrap_or(0);
                let right = lcs.get(i * width + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i * width + j) {
                *cell = value;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
    let mut ops = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    while let (Some(a), Some(b)) = (old.get(i), new.get(j)) {
        if a == b {
            ops.push(Op::Same(a));
            (i, j) = (i + 1, j + 1);
        } else if at(i + 1, j) >= at(i, j + 1) {
            ops.push(Op::Removed(a));
            i += 1;
        } else {
            ops.push(Op::Added(b));
            j += 1;
        }
    }
    ops.extend(old.iter().skip(i).map(|l| Op::Removed(l.as_str())));
    ops.extend(new.iter().skip(j).map(|l| Op::Added(l.as_str())));
    ops
}

/// `ops` as unified diff hunks: each change with [`DIFF_CONTEXT`] lines around it, under an
/// `@@ -old_start,old_count +new_start,new_count @@` header. Empty when nothing changed.
fn unified(ops: &[Op<'_>]) -> Vec<String> {
    let mut shown = vec![false; ops.len()];
    for (k, op) in ops.iter().enumerate() {
        if !matches!(op, Op::Same(_)) {
            let end = (k + DIFF_CONTEXT).min(ops.len().saturating_sub(1));
            for s in shown.iter_mut().take(end + 1).skip(k.saturating_sub(DIFF_CONTEXT)) {
                *s = true;
            }
        }
    }
    let mut out = Vec::new();
    let (mut old_line, mut new_line) = (1usize, 1usize);
    let mut hunk: Option<(usize, usize, Vec<String>)> = None;
    let close = |hunk: Option<(usize, usize, Vec<String>)>, out: &mut Vec<String>| {
        if let Some((old_start, new_start, lines)) = hunk {
            let old_count = lines.iter().filter(|l| !l.starts_with('+')).count();
            let new_count = lines.iter().filter(|l| !l.starts_with('-')).count();
            out.push(format!("@@ -{old_start},{old_count} +{new_start},{new_count} @@"));
            out.extend(lines);
        }
    };
    for (op, show) in ops.iter().zip(&shown) {
        if *show {
            let (_, _, lines) = hunk.get_or_insert_with(|| (old_line, new_line, Vec::new()));
            lines.push(match op {
                Op::Same(l) => format!(" {l}"),
                Op::Removed(l) => format!("-{l}"),
                Op::Added(l) => format!("+{l}"),
            });
        } else {
            close(hunk.take(), &mut out);
        }
        match op {
            Op::Same(_) => (old_line, new_line) = (old_line + 1, new_line + 1),
            Op::Removed(_) => old_line += 1,
            Op::Added(_) => new_line += 1,
        }
    }
    close(hunk, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn pretty_lines_sort_keys_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b":[1,{"z":1,"a":{}}],"a":"x\n","c":[]}"#).unwrap();
        assert_eq!(
            pretty_lines(&v).join("\n"),
            "{\n  \"a\": \"x\\n\",\n  \"b\": [\n    1,\n    {\n      \"a\": {},\n      \"z\": 1\n    }\n  ],\n  \"c\": []\n}"
        );
        assert_eq!(pretty_lines(&json!(3)), ["3"]);
    }

    #[test]
    fn a_line_diff_keeps_the_common_lines_and_shows_hunks_with_context() {
        let old = lines("a\nb\nc\nd\ne\nf\ng\nh\ni\nj");
        let new = lines("a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk");
        let ops = line_diff(&old, &new);
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::Same(_))).count(), 9);
        assert_eq!(
            unified(&ops),
            [
                "@@ -1,5 +1,5 @@",
                " a",
                "-b",
                "+B",
                " c",
                " d",
                " e", //
                "@@ -8,3 +8,4 @@",
                " h",
                " i",
                " j",
                "+k",
            ]
        );
        assert!(unified(&line_diff(&old, &old)).is_empty());
        let all_new = unified(&line_diff(&[], &lines("x\ny")));
        assert_eq!(all_new, ["@@ -1,0 +1,2 @@", "+x", "+y"]);
    }

    #[test]
    fn a_listing_file_may_take_three_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let tools = json!([{"name": "a"}, {"name": "b", "description": "d"}]);
        for shape in
            [json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}), json!({"tools": tools}), tools.clone()]
        {
            let file = dir.path().join("list.json");
            std::fs::write(&file, shape.to_string()).unwrap();
            let listed = descriptors("s", read_listing(&file).unwrap()).unwrap();
            assert_eq!(listed.iter().map(|d| d.tool.to_string()).collect::<Vec<_>>(), ["s/a", "s/b"]);
            assert_eq!(listed[1].digest, custos_core::Digest::of_json(&json!({"description": "d", "name": "b"})));
        }
        let file = dir.path().join("bad.json");
        std::fs::write(&file, r#"{"result": {}}"#).unwrap();
        assert!(read_listing(&file).unwrap_err().message.contains("holds no tool list"));
        assert!(descriptors("s", vec![json!({"title": "nameless"})]).unwrap_err().message.contains("no string `name`"));
        assert!(descriptors("s", Vec::new()).is_err());
    }

    #[test]
    fn the_hint_is_what_the_annotations_claim() {
        assert_eq!(annotation_hint(&json!({"annotations": {"readOnlyHint": true}})), Some("read"));
        assert_eq!(annotation_hint(&json!({"annotations": {"destructiveHint": false}})), Some("write"));
        assert_eq!(annotation_hint(&json!({"annotations": {"destructiveHint": true}})), Some("privileged"));
        assert_eq!(annotation_hint(&json!({"name": "x"})), None);
    }
}
