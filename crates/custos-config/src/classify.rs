//! Tool classes: `read`, `write` or `privileged`.
//!
//! In order: the config's entry for the exact tool name, else the most specific `*` pattern that
//! matches, else the server's MCP annotations when the config trusts them (`readOnlyHint` →
//! read, `destructiveHint: false` → write), else `privileged`. Unknown tools are privileged: a
//! tool the gateway knows nothing about gets the most scrutiny, not the least.

use std::collections::BTreeMap;

use custos_core::{ToolClass, ToolDescriptor};

#[derive(Debug, Clone, Default)]
pub struct ToolClasses {
    /// Believe the server's annotations (they are hints the server itself chose).
    pub trust_annotations: bool,
    exact: BTreeMap<String, ToolClass>,
    /// Patterns, most specific (longest) first.
    patterns: Vec<(String, ToolClass)>,
}

impl ToolClasses {
    pub fn new(trust_annotations: bool, entries: BTreeMap<String, ToolClass>) -> Self {
        let mut exact = BTreeMap::new();
        let mut patterns = Vec::new();
        for (name, class) in entries {
            if name.contains('*') {
                patterns.push((name, class));
            } else {
                exact.insert(name, class);
            }
        }
        patterns.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { trust_annotations, exact, patterns }
    }

    /// The class the config gives tool `name`: its exact entry, else the most specific pattern
    /// that matches; `None` when no entry does.
    pub fn configured(&self, name: &str) -> Option<ToolClass> {
        if let Some(class) = self.exact.get(name) {
            return Some(*class);
        }
        self.patterns.iter().find(|(p, _)| glob_match(p, name)).map(|(_, class)| *class)
    }

    /// The class of tool `name`, given its descriptor when one has been seen.
    pub fn classify(&self, name: &str, descriptor: Option<&ToolDescriptor>) -> ToolClass {
        if let Some(class) = self.configured(name) {
            return class;
        }
        if self.trust_annotations {
            if let Some(d) = descriptor {
                if d.annotation("readOnlyHint") == Some(true) {
                    return ToolClass::Read;
                }
                if d.annotation("destructiveHint") == Some(false) {
                    return ToolClass::Write;
                }
            }
        }
        ToolClass::Privileged
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else { return false };
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = name.get(first.len()..name.len() - last.len()).unwrap_or_default();
    for middle in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(middle) {
            Some(at) => rest = rest.get(at + middle.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classes(trust: bool, entries: &[(&str, ToolClass)]) -> ToolClasses {
        ToolClasses::new(trust, entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    #[test]
    fn globs() {
        assert!(glob_match("delete_*", "delete_everything"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("get_*", "get_"));
        assert!(!glob_match("get_*", "set_x"));
    }

    #[test]
    fn exact_beats_pattern_and_longer_pattern_beats_shorter() {
        let c = classes(
            false,
            &[("*", ToolClass::Read), ("delete_*", ToolClass::Privileged), ("delete_note", ToolClass::Write)],
        );
        assert_eq!(c.classify("echo", None), ToolClass::Read);
        assert_eq!(c.classify("delete_all", None), ToolClass::Privileged);
        assert_eq!(c.classify("delete_note", None), ToolClass::Write);
    }

    #[test]
    fn annotations_count_only_when_trusted_and_unknown_is_privileged() {
        let ro =
            ToolDescriptor::from_listing("s", json!({"name": "t", "annotations": {"readOnlyHint": true}})).unwrap();
        let nd =
            ToolDescriptor::from_listing("s", json!({"name": "t", "annotations": {"destructiveHint": false}})).unwrap();
        let bare = ToolDescriptor::from_listing("s", json!({"name": "t"})).unwrap();
        let trusted = classes(true, &[]);
        assert_eq!(trusted.classify("t", Some(&ro)), ToolClass::Read);
        assert_eq!(trusted.classify("t", Some(&nd)), ToolClass::Write);
        assert_eq!(trusted.classify("t", Some(&bare)), ToolClass::Privileged);
        assert_eq!(trusted.classify("t", None), ToolClass::Privileged);
        assert_eq!(classes(false, &[]).classify("t", Some(&ro)), ToolClass::Privileged);
    }
}
