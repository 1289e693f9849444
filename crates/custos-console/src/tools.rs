//! Tools: the inventory with each tool's class and pin, the quarantined tools with what changed
//! (pinned against listed descriptor, line by line), and their acceptance by an approver.
//!
//! An acceptance is the store operation `custos tools accept` uses ([`ToolPins::accept_tool`]:
//! the new pin and its `tool.accepted` event in one transaction), on a writable connection the
//! console opens for it, as the command does from its own process: the store is made for
//! several writers, and the audit writer has no pin operation to route it through.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use custos_approvals::Approver;
use custos_config::Config;
use custos_core::{EventKind, NewEvent, ToolDescriptor, ToolRef};
use custos_store::{PinSource, SqlStore, Store, StoreError, ToolPin, ToolPins, ToolRecord};
use serde_json::{json, Value};

use crate::auth::{self, Signed};
use crate::calls::{self, MAX_ROWS};
use crate::console::{now_ms, Console};
use crate::page::{self, Frame};

/// Most lines of a descriptor compared line by line; longer ones are shown whole, both sides.
const MAX_DIFF_LINES: usize = 400;

/// One tool of the inventory.
#[derive(Debug)]
pub struct ToolRow {
    pub tool: String,
    pub class: String,
    pub digest: String,
    pub first_seen: String,
    pub last_seen: String,
    /// `pinned`, `quarantined` or `unpinned`.
    pub pin: &'static str,
    pub pinned_by: String,
}

/// A quarantined tool: what changed, and the form that accepts it.
#[derive(Debug)]
pub struct Quarantined {
    pub tool: String,
    pub pinned: String,
    pub listed: String,
    /// The listed digest, in full: the form accepts only this descriptor.
    pub digest: String,
    pub pinned_by: String,
    pub diff: Vec<DiffLine>,
}

/// One line of a diff: `kind` is `same`, `removed` (pinned only) or `added` (listed only).
#[derive(Debug, PartialEq, Eq)]
pub struct DiffLine {
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "tools.html")]
struct ToolsPage {
    frame: Frame,
    rows: Vec<ToolRow>,
    quarantined: Vec<Quarantined>,
    /// Whether the signed-in approver may accept (a member of an approver group).
    may_accept: bool,
    truncated: bool,
}

/// `GET /console/tools`.
pub async fn tools(State(c): State<Arc<Console>>, Signed { session }: Signed) -> Response {
    let frame = Frame::signed_in(&session, "tools");
    let read = c.read(|store| Ok((store.tools()?, store.pins()?)));
    let (records, pins) = match read {
        Ok(read) => read,
        Err(e) => return calls::unavailable(frame, &e),
    };
    let truncated = records.len() > MAX_ROWS;
    let pin_of = |tool: &ToolRef| pins.iter().find(|p| &p.tool == tool);
    let rows = records.iter().take(MAX_ROWS).map(|r| row(&c.config, r, pin_of(&r.tool))).collect();
    let quarantined = records
        .iter()
        .filter(|r| r.quarantined())
        .take(MAX_ROWS)
        .map(|r| {
            let pinned = r.pinned_descriptor.as_ref().map(pretty).unwrap_or_default();
            let listed = pretty(&r.descriptor);
            Quarantined {
                tool: r.tool.to_string(),
                pinned: r.pinned_digest.map(|d| short(&d.to_hex())).unwrap_or_default(),
                listed: short(&r.digest.to_hex()),
                digest: r.digest.to_hex(),
                pinned_by: pinned_by(r, pin_of(&r.tool)),
                diff: diff(&pinned, &listed),
            }
        })
        .collect();
    let may_accept = is_approver(&c.config, &session.approver);
    page::html(StatusCode::OK, &ToolsPage { frame, rows, quarantined, may_accept, truncated })
}

fn row(config: &Config, r: &ToolRecord, pin: Option<&ToolPin>) -> ToolRow {
    let descriptor = ToolDescriptor::from_listing(r.tool.server(), r.descriptor.clone());
    let class = config.server(r.tool.server()).map_or_else(
        || "privileged (unknown server)".to_owned(),
        |s| s.classes.classify(r.tool.name(), descriptor.as_ref()).to_string(),
    );
    ToolRow {
        tool: r.tool.to_string(),
        class,
        digest: short(&r.digest.to_hex()),
        first_seen: page::time(r.first_seen_ms),
        last_seen: page::time(r.last_seen_ms),
        pin: if r.quarantined() {
            "quarantined"
        } else if r.pinned_digest.is_some() {
            "pinned"
        } else {
            "unpinned"
        },
        pinned_by: pinned_by(r, pin),
    }
}

/// Who or what the pin came from.
fn pinned_by(r: &ToolRecord, pin: Option<&ToolPin>) -> String {
    match (r.resembles(), pin) {
        (Some(other), _) => format!("the pin of {other}, which it resembles"),
        (None, Some(p)) if p.source == PinSource::FirstSight => format!("first sight, {}", page::time(p.pinned_ms)),
        (None, Some(p)) => format!("{} by {}, {}", p.source.as_str(), p.by, page::time(p.pinned_ms)),
        (None, None) => "-".to_owned(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn short(hex: &str) -> String {
    hex.get(..12).unwrap_or(hex).to_owned()
}

/// A line diff of `old` to `new` (longest common subsequence), in order.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let line = |kind, text: &str| DiffLine { kind, text: text.to_owned() };
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return a.iter().map(|t| line("removed", t)).chain(b.iter().map(|t| line("added", t))).collect();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, x) in a.iter().enumerate().rev() {
        for (j, y) in b.iter().enumerate().rev() {
            let v = if x == y {
                lcs.get(i + 1).and_then(|r| r.get(j + 1)).map_or(0, |v| v + 1)
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push(line("same", x));
                i += 1;
                j += 1;
            }
            (Some(x), Some(_)) if at(i + 1, j) >= at(i, j + 1) => {
                out.push(line("removed", x));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(line("added", y));
                j += 1;
            }
            (Some(x), None) => {
                out.push(line("removed", x));
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Whether `who` is an approver: a member of some `[approvals.groups]` group by name, or by
/// one of the identity provider's groups.
pub fn is_approver(config: &Config, who: &Approver) -> bool {
    config
        .approvals
        .groups
        .iter()
        .any(|g| g.members.iter().any(|m| m == &who.name) || g.idp_groups.iter().any(|i| who.idp_groups.contains(i)))
}

/// `POST /console/tools/accept` (form: `csrf`, `tool`, `digest` the listed digest shown,
/// `reason`).
pub async fn accept(
    State(c): State<Arc<Console>>,
    Signed { session }: Signed,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = "/console/tools/accept";
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) = auth::check_form(&c, &session, &headers, form.get("csrf").map(String::as_str), path).await {
        return r;
    }
    let frame = Frame::signed_in(&session, "tools");
    let who = &session.approver;
    if !is_approver(&c.config, who) {
        c.refused("not_an_approver", path, Some(who)).await;
        return page::error(
            StatusCode::FORBIDDEN,
            frame,
            "You may not accept tools",
            "only members of an approver group ([approvals.groups]) may accept a changed tool; nothing was accepted",
        );
    }
    let bad = |frame, message: String| page::error(StatusCode::BAD_REQUEST, frame, "Bad request", message);
    let raw_tool = form.get("tool").map(|t| t.trim()).unwrap_or_default();
    let tool: ToolRef = match raw_tool.parse() {
        Ok(t) => t,
        Err(_) => return bad(frame, format!("`{}` is not a tool: expected `server/name`", raw_tool.escape_debug())),
    };
    let reason = form.get("reason").map(|r| r.trim()).unwrap_or_default();
    if reason.is_empty() || reason.chars().count() > 500 {
        return bad(frame, "an acceptance needs a reason of at most 500 characters; nothing was accepted".to_owned());
    }
    let shown = form.get("digest").map(|d| d.trim().to_owned()).unwrap_or_default();
    let db = c.database.clone();
    let mut event = NewEvent::new(EventKind::ToolAccepted, now_ms());
    event.tool = Some(tool.clone());
    event.detail = json!({ "by": who.name, "identity": who.identity_json(), "reason": reason, "via": "console" });
    let by = who.name.clone();
    let accepting = tool.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Result<ToolRecord, String>, StoreError> {
        let mut store = SqlStore::open(db)?;
        // The descriptor accepted must be the one the approver saw: a tool listed again since
        // is refused here, and checked again by the store inside its transaction.
        let listed = store.tools()?.into_iter().find(|t| t.tool == accepting);
        match listed {
            Some(r) if r.quarantined() && r.digest.to_hex() != shown => {
                return Ok(Err(format!(
                "`{accepting}` was listed again with another descriptor ({}) since the page was shown: review it again",
                short(&r.digest.to_hex())
            )))
            }
            _ => {}
        }
        store.accept_tool(&accepting, &by, &event).map(Ok)
    })
    .await;
    match done {
        Ok(Ok(Ok(_))) => page::see_other("/console/tools"),
        Ok(Ok(Err(changed))) => page::error(StatusCode::CONFLICT, frame, "Nothing was accepted", changed),
        Ok(Err(e @ StoreError::UnknownTool { .. })) => {
            page::error(StatusCode::NOT_FOUND, frame, "Unknown tool", e.to_string())
        }
        Ok(Err(e @ StoreError::NothingToAccept { .. })) => {
            page::error(StatusCode::CONFLICT, frame, "Nothing was accepted", e.to_string())
        }
        Ok(Err(e)) => calls::unavailable(frame, &e),
        Err(e) => {
            page::error(StatusCode::SERVICE_UNAVAILABLE, frame, "Unavailable", format!("the acceptance failed: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(d: &[DiffLine]) -> Vec<(&str, &str)> {
        d.iter().map(|l| (l.kind, l.text.as_str())).collect()
    }

    #[test]
    fn a_changed_line_reads_as_removed_then_added() {
        let d = diff("{\n  \"a\": 1,\n  \"b\": 2\n}", "{\n  \"a\": 1,\n  \"b\": 3\n}");
        assert_eq!(
            kinds(&d),
            [("same", "{"), ("same", "  \"a\": 1,"), ("removed", "  \"b\": 2"), ("added", "  \"b\": 3"), ("same", "}")]
        );
    }

    #[test]
    fn added_and_removed_lines_at_the_ends() {
        assert_eq!(kinds(&diff("x\ny", "y\nz")), [("removed", "x"), ("same", "y"), ("added", "z")]);
        assert_eq!(kinds(&diff("", "a")), [("added", "a")]);
    }
}
