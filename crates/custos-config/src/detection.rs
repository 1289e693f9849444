//! `[detection]`: what the gateway does about what its detectors see, and the rate limits,
//! budgets and flow marks they work from.
//!
//! These are the validated settings; the TOML they come from is in [`raw`](crate::raw) and the
//! rules that check it in [`validate`](mod@crate::validate).

use std::collections::BTreeMap;
use std::fmt;

use custos_core::{Severity, ToolRef};

/// Default `[detection] loop_threshold`: the same call this many times in a row is refused.
pub const DEFAULT_LOOP_THRESHOLD: u32 = 5;
/// Default `[detection] burst_factor`: how many times its own baseline an agent may call.
pub const DEFAULT_BURST_FACTOR: u32 = 10;
/// Default `[detection] burst_min_calls`: below this many calls a minute nothing is a burst.
pub const DEFAULT_BURST_MIN_CALLS: u32 = 30;
/// Default `[detection.replay] window_secs`.
pub const DEFAULT_REPLAY_WINDOW_SECS: u64 = 300;

/// The marks a tool can carry in `[[servers]] flows`, for toxic-flow detection.
pub mod marks {
    /// The tool returns content the agent's principal did not write (issues, web pages, mail).
    pub const UNTRUSTED_INPUT: &str = "untrusted_input";
    /// The tool returns data that must not leave (private repositories, customer records).
    pub const READ_SENSITIVE: &str = "read_sensitive";
    /// The tool sends data somewhere others can read it (a pull request, a message, a request).
    pub const EGRESS: &str = "egress";
    /// Every mark, as written in the config.
    pub const ALL: [&str; 3] = [UNTRUSTED_INPUT, READ_SENSITIVE, EGRESS];
}

/// `[detection]`, validated; [`Default`] is what an absent table means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionSettings {
    /// What a tool result flagged for injection does.
    pub output: OutputAction,
    /// A tool whose descriptor is flagged at or above this severity is quarantined (its calls
    /// denied); `None`: never.
    pub quarantine_poisoned: Option<Severity>,
    /// The same call (tool and arguments) this many times in a row in a run is refused; 0: off.
    pub loop_threshold: u32,
    /// An agent calling more than this many times its own per-minute baseline is refused; 0: off.
    pub burst_factor: u32,
    /// ...once it made at least this many calls in the last minute, so that a quiet agent's
    /// first busy minute is not a burst.
    pub burst_min_calls: u32,
    pub replay: ReplaySettings,
    /// `[[detection.limits]]`, in the order written; every matching entry applies.
    pub limits: Vec<LimitRule>,
    /// `[detection.classifier]`.
    pub classifier: ClassifierSettings,
}

/// A classifier score in `[0, 1]`, kept in millionths so settings compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score(u32);

impl Score {
    /// `value` when it lies in `(0, 1]`.
    pub fn new(value: f64) -> Option<Self> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // within (0, 1e6]
        (value > 0.0 && value <= 1.0).then(|| Self((value * 1e6).round() as u32))
    }

    #[allow(clippy::cast_precision_loss)] // at most 1e6
    pub fn get(self) -> f32 {
        self.0 as f32 / 1e6
    }
}

/// `[detection.classifier]`: the learned classifier. Thresholds left unset are the model's
/// calibrated ones (`low` is then off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierSettings {
    pub enabled: bool,
    /// A descriptor scoring at least this is quarantined; `None`: by severity only
    /// (`quarantine_poisoned`).
    pub quarantine_score: Option<Score>,
    pub descriptors: ClassifierThresholds,
    pub results: ClassifierThresholds,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            quarantine_score: None,
            descriptors: ClassifierThresholds::default(),
            results: ClassifierThresholds::default(),
        }
    }
}

/// The score from which each severity is reported; `None`: the model's calibrated value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifierThresholds {
    pub low: Option<Score>,
    pub medium: Option<Score>,
    pub high: Option<Score>,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            output: OutputAction::Record,
            quarantine_poisoned: None,
            loop_threshold: DEFAULT_LOOP_THRESHOLD,
            burst_factor: DEFAULT_BURST_FACTOR,
            burst_min_calls: DEFAULT_BURST_MIN_CALLS,
            replay: ReplaySettings::default(),
            limits: Vec::new(),
            classifier: ClassifierSettings::default(),
        }
    }
}

/// `[detection] output`: what happens to a tool result flagged for injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputAction {
    /// It passes; the finding is recorded (the default: detectors have false positives).
    Record,
    /// The flagged parts are replaced before the agent sees them.
    Redact,
    /// The agent gets an error instead of the result.
    Block,
}

impl OutputAction {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Redact => "redact",
            Self::Block => "block",
        }
    }
}

/// `[detection.replay]`: the same privileged call again, or a request id used twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySettings {
    /// How long a privileged call that ran is remembered; 0: same-call replay detection is off.
    pub window_secs: u64,
    pub action: ReplayAction,
    /// A JSON-RPC request id reused within one session is a replay too.
    pub request_ids: bool,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self { window_secs: DEFAULT_REPLAY_WINDOW_SECS, action: ReplayAction::Deny, request_ids: true }
    }
}

/// `[detection.replay] action`: what a replay gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayAction {
    /// Refused (the default).
    Deny,
    /// Held until someone in `group` (a declared `[approvals.groups]` name) approves it.
    Hold { group: String },
    /// Let through; the finding is recorded.
    Record,
}

/// `[[detection.limits]]`: a rate limit, a run budget and a concurrency limit for the calls of
/// matching agents to matching tools. At least one of the three is set; each is at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    /// The agent it applies to; `None`: each agent (counted apart, not together).
    pub agent: Option<String>,
    pub tool: ToolPattern,
    /// Calls in any 60 seconds.
    pub calls_per_minute: Option<u32>,
    /// Calls in one run.
    pub calls_per_run: Option<u32>,
    /// Calls in flight at once.
    pub concurrent: Option<u32>,
}

impl LimitRule {
    /// Whether the rule counts the calls of `agent` to `tool`.
    pub fn applies(&self, agent: &str, tool: &ToolRef) -> bool {
        self.agent.as_deref().is_none_or(|a| a == agent) && self.tool.matches(tool)
    }
}

/// Which tools a limit counts: `*`, `SERVER/*` or `SERVER/TOOL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolPattern {
    Any,
    Server(String),
    Tool(ToolRef),
}

impl ToolPattern {
    pub fn matches(&self, tool: &ToolRef) -> bool {
        match self {
            Self::Any => true,
            Self::Server(server) => tool.server() == *server,
            Self::Tool(t) => t == tool,
        }
    }
}

impl fmt::Display for ToolPattern {
    /// As written in the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Server(server) => write!(f, "{server}/*"),
            Self::Tool(tool) => write!(f, "{tool}"),
        }
    }
}

/// `[[servers]] flows`: the marks of one server's tools, by tool name or `*` pattern. A tool
/// carries the marks of every pattern it matches: marks add up, unlike classes, because a tool
/// that both reads secrets and sends mail is both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFlows {
    /// Pattern → marks, as validated (each mark one of [`marks::ALL`]).
    entries: BTreeMap<String, Vec<String>>,
}

impl ToolFlows {
    /// Patterns to marks; the marks are not checked here ([`validate`](mod@crate::validate)
    /// does that for the config).
    pub fn new(entries: BTreeMap<String, Vec<String>>) -> Self {
        Self { entries }
    }

    /// The marks of tool `tool_name` on this server: sorted, each once.
    pub fn flows_of(&self, tool_name: &str) -> Vec<String> {
        let mut marks: Vec<String> = self
            .entries
            .iter()
            .filter(|(pattern, _)| crate::classify::glob_match(pattern, tool_name))
            .flat_map(|(_, marks)| marks.iter().cloned())
            .collect();
        marks.sort();
        marks.dedup();
        marks
    }

    /// Whether no tool of this server has a mark.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_patterns_match_and_print_as_written() {
        let t = ToolRef::new("github", "create_pr").unwrap();
        let cases = [
            (ToolPattern::Any, true, "*"),
            (ToolPattern::Server("github".into()), true, "github/*"),
            (ToolPattern::Server("git".into()), false, "git/*"),
            (ToolPattern::Tool(ToolRef::new("github", "create_pr").unwrap()), true, "github/create_pr"),
            (ToolPattern::Tool(ToolRef::new("github", "create").unwrap()), false, "github/create"),
        ];
        for (pattern, matches, text) in cases {
            assert_eq!(pattern.matches(&t), matches, "{pattern}");
            assert_eq!(pattern.to_string(), text);
        }
    }

    #[test]
    fn a_rule_applies_to_its_agent_or_to_any() {
        let t = ToolRef::new("s", "t").unwrap();
        let rule = |agent: Option<&str>| LimitRule {
            agent: agent.map(str::to_owned),
            tool: ToolPattern::Any,
            calls_per_minute: Some(1),
            calls_per_run: None,
            concurrent: None,
        };
        assert!(rule(None).applies("a", &t));
        assert!(rule(Some("a")).applies("a", &t));
        assert!(!rule(Some("b")).applies("a", &t));
    }

    #[test]
    fn flows_add_up_over_every_matching_pattern() {
        let flows = ToolFlows::new(BTreeMap::from([
            ("get_issue".to_owned(), vec![marks::UNTRUSTED_INPUT.to_owned()]),
            ("get_*".to_owned(), vec![marks::READ_SENSITIVE.to_owned(), marks::UNTRUSTED_INPUT.to_owned()]),
            ("*".to_owned(), vec![marks::EGRESS.to_owned()]),
        ]));
        assert_eq!(flows.flows_of("get_issue"), ["egress", "read_sensitive", "untrusted_input"]);
        assert_eq!(flows.flows_of("create_pr"), ["egress"]);
        assert!(ToolFlows::default().flows_of("x").is_empty());
        assert!(ToolFlows::default().is_empty() && !flows.is_empty());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let d = DetectionSettings::default();
        assert_eq!((d.output, d.quarantine_poisoned), (OutputAction::Record, None));
        assert_eq!((d.loop_threshold, d.burst_factor, d.burst_min_calls), (5, 10, 30));
        assert_eq!(d.replay, ReplaySettings { window_secs: 300, action: ReplayAction::Deny, request_ids: true });
        assert!(d.limits.is_empty());
        assert_eq!(
            [OutputAction::Record, OutputAction::Redact, OutputAction::Block].map(OutputAction::as_str),
            ["record", "redact", "block"]
        );
    }
}
