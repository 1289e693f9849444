//! The detectors on the path of a call: what the pipeline asks before it decides a call, after
//! a result comes back, and when a server lists its tools.
//!
//! - before a call: the tool's quarantine (a descriptor changed from its pin, or flagged as
//!   poisoned), replay, rate limits, budgets, loops and bursts (`abuse.rs`), the first use of a
//!   write or privileged tool, and a toxic flow in the making;
//! - after a call: injection in its result (`custos-detect`), which labels the run
//!   `untrusted_input` and, by `[detection] output`, passes, is redacted or is blocked;
//! - on a listing: poisoned and shadowing descriptors.
//!
//! Every finding is recorded (`finding.recorded`) and counted, and its kind is shown to policy
//! as `context.findings` for the rest of the run; the run's labels are `context.run.labels`.
//! [`Detection`] is one per gateway process, shared by every session; [`RunState`] one per run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use custos_config::{DetectionSettings, OutputAction};
use custos_core::finding::kinds;
use custos_core::{Finding, Severity, ToolClass, ToolRef};
use custos_store::{EventQuery, SqlStore, Store, ToolPins};

use crate::abuse::{Abuse, CallFacts, Checked};

/// Labels a run can carry (`context.run.labels`): the flow marks of the config, which a tool
/// that runs leaves on its run.
pub use custos_config::detection::marks as labels;

/// Most (agent, tool) pairs remembered as already used; past it, the oldest are forgotten and
/// asked of the store again.
const MAX_FIRST_USE_CACHE: usize = 100_000;

/// The detectors of one gateway process.
#[derive(Debug)]
pub struct Detection {
    settings: DetectionSettings,
    abuse: Abuse,
    /// A read-only view of the store: pins (to see an operator's `tools accept` at once) and
    /// the history that says whether a use is a first one.
    store: Option<Mutex<SqlStore>>,
    /// Every tool of every server known to the gateway, for shadowing.
    known_tools: Mutex<Vec<ToolRef>>,
    /// Descriptors already scanned, by tool, with their digest: a listing seen again is not
    /// scanned (or recorded) again.
    scanned: Mutex<HashMap<ToolRef, custos_core::Digest>>,
    /// (agent, tool) pairs known to have been called before.
    used: Mutex<HashSet<(String, String)>>,
    /// The learned classifier's thresholds: the configured ones over the model's calibrated.
    classifier: custos_detect::ClassifierSettings,
}

/// A descriptor finding on a listing, and whether it quarantines the tool (and why).
#[derive(Debug)]
pub struct Flagged {
    pub tool: ToolRef,
    pub finding: Finding,
    pub quarantine: Option<String>,
}

/// The classifier's settings: `[detection.classifier]` over the built-in models' calibration.
pub fn classifier_settings(config: &custos_config::ClassifierSettings) -> custos_detect::ClassifierSettings {
    use custos_detect::{Target, Thresholds};
    let merge = |target: Target, set: &custos_config::ClassifierThresholds| {
        let calibrated = Thresholds::calibrated(target);
        let get = |s: Option<custos_config::Score>| s.map(custos_config::Score::get);
        Thresholds {
            low: get(set.low).or(calibrated.low),
            medium: get(set.medium).or(calibrated.medium),
            high: get(set.high).or(calibrated.high),
        }
    };
    custos_detect::ClassifierSettings {
        enabled: config.enabled,
        descriptors: merge(Target::Descriptor, &config.descriptors),
        results: merge(Target::Result, &config.results),
    }
}

/// What the detectors say before a call is decided.
#[derive(Debug, Default)]
pub struct Before {
    pub findings: Vec<(Finding, &'static str)>,
    /// Refused whatever policy says, and why.
    pub refuse: Option<String>,
    /// A replay: refused, unless policy holds the call for a human anyway (a person approving
    /// that exact call again is not an unattended replay).
    pub replay: Option<String>,
    /// The first use of a write or privileged tool by this agent: shown to policy, recorded
    /// only if the call is allowed (a refused attempt is not a use).
    pub first_use: Option<Finding>,
    /// Held for this approver group unless policy refuses.
    pub hold: Option<(String, String)>,
    /// A concurrency slot, held while the call runs.
    pub slot: Option<crate::abuse::Slot>,
}

impl Before {
    pub(crate) fn add(&mut self, finding: Finding, action: &'static str) {
        self.findings.push((finding, action));
    }

    /// A finding that refuses the call, whatever policy says.
    pub(crate) fn add_refusal(&mut self, finding: Finding, why: String) {
        if self.refuse.is_none() {
            self.refuse = Some(why);
        }
        self.add(finding, "denied");
    }
}

impl Detection {
    pub fn new(settings: DetectionSettings, store: Option<SqlStore>, known_tools: Vec<ToolRef>) -> Self {
        Self {
            abuse: Abuse::new(&settings),
            store: store.map(Mutex::new),
            known_tools: Mutex::new(known_tools),
            scanned: Mutex::new(HashMap::new()),
            used: Mutex::new(HashSet::new()),
            classifier: classifier_settings(&settings.classifier),
            settings,
        }
    }

    /// The classifier's effective settings.
    pub fn classifier(&self) -> &custos_detect::ClassifierSettings {
        &self.classifier
    }

    /// The same detectors, their limits, loops and replays counted in the store `shared` with
    /// every other gateway on it (see [`Abuse::shared`]).
    #[must_use]
    pub fn sharing_limits(mut self, shared: crate::abuse::SharedState) -> Self {
        self.abuse = Abuse::shared(&self.settings, shared);
        self
    }

    pub fn settings(&self) -> &DetectionSettings {
        &self.settings
    }

    pub fn abuse(&self) -> &Abuse {
        &self.abuse
    }

    /// The pin of `tool` as the store has it now, when it can be read.
    pub fn pin(&self, tool: &ToolRef) -> Option<custos_store::ToolPin> {
        let store = self.store.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match store.pin(tool) {
            Ok(pin) => pin,
            Err(err) => {
                tracing::error!("cannot read the pin of `{tool}`: {err}");
                None
            }
        }
    }

    /// The checks before a call is decided: replay (of this call, or of `reused_request_id`, an
    /// id already used in the session), rates, budgets, loops, bursts (with a concurrency
    /// slot), first use.
    pub fn before_call(&self, call: &CallFacts<'_>, reused_request_id: Option<&str>) -> Before {
        let mut before = Before::default();
        if let Some(id) = reused_request_id {
            before.apply(self.abuse.request_id_breach(id));
        }
        let Checked { breaches, slot } = self.abuse.before_call(call, Instant::now());
        before.slot = slot;
        for breach in breaches {
            before.apply(breach);
        }
        if call.class != ToolClass::Read && self.first_use(call.agent, call.tool) {
            before.first_use = Some(Finding::new(
                kinds::FIRST_USE,
                if call.class == ToolClass::Privileged { Severity::Medium } else { Severity::Low },
                "first_write_or_privileged_use",
                &format!("agent `{}` calls {} tool `{}` for the first time", call.agent, call.class, call.tool),
            ));
        }
        before
    }

    /// Remembers that `agent` used `tool` (its call was allowed): not a first use any more.
    pub fn used(&self, agent: &str, tool: &ToolRef) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.len() >= MAX_FIRST_USE_CACHE {
            used.clear();
        }
        used.insert((agent.to_owned(), tool.to_string()));
    }

    /// Whether `agent` has never had a call to `tool` allowed before (by this process or in the
    /// log).
    fn first_use(&self, agent: &str, tool: &ToolRef) -> bool {
        let key = (agent.to_owned(), tool.to_string());
        {
            let used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if used.contains(&key) {
                return false;
            }
        }
        let before = self.store.as_ref().is_some_and(|store| {
            let store = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let q = EventQuery {
                agent: Some(agent.to_owned()),
                tool: Some(tool.to_string()),
                kind: Some(custos_core::EventKind::CallDecided),
                decision: Some("allow".to_owned()),
                limit: Some(1),
                ..EventQuery::default()
            };
            // A history that cannot be read says nothing: not a first use.
            store.query(&q).map_or(true, |events| !events.is_empty())
        });
        if before {
            self.used(agent, tool);
        }
        !before
    }

    /// Findings for descriptors of `server` not scanned before (by digest): the rules' and the
    /// classifier's, each saying whether it quarantines its tool (`quarantine_poisoned` by
    /// severity, `[detection.classifier] quarantine_score` by score).
    pub fn scan_listing(&self, server: &str, descriptors: &[custos_core::ToolDescriptor]) -> Vec<Flagged> {
        let fresh: Vec<&custos_core::ToolDescriptor> = {
            let mut scanned = self.scanned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            descriptors.iter().filter(|d| scanned.insert(d.tool.clone(), d.digest) != Some(d.digest)).collect()
        };
        if fresh.is_empty() {
            return Vec::new();
        }
        let others: Vec<ToolRef> = {
            let mut known = self.known_tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for d in descriptors {
                if !known.contains(&d.tool) {
                    known.push(d.tool.clone());
                }
            }
            known.iter().filter(|t| t.server() != server).cloned().collect()
        };
        let by_severity = self.settings.quarantine_poisoned;
        let by_score = self.settings.classifier.quarantine_score.map(custos_config::Score::get);
        let mut out = Vec::new();
        for d in fresh {
            let mut findings = custos_detect::scan_descriptor(server, &d.raw, &others);
            // Why the classifier's finding quarantines, when the score passed `quarantine_score`.
            let mut past_mark = None;
            if self.classifier.enabled {
                let judged = custos_detect::judge_descriptor(&d.raw, &self.classifier.descriptors);
                past_mark = by_score.filter(|q| judged.score >= *q).map(|q| {
                    format!("its descriptor scored {:.2} on the classifier (quarantine_score {q:.2})", judged.score)
                });
                // A score past the quarantine mark makes a finding even below every severity's.
                let finding = judged.finding.or_else(|| {
                    past_mark.as_ref().map(|_| {
                        Finding::new(
                            custos_core::finding::kinds::TOOL_POISONING,
                            Severity::Medium,
                            custos_detect::ids::CLASSIFIER,
                            &format!("score {:.2}", judged.score),
                        )
                    })
                });
                findings.extend(finding);
            }
            for finding in findings {
                let quarantine = if by_severity.is_some_and(|t| finding.severity >= t) {
                    Some(format!("its descriptor was flagged `{}` ({})", finding.rule, finding.severity))
                } else if finding.rule == custos_detect::ids::CLASSIFIER {
                    past_mark.clone()
                } else {
                    None
                };
                out.push(Flagged { tool: d.tool.clone(), finding, quarantine });
            }
        }
        out
    }

    pub fn output_action(&self) -> OutputAction {
        self.settings.output
    }
}

impl Before {
    fn apply(&mut self, breach: crate::abuse::Breach) {
        use crate::abuse::Verdict;
        match breach.verdict {
            Verdict::Refuse if breach.finding.kind == kinds::REPLAY => {
                if self.replay.is_none() {
                    self.replay = Some(breach.finding.evidence.clone());
                }
                self.add(breach.finding, "denied");
            }
            Verdict::Refuse => {
                if self.refuse.is_none() {
                    self.refuse = Some(breach.finding.evidence.clone());
                }
                self.add(breach.finding, "denied");
            }
            Verdict::Hold { group } => {
                if self.hold.is_none() {
                    self.hold = Some((group, breach.finding.evidence.clone()));
                }
                self.add(breach.finding, "held");
            }
            Verdict::Record => self.add(breach.finding, "recorded"),
        }
    }
}

/// Finding kinds that stay with the run once made.
const TAINTS_THE_RUN: [&str; 5] =
    [kinds::OUTPUT_INJECTION, kinds::TOOL_POISONING, kinds::TOOL_SHADOWING, kinds::RUG_PULL, kinds::SECRET_LEAK];

/// What one run has gathered: its labels and the kinds of finding made on it. Shared by the
/// pipelines of one run (a federated session has one per upstream).
#[derive(Debug, Default)]
pub struct RunState {
    labels: Mutex<BTreeSet<String>>,
    findings: Mutex<BTreeSet<String>>,
}

impl RunState {
    /// Adds `label`; true when it is new to the run.
    pub fn label(&self, label: &str) -> bool {
        self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(label.to_owned())
    }

    pub fn labels(&self) -> Vec<String> {
        self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    pub fn has_label(&self, label: &str) -> bool {
        self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(label)
    }

    /// Remembers a finding for the rest of the run when it taints the run (what an upstream
    /// said or showed: injection, poisoning, a rug pull, a leaked credential). Findings about
    /// one call's behaviour (replay, loop, rates, first use) concern that call only.
    pub fn found(&self, kind: &str) {
        if TAINTS_THE_RUN.contains(&kind) {
            self.findings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(kind.to_owned());
        }
    }

    pub fn findings(&self) -> Vec<String> {
        self.findings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// A run resumed by name carries on with what the log says it gathered.
    pub fn restore(&self, labels: impl IntoIterator<Item = String>, findings: impl IntoIterator<Item = String>) {
        self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(labels);
        self.findings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(findings);
    }
}
