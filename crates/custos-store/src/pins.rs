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

use std::fmt;
use std::str::FromStr;

use custos_core::{Digest, ToolRef};
use serde_json::Value;

/// Where a pin came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinSource {
    /// The tool's first listing, trusted because there was nothing to compare it with.
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
}
