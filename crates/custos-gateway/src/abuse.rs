//! Abuse detectors: replays, rate limits, run budgets, concurrency limits, loops and bursts.
//!
//! One [`Abuse`] serves every session of a gateway (share it through an `Arc`): a limit on an
//! agent holds across its sessions, and a replay is seen from another session too. It is pure
//! and synchronous: the time is passed in, so tests are deterministic, and nothing here waits.
//!
//! When it runs, for a `tools/call`:
//!
//! 1. [`Abuse::request_id_reused`] as the request arrives (a JSON-RPC id used twice in a session);
//! 2. [`Abuse::before_call`] once the call is attributed and its tool classified, before it is
//!    decided: counts it, and says what it breaches and what each breach asks for;
//! 3. [`Abuse::executed`] when the call is forwarded, so that running it again is a replay;
//! 4. the [`Slot`] it got is dropped when the call is answered (or refused), freeing it for the
//!    next call of that agent.
//!
//! Every table is bounded, so an agent cannot make the gateway hold more than:
//!
//! - [`MAX_AGENTS`] agents' rate windows and burst history (least recently seen forgotten), each
//!   window at most its rule's `calls_per_minute` timestamps, each history 60 seconds and 61
//!   minutes of counts;
//! - [`MAX_RUNS`] runs' budgets and loop state (least recently seen forgotten);
//! - [`MAX_REPLAY_ENTRIES`] privileged calls that ran within the replay window (oldest forgotten);
//! - [`MAX_SESSIONS`] sessions' request ids (least recently seen forgotten), each at most
//!   [`MAX_IDS_PER_SESSION`] ids (oldest forgotten), kept as 64-bit keyed digests so a long id
//!   costs no more than a short one;
//! - [`MAX_AGENTS`] agents' in-flight counters; an agent whose calls have all finished is
//!   forgotten first.
//!
//! Forgetting is lenient: an agent forgotten starts with fresh windows, a run forgotten with a
//! fresh budget. Agents are authenticated and run ids are the gateway's, so reaching these bounds
//! takes far more identities than an attacker has.
//!
//! Replicas on one PostgreSQL database share what must hold across them ([`Abuse::shared`]):
//! rate windows, burst history, run budgets, loop streaks and replay memory live in the store's
//! `shared_state`, one JSON value per agent, per run and per privileged call, each read and
//! written back in one transaction under its own lock, and dropped a while after its last use
//! (an agent's an hour, a run's a day, a call's the replay window). Two things stay in the
//! process: request ids (a session's, and a session lives on one replica) and concurrency slots
//! (calls in flight here: a `concurrent` limit holds per replica).

use std::collections::btree_map::BTreeMap;
use std::collections::hash_map::{Entry, HashMap};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use custos_config::{DetectionSettings, LimitRule, ReplayAction};
use custos_core::finding::kinds;
use custos_core::{Digest, Finding, Severity, ToolClass, ToolRef};
use custos_store::{SharedValue, SqlStore, StoreError};
use serde::{Deserialize, Serialize};

/// Agents whose windows, burst history and in-flight counters are kept.
pub const MAX_AGENTS: usize = 10_000;
/// Runs whose budgets and loop state are kept.
pub const MAX_RUNS: usize = 10_000;
/// Sessions whose request ids are kept.
pub const MAX_SESSIONS: usize = 10_000;
/// Request ids kept per session: enough to catch a replay of any recent request.
pub const MAX_IDS_PER_SESSION: usize = 4096;
/// Privileged calls remembered for replay detection, across all agents.
pub const MAX_REPLAY_ENTRIES: usize = 100_000;

/// The rules breaches name, as recorded in their findings.
pub mod rules {
    /// The same privileged call (agent, tool, arguments) ran within the replay window.
    pub const SAME_CALL: &str = "same_call";
    /// A JSON-RPC request id used twice in one session.
    pub const REQUEST_ID: &str = "request_id";
    pub const CALLS_PER_MINUTE: &str = "calls_per_minute";
    pub const CALLS_PER_RUN: &str = "calls_per_run";
    pub const CONCURRENT: &str = "concurrent";
    pub const SAME_CALL_IN_A_ROW: &str = "same_call_in_a_row";
    pub const OVER_BASELINE: &str = "over_baseline";
    /// The limits shared by several gateways could not be counted (the store is unavailable).
    pub const SHARED_STATE: &str = "shared_state";
}

/// The span of a rate window and of the burst's recent calls, in milliseconds.
const MINUTE_MS: u64 = 60_000;
/// How long an agent's shared windows and history outlive its last call: the burst baseline's
/// hour and the current minute.
const AGENT_KEPT: u64 = (BASELINE_MINUTES + 2) * MINUTE_MS;
/// How long a run's shared budget and loop streak outlive its last call.
const RUN_KEPT: u64 = 24 * 60 * MINUTE_MS;
/// Shared updates between two sweeps of expired values.
const SWEEP_EVERY: u32 = 1024;
/// Complete minutes a burst baseline averages over, at most.
const BASELINE_MINUTES: u64 = 60;
/// Complete minutes of history a baseline needs before bursts are judged: a new agent has none.
const MIN_BASELINE_MINUTES: u64 = 5;

/// What one call looks like to the detectors.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub agent: &'a str,
    pub run: &'a str,
    pub tool: &'a ToolRef,
    pub class: ToolClass,
    /// hex SHA-256 of the canonical arguments
    pub arguments_sha256: &'a str,
}

/// What to do about a breach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refuse the call.
    Refuse,
    /// Hold the call until someone in `group` approves it.
    Hold { group: String },
    /// Let it through; record the finding.
    Record,
}

/// One detector's finding about a call, and what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub finding: Finding,
    pub verdict: Verdict,
}

impl Breach {
    fn refuse(kind: &str, severity: Severity, rule: &str, evidence: &str) -> Self {
        Self { finding: Finding::new(kind, severity, rule, evidence), verdict: Verdict::Refuse }
    }
}

/// A call slot for concurrency limits; the slot is released when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Slot(#[expect(dead_code, reason = "held for its Drop, which frees the slot")] Arc<SlotInner>);

/// The counters a slot took one from, given back on drop.
#[derive(Debug)]
struct SlotInner {
    in_flight: Arc<InFlight>,
    /// Indexes of the limit rules whose counters this slot holds.
    rules: Vec<usize>,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        for counter in self.rules.iter().filter_map(|i| self.in_flight.calls.get(*i)) {
            // Never below zero, even if a counter was somehow not taken.
            let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        }
    }
}

/// One agent's calls in flight, one counter per limit rule. Counters go up only under the state
/// lock (so checking and taking are one step) and down without it, when a [`Slot`] drops.
#[derive(Debug)]
struct InFlight {
    calls: Vec<AtomicU32>,
}

/// What [`Abuse::before_call`] found.
#[derive(Debug)]
pub struct Checked {
    /// Empty when the call breaches nothing.
    pub breaches: Vec<Breach>,
    /// Held while the call is in flight; `None` when no concurrency limit applies or one is
    /// exceeded.
    pub slot: Option<Slot>,
}

/// Where the detectors' counters live when several gateways must share them: the rate
/// windows, burst history, run budgets, loop streaks and replay memory of every agent, read and
/// written in one transaction per call (see `custos_store::SqlStore::update_shared`). Request ids
/// (one session's, and sessions stay on their replica) and concurrency slots (calls in flight on
/// this process) stay in the process.
pub struct SharedState {
    store: Mutex<SqlStore>,
    /// Updates since the expired values were last swept.
    updates: AtomicU32,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl SharedState {
    /// Shares state through `store`, which must be writable.
    pub fn new(store: SqlStore) -> Self {
        Self { store: Mutex::new(store), updates: AtomicU32::new(0) }
    }

    fn update<T>(
        &self,
        keys: &[String],
        update: impl FnOnce(i64, &mut [Option<SharedValue>]) -> T,
    ) -> Result<T, StoreError> {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let value = store.update_shared(keys, update)?;
        if self.updates.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Expired values already read as gone: a failed sweep only keeps their room a while.
            if let Err(err) = store.sweep_shared() {
                tracing::warn!("cannot sweep the detectors' expired shared state: {err}");
            }
        }
        Ok(value)
    }
}

/// The detectors' settings and their state: in the process, or shared through the store.
#[derive(Debug)]
pub struct Abuse {
    limits: Vec<LimitRule>,
    /// Whether any limit has `calls_per_run`, so runs are tracked only when something needs them.
    run_budgets: bool,
    loop_threshold: u32,
    burst_factor: u32,
    burst_min_calls: u32,
    /// Zero: same-call replay detection is off.
    replay_window: Duration,
    replay_verdict: Verdict,
    request_ids: bool,
    /// Keys the digests of request ids; random per process, so nobody can aim two ids at one digest.
    hasher: RandomState,
    state: Mutex<State>,
    /// Set: windows, history, budgets, loops and replays live in the store, shared with every
    /// gateway on it, under keys that name this config's limits.
    shared: Option<(SharedState, String)>,
}

impl Abuse {
    pub fn new(settings: &DetectionSettings) -> Self {
        let replay_verdict = match &settings.replay.action {
            ReplayAction::Deny => Verdict::Refuse,
            ReplayAction::Hold { group } => Verdict::Hold { group: group.clone() },
            ReplayAction::Record => Verdict::Record,
        };
        Self {
            limits: settings.limits.clone(),
            run_budgets: settings.limits.iter().any(|l| l.calls_per_run.is_some()),
            loop_threshold: settings.loop_threshold,
            burst_factor: settings.burst_factor,
            burst_min_calls: settings.burst_min_calls,
            replay_window: Duration::from_secs(settings.replay.window_secs),
            replay_verdict,
            request_ids: settings.replay.request_ids,
            hasher: RandomState::new(),
            state: Mutex::new(State::new()),
            shared: None,
        }
    }

    /// Detectors whose windows, history, budgets, loops and replays are shared through `shared`
    /// with every gateway on the same store (replicas on one PostgreSQL database). Counted by
    /// the replicas' clocks, which must agree (NTP) to well under a second.
    pub fn shared(settings: &DetectionSettings, shared: SharedState) -> Self {
        // Replicas whose limits differ count apart: a window is a list per rule, in their order.
        let limits = Digest::of(format!("{:?}", settings.limits).as_bytes()).to_hex();
        let limits = limits.get(..16).unwrap_or(&limits).to_owned();
        Self { shared: Some((shared, limits)), ..Self::new(settings) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing here panics while holding the lock; if something did, the counters are still
        // counters, and refusing every call after would be worse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether same-call replay detection looks at `call`.
    fn replays_of(&self, call: &CallFacts<'_>) -> bool {
        call.class == ToolClass::Privileged && !self.replay_window.is_zero()
    }

    /// Whether runs are tracked (for budgets or loops).
    fn tracks_runs(&self) -> bool {
        self.run_budgets || self.loop_threshold > 0
    }

    /// Before the call is decided. Counts the call against rates and budgets (a refused call
    /// still counts toward rates — a flood is a flood), detects loops (the same tool+arguments
    /// `loop_threshold` times in a row in the run, counting this one), bursts, and replays of
    /// privileged calls that ran within the window (see [`executed`](Self::executed)). Takes a
    /// concurrency slot when the call is within its concurrency limits (none when there are no
    /// concurrency limits); when over, a breach (kind budget, rule `concurrent`). With shared
    /// state that cannot be read or written, the call is refused: a limit that cannot be
    /// counted does not hold.
    pub fn before_call(&self, call: &CallFacts<'_>, now: Instant) -> Checked {
        let mut breaches = Vec::new();
        let mut slot_breaches = Vec::new();
        let slot = match &self.shared {
            None => {
                let mut guard = self.lock();
                let state = &mut *guard;
                let slot = self.take_slot(&mut state.in_flight, call, &mut slot_breaches);
                let slot_refused = !slot_breaches.is_empty();
                let now = state.millis(now);
                let ran = self.replays_of(call).then(|| state.ran.ran(&call_key(call), now, self.replay_window));
                let agent =
                    state.agents.touch(call.agent.to_owned(), || AgentState::new(self.limits.len(), now / MINUTE_MS));
                let run = self.tracks_runs().then(|| {
                    state.runs.touch((call.agent.to_owned(), call.run.to_owned()), || RunState::new(self.limits.len()))
                });
                self.judge(agent, run, ran.flatten(), call, now, slot_refused, &mut breaches);
                slot
            }
            Some((shared, limits)) => {
                let slot = self.take_slot(&mut self.lock().in_flight, call, &mut slot_breaches);
                self.judge_shared(shared, limits, call, !slot_breaches.is_empty(), &mut breaches);
                slot
            }
        };
        breaches.extend(slot_breaches);
        Checked { breaches, slot }
    }

    /// Every check but concurrency, on one agent's and one run's state, at `now` (milliseconds);
    /// `ran`: when the same privileged call last ran, if within the window.
    #[expect(clippy::too_many_arguments, reason = "the parts of one check, borrowed apart")]
    fn judge(
        &self,
        agent: &mut AgentState,
        run: Option<&mut RunState>,
        ran: Option<u64>,
        call: &CallFacts<'_>,
        now: u64,
        slot_refused: bool,
        breaches: &mut Vec<Breach>,
    ) {
        if let Some(ran) = ran {
            self.replay_breach(call, now.saturating_sub(ran), breaches);
        }
        self.check_rates(agent, call, now, breaches);
        if let Some(run) = run {
            self.check_budgets(run, call, breaches);
            self.check_loop(run, call, breaches);
        }
        if self.burst_factor > 0 {
            let secs = now / 1000;
            self.check_burst(&mut agent.burst, call, secs, breaches);
            // Only calls let through raise the baseline: an agent refused for flooding must not
            // make its flood the norm by keeping it up.
            if !slot_refused && !breaches.iter().any(|b| b.verdict == Verdict::Refuse) {
                agent.burst.admit(secs / 60);
            }
        }
    }

    /// [`judge`](Self::judge) on the state the store shares, read and written back in one
    /// transaction.
    fn judge_shared(
        &self,
        shared: &SharedState,
        limits: &str,
        call: &CallFacts<'_>,
        slot_refused: bool,
        breaches: &mut Vec<Breach>,
    ) {
        let mut keys = vec![shared_key(&["agent", limits, call.agent])];
        let run_at = self.tracks_runs().then(|| {
            keys.push(shared_key(&["run", limits, call.agent, call.run]));
            keys.len() - 1
        });
        let replay_at = self.replays_of(call).then(|| {
            keys.push(replay_key(call));
            keys.len() - 1
        });
        let rules = self.limits.len();
        let updated = shared.update(&keys, |now, values| {
            let now = u64::try_from(now).unwrap_or(0);
            let mut agent = values
                .first()
                .and_then(|v| decode::<AgentState>(v.as_ref()))
                .filter(|a| a.windows.len() == rules)
                .unwrap_or_else(|| AgentState::new(rules, now / MINUTE_MS));
            let mut run = run_at.map(|i| {
                values
                    .get(i)
                    .and_then(|v| decode::<RunState>(v.as_ref()))
                    .filter(|r| r.calls.len() == rules)
                    .unwrap_or_else(|| RunState::new(rules))
            });
            let ran = replay_at.and_then(|i| values.get(i)?.as_ref()?.value.parse::<u64>().ok());
            self.judge(&mut agent, run.as_mut(), ran, call, now, slot_refused, breaches);
            if let Some(slot) = values.first_mut() {
                *slot = encode(&agent, now, AGENT_KEPT);
            }
            if let (Some(i), Some(run)) = (run_at, &run) {
                if let Some(slot) = values.get_mut(i) {
                    *slot = encode(run, now, RUN_KEPT);
                }
            }
        });
        if let Err(err) = updated {
            tracing::error!("cannot count the call against the shared limits: {err}");
            breaches.push(Breach::refuse(
                kinds::BUDGET,
                Severity::High,
                rules::SHARED_STATE,
                "the limits shared by the gateways cannot be counted: the store is unavailable",
            ));
        }
    }

    /// The call was forwarded (it runs): remember it for replay detection (privileged calls only).
    pub fn executed(&self, call: &CallFacts<'_>, now: Instant) {
        if !self.replays_of(call) {
            return;
        }
        let window = self.replay_window;
        if let Some((shared, _)) = &self.shared {
            let kept = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            let remembered = shared.update(&[replay_key(call)], |now, values| {
                if let Some(slot) = values.first_mut() {
                    let expires_ms = now.saturating_add(i64::try_from(kept).unwrap_or(i64::MAX));
                    *slot = Some(SharedValue { value: now.to_string(), expires_ms });
                }
            });
            if let Err(err) = remembered {
                // The call ran already; all that is lost is catching its replay elsewhere.
                tracing::error!("cannot remember a privileged call for replay detection: {err}");
            }
            return;
        }
        let mut state = self.lock();
        let now = state.millis(now);
        state.ran.remember(call_key(call), now, window);
    }

    /// A request id seen in a session; true (a replay) when the same id was already used in that
    /// session. Bounded: remember at most the last [`MAX_IDS_PER_SESSION`] ids per session, at most
    /// [`MAX_SESSIONS`] sessions (least recently seen forgotten). Always false when
    /// `[detection.replay] request_ids` is off.
    pub fn request_id_reused(&self, session: &str, id: &str) -> bool {
        if !self.request_ids {
            return false;
        }
        let digest = self.hasher.hash_one(id);
        self.lock().sessions.touch(session.to_owned(), SessionIds::default).seen_before(digest)
    }

    /// The breach to report when [`request_id_reused`](Self::request_id_reused) says `id` was
    /// used before: a replay, with the configured replay action.
    pub fn request_id_breach(&self, id: &str) -> Breach {
        Breach {
            finding: Finding::new(
                kinds::REPLAY,
                Severity::High,
                rules::REQUEST_ID,
                &format!("request id `{id}` was already used in this session"),
            ),
            verdict: self.replay_verdict.clone(),
        }
    }

    /// Forget a session's ids when it ends.
    pub fn session_ended(&self, session: &str) {
        self.lock().sessions.remove(session);
    }

    /// The same privileged call ran `ago` milliseconds ago: a replay if within the window.
    fn replay_breach(&self, call: &CallFacts<'_>, ago: u64, breaches: &mut Vec<Breach>) {
        if u128::from(ago) >= self.replay_window.as_millis() {
            return;
        }
        breaches.push(Breach {
            finding: Finding::new(
                kinds::REPLAY,
                Severity::High,
                rules::SAME_CALL,
                &format!("`{}` with the same arguments ran {} s ago", call.tool, ago / 1000),
            ),
            verdict: self.replay_verdict.clone(),
        });
    }

    /// `calls_per_minute`: more than the limit in the last 60 s, this call included.
    fn check_rates(&self, agent: &mut AgentState, call: &CallFacts<'_>, now: u64, breaches: &mut Vec<Breach>) {
        for (rule, window) in self.limits.iter().zip(agent.windows.iter_mut()) {
            let Some(limit) = rule.calls_per_minute else { continue };
            if !rule.applies(call.agent, call.tool) {
                continue;
            }
            while window.front().is_some_and(|t| now.saturating_sub(*t) >= MINUTE_MS) {
                window.pop_front();
            }
            let earlier = window.len();
            window.push_back(now);
            // INVARIANT: at most `limit` timestamps. Once `limit` calls are in the window the
            // next is refused whatever came before them, so older ones need not be kept.
            let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
            while window.len() > limit_len {
                window.pop_front();
            }
            if earlier >= limit_len {
                breaches.push(Breach::refuse(
                    kinds::RATE_LIMIT,
                    Severity::Medium,
                    rules::CALLS_PER_MINUTE,
                    &format!(
                        "agent `{}`: {} calls to `{}` in the last minute (limit {limit})",
                        call.agent,
                        earlier.saturating_add(1),
                        rule.tool
                    ),
                ));
            }
        }
    }

    /// `calls_per_run`: more than the limit in this run, this call included.
    fn check_budgets(&self, run: &mut RunState, call: &CallFacts<'_>, breaches: &mut Vec<Breach>) {
        for (rule, count) in self.limits.iter().zip(run.calls.iter_mut()) {
            let Some(limit) = rule.calls_per_run else { continue };
            if !rule.applies(call.agent, call.tool) {
                continue;
            }
            *count = count.saturating_add(1);
            if *count > u64::from(limit) {
                breaches.push(Breach::refuse(
                    kinds::BUDGET,
                    Severity::Medium,
                    rules::CALLS_PER_RUN,
                    &format!(
                        "agent `{}`: run `{}` made {count} calls to `{}` (limit {limit})",
                        call.agent, call.run, rule.tool
                    ),
                ));
            }
        }
    }

    /// The same tool with the same arguments `loop_threshold` times in a row, this call included.
    fn check_loop(&self, run: &mut RunState, call: &CallFacts<'_>, breaches: &mut Vec<Breach>) {
        if self.loop_threshold == 0 {
            return;
        }
        let tool = call.tool.to_string();
        let same = run.last.as_ref().is_some_and(|(t, args)| *t == tool && args == call.arguments_sha256);
        if same {
            run.in_a_row = run.in_a_row.saturating_add(1);
        } else {
            run.last = Some((tool, call.arguments_sha256.to_owned()));
            run.in_a_row = 1;
        }
        if run.in_a_row >= self.loop_threshold {
            breaches.push(Breach::refuse(
                kinds::LOOP,
                Severity::Medium,
                rules::SAME_CALL_IN_A_ROW,
                &format!("`{}` called {} times in a row with the same arguments", call.tool, run.in_a_row),
            ));
        }
    }

    /// More calls in the last 60 s than `burst_factor` times the agent's baseline (at least one a
    /// minute), and at least `burst_min_calls`.
    fn check_burst(&self, burst: &mut Burst, call: &CallFacts<'_>, secs: u64, breaches: &mut Vec<Breach>) {
        let recent = burst.count(secs);
        let Some(baseline) = burst.baseline(secs / 60) else { return };
        let allowed = f64::from(self.burst_factor) * baseline.max(1.0);
        if recent >= self.burst_min_calls && f64::from(recent) > allowed {
            breaches.push(Breach::refuse(
                kinds::BURST,
                Severity::High,
                rules::OVER_BASELINE,
                &format!(
                    "agent `{}`: {recent} calls in the last minute, over {} times its baseline of {baseline:.1} a minute",
                    call.agent, self.burst_factor
                ),
            ));
        }
    }

    /// A slot under every matching `concurrent` limit, or a breach for each one exceeded.
    fn take_slot(
        &self,
        in_flight: &mut InFlightTable,
        call: &CallFacts<'_>,
        breaches: &mut Vec<Breach>,
    ) -> Option<Slot> {
        let matching: Vec<(usize, &LimitRule, u32)> = self
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| Some((i, rule, rule.concurrent?)))
            .filter(|(_, rule, _)| rule.applies(call.agent, call.tool))
            .collect();
        if matching.is_empty() {
            return None;
        }
        let Some(counters) = in_flight.of(call.agent, self.limits.len()) else {
            // Fail closed: without a counter the limit could not hold.
            breaches.push(Breach::refuse(
                kinds::BUDGET,
                Severity::Medium,
                rules::CONCURRENT,
                &format!("agent `{}`: {MAX_AGENTS} other agents have calls in flight", call.agent),
            ));
            return None;
        };
        let mut over = false;
        for (i, rule, limit) in &matching {
            let now = counters.calls.get(*i).map_or(0, |c| c.load(Ordering::Acquire));
            if now >= *limit {
                over = true;
                breaches.push(Breach::refuse(
                    kinds::BUDGET,
                    Severity::Medium,
                    rules::CONCURRENT,
                    &format!("agent `{}`: {now} calls to `{}` in flight (limit {limit})", call.agent, rule.tool),
                ));
            }
        }
        if over {
            return None;
        }
        for (i, _, _) in &matching {
            if let Some(c) = counters.calls.get(*i) {
                c.fetch_add(1, Ordering::AcqRel);
            }
        }
        let rules = matching.iter().map(|(i, _, _)| *i).collect();
        Some(Slot(Arc::new(SlotInner { in_flight: counters, rules })))
    }
}

/// Everything the detectors remember, behind [`Abuse`]'s lock.
#[derive(Debug)]
struct State {
    /// The first call's time: the milliseconds every window and history counts in start at it.
    epoch: Option<Instant>,
    agents: Lru<String, AgentState>,
    /// By (agent, run).
    runs: Lru<(String, String), RunState>,
    ran: Ran,
    sessions: Lru<String, SessionIds>,
    in_flight: InFlightTable,
}

impl State {
    fn new() -> Self {
        Self {
            epoch: None,
            agents: Lru::new(MAX_AGENTS),
            runs: Lru::new(MAX_RUNS),
            ran: Ran::default(),
            sessions: Lru::new(MAX_SESSIONS),
            in_flight: InFlightTable::default(),
        }
    }
}

impl State {
    /// `now` as milliseconds since the epoch, which the first time asked sets.
    fn millis(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// One agent's rate windows and burst history.
#[derive(Debug, Serialize, Deserialize)]
struct AgentState {
    /// One window per limit rule, in the rules' order (empty for rules without
    /// `calls_per_minute`): the times (milliseconds) of the latest calls, at most the rule's
    /// limit.
    windows: Vec<VecDeque<u64>>,
    burst: Burst,
}

impl AgentState {
    fn new(rules: usize, minute: u64) -> Self {
        Self { windows: std::iter::repeat_with(VecDeque::new).take(rules).collect(), burst: Burst::new(minute) }
    }
}

/// One agent's recent calls and per-minute history, for its burst baseline.
#[derive(Debug, Serialize, Deserialize)]
struct Burst {
    /// The minute the agent was first seen: minutes since are its history, quiet ones included.
    first_minute: u64,
    /// (second, calls) for the last 60 seconds, oldest first; at most 60 entries. Every call
    /// counts here, refused ones too.
    seconds: VecDeque<(u64, u32)>,
    /// (minute, calls let through) for the current minute and the 60 before; at most 61 entries.
    minutes: VecDeque<(u64, u32)>,
}

impl Burst {
    fn new(minute: u64) -> Self {
        Self { first_minute: minute, seconds: VecDeque::new(), minutes: VecDeque::new() }
    }

    /// Counts a call at `sec` and returns the calls in the last 60 seconds, it included.
    fn count(&mut self, sec: u64) -> u32 {
        // A time earlier than the latest seen (clocks passed in need not be monotonic) counts
        // as the latest, keeping the queue ordered.
        let sec = self.seconds.back().map_or(sec, |(last, _)| sec.max(*last));
        while self.seconds.front().is_some_and(|(s, _)| s.saturating_add(60) <= sec) {
            self.seconds.pop_front();
        }
        match self.seconds.back_mut() {
            Some((s, n)) if *s == sec => *n = n.saturating_add(1),
            _ => self.seconds.push_back((sec, 1)),
        }
        self.seconds.iter().fold(0u32, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Records a call let through in `minute`.
    fn admit(&mut self, minute: u64) {
        let minute = self.minutes.back().map_or(minute, |(last, _)| minute.max(*last));
        while self.minutes.front().is_some_and(|(m, _)| m.saturating_add(BASELINE_MINUTES) < minute) {
            self.minutes.pop_front();
        }
        match self.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n = n.saturating_add(1),
            _ => self.minutes.push_back((minute, 1)),
        }
    }

    /// Mean calls a minute over the complete minutes before `minute` (at most 60), quiet minutes
    /// included; `None` with fewer than [`MIN_BASELINE_MINUTES`] of history.
    fn baseline(&self, minute: u64) -> Option<f64> {
        let history = minute.saturating_sub(self.first_minute).min(BASELINE_MINUTES);
        if history < MIN_BASELINE_MINUTES {
            return None;
        }
        let since = minute.saturating_sub(history);
        let calls: u64 =
            self.minutes.iter().filter(|(m, _)| (since..minute).contains(m)).map(|(_, n)| u64::from(*n)).sum();
        // Both far below 2^53, so exact as f64.
        Some(calls as f64 / history as f64)
    }
}

/// One run's budgets and loop state.
#[derive(Debug, Serialize, Deserialize)]
struct RunState {
    /// Calls counted per limit rule, in the rules' order (0 for rules without `calls_per_run`).
    calls: Vec<u64>,
    /// The last call's tool (`server/name`) and arguments digest, and how many times in a row
    /// it came.
    last: Option<(String, String)>,
    in_a_row: u32,
}

impl RunState {
    fn new(rules: usize) -> Self {
        Self { calls: vec![0; rules], last: None, in_a_row: 0 }
    }
}

/// A privileged call, for replay detection: (agent, tool, arguments digest).
type CallKey = (String, ToolRef, String);

fn call_key(call: &CallFacts<'_>) -> CallKey {
    (call.agent.to_owned(), call.tool.clone(), call.arguments_sha256.to_owned())
}

/// A key of the shared state: its parts as a JSON array, so no agent or run id, whatever it
/// holds, can make two keys one.
fn shared_key(parts: &[&str]) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

/// The shared key under which a privileged call's last run is remembered.
fn replay_key(call: &CallFacts<'_>) -> String {
    shared_key(&["ran", call.agent, &call.tool.to_string(), call.arguments_sha256])
}

/// A shared value read back; `None` (start afresh) for one this build cannot read.
fn decode<T: serde::de::DeserializeOwned>(value: Option<&SharedValue>) -> Option<T> {
    serde_json::from_str(&value?.value).ok()
}

/// A shared value to write, kept `kept` milliseconds after `now`.
fn encode<T: Serialize>(state: &T, now: u64, kept: u64) -> Option<SharedValue> {
    let expires_ms = i64::try_from(now.saturating_add(kept)).unwrap_or(i64::MAX);
    Some(SharedValue { value: serde_json::to_string(state).ok()?, expires_ms })
}

/// Privileged calls that ran within the replay window.
#[derive(Debug, Default)]
struct Ran {
    /// When each call last ran (milliseconds), and the stamp of that run's entry in `order`.
    last: HashMap<CallKey, (u64, u64)>,
    /// Every run, oldest first, stamped; a call that ran again is here twice, and only its
    /// latest entry's stamp matches `last` (times can be equal, stamps cannot). INVARIANT:
    /// every key of `last` has an entry here, so bounding this bounds both.
    order: VecDeque<(u64, u64, CallKey)>,
    /// The next stamp.
    next: u64,
}

impl Ran {
    /// When `key` last ran, if less than `window` before `now`; forgets the calls older.
    fn ran(&mut self, key: &CallKey, now: u64, window: Duration) -> Option<u64> {
        self.expire(now, window);
        self.last.get(key).map(|(t, _)| *t)
    }

    fn remember(&mut self, key: CallKey, now: u64, window: Duration) {
        self.expire(now, window);
        let stamp = self.next;
        self.next = self.next.saturating_add(1);
        self.last.insert(key.clone(), (now, stamp));
        self.order.push_back((now, stamp, key));
        while self.order.len() > MAX_REPLAY_ENTRIES {
            self.pop_oldest();
        }
    }

    /// Forgets calls that ran a window or more ago.
    fn expire(&mut self, now: u64, window: Duration) {
        while self.order.front().is_some_and(|(t, _, _)| u128::from(now.saturating_sub(*t)) >= window.as_millis()) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, stamp, key)) = self.order.pop_front() {
            if self.last.get(&key).is_some_and(|(_, latest)| *latest == stamp) {
                self.last.remove(&key);
            }
        }
    }
}

/// One session's request ids, as keyed 64-bit digests.
#[derive(Debug, Default)]
struct SessionIds {
    seen: HashSet<u64>,
    /// Oldest first; at most [`MAX_IDS_PER_SESSION`].
    order: VecDeque<u64>,
}

impl SessionIds {
    /// Whether `digest` was seen before; remembers it either way.
    fn seen_before(&mut self, digest: u64) -> bool {
        if self.seen.contains(&digest) {
            return true;
        }
        self.seen.insert(digest);
        self.order.push_back(digest);
        while self.order.len() > MAX_IDS_PER_SESSION {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        false
    }
}

/// Agents' in-flight counters. Not an [`Lru`]: a counter a live [`Slot`] holds must not be
/// forgotten, or the agent would get a fresh one and twice its limit.
#[derive(Debug, Default)]
struct InFlightTable {
    agents: HashMap<String, Arc<InFlight>>,
}

impl InFlightTable {
    /// `agent`'s counters, made when absent; `None` when [`MAX_AGENTS`] agents all have calls in
    /// flight.
    fn of(&mut self, agent: &str, rules: usize) -> Option<Arc<InFlight>> {
        if let Some(counters) = self.agents.get(agent) {
            return Some(Arc::clone(counters));
        }
        if self.agents.len() >= MAX_AGENTS {
            // Only the table holds an idle agent's counters (all zero); slots are made under the
            // same lock, so none can appear while this runs.
            self.agents.retain(|_, counters| Arc::strong_count(counters) > 1);
            if self.agents.len() >= MAX_AGENTS {
                return None;
            }
        }
        let counters = Arc::new(InFlight { calls: std::iter::repeat_with(|| AtomicU32::new(0)).take(rules).collect() });
        self.agents.insert(agent.to_owned(), Arc::clone(&counters));
        Some(counters)
    }
}

/// A map of at most `capacity` entries that forgets the least recently used one to make room.
#[derive(Debug)]
struct Lru<K, V> {
    capacity: usize,
    /// Counts uses: a unique, increasing stamp for each.
    clock: u64,
    entries: HashMap<K, (u64, V)>,
    /// Each entry's key by its last use, oldest first.
    by_use: BTreeMap<u64, K>,
}

impl<K: Clone + Eq + Hash, V> Lru<K, V> {
    fn new(capacity: usize) -> Self {
        Self { capacity, clock: 0, entries: HashMap::new(), by_use: BTreeMap::new() }
    }

    /// The entry for `key`, marked as just used; made by `make` when absent, forgetting the least
    /// recently used entry first when full.
    fn touch(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.clock = self.clock.saturating_add(1);
        let now = self.clock;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if let Some((_, oldest)) = self.by_use.pop_first() {
                self.entries.remove(&oldest);
            }
        }
        match self.entries.entry(key) {
            Entry::Occupied(e) => {
                let (used, value) = e.into_mut();
                if let Some(k) = self.by_use.remove(used) {
                    self.by_use.insert(now, k);
                }
                *used = now;
                value
            }
            Entry::Vacant(e) => {
                self.by_use.insert(now, e.key().clone());
                &mut e.insert((now, make())).1
            }
        }
    }

    fn remove<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((used, _)) = self.entries.remove(key) {
            self.by_use.remove(&used);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
