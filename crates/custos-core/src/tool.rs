//! Tools: `server/name` references, classes and descriptors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A tool as the gateway names it: the upstream server's configured name and the tool's name
/// on that server, shown (and stored in the audit log) as `server/name`.
///
/// INVARIANT: `server` is not empty and holds no `/`; `name` is not empty. Only [`ToolRef::new`]
/// and parsing build one, and both check it, so every `ToolRef` the log writes as `server/name`
/// reads back as the same `ToolRef`: the writer and the decoder agree by construction. Which
/// names an agent may *call* is a stricter, separate rule: [`check_tool_name`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolRef {
    server: String,
    name: String,
}

impl ToolRef {
    /// `server/name`, or why it cannot be one.
    pub fn new(server: impl Into<String>, name: impl Into<String>) -> Result<Self, InvalidToolRef> {
        let (server, name) = (server.into(), name.into());
        if server.is_empty() || server.contains('/') {
            return Err(InvalidToolRef(format!(
                "`{}` is not a server name: expected a non-empty name without `/`",
                server.escape_debug()
            )));
        }
        if name.is_empty() {
            return Err(InvalidToolRef(format!("a tool of `{server}` has an empty name")));
        }
        Ok(Self { server, name })
    }

    /// The upstream server's configured name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The tool's name on its server.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// Why a server and tool name do not make a [`ToolRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidToolRef(String);

/// A string that is not `SERVER/TOOL`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a tool reference: expected SERVER/TOOL")]
pub struct ParseToolRefError(String);

impl FromStr for ToolRef {
    type Err = ParseToolRefError;
    /// The inverse of `Display`: the server is everything before the first `/` (server names
    /// hold none), the name everything after it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (server, name) = s.split_once('/').ok_or_else(|| ParseToolRefError(s.to_owned()))?;
        Self::new(server, name).map_err(|_| ParseToolRefError(s.to_owned()))
    }
}

impl Serialize for ToolRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ToolRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The longest tool name an agent may call, in characters (MCP 2025-11-25: 1 to 128).
pub const MAX_TOOL_NAME_CHARS: usize = 128;

/// Whether an agent may call (and a listing may offer) a tool named `name`: 1 to
/// [`MAX_TOOL_NAME_CHARS`] ASCII letters, digits, `_`, `-`, `.` and `/` (the characters MCP
/// names for tool names, plus the `/` its SEP-986 allowed for namespaces). Anything else — an
/// empty name, spaces, control or invisible characters, look-alike letters from other scripts —
/// could name one tool to the gateway's policy and another to an upstream that trims, folds or
/// normalizes names, so it is refused before anything is decided or recorded. The error text
/// is for a `-32602` answer.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a tool name must not be empty".to_owned());
    }
    if name.len() > MAX_TOOL_NAME_CHARS {
        return Err(format!("a tool name has at most {MAX_TOOL_NAME_CHARS} characters"));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))) {
        Some(c) => Err(format!(
            "tool name `{}` holds {}: a tool name is ascii letters, digits, `_`, `-`, `.` and `/`",
            name.escape_debug(),
            describe_char(c)
        )),
        None => Ok(()),
    }
}

/// `c` for an error message, visible even when it is a space, a control or an invisible
/// character.
fn describe_char(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// The most JSON values (scalars, arrays and objects, counted recursively) one call's arguments
/// may ever hold: policy refuses more, whatever the deployment says. The bound in use is the
/// config's `[limits] max_argument_values` (at most this), which the gateway counts while it
/// reads a message, before it builds anything from it.
pub const MAX_ARGUMENT_VALUES: usize = 100_000;

/// How deep arrays and objects may nest inside one call's arguments (the arguments object
/// itself is level 1). Deeper arguments are refused rather than cut, since cutting could hide a
/// value a policy looks at.
pub const MAX_ARGUMENT_DEPTH: usize = 64;

/// How much authority a call to the tool carries. Unknown tools are `Privileged`: fail safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolClass {
    Read,
    Write,
    Privileged,
}

impl ToolClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Privileged => "privileged",
        }
    }
}

impl fmt::Display for ToolClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ToolClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "privileged" => Ok(Self::Privileged),
            other => Err(format!("`{other}` is not a tool class: expected read, write or privileged")),
        }
    }
}

/// A tool descriptor as a server listed it (one element of a `tools/list` result), with the
/// digest of its canonical form: the tool's identity for pinning and the inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDescriptor {
    pub tool: ToolRef,
    /// The descriptor exactly as parsed (name, description, inputSchema, annotations, ...).
    pub raw: serde_json::Value,
    pub digest: Digest,
}

impl ToolDescriptor {
    /// Builds a descriptor from one `tools/list` entry; `None` when the entry has no string
    /// `name` or one that cannot name a tool of `server`.
    pub fn from_listing(server: &str, raw: serde_json::Value) -> Option<Self> {
        let name = raw.get("name")?.as_str()?.to_owned();
        let digest = Digest::of_json(&raw);
        let tool = ToolRef::new(server, name).ok()?;
        Some(Self { tool, raw, digest })
    }

    /// A boolean MCP annotation (`readOnlyHint`, `destructiveHint`, ...), if the server gave one.
    pub fn annotation(&self, key: &str) -> Option<bool> {
        self.raw.get("annotations")?.get(key)?.as_bool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_ref_parses_server_and_name() {
        let t: ToolRef = "files/read_file".parse().unwrap();
        assert_eq!(t, ToolRef::new("files", "read_file").unwrap());
        assert_eq!(t.to_string(), "files/read_file");
        // Only the first slash separates: tool names may contain slashes.
        assert_eq!("a/b/c".parse::<ToolRef>().unwrap().name(), "b/c");
        for bad in ["", "files", "/x", "x/"] {
            assert!(bad.parse::<ToolRef>().is_err(), "{bad}");
        }
        assert!(ToolRef::new("evil", "").is_err());
        assert!(ToolRef::new("a/b", "c").is_err());
        assert!(ToolRef::new("", "c").is_err());
    }

    #[test]
    fn every_tool_ref_reads_back_as_itself() {
        // Names the call rule refuses can still be held (earlier logs may carry them); what
        // matters is that what is written reads back the same.
        for (server, name) in [("s", "t"), ("s", "a/b/c"), ("s p", " x\n"), ("ü", "名前"), ("s", "/"), ("s", "\u{0}")]
        {
            let t = ToolRef::new(server, name).unwrap();
            assert_eq!(t.to_string().parse::<ToolRef>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<ToolRef>(&json).unwrap(), t);
        }
    }

    #[test]
    fn callable_tool_names_are_the_mcp_characters() {
        for ok in ["echo", "get-sum", "a.b_c", "ns/tool", "A9", &"x".repeat(MAX_TOOL_NAME_CHARS)] {
            assert!(check_tool_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "refund ",
            " refund",
            "re\u{0}fund",
            "tools call",
            "r\u{200b}efund",
            "refund\n",
            "rеfund",
            "ｒefund",
            "a:b",
            "a\\b",
            &"x".repeat(MAX_TOOL_NAME_CHARS + 1),
        ] {
            assert!(check_tool_name(bad).is_err(), "{}", bad.escape_debug());
        }
        let err = check_tool_name("r\u{200b}efund").unwrap_err();
        assert!(err.contains("U+200B"), "{err}");
    }

    #[test]
    fn descriptor_digest_is_order_independent() {
        let a = ToolDescriptor::from_listing("s", json!({"name": "t", "description": "d"})).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"description":"d","name":"t"}"#).unwrap();
        let b = ToolDescriptor::from_listing("s", b).unwrap();
        assert_eq!(a.digest, b.digest);
        let c = ToolDescriptor::from_listing("s", json!({"name": "t", "description": "e"})).unwrap();
        assert_ne!(a.digest, c.digest);
        assert!(ToolDescriptor::from_listing("s", json!({"description": "no name"})).is_none());
    }

    #[test]
    fn annotations_are_read_as_booleans() {
        let d = ToolDescriptor::from_listing("s", json!({"name": "t", "annotations": {"readOnlyHint": true}})).unwrap();
        assert_eq!(d.annotation("readOnlyHint"), Some(true));
        assert_eq!(d.annotation("destructiveHint"), None);
    }
}
