//! The store on PostgreSQL beside the embedded file, in the same run: durable appends through
//! the gateway's own writer (latency of one append, events and commits per second, the
//! server's CPU per event), and governed calls through one and three `custos serve` replicas
//! sharing one database (calls/s, latency, CPU per call of each replica and of the server).
//!
//! The server is a throw-away cluster (`custos-testpg`: initdb in a temporary directory, on
//! loopback, `fsync` on) on this machine's disk, so a commit costs what a local PostgreSQL's
//! costs; a server across a network adds its round trips to every statement.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use custos_store::{AuditLog, DbLocation, PgTarget, SqlStore};
use custos_testpg::TestCluster;
use serde::Serialize;

use crate::load::{self, HttpClient, HttpTarget, Phase};
use crate::procfs;
use crate::report::Latency;
use crate::scenarios::{self, Deployment, Process};

/// One append phase: `writers` tasks each appending one event at a time and waiting for it.
#[derive(Debug, Serialize)]
pub struct AppendRow {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub writers: usize,
    pub events: u64,
    pub events_per_sec: f64,
    /// Durable transactions per second: the group commit's batching.
    pub commits_per_sec: f64,
    /// From handing the event to the writer to its durable commit.
    pub append_latency_us: Latency,
    /// The PostgreSQL server's CPU (postmaster and backends) per appended event.
    pub server_cpu_us_per_event: Option<f64>,
}

/// One load phase against `replicas` replicas of `custos serve` on one PostgreSQL database.
#[derive(Debug, Serialize)]
pub struct ReplicaRow {
    pub replicas: usize,
    /// Client connections, spread evenly over the replicas.
    pub connections: usize,
    pub calls: u64,
    pub errors: u64,
    pub calls_per_sec: f64,
    pub latency_us: Latency,
    /// CPU per call of each replica (its share of the calls assumed even).
    pub replica_cpu_us_per_call: Vec<f64>,
    /// The PostgreSQL server's CPU per call.
    pub server_cpu_us_per_call: f64,
    pub first_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PostgresResult {
    pub append: Vec<AppendRow>,
    pub replicas: Vec<ReplicaRow>,
}

/// What the PostgreSQL rows need from the run.
pub struct Setup<'a> {
    pub custos: &'a Path,
    pub upstream: SocketAddr,
    pub concurrent: usize,
    pub append_budget: Duration,
    pub replica_counts: &'a [usize],
    pub connections: usize,
    pub phase: Phase,
}

/// Starts a cluster and measures every row; the cluster is removed afterwards.
pub async fn measure(setup: &Setup<'_>) -> Result<PostgresResult> {
    let cluster = TestCluster::start();
    let server = cluster.pid().context("the PostgreSQL server is not running")?;
    let scratch = tempfile::Builder::new().prefix("custos-bench-pg-").tempdir()?;

    let mut append = Vec::new();
    let file = DbLocation::File(scratch.path().join("append.db"));
    append.extend(appends("sqlite", &file, None, setup).await?);
    let pg = target(&cluster, "bench_append");
    append.extend(appends("postgres", &pg, Some(server), setup).await?);

    let url = cluster.create_database("bench_serve");
    let mut replicas = Vec::new();
    for &count in setup.replica_counts {
        replicas.push(serve(setup, &url, count, server).await?);
    }
    Ok(PostgresResult { append, replicas })
}

fn target(cluster: &TestCluster, name: &str) -> DbLocation {
    let url = cluster.create_database(name);
    DbLocation::Postgres(PgTarget { url, password: None, connect_timeout: Duration::from_secs(10) })
}

/// One writer, then `concurrent` writers, each for the budget, through one [`AuditLog`].
async fn appends(
    store: &'static str,
    at: &DbLocation,
    server: Option<u32>,
    setup: &Setup<'_>,
) -> Result<Vec<AppendRow>> {
    let log = AuditLog::start(Box::new(SqlStore::open(at)?))?;
    let mut rows = Vec::new();
    for writers in [1, setup.concurrent] {
        let before = log.stats();
        let cpu_before = server.map(procfs::tree_cpu_time).transpose()?;
        let start = Instant::now();
        let until = start + setup.append_budget;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = u64::try_from(w).unwrap_or(0) * 1_000_000_000;
                while Instant::now() < until {
                    let sent = Instant::now();
                    log.append(vec![crate::micro::event(i)]).await?;
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    i += 1;
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let secs = start.elapsed().as_secs_f64();
        let events = latencies.len() as u64;
        let server_cpu = match (server, cpu_before) {
            (Some(pid), Some(before)) => Some(procfs::tree_cpu_time(pid)?.saturating_sub(before)),
            _ => None,
        };
        let after = log.stats();
        rows.push(AppendRow {
            store,
            writers,
            events,
            events_per_sec: events as f64 / secs,
            commits_per_sec: (after.batches - before.batches) as f64 / secs,
            append_latency_us: Latency::of(&mut latencies),
            server_cpu_us_per_event: server_cpu.map(|c| per(c, events)),
        });
    }
    log.shutdown().await;
    Ok(rows)
}

fn per(cpu: Duration, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 1e6 / n as f64
}

/// `count` replicas of `custos serve` on the database at `url`, the connections spread over
/// them, measured for one phase.
async fn serve(setup: &Setup<'_>, url: &str, count: usize, server: u32) -> Result<ReplicaRow> {
    let settings = format!("[store]\nurl = \"{url}\"\n");
    let deployment = Deployment::with_settings(setup.custos.to_path_buf(), Some(setup.upstream), &settings)?;
    let key = deployment.api_key().context("adding the bench agent on PostgreSQL")?;
    let replicas: Vec<Process> = (0..count)
        .map(|_| scenarios::serve(&deployment).context("starting a custos serve replica on PostgreSQL"))
        .collect::<Result<_>>()?;
    let mut clients = Vec::with_capacity(setup.connections);
    for i in 0..setup.connections {
        let replica = replicas.get(i % count).context("no replica")?;
        let target = HttpTarget {
            addr: replica.addr,
            path: "/mcp/echo".to_owned(),
            authorization: Some(format!("Bearer {key}")),
        };
        clients.push(HttpClient::open(&target).await.context("opening a session on a replica")?);
    }
    let window = setup.phase.starting_now();
    let pids: Vec<u32> = replicas.iter().map(Process::pid).collect();
    let watcher = tokio::spawn(async move {
        let read = |pids: &[u32]| -> Result<(Vec<Duration>, Duration)> {
            let each = pids.iter().map(|&p| procfs::cpu_time(p)).collect::<Result<Vec<_>>>()?;
            Ok((each, procfs::tree_cpu_time(server)?))
        };
        tokio::time::sleep_until(window.measure_from.into()).await;
        let before = read(&pids)?;
        tokio::time::sleep_until(window.end.into()).await;
        let after = read(&pids)?;
        anyhow::Ok((before, after))
    });
    let mut sample = load::http_load(clients, window).await?;
    let ((each_before, server_before), (each_after, server_after)) = watcher.await??;
    let calls = sample.calls;
    let share = calls / count.max(1) as u64;
    drop(replicas);
    Ok(ReplicaRow {
        replicas: count,
        connections: setup.connections,
        calls,
        errors: sample.errors,
        calls_per_sec: calls as f64 / sample.elapsed.as_secs_f64(),
        latency_us: Latency::of(&mut sample.latencies_us),
        replica_cpu_us_per_call: each_before
            .iter()
            .zip(&each_after)
            .map(|(b, a)| per(a.saturating_sub(*b), share))
            .collect(),
        server_cpu_us_per_call: per(server_after.saturating_sub(server_before), calls),
        first_error: sample.first_error,
    })
}
