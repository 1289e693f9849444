//! Tool pins: the descriptor of each tool that someone vouched for, the defence against a rug
//! pull (a server that changes a tool's description or schema after it was approved).
//!
//! A tool is pinned on its first sighting, ahead of time by an operator (`custos tools pin`), or
//! again when an operator accepts a changed descriptor (`custos tools accept`). A listing whose
//! digest differs from the pin, not merely from the last listing, quarantines the tool: the
//! sighting says so, and a `rug_pull` finding is recorded once per new digest. Like every
//! projection the pins table is not part of the hash chain; each change to it is made in one
//! transaction with the event that records it (`tool.seen`, `tool.pinned`, `tool.accepted`,
//! `finding.recorded`). The SQL is in `sqlite/pins.rs`.
//!
//! A rename is a change too. A policy written for `refund` does not match `Refund`, so a
//! server that renames a tool would otherwise escape it with a fresh first-sight pin. A tool
//! with no pin under its name that [resembles](Resemblance) a tool its server already has
//! pinned is not trusted on first sight: it is pinned to the descriptor of the tool it
//! resembles (a "borrowed" pin, see [`ToolPin::resembles`]), which it cannot match (the names
//! differ), so it is quarantined like any other departure from a pin until an operator accepts
//! it, and `custos tools diff` shows it against that tool.

use std::fmt;
use std::str::FromStr;

use custos_core::{Digest, ToolRef};
use serde_json::Value;

/// Where a pin came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinSource {
    /// The tool's first listing, trusted because there was nothing to compare it with; or, for
    /// a first listing that resembles another tool of the server, that tool's pin (see
    /// [`ToolPin::resembles`]).
    FirstSight,
    /// An operator pinned it ahead of time (`custos tools pin`).
    Pinned,
    /// An operator reviewed a changed descriptor and accepted it (`custos tools accept`).
    Accepted,
}

impl PinSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstSight => "first_sight",
            Self::Pinned => "pinned",
            Self::Accepted => "accepted",
        }
    }
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PinSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first_sight" => Ok(Self::FirstSight),
            "pinned" => Ok(Self::Pinned),
            "accepted" => Ok(Self::Accepted),
            other => Err(format!("`{other}` is not a pin source: expected first_sight, pinned or accepted")),
        }
    }
}

/// One pin: the descriptor a tool must keep to stay out of quarantine.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolPin {
    pub tool: ToolRef,
    pub digest: Digest,
    /// The pinned descriptor as it was listed (or given to `tools pin`).
    pub descriptor: Value,
    pub pinned_ms: i64,
    pub source: PinSource,
    /// Who pinned or accepted it; empty for a first sighting.
    pub by: String,
}

impl ToolPin {
    /// The tool whose descriptor this pin holds when it is not this tool's own: the pin a tool
    /// was given on first sight because it resembled that tool (a possible rename).
    pub fn resembles(&self) -> Option<ToolRef> {
        borrowed_from(&self.tool, &self.descriptor)
    }
}

/// The tool of `tool`'s server that a pinned `descriptor` names, when it names another than
/// `tool`.
///
/// INVARIANT: a pin's descriptor names its own tool (a listing is digested as listed, and
/// `tools pin` takes each descriptor's name for its tool) except for a borrowed pin, so a
/// pinned descriptor naming another tool is exactly a borrowed pin. No column says so: an
/// older custos reads such a file, and keeps the tool quarantined, without knowing why.
pub(crate) fn borrowed_from(tool: &ToolRef, descriptor: &Value) -> Option<ToolRef> {
    let name = descriptor.get("name")?.as_str()?;
    if name == tool.name() {
        return None;
    }
    ToolRef::new(tool.server(), name).ok()
}

/// Why a tool with no pin of its own is taken for a possible rename of a pinned one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resemblance {
    /// Its descriptor is a pinned tool's but for the name and title ([`nameless_digest`]).
    Renamed,
    /// Its name differs from a pinned tool's only by case or by characters that look alike
    /// ([`name_key`]).
    ConfusableName,
}

impl Resemblance {
    /// The finding's rule.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Renamed => "renamed",
            Self::ConfusableName => "confusable_name",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Self::Renamed => "the same descriptor under another name",
            Self::ConfusableName => "a name that differs only by case or look-alike characters",
        }
    }

    /// How `tool` came to resemble `other`, given their descriptors: the same descriptor first
    /// (the same tool under a new name, look-alike or not), else a look-alike name (another
    /// tool posing as it); `None` when they do not resemble each other.
    pub(crate) fn between(tool: &str, descriptor: &Value, other: &str, other_descriptor: &Value) -> Option<Self> {
        if nameless_digest(descriptor) == nameless_digest(other_descriptor) {
            Some(Self::Renamed)
        } else if name_key(tool) == name_key(other) {
            Some(Self::ConfusableName)
        } else {
            None
        }
    }

    /// The evidence of a finding: `s/Refund resembles s/refund (the same descriptor under another
    /// name): name changed`, what differs from the pinned descriptor last.
    pub(crate) fn evidence(self, tool: &ToolRef, other: &ToolRef, pinned: &Value, listed: &Value) -> String {
        format!("{tool} resembles {other} ({}): {}", self.why(), change_summary(pinned, listed))
    }
}

/// The form under which two tool names a reader could take for each other are equal: the
/// UTS #39 skeleton (`rn` and `m`, `l`, `1` and `I`, `0` and `O`, Latin and Cyrillic `a`…),
/// lower-cased, and the skeleton of that again (so that case and look-alikes combine: `I` is
/// `l`, lower-cased `l`).
pub fn name_key(name: &str) -> String {
    let skeleton: String = unicode_security::skeleton(name).collect();
    unicode_security::skeleton(&skeleton.to_lowercase()).collect()
}

/// The digest of a descriptor without what names it: `name`, `title` and `annotations.title`
/// (an annotations object left empty counts as none). Two tools with the same nameless digest
/// do the same thing under different names.
pub fn nameless_digest(descriptor: &Value) -> Digest {
    let mut nameless = descriptor.clone();
    if let Some(obj) = nameless.as_object_mut() {
        obj.remove("name");
        obj.remove("title");
        let empty = match obj.get_mut("annotations").and_then(Value::as_object_mut) {
            Some(annotations) => {
                annotations.remove("title");
                annotations.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("annotations");
        }
    }
    Digest::of_json(&nameless)
}

/// The members whose change a reader cares about, in the order a summary names them; any other
/// changed member is named after these, alphabetically.
const NOTABLE_MEMBERS: [&str; 5] = ["title", "description", "inputSchema", "outputSchema", "annotations"];

/// A short account of what differs between two descriptors: `description and inputSchema
/// changed`. Names the top-level members that differ (added, removed or changed).
pub(crate) fn change_summary(pinned: &Value, listed: &Value) -> String {
    let (Some(pinned), Some(listed)) = (pinned.as_object(), listed.as_object()) else {
        return "descriptor changed".to_owned();
    };
    let differs = |key: &str| pinned.get(key) != listed.get(key);
    let mut changed: Vec<&str> = NOTABLE_MEMBERS.into_iter().filter(|k| differs(k)).collect();
    let mut others: Vec<&str> = pinned
        .keys()
        .chain(listed.keys())
        .map(String::as_str)
        .filter(|k| !NOTABLE_MEMBERS.contains(k) && differs(k))
        .collect();
    others.sort_unstable();
    others.dedup();
    changed.extend(others);
    match changed.as_slice() {
        [] => "descriptor changed".to_owned(),
        [one] => format!("{one} changed"),
        [init @ .., last] => format!("{} and {last} changed", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_names_what_changed_notable_members_first() {
        let a = json!({"name": "t", "description": "a", "inputSchema": {"type": "object"}, "x-extra": 1});
        assert_eq!(
            change_summary(
                &a,
                &json!({"name": "t", "description": "b", "inputSchema": {"type": "object"}, "x-extra": 1})
            ),
            "description changed"
        );
        let b = json!({"name": "t", "description": "a", "inputSchema": {}, "annotations": {"readOnlyHint": false}, "zeta": 2});
        assert_eq!(change_summary(&a, &b), "inputSchema, annotations, x-extra and zeta changed");
        assert_eq!(change_summary(&json!(1), &json!(2)), "descriptor changed");
        for s in [PinSource::FirstSight, PinSource::Pinned, PinSource::Accepted] {
            assert_eq!(s.as_str().parse::<PinSource>(), Ok(s));
        }
        assert!("other".parse::<PinSource>().is_err());
    }

    #[test]
    fn names_that_read_alike_share_a_key_and_others_do_not() {
        for (a, b) in [
            ("refund", "Refund"),
            ("refund", "REFUND"),
            ("reset_mfa", "reset_rnfa"),
            ("tool1", "tooll"),
            ("tool1", "toolI"),
            ("toolI", "tooll"),
            ("v0", "vO"),
            ("v0", "vo"),
            ("paypal", "p\u{0430}yp\u{0430}l"),
            ("read", "re\u{200b}ad"),
        ] {
            assert_eq!(name_key(a), name_key(b), "{a:?} and {b:?}");
        }
        for (a, b) in [("refund", "refunds"), ("get_user", "get_users"), ("read", "write"), ("a.b", "a/b")] {
            assert_ne!(name_key(a), name_key(b), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn the_nameless_digest_ignores_names_and_titles_only() {
        let base =
            json!({"name": "a", "title": "A", "description": "d", "annotations": {"title": "A", "readOnlyHint": true}});
        let renamed =
            json!({"name": "b", "title": "B", "description": "d", "annotations": {"title": "B", "readOnlyHint": true}});
        assert_eq!(nameless_digest(&base), nameless_digest(&renamed));
        let untitled = json!({"name": "c", "description": "d", "annotations": {"readOnlyHint": true}});
        assert_eq!(nameless_digest(&base), nameless_digest(&untitled));
        // Annotations that held only a title count as none.
        assert_eq!(
            nameless_digest(&json!({"name": "a", "annotations": {"title": "A"}})),
            nameless_digest(&json!({"name": "b"}))
        );
        let other = json!({"name": "a", "title": "A", "description": "d", "annotations": {"readOnlyHint": false}});
        assert_ne!(nameless_digest(&base), nameless_digest(&other));
        assert_ne!(nameless_digest(&base), nameless_digest(&json!({"name": "a", "description": "e"})));
    }

    #[test]
    fn a_pin_that_holds_another_tools_descriptor_resembles_it() {
        let pin = |tool: &str, named: &str| ToolPin {
            tool: ToolRef::new("s", tool).unwrap(),
            digest: Digest::ZERO,
            descriptor: json!({"name": named}),
            pinned_ms: 0,
            source: PinSource::FirstSight,
            by: String::new(),
        };
        assert_eq!(pin("Refund", "refund").resembles(), Some(ToolRef::new("s", "refund").unwrap()));
        assert_eq!(pin("refund", "refund").resembles(), None);
        assert_eq!(
            Resemblance::between("Refund", &json!({"name": "Refund"}), "refund", &json!({"name": "refund", "x": 1})),
            Some(Resemblance::ConfusableName)
        );
        assert_eq!(
            Resemblance::between("pay", &json!({"name": "pay", "x": 1}), "refund", &json!({"name": "refund", "x": 1})),
            Some(Resemblance::Renamed)
        );
        assert_eq!(
            Resemblance::between(
                "Refund",
                &json!({"name": "Refund", "x": 1}),
                "refund",
                &json!({"name": "refund", "x": 1})
            ),
            Some(Resemblance::Renamed),
            "the same descriptor says more than the look-alike name"
        );
        assert_eq!(Resemblance::between("pay", &json!({"x": 2}), "refund", &json!({"x": 1})), None);
    }
}
