//! What policy said about one call.

use serde::{Deserialize, Serialize};

/// The outcome of policy evaluation for one tool call.
///
/// `policies` are the ids of the policies that decided it: the permits that allowed it, the
/// forbids (or errors) that denied it, or the forbids that hold it. An empty list on a deny
/// means nothing permitted the call: default deny.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    Allow {
        policies: Vec<String>,
    },
    Deny {
        policies: Vec<String>,
        reason: String,
    },
    /// The call needs a human's approval of exactly this call: every policy that denies it is a
    /// `forbid` an approval lifts (`@approval("GROUP")`), and with the approval a permit
    /// allows it. Until it is approved, the call must not run.
    Hold {
        /// The forbids holding the call (never empty).
        policies: Vec<String>,
        /// The approver groups those forbids name, sorted, without duplicates.
        groups: Vec<String>,
        /// Who must approve and why, for people: names the groups and carries the forbids'
        /// `@reason` annotations.
        reason: String,
    },
}

impl Decision {
    /// Whether the call may run now. A held call may not (yet).
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// `allow`, `deny` or `hold`: the word recorded and queried in the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Deny { .. } => "deny",
            Self::Hold { .. } => "hold",
        }
    }

    pub fn policies(&self) -> &[String] {
        match self {
            Self::Allow { policies } | Self::Deny { policies, .. } | Self::Hold { policies, .. } => policies,
        }
    }

    /// A one-line reason for people: which policies decided and why.
    pub fn explain(&self) -> String {
        match self {
            Self::Allow { policies } => format!("allowed by {}", policies.join(", ")),
            Self::Deny { policies, reason } | Self::Hold { policies, reason, .. } if policies.is_empty() => {
                reason.clone()
            }
            Self::Deny { policies, reason } | Self::Hold { policies, reason, .. } => {
                format!("{reason} (policies: {})", policies.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn hold() -> Decision {
        Decision::Hold {
            policies: strings(&["hold-privileged", "hold-payments"]),
            groups: strings(&["finance", "ops"]),
            reason: "needs approval by `finance`, `ops`: privileged tools need a human".to_owned(),
        }
    }

    #[test]
    fn words_and_allowing() {
        let allow = Decision::Allow { policies: strings(&["p"]) };
        let deny = Decision::Deny { policies: Vec::new(), reason: "no".to_owned() };
        assert_eq!((allow.as_str(), allow.is_allow()), ("allow", true));
        assert_eq!((deny.as_str(), deny.is_allow()), ("deny", false));
        assert_eq!((hold().as_str(), hold().is_allow()), ("hold", false));
        assert_eq!(hold().policies(), ["hold-privileged", "hold-payments"]);
    }

    #[test]
    fn explanations_are_one_line() {
        assert_eq!(Decision::Allow { policies: strings(&["a", "b"]) }.explain(), "allowed by a, b");
        let deny = Decision::Deny { policies: strings(&["f"]), reason: "forbidden by policy".to_owned() };
        assert_eq!(deny.explain(), "forbidden by policy (policies: f)");
        let default = Decision::Deny { policies: Vec::new(), reason: "default deny".to_owned() };
        assert_eq!(default.explain(), "default deny");
        assert_eq!(
            hold().explain(),
            "needs approval by `finance`, `ops`: privileged tools need a human (policies: hold-privileged, hold-payments)"
        );
    }

    #[test]
    fn serde_shape_is_tagged_by_decision() {
        let value = serde_json::to_value(hold()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "decision": "hold",
                "policies": ["hold-privileged", "hold-payments"],
                "groups": ["finance", "ops"],
                "reason": "needs approval by `finance`, `ops`: privileged tools need a human",
            })
        );
        let back: Decision = serde_json::from_value(value).unwrap();
        assert_eq!(back, hold());
        let deny = serde_json::to_value(Decision::Deny { policies: Vec::new(), reason: "r".to_owned() }).unwrap();
        assert_eq!(deny, serde_json::json!({"decision": "deny", "policies": [], "reason": "r"}));
    }
}
