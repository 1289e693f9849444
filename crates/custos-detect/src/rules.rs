//! The rule table: every rule's id, what it applies to, its severity and what it looks for.
//!
//! The ids are what findings carry in `rule`, what `custos scan --rules` lists and what the
//! detection corpus (`tests/detection/`) expects.

use custos_core::Severity;

/// The rule ids, as findings carry them.
pub mod ids {
    /// Text addressed to the model: hidden instructions, "do not tell the user", role markers.
    pub const MODEL_INSTRUCTION: &str = "model_instruction";
    /// A descriptor asking for secrets or for the contents of credential and config files.
    pub const CREDENTIAL_REQUEST: &str = "credential_request";
    /// A descriptor naming another server's tools, or saying how other tools must be used.
    pub const CROSS_TOOL_REFERENCE: &str = "cross_tool_reference";
    /// Characters that render as nothing: tag-block text, zero-width and bidi controls.
    pub const INVISIBLE_UNICODE: &str = "invisible_unicode";
    /// A description long enough to bury instructions in.
    pub const LONG_DESCRIPTION: &str = "long_description";
    /// A descriptor telling the model to send data to a URL or an address.
    pub const EXFIL_INSTRUCTION: &str = "exfil_instruction";
    /// A result carrying a URL built to carry data out: a markdown image with a data-bearing
    /// query, a template placeholder, or an instruction to visit a URL with the conversation in it.
    pub const EXFIL_URL: &str = "exfil_url";
    /// The learned classifier's score passed a severity's threshold.
    pub const CLASSIFIER: &str = "classifier";
}

/// One rule, as `custos scan --rules` and the README describe it.
///
/// A rule that applies to descriptors reports `tool_poisoning` findings (`tool_shadowing` for
/// [`ids::CROSS_TOOL_REFERENCE`]); one that applies to results reports `output_injection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// What findings carry in `rule`.
    pub id: &'static str,
    /// The kind of threat the rule is about: `instruction`, `credential`, `shadowing`,
    /// `hidden_text`, `size` or `exfiltration`.
    pub family: &'static str,
    /// `descriptor`, `output` or `both`.
    pub applies_to: &'static str,
    pub severity: Severity,
    pub description: &'static str,
}

const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: ids::MODEL_INSTRUCTION,
        family: "instruction",
        applies_to: "both",
        severity: Severity::High,
        description: "text addressed to the model: \"ignore previous instructions\", \"do not tell the user\", \
                      <IMPORTANT>/<system> tags, \"secretly\"; in results also \"you are now…\", \"new instructions:\" \
                      and role markers such as `System:` at a line start",
    },
    RuleInfo {
        id: ids::CREDENTIAL_REQUEST,
        family: "credential",
        applies_to: "descriptor",
        severity: Severity::High,
        description: "asks for secrets: names a private key file (id_rsa, id_ed25519), /etc/shadow, mcp.json or \
                      claude_desktop_config.json; moves the contents of ~/.ssh, .aws/credentials, .npmrc, .netrc, \
                      /etc/passwd or .env (\"paste the contents of…\"); reads or sends passwords, api keys or \
                      private keys; or asks the user for their password",
    },
    RuleInfo {
        id: ids::CROSS_TOOL_REFERENCE,
        family: "shadowing",
        applies_to: "descriptor",
        severity: Severity::Medium,
        description: "names a tool or server of another server (as a whole word), or says how other tools must be \
                      used: \"when the X tool is called\", \"instead of the X tool\", \"any other tool\"",
    },
    RuleInfo {
        id: ids::INVISIBLE_UNICODE,
        family: "hidden_text",
        applies_to: "both",
        severity: Severity::High,
        description: "characters that render as nothing but a model reads: the Unicode tag block, zero-width \
                      characters, bidirectional controls (in results, joiners inside emoji and scripts that need \
                      them are allowed)",
    },
    RuleInfo {
        id: ids::LONG_DESCRIPTION,
        family: "size",
        applies_to: "descriptor",
        severity: Severity::Low,
        description: "a description over 2000 characters: room to bury instructions",
    },
    RuleInfo {
        id: ids::EXFIL_INSTRUCTION,
        family: "exfiltration",
        applies_to: "descriptor",
        severity: Severity::High,
        description: "tells the model to send data out: \"send/forward/upload … to https://…\", \"include … in the \
                      url/query\", \"always bcc someone@…\"",
    },
    RuleInfo {
        id: ids::EXFIL_URL,
        family: "exfiltration",
        applies_to: "output",
        severity: Severity::High,
        description: "a markdown image or link whose query carries 32+ characters of base64/hex that decode to \
                      text, or a placeholder ({…}, {{…}}, $(…), <…>); a URL with a template placeholder for the \
                      conversation; or an instruction to visit a URL with the conversation or secrets in it",
    },
    RuleInfo {
        id: ids::CLASSIFIER,
        family: "learned",
        applies_to: "both",
        severity: Severity::Medium,
        description: "the learned classifier (a linear model over words, word pairs, character n-grams and \
                      structural marks of the decoded text, trained on the corpus in tests/detection/corpus) scored \
                      the descriptor or result at or above a threshold; the severity is the highest threshold \
                      reached, the evidence the score, the strongest stretch of text and features",
    },
];

/// Every rule, in the order findings are reported.
pub fn rules() -> &'static [RuleInfo] {
    RULES
}

/// The severity of rule `id`; `Info` for an id not in the table (none of ours).
pub(crate) fn severity(id: &str) -> Severity {
    RULES.iter().find(|r| r.id == id).map_or(Severity::Info, |r| r.severity)
}

/// Where rule `id` sits in the table, for ordering findings.
pub(crate) fn rank(id: &str) -> usize {
    RULES.iter().position(|r| r.id == id).unwrap_or(RULES.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_described() {
        let mut seen: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), RULES.len());
        for r in RULES {
            assert!(["descriptor", "output", "both"].contains(&r.applies_to), "{}", r.id);
            assert!(!r.description.is_empty() && !r.family.is_empty(), "{}", r.id);
        }
        assert_eq!(severity(ids::LONG_DESCRIPTION), Severity::Low);
        assert_eq!(severity(ids::CROSS_TOOL_REFERENCE), Severity::Medium);
        assert_eq!(severity("nope"), Severity::Info);
        assert!(rank(ids::MODEL_INSTRUCTION) < rank(ids::EXFIL_URL));
    }
}
