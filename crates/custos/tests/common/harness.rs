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

/// An `initialize` request as a raw HTTP client sends it, for tests that speak to `custos serve`
/// without an SDK.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

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

/// Operators may call every tool; privileged ones need a yes from the approver group `ops`.
pub const HELD_PRIVILEGED_POLICIES: &str = r#"
@id("operators-call")
permit (principal in Custos::Group::"operators", action == Custos::Action::"call_tool", resource);

@id("privileged-needs-ops")
@approval("ops")
@reason("privileged tools need a human")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { resource.class == "privileged" }
unless { context.approval.granted };
"#;

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

    /// [`Deployment::new`] with [`POLICIES`], whose `sample` server has its command, so
    /// `custos serve` serves it.
    pub fn serving_sample(extra: &str) -> Self {
        Self::serving(POLICIES, extra, &[sample_server().to_str().unwrap()])
    }

    /// [`Deployment::new`] whose `sample` server is started with `command`, so `custos serve`
    /// serves it.
    pub fn serving(policies: &str, extra: &str, command: &[&str]) -> Self {
        let d = Self::new(policies, extra);
        let text = std::fs::read_to_string(d.config())
            .unwrap()
            .replace("name = \"sample\"\n", &format!("name = \"sample\"\ncommand = {command:?}\n"));
        std::fs::write(d.config(), text).unwrap();
        d
    }

    /// Writes the shipped Cedar schema with `arguments` (schema lines such as `a?: Long,`) added
    /// to the declared tool arguments, as `schema.cedarschema`; name it with `schema =
    /// "schema.cedarschema"` in the `[policy]` part of the config.
    pub fn write_schema(&self, arguments: &str) {
        let shipped =
            std::fs::read_to_string(repo_root().join("crates/custos-policy/schema/custos.cedarschema")).unwrap();
        let schema = shipped.replace("    query?: String,\n", &format!("    query?: String,\n    {arguments}\n"));
        assert_ne!(schema, shipped, "the shipped schema changed shape");
        std::fs::write(self.dir.path().join("schema.cedarschema"), schema).unwrap();
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

/// `VmRSS` and `VmHWM` of process `pid`, in kB.
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
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
        self.initialize_with(serde_json::json!({}))
    }

    /// The handshake, declaring `capabilities` (e.g. `{"sampling": {}}`).
    pub fn initialize_with(&mut self, capabilities: Value) -> Value {
        let v = self.request(
            serde_json::json!(0),
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": capabilities, "clientInfo": {"name": "raw", "version": "1"}}),
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

/// A running `custos serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The admin API's base URL, when `[admin]` is configured.
    pub admin: Option<String>,
}

impl Served {
    /// Starts `custos serve --listen 127.0.0.1:0` and reads the address it bound.
    pub fn start(deployment: &Deployment) -> Self {
        let mut child = deployment
            .custos(&["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let base =
            first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_owned();
        let admin = std::fs::read_to_string(deployment.config()).unwrap().contains("[admin]").then(|| {
            let mut second = String::new();
            stdout.read_line(&mut second).unwrap();
            second.trim().strip_prefix("admin on ").unwrap_or_else(|| panic!("unexpected: {second}")).to_owned()
        });
        Self { child, base, admin }
    }

    pub fn url(&self, server: &str) -> String {
        format!("{}/mcp/{server}", self.base)
    }

    /// Stops the gateway with SIGTERM and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, lower-cased headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// One HTTP/1.1 exchange over a fresh connection: status, lower-cased headers, body.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    try_http(method, url, headers, body).unwrap()
}

/// [`http`], with a connection that fails (the server is gone) or ends without an answer as an
/// error rather than a panic.
pub fn try_http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Answer> {
    use std::io::Read;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP answer"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    let body = if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, headers, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `initialize` and `notifications/initialized` over raw HTTP to `url` as the agent of API key
/// `key`: the new session's id.
pub fn open_session(url: &str, key: &str) -> String {
    let auth = format!("Bearer {key}");
    let (status, headers, body) = http("POST", url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    assert_eq!(status, 200, "{body}");
    let id = header(&headers, "mcp-session-id").unwrap().to_owned();
    let (status, _, body) = post_in(url, key, &id, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(status, 202, "{body}");
    id
}

/// One message in session `id` at `url` as the agent of API key `key`: status, headers, body.
pub fn post_in(url: &str, key: &str, id: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let auth = format!("Bearer {key}");
    http("POST", url, &[("Authorization", &auth), ("Mcp-Session-Id", id), ("Accept", "application/json")], body)
}

/// Issues an API key for `agent` with `custos agents add`.
pub fn issue_key(deployment: &Deployment, agent: &str) -> String {
    let out = deployment.output(&["agents", "add", agent]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The Python SDK's Streamable HTTP client against `url` with `args`; its JSON report.
pub fn python_http(url: &str, key: &str, args: &[&str]) -> Value {
    let out = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/mcp_http_client.py"))
        .arg(url)
        .args(["--bearer", key])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A POST whose answer is an open SSE stream, read one event at a time.
pub struct SseStream {
    reader: BufReader<std::net::TcpStream>,
    /// Decoded body bytes not yet split into events.
    pending: String,
}

impl SseStream {
    /// POSTs `body` and expects a 200 SSE answer.
    pub fn open(url: &str, headers: &[(&str, &str)], body: &str) -> Self {
        match Self::try_open(url, headers, body) {
            Ok(stream) => stream,
            Err((status, text)) => panic!("expected an event stream, got {status}: {text}"),
        }
    }

    /// Like [`SseStream::open`], retried while the answer is 429 (a slot freed by another
    /// connection's end is freed asynchronously); bounded by [`ANSWER_TIMEOUT`].
    pub fn open_when(url: &str, headers: &[(&str, &str)], body: &str) -> Self {
        let deadline = std::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match Self::try_open(url, headers, body) {
                Ok(stream) => return stream,
                Err((429, _)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((status, text)) => panic!("expected an event stream, got {status}: {text}"),
            }
        }
    }

    /// A session's GET stream.
    pub fn get(url: &str, headers: &[(&str, &str)]) -> Self {
        match Self::request("GET", url, headers, "") {
            Ok(stream) => stream,
            Err((status, text)) => panic!("expected an event stream, got {status}: {text}"),
        }
    }

    fn try_open(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Self, (u16, String)> {
        Self::request("POST", url, headers, body)
    }

    fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Self, (u16, String)> {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut chunked = false;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            chunked |= lower == "transfer-encoding: chunked";
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap();
            }
        }
        if status != 200 || !chunked {
            let mut body = vec![0u8; length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        Ok(Self { reader, pending: String::new() })
    }

    /// The next event if one comes within `wait`, else `None` (the stream stays usable: chunks
    /// arrive whole, so a timeout falls between them).
    pub fn next_event_within(&mut self, wait: Duration) -> Option<Value> {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.next_event()));
        self.reader.get_ref().set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        got.ok()
    }

    /// The next `data:` event, as JSON (keep-alive comments are skipped).
    pub fn next_event(&mut self) -> Value {
        loop {
            if let Some((event, rest)) = self.pending.split_once("\n\n") {
                let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                self.pending = rest.to_owned();
                if !data.is_empty() {
                    return serde_json::from_str(&data).unwrap();
                }
                continue;
            }
            // One chunk of the chunked body.
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            assert!(n > 0, "the stream ended before the next event");
            let mut chunk = vec![0u8; n + 2];
            std::io::Read::read_exact(&mut self.reader, &mut chunk).unwrap();
            self.pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

/// A Python test peer from `tests/peers` that prints its port on stdout once it serves; killed
/// when dropped.
pub struct Peer {
    pub child: Child,
    pub port: u16,
}

impl Peer {
    pub fn start(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new(peers_python())
            .arg(repo_root().join("tests/peers").join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("{script} did not start: {line:?}"));
        Self { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Repeats `attempt` until it returns `Some`, for at most `ANSWER_TIMEOUT`: a bound on how long
/// a condition may take to become true, not a fixed wait.
pub fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        if let Some(done) = attempt() {
            return done;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
