//! Crash consistency: the gateway killed with SIGKILL at pseudo-random points, several times on
//! the same data directory. After every crash the chain still verifies, and every call whose
//! successful answer the client saw has its request, its allow and its `ok` result in the log
//! ("a result reaches the client only after its `call.finished` event is durable").

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::harness::{custos_bin, eventually, http, issue_key, sample_server, Deployment, Served, POLICIES};
use serde_json::{json, Value};

/// Rounds per test, each a new gateway process on the same data directory.
const ROUNDS: u64 = 5;

/// A deterministic pseudo-random sequence (xorshift64), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Kills the whole process group led by `child` (the gateway and the upstreams it started), then
/// reaps the gateway.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let status = Command::new("kill").args(["-KILL", "--", &group]).status().unwrap();
    assert!(status.success(), "kill -KILL {group} failed");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the gateway was killed, not stopped: {status:?}");
}

/// A call the client saw answered with success: its run and JSON-RPC request id (its JSON text,
/// as the log records it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Seen {
    run: String,
    id: String,
}

/// Asserts the chain verifies and every call in `seen` has its three events, in its run: its
/// `call.requested` (found by request id), then the allowing `call.decided` and the `ok`
/// `call.finished` of the same step.
fn assert_all_recorded(d: &Deployment, seen: &[Seen]) {
    d.verify_ok();
    let events = d.events();
    let steps = |kind: &str, ok: &dyn Fn(&Value) -> bool| -> HashSet<(String, u64)> {
        events
            .iter()
            .filter(|e| e["kind"] == kind && ok(e))
            .map(|e| (e["run"].as_str().unwrap().to_owned(), e["step"].as_u64().unwrap()))
            .collect()
    };
    let allowed = steps("call.decided", &|e| e["decision"] == "allow");
    let finished = steps("call.finished", &|e| e["detail"]["outcome"] == "ok");
    for call in seen {
        let requested = events
            .iter()
            .find(|e| e["kind"] == "call.requested" && e["run"] == call.run && e["detail"]["request_id"] == call.id);
        let requested = requested.unwrap_or_else(|| panic!("no `call.requested` for {call:?}"));
        let step = (call.run.clone(), requested["step"].as_u64().unwrap());
        assert!(allowed.contains(&step), "no allowing `call.decided` for {call:?}");
        assert!(finished.contains(&step), "no `call.finished` (ok) for {call:?}");
    }
}

/// The client side of one `custos run` round: sends `echo` calls, keeping up to `window` of them
/// outstanding, and records each one answered with its own text. With `limit`, it sends exactly
/// that many and then goes idle; otherwise it sends until the gateway dies. Returns how many
/// calls were still unanswered when it died.
fn drive_stdio(
    run: &str,
    mut stdin: ChildStdin,
    stdout: ChildStdout,
    window: usize,
    limit: Option<usize>,
    seen: &Arc<Mutex<Vec<Seen>>>,
) -> usize {
    let mut lines = BufReader::new(stdout).lines();
    let call = |i: usize| {
        json!({"jsonrpc": "2.0", "id": format!("{run}-{i}"), "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": format!("{run} step {i}")}}})
        .to_string()
    };
    let (mut sent, mut outstanding) = (0usize, 0usize);
    loop {
        while outstanding < window && limit.is_none_or(|n| sent < n) {
            if writeln!(stdin, "{}", call(sent)).and_then(|()| stdin.flush()).is_err() {
                return outstanding; // the gateway is gone
            }
            sent += 1;
            outstanding += 1;
        }
        let Some(Ok(line)) = lines.next() else { return outstanding };
        let v: Value = serde_json::from_str(&line).unwrap();
        let Some(id) = v["id"].as_str().map(str::to_owned) else { continue };
        outstanding -= 1;
        let i = id.rsplit('-').next().unwrap();
        if v["result"]["content"][0]["text"] == format!("{run} step {i}") {
            seen.lock().unwrap().push(Seen { run: run.to_owned(), id: json!(id).to_string() });
        } else {
            eprintln!("{run}: not a success: {line}");
        }
    }
}

/// How many calls a round lets succeed before the kill, and whether it kills with calls in
/// flight (a busy pipeline: odd rounds) or with the client idle (even rounds).
fn plan(rng: &mut Rng, round: u64) -> (usize, bool) {
    (3 + rng.below(25) as usize, round & 1 == 1)
}

#[test]
fn custos_run_killed_at_random_points_loses_no_answered_call() {
    let d = Deployment::new(POLICIES, "");
    let mut rng = Rng(0x5eed_c0ff_ee15_900d);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut cut_short = 0;
    for round in 1..=ROUNDS {
        let run = format!("round-{round}");
        let (answered, in_flight) = plan(&mut rng, round);
        let mut child = Command::new(custos_bin())
            .args(["run", "--config"])
            .arg(d.config())
            .args(["--agent", "reader", "--run", &run, "--"])
            .arg(sample_server())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                          "capabilities": {}, "clientInfo": {"name": "crash", "version": "1"}}});
        writeln!(stdin, "{init}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"result\""), "initialize failed: {line}");
        writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
        // The listing tells the gateway that `echo` is a read tool, which readers may call.
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":"list","method":"tools/list"}}"#).unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"tools\""), "tools/list failed: {line}");

        let before = seen.lock().unwrap().len();
        let (window, limit) = if in_flight { (4, None) } else { (1, Some(answered)) };
        let client = {
            let (run, seen) = (run.clone(), Arc::clone(&seen));
            std::thread::spawn(move || drive_stdio(&run, stdin, stdout.into_inner(), window, limit, &seen))
        };
        eventually(&format!("{answered} answered calls in {run}"), || {
            (seen.lock().unwrap().len() - before >= answered).then_some(())
        });
        kill_group(&mut child);
        let unanswered = client.join().unwrap();
        if in_flight {
            cut_short += unanswered;
        } else {
            assert_eq!(unanswered, 0, "{run}: killed while idle");
        }
        let got = seen.lock().unwrap().len() - before;
        assert!(got >= answered, "{run}: {got} answered");
        if !in_flight {
            assert_eq!(got, answered, "{run}: the idle client sent exactly {answered}");
        }
        // Each restart must find a log it can append to and verify.
        d.verify_ok();
    }
    assert!(cut_short > 0, "some rounds were killed with calls in flight");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 5 * 3);
    assert_all_recorded(&d, &seen);
}

/// `custos serve --listen 127.0.0.1:0` in its own process group, so a kill reaches the
/// upstreams its sessions started.
fn serve_in_group(d: &Deployment) -> Served {
    let mut child = d
        .custos(&["serve", "--listen", "127.0.0.1:0"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_owned();
    Served { child, base, admin: None }
}

/// One POST over a fresh connection; `None` when the gateway is gone (refused, reset or cut
/// short), else the status and the (de-chunked) body.
fn try_post(url: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(common::harness::ANSWER_TIMEOUT)).ok()?;
    let mut req =
        format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, mut rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Some((status, rest.to_owned()));
    }
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some((status, body));
        }
        body.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}

#[test]
fn custos_serve_killed_between_and_during_calls_loses_no_answered_call() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let auth = format!("Bearer {key}");
    let mut rng = Rng(0x0dd_ba11_5eed_0042);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for round in 1..=ROUNDS {
        let (answered, _) = plan(&mut rng, round);
        let mut served = serve_in_group(&d);
        let url = served.url("sample");
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"crash","version":"1"}}}"#;
        let (status, headers, body) =
            http("POST", &url, &[("Authorization", &auth), ("Accept", "application/json")], init);
        assert_eq!(status, 200, "{body}");
        let session = common::harness::header(&headers, "mcp-session-id").unwrap().to_owned();
        let session_headers =
            [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(http("POST", &url, &session_headers, initialized).0, 202);
        let list = r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#;
        let (status, _, body) = http("POST", &url, &session_headers, list);
        assert!(status == 200 && body.contains("\"tools\""), "tools/list failed: {status} {body}");
        let before = seen.lock().unwrap().len();
        // The client calls one after another until the gateway dies under it: the kill lands
        // while a call is in flight.
        let client = {
            let (url, auth, session, seen) = (url.clone(), auth.clone(), session.clone(), Arc::clone(&seen));
            std::thread::spawn(move || {
                let headers = [
                    ("Authorization", auth.as_str()),
                    ("Mcp-Session-Id", session.as_str()),
                    ("Accept", "application/json"),
                ];
                for i in 0.. {
                    let id = format!("r{round}-{i}");
                    let text = format!("round {round} step {i}");
                    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                      "params": {"name": "echo", "arguments": {"text": text}}});
                    let Some((status, body)) = try_post(&url, &headers, &call.to_string()) else { return };
                    let Ok(v) = serde_json::from_str::<Value>(&body) else { return };
                    if status == 200 && v["result"]["content"][0]["text"] == text {
                        seen.lock().unwrap().push(Seen { run: session.clone(), id: json!(id).to_string() });
                    } else {
                        eprintln!("round {round}: not a success ({status}): {body}");
                    }
                }
            })
        };
        eventually(&format!("{answered} answered calls in round {round}"), || {
            (seen.lock().unwrap().len() - before >= answered).then_some(())
        });
        kill_group(&mut served.child);
        client.join().unwrap();
        d.verify_ok();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 5 * 3);
    assert_all_recorded(&d, &seen);
}
