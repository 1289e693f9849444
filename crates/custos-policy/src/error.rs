//! Errors from loading a schema and a policy set, and the source positions they point at.
//!
//! Cedar reports problems as byte offsets into the text it was given; people and editors want
//! `file:line:column`. [`SourcePos::locate`] does that conversion, and every load error carries
//! the position so `custos policy check` output can be clicked through in an editor.

use std::fmt;
use std::io;

use serde::Serialize;

/// A position in a schema or policy file: 1-based line and column (columns count characters,
/// not bytes, so a position after non-ASCII text still lines up in an editor).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SourcePos {
    /// The file as the caller named it (the path given to `load`, or the name given to
    /// `from_sources`).
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl SourcePos {
    /// The position of byte `offset` in `text`. Offsets past the end point just after the last
    /// character; an offset inside a multi-byte character points at that character.
    pub fn locate(file: &str, text: &str, offset: usize) -> Self {
        LineIndex::new(text).locate(file, offset)
    }

    /// The start of `file`: where errors without a more precise position point.
    pub fn start_of(file: &str) -> Self {
        Self { file: file.to_owned(), line: 1, column: 1 }
    }
}

/// Where each line of a text starts, found once: positions of many offsets in one file (every
/// statement of a 10,000-policy file) cost a binary search each, not a walk from the top.
#[derive(Debug)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offsets of line starts: 0, then just after each `\n`.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Self { text, starts }
    }

    /// [`SourcePos::locate`]: offsets past the end point just after the last character; an
    /// offset inside a multi-byte character points at that character.
    pub(crate) fn locate(&self, file: &str, offset: usize) -> SourcePos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset).saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let before = self.text.get(start..).unwrap_or_default();
        let chars = before.char_indices().take_while(|(at, ch)| start + at + ch.len_utf8() <= offset).count();
        SourcePos {
            file: file.to_owned(),
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(chars + 1).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why a schema or policy set could not be loaded.
///
/// Every message is one lowercase line. Problems inside a file start with `file:line:column:`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("cannot read policy file `{path}`: {reason}")]
    ReadPolicy { path: String, reason: String },

    /// The schema file could not be read.
    #[error("cannot read schema file `{path}`: {reason}")]
    ReadSchema { path: String, reason: String },

    /// The schema does not parse, or declares something inconsistent.
    #[error("{at}: {message}")]
    Schema { at: SourcePos, message: String },

    /// The schema parses but cannot describe a Custos call (a missing entity type, attribute or
    /// the `call_tool` action, or a required argument attribute).
    #[error("schema `{file}` does not fit custos calls: {message}")]
    SchemaShape { file: String, message: String },

    /// A policy file does not parse.
    #[error("{at}: {message}")]
    Parse { at: SourcePos, message: String },

    /// A policy parses but does not validate against the schema (strict mode).
    #[error("{at}: policy `{policy}` does not validate: {message}")]
    Validation { at: SourcePos, policy: String, message: String },

    /// Two policies have the same id (from `@id` or from `<file stem>:<n>`).
    #[error("{at}: policy id `{policy}` is already used by the policy at {first}")]
    DuplicateId { at: SourcePos, policy: String, first: SourcePos },

    /// A policy's `@id` annotation cannot be used as an id.
    #[error("{at}: policy `@id` must not be empty")]
    EmptyId { at: SourcePos },

    /// A `permit` carries `@approval`: an approval lifts a forbid, it does not grant.
    #[error("{at}: policy `{policy}` is a `permit`: `@approval` belongs on a `forbid`, which an approval lifts")]
    ApprovalOnPermit { at: SourcePos, policy: String },

    /// The group of an `@approval` annotation is empty or not a plain name.
    #[error(
        "{at}: policy `{policy}` names approval group `{group}`: a group is a non-empty name of letters, digits, `_`, `.` and `-`"
    )]
    ApprovalGroup { at: SourcePos, policy: String, group: String },

    /// An `@approval` forbid whose conditions never read `context.approval.granted`: no approval
    /// could ever lift it, so every call it matches would wait for nothing.
    #[error(
        "{at}: policy `{policy}` has `@approval` but never reads `context.approval.granted`, so no approval could lift it (add `unless {{ context.approval.granted }}`)"
    )]
    ApprovalNeverLifted { at: SourcePos, policy: String },

    /// A file holds a template (`?principal` / `?resource` slots); Custos has no way to link one.
    #[error("{at}: templates (policies with `?principal` or `?resource`) are not supported")]
    Template { at: SourcePos },
}

impl PolicyError {
    /// Where in which file the problem is, when it is inside a file.
    pub fn position(&self) -> Option<&SourcePos> {
        match self {
            Self::Schema { at, .. }
            | Self::Parse { at, .. }
            | Self::Validation { at, .. }
            | Self::DuplicateId { at, .. }
            | Self::EmptyId { at }
            | Self::ApprovalOnPermit { at, .. }
            | Self::ApprovalGroup { at, .. }
            | Self::ApprovalNeverLifted { at, .. }
            | Self::Template { at } => Some(at),
            Self::ReadPolicy { .. } | Self::ReadSchema { .. } | Self::SchemaShape { .. } => None,
        }
    }
}

/// An I/O error as a lowercase phrase without the OS error number:
/// "no such file or directory", not "No such file or directory (os error 2)".
pub(crate) fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text.get(..at).unwrap_or(&text).to_owned(),
        _ => text,
    };
    lowercase_first(&text)
}

/// `text` with its first character lowercased: Cedar and the OS capitalise some messages.
pub(crate) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Cedar's diagnostic as one line: the message, then its help if it has one. Newlines inside
/// either (Cedar lists alternatives on separate lines in a few messages) become spaces.
pub(crate) fn one_line(diag: &dyn miette::Diagnostic) -> String {
    let mut text = lowercase_first(&diag.to_string());
    if let Some(help) = diag.help() {
        let help = help.to_string();
        if !help.is_empty() {
            text.push_str("; ");
            text.push_str(&lowercase_first(&help));
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Like [`one_line`], followed by the messages of the error's causes that it does not already
/// contain: some Cedar errors say only "entity does not conform to the schema" and keep the
/// attribute and types in their cause.
pub(crate) fn with_causes(err: &(dyn miette::Diagnostic + 'static)) -> String {
    let mut text = one_line(err);
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let line = c.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        let line = lowercase_first(&line);
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}

/// The byte offset of the first labelled span of `diag`, if Cedar attached one.
pub(crate) fn first_offset(diag: &dyn miette::Diagnostic) -> Option<usize> {
    let mut labels = diag.labels()?;
    labels.next().map(|label| label.offset())
}

/// At most `max` characters of `text`, with an ellipsis when something was cut: reasons go in
/// audit records, which are bounded.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(text)),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "ab\ncdé\nfg";
        assert_eq!(SourcePos::locate("f", text, 0).to_string(), "f:1:1");
        assert_eq!(SourcePos::locate("f", text, 2).to_string(), "f:1:3");
        assert_eq!(SourcePos::locate("f", text, 3).to_string(), "f:2:1");
        // `é` is two bytes: the `\n` after it is column 4, not 5.
        assert_eq!(SourcePos::locate("f", text, 7).to_string(), "f:2:4");
        // Inside `é` still names `é`.
        assert_eq!(SourcePos::locate("f", text, 6).to_string(), "f:2:3");
        assert_eq!(SourcePos::locate("f", text, 8).to_string(), "f:3:1");
        assert_eq!(SourcePos::locate("f", text, 999).to_string(), "f:3:3");
        assert_eq!(SourcePos::locate("f", "", 5).to_string(), "f:1:1");
    }

    /// The walk `locate` used to do, character by character from the top.
    fn walk(text: &str, offset: usize) -> (u32, u32) {
        let (mut line, mut column) = (1, 1);
        for (at, ch) in text.char_indices() {
            if at >= offset || at + ch.len_utf8() > offset {
                break;
            }
            if ch == '\n' {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        (line, column)
    }

    #[test]
    fn the_line_index_agrees_with_a_walk_at_every_offset() {
        for text in ["", "\n", "\n\n", "ab\ncdé\nfg", "é\n\u{1F600}x\r\n\ny", "no newline"] {
            let index = LineIndex::new(text);
            for offset in 0..text.len() + 3 {
                let at = index.locate("f", offset);
                assert_eq!((at.line, at.column), walk(text, offset), "{text:?} at {offset}");
            }
        }
    }

    #[test]
    fn io_reasons_are_lowercase_without_os_numbers() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&err), "no such file or directory");
    }

    #[test]
    fn truncate_marks_cuts() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
    }
}
