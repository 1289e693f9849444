//! The end-to-end phases: the echo upstream called directly, through `custos serve` (Streamable
//! HTTP) and through `custos run` (stdio), each at several concurrencies, with the gateway's CPU
//! and memory read from `/proc`; and `custos serve` holding many sessions.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::task::JoinSet;

use crate::load::{self, HttpClient, HttpTarget, Phase, Sample, StdioPeer, Window};
use crate::procfs::{self, Memory};
use crate::report::{Latency, LoadResult};

/// The agent the benchmarks call as.
const AGENT: &str = "bench";

/// A deployment in a temporary folder: config, policies, data directory.
#[derive(Debug)]
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub custos: PathBuf,
}

impl Deployment {
    /// Writes a config with one agent (allowed every session: the benchmark is one agent with
    /// many connections) and the echo server at `upstream` (when there is one),
    /// governed by [`crate::micro::policy_set`] of 10 policies.
    pub fn new(custos: PathBuf, upstream: Option<SocketAddr>) -> Result<Self> {
        Self::with_settings(custos, upstream, "")
    }

    /// As [`Deployment::new`], with `settings` (TOML tables) appended to the config.
    pub fn with_settings(custos: PathBuf, upstream: Option<SocketAddr>, settings: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("custos-bench-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("policies"))?;
        std::fs::write(dir.path().join("policies/bench.cedar"), crate::micro::policy_set(10))?;
        let server = match upstream {
            Some(addr) => format!("url = \"http://{addr}/mcp\"\n"),
            None => String::new(),
        };
        let config = format!(
            "default_agent = \"{AGENT}\"\n\
             [policy]\nfiles = [\"policies/bench.cedar\"]\n\
             [serve]\nmax_sessions = 4096\nmax_sessions_per_agent = 4096\nmax_concurrent_per_agent = 1024\n\
             [[agents]]\nid = \"{AGENT}\"\nowner = \"bench@example.com\"\npurpose = \"benchmarks\"\ngroups = [\"bench\"]\n\
             [[servers]]\nname = \"echo\"\ntrust_annotations = true\n{server}{settings}"
        );
        std::fs::write(dir.path().join("custos.toml"), config)?;
        Ok(Self { dir, custos })
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("custos.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(".custos")
    }

    fn custos(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.custos);
        cmd.args(args).arg("--config").arg(self.config());
        cmd
    }

    /// Issues an API key for the bench agent.
    pub fn api_key(&self) -> Result<String> {
        let out = self.custos(&["agents", "add", AGENT]).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            bail!("custos agents add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// What it printed first: `listening on http://ADDR`.
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `cmd`, which prints `listening on http://ADDR` once bound, and reads the address.
    fn listening(mut cmd: Command) -> Result<Self> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("unexpected first line: {first:?}"))?;
        Ok(Self { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The echo upstream over Streamable HTTP.
pub fn echo_http(bench: &Path) -> Result<Process> {
    let mut cmd = Command::new(bench);
    cmd.args(["echo-http", "--listen", "127.0.0.1:0"]);
    Process::listening(cmd)
}

/// `custos serve` of `deployment` on a free loopback port.
pub fn serve(deployment: &Deployment) -> Result<Process> {
    Process::listening(deployment.custos(&["serve", "--listen", "127.0.0.1:0"]))
}

/// Runs `work` over a window starting now, and reads the CPU time of each of `pids` at the
/// window's measured edges.
async fn measured<F, Fut>(pids: Vec<u32>, phase: Phase, work: F) -> Result<(Sample, Vec<Option<Duration>>)>
where
    F: FnOnce(Window) -> Fut,
    Fut: std::future::Future<Output = Result<Sample>>,
{
    let window = phase.starting_now();
    let read = |pids: &[u32]| pids.iter().map(|&p| procfs::cpu_time(p).ok()).collect::<Vec<_>>();
    let watcher = tokio::spawn(async move {
        tokio::time::sleep_until(window.measure_from.into()).await;
        let before = read(&pids);
        tokio::time::sleep_until(window.end.into()).await;
        let after = read(&pids);
        before.into_iter().zip(after).map(|(b, a)| a?.checked_sub(b?)).collect::<Vec<_>>()
    });
    let sample = work(window).await?;
    let cpu = watcher.await?;
    Ok((sample, cpu))
}

fn per_call(cpu: Option<&Option<Duration>>, calls: u64) -> Option<f64> {
    let cpu = (*cpu?)?;
    (calls > 0).then(|| cpu.as_secs_f64() * 1e6 / calls as f64)
}

fn result(
    transport: &'static str,
    path: &'static str,
    connections: usize,
    mut sample: Sample,
    gateway: Option<f64>,
    upstream: Option<f64>,
) -> LoadResult {
    if let Some(e) = &sample.first_error {
        eprintln!("{transport} {path} x{connections}: {} calls failed; the first got: {e}", sample.errors);
    }
    LoadResult {
        transport,
        path,
        connections,
        calls: sample.calls,
        errors: sample.errors,
        calls_per_sec: sample.calls as f64 / sample.elapsed.as_secs_f64(),
        latency_us: Latency::of(&mut sample.latencies_us),
        gateway_cpu_us_per_call: gateway,
        upstream_cpu_us_per_call: upstream,
        first_error: sample.first_error,
    }
}

/// HTTP phases at each concurrency against `target`; `gateway` and `upstream` are the pids
/// whose CPU is counted.
pub async fn http_phases(
    target: &HttpTarget,
    path: &'static str,
    gateway: Option<u32>,
    upstream: u32,
    concurrency: &[usize],
    phase: Phase,
) -> Result<Vec<LoadResult>> {
    let mut out = Vec::new();
    for &connections in concurrency {
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(HttpClient::open(target).await.with_context(|| format!("opening a session on {path}"))?);
        }
        let pids: Vec<u32> = gateway.into_iter().chain([upstream]).collect();
        let (sample, cpu) = measured(pids, phase, |w| load::http_load(clients, w)).await?;
        let (g, u) = match gateway {
            Some(_) => (per_call(cpu.first(), sample.calls), per_call(cpu.get(1), sample.calls)),
            None => (None, per_call(cpu.first(), sample.calls)),
        };
        out.push(result("http", path, connections, sample, g, u));
    }
    Ok(out)
}

/// Stdio phases: `command` started once, each concurrency in turn on its one pipe.
pub async fn stdio_phases(
    command: tokio::process::Command,
    path: &'static str,
    concurrency: &[usize],
    phase: Phase,
) -> Result<Vec<LoadResult>> {
    let peer = Arc::new(StdioPeer::start(command).await?);
    let pid = peer.pid().ok_or_else(|| anyhow!("the stdio peer has no pid"))?;
    let gated = path != "direct";
    let mut out = Vec::new();
    for &clients in concurrency {
        let (sample, cpu) = measured(vec![pid], phase, |w| peer.load(clients, w)).await?;
        let cpu = per_call(cpu.first(), sample.calls);
        let (g, u) = if gated { (cpu, None) } else { (None, cpu) };
        out.push(result("stdio", path, clients, sample, g, u));
    }
    Arc::try_unwrap(peer).map_err(|_| anyhow!("the stdio peer is still in use"))?.finish().await?;
    Ok(out)
}

/// Opens `sessions` MCP sessions on `target` over `connections` connections and leaves them
/// open; returns the gateway's memory then.
pub async fn hold_sessions(target: &HttpTarget, pid: u32, sessions: usize, connections: usize) -> Result<Memory> {
    let mut tasks = JoinSet::new();
    for c in 0..connections {
        let target = target.clone();
        let share = sessions / connections + usize::from(c < sessions % connections);
        tasks.spawn(async move {
            let mut client = HttpClient::open(&target).await?;
            for _ in 1..share {
                client.new_session().await?;
            }
            anyhow::Ok(client)
        });
    }
    let mut clients = Vec::new();
    while let Some(done) = tasks.join_next().await {
        clients.push(done??);
    }
    let memory = procfs::memory(pid)?;
    drop(clients);
    Ok(memory)
}

/// `fdatasync` latency of a 4 KiB write in `dir`, in microseconds, `n` times.
pub fn disk_sync(dir: &Path, n: usize) -> Result<Latency> {
    use std::io::Write;
    let path = dir.join("sync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        file.write_all(&block)?;
        let start = Instant::now();
        file.sync_data()?;
        samples.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    drop(file);
    std::fs::remove_file(path)?;
    Ok(Latency::of(&mut samples))
}
