//! Tools: `server/name` references, classes and descriptors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A tool as the gateway names it: the upstream server's configured name and the tool's name
/// on that server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolRef {
    pub server: String,
    pub name: String,
}

impl ToolRef {
    pub fn new(server: impl Into<String>, name: impl Into<String>) -> Self {
        Self { server: server.into(), name: name.into() }
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// A string that is not `SERVER/TOOL`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a tool reference: expected SERVER/TOOL")]
pub struct ParseToolRefError(String);

impl FromStr for ToolRef {
    type Err = ParseToolRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((server, name)) if !server.is_empty() && !name.is_empty() => Ok(Self::new(server, name)),
            _ => Err(ParseToolRefError(s.to_owned())),
        }
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
    /// Builds a descriptor from one `tools/list` entry; `None` when the entry has no string `name`.
    pub fn from_listing(server: &str, raw: serde_json::Value) -> Option<Self> {
        let name = raw.get("name")?.as_str()?.to_owned();
        let digest = Digest::of_json(&raw);
        Some(Self { tool: ToolRef::new(server, name), raw, digest })
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
        assert_eq!(t, ToolRef::new("files", "read_file"));
        assert_eq!(t.to_string(), "files/read_file");
        // Only the first slash separates: tool names may contain slashes.
        assert_eq!("a/b/c".parse::<ToolRef>().unwrap().name, "b/c");
        for bad in ["", "files", "/x", "x/"] {
            assert!(bad.parse::<ToolRef>().is_err(), "{bad}");
        }
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
