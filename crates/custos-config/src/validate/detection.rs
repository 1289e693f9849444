//! `[detection]` and `[[servers]] flows`: raw → [`DetectionSettings`] and [`ToolFlows`].

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use custos_core::{Severity, ToolRef};

use crate::detection::{self, marks};
use crate::detection::{ClassifierSettings, ClassifierThresholds, Score};
use crate::raw::{RawClassifier, RawDetection, RawLimit, RawReplay, RawThresholds};
use crate::{
    ApprovalSettings, ConfigError, DetectionSettings, LimitRule, OutputAction, ReplayAction, ReplaySettings,
    ServerConfig, ToolFlows, ToolPattern,
};

/// `loop_threshold`: 1 would refuse every call, the first one included; past 10 000 the same
/// call in a row is no longer a loop anyone waits for.
const LOOP_THRESHOLD: RangeInclusive<u64> = 2..=10_000;
/// `burst_factor` (0 is off): past a thousand times its baseline nothing would ever be a burst.
const BURST_FACTOR: RangeInclusive<u64> = 0..=1_000;
const BURST_MIN_CALLS: RangeInclusive<u64> = 1..=100_000;
/// `replay.window_secs` (0 is off): every privileged call that ran is remembered this long, so a
/// day at most.
const REPLAY_WINDOW_SECS: RangeInclusive<u64> = 0..=86_400;
/// `calls_per_minute`: the gateway keeps one timestamp per call in the window, so the limit is
/// also the memory a window takes.
const CALLS_PER_MINUTE: RangeInclusive<u64> = 1..=10_000;
const CALLS_PER_RUN: RangeInclusive<u64> = 1..=u32::MAX as u64;
const CONCURRENT: RangeInclusive<u64> = 1..=10_000;

/// `value` as a `u32` if `range` holds it, else an error naming `key` and the range (`off`
/// says what 0 means when the range allows it).
fn ranged(path: &Path, key: &str, value: u64, range: RangeInclusive<u64>) -> Result<u32, ConfigError> {
    match u32::try_from(value) {
        Ok(v) if range.contains(&value) => Ok(v),
        _ => {
            let off = if *range.start() == 0 { " (0 is off)" } else { "" };
            Err(ConfigError::invalid(
                path,
                key,
                format!("`{value}` is out of range: expected {} to {}{off}", range.start(), range.end()),
            ))
        }
    }
}

/// `[detection]`. Replay holds ask a declared approver group; limits name tools of declared
/// servers (any server when none is declared, as `custos run` then names the server itself).
pub(super) fn detection(
    path: &Path,
    raw: RawDetection,
    approvals: &ApprovalSettings,
    servers: &[ServerConfig],
) -> Result<DetectionSettings, ConfigError> {
    let output = match raw.output.as_deref() {
        None | Some("record") => OutputAction::Record,
        Some("redact") => OutputAction::Redact,
        Some("block") => OutputAction::Block,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                "detection.output",
                format!("`{}` is not supported: expected `record`, `redact` or `block`", other.escape_debug()),
            ))
        }
    };
    let quarantine_poisoned = match raw.quarantine_poisoned.as_deref() {
        None | Some("off") => None,
        Some("high") => Some(Severity::High),
        Some("critical") => Some(Severity::Critical),
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                "detection.quarantine_poisoned",
                format!("`{}` is not supported: expected `off`, `high` or `critical`", other.escape_debug()),
            ))
        }
    };
    let loop_threshold = match raw.loop_threshold.unwrap_or(u64::from(detection::DEFAULT_LOOP_THRESHOLD)) {
        0 => 0,
        n if LOOP_THRESHOLD.contains(&n) => u32::try_from(n).unwrap_or(detection::DEFAULT_LOOP_THRESHOLD),
        n => {
            return Err(ConfigError::invalid(
                path,
                "detection.loop_threshold",
                format!(
                    "`{n}` is out of range: expected 0 (off) or {} to {} (the same call that many times in a row)",
                    LOOP_THRESHOLD.start(),
                    LOOP_THRESHOLD.end()
                ),
            ))
        }
    };
    let burst_factor = ranged(
        path,
        "detection.burst_factor",
        raw.burst_factor.unwrap_or(u64::from(detection::DEFAULT_BURST_FACTOR)),
        BURST_FACTOR,
    )?;
    let burst_min_calls = ranged(
        path,
        "detection.burst_min_calls",
        raw.burst_min_calls.unwrap_or(u64::from(detection::DEFAULT_BURST_MIN_CALLS)),
        BURST_MIN_CALLS,
    )?;
    let replay = replay(path, raw.replay, approvals)?;
    let limits =
        raw.limits.into_iter().enumerate().map(|(i, l)| limit(path, i, l, servers)).collect::<Result<Vec<_>, _>>()?;
    let classifier = classifier(path, raw.classifier)?;
    Ok(DetectionSettings {
        output,
        quarantine_poisoned,
        loop_threshold,
        burst_factor,
        burst_min_calls,
        replay,
        limits,
        classifier,
    })
}

/// `[detection.classifier]`: every score in `(0, 1]`, and a target's thresholds rising with
/// severity where more than one is set.
fn classifier(path: &Path, raw: RawClassifier) -> Result<ClassifierSettings, ConfigError> {
    let score = |key: &str, value: Option<f64>| -> Result<Option<Score>, ConfigError> {
        value
            .map(|v| {
                Score::new(v).ok_or_else(|| {
                    ConfigError::invalid(
                        path,
                        key,
                        format!("`{v}` is not a score: expected a number above 0 and at most 1"),
                    )
                })
            })
            .transpose()
    };
    let thresholds = |target: &str, raw: RawThresholds| -> Result<ClassifierThresholds, ConfigError> {
        let key = |severity: &str| format!("detection.classifier.{target}.{severity}");
        let t = ClassifierThresholds {
            low: score(&key("low"), raw.low)?,
            medium: score(&key("medium"), raw.medium)?,
            high: score(&key("high"), raw.high)?,
        };
        let set: Vec<(&str, Score)> = [("low", t.low), ("medium", t.medium), ("high", t.high)]
            .into_iter()
            .filter_map(|(n, s)| Some((n, s?)))
            .collect();
        if let Some([(lower, _), (higher, _)]) = set.windows(2).find(|p| matches!(p, [(_, a), (_, b)] if a > b)) {
            return Err(ConfigError::invalid(
                path,
                format!("detection.classifier.{target}"),
                format!("`{lower}` is above `{higher}`: a higher severity needs a score at least as high"),
            ));
        }
        Ok(t)
    };
    Ok(ClassifierSettings {
        enabled: raw.enabled.unwrap_or(true),
        quarantine_score: score("detection.classifier.quarantine_score", raw.quarantine_score)?,
        descriptors: thresholds("descriptors", raw.descriptors)?,
        results: thresholds("results", raw.results)?,
    })
}

/// `[detection.replay]`: `group` goes with `action = "hold"` and only with it.
fn replay(path: &Path, raw: RawReplay, approvals: &ApprovalSettings) -> Result<ReplaySettings, ConfigError> {
    let window_secs = raw.window_secs.unwrap_or(detection::DEFAULT_REPLAY_WINDOW_SECS);
    if !REPLAY_WINDOW_SECS.contains(&window_secs) {
        return Err(ConfigError::invalid(
            path,
            "detection.replay.window_secs",
            format!(
                "`{window_secs}` is out of range: expected {} to {} (0 is off)",
                REPLAY_WINDOW_SECS.start(),
                REPLAY_WINDOW_SECS.end()
            ),
        ));
    }
    let action = match (raw.action.as_deref(), raw.group) {
        (Some("hold"), None) => {
            return Err(ConfigError::invalid(
                path,
                "detection.replay.group",
                "required with `action = \"hold\"`: the approver group asked, declared under [approvals.groups]",
            ))
        }
        (Some("hold"), Some(group)) => {
            if approvals.group(&group).is_none() {
                let declared: Vec<String> = approvals.groups.iter().map(|g| format!("`{}`", g.name)).collect();
                let declared = if declared.is_empty() { "none".to_owned() } else { declared.join(", ") };
                return Err(ConfigError::invalid(
                    path,
                    "detection.replay.group",
                    format!(
                        "unknown approver group `{}`: declare it as `[approvals.groups.{0}]` (declared: {declared})",
                        group.escape_debug()
                    ),
                ));
            }
            ReplayAction::Hold { group }
        }
        (None | Some("deny" | "record"), Some(_)) => {
            return Err(ConfigError::invalid(
                path,
                "detection.replay.group",
                "applies to `action = \"hold\"` only: a denied or recorded replay asks nobody",
            ))
        }
        (None | Some("deny"), None) => ReplayAction::Deny,
        (Some("record"), None) => ReplayAction::Record,
        (Some(other), _) => {
            return Err(ConfigError::invalid(
                path,
                "detection.replay.action",
                format!("`{}` is not supported: expected `deny`, `hold` or `record`", other.escape_debug()),
            ))
        }
    };
    Ok(ReplaySettings { window_secs, action, request_ids: raw.request_ids.unwrap_or(true) })
}

/// `[[detection.limits]]` entry `i`.
fn limit(path: &Path, i: usize, raw: RawLimit, servers: &[ServerConfig]) -> Result<LimitRule, ConfigError> {
    let key = |field: &str| format!("detection.limits[{i}].{field}");
    // Agents registered with `custos agents add` are not known here, so any id an
    // `[[agents]]` entry could have is accepted.
    let agent = match raw.agent {
        None => None,
        Some(a) if a == "*" => None,
        Some(a) if a.trim().is_empty() || a.chars().any(char::is_control) => {
            return Err(ConfigError::invalid(
                path,
                key("agent"),
                format!("`{}` is not an agent: expected an agent id or `*`", a.escape_debug()),
            ))
        }
        Some(a) => Some(a),
    };
    let tool = match raw.tool {
        None => ToolPattern::Any,
        Some(text) => tool_pattern(path, &key("tool"), &text, servers)?,
    };
    if raw.calls_per_minute.is_none() && raw.calls_per_run.is_none() && raw.concurrent.is_none() {
        return Err(ConfigError::invalid(
            path,
            format!("detection.limits[{i}]"),
            "a limit with nothing to limit: give `calls_per_minute`, `calls_per_run` or `concurrent`",
        ));
    }
    let calls_per_minute =
        raw.calls_per_minute.map(|n| ranged(path, &key("calls_per_minute"), n, CALLS_PER_MINUTE)).transpose()?;
    let calls_per_run = raw.calls_per_run.map(|n| ranged(path, &key("calls_per_run"), n, CALLS_PER_RUN)).transpose()?;
    let concurrent = raw.concurrent.map(|n| ranged(path, &key("concurrent"), n, CONCURRENT)).transpose()?;
    Ok(LimitRule { agent, tool, calls_per_minute, calls_per_run, concurrent })
}

/// `*`, `SERVER/*` or `SERVER/TOOL`; the server declared under `[[servers]]` when any is.
fn tool_pattern(path: &Path, key: &str, text: &str, servers: &[ServerConfig]) -> Result<ToolPattern, ConfigError> {
    if text == "*" {
        return Ok(ToolPattern::Any);
    }
    let bad = || {
        ConfigError::invalid(
            path,
            key,
            format!("`{}` is not a tool pattern: expected `SERVER/TOOL`, `SERVER/*` or `*`", text.escape_debug()),
        )
    };
    let Some((server, name)) = text.split_once('/') else { return Err(bad()) };
    let control = |s: &str| s.chars().any(char::is_control);
    if server.is_empty() || server.contains("__") || name.is_empty() || control(server) || control(name) {
        return Err(bad());
    }
    if name != "*" && name.contains('*') {
        return Err(ConfigError::invalid(
            path,
            key,
            format!(
                "`{}`: a limit names one tool or all of a server's (`{server}/*`), not a pattern",
                text.escape_debug()
            ),
        ));
    }
    if !servers.is_empty() && !servers.iter().any(|s| s.name == server) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!(
                "unknown server `{}` in `{}`: declare it under [[servers]]",
                server.escape_debug(),
                text.escape_debug()
            ),
        ));
    }
    if name == "*" {
        return Ok(ToolPattern::Server(server.to_owned()));
    }
    let tool = ToolRef::new(server, name)
        .map_err(|e| ConfigError::invalid(path, key, format!("`{}`: {e}", text.escape_debug())))?;
    Ok(ToolPattern::Tool(tool))
}

/// `flows` of server `i`: each pattern non-empty with at least one mark, each mark a known one.
pub(super) fn flows(
    path: &Path,
    i: usize,
    server: &str,
    raw: BTreeMap<String, Vec<String>>,
) -> Result<ToolFlows, ConfigError> {
    let key = format!("servers[{i}].flows");
    for (pattern, found) in &raw {
        if pattern.is_empty() {
            return Err(ConfigError::invalid(
                path,
                &key,
                format!("server `{server}`: an empty tool name: expected a tool name or a `*` pattern"),
            ));
        }
        if found.is_empty() {
            return Err(ConfigError::invalid(
                path,
                &key,
                format!(
                    "server `{server}`: `{}` has no marks: expected some of `untrusted_input`, `read_sensitive` and `egress`",
                    pattern.escape_debug()
                ),
            ));
        }
        if let Some(unknown) = found.iter().find(|m| !marks::ALL.contains(&m.as_str())) {
            return Err(ConfigError::invalid(
                path,
                &key,
                format!(
                    "server `{server}`: `{}` for `{}` is not a flow mark: expected `untrusted_input`, `read_sensitive` or `egress`",
                    unknown.escape_debug(),
                    pattern.escape_debug()
                ),
            ));
        }
    }
    Ok(ToolFlows::new(raw))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use custos_core::{Severity, ToolRef};

    use crate::{
        ClassifierSettings, ClassifierThresholds, Config, ConfigError, DetectionSettings, LimitRule, OutputAction,
        ReplayAction, ReplaySettings, Score, ToolPattern,
    };

    /// An agent, an approver group `security` and servers `github` and `files`.
    const BASE: &str = r#"
[policy]
files = ["p.cedar"]
[[agents]]
id = "reader"
owner = "alice@example.com"
purpose = "reads"
[approvals.groups.security]
members = ["sec@example.com"]
[[servers]]
name = "github"
flows = { "get_issue" = ["untrusted_input"], "get_*" = ["read_sensitive"], "create_pr" = ["egress"] }
[[servers]]
name = "files"
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/custos/custos.toml"), text)
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_detection_table_validates() {
        let text = format!(
            r#"{BASE}
[detection]
output = "redact"
quarantine_poisoned = "critical"
loop_threshold = 3
burst_factor = 4
burst_min_calls = 20

[detection.replay]
window_secs = 60
action = "hold"
group = "security"
request_ids = false

[[detection.limits]]
calls_per_minute = 60

[[detection.limits]]
agent = "reader"
tool = "github/*"
calls_per_run = 500
concurrent = 4

[[detection.limits]]
agent = "*"
tool = "github/create_pr"
calls_per_minute = 2
calls_per_run = 10
concurrent = 1
"#
        );
        let c = load(&text).unwrap();
        assert_eq!(
            c.detection,
            DetectionSettings {
                output: OutputAction::Redact,
                quarantine_poisoned: Some(Severity::Critical),
                loop_threshold: 3,
                burst_factor: 4,
                burst_min_calls: 20,
                replay: ReplaySettings {
                    window_secs: 60,
                    action: ReplayAction::Hold { group: "security".into() },
                    request_ids: false,
                },
                classifier: ClassifierSettings::default(),
                limits: vec![
                    LimitRule {
                        agent: None,
                        tool: ToolPattern::Any,
                        calls_per_minute: Some(60),
                        calls_per_run: None,
                        concurrent: None,
                    },
                    LimitRule {
                        agent: Some("reader".into()),
                        tool: ToolPattern::Server("github".into()),
                        calls_per_minute: None,
                        calls_per_run: Some(500),
                        concurrent: Some(4),
                    },
                    LimitRule {
                        agent: None,
                        tool: ToolPattern::Tool(ToolRef::new("github", "create_pr").unwrap()),
                        calls_per_minute: Some(2),
                        calls_per_run: Some(10),
                        concurrent: Some(1),
                    },
                ],
            }
        );
        let github = c.server("github").unwrap();
        assert_eq!(github.flows.flows_of("get_issue"), ["read_sensitive", "untrusted_input"]);
        assert_eq!(github.flows.flows_of("get_file"), ["read_sensitive"]);
        assert_eq!(github.flows.flows_of("create_pr"), ["egress"]);
        assert!(github.flows.flows_of("list_prs").is_empty());
        assert!(c.server("files").unwrap().flows.is_empty());
    }

    #[test]
    fn an_absent_table_means_the_defaults() {
        assert_eq!(load(BASE).unwrap().detection, DetectionSettings::default());
        let c = load(&format!("{BASE}\n[detection]\n[detection.replay]\n")).unwrap();
        assert_eq!(c.detection, DetectionSettings::default());
    }

    #[test]
    fn zero_turns_detectors_off_and_other_choices_parse() {
        let c = load(&format!(
            "{BASE}\n[detection]\noutput = \"block\"\nquarantine_poisoned = \"high\"\nloop_threshold = 0\n\
             burst_factor = 0\n[detection.replay]\nwindow_secs = 0\naction = \"record\"\n"
        ))
        .unwrap();
        let d = c.detection;
        assert_eq!((d.output, d.quarantine_poisoned), (OutputAction::Block, Some(Severity::High)));
        assert_eq!((d.loop_threshold, d.burst_factor, d.replay.window_secs), (0, 0, 0));
        assert_eq!(d.replay.action, ReplayAction::Record);
        let c = load(&format!(
            "{BASE}\n[detection]\nquarantine_poisoned = \"off\"\n[detection.replay]\naction = \"deny\"\n"
        ))
        .unwrap();
        assert_eq!((c.detection.quarantine_poisoned, c.detection.replay.action), (None, ReplayAction::Deny));
    }

    #[test]
    fn classifier_thresholds_parse_and_bad_ones_name_their_key() {
        let c = load(&format!(
            "{BASE}\n[detection.classifier]\nquarantine_score = 0.99\n[detection.classifier.descriptors]\n\
             medium = 0.6\nhigh = 0.9\n[detection.classifier.results]\nlow = 0.25\n"
        ))
        .unwrap();
        let k = c.detection.classifier;
        assert!(k.enabled);
        assert_eq!(k.quarantine_score, Score::new(0.99));
        assert_eq!(
            (k.descriptors.low, k.descriptors.medium, k.descriptors.high),
            (None, Score::new(0.6), Score::new(0.9))
        );
        assert_eq!(k.results, ClassifierThresholds { low: Score::new(0.25), medium: None, high: None });
        assert!((Score::new(0.6).unwrap().get() - 0.6).abs() < 1e-6);
        let off = load(&format!("{BASE}\n[detection.classifier]\nenabled = false\n")).unwrap();
        assert!(!off.detection.classifier.enabled);
        let table = |body: &str| format!("{BASE}\n[detection.classifier]\n{body}\n");
        for (text, needles) in [
            (
                table("quarantine_score = 0.0"),
                &["`detection.classifier.quarantine_score`", "`0`", "above 0 and at most 1"][..],
            ),
            (table("quarantine_score = 1.5"), &["`detection.classifier.quarantine_score`", "`1.5`"][..]),
            (table("[detection.classifier.results]\nhigh = -1.0"), &["`detection.classifier.results.high`"][..]),
            (
                table("[detection.classifier.descriptors]\nmedium = 0.9\nhigh = 0.5"),
                &["`detection.classifier.descriptors`", "`medium` is above `high`"][..],
            ),
        ] {
            let e = err(&text);
            assert!(needles.iter().all(|n| e.contains(n)), "{text}\n{e}");
        }
        assert!(err(&table("threshold = 0.5")).contains("threshold"), "unknown keys are refused");
    }

    #[test]
    fn detection_errors_name_the_key_and_what_is_allowed() {
        let detection = |body: &str| format!("{BASE}\n[detection]\n{body}\n");
        let replay = |body: &str| format!("{BASE}\n[detection.replay]\n{body}\n");
        let limit = |body: &str| format!("{BASE}\n[[detection.limits]]\n{body}\n");
        for (text, needles) in [
            (detection("output = \"drop\""), &["`detection.output`", "`drop`", "`record`, `redact` or `block`"][..]),
            (detection("output = \"Record\""), &["`detection.output`", "`Record`"][..]),
            (
                detection("quarantine_poisoned = \"medium\""),
                &["`detection.quarantine_poisoned`", "`medium`", "`off`, `high` or `critical`"][..],
            ),
            (detection("loop_threshold = 1"), &["`detection.loop_threshold`", "`1`", "0 (off) or 2 to 10000"][..]),
            (detection("loop_threshold = 10001"), &["`detection.loop_threshold`", "`10001`"][..]),
            (detection("burst_factor = 1001"), &["`detection.burst_factor`", "0 to 1000 (0 is off)"][..]),
            (detection("burst_min_calls = 0"), &["`detection.burst_min_calls`", "`0`", "1 to 100000"][..]),
            (replay("action = \"block\""), &["`detection.replay.action`", "`block`", "`deny`, `hold` or `record`"][..]),
            (replay("action = \"hold\""), &["`detection.replay.group`", "required", "[approvals.groups]"][..]),
            (
                replay("action = \"hold\"\ngroup = \"ops\""),
                &["`detection.replay.group`", "unknown approver group `ops`", "`[approvals.groups.ops]`", "`security`"]
                    [..],
            ),
            (replay("group = \"security\""), &["`detection.replay.group`", "`action = \"hold\"` only"][..]),
            (replay("action = \"record\"\ngroup = \"security\""), &["`detection.replay.group`", "only"][..]),
            (replay("window_secs = 86401"), &["`detection.replay.window_secs`", "`86401`", "0 to 86400"][..]),
            (limit("agent = \"reader\""), &["`detection.limits[0]`", "nothing to limit", "`calls_per_minute`"][..]),
            (limit("calls_per_minute = 0"), &["`detection.limits[0].calls_per_minute`", "`0`", "1 to 10000"][..]),
            (limit("calls_per_minute = 10001"), &["`detection.limits[0].calls_per_minute`", "`10001`"][..]),
            (limit("calls_per_run = 0"), &["`detection.limits[0].calls_per_run`", "`0`"][..]),
            (limit("calls_per_run = 4294967296"), &["`detection.limits[0].calls_per_run`", "`4294967296`"][..]),
            (limit("concurrent = 0"), &["`detection.limits[0].concurrent`", "`0`"][..]),
            (limit("agent = \"\"\nconcurrent = 1"), &["`detection.limits[0].agent`", "an agent id or `*`"][..]),
            (limit("agent = \" \"\nconcurrent = 1"), &["`detection.limits[0].agent`"][..]),
            (
                limit("tool = \"create_pr\"\nconcurrent = 1"),
                &["`detection.limits[0].tool`", "`create_pr`", "`SERVER/TOOL`, `SERVER/*` or `*`"][..],
            ),
            (limit("tool = \"github/\"\nconcurrent = 1"), &["`detection.limits[0].tool`", "`github/`"][..]),
            (limit("tool = \"/x\"\nconcurrent = 1"), &["`detection.limits[0].tool`", "`/x`"][..]),
            (limit("tool = \"\"\nconcurrent = 1"), &["`detection.limits[0].tool`", "not a tool pattern"][..]),
            (
                limit("tool = \"github/get_*\"\nconcurrent = 1"),
                &["`detection.limits[0].tool`", "`github/get_*`", "`github/*`"][..],
            ),
            (
                limit("tool = \"gitlab/*\"\nconcurrent = 1"),
                &["`detection.limits[0].tool`", "unknown server `gitlab`", "[[servers]]"][..],
            ),
        ] {
            let e = err(&text);
            assert!(needles.iter().all(|n| e.contains(n)), "{text}\n{e}");
            assert!(e.starts_with("/etc/custos/custos.toml: "), "{e}");
        }
        // The index names the entry at fault.
        let e = err(&format!("{BASE}\n[[detection.limits]]\nconcurrent = 1\n[[detection.limits]]\nconcurrent = 0\n"));
        assert!(e.contains("`detection.limits[1].concurrent`"), "{e}");
    }

    #[test]
    fn a_hold_without_any_group_declared_says_so() {
        let text = BASE.replace("[approvals.groups.security]\nmembers = [\"sec@example.com\"]\n", "");
        let e = err(&format!("{text}\n[detection.replay]\naction = \"hold\"\ngroup = \"security\"\n"));
        assert!(e.contains("unknown approver group `security`") && e.contains("(declared: none)"), "{e}");
    }

    #[test]
    fn limits_name_any_server_when_none_is_declared() {
        let text = r#"
[policy]
files = ["p.cedar"]
[[detection.limits]]
agent = "registered-later"
tool = "anything/some_tool"
calls_per_run = 3
"#;
        let c = load(text).unwrap();
        let rule = &c.detection.limits[0];
        assert_eq!(rule.agent.as_deref(), Some("registered-later"));
        assert_eq!(rule.tool, ToolPattern::Tool(ToolRef::new("anything", "some_tool").unwrap()));
        // Only the first `/` separates, as in tool references: tool names may hold slashes.
        let c = load(&text.replace("anything/some_tool", "anything/a/b")).unwrap();
        assert_eq!(c.detection.limits[0].tool, ToolPattern::Tool(ToolRef::new("anything", "a/b").unwrap()));
    }

    #[test]
    fn flow_errors_name_the_server_the_pattern_and_the_marks() {
        let server = |flows: &str| format!("{BASE}\n[[servers]]\nname = \"mail\"\nflows = {{ {flows} }}\n");
        for (text, needles) in [
            (
                server("\"send_*\" = [\"exfiltration\"]"),
                &[
                    "`servers[2].flows`",
                    "server `mail`",
                    "`exfiltration` for `send_*`",
                    "`untrusted_input`, `read_sensitive` or `egress`",
                ][..],
            ),
            (server("\"send\" = [\"Egress\"]"), &["`servers[2].flows`", "`Egress` for `send`"][..]),
            (server("\"send\" = []"), &["`servers[2].flows`", "server `mail`", "`send` has no marks"][..]),
            (server("\"\" = [\"egress\"]"), &["`servers[2].flows`", "server `mail`", "empty tool name"][..]),
        ] {
            let e = err(&text);
            assert!(needles.iter().all(|n| e.contains(n)), "{text}\n{e}");
        }
        let c = load(&server("\"send\" = [\"egress\", \"egress\"]")).unwrap();
        assert_eq!(c.server("mail").unwrap().flows.flows_of("send"), ["egress"]);
    }

    #[test]
    fn unknown_detection_keys_are_refused() {
        for (text, key) in [
            (format!("{BASE}\n[detection]\noutputs = \"record\"\n"), "outputs"),
            (format!("{BASE}\n[detection.replay]\nwindow = 5\n"), "window"),
            (format!("{BASE}\n[[detection.limits]]\nconcurrent = 1\nper_minute = 5\n"), "per_minute"),
            (format!("{BASE}\n[detection.rate]\nx = 1\n"), "rate"),
        ] {
            let e = err(&text);
            assert!(e.contains(key) && e.contains("unknown field"), "{text}\n{e}");
        }
        // Marks are strings in a list; anything else is a parse error naming the place.
        let e = err(&format!("{BASE}\n[[servers]]\nname = \"m\"\nflows = {{ \"send\" = \"egress\" }}\n"));
        assert!(e.contains("/etc/custos/custos.toml:"), "{e}");
    }
}
