use std::time::{Duration, Instant};

use custos_config::{DetectionSettings, LimitRule, ReplayAction, ReplaySettings, ToolPattern};
use custos_core::{ToolClass, ToolRef};

use super::*;

/// Every detector off; each test turns on the one it is about.
fn quiet() -> DetectionSettings {
    DetectionSettings {
        loop_threshold: 0,
        burst_factor: 0,
        replay: ReplaySettings { window_secs: 0, action: ReplayAction::Deny, request_ids: true },
        ..DetectionSettings::default()
    }
}

fn limits(rules: Vec<LimitRule>) -> DetectionSettings {
    DetectionSettings { limits: rules, ..quiet() }
}

fn rule(tool: ToolPattern) -> LimitRule {
    LimitRule { agent: None, tool, calls_per_minute: None, calls_per_run: None, concurrent: None }
}

/// A call with its own owned parts; `facts()` is what the detectors see.
struct Call {
    agent: String,
    run: String,
    tool: ToolRef,
    class: ToolClass,
    args: String,
}

impl Call {
    fn new(agent: &str, tool: &str) -> Self {
        Self {
            agent: agent.into(),
            run: "r1".into(),
            tool: tool.parse().unwrap(),
            class: ToolClass::Read,
            args: "a".repeat(64),
        }
    }

    fn run(mut self, run: &str) -> Self {
        self.run = run.into();
        self
    }

    fn class(mut self, class: ToolClass) -> Self {
        self.class = class;
        self
    }

    fn args(mut self, args: &str) -> Self {
        self.args = args.into();
        self
    }

    fn facts(&self) -> CallFacts<'_> {
        CallFacts {
            agent: &self.agent,
            run: &self.run,
            tool: &self.tool,
            class: self.class,
            arguments_sha256: &self.args,
        }
    }
}

/// A clock for the test: `at(s)` is `s` seconds after its start.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(&self, secs: f64) -> Instant {
        self.0 + Duration::from_secs_f64(secs)
    }
}

/// (kind, rule) of each breach.
fn found(checked: &Checked) -> Vec<(&str, &str)> {
    checked.breaches.iter().map(|b| (b.finding.kind.as_str(), b.finding.rule.as_str())).collect()
}

#[test]
fn the_call_past_the_rate_is_refused_and_the_window_slides() {
    let abuse = Abuse::new(&limits(vec![LimitRule { calls_per_minute: Some(3), ..rule(ToolPattern::Any) }]));
    let clock = Clock::new();
    let call = Call::new("a", "github/get_issue");
    for t in [0.0, 10.0, 20.0] {
        assert!(abuse.before_call(&call.facts(), clock.at(t)).breaches.is_empty(), "{t}");
    }
    let checked = abuse.before_call(&call.facts(), clock.at(30.0));
    assert_eq!(found(&checked), [("rate_limit", "calls_per_minute")]);
    let breach = &checked.breaches[0];
    assert_eq!(breach.verdict, Verdict::Refuse);
    assert_eq!(breach.finding.severity, Severity::Medium);
    assert_eq!(breach.finding.evidence, "agent `a`: 4 calls to `*` in the last minute (limit 3)");
    // Another agent has its own window.
    assert!(abuse.before_call(&Call::new("b", "github/get_issue").facts(), clock.at(30.0)).breaches.is_empty());
    // At 75 s the calls at 0 and 10 s have left the window: 20 and 30 s remain.
    assert!(abuse.before_call(&call.facts(), clock.at(75.0)).breaches.is_empty());
    assert_eq!(found(&abuse.before_call(&call.facts(), clock.at(76.0))), [("rate_limit", "calls_per_minute")]);
    // INVARIANT: a window holds at most its limit.
    for t in 0..100 {
        abuse.before_call(&call.facts(), clock.at(80.0 + f64::from(t) / 10.0));
    }
    let state = abuse.lock();
    assert!(state.agents.entries.values().all(|(_, a)| a.windows.iter().all(|w| w.len() <= 3)));
}

#[test]
fn a_refused_call_still_counts_toward_the_rate() {
    let abuse = Abuse::new(&limits(vec![LimitRule { calls_per_minute: Some(1), ..rule(ToolPattern::Any) }]));
    let clock = Clock::new();
    let call = Call::new("a", "s/t");
    assert!(abuse.before_call(&call.facts(), clock.at(0.0)).breaches.is_empty());
    assert_eq!(found(&abuse.before_call(&call.facts(), clock.at(50.0))), [("rate_limit", "calls_per_minute")]);
    // The call at 0 s has left the window, but the refused one at 50 s has not: a flood is a flood.
    assert_eq!(found(&abuse.before_call(&call.facts(), clock.at(70.0))), [("rate_limit", "calls_per_minute")]);
    assert!(abuse.before_call(&call.facts(), clock.at(131.0)).breaches.is_empty());
}

#[test]
fn rates_count_only_matching_agents_and_tools() {
    let abuse = Abuse::new(&limits(vec![
        LimitRule { agent: Some("a".into()), calls_per_minute: Some(1), ..rule(ToolPattern::Server("github".into())) },
        LimitRule { calls_per_minute: Some(1), ..rule(ToolPattern::Tool("files/write".parse().unwrap())) },
    ]));
    let clock = Clock::new();
    let t = clock.at(0.0);
    for _ in 0..3 {
        assert!(abuse.before_call(&Call::new("a", "files/read").facts(), t).breaches.is_empty());
        assert!(abuse.before_call(&Call::new("b", "github/get_issue").facts(), t).breaches.is_empty());
    }
    assert!(abuse.before_call(&Call::new("a", "github/get_issue").facts(), t).breaches.is_empty());
    let checked = abuse.before_call(&Call::new("a", "github/list").facts(), t);
    assert_eq!(checked.breaches[0].finding.evidence, "agent `a`: 2 calls to `github/*` in the last minute (limit 1)");
    assert!(abuse.before_call(&Call::new("b", "files/write").facts(), t).breaches.is_empty());
    assert_eq!(
        found(&abuse.before_call(&Call::new("b", "files/write").facts(), t)),
        [("rate_limit", "calls_per_minute")]
    );
}

#[test]
fn a_run_past_its_budget_is_refused() {
    let abuse =
        Abuse::new(&limits(vec![LimitRule { calls_per_run: Some(2), ..rule(ToolPattern::Server("github".into())) }]));
    let clock = Clock::new();
    let call = |tool: &str, run: &str| Call::new("a", tool).run(run).args(&format!("{tool}{run}"));
    assert!(abuse.before_call(&call("github/a", "r1").facts(), clock.at(0.0)).breaches.is_empty());
    assert!(abuse.before_call(&call("files/x", "r1").facts(), clock.at(1.0)).breaches.is_empty());
    assert!(abuse.before_call(&call("github/b", "r1").facts(), clock.at(2.0)).breaches.is_empty());
    // Budgets are not rates: an hour later the run is still over.
    let checked = abuse.before_call(&call("github/c", "r1").facts(), clock.at(3600.0));
    assert_eq!(found(&checked), [("budget", "calls_per_run")]);
    assert_eq!(checked.breaches[0].finding.evidence, "agent `a`: run `r1` made 3 calls to `github/*` (limit 2)");
    assert_eq!(checked.breaches[0].verdict, Verdict::Refuse);
    // Another run has its own budget.
    assert!(abuse.before_call(&call("github/c", "r2").facts(), clock.at(3600.0)).breaches.is_empty());
}

#[test]
fn concurrency_slots_are_released_when_the_last_clone_drops() {
    let abuse = Abuse::new(&limits(vec![LimitRule { concurrent: Some(2), ..rule(ToolPattern::Server("s".into())) }]));
    let t = Clock::new().at(0.0);
    let call = Call::new("a", "s/t");
    let first = abuse.before_call(&call.facts(), t);
    let second = abuse.before_call(&call.facts(), t);
    assert!(first.breaches.is_empty() && second.breaches.is_empty());
    let (first, second) = (first.slot.unwrap(), second.slot.unwrap());
    let third = abuse.before_call(&call.facts(), t);
    assert_eq!(found(&third), [("budget", "concurrent")]);
    assert_eq!(third.breaches[0].finding.evidence, "agent `a`: 2 calls to `s/*` in flight (limit 2)");
    assert!(third.slot.is_none());
    // Other agents and tools the limit does not name are not held back.
    assert!(abuse.before_call(&Call::new("b", "s/t").facts(), t).slot.is_some());
    let other = abuse.before_call(&Call::new("a", "x/t").facts(), t);
    assert!(other.breaches.is_empty() && other.slot.is_none());

    let clone = first.clone();
    drop(first);
    assert_eq!(found(&abuse.before_call(&call.facts(), t)), [("budget", "concurrent")], "a clone still holds it");
    drop(clone);
    let fourth = abuse.before_call(&call.facts(), t);
    assert!(fourth.breaches.is_empty() && fourth.slot.is_some());
    drop((second, fourth));
    let both: Vec<_> = (0..2).map(|_| abuse.before_call(&call.facts(), t)).collect();
    assert!(both.iter().all(|c| c.breaches.is_empty() && c.slot.is_some()));
}

#[test]
fn without_concurrency_limits_there_is_no_slot() {
    let abuse = Abuse::new(&limits(vec![LimitRule { calls_per_minute: Some(100), ..rule(ToolPattern::Any) }]));
    let checked = abuse.before_call(&Call::new("a", "s/t").facts(), Clock::new().at(0.0));
    assert!(checked.breaches.is_empty() && checked.slot.is_none());
}

#[test]
fn the_same_call_n_times_in_a_row_is_a_loop_and_another_call_resets_it() {
    let abuse = Abuse::new(&DetectionSettings { loop_threshold: 3, ..quiet() });
    let clock = Clock::new();
    let same = Call::new("a", "s/t");
    let other_tool = Call::new("a", "s/u");
    let other_args = Call::new("a", "s/t").args("b");
    let mut t = 0.0;
    let mut call = |c: &Call| {
        t += 1.0;
        found(&abuse.before_call(&c.facts(), clock.at(t))).len()
    };
    // Interleaved calls never reach three in a row.
    for c in [&same, &same, &other_tool, &same, &same, &other_args, &same, &same] {
        assert_eq!(call(c), 0);
    }
    let checked = abuse.before_call(&same.facts(), clock.at(100.0));
    assert_eq!(found(&checked), [("loop", "same_call_in_a_row")]);
    assert_eq!(checked.breaches[0].finding.evidence, "`s/t` called 3 times in a row with the same arguments");
    assert_eq!(checked.breaches[0].finding.severity, Severity::Medium);
    // Still looping: the fourth is refused too.
    assert_eq!(found(&abuse.before_call(&same.facts(), clock.at(101.0))), [("loop", "same_call_in_a_row")]);
    // Another run of the same agent has its own streak.
    assert!(abuse.before_call(&Call::new("a", "s/t").run("r2").facts(), clock.at(102.0)).breaches.is_empty());
    assert!(abuse.before_call(&other_tool.facts(), clock.at(103.0)).breaches.is_empty());
    assert!(abuse.before_call(&same.facts(), clock.at(104.0)).breaches.is_empty());
}

fn replaying(action: ReplayAction) -> Abuse {
    Abuse::new(&DetectionSettings { replay: ReplaySettings { window_secs: 300, action, request_ids: true }, ..quiet() })
}

#[test]
fn a_privileged_call_that_ran_is_a_replay_within_the_window() {
    let abuse = replaying(ReplayAction::Deny);
    let clock = Clock::new();
    let call = Call::new("a", "bank/transfer").class(ToolClass::Privileged);
    // Asked twice but never run (denied, say): not a replay.
    assert!(abuse.before_call(&call.facts(), clock.at(0.0)).breaches.is_empty());
    assert!(abuse.before_call(&call.facts(), clock.at(1.0)).breaches.is_empty());
    abuse.executed(&call.facts(), clock.at(2.0));
    let checked = abuse.before_call(&call.facts(), clock.at(12.5));
    assert_eq!(found(&checked), [("replay", "same_call")]);
    let breach = &checked.breaches[0];
    assert_eq!((breach.finding.severity, &breach.verdict), (Severity::High, &Verdict::Refuse));
    assert_eq!(breach.finding.evidence, "`bank/transfer` with the same arguments ran 10 s ago");
    // Other arguments, another agent: other calls.
    assert!(abuse
        .before_call(&Call::new("a", "bank/transfer").class(ToolClass::Privileged).args("b").facts(), clock.at(13.0))
        .breaches
        .is_empty());
    assert!(abuse
        .before_call(&Call::new("b", "bank/transfer").class(ToolClass::Privileged).facts(), clock.at(13.0))
        .breaches
        .is_empty());
    // The window is 300 s from when it ran.
    assert_eq!(found(&abuse.before_call(&call.facts(), clock.at(301.9))), [("replay", "same_call")]);
    assert!(abuse.before_call(&call.facts(), clock.at(302.0)).breaches.is_empty());
    assert!(abuse.lock().ran.last.is_empty(), "expired calls are forgotten");
}

#[test]
fn only_privileged_calls_are_replays() {
    let abuse = replaying(ReplayAction::Deny);
    let clock = Clock::new();
    for class in [ToolClass::Read, ToolClass::Write] {
        let call = Call::new("a", "s/t").class(class);
        abuse.executed(&call.facts(), clock.at(0.0));
        assert!(abuse.before_call(&call.facts(), clock.at(1.0)).breaches.is_empty(), "{class}");
    }
    assert!(abuse.lock().ran.last.is_empty());
}

#[test]
fn a_replay_is_held_or_recorded_as_configured_and_off_with_a_zero_window() {
    let clock = Clock::new();
    let call = Call::new("a", "s/t").class(ToolClass::Privileged);
    for (action, verdict) in [
        (ReplayAction::Hold { group: "security".into() }, Verdict::Hold { group: "security".into() }),
        (ReplayAction::Record, Verdict::Record),
    ] {
        let abuse = replaying(action);
        abuse.executed(&call.facts(), clock.at(0.0));
        let checked = abuse.before_call(&call.facts(), clock.at(1.0));
        assert_eq!(checked.breaches.len(), 1);
        assert_eq!(checked.breaches[0].verdict, verdict);
        assert_eq!(abuse.request_id_breach("7").verdict, verdict);
    }
    let off = Abuse::new(&quiet());
    off.executed(&call.facts(), clock.at(0.0));
    assert!(off.before_call(&call.facts(), clock.at(1.0)).breaches.is_empty());
}

#[test]
fn request_ids_are_replays_within_a_session_until_it_ends() {
    let abuse = replaying(ReplayAction::Deny);
    assert!(!abuse.request_id_reused("s1", "1"));
    assert!(!abuse.request_id_reused("s1", "2"));
    assert!(abuse.request_id_reused("s1", "1"));
    assert!(!abuse.request_id_reused("s2", "1"), "ids are per session");
    abuse.session_ended("s1");
    assert!(!abuse.request_id_reused("s1", "1"), "an ended session is forgotten");
    let breach = abuse.request_id_breach("\"abc\"");
    assert_eq!((breach.finding.kind.as_str(), breach.finding.rule.as_str()), ("replay", "request_id"));
    assert_eq!(breach.finding.evidence, "request id `\"abc\"` was already used in this session");
    assert_eq!((breach.finding.severity, breach.verdict), (Severity::High, Verdict::Refuse));

    let off = Abuse::new(&DetectionSettings {
        replay: ReplaySettings { request_ids: false, ..ReplaySettings::default() },
        ..quiet()
    });
    assert!(!off.request_id_reused("s1", "1") && !off.request_id_reused("s1", "1"));
    assert!(off.lock().sessions.entries.is_empty());
}

#[test]
fn request_ids_are_bounded_per_session_and_in_sessions() {
    let abuse = replaying(ReplayAction::Deny);
    for i in 0..=MAX_IDS_PER_SESSION {
        assert!(!abuse.request_id_reused("s", &i.to_string()));
    }
    // The oldest id was forgotten; the newest are remembered.
    assert!(!abuse.request_id_reused("s", "0"));
    assert!(abuse.request_id_reused("s", &MAX_IDS_PER_SESSION.to_string()));
    {
        let state = abuse.lock();
        let ids = state.sessions.entries.get("s").map(|(_, ids)| ids).unwrap();
        assert_eq!((ids.seen.len(), ids.order.len()), (MAX_IDS_PER_SESSION, MAX_IDS_PER_SESSION));
    }

    let abuse = replaying(ReplayAction::Deny);
    assert!(!abuse.request_id_reused("first", "1"));
    assert!(!abuse.request_id_reused("busy", "1"));
    for i in 0..MAX_SESSIONS - 2 {
        assert!(!abuse.request_id_reused(&format!("s{i}"), "1"));
    }
    assert!(abuse.request_id_reused("busy", "1"), "used recently: kept");
    assert!(!abuse.request_id_reused("new", "1"));
    assert_eq!(abuse.lock().sessions.len(), MAX_SESSIONS);
    assert!(!abuse.request_id_reused("first", "1"), "the least recently used session was forgotten");
}

/// `calls` calls by agent `a` spread over the minute that starts at `minute`.
fn calls_in_minute(abuse: &Abuse, clock: &Clock, minute: u32, calls: u32) -> Vec<Checked> {
    (0..calls)
        .map(|i| {
            let t = f64::from(minute) * 60.0 + f64::from(i) * 59.0 / f64::from(calls.max(1));
            abuse.before_call(&Call::new("a", "s/t").args(&format!("{minute}-{i}")).facts(), clock.at(t))
        })
        .collect()
}

#[test]
fn calls_far_over_the_agents_own_baseline_are_a_burst() {
    let abuse = Abuse::new(&DetectionSettings { burst_factor: 10, burst_min_calls: 30, ..quiet() });
    let clock = Clock::new();
    for minute in 0..5 {
        assert!(calls_in_minute(&abuse, &clock, minute, 1).iter().all(|c| c.breaches.is_empty()));
    }
    // Baseline 1 a minute: the 30th call in a minute is over both 10 × 1 and the minimum.
    let burst = calls_in_minute(&abuse, &clock, 5, 31);
    let at: Vec<usize> = burst.iter().enumerate().filter(|(_, c)| !c.breaches.is_empty()).map(|(i, _)| i).collect();
    assert_eq!(at, [29, 30]);
    let breach = &burst[29].breaches[0];
    assert_eq!((breach.finding.kind.as_str(), breach.finding.rule.as_str()), ("burst", "over_baseline"));
    assert_eq!((breach.finding.severity, &breach.verdict), (Severity::High, &Verdict::Refuse));
    assert_eq!(
        breach.finding.evidence,
        "agent `a`: 30 calls in the last minute, over 10 times its baseline of 1.0 a minute"
    );
}

#[test]
fn no_burst_under_the_minimum_over_a_high_baseline_or_without_history() {
    // Over 1 × the baseline, but under the minimum.
    let abuse = Abuse::new(&DetectionSettings { burst_factor: 1, burst_min_calls: 30, ..quiet() });
    let clock = Clock::new();
    for minute in 0..5 {
        calls_in_minute(&abuse, &clock, minute, 1);
    }
    assert!(calls_in_minute(&abuse, &clock, 5, 29).iter().all(|c| c.breaches.is_empty()));

    // Ten a minute is this agent's norm: 90 is under 10 × 10.
    let abuse = Abuse::new(&DetectionSettings { burst_factor: 10, burst_min_calls: 30, ..quiet() });
    for minute in 0..5 {
        calls_in_minute(&abuse, &clock, minute, 10);
    }
    assert!(calls_in_minute(&abuse, &clock, 5, 90).iter().all(|c| c.breaches.is_empty()));

    // A new agent has no baseline yet: four minutes of history are not enough.
    let abuse = Abuse::new(&DetectionSettings { burst_factor: 10, burst_min_calls: 30, ..quiet() });
    calls_in_minute(&abuse, &clock, 0, 1);
    assert!(calls_in_minute(&abuse, &clock, 4, 200).iter().all(|c| c.breaches.is_empty()));
    // Quiet minutes count as history: at minute 10 its baseline is 201 / 10.
    assert!(calls_in_minute(&abuse, &clock, 10, 200).iter().all(|c| c.breaches.is_empty()));
    assert!(calls_in_minute(&abuse, &clock, 11, 400).iter().any(|c| !c.breaches.is_empty()));
}

#[test]
fn refused_calls_do_not_raise_the_baseline() {
    let abuse = Abuse::new(&DetectionSettings {
        burst_factor: 1000,
        limits: vec![LimitRule { calls_per_run: Some(5), ..rule(ToolPattern::Any) }],
        ..quiet()
    });
    let clock = Clock::new();
    for minute in 0..5 {
        calls_in_minute(&abuse, &clock, minute, 100);
    }
    let state = abuse.lock();
    let burst = &state.agents.entries.get("a").unwrap().1.burst;
    // Only the first five calls of the run were let through.
    assert_eq!(burst.minutes, [(0, 5)]);
    assert_eq!(burst.baseline(5), Some(1.0));
    assert!(burst.seconds.len() <= 60);
}

#[test]
fn burst_history_is_bounded() {
    let mut burst = Burst::new(0);
    for sec in 0..3 * 3600 {
        burst.count(sec);
        burst.admit(sec / 60);
        assert!(burst.seconds.len() <= 60 && burst.minutes.len() <= 61);
    }
    assert_eq!(burst.count(3 * 3600), 60, "one a second: the last 60 seconds");
    assert_eq!(burst.baseline(180), Some(60.0));
    // A time earlier than the latest counts as the latest.
    assert_eq!(burst.count(0), 61);
}

#[test]
fn runs_and_agents_are_bounded_least_recently_used_first() {
    let abuse = Abuse::new(&DetectionSettings {
        loop_threshold: 2,
        limits: vec![LimitRule { calls_per_run: Some(1), ..rule(ToolPattern::Any) }],
        ..quiet()
    });
    let t = Clock::new().at(0.0);
    let call = |run: &str| Call::new("a", "s/t").run(run).args(run);
    assert!(abuse.before_call(&call("old").facts(), t).breaches.is_empty());
    assert!(abuse.before_call(&call("kept").facts(), t).breaches.is_empty());
    for i in 0..MAX_RUNS - 2 {
        abuse.before_call(&call(&format!("r{i}")).facts(), t);
    }
    // `kept` is used again (and is over budget), then one more run makes room by forgetting `old`.
    assert_eq!(found(&abuse.before_call(&call("kept").facts(), t)).len(), 2);
    assert!(abuse.before_call(&call("new").facts(), t).breaches.is_empty());
    assert_eq!(abuse.lock().runs.len(), MAX_RUNS);
    assert!(abuse.before_call(&call("old").facts(), t).breaches.is_empty(), "forgotten: a fresh budget");
    assert_eq!(found(&abuse.before_call(&call("kept").facts(), t)).len(), 2, "remembered");

    for i in 0..=MAX_AGENTS {
        abuse.before_call(&Call::new(&format!("agent{i}"), "s/t").facts(), t);
    }
    let state = abuse.lock();
    assert_eq!(state.agents.len(), MAX_AGENTS);
    assert_eq!((state.agents.entries.len(), state.agents.by_use.len()), (MAX_AGENTS, MAX_AGENTS));
    assert!(state.runs.len() <= MAX_RUNS);
}

#[test]
fn remembered_privileged_calls_are_bounded() {
    let abuse = replaying(ReplayAction::Deny);
    let t = Clock::new().at(0.0);
    let call = |i: usize| Call::new("a", "s/t").class(ToolClass::Privileged).args(&i.to_string());
    for i in 0..=MAX_REPLAY_ENTRIES {
        abuse.executed(&call(i).facts(), t);
    }
    {
        let state = abuse.lock();
        assert_eq!((state.ran.last.len(), state.ran.order.len()), (MAX_REPLAY_ENTRIES, MAX_REPLAY_ENTRIES));
    }
    assert!(abuse.before_call(&call(0).facts(), t).breaches.is_empty(), "the oldest was forgotten");
    assert_eq!(found(&abuse.before_call(&call(1).facts(), t)), [("replay", "same_call")]);
    // The same call run again is remembered from its latest run, and counted once.
    abuse.executed(&call(1).facts(), t);
    assert_eq!(abuse.lock().ran.last.len(), MAX_REPLAY_ENTRIES);
    assert_eq!(found(&abuse.before_call(&call(1).facts(), t)), [("replay", "same_call")]);
}

#[test]
fn in_flight_counters_are_bounded_and_busy_ones_never_forgotten() {
    let abuse = Abuse::new(&limits(vec![LimitRule { concurrent: Some(1), ..rule(ToolPattern::Any) }]));
    let t = Clock::new().at(0.0);
    let mut slots: Vec<Slot> = (0..MAX_AGENTS)
        .map(|i| abuse.before_call(&Call::new(&format!("agent{i}"), "s/t").facts(), t).slot.unwrap())
        .collect();
    // Every counter is held: a new agent is refused rather than counted nowhere.
    let refused = abuse.before_call(&Call::new("late", "s/t").facts(), t);
    assert_eq!(found(&refused), [("budget", "concurrent")]);
    assert!(refused.slot.is_none());
    // One agent finishes: its idle counter makes room.
    slots.pop();
    assert!(abuse.before_call(&Call::new("late", "s/t").facts(), t).slot.is_some());
    // A busy agent kept its counter: still at its limit.
    assert_eq!(found(&abuse.before_call(&Call::new("agent0", "s/t").facts(), t)), [("budget", "concurrent")]);
}

#[test]
fn the_lru_forgets_the_least_recently_used() {
    let mut lru: Lru<String, u32> = Lru::new(2);
    *lru.touch("a".into(), || 0) += 1;
    lru.touch("b".into(), || 0);
    *lru.touch("a".into(), || 0) += 1;
    lru.touch("c".into(), || 0);
    assert_eq!(lru.len(), 2);
    assert!(!lru.entries.contains_key("b"));
    assert_eq!(lru.entries.get("a").map(|(_, v)| *v), Some(2));
    lru.remove("a");
    assert_eq!((lru.len(), lru.by_use.len()), (1, 1));
}

/// Two gateways' detectors on one store, as two replicas on one database are.
struct Replicas {
    a: Abuse,
    b: Abuse,
    _dir: tempfile::TempDir,
}

impl Replicas {
    fn new(settings: &DetectionSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custos.db");
        let open = || SharedState::new(SqlStore::open(&path).unwrap());
        Self { a: Abuse::shared(settings, open()), b: Abuse::shared(settings, open()), _dir: dir }
    }
}

#[test]
fn replicas_sharing_a_store_count_one_rate_and_one_budget() {
    let settings = limits(vec![
        LimitRule { calls_per_minute: Some(3), ..rule(ToolPattern::Any) },
        LimitRule { calls_per_run: Some(4), ..rule(ToolPattern::Any) },
    ]);
    let replicas = Replicas::new(&settings);
    let now = Instant::now();
    let call = Call::new("a", "github/get_issue");
    for abuse in [&replicas.a, &replicas.b, &replicas.a] {
        assert!(abuse.before_call(&call.facts(), now).breaches.is_empty());
    }
    // The fourth call in the minute, on the other replica: over the rate, its window shared.
    let checked = replicas.b.before_call(&call.facts(), now);
    assert_eq!(found(&checked), [("rate_limit", "calls_per_minute")]);
    assert_eq!(checked.breaches[0].finding.evidence, "agent `a`: 4 calls to `*` in the last minute (limit 3)");
    // Another agent's window is its own; the fifth call of the run is over the run's budget too.
    assert!(replicas.a.before_call(&Call::new("b", "github/get_issue").facts(), now).breaches.is_empty());
    assert_eq!(
        found(&replicas.a.before_call(&call.facts(), now)),
        [("rate_limit", "calls_per_minute"), ("budget", "calls_per_run")]
    );
    // Another run has its own budget (the rate is the agent's, still over).
    assert_eq!(found(&replicas.b.before_call(&call.run("r2").facts(), now)), [("rate_limit", "calls_per_minute")]);
}

#[test]
fn replicas_sharing_a_store_see_one_loop_and_one_replay() {
    let settings = DetectionSettings {
        loop_threshold: 3,
        replay: ReplaySettings { window_secs: 300, action: ReplayAction::Deny, request_ids: true },
        ..quiet()
    };
    let replicas = Replicas::new(&settings);
    let now = Instant::now();
    let call = Call::new("a", "github/search");
    assert!(replicas.a.before_call(&call.facts(), now).breaches.is_empty());
    assert!(replicas.b.before_call(&call.facts(), now).breaches.is_empty());
    assert_eq!(found(&replicas.a.before_call(&call.facts(), now)), [("loop", "same_call_in_a_row")]);
    // A privileged call that ran through one replica is a replay through the other.
    let delete = Call::new("a", "github/delete_repo").class(ToolClass::Privileged).run("r2");
    assert!(replicas.a.before_call(&delete.facts(), now).breaches.is_empty());
    replicas.a.executed(&delete.facts(), now);
    let checked = replicas.b.before_call(&delete.facts(), now);
    assert_eq!(found(&checked), [("replay", "same_call")]);
    assert_eq!(checked.breaches[0].verdict, Verdict::Refuse);
    // Other arguments are another call.
    assert!(replicas.b.before_call(&delete.args(&"b".repeat(64)).facts(), now).breaches.is_empty());
}

#[test]
fn replicas_with_other_limits_count_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custos.db");
    let three = limits(vec![LimitRule { calls_per_minute: Some(3), ..rule(ToolPattern::Any) }]);
    let two = limits(vec![LimitRule { calls_per_minute: Some(2), ..rule(ToolPattern::Any) }]);
    let a = Abuse::shared(&three, SharedState::new(SqlStore::open(&path).unwrap()));
    let b = Abuse::shared(&two, SharedState::new(SqlStore::open(&path).unwrap()));
    let call = Call::new("a", "s/t");
    let now = Instant::now();
    for _ in 0..3 {
        assert!(a.before_call(&call.facts(), now).breaches.is_empty());
    }
    // `b`'s window, under its own rules, is empty: two calls go through.
    for _ in 0..2 {
        assert!(b.before_call(&call.facts(), now).breaches.is_empty());
    }
    assert_eq!(found(&b.before_call(&call.facts(), now)), [("rate_limit", "calls_per_minute")]);
}

#[test]
fn shared_limits_that_cannot_be_counted_refuse_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custos.db");
    drop(SqlStore::open(&path).unwrap());
    // A store that cannot be written, as a database that went away cannot.
    let abuse = Abuse::shared(
        &limits(vec![LimitRule { calls_per_minute: Some(100), ..rule(ToolPattern::Any) }]),
        SharedState::new(SqlStore::open_read_only(&path).unwrap()),
    );
    let checked = abuse.before_call(&Call::new("a", "s/t").facts(), Instant::now());
    assert_eq!(found(&checked), [("budget", "shared_state")]);
    assert_eq!(checked.breaches[0].verdict, Verdict::Refuse);
    assert!(!checked.breaches[0].finding.evidence.contains(&path.display().to_string()));
}
