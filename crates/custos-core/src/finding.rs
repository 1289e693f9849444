//! What a detector saw: a finding, recorded as a `finding.recorded` event, counted, and shown
//! to policy (`context.findings`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest evidence a finding carries: enough to recognise the match, too little to turn
/// the audit log into a copy of hostile content.
pub const MAX_EVIDENCE_CHARS: usize = 160;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [Self::Info, Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of finding, as the log and `context.findings` name them.
pub mod kinds {
    /// A credential the gateway knows of (or one shaped like a credential) in what an upstream
    /// sent toward the agent.
    pub const SECRET_LEAK: &str = "secret_leak";
    /// A tool's descriptor changed from the pinned one.
    pub const RUG_PULL: &str = "rug_pull";
    /// A tool's descriptor carries hidden instructions or asks for secrets.
    pub const TOOL_POISONING: &str = "tool_poisoning";
    /// A tool's descriptor talks about another server's tools.
    pub const TOOL_SHADOWING: &str = "tool_shadowing";
    /// A tool's result carries instructions for the model, invisible text or exfiltration bait.
    pub const OUTPUT_INJECTION: &str = "output_injection";
    /// A call that would complete a toxic flow (untrusted input and sensitive data, then egress).
    pub const TOXIC_FLOW: &str = "toxic_flow";
    /// The same privileged call again within the replay window, or a request id reused.
    pub const REPLAY: &str = "replay";
    /// Calls per window over a configured rate.
    pub const RATE_LIMIT: &str = "rate_limit";
    /// A run's or a tool's total calls, or calls at once, over a configured budget.
    pub const BUDGET: &str = "budget";
    /// The same call several times in a row in a run.
    pub const LOOP: &str = "loop";
    /// An agent calling far faster than its own recent baseline.
    pub const BURST: &str = "burst";
    /// The first time an agent calls a write or privileged tool.
    pub const FIRST_USE: &str = "first_use";
}

/// One finding, before it is attributed (agent, run, step, tool) and recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// One of [`kinds`].
    pub kind: String,
    pub severity: Severity,
    /// The rule that matched (e.g. `invisible_unicode`, `calls_per_minute`).
    pub rule: String,
    /// What matched, bounded to [`MAX_EVIDENCE_CHARS`], control and invisible characters shown
    /// escaped; secrets already redacted by the caller.
    pub evidence: String,
}

impl Finding {
    pub fn new(kind: &str, severity: Severity, rule: &str, evidence: &str) -> Self {
        Self { kind: kind.to_owned(), severity, rule: rule.to_owned(), evidence: bounded_evidence(evidence) }
    }

    /// The detail of its `finding.recorded` event; `action` says what the gateway did
    /// (`recorded`, `redacted`, `denied`, `held`, `quarantined`).
    pub fn detail(&self, action: &str) -> serde_json::Value {
        serde_json::json!({
            "finding": self.kind,
            "severity": self.severity,
            "rule": self.rule,
            "evidence": self.evidence,
            "action": action,
        })
    }
}

/// `text` cut to [`MAX_EVIDENCE_CHARS`] characters, with control and invisible format
/// characters written as `\u{…}` so a reader of the log sees them.
pub fn bounded_evidence(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= MAX_EVIDENCE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that render as nothing but can carry text a model reads: zero-width and joiner
/// characters, bidirectional controls, the byte order mark, and the Unicode tag block.
pub fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F | 0x00AD | 0x180E)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_bounded_and_shows_what_hides() {
        let e = bounded_evidence("ok\u{200b}\u{e0041}\n");
        assert_eq!(e, "ok\\u{200b}\\u{e0041}\\u{a}");
        assert_eq!(bounded_evidence(&"x".repeat(500)).chars().count(), MAX_EVIDENCE_CHARS + 1);
        assert!(Severity::High > Severity::Medium && Severity::parse("critical") == Some(Severity::Critical));
        let f = Finding::new("replay", Severity::High, "same_call", "x");
        assert_eq!(f.detail("denied")["severity"], "high");
    }
}
