//! The result file (JSON), the table printed after a run, and the targets of issue 8 checked
//! against what was measured.

use serde::Serialize;

/// Percentiles of a set of samples, in the samples' unit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Sorts `samples` and reads the percentiles (nearest rank); all zero when empty.
    pub fn of(samples: &mut [u32]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples.get(rank - 1).copied().map_or(0.0, f64::from)
        };
        Self { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
    }
}

/// One load phase: a path (direct, serve, run) at a number of concurrent clients.
#[derive(Debug, Serialize)]
pub struct LoadResult {
    /// `http` or `stdio`.
    pub transport: &'static str,
    /// `direct`, `custos serve` or `custos run`.
    pub path: &'static str,
    pub connections: usize,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_sec: f64,
    pub latency_us: Latency,
    /// CPU (user + system) the gateway spent per measured call, when there is a gateway.
    pub gateway_cpu_us_per_call: Option<f64>,
    /// CPU the echo upstream spent per measured call.
    pub upstream_cpu_us_per_call: Option<f64>,
    /// What the first failed call got, when one failed.
    pub first_error: Option<String>,
}

/// A gateway's phase against the direct phase of the same transport and concurrency.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub path: &'static str,
    pub connections: usize,
    /// Through-gateway calls/s over direct calls/s.
    pub throughput_ratio: f64,
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub gateway_cpu_us_per_call: Option<f64>,
}

/// What ends the path of a phase whose gateway traces every call over OTLP.
pub const TRACED: &str = " traced";

/// A gateway tracing every call against the same gateway untraced, at one transport and
/// concurrency, both measured in the same run.
#[derive(Debug, Serialize)]
pub struct TracingCost {
    /// The untraced path: `custos serve` or `custos run`.
    pub path: &'static str,
    pub transport: &'static str,
    pub connections: usize,
    pub cpu_us_per_call_off: f64,
    pub cpu_us_per_call_on: f64,
    /// CPU per call traced over CPU per call untraced.
    pub cpu_ratio: f64,
    /// Calls/s traced over calls/s untraced.
    pub throughput_ratio: f64,
}

/// The traced phases' cost, and how many span exports their collector took.
#[derive(Debug, Serialize)]
pub struct Tracing {
    pub trace_exports: u64,
    pub costs: Vec<TracingCost>,
}

/// Pairs each traced phase with the untraced phase of its path, transport and concurrency.
pub fn tracing_costs(load: &[LoadResult]) -> Vec<TracingCost> {
    let mut out = Vec::new();
    for on in load.iter().filter(|l| l.path.ends_with(TRACED)) {
        let path = on.path.trim_end_matches(TRACED);
        let Some(off) =
            load.iter().find(|l| l.path == path && l.transport == on.transport && l.connections == on.connections)
        else {
            continue;
        };
        let (Some(cpu_off), Some(cpu_on)) = (off.gateway_cpu_us_per_call, on.gateway_cpu_us_per_call) else {
            continue;
        };
        out.push(TracingCost {
            path: off.path,
            transport: on.transport,
            connections: on.connections,
            cpu_us_per_call_off: cpu_off,
            cpu_us_per_call_on: cpu_on,
            cpu_ratio: if cpu_off > 0.0 { cpu_on / cpu_off } else { 0.0 },
            throughput_ratio: if off.calls_per_sec > 0.0 { on.calls_per_sec / off.calls_per_sec } else { 0.0 },
        });
    }
    out
}

#[derive(Debug, Serialize)]
pub struct PolicyResult {
    pub policies: usize,
    pub decisions: usize,
    /// Parsing and validating the set against the schema, once.
    pub load_ms: f64,
    /// A call whose arguments the argument forbids do not test: the engine leaves them out.
    pub latency_ns: Latency,
    /// The same call with the argument they test: every forbid is evaluated.
    pub every_forbid_ns: Latency,
}

#[derive(Debug, Serialize)]
pub struct GuardResult {
    /// Secrets the leak guard holds.
    pub secrets: usize,
    /// `clean` (nothing to find, the common message) or `one hit` (one held secret in it,
    /// base64-encoded).
    pub message: &'static str,
    pub message_bytes: usize,
    pub scans: usize,
    /// Median time to scan the message, per KiB of it.
    pub ns_per_kib: f64,
}

#[derive(Debug, Serialize)]
pub struct AppendResult {
    /// Tasks appending one event at a time, each waiting for its durable commit.
    pub writers: usize,
    pub events: u64,
    pub events_per_sec: f64,
    /// Durable transactions (one disk sync each) per second: the group commit's batching.
    pub commits_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct VerifyResult {
    pub events: u64,
    pub database_bytes: u64,
    /// Writing the log, 10,000 events per durable transaction.
    pub bulk_write_events_per_sec: f64,
    /// `custos audit verify` as a process: start, open, walk, report.
    pub verify_secs: f64,
    pub verify_events_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct MemoryResult {
    /// `custos serve`'s resident set once it answers, before any session.
    pub idle_rss_bytes: u64,
    /// Its peak resident set over the load phases.
    pub under_load_peak_rss_bytes: u64,
    pub sessions: usize,
    /// Its resident set with `sessions` MCP sessions open (each with its upstream session).
    pub sessions_rss_bytes: u64,
    pub sessions_peak_rss_bytes: u64,
}

/// One target of issue 8 and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub cores: usize,
    pub warmup_ms: u64,
    pub measure_ms: u64,
    /// `fdatasync` of a 4 KiB write in the data directory's file system: the floor of a durable
    /// commit, measured in this run.
    pub disk_sync_us: Latency,
    pub load: Vec<LoadResult>,
    pub comparisons: Vec<Comparison>,
    /// Tracing every call against tracing off.
    pub tracing: Tracing,
    pub policy: Vec<PolicyResult>,
    pub leak_guard: Vec<GuardResult>,
    pub audit_append: Vec<AppendResult>,
    /// The store on PostgreSQL beside the file: appends, and replicas of `custos serve`.
    pub postgres: Option<crate::postgres::PostgresResult>,
    pub audit_verify: VerifyResult,
    pub evidence: crate::evidence::EvidenceResult,
    /// Evidence to SIEMs: CPU per event of OCSF mapping and of each sink.
    pub export: Vec<crate::export::ExportResult>,
    pub memory: MemoryResult,
    pub targets: Vec<Target>,
    pub total_secs: f64,
}

/// Each gateway phase against the direct phase with the same transport and concurrency.
pub fn compare(load: &[LoadResult]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for gated in load.iter().filter(|l| l.path != "direct") {
        let Some(direct) = load
            .iter()
            .find(|d| d.path == "direct" && d.transport == gated.transport && d.connections == gated.connections)
        else {
            continue;
        };
        out.push(Comparison {
            path: gated.path,
            connections: gated.connections,
            throughput_ratio: if direct.calls_per_sec > 0.0 { gated.calls_per_sec / direct.calls_per_sec } else { 0.0 },
            added_p50_us: gated.latency_us.p50 - direct.latency_us.p50,
            added_p99_us: gated.latency_us.p99 - direct.latency_us.p99,
            gateway_cpu_us_per_call: gated.gateway_cpu_us_per_call,
        });
    }
    out
}

const MB: f64 = 1024.0 * 1024.0;

/// The targets of issue 8, read off the report.
pub fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let mut add =
        |name: String, target: String, measured: String, met: bool| t.push(Target { name, target, measured, met });
    // The targets are for the gateway as deployed by default, untraced.
    for c in r.comparisons.iter().filter(|c| !c.path.ends_with(TRACED)) {
        if c.connections == 64 {
            let cpu = c.gateway_cpu_us_per_call.unwrap_or(f64::INFINITY);
            add(
                format!("{} CPU per tools/call (64 conns)", c.path),
                "<= 80 us".into(),
                format!("{cpu:.0} us"),
                cpu <= 80.0,
            );
            add(
                format!("{} / direct throughput (64 conns)", c.path),
                ">= 0.35".into(),
                format!("{:.2}", c.throughput_ratio),
                c.throughput_ratio >= 0.35,
            );
        }
        if c.connections == 1 {
            let limit = r.disk_sync_us.p50 + 100.0;
            add(
                format!("{} added p50 latency (1 conn)", c.path),
                format!("<= sync p50 + 100 us = {limit:.0} us"),
                format!("{:.0} us", c.added_p50_us),
                c.added_p50_us <= limit,
            );
        }
    }
    if let Some(p) = r.policy.iter().find(|p| p.policies == 100) {
        let us = p.latency_ns.p50 / 1e3;
        let every = p.every_forbid_ns.p50 / 1e3;
        add(
            "policy p50 at 100 policies".into(),
            "< 20 us".into(),
            format!("{us:.1} us ({every:.1} us with every forbid)"),
            us < 20.0,
        );
    }
    let v = &r.audit_verify;
    add(
        format!("audit verify ({} events)", v.events),
        "> 1,000,000 events/s".into(),
        format!("{:.0} events/s", v.verify_events_per_sec),
        v.verify_events_per_sec > 1e6,
    );
    let m = &r.memory;
    add(
        "idle RSS".into(),
        "< 30 MB".into(),
        format!("{:.1} MB", m.idle_rss_bytes as f64 / MB),
        (m.idle_rss_bytes as f64) < 30.0 * MB,
    );
    add(
        format!("RSS at {} sessions", m.sessions),
        "< 200 MB".into(),
        format!("{:.1} MB", m.sessions_rss_bytes as f64 / MB),
        (m.sessions_rss_bytes as f64) < 200.0 * MB,
    );
    t
}

/// The PostgreSQL rows: appends beside the file's, then the replicas.
pub fn postgres_table(pg: &crate::postgres::PostgresResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "\ndurable appends, file vs PostgreSQL (one cluster on this machine, fsync on)");
    for a in &pg.append {
        let server = a.server_cpu_us_per_event.map_or_else(String::new, |c| format!(", server {c:.0} us CPU/event"));
        let _ = writeln!(
            s,
            "{:<8} {:>2} writers: {:>7.0} events/s, {:>6.0} commits/s, append p50 {:.0} us p99 {:.0} us{server}",
            a.store, a.writers, a.events_per_sec, a.commits_per_sec, a.append_latency_us.p50, a.append_latency_us.p99
        );
    }
    let _ = writeln!(s, "custos serve replicas on one PostgreSQL database");
    for row in &pg.replicas {
        let each: Vec<String> = row.replica_cpu_us_per_call.iter().map(|c| format!("{c:.0}")).collect();
        let _ = writeln!(
            s,
            "{} replica(s), {} conns: {:.0} calls/s, p50 {:.0} us p99 {:.0} us, errors {}, CPU/call per replica [{}] us, server {:.0} us",
            row.replicas,
            row.connections,
            row.calls_per_sec,
            row.latency_us.p50,
            row.latency_us.p99,
            row.errors,
            each.join(", "),
            row.server_cpu_us_per_call
        );
    }
    s
}

/// The short table printed after a run.
/// The export rows: CPU per event and events/s.
pub fn export_table(rows: &[crate::export::ExportResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "export to SIEMs ({} events, batches of 500)", rows.first().map_or(0, |r| r.events));
    let _ = writeln!(s, "{:<45} {:>12} {:>12}", "pass", "events/s", "cpu/event");
    for r in rows {
        let _ = writeln!(s, "{:<45} {:>12.0} {:>9.2} us", r.what, r.events_per_sec, r.cpu_us_per_event);
    }
    s
}

pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tools/call throughput and latency (warm-up {} ms, measured {} ms per row)",
        r.warmup_ms, r.measure_ms
    );
    let _ = writeln!(
        s,
        "{:<6} {:<20} {:>5} {:>10} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "", "path", "conns", "calls/s", "p50 us", "p90 us", "p99 us", "errors", "cpu/call"
    );
    for l in &r.load {
        let cpu = l.gateway_cpu_us_per_call.map_or_else(|| "-".to_owned(), |c| format!("{c:.0} us"));
        let _ = writeln!(
            s,
            "{:<6} {:<20} {:>5} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>7} {:>9}",
            l.transport,
            l.path,
            l.connections,
            l.calls_per_sec,
            l.latency_us.p50,
            l.latency_us.p90,
            l.latency_us.p99,
            l.errors,
            cpu
        );
    }
    let _ = writeln!(s, "\nthrough the gateway vs direct");
    for c in &r.comparisons {
        let _ = writeln!(
            s,
            "{:<20} {:>3} conns: throughput x{:.2}, p50 +{:.0} us, p99 +{:.0} us",
            c.path, c.connections, c.throughput_ratio, c.added_p50_us, c.added_p99_us
        );
    }
    let _ = writeln!(
        s,
        "\nevery call traced over OTLP (http/protobuf to a loopback collector, {} span exports) vs tracing off",
        r.tracing.trace_exports
    );
    for t in &r.tracing.costs {
        let _ = writeln!(
            s,
            "{:<13} {:>3} conns: cpu/call {:.0} -> {:.0} us (x{:.2}), throughput x{:.2}",
            t.path, t.connections, t.cpu_us_per_call_off, t.cpu_us_per_call_on, t.cpu_ratio, t.throughput_ratio
        );
    }
    let _ = writeln!(s, "\npolicy decision (one allowed call)");
    for p in &r.policy {
        let _ = writeln!(
            s,
            "{:>6} policies: p50 {:.1} us, p99 {:.1} us; every forbid evaluated: p50 {:.1} us, p99 {:.1} us ({} decisions; load {:.0} ms)",
            p.policies,
            p.latency_ns.p50 / 1e3,
            p.latency_ns.p99 / 1e3,
            p.every_forbid_ns.p50 / 1e3,
            p.every_forbid_ns.p99 / 1e3,
            p.decisions,
            p.load_ms
        );
    }
    let _ = writeln!(s, "\nleak guard (one upstream message, every form of every held secret)");
    for g in &r.leak_guard {
        let _ = writeln!(
            s,
            "{:>5} secrets, {:<7} {} KiB message: {:.0} ns per KiB ({} scans)",
            g.secrets,
            g.message,
            g.message_bytes / 1024,
            g.ns_per_kib,
            g.scans
        );
    }
    let _ = writeln!(s, "\naudit log (disk sync p50 {:.0} us, p99 {:.0} us)", r.disk_sync_us.p50, r.disk_sync_us.p99);
    for a in &r.audit_append {
        let _ = writeln!(
            s,
            "durable append, {:>2} writers: {:.0} events/s ({:.0} commits/s)",
            a.writers, a.events_per_sec, a.commits_per_sec
        );
    }
    if let Some(pg) = &r.postgres {
        let _ = write!(s, "{}", postgres_table(pg));
    }
    let v = &r.audit_verify;
    let _ = writeln!(
        s,
        "custos audit verify: {} events ({:.0} MB) in {:.2} s = {:.0} events/s",
        v.events,
        v.database_bytes as f64 / MB,
        v.verify_secs,
        v.verify_events_per_sec
    );
    let e = &r.evidence;
    for run in [&e.checkpoint, &e.proof] {
        let _ = writeln!(
            s,
            "{}: {} events in {:.2} s, peak RSS {:.1} MB ({:.2} x the binary's own {:.1} MB)",
            run.command,
            e.events,
            run.secs,
            run.peak_rss_bytes as f64 / MB,
            run.peak_rss_bytes as f64 / (e.baseline.peak_rss_bytes as f64).max(1.0),
            e.baseline.peak_rss_bytes as f64 / MB
        );
    }
    let _ = write!(s, "\n{}", export_table(&r.export));
    let m = &r.memory;
    let _ = writeln!(
        s,
        "\ncustos serve RSS: idle {:.1} MB, peak under load {:.1} MB, {} sessions {:.1} MB",
        m.idle_rss_bytes as f64 / MB,
        m.under_load_peak_rss_bytes as f64 / MB,
        m.sessions,
        m.sessions_rss_bytes as f64 / MB
    );
    let _ = writeln!(s, "\ntargets");
    for t in &r.targets {
        let _ = writeln!(
            s,
            "{} {:<40} {:>16} (target {})",
            if t.met { "met   " } else { "MISSED" },
            t.name,
            t.measured,
            t.target
        );
    }
    let _ = writeln!(s, "\ntotal {:.0} s", r.total_secs);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut v);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        let one = Latency::of(&mut [7]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Latency::of(&mut []).p50, 0.0);
    }

    fn load(path: &'static str, connections: usize, calls_per_sec: f64, p50: f64) -> LoadResult {
        LoadResult {
            transport: "http",
            path,
            connections,
            calls: 1,
            errors: 0,
            calls_per_sec,
            latency_us: Latency { p50, p90: p50, p99: p50 * 2.0, max: p50 * 3.0 },
            gateway_cpu_us_per_call: (path != "direct").then_some(70.0),
            upstream_cpu_us_per_call: None,
            first_error: None,
        }
    }

    #[test]
    fn each_gateway_row_is_compared_with_the_direct_row_of_its_concurrency() {
        let rows = [
            load("direct", 1, 10_000.0, 100.0),
            load("direct", 64, 40_000.0, 1000.0),
            load("custos serve", 64, 10_000.0, 4000.0),
        ];
        let c = compare(&rows);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].connections, 64);
        assert!((c[0].throughput_ratio - 0.25).abs() < 1e-9);
        assert!((c[0].added_p50_us - 3000.0).abs() < 1e-9);
    }

    #[test]
    fn each_traced_row_is_compared_with_the_untraced_row_of_its_path_and_concurrency() {
        let mut traced = load("custos serve traced", 64, 8_000.0, 5000.0);
        traced.gateway_cpu_us_per_call = Some(84.0);
        let rows = [
            load("direct", 64, 40_000.0, 1000.0),
            load("custos serve", 1, 1_000.0, 900.0),
            load("custos serve", 64, 10_000.0, 4000.0),
            traced,
        ];
        let t = tracing_costs(&rows);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].path, t[0].connections), ("custos serve", 64));
        assert!((t[0].cpu_ratio - 1.2).abs() < 1e-9);
        assert!((t[0].throughput_ratio - 0.8).abs() < 1e-9);
    }
}
