//! Flood: `custos serve` under slow (slowloris), oversized and very many concurrent requests,
//! with small limits so that every one of them is reached in a few seconds. Throughout, a
//! well-behaved agent keeps calling a tool on its session, and every call must be answered
//! within a bound; the gateway's memory must stay bounded, and afterwards it must still serve,
//! its log verify, and its metrics show what it cut off.
//!
//! Nothing here waits by sleeping: each step waits for an event (an answer, an end of stream)
//! under a deadline. The only sleeps pace the attackers and the agent, as real ones would be.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::harness::{eventually, header, http, issue_key, memory_kb, of_kind, Deployment, Served, INIT};
use serde_json::{json, Value};

const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const BODY_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How much later than a timeout the gateway may act: a loaded two-core machine schedules late.
const SLACK: Duration = Duration::from_secs(3);
/// The longest one call of the well-behaved agent may take, retries included: its connection may
/// be refused while the flood holds every slot, for at most about a header timeout.
const CALL_BOUND: Duration = Duration::from_secs(5);
/// The highest the gateway's resident memory may reach (VmHWM). A debug build holds about 66 MB
/// before the flood (two sessions, Cedar, SQLite) and the flood adds 2 to 3 MB; the rest is
/// margin for allocators, release builds and busier machines.
const PEAK_RSS_LIMIT_KB: u64 = 128 * 1024;
/// How much the flood may add to resident memory. The limits allow at most 64 connections, each
/// with hyper's read buffer and a body of at most 64 KiB (a few MB in practice, about 30 MB if
/// every buffer grew to hyper's maximum); a gateway that buffered what it is sent (1 GiB
/// declared, 256 MiB streamed) or kept what it refused would blow through it.
const FLOOD_GROWTH_LIMIT_KB: u64 = 32 * 1024;
const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

const SLOWLORIS: usize = 40;
const SILENT: usize = 8;
const DRIBBLERS: usize = 4;
const SLOW_BODIES: usize = 8;
const DECLARED_TOO_LARGE: usize = 8;
const CHUNKED_TOO_LARGE: usize = 4;
const CONCURRENT_ROUNDS: usize = 5;
const CONCURRENT_PER_ROUND: usize = 3 * MAX_CONNECTIONS;

fn config() -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
         [serve]\nmax_connections = {MAX_CONNECTIONS}\nheader_timeout_ms = {}\nbody_timeout_ms = {}\n\
         max_concurrent_per_agent = 256\n\
         [limits]\nmax_message_bytes = {MAX_MESSAGE_BYTES}\n",
        HEADER_TIMEOUT.as_millis(),
        BODY_TIMEOUT.as_millis()
    )
}

/// Where the gateway serves `sample`: `127.0.0.1:PORT` and `/mcp/sample`.
#[derive(Clone)]
struct Target {
    host: String,
    path: String,
}

impl Target {
    fn new(url: &str) -> Self {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        Self { host: host.to_owned(), path: format!("/{path}") }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.host).unwrap();
        stream.set_read_timeout(Some(SLACK + BODY_TIMEOUT + HEADER_TIMEOUT)).unwrap();
        stream
    }

    /// A POST head for one JSON-RPC message on `session`.
    fn post_head(&self, key: &str, session: &str, length: &str, keep_alive: bool) -> String {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nMcp-Session-Id: {session}\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\nConnection: {connection}\r\n{length}\r\n",
            self.path, self.host
        )
    }
}

/// An HTTP answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(header(&self.headers, "content-type"), Some("application/json"), "{self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {self:?}"))
    }
}

/// Reads one answer (status line, headers, body by length or chunks, else to the end).
fn read_answer(reader: &mut impl BufRead) -> std::io::Result<Answer> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut body = Vec::new();
    if let Some(length) = header(&headers, "content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body)?;
    } else if header(&headers, "transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Reads (and drops) until the gateway ends the connection: how long that took, or why it did
/// not end in time.
fn wait_closed(stream: &mut TcpStream, started: Instant) -> Result<Duration, String> {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(started.elapsed()),
            Err(e) => return Err(format!("still open after {:?}: {e}", started.elapsed())),
        }
    }
}

/// One call of the well-behaved agent, as it saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    done: Instant,
    took: Duration,
    /// Connections refused (503) or found closed before the call got through.
    retries: u32,
}

/// The well-behaved agent: `tools/call echo` on its own session, one call every 20 ms, on a
/// kept-alive connection that it replaces every tenth call (as a client's pool does), and
/// again whenever the gateway closed it or refused it. Every call must succeed within
/// [`CALL_BOUND`].
struct WellBehaved {
    target: Target,
    key: String,
    session: String,
    connection: Option<BufReader<TcpStream>>,
}

impl WellBehaved {
    fn run(mut self, stop: &AtomicBool, calls: &Mutex<Vec<Call>>) {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let call = self.call(n);
            calls.lock().unwrap().push(call);
            if n.is_multiple_of(10) {
                self.connection = None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn call(&mut self, n: u64) -> Call {
        let started = Instant::now();
        let mut retries = 0;
        for attempt in 0u64.. {
            assert!(
                started.elapsed() < CALL_BOUND,
                "call {n} was not served within {CALL_BOUND:?} ({retries} retries)"
            );
            // A fresh id per attempt: a request id sent twice on a session is a replay.
            let id = n * 1000 + attempt;
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": format!("call {n}")}}})
            .to_string();
            let connection = self.connection.get_or_insert_with(|| BufReader::new(self.target.connect()));
            let head =
                self.target.post_head(&self.key, &self.session, &format!("Content-Length: {}\r\n", body.len()), true);
            let sent = connection.get_mut().write_all(format!("{head}{body}").as_bytes());
            let answer = sent.and_then(|()| read_answer(connection));
            match answer {
                Ok(a) if a.status == 200 => {
                    let v = a.json();
                    assert_eq!(v["result"]["content"][0]["text"], format!("call {n}"), "{v}");
                    if header(&a.headers, "connection") == Some("close") {
                        self.connection = None;
                    }
                    return Call { done: Instant::now(), took: started.elapsed(), retries };
                }
                Ok(a) if a.status == 503 => {
                    assert!(a.json()["error"]["message"].as_str().unwrap().contains("too many open connections"));
                    retries += 1;
                    self.connection = None;
                    // Backing off, as `Retry-After` asks (a client would wait longer).
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(a) => panic!("call {n}: unexpected answer {a:?}"),
                // Closed while idle (the header timeout) or reset: a new connection.
                Err(_) => {
                    retries += 1;
                    self.connection = None;
                }
            }
        }
        unreachable!()
    }
}

/// The value of the sample `line` (name and labels) in the Prometheus text `metrics`.
fn metric(metrics: &str, line: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no `{line}` in:\n{metrics}"))
}

/// Opens a session with raw HTTP and lists its tools (so the gateway knows `echo` reads);
/// returns its id.
fn open_session(url: &str, key: &str) -> String {
    let auth = format!("Bearer {key}");
    let (status, headers, body) = http("POST", url, &[("Authorization", &auth), ("Accept", "application/json")], INIT);
    assert_eq!(status, 200, "{body}");
    let session = header(&headers, "mcp-session-id").unwrap().to_owned();
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(http("POST", url, &headers, initialized).0, 202);
    let (status, _, body) = http("POST", url, &headers, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert!(status == 200 && body.contains("echo"), "{status}: {body}");
    session
}

/// Connections that start a request head and never finish it, that send nothing, and that send
/// their head a byte at a time (which must not buy time): each is closed at the header timeout.
fn slowloris(target: &Target) -> usize {
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..SLOWLORIS + SILENT).map(|_| target.connect()).collect();
    for stream in &mut stalled[..SLOWLORIS] {
        stream
            .write_all(format!("POST {} HTTP/1.1\r\nHost: {}\r\nX-Slow: ", target.path, target.host).as_bytes())
            .unwrap();
    }
    let dribblers: Vec<_> = (0..DRIBBLERS)
        .map(|_| {
            let mut stream = target.connect();
            let mut reader = stream.try_clone().unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let writing = done.clone();
            let writer = std::thread::spawn(move || {
                let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Dribble: {}", "a".repeat(10_000));
                for byte in head.as_bytes() {
                    if writing.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            let closed = std::thread::spawn(move || {
                let closed = wait_closed(&mut reader, started);
                done.store(true, Ordering::Relaxed);
                closed
            });
            (writer, closed)
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for (i, stream) in stalled.iter_mut().enumerate() {
        let took = wait_closed(stream, started).unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
        assert!(
            took >= HEADER_TIMEOUT.mul_f32(0.8),
            "stalled connection {i} closed after {took:?}: before the timeout?"
        );
        slowest = slowest.max(took);
    }
    for (i, (writer, closed)) in dribblers.into_iter().enumerate() {
        let took = closed.join().unwrap().unwrap_or_else(|e| panic!("dribbler {i}: {e}"));
        writer.join().unwrap();
        slowest = slowest.max(took);
    }
    assert!(slowest <= HEADER_TIMEOUT + SLACK, "a slow head was closed only after {slowest:?}");
    eprintln!("slowloris: {} connections closed, the last after {slowest:?}", SLOWLORIS + SILENT + DRIBBLERS);
    SLOWLORIS + SILENT + DRIBBLERS
}

/// Requests whose head is whole and whose body stalls: each gets 408 (JSON-RPC) and is closed.
fn slow_bodies(target: &Target, key: &str, session: &str) {
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..SLOW_BODIES)
        .map(|_| {
            let mut stream = target.connect();
            let head = target.post_head(key, session, "Content-Length: 1000\r\n", true);
            stream.write_all(format!("{head}{{\"jsonrpc\":").as_bytes()).unwrap();
            stream
        })
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let answer = read_answer(&mut reader).unwrap_or_else(|e| panic!("slow body {i}: no answer: {e}"));
        let took = started.elapsed();
        assert_eq!(answer.status, 408, "{answer:?}");
        assert!((BODY_TIMEOUT.mul_f32(0.8)..BODY_TIMEOUT + SLACK).contains(&took), "slow body {i}: 408 after {took:?}");
        let error = &answer.json()["error"];
        assert_eq!(error["code"], -32600);
        assert_eq!(error["message"], format!("message body not received within {} ms", BODY_TIMEOUT.as_millis()));
        assert_eq!(header(&answer.headers, "connection"), Some("close"));
        wait_closed(stream, started).unwrap_or_else(|e| panic!("slow body {i}: {e}"));
    }
    eprintln!("slow bodies: {SLOW_BODIES} answered 408 after {:?}", started.elapsed());
}

/// Bodies over `max_message_bytes`: declared (1 GiB, of which 1 KiB is sent), chunked without a
/// length (twice the limit, never ended), and one streamed without end. Each is refused with
/// 413 at once, long before the client could have sent it all.
fn oversized(target: &Target, key: &str, session: &str) {
    let started = Instant::now();
    let declared: Vec<TcpStream> = (0..DECLARED_TOO_LARGE)
        .map(|_| {
            let mut stream = target.connect();
            let head = target.post_head(key, session, "Content-Length: 1073741824\r\n", true);
            stream.write_all(format!("{head}{}", "x".repeat(1024)).as_bytes()).unwrap();
            stream
        })
        .collect();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "y".repeat(8192));
    let chunked: Vec<TcpStream> = (0..CHUNKED_TOO_LARGE)
        .map(|_| {
            let mut stream = target.connect();
            let head = target.post_head(key, session, "Transfer-Encoding: chunked\r\n", true);
            stream.write_all(head.as_bytes()).unwrap();
            for _ in 0..2 * MAX_MESSAGE_BYTES / 8192 {
                // The gateway may already have refused it and stopped reading.
                if stream.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
            stream
        })
        .collect();
    for (i, stream) in declared.into_iter().chain(chunked).enumerate() {
        let answer = read_answer(&mut BufReader::new(stream)).unwrap_or_else(|e| panic!("oversized {i}: {e}"));
        assert_eq!(answer.status, 413, "{answer:?}");
        assert_eq!(
            answer.json()["error"]["message"],
            format!("message exceeds the limit of {MAX_MESSAGE_BYTES} bytes")
        );
    }
    let refused = started.elapsed();
    assert!(refused < SLACK, "oversized bodies were refused only after {refused:?}");

    // Streamed until the gateway stops it: it reads past the limit no further than the socket
    // buffers hold, so the writer fails long before its 256 MiB are out.
    let mut stream = target.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = target.post_head(key, session, "Transfer-Encoding: chunked\r\n", true);
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        let chunk = format!("{:x}\r\n{}\r\n", 65536, "z".repeat(65536));
        if stream.write_all(head.as_bytes()).is_ok() {
            while sent < 256 << 20 && stream.write_all(chunk.as_bytes()).is_ok() {
                sent += 65536;
            }
        }
        sent
    });
    // The 413, unless the reset of a socket closed with unread input overtook it.
    match read_answer(&mut reader) {
        Ok(answer) => assert_eq!(answer.status, 413, "{answer:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let sent = writer.join().unwrap();
    assert!(sent < 64 << 20, "the gateway kept reading an oversized body: {sent} bytes sent");
    eprintln!(
        "oversized: {} refused with 413 in {refused:?}; a streamed body was cut off after {} KiB",
        DECLARED_TOO_LARGE + CHUNKED_TOO_LARGE,
        sent >> 10
    );
}

/// Rounds of three times `max_connections` connections opened at once, each then sending a
/// `ping` on a session: every one is answered, 200 or 503 (JSON-RPC, `Connection: close`); none
/// hangs. At least [`CONCURRENT_ROUNDS`], and on until the agent has had three calls answered
/// meanwhile (`agent_calls` counts them).
fn concurrent(target: &Target, key: &str, session: &str, agent_calls: &dyn Fn() -> usize) -> (usize, usize, usize) {
    let (mut served, mut refused, mut closed) = (0, 0, 0);
    let calls_before = agent_calls();
    let mut rounds = 0;
    while rounds < CONCURRENT_ROUNDS || agent_calls() < calls_before + 3 {
        let round = rounds;
        rounds += 1;
        assert!(rounds <= 10 * CONCURRENT_ROUNDS, "the agent got no answer in {round} rounds");
        let started = Instant::now();
        let streams: Vec<TcpStream> = (0..CONCURRENT_PER_ROUND).map(|_| target.connect()).collect();
        let mut readers = Vec::new();
        for (i, mut stream) in streams.into_iter().enumerate() {
            let body = json!({"jsonrpc": "2.0", "id": round * 10_000 + i, "method": "ping"}).to_string();
            let head = target.post_head(key, session, &format!("Content-Length: {}\r\n", body.len()), false);
            let sent = stream.write_all(format!("{head}{body}").as_bytes());
            readers.push((sent, stream));
        }
        // A connection accepted but given its request only after the header timeout is closed,
        // rightly: only a machine too loaded to send 192 requests in time does that.
        let sent_in_time = started.elapsed() < HEADER_TIMEOUT.mul_f32(0.8);
        let closed_before = closed;
        for (i, (sent, stream)) in readers.into_iter().enumerate() {
            match read_answer(&mut BufReader::new(stream)) {
                Ok(a) if a.status == 200 => {
                    assert_eq!(a.json()["id"], round * 10_000 + i, "{a:?}");
                    served += 1;
                }
                Ok(a) if a.status == 503 => {
                    assert_eq!(header(&a.headers, "connection"), Some("close"), "{a:?}");
                    let v = a.json();
                    assert_eq!(v["error"]["code"], -32600, "{v}");
                    assert_eq!(
                        v["error"]["message"],
                        format!("too many open connections (limit {MAX_CONNECTIONS}); retry later")
                    );
                    refused += 1;
                }
                Ok(a) => panic!("round {round}, connection {i}: unexpected {a:?}"),
                Err(e)
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        || e.kind() == std::io::ErrorKind::ConnectionReset
                        || sent.is_err() =>
                {
                    closed += 1;
                }
                Err(e) => panic!("round {round}, connection {i}: no answer within the deadline: {e}"),
            }
        }
        assert!(started.elapsed() < SLACK, "round {round} took {:?}", started.elapsed());
        // Every refusal lingers long enough to be read: none is cut to a bare close here.
        assert!(
            !sent_in_time || closed == closed_before,
            "round {round}: {} connections closed unanswered",
            closed - closed_before
        );
    }
    assert!(served > 0 && refused > 0, "served {served}, refused {refused}, closed {closed}");
    eprintln!(
        "concurrent: {} connections in {rounds} rounds: {served} served, {refused} refused (503), {closed} closed",
        rounds * CONCURRENT_PER_ROUND
    );
    (served, refused, closed)
}

#[test]
fn a_flood_is_cut_off_memory_stays_bounded_and_agents_are_still_served() {
    let d = Deployment::serving_sample(&config());
    std::fs::write(d.dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let agent_key = issue_key(&d, "reader");
    let flood_key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let pid = served.child.id();
    let url = served.url("sample");
    let target = Target::new(&url);
    let admin = served.admin.clone().unwrap();
    let metrics = || {
        let (status, _, body) =
            http("GET", &format!("{admin}/metrics"), &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))], "");
        assert_eq!(status, 200);
        body
    };

    let agent = WellBehaved {
        target: target.clone(),
        key: agent_key.clone(),
        session: open_session(&url, &agent_key),
        connection: None,
    };
    let flood_session = open_session(&url, &flood_key);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let agent = {
        let (stop, calls) = (stop.clone(), calls.clone());
        std::thread::spawn(move || agent.run(&stop, &calls))
    };
    eventually("the agent's first calls", || {
        assert!(!agent.is_finished(), "the well-behaved agent stopped");
        (calls.lock().unwrap().len() >= 3).then_some(())
    });
    let (rss_before, _) = memory_kb(pid);

    let flood = Instant::now();
    let mut phases = Vec::new();
    let mut phase = |name: &'static str, run: &mut dyn FnMut()| {
        let started = Instant::now();
        run();
        phases.push((name, started, Instant::now()));
    };
    let mut timed_out = 0;
    phase("slowloris", &mut || timed_out = slowloris(&target));
    phase("slow bodies", &mut || slow_bodies(&target, &flood_key, &flood_session));
    phase("oversized", &mut || oversized(&target, &flood_key, &flood_session));
    let mut concurrent_counts = (0, 0, 0);
    let agent_calls = || calls.lock().unwrap().len();
    phase("concurrent", &mut || concurrent_counts = concurrent(&target, &flood_key, &flood_session, &agent_calls));
    let flood_took = flood.elapsed();
    stop.store(true, Ordering::Relaxed);
    agent.join().expect("the well-behaved agent failed");
    let (rss_after, peak) = memory_kb(pid);

    // The agent was served during every phase, not only before and after.
    let calls = calls.lock().unwrap().clone();
    for (name, started, ended) in &phases {
        let during = calls.iter().filter(|c| c.done > *started && c.done <= *ended).count();
        // A phase shorter than a few of the agent's calls may fall between two of them.
        if *ended - *started > Duration::from_millis(200) {
            assert!(during > 0, "the agent got no answer during the {name} phase ({:?})", *ended - *started);
        }
        eprintln!("{name}: {:?}, {during} agent calls answered meanwhile", *ended - *started);
    }
    let slowest = calls.iter().map(|c| c.took).max().unwrap();
    let retries: u32 = calls.iter().map(|c| c.retries).sum();
    eprintln!(
        "flood: {flood_took:?}; agent: {} calls, slowest {slowest:?}, {retries} retries; \
         memory: VmRSS {rss_before} kB before, {rss_after} kB after, VmHWM {peak} kB",
        calls.len()
    );
    assert!(peak < PEAK_RSS_LIMIT_KB, "peak memory {peak} kB exceeds {PEAK_RSS_LIMIT_KB} kB");
    assert!(
        peak.saturating_sub(rss_before) < FLOOD_GROWTH_LIMIT_KB,
        "the flood grew memory from {rss_before} kB to a peak of {peak} kB"
    );

    // The gateway still serves, and its metrics show what it cut off.
    let auth = format!("Bearer {agent_key}");
    let ping = r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#;
    let session = open_session(&url, &agent_key);
    assert_eq!(http("POST", &url, &[("Authorization", &auth), ("Mcp-Session-Id", &session)], ping).0, 200);
    let text = metrics();
    eprintln!("{}", text.lines().filter(|l| l.starts_with("custos_connections")).collect::<Vec<_>>().join("\n"));
    let refused = |reason: &str| {
        metric(&text, &format!("custos_connections_refused_total{{listener=\"mcp\",reason=\"{reason}\"}}"))
    };
    let (_, refused_seen, _) = concurrent_counts;
    assert!(refused("max_connections") >= refused_seen as u64, "{text}");
    assert!(refused("header_timeout") >= timed_out as u64, "{text}");
    assert_eq!(refused("body_timeout"), SLOW_BODIES as u64, "{text}");
    eventually("the flood's connections to be gone", || {
        // What is left: at most the agent's kept-alive connection, until its idle timeout.
        (metric(&metrics(), "custos_connections{listener=\"mcp\"}") <= 1).then_some(())
    });

    // The admin listener has its own cap and the same header timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(admin.strip_prefix("http://").unwrap()).unwrap();
    silent.set_read_timeout(Some(HEADER_TIMEOUT + SLACK)).unwrap();
    let took = wait_closed(&mut silent, started).unwrap_or_else(|e| panic!("a silent admin connection: {e}"));
    assert!(took >= HEADER_TIMEOUT.mul_f32(0.8), "closed after {took:?}");
    let text = metrics();
    assert!(metric(&text, "custos_connections_refused_total{listener=\"admin\",reason=\"header_timeout\"}") >= 1);

    assert_eq!(served.stop().code(), Some(0), "the gateway shuts down cleanly after the flood");
    d.verify_ok();
    let events = d.events();
    let reasons: Vec<&str> = of_kind(&events, "protocol.error")
        .iter()
        .filter(|e| e["agent"] == "operator")
        .filter_map(|e| e["detail"]["reason"].as_str())
        .collect();
    let count = |text: &str| reasons.iter().filter(|r| r.contains(text)).count();
    assert_eq!(count("not received within"), SLOW_BODIES, "{reasons:?}");
    assert!(count("exceeds the limit") >= DECLARED_TOO_LARGE + CHUNKED_TOO_LARGE, "{reasons:?}");
    assert!(of_kind(&events, "call.finished").iter().filter(|e| e["agent"] == "reader").count() >= calls.len());
}
