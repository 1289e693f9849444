//! Benchmarks of single components, in this process: policy decisions, the leak guard, durable audit appends,
//! and (through the real `custos audit verify`) verifying a log of a million events.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use custos_core::{Agent, AgentId, Decision, EventKind, NewEvent, RunId, ToolClass, ToolRef};
use custos_policy::{CallRequest, PolicyEngine, ToolInfo, EMBEDDED_SCHEMA};
use custos_store::{AuditLog, SqlStore, Store};
use serde_json::json;

use crate::report::{AppendResult, GuardResult, Latency, PolicyResult, VerifyResult};

/// The leak guard holding `secrets` secrets (random, 24 to 40 bytes) scanning a 16 KiB tool
/// result with nothing to find, then the same result carrying one of them base64-encoded, each
/// for about `budget`. The guard searches every form of every secret with one automaton, so the
/// cost per KiB should barely move between 10 and 1,000 secrets.
pub fn leak_guard(secrets: usize, budget: Duration) -> Result<Vec<GuardResult>> {
    use base64::Engine;
    use custos_secrets::{Fingerprinter, LeakGuard, SecretValue};
    let held: Vec<(String, SecretValue)> = (0..secrets)
        .map(|i| {
            let value = format!(
                "sk_{:032x}_{}",
                (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                i % 7
            );
            (format!("secret_{i}"), SecretValue::from(value))
        })
        .collect();
    let leaked = held.first().map(|(_, v)| v.expose().to_owned()).unwrap_or_default();
    let guard = LeakGuard::new(held, Fingerprinter::from_key(&[3; 32]));
    let line = "Build 4821 finished: 12 of 12 steps passed in 3m41s; artifacts at https://ci.example/run/4821?view=full%20log. ";
    let text = line.repeat(16 * 1024 / line.len());
    let clean = json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}]}}).to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(leaked.as_bytes());
    let hit = clean.replacen("Build 4821", &format!("Build 4821 token={encoded}"), 1);
    let mut out = Vec::new();
    for (message, raw) in [("clean", clean), ("one hit", hit)] {
        let found = guard.scan_message(raw.as_bytes()).is_some();
        anyhow::ensure!(
            found == (message == "one hit"),
            "the guard {} the {message} message",
            if found { "flagged" } else { "missed" }
        );
        let mut samples = Vec::new();
        let started = Instant::now();
        while started.elapsed() < budget / 2 || samples.len() < 10 {
            let t = Instant::now();
            std::hint::black_box(guard.scan_message(std::hint::black_box(raw.as_bytes())));
            samples.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        }
        let median = Latency::of(&mut samples).p50;
        let kib = raw.len() as f64 / 1024.0;
        out.push(GuardResult {
            secrets,
            message,
            message_bytes: raw.len(),
            scans: samples.len(),
            ns_per_kib: median / kib,
        });
    }
    Ok(out)
}

/// `n` policies of the shapes a large deployment has: per-agent tool grants, group grants with
/// argument conditions, and forbids on argument values; plus the grant the measured call
/// matches and a forbid it must be checked against. The grants are scoped to other agents and
/// groups; the forbids apply to everyone, but only to calls that carry their argument (`query`).
pub fn policy_set(n: usize) -> String {
    let mut text = String::with_capacity(n * 200);
    text.push_str(
        "@id(\"bench-grant\")\npermit (principal in Custos::Group::\"bench\", action == Custos::Action::\"call_tool\", resource)\n\
         when { resource.class == \"read\" };\n\
         @id(\"no-etc\")\nforbid (principal, action == Custos::Action::\"call_tool\", resource)\n\
         when { context.arguments has path && context.arguments.path like \"/etc/*\" };\n",
    );
    for i in 0..n.saturating_sub(2) {
        let policy = match i % 3 {
            0 => format!(
                "@id(\"p{i}\")\npermit (principal == Custos::Agent::\"agent-{i}\", action == Custos::Action::\"call_tool\", \
                 resource == Custos::Tool::\"server-{s}/tool-{i}\");\n",
                s = i % 50
            ),
            1 => format!(
                "@id(\"p{i}\")\npermit (principal in Custos::Group::\"team-{g}\", action == Custos::Action::\"call_tool\", resource)\n\
                 when {{ resource.class == \"write\" && context.arguments has path && context.arguments.path like \"/srv/{i}/*\" }};\n",
                g = i % 100
            ),
            _ => format!(
                "@id(\"p{i}\")\nforbid (principal, action == Custos::Action::\"call_tool\", resource)\n\
                 when {{ context.arguments has query && context.arguments.query == \"blocked-{i}\" }};\n"
            ),
        };
        text.push_str(&policy);
    }
    text
}

/// Decides the same allowed call against `n` policies for about `budget` (at least 200 times),
/// in two forms: with the arguments a typical call has, which the set's argument forbids
/// (guarded by `context.arguments has query`) are left out for; and with `query` as well, so
/// that every forbid is evaluated.
pub fn policy(n: usize, budget: Duration) -> Result<PolicyResult> {
    let loading = Instant::now();
    let engine = PolicyEngine::from_sources(EMBEDDED_SCHEMA, &[("bench.cedar".to_owned(), policy_set(n))])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let typical = json!({ "text": "hello", "path": "/srv/data/report.txt" });
    let every_forbid = json!({ "text": "hello", "path": "/srv/data/report.txt", "query": "allowed" });
    let (decisions, latency_ns) = decide(&engine, &typical, budget / 2)?;
    let (_, every_forbid_ns) = decide(&engine, &every_forbid, budget / 2)?;
    Ok(PolicyResult { policies: n, decisions, load_ms, latency_ns, every_forbid_ns })
}

/// Decides one allowed call with these `arguments` over and over for about `budget`: how many
/// times, and the latency of each.
fn decide(engine: &PolicyEngine, arguments: &serde_json::Value, budget: Duration) -> Result<(usize, Latency)> {
    let agent = Agent {
        id: AgentId("bench".to_owned()),
        owner: "bench@example.com".to_owned(),
        purpose: "benchmarks".to_owned(),
        groups: vec!["bench".to_owned()],
    };
    let tool = ToolRef::new("echo", "echo")?;
    let labels = ["read_sensitive".to_owned()];
    let req = CallRequest {
        agent: &agent,
        tool: ToolInfo { tool: &tool, class: ToolClass::Read, annotations: None },
        arguments,
        run_id: "run-bench",
        step: 3,
        labels: &labels,
        findings: &[],
        flows: &[],
        approval_granted: false,
    };
    if !matches!(engine.decide(&req), Decision::Allow { .. }) {
        bail!("the benchmark's call with {arguments} is not allowed by its {} policies", engine.len());
    }
    let mut samples = Vec::new();
    let until = Instant::now() + budget;
    while samples.len() < 200 || Instant::now() < until {
        let start = Instant::now();
        let decision = engine.decide(&req);
        samples.push(u32::try_from(start.elapsed().as_nanos()).unwrap_or(u32::MAX));
        std::hint::black_box(decision);
    }
    Ok((samples.len(), Latency::of(&mut samples)))
}

/// An event like the gateway's `call.requested`, `call.decided` and `call.finished`.
pub(crate) fn event(i: u64) -> NewEvent {
    let kind = match i % 3 {
        0 => EventKind::CallRequested,
        1 => EventKind::CallDecided,
        _ => EventKind::CallFinished,
    };
    let mut e = NewEvent::new(kind, 1_790_000_000_000 + i64::try_from(i).unwrap_or(0));
    e.agent = Some(AgentId("bench".to_owned()));
    e.run = Some(RunId(format!("run-{}", i / 300)));
    e.step = Some(i / 3);
    e.tool = ToolRef::new("echo", "echo").ok();
    e.decision = (i % 3 == 1).then(|| "allow".to_owned());
    e.detail = json!({
        "request_id": i / 3,
        "session": "3f6c1d0e-2b7a-4c1e-9f3d-6a5b4c3d2e1f",
        "arguments": { "text": format!("message {}", i / 3) },
        "policies": ["bench-grant"],
        "duration_us": 412,
    });
    e
}

/// Durable appends through the gateway's own writer ([`AuditLog`], group commit): one
/// appender at a time, then `concurrent` at once, each for `budget`.
pub async fn append(dir: &Path, concurrent: usize, budget: Duration) -> Result<Vec<AppendResult>> {
    let store = SqlStore::open(dir.join("append.db"))?;
    let log = AuditLog::start(Box::new(store))?;
    let mut results = Vec::new();
    for writers in [1, concurrent] {
        let before = log.stats();
        let until = Instant::now() + budget;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut written = 0u64;
                let mut i = u64::try_from(w).unwrap_or(0) * 1_000_000_000;
                while Instant::now() < until {
                    log.append(vec![event(i)]).await?;
                    written += 1;
                    i += 1;
                }
                anyhow::Ok(written)
            }));
        }
        let mut events = 0;
        for task in tasks {
            events += task.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let after = log.stats();
        results.push(AppendResult {
            writers,
            events,
            events_per_sec: events as f64 / secs,
            commits_per_sec: (after.batches - before.batches) as f64 / secs,
        });
    }
    log.shutdown().await;
    Ok(results)
}

/// Writes `events` events to a new log in `data_dir` (10,000 per transaction), then times
/// `custos audit verify` over it.
pub fn verify(custos: &Path, config: &Path, data_dir: &Path, events: u64) -> Result<VerifyResult> {
    std::fs::create_dir_all(data_dir)?;
    let writing = Instant::now();
    {
        let mut store = SqlStore::open(data_dir.join(custos_store::DATABASE_FILE))?;
        let mut next = 0;
        while next < events {
            let batch: Vec<NewEvent> = (next..events.min(next + 10_000)).map(event).collect();
            next += u64::try_from(batch.len()).unwrap_or(0);
            store.append(&batch)?;
        }
    }
    let write_secs = writing.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(data_dir.join(custos_store::DATABASE_FILE))?.len();
    let start = Instant::now();
    let out = std::process::Command::new(custos)
        .args(["audit", "verify", "--json", "--config"])
        .arg(config)
        .output()
        .context("running custos audit verify")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "custos audit verify failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading verify's JSON")?;
    let verified = report.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if verified != events {
        bail!("custos audit verify checked {verified} events, expected {events}: {report}");
    }
    Ok(VerifyResult {
        events,
        database_bytes: bytes,
        bulk_write_events_per_sec: events as f64 / write_secs,
        verify_secs: secs,
        verify_events_per_sec: events as f64 / secs,
    })
}
