//! `custos scan`: tool descriptors, or tool results, checked against the detection rules
//! (`custos-detect`) without a gateway.
//!
//! Descriptors come from a saved `tools/list` result (a file or stdin), from a stdio server
//! started for the purpose (`-- CMD ARGS…`), or from the inventory of a deployment
//! (`--config`), where every configured server's tools are judged against the others' for
//! shadowing. `--output` scans saved tool results instead. The exit code says whether anything
//! reached `--fail-on`, so the command can gate a CI job or an onboarding script.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use custos_core::{Finding, Severity, ToolRef};
use custos_mcp::{Frame, FrameReader};
use custos_store::Store;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::cli::Location;
use crate::context;
use crate::Failure;

/// How long a live scan may take, from starting the server to its last `tools/list` page.
const LIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most `tools/list` pages a live scan follows: a server that keeps handing out cursors is
/// cut off rather than followed forever.
const MAX_PAGES: usize = 50;
/// The longest line a live server may send.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// How much of a live server's stderr is kept to explain its failure.
const STDERR_TAIL_BYTES: usize = 2048;
/// The protocol revision a live scan asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// A saved `tools/list` result: a JSON-RPC response, `{"tools": [...]}` or a bare array of
    /// tools (several JSON values in a row are pages); `-` reads stdin, as does no FILE when
    /// stdin is not a terminal
    #[arg(value_name = "FILE", conflicts_with = "command")]
    pub file: Option<PathBuf>,
    /// The server's name in findings [default: the file's stem, `stdin`, or for a command the
    /// name the server gives itself]
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// Scan every configured server's tools as last listed in this deployment's inventory; with
    /// a FILE or a command, the configured servers' tools are what shadowing looks for
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory holding the inventory [default: from the config]
    #[arg(long, value_name = "DIR", requires = "config")]
    pub data_dir: Option<PathBuf>,
    /// Scan tool results instead of descriptors: one result object, a JSON-RPC response, an
    /// array of results, or plain text; `-` reads stdin
    #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "command"])]
    pub output: Option<PathBuf>,
    /// One JSON object per line per tool (or result): {"server", "tool", "findings"}
    #[arg(long)]
    pub json: bool,
    /// Exit with 3 when a finding is at or above this severity: info, low, medium, high,
    /// critical, or never
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = parse_fail_on)]
    pub fail_on: FailOn,
    /// List the rules (id, kind of threat, what it applies to, severity, description) and exit
    #[arg(long)]
    pub rules: bool,
    /// The phrase rules alone: no learned classifier (rule `classifier`)
    #[arg(long)]
    pub rules_only: bool,
    /// A stdio MCP server to start, list the tools of, and stop
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--fail-on`: the lowest severity that fails the scan; `None` for `never`.
#[derive(Debug, Clone, Copy)]
pub struct FailOn(Option<Severity>);

fn parse_fail_on(s: &str) -> Result<FailOn, String> {
    if s == "never" {
        return Ok(FailOn(None));
    }
    Severity::parse(s)
        .map(|v| FailOn(Some(v)))
        .ok_or_else(|| format!("`{s}` is not a severity: expected info, low, medium, high, critical or never"))
}

/// The findings of one tool or one result.
#[derive(Debug)]
struct Scanned {
    server: String,
    /// The tool's name; `None` for a result.
    tool: Option<String>,
    /// The result's position in the input, for results.
    result: Option<usize>,
    findings: Vec<Finding>,
    /// The learned classifier's score; `None` with `--rules-only`.
    score: Option<f32>,
}

impl Scanned {
    fn label(&self) -> String {
        match (&self.tool, self.result) {
            (Some(tool), _) => format!("{}/{tool}", self.server),
            (None, Some(n)) => format!("{}/result[{n}]", self.server),
            (None, None) => self.server.clone(),
        }
    }

    fn highest(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    fn to_json(&self) -> Value {
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| json!({"kind": f.kind, "rule": f.rule, "severity": f.severity, "evidence": f.evidence}))
            .collect();
        let mut v = json!({"server": self.server, "tool": self.tool, "findings": findings});
        if let (Some(score), Some(map)) = (self.score, v.as_object_mut()) {
            map.insert("score".to_owned(), json!((f64::from(score) * 1000.0).round() / 1000.0));
        }
        if let (Some(n), Some(map)) = (self.result, v.as_object_mut()) {
            map.insert("result".to_owned(), json!(n));
        }
        v
    }
}

pub fn run(args: ScanArgs) -> Result<(), Failure> {
    if args.rules {
        print_rules();
        return Ok(());
    }
    let classifier = if args.rules_only {
        custos_detect::ClassifierSettings::off()
    } else {
        custos_detect::ClassifierSettings::default()
    };
    let scanned = match &args.output {
        Some(path) => scan_outputs(path, args.server.as_deref(), &classifier)?,
        None => scan_descriptors(&args, &classifier)?,
    };
    print(&scanned, args.json);
    verdict(&scanned, args.fail_on)
}

fn print_rules() {
    for target in [custos_detect::Target::Descriptor, custos_detect::Target::Result] {
        if let Some(model) = custos_detect::built_in_model(target) {
            let t = custos_detect::Thresholds::calibrated(target);
            let meta: Value = serde_json::from_str(model.metadata()).unwrap_or(Value::Null);
            println!(
                "classifier: {} model {}, thresholds medium {:.3} high {:.3}",
                target.as_str(),
                meta.get("version").and_then(Value::as_str).unwrap_or("?"),
                t.medium.unwrap_or_default(),
                t.high.unwrap_or_default()
            );
        }
    }
    let rules = custos_detect::rules();
    let id_width = rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    println!("{:<id_width$}  {:<12}  {:<10}  {:<8}  DESCRIPTION", "RULE", "FAMILY", "APPLIES-TO", "SEVERITY");
    for r in rules {
        println!(
            "{:<id_width$}  {:<12}  {:<10}  {:<8}  {}",
            r.id,
            r.family,
            r.applies_to,
            r.severity.as_str(),
            r.description
        );
    }
}

fn scan_descriptors(args: &ScanArgs, classifier: &custos_detect::ClassifierSettings) -> Result<Vec<Scanned>, Failure> {
    // With a listing of its own, the inventory is only context for shadowing.
    let context_only = args.file.is_some() || !args.command.is_empty();
    let inventory = match &args.config {
        Some(config) => Some(configured_tools(config, args.data_dir.as_deref(), context_only)?),
        None => None,
    };
    let listed = if !args.command.is_empty() {
        let (named, tools) = list_live(&args.command)?;
        // The name the server gives itself says more than `node` or `python3` would.
        let server = args
            .server
            .clone()
            .or(named)
            .unwrap_or_else(|| stem(Path::new(args.command.first().map_or("", String::as_str))));
        Some((server, tools))
    } else {
        match input(args.file.as_deref(), inventory.is_none())? {
            Some(input) => {
                let server = args.server.clone().unwrap_or_else(|| input.default_server());
                let tools = tools_of(&input)?;
                Some((server, tools))
            }
            None => None,
        }
    };
    let inventory = inventory.unwrap_or_default();
    match listed {
        // A listing of its own, with the configured servers' tools (if any) for shadowing.
        Some((server, tools)) => {
            let others: Vec<ToolRef> =
                inventory.iter().map(|(t, _)| t.clone()).filter(|t| t.server() != server).collect();
            Ok(tools
                .iter()
                .enumerate()
                .map(|(n, tool)| {
                    let (findings, score) = judged_descriptor(&server, tool, &others, classifier);
                    Scanned { server: server.clone(), tool: Some(tool_name(tool, n)), result: None, findings, score }
                })
                .collect())
        }
        // The deployment's inventory, each server against the others.
        None => {
            let all: Vec<ToolRef> = inventory.iter().map(|(t, _)| t.clone()).collect();
            Ok(inventory
                .iter()
                .map(|(tool, descriptor)| {
                    let (findings, score) = judged_descriptor(tool.server(), descriptor, &all, classifier);
                    Scanned {
                        server: tool.server().to_owned(),
                        tool: Some(tool.name().to_owned()),
                        result: None,
                        findings,
                        score,
                    }
                })
                .collect())
        }
    }
}

/// The rules' findings on one descriptor, and the classifier's finding and score when it is on.
fn judged_descriptor(
    server: &str,
    descriptor: &Value,
    others: &[ToolRef],
    classifier: &custos_detect::ClassifierSettings,
) -> (Vec<Finding>, Option<f32>) {
    let mut findings = custos_detect::scan_descriptor(server, descriptor, others);
    let score = classifier.enabled.then(|| {
        let judged = custos_detect::judge_descriptor(descriptor, &classifier.descriptors);
        findings.extend(judged.finding);
        judged.score
    });
    (findings, score)
}

/// The tools of every configured server, as last listed in the deployment's inventory. With
/// `context_only` (the inventory is only there for shadowing) a missing inventory is a note,
/// not an error.
fn configured_tools(
    config: &Path,
    data_dir: Option<&Path>,
    context_only: bool,
) -> Result<Vec<(ToolRef, Value)>, Failure> {
    let location = Location { config: Some(config.to_owned()), data_dir: data_dir.map(Path::to_owned) };
    let config = context::load_config(&location)?;
    let db = context::database(&config);
    if !db.exists() && context_only {
        eprintln!("custos: no inventory at `{db}` yet: shadowing is checked against no other server");
        return Ok(Vec::new());
    }
    if !db.exists() {
        return Err(Failure::usage(format!(
            "no inventory at `{db}`: no server's tools have been listed through the gateway there yet (check --data-dir or --config)"
        )));
    }
    let store = context::reader(&db)?;
    let records = store.tools().map_err(Failure::runtime)?;
    let configured: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    for server in configured.iter().filter(|_| !context_only) {
        if !records.iter().any(|r| r.tool.server() == *server) {
            eprintln!("custos: server `{server}` has no tools in the inventory yet: start it through the gateway once");
        }
    }
    Ok(records.into_iter().filter(|r| configured.contains(&r.tool.server())).map(|r| (r.tool, r.descriptor)).collect())
}

/// Where the input came from, and its text.
struct Input {
    /// `None` for stdin.
    path: Option<PathBuf>,
    text: String,
}

impl Input {
    fn name(&self) -> String {
        self.path.as_ref().map_or_else(|| "stdin".to_owned(), |p| p.display().to_string())
    }

    fn default_server(&self) -> String {
        self.path.as_deref().map_or_else(|| "stdin".to_owned(), stem)
    }
}

/// Reads FILE, or stdin for `-` (or for no FILE when `stdin_by_default` and stdin is not a
/// terminal). `None` when there is nothing to read.
fn input(file: Option<&Path>, stdin_by_default: bool) -> Result<Option<Input>, Failure> {
    match file {
        Some(p) if p.as_os_str() == "-" => read_stdin().map(Some),
        Some(p) => std::fs::read_to_string(p)
            .map(|text| Some(Input { path: Some(p.to_owned()), text }))
            .map_err(|e| Failure::usage(format!("cannot read `{}`: {e}", p.display()))),
        None if stdin_by_default && !std::io::stdin().is_terminal() => read_stdin().map(Some),
        None if stdin_by_default => Err(Failure::usage(
            "nothing to scan: give a FILE (`-` for stdin), --config for a deployment's inventory, --output for results, or `-- CMD` to start a server",
        )),
        None => Ok(None),
    }
}

fn read_stdin() -> Result<Input, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::usage(format!("cannot read stdin: {e}")))?;
    Ok(Input { path: None, text })
}

/// The file's stem (`tools` for `saved/tools.json`).
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(|| "stdin".to_owned(), |s| s.to_string_lossy().into_owned())
}

/// The JSON values in `input` (one, or several in a row), or a usage error naming the input
/// and the line and column.
fn json_values(input: &Input) -> Result<Vec<Value>, Failure> {
    serde_json::Deserializer::from_str(&input.text).into_iter::<Value>().collect::<Result<Vec<_>, _>>().map_err(|e| {
        let message = e.to_string();
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
        Failure::usage(format!(
            "`{}` is not valid JSON at line {}, column {}: {message}",
            input.name(),
            e.line(),
            e.column()
        ))
    })
}

/// The tools of a saved listing: every page's `tools`.
fn tools_of(input: &Input) -> Result<Vec<Value>, Failure> {
    let values = json_values(input)?;
    if values.is_empty() {
        return Err(Failure::usage(format!("`{}` is empty: expected a `tools/list` result", input.name())));
    }
    let mut tools = Vec::new();
    for value in values {
        tools.extend(page_tools(value).map_err(|why| Failure::usage(format!("`{}` {why}", input.name())))?);
    }
    Ok(tools)
}

/// The tools of one page: a JSON-RPC response, a result, or a bare array.
fn page_tools(value: Value) -> Result<Vec<Value>, String> {
    if let Some(error) = value.get("error") {
        return Err(format!("holds a JSON-RPC error, not tools: {error}"));
    }
    let value = match value {
        Value::Object(mut map) if map.contains_key("result") => map.remove("result").unwrap_or(Value::Null),
        other => other,
    };
    match value {
        Value::Array(tools) => Ok(tools),
        Value::Object(mut map) => match map.remove("tools") {
            Some(Value::Array(tools)) => Ok(tools),
            _ => Err("is not a `tools/list` result: expected `{\"tools\": [...]}`, a JSON-RPC response with one, or an array of tools".to_owned()),
        },
        _ => Err("is not a `tools/list` result: expected an object or an array".to_owned()),
    }
}

fn tool_name(tool: &Value, n: usize) -> String {
    tool.get("name").and_then(Value::as_str).map_or_else(|| format!("#{n}"), str::to_owned)
}

fn scan_outputs(
    path: &Path,
    server: Option<&str>,
    classifier: &custos_detect::ClassifierSettings,
) -> Result<Vec<Scanned>, Failure> {
    let input = input(Some(path), false)?.unwrap_or(Input { path: None, text: String::new() });
    let server = server.map_or_else(|| input.default_server(), str::to_owned);
    let trimmed = input.text.trim_start();
    // Text that starts like JSON was meant as JSON: a mistake in it is worth an error rather
    // than a scan of the broken text.
    let results: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut results = Vec::new();
        for value in json_values(&input)? {
            match value {
                Value::Array(items) => results.extend(items.into_iter().map(unwrap_response)),
                other => results.push(unwrap_response(other)),
            }
        }
        results
    } else {
        vec![Value::String(input.text.clone())]
    };
    Ok(results
        .iter()
        .enumerate()
        .map(|(n, result)| {
            let mut findings = custos_detect::scan_result(result);
            let score = classifier.enabled.then(|| {
                let judged = custos_detect::judge_result(result, &classifier.results);
                findings.extend(judged.finding);
                judged.score
            });
            Scanned { server: server.clone(), tool: None, result: Some(n), findings, score }
        })
        .collect())
}

/// A JSON-RPC response's `result` (its `error` as is: error text reaches the model too).
fn unwrap_response(value: Value) -> Value {
    match value {
        Value::Object(mut map) if map.contains_key("jsonrpc") => {
            map.remove("result").or_else(|| map.remove("error")).unwrap_or(Value::Object(map))
        }
        other => other,
    }
}

fn print(scanned: &[Scanned], as_json: bool) {
    if as_json {
        for s in scanned {
            println!("{}", s.to_json());
        }
        return;
    }
    let width = scanned.iter().map(|s| s.label().chars().count()).chain([11]).max().unwrap_or(11);
    println!("{:<width$}  {:<8}  {:<5}  RULES", "SERVER/TOOL", "SEVERITY", "SCORE");
    for s in scanned {
        let rules: Vec<&str> = s.findings.iter().map(|f| f.rule.as_str()).collect();
        let severity = s.highest().map_or("-", Severity::as_str);
        let rules = if rules.is_empty() { "-".to_owned() } else { rules.join(", ") };
        let score = s.score.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        println!("{:<width$}  {severity:<8}  {score:<5}  {rules}", s.label());
        for f in &s.findings {
            println!("    {:<8}  {}: {}", f.severity.as_str(), f.rule, f.evidence);
        }
    }
    let flagged = scanned.iter().filter(|s| !s.findings.is_empty()).count();
    let what = if scanned.iter().any(|s| s.tool.is_some()) { "tools" } else { "results" };
    eprintln!("custos: scanned {} {what}, {flagged} with findings", scanned.len());
}

/// Exit 3 when any finding reaches `--fail-on`.
fn verdict(scanned: &[Scanned], fail_on: FailOn) -> Result<(), Failure> {
    let Some(threshold) = fail_on.0 else { return Ok(()) };
    let failing = scanned.iter().flat_map(|s| &s.findings).filter(|f| f.severity >= threshold).count();
    if failing == 0 {
        return Ok(());
    }
    Err(Failure::check(format!("{failing} findings at or above `{threshold}` (see --fail-on)")))
}

/// Starts `command` as a stdio MCP server, lists its tools, and stops it. Returns the name the
/// server gave itself (`serverInfo.name`), if any, and its tools.
pub(crate) fn list_live(command: &[String]) -> Result<(Option<String>, Vec<Value>), Failure> {
    let shown = command.join(" ");
    let runtime = super::runtime()?;
    runtime.block_on(async {
        match tokio::time::timeout(LIVE_TIMEOUT, Live::list(command)).await {
            Ok(listed) => listed,
            Err(_) => Err(Failure::usage(format!(
                "`{shown}` did not list its tools within {} seconds",
                LIVE_TIMEOUT.as_secs()
            ))),
        }
    })
}

/// A server started for a live scan; killed when dropped.
struct Live {
    shown: String,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    frames: FrameReader<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    next_id: u64,
}

impl Live {
    async fn list(command: &[String]) -> Result<(Option<String>, Vec<Value>), Failure> {
        let mut live = Self::start(command)?;
        let listed = live.session().await;
        let listed = match listed {
            Ok(tools) => Ok(tools),
            Err(message) => Err(Failure::usage(live.explain(message).await)),
        };
        live.stop().await;
        listed
    }

    fn start(command: &[String]) -> Result<Self, Failure> {
        let shown = command.join(" ");
        let (program, args) = command.split_first().ok_or_else(|| Failure::usage("`--` needs a command"))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::usage(format!("cannot start `{shown}`: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Failure::runtime(format!("cannot talk to `{shown}`: its pipes were not set up")));
        };
        let stderr = tokio::spawn(stderr_tail(stderr));
        Ok(Self {
            shown,
            child,
            stdin,
            frames: FrameReader::new(BufReader::new(stdout), MAX_FRAME_BYTES),
            stderr,
            next_id: 0,
        })
    }

    /// The handshake and every `tools/list` page; errors as one-line reasons.
    async fn session(&mut self) -> Result<(Option<String>, Vec<Value>), String> {
        let initialized = self.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "custos-scan", "version": env!("CARGO_PKG_VERSION")}}),
        )
        .await?;
        let named = initialized.pointer("/serverInfo/name").and_then(Value::as_str).map(str::to_owned);
        let named = named.filter(|n| !n.trim().is_empty() && !n.chars().any(char::is_control));
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let page = self.request("tools/list", params).await?;
            match page.get("tools") {
                Some(Value::Array(listed)) => tools.extend(listed.iter().cloned()),
                _ => return Err("answered `tools/list` without a `tools` array".to_owned()),
            }
            match page.get("nextCursor") {
                Some(next) if !next.is_null() => cursor = Some(next.clone()),
                _ => return Ok((named, tools)),
            }
        }
        eprintln!(
            "custos: `{}` still had more tools after {MAX_PAGES} pages; scanning the first {MAX_PAGES}",
            self.shown
        );
        Ok((named, tools))
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.map_err(|e| format!("stopped reading its input: {e}"))?;
        self.stdin.flush().await.map_err(|e| format!("stopped reading its input: {e}"))
    }

    /// Sends a request and waits for its answer, turning down the server's own requests.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        loop {
            let line = match self.frames.next_frame().await {
                Ok(Some(Frame::Line(line))) => line,
                Ok(Some(Frame::Oversized { total, .. })) => {
                    return Err(format!("sent a {total}-byte line, over the limit of {MAX_FRAME_BYTES}"))
                }
                Ok(None) => return Err(format!("exited before answering `{method}`")),
                Err(e) => return Err(format!("cannot be read: {e}")),
            };
            let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                return Err(format!(
                    "wrote something that is not JSON-RPC: {}",
                    String::from_utf8_lossy(&line).chars().take(120).collect::<String>()
                ));
            };
            match (message.get("id"), message.get("method")) {
                (Some(got), None) if *got == id => {
                    if let Some(error) = message.get("error") {
                        let reason = error.get("message").and_then(Value::as_str).unwrap_or("no message");
                        return Err(format!("refused `{method}`: {reason}"));
                    }
                    return Ok(message.get("result").cloned().unwrap_or(Value::Null));
                }
                // The server asks something of us (roots, sampling): a scan offers nothing.
                (Some(their_id), Some(_)) => {
                    let refusal = json!({"jsonrpc": "2.0", "id": their_id, "error": {"code": -32601, "message": "custos scan answers no requests"}});
                    self.send(&refusal).await?;
                }
                // Notifications (logs, progress) and stray answers.
                _ => {}
            }
        }
    }

    /// `message` about the server, with the end of what it wrote to stderr.
    async fn explain(&mut self, message: String) -> String {
        let _ = self.child.start_kill();
        let tail = tokio::time::timeout(Duration::from_secs(2), &mut self.stderr).await.ok().and_then(Result::ok);
        let tail = tail.map(|t| t.trim().replace('\n', " | ")).filter(|t| !t.is_empty());
        match tail {
            Some(tail) => format!("`{}` {message} (its stderr: {tail})", self.shown),
            None => format!("`{}` {message}", self.shown),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stderr.abort();
    }
}

/// The last [`STDERR_TAIL_BYTES`] of what a server writes to stderr.
async fn stderr_tail(mut stderr: tokio::process::ChildStderr) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(buf.get(..n).unwrap_or_default());
                if kept.len() > STDERR_TAIL_BYTES {
                    kept.drain(..kept.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_in_three_shapes() {
        let tool = json!({"name": "t"});
        for page in
            [json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [tool]}}), json!({"tools": [tool]}), json!([tool])]
        {
            assert_eq!(page_tools(page).unwrap(), vec![tool.clone()]);
        }
        assert!(page_tools(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1}})).unwrap_err().contains("error"));
        assert!(page_tools(json!({"items": []})).is_err());
        assert!(page_tools(json!(3)).is_err());
    }

    #[test]
    fn json_errors_name_the_input_and_position() {
        let input = Input { path: Some(PathBuf::from("saved/tools.json")), text: "{\n  \"tools\": [,]\n}".to_owned() };
        let e = json_values(&input).unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(e.message.starts_with("`saved/tools.json` is not valid JSON at line 2, column 13: "), "{}", e.message);
        assert_eq!(input.default_server(), "tools");
    }

    #[test]
    fn fail_on_parses_severities_and_never() {
        assert!(matches!(parse_fail_on("medium"), Ok(FailOn(Some(Severity::Medium)))));
        assert!(matches!(parse_fail_on("never"), Ok(FailOn(None))));
        assert!(parse_fail_on("loud").unwrap_err().contains("`loud`"));
    }

    #[test]
    fn responses_are_unwrapped_to_results() {
        assert_eq!(
            unwrap_response(json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})),
            json!({"content": []})
        );
        assert_eq!(unwrap_response(json!({"content": []})), json!({"content": []}));
    }
}
