//! `custos report posture`: which of Custos's controls this configuration switches on, the key
//! that does it, what the audit log shows each one did, and the framework items (`frameworks.rs`)
//! each addresses; then the gaps: items no enabled control addresses, with what to switch on.
//!
//! The mapping is data ([`CONTROLS`]): each control names its key, how to tell from the
//! validated config whether it is on, which counts of the log are its evidence, and the items
//! it addresses. A test holds every framework item to be addressed by some control or listed
//! as outside a gateway's reach ([`frameworks::OUTSIDE`]).

use std::collections::BTreeMap;
use std::path::Path;

use askama::Template;
use custos_config::{ClientAuth, Config, OutputAction, ReplayAction, SecretSource, ToolsListMode};
use custos_core::EventKind;
use custos_store::{EventQuery, Store};
use serde_json::{json, Value};

use super::frameworks::{FRAMEWORKS, OUTSIDE};
use super::{page_csp, write_out, STYLE};
use crate::cli::{Location, PostureFormat};
use crate::context;
use crate::Failure;

/// Events read per query while counting.
const PAGE: usize = 10_000;

/// What the log shows: events by kind, decisions, findings by kind, calls that used a credential,
/// approvals by how the approver signed in, and the checkpoints kept.
#[derive(Debug, Default)]
pub struct Counts {
    pub kinds: BTreeMap<&'static str, u64>,
    pub decisions: BTreeMap<String, u64>,
    pub findings: BTreeMap<String, u64>,
    pub brokered_calls: u64,
    pub oidc_decisions: u64,
    pub checkpoints: u64,
}

impl Counts {
    fn kind(&self, kind: EventKind) -> u64 {
        self.kinds.get(kind.as_str()).copied().unwrap_or(0)
    }

    fn finding(&self, kind: &str) -> u64 {
        self.findings.get(kind).copied().unwrap_or(0)
    }

    fn decision(&self, d: &str) -> u64 {
        self.decisions.get(d).copied().unwrap_or(0)
    }
}

/// One control of Custos.
pub struct Control {
    pub id: &'static str,
    pub name: &'static str,
    /// The config key (or command) that switches it on.
    pub key: &'static str,
    /// Whether this config has it on, and how it is set.
    pub on: fn(&Config) -> (bool, String),
    /// Its evidence: (what, how many).
    pub evidence: fn(&Counts) -> Vec<(&'static str, u64)>,
    /// The framework items it addresses, by id.
    pub addresses: &'static [&'static str],
}

fn yes(detail: impl Into<String>) -> (bool, String) {
    (true, detail.into())
}

fn no(detail: impl Into<String>) -> (bool, String) {
    (false, detail.into())
}

/// Every control, in the order the report lists them.
pub const CONTROLS: &[Control] = &[
    Control {
        id: "agent-authentication",
        name: "Agents authenticate as themselves (API keys, JWT, mTLS)",
        key: "[[agents]] + `custos agents key`, [serve.jwt], [serve.tls] client_auth",
        on: |c| {
            if c.agents.is_empty() {
                no("no [[agents]] declared")
            } else {
                yes(format!("{} agents declared", c.agents.len()))
            }
        },
        evidence: |n| {
            vec![
                ("agent keys issued", n.kind(EventKind::AgentKeyIssued)),
                ("authentication failures refused", n.kind(EventKind::AuthFailed)),
                ("runs attributed", n.kind(EventKind::RunStarted)),
            ]
        },
        addresses: &["ASI03", "ASI07", "NHI4", "NHI9", "ZT6", "L7"],
    },
    Control {
        id: "federated-identity",
        name: "Agent identity from an identity provider (JWT, RFC 8693 exchange)",
        key: "[serve.jwt]",
        on: |c| match &c.serve.jwt {
            Some(j) => yes(format!("issuer `{}`", j.issuer)),
            None => no("agents use gateway API keys"),
        },
        evidence: |n| vec![("tokens exchanged", n.kind(EventKind::TokenExchanged))],
        addresses: &["NHI4", "NHI7", "ZT6"],
    },
    Control {
        id: "tls",
        name: "TLS on the gateway's listener",
        key: "[serve.tls] cert_file, key_file",
        on: |c| if c.serve.tls.is_some() { yes("on") } else { no("plain HTTP") },
        evidence: |_| Vec::new(),
        addresses: &["ZT2", "L4"],
    },
    Control {
        id: "mtls",
        name: "Agents named by client certificates (mTLS, SPIFFE IDs)",
        key: "[serve.tls] client_auth = \"required\"",
        on: |c| match c.serve.tls.as_ref().map(|t| t.client_auth) {
            Some(ClientAuth::Required) => yes("required"),
            Some(ClientAuth::Optional) => yes("optional"),
            _ => no("no client certificates asked for"),
        },
        evidence: |_| Vec::new(),
        addresses: &["ASI07", "NHI4", "ZT2"],
    },
    Control {
        id: "default-deny",
        name: "Every call decided by Cedar policy, default deny",
        key: "[policy] files",
        on: |c| yes(format!("{} policy files", c.policy.files.len())),
        evidence: |n| {
            vec![
                ("calls allowed", n.decision("allow")),
                ("calls denied", n.decision("deny")),
                ("calls held", n.decision("hold")),
            ]
        },
        addresses: &["ASI02", "ASI03", "ASI05", "NHI5", "ZT1", "ZT3", "ZT4", "ZT6", "L3", "L6"],
    },
    Control {
        id: "tool-hiding",
        name: "Tools an agent may never call hidden from its tools/list",
        key: "[policy] tools_list = \"hide\"",
        on: |c| match c.policy.tools_list {
            ToolsListMode::Hide => yes("hide"),
            ToolsListMode::Show => no("show"),
        },
        evidence: |_| Vec::new(),
        addresses: &["ASI02", "NHI5", "L3"],
    },
    Control {
        id: "tool-pinning",
        name: "Tool descriptors pinned; a changed one (rug pull) quarantined",
        key: "built in; `custos tools accept` lifts a quarantine",
        on: |_| yes("always"),
        evidence: |n| {
            vec![
                ("tools seen", n.kind(EventKind::ToolSeen)),
                ("rug pulls found", n.finding(custos_core::finding::kinds::RUG_PULL)),
                ("changes accepted", n.kind(EventKind::ToolAccepted)),
            ]
        },
        addresses: &["ASI04", "NHI3", "ZT1", "ZT5", "L3", "L7"],
    },
    Control {
        id: "descriptor-quarantine",
        name: "Poisoned tool descriptors quarantined",
        key: "[detection] quarantine_poisoned",
        on: |c| match c.detection.quarantine_poisoned {
            Some(s) => yes(format!("at {s} and above")),
            None => no("recorded only"),
        },
        evidence: |n| {
            vec![
                ("poisoned descriptors", n.finding(custos_core::finding::kinds::TOOL_POISONING)),
                ("shadowing descriptors", n.finding(custos_core::finding::kinds::TOOL_SHADOWING)),
            ]
        },
        addresses: &["ASI01", "ASI04", "ZT5", "L3"],
    },
    Control {
        id: "output-detection",
        name: "Injection in tool results detected, redacted or blocked",
        key: "[detection] output = \"redact\" | \"block\"",
        on: |c| match c.detection.output {
            OutputAction::Record => no("record: flagged results still reach the agent"),
            other => yes(other.as_str()),
        },
        evidence: |n| vec![("injections found in results", n.finding(custos_core::finding::kinds::OUTPUT_INJECTION))],
        addresses: &["ASI01", "ASI06", "L2"],
    },
    Control {
        id: "toxic-flows",
        name: "Toxic flows: untrusted input, sensitive reads and egress labelled per run",
        key: "[[servers]] flows",
        on: |c| {
            let n = c.servers.iter().filter(|s| !s.flows.is_empty()).count();
            if n == 0 {
                no("no server marks its tools")
            } else {
                yes(format!("{n} servers mark their tools"))
            }
        },
        evidence: |n| {
            vec![
                ("runs labelled", n.kind(EventKind::RunLabeled)),
                ("toxic flows found", n.finding(custos_core::finding::kinds::TOXIC_FLOW)),
            ]
        },
        addresses: &["ASI01", "ASI06", "ZT4", "L2"],
    },
    Control {
        id: "leak-guard",
        name: "Leak guard: held secrets and credential shapes redacted from upstream messages",
        key: "[secrets.NAME] (values the guard holds)",
        on: |c| {
            if c.secrets.is_empty() {
                no("credential shapes only: no secrets held")
            } else {
                yes(format!("{} secrets held", c.secrets.len()))
            }
        },
        evidence: |n| vec![("leaks redacted", n.finding(custos_core::finding::kinds::SECRET_LEAK))],
        addresses: &["NHI2", "L6"],
    },
    Control {
        id: "abuse-detection",
        name: "Replays, loops and bursts refused",
        key: "[detection.replay], [detection] loop_threshold, burst_factor",
        on: |c| {
            let d = &c.detection;
            let replay = d.replay.window_secs > 0 && d.replay.action != ReplayAction::Record;
            let parts: Vec<&str> = [(replay, "replay"), (d.loop_threshold > 0, "loop"), (d.burst_factor > 0, "burst")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
            if parts.is_empty() {
                no("all off")
            } else {
                yes(parts.join(", "))
            }
        },
        evidence: |n| {
            vec![
                ("replays", n.finding(custos_core::finding::kinds::REPLAY)),
                ("loops", n.finding(custos_core::finding::kinds::LOOP)),
                ("bursts", n.finding(custos_core::finding::kinds::BURST)),
            ]
        },
        addresses: &["ASI02", "ASI08", "ASI10", "ZT4", "L5"],
    },
    Control {
        id: "limits",
        name: "Rate limits, run budgets and concurrency limits",
        key: "[[detection.limits]]",
        on: |c| {
            if c.detection.limits.is_empty() {
                no("none configured")
            } else {
                yes(format!("{} rules", c.detection.limits.len()))
            }
        },
        evidence: |n| {
            vec![
                ("rate limits hit", n.finding(custos_core::finding::kinds::RATE_LIMIT)),
                ("budgets hit", n.finding(custos_core::finding::kinds::BUDGET)),
            ]
        },
        addresses: &["ASI08", "ASI10", "L4"],
    },
    Control {
        id: "approvals",
        name: "Privileged calls held until a human approves that exact call",
        key: "[approvals.groups.NAME] + @approval policies",
        on: |c| {
            if c.approvals.groups.is_empty() {
                no("no approver groups")
            } else {
                yes(format!("{} approver groups", c.approvals.groups.len()))
            }
        },
        evidence: |n| {
            vec![
                ("approvals requested", n.kind(EventKind::ApprovalRequested)),
                ("approved", n.kind(EventKind::ApprovalApproved)),
                ("denied", n.kind(EventKind::ApprovalDenied)),
                ("replays of an approval refused", n.kind(EventKind::ApprovalReplayRefused)),
            ]
        },
        addresses: &["ASI02", "ASI03", "ASI05", "ASI09", "ASI10", "NHI10", "ZT3", "ZT4", "L6"],
    },
    Control {
        id: "approver-idp",
        name: "Approvers sign in through the identity provider (OpenID Connect)",
        key: "[console.oidc]",
        on: |c| match c.console.as_ref().and_then(|c| c.oidc.as_ref()) {
            Some(o) => yes(format!("issuer `{}`", o.issuer)),
            None => no("approvers named by sign-in links, the CLI or the admin token"),
        },
        evidence: |n| {
            vec![
                ("decisions by IdP-verified approvers", n.oidc_decisions),
                ("console sign-ins", n.kind(EventKind::ConsoleSignedIn)),
            ]
        },
        addresses: &["ASI09", "NHI10", "ZT6"],
    },
    Control {
        id: "credential-broker",
        name: "Upstream credentials held and injected by the gateway, never shown to agents",
        key: "[[servers.inject]]",
        on: |c| {
            let n = c.servers.iter().filter(|s| !s.inject.is_empty()).count();
            if n == 0 {
                no("no server is given a secret")
            } else {
                yes(format!("{n} servers"))
            }
        },
        evidence: |n| vec![("calls made with a brokered credential", n.brokered_calls)],
        addresses: &["NHI2", "NHI3", "NHI9", "NHI10", "ZT3"],
    },
    Control {
        id: "minted-tokens",
        name: "Short-lived tokens minted per call or run, scoped to one upstream",
        key: "[servers.token]",
        on: |c| {
            let n = c.servers.iter().filter(|s| s.token.is_some()).count();
            if n == 0 {
                no("no upstream takes minted tokens")
            } else {
                yes(format!("{n} servers"))
            }
        },
        evidence: |n| {
            vec![("tokens minted", n.kind(EventKind::TokenMinted)), ("tokens revoked", n.kind(EventKind::TokenRevoked))]
        },
        addresses: &["NHI3", "NHI7", "NHI9", "ZT3"],
    },
    Control {
        id: "secret-store",
        name: "Secrets sealed in the store under the master key",
        key: "[secrets.NAME] store = true",
        on: |c| {
            let n = c.secrets.iter().filter(|s| s.source == SecretSource::Store).count();
            if n == 0 {
                no("secrets come from the environment or files")
            } else {
                yes(format!("{n} secrets"))
            }
        },
        evidence: |n| vec![("secrets set", n.kind(EventKind::SecretSet))],
        addresses: &["NHI2", "NHI7"],
    },
    Control {
        id: "credential-hygiene",
        name: "Credential rotation, unused access and inactive agents reported",
        key: "[credentials] rotate_after_days, unused_after_days; `custos report drift`",
        on: |c| {
            yes(format!(
                "rotate after {} days, unused after {} days",
                c.credentials.rotate_after_days, c.credentials.unused_after_days
            ))
        },
        evidence: |n| {
            vec![
                ("agent keys revoked", n.kind(EventKind::AgentKeyRevoked)),
                ("signing keys retired", n.kind(EventKind::SigningKeyRetired)),
            ]
        },
        addresses: &["NHI1", "NHI5", "NHI7"],
    },
    Control {
        id: "audit-chain",
        name: "Every call in a hash-chained audit log before it runs",
        key: "built in (data_dir)",
        on: |_| yes("always"),
        evidence: |n| vec![("events recorded", n.kinds.values().sum())],
        addresses: &["ASI10", "ZT7", "L5", "L6"],
    },
    Control {
        id: "record-arguments",
        name: "Call arguments kept in the audit log",
        key: "[audit] record_arguments = true",
        on: |c| if c.audit.record_arguments { yes("on") } else { no("digests only") },
        evidence: |_| Vec::new(),
        addresses: &["ZT7", "L5"],
    },
    Control {
        id: "signed-checkpoints",
        name: "Signed checkpoints of the log (Merkle root, Ed25519)",
        key: "[audit.checkpoints]",
        on: |c| match &c.audit.checkpoints {
            Some(s) if s.publish_url.is_some() || s.publish_file.is_some() => {
                yes(format!("every {} events, published off the host", s.every_events))
            }
            Some(s) => yes(format!("every {} events, kept on the host only", s.every_events)),
            None => no("off: a rewritten log cannot be told from the log"),
        },
        evidence: |n| vec![("checkpoints kept", n.checkpoints)],
        addresses: &["ZT5", "ZT7", "L5", "L6"],
    },
    Control {
        id: "session-limits",
        name: "Per-agent session and concurrency limits, bounded connections",
        key: "[serve] max_sessions_per_agent, max_concurrent_per_agent, max_connections",
        on: |c| {
            yes(format!(
                "{} sessions and {} concurrent calls per agent",
                c.serve.max_sessions_per_agent, c.serve.max_concurrent_per_agent
            ))
        },
        evidence: |_| Vec::new(),
        addresses: &["ASI08", "L4"],
    },
];

/// Counts what the log shows, a page at a time.
fn count(store: Option<&dyn Store>, checkpoints_dir: &Path) -> Result<Counts, Failure> {
    let checkpoints = std::fs::read_dir(checkpoints_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name().to_str().is_some_and(|f| f.starts_with("checkpoint-") && f.ends_with(".json"))
                })
                .count()
        })
        .map_or(0, |c| u64::try_from(c).unwrap_or(u64::MAX));
    let mut n = Counts { checkpoints, ..Counts::default() };
    let Some(store) = store else { return Ok(n) };
    let mut after = 0;
    loop {
        let q = EventQuery { after_seq: Some(after), limit: Some(PAGE), ..EventQuery::default() };
        let page = store.query(&q).map_err(Failure::runtime)?;
        for e in &page {
            after = e.seq;
            let ev = &e.event;
            *n.kinds.entry(ev.kind.as_str()).or_default() += 1;
            let d = &ev.detail;
            match ev.kind {
                EventKind::CallDecided => {
                    *n.decisions.entry(ev.decision.clone().unwrap_or_default()).or_default() += 1;
                }
                EventKind::CallRequested
                    if d.get("credentials").and_then(Value::as_array).is_some_and(|c| !c.is_empty()) =>
                {
                    n.brokered_calls += 1;
                }
                EventKind::FindingRecorded => {
                    let kind = d.get("kind").or_else(|| d.get("finding")).and_then(Value::as_str).unwrap_or("?");
                    *n.findings.entry(kind.to_owned()).or_default() += 1;
                }
                EventKind::ApprovalApproved | EventKind::ApprovalDenied
                    if d.pointer("/identity/method").and_then(Value::as_str) == Some("oidc") =>
                {
                    n.oidc_decisions += 1;
                }
                _ => {}
            }
        }
        if page.len() < PAGE {
            return Ok(n);
        }
    }
}

/// One control, judged against a config and a log.
#[derive(Debug)]
pub struct ControlRow {
    pub id: &'static str,
    pub name: &'static str,
    pub key: &'static str,
    pub on: bool,
    pub detail: String,
    pub evidence: Vec<(&'static str, u64)>,
    pub addresses: &'static [&'static str],
}

/// One framework item: the controls on and off that address it.
#[derive(Debug)]
pub struct ItemRow {
    pub id: &'static str,
    pub name: &'static str,
    /// `covered`, `gap` or `outside`.
    pub status: &'static str,
    pub on: Vec<&'static str>,
    pub off: Vec<(&'static str, &'static str)>,
    /// For an item outside a gateway's reach, what addresses it instead.
    pub note: &'static str,
}

/// One framework's items.
#[derive(Debug)]
pub struct FrameworkRow {
    pub id: &'static str,
    pub name: &'static str,
    pub items: Vec<ItemRow>,
}

/// The whole posture.
#[derive(Debug)]
pub struct Posture {
    pub controls: Vec<ControlRow>,
    pub frameworks: Vec<FrameworkRow>,
}

impl Posture {
    pub fn judge(config: &Config, counts: &Counts) -> Self {
        let controls: Vec<ControlRow> = CONTROLS
            .iter()
            .map(|c| {
                let (on, detail) = (c.on)(config);
                ControlRow {
                    id: c.id,
                    name: c.name,
                    key: c.key,
                    on,
                    detail,
                    evidence: (c.evidence)(counts),
                    addresses: c.addresses,
                }
            })
            .collect();
        let frameworks = FRAMEWORKS
            .iter()
            .map(|f| FrameworkRow {
                id: f.id,
                name: f.name,
                items: f
                    .items
                    .iter()
                    .map(|item| {
                        let mapped = controls.iter().filter(|c| c.addresses.contains(&item.id));
                        let on: Vec<&'static str> = mapped.clone().filter(|c| c.on).map(|c| c.id).collect();
                        let off = mapped.filter(|c| !c.on).map(|c| (c.id, c.key)).collect();
                        let note = OUTSIDE.iter().find(|(id, _)| *id == item.id).map_or("", |(_, why)| why);
                        let status = match (on.is_empty(), note.is_empty()) {
                            (true, false) => "outside",
                            (true, true) => "gap",
                            _ => "covered",
                        };
                        ItemRow { id: item.id, name: item.name, status, on, off, note }
                    })
                    .collect(),
            })
            .collect();
        Self { controls, frameworks }
    }

    /// Items no enabled control addresses, framework by framework.
    pub fn gaps(&self) -> impl Iterator<Item = (&FrameworkRow, &ItemRow)> {
        self.frameworks.iter().flat_map(|f| f.items.iter().filter(|i| i.status != "covered").map(move |i| (f, i)))
    }

    pub fn to_json(&self, config: &Config, generated: &str) -> Value {
        let items = |f: &FrameworkRow| -> Vec<Value> {
            f.items
                .iter()
                .map(|i| {
                    json!({ "id": i.id, "name": i.name, "status": i.status, "controls_on": i.on,
                    "controls_off": i.off.iter().map(|(id, _)| id).collect::<Vec<_>>() })
                })
                .collect()
        };
        let on = self.controls.iter().filter(|c| c.on).count();
        let total_items: usize = self.frameworks.iter().map(|f| f.items.len()).sum();
        let covered = total_items - self.gaps().count();
        let summary = json!({ "controls": self.controls.len(), "controls_on": on, "items": total_items,
                              "items_covered": covered });
        let controls: Vec<Value> = self
            .controls
            .iter()
            .map(|c| {
                let evidence: Vec<Value> =
                    c.evidence.iter().map(|(what, n)| json!({ "what": what, "count": n })).collect();
                json!({ "id": c.id, "name": c.name, "on": c.on, "key": c.key, "detail": c.detail,
                        "evidence": evidence, "addresses": c.addresses })
            })
            .collect();
        let frameworks: Vec<Value> =
            self.frameworks.iter().map(|f| json!({ "id": f.id, "name": f.name, "items": items(f) })).collect();
        let gaps: Vec<Value> = self
            .gaps()
            .map(|(f, i)| {
                let switch_on: Vec<Value> =
                    i.off.iter().map(|(id, key)| json!({ "control": id, "key": key })).collect();
                json!({ "framework": f.id, "item": i.id, "name": i.name, "status": i.status,
                        "switch_on": switch_on, "note": i.note })
            })
            .collect();
        json!({
            "generated": generated,
            "config": config.path.display().to_string(),
            "summary": summary,
            "controls": controls,
            "frameworks": frameworks,
            "gaps": gaps,
        })
    }
}

#[derive(Template)]
#[template(path = "report_posture.html")]
struct PosturePage<'a> {
    posture: &'a Posture,
    config: String,
    generated: String,
    csp: String,
    style: &'static str,
    controls_on: usize,
    gaps: Vec<(&'a FrameworkRow, &'a ItemRow)>,
}

impl PosturePage<'_> {
    /// A control's name, for the framework tables.
    fn control_name(&self, id: &str) -> &'static str {
        CONTROLS.iter().find(|c| c.id == id).map_or("", |c| c.name)
    }
}

pub fn run(location: &Location, format: PostureFormat, out: Option<&Path>) -> Result<(), Failure> {
    let config = context::load_config(location)?;
    let store = super::super::open_existing(&config)?;
    let dir = super::run::checkpoints_dir(Some(&config), location)?;
    let counts = count(store.as_ref().map(|s| s as &dyn Store), &dir)?;
    let posture = Posture::judge(&config, &counts);
    let generated = custos_console::time(custos_gateway::now_ms());
    let text = match format {
        PostureFormat::Json => {
            let mut text =
                serde_json::to_string_pretty(&posture.to_json(&config, &generated)).map_err(Failure::runtime)?;
            text.push('\n');
            text
        }
        PostureFormat::Html => PosturePage {
            posture: &posture,
            config: config.path.display().to_string(),
            generated,
            csp: page_csp(),
            style: STYLE,
            controls_on: posture.controls.iter().filter(|c| c.on).count(),
            gaps: posture.gaps().collect(),
        }
        .render()
        .map_err(|e| Failure::runtime(format!("the report cannot be rendered: {e}")))?,
    };
    write_out(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_framework_item_is_mapped_or_outside_and_every_mapping_names_an_item() {
        let mapped: HashSet<&str> = CONTROLS.iter().flat_map(|c| c.addresses.iter().copied()).collect();
        let outside: HashSet<&str> = OUTSIDE.iter().map(|(id, _)| *id).collect();
        for f in &FRAMEWORKS {
            for item in f.items {
                assert!(
                    mapped.contains(item.id) != outside.contains(item.id),
                    "{} ({}) must be either addressed by a control or listed as outside, not both",
                    item.id,
                    item.name
                );
            }
        }
        for id in mapped.iter().chain(&outside) {
            let known = FRAMEWORKS.iter().any(|f| f.items.iter().any(|i| i.id == *id));
            assert!(known, "`{id}` is not an item of any framework");
        }
        let ids: HashSet<&str> = CONTROLS.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), CONTROLS.len(), "control ids are unique");
        assert_eq!(FRAMEWORKS.iter().map(|f| f.items.len()).collect::<Vec<_>>(), [10, 10, 7, 7]);
    }
}
