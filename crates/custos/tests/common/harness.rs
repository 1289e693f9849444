//! Test support for driving the real `custos` binary: a temporary deployment (config, policies,
//! data directory), the binaries built beside the test, and a raw line-based MCP session for the
//! inputs no SDK client would send.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The longest a test waits for one answer before it fails (a bound, not a synchronisation).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>/NAME`, built by `cargo build --workspace --bins` (`.ci/test` does it).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "`{}` is missing: run `cargo build --workspace --bins` first (or `.ci/test`)",
        path.display()
    );
    path
}

pub fn custos_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_custos"))
}

pub fn sample_server() -> PathBuf {
    bin("custos-sample-server")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

/// Policies used by most tests: readers call read tools; operators call anything but
/// `delete_everything`; `add` is forbidden when `a` is over 100.
pub const POLICIES: &str = r#"
@id("readers-read")
permit (principal in Custos::Group::"readers", action == Custos::Action::"call_tool", resource)
when { resource.class == "read" };

@id("operators-all")
permit (principal in Custos::Group::"operators", action == Custos::Action::"call_tool", resource);

@id("never-delete")
@reason("deleting everything is never allowed")
forbid (principal, action == Custos::Action::"call_tool", resource == Custos::Tool::"sample/delete_everything");
"#;

/// A deployment in a temporary folder.
pub struct Deployment {
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// A config with agents `reader` (group readers) and `operator` (group operators) and one
    /// server `sample` whose annotations are trusted. `extra` is appended to the config.
    pub fn new(policies: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/test.cedar"), policies).unwrap();
        let config = format!(
            r#"
default_agent = "reader"
[policy]
files = ["policies/test.cedar"]
{extra}
[[agents]]
id = "reader"
owner = "alice@example.com"
purpose = "reads"
groups = ["readers"]
[[agents]]
id = "operator"
owner = "bob@example.com"
purpose = "operates"
groups = ["operators"]
[[servers]]
name = "sample"
trust_annotations = true
"#
        );
        std::fs::write(dir.path().join("custos.toml"), config).unwrap();
        Self { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("custos.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join(".custos/custos.db")
    }

    /// `custos ARGS…` with `--config` of this deployment appended where the command takes it.
    pub fn custos(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(custos_bin());
        cmd.args(args).arg("--config").arg(self.config());
        cmd
    }

    /// Runs a `custos` command to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.custos(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `custos run --config … ARGS… -- sample-server` as a tokio command (for SDK clients).
    pub fn run_sample_tokio(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(custos_bin());
        cmd.arg("run").arg("--config").arg(self.config()).args(args).arg("--").arg(sample_server());
        cmd.stderr(Stdio::inherit());
        cmd
    }

    /// Every event in the log, as `audit query --json` prints them.
    pub fn events(&self) -> Vec<Value> {
        let out = self.output(&["audit", "query", "--json"]);
        assert!(out.status.success(), "audit query failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Asserts `audit verify` passes and returns its event count.
    pub fn verify_ok(&self) -> u64 {
        let out = self.output(&["audit", "verify", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success() && report["ok"] == true, "verify failed: {report}");
        report["count"].as_u64().unwrap()
    }
}

/// Events of one kind.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// A `custos run` process driven line by line.
pub struct RawSession {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl RawSession {
    pub fn start(deployment: &Deployment, args: &[&str], upstream: &[&str]) -> Self {
        let mut cmd = Command::new(custos_bin());
        cmd.arg("run").arg("--config").arg(deployment.config()).args(args).arg("--").args(upstream);
        Self::spawn(cmd)
    }

    pub fn sample(deployment: &Deployment, args: &[&str]) -> Self {
        let server = sample_server();
        Self::start(deployment, args, &[server.to_str().unwrap()])
    }

    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[custos stderr] {line}");
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { stdin: child.stdin.take(), child, lines, stderr: stderr_rx }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send_json(&mut self, v: &Value) {
        self.send(&v.to_string());
    }

    /// The next line custos writes, raw.
    pub fn recv_line(&mut self) -> String {
        self.lines.recv_timeout(ANSWER_TIMEOUT).expect("no answer from custos in time")
    }

    pub fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_line()).unwrap()
    }

    /// Reads until the answer to `id` (by its JSON text) arrives; returns it and what came before.
    pub fn recv_answer(&mut self, id: &Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let v = self.recv();
            if &v["id"] == id && v.get("method").is_none() {
                return (v, before);
            }
            before.push(v);
        }
    }

    /// A request and its answer.
    pub fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send_json(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.recv_answer(&id).0
    }

    /// The session-based handshake (2025-06-18).
    pub fn initialize(&mut self) -> Value {
        let v = self.request(
            serde_json::json!(0),
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}),
        );
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        v
    }

    /// Closes stdin and waits for the process; returns its status and the rest of stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        self.wait()
    }

    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        // The reader thread may still be flushing its last lines.
        let mut rest = stderr;
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        (status, rest.join("\n"))
    }

    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }
}

/// The official `@modelcontextprotocol/server-everything` entry point, installed by
/// `.ci/setup-peers` under `tests/peers/node_modules`.
pub fn server_everything() -> String {
    let path = repo_root().join("tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(path.exists(), "`{}` is missing: run `.ci/setup-peers` (or `.ci/test`)", path.display());
    path.to_string_lossy().into_owned()
}

/// The Python interpreter of the venv with the official `mcp` SDK, from `.ci/setup-peers`.
pub fn peers_python() -> PathBuf {
    let path = repo_root().join(".venv-peers/bin/python");
    assert!(path.exists(), "`{}` is missing: run `.ci/setup-peers` (or `.ci/test`)", path.display());
    path
}
