//! `custos serve` replicas on one PostgreSQL database, a real cluster each test starts
//! (`custos-testpg`: initdb in a temporary directory, as `nobody` when run as root):
//!
//! - replicas killed with SIGKILL again and again under load from several agents lose nothing
//!   a client saw answered, and the log verifies;
//! - while PostgreSQL is down the gateway refuses calls (it cannot record them) and forwards
//!   nothing; once PostgreSQL is back it serves again without a restart;
//! - a database unreachable at start-up is a clear error naming it, never its password;
//! - an agent's rate limit holds across replicas, counted once in the shared state;
//! - a call held on one replica is released by an approval made through another's admin API
//!   within a second;
//! - the official Python SDK client behind a load balancer whose replica died is answered 404
//!   by the next replica (sessions are replica-local) and goes on in a new session there.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

use common::harness::{
    eventually, header, issue_key, of_kind, peers_python, repo_root, try_http, Deployment, Served, INIT,
};
use custos_testpg::TestCluster;
use serde_json::{json, Value};

/// A deployment of the sample server whose store is the PostgreSQL database at `url`.
fn on_postgres(url: &str) -> Deployment {
    Deployment::serving_sample(&format!("[store]\nurl = \"{url}\"\n"))
}

/// An agent's client that moves to another replica when its own fails, opening a new session
/// there, as the official SDK clients re-initialize when their session is gone.
struct Client {
    key: String,
    session: Option<(String, String)>,
}

impl Client {
    /// Calls `echo` with request id `id` through one of `replicas` (starting at `start`): the
    /// answer's JSON when a replica answered it with a result, `None` when no replica did.
    fn call(&mut self, replicas: &[String], start: usize, id: u64) -> Option<Value> {
        for attempt in 0..replicas.len() {
            let url = &replicas[(start + attempt) % replicas.len()];
            if self.session.as_ref().is_none_or(|(u, _)| u != url) {
                self.session = self.open(url).map(|s| (url.clone(), s));
            }
            let Some((_, session)) = &self.session else { continue };
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"call {id}"}}}}}}"#
            );
            let auth = format!("Bearer {}", self.key);
            let headers = [
                ("Authorization", auth.as_str()),
                ("Mcp-Session-Id", session.as_str()),
                ("Accept", "application/json"),
            ];
            match try_http("POST", url, &headers, &body) {
                Ok((200, _, text)) => {
                    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return answer.get("result").is_some().then_some(answer);
                }
                // The replica died, or lost the session with its process: go elsewhere.
                _ => self.session = None,
            }
        }
        None
    }

    fn open(&self, url: &str) -> Option<String> {
        let auth = format!("Bearer {}", self.key);
        let (status, headers, _) =
            try_http("POST", url, &[("Authorization", &auth), ("Accept", "application/json")], INIT).ok()?;
        let session = header(&headers, "mcp-session-id").filter(|_| status == 200)?.to_owned();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let headers = [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str())];
        try_http("POST", url, &headers, initialized).ok().filter(|(s, _, _)| *s == 202)?;
        // As agents do before calling: the listing classifies `echo` (read-only) for policy.
        let list = r#"{"jsonrpc":"2.0","id":0,"method":"tools/list"}"#;
        let headers = [("Accept", "application/json"), headers[0], headers[1]];
        try_http("POST", url, &headers, list).ok().filter(|(s, _, _)| *s == 200)?;
        Some(session)
    }
}

#[test]
fn replicas_killed_under_load_lose_nothing_a_client_saw_answered() {
    let cluster = TestCluster::start();
    let d = on_postgres(&cluster.create_database("replicas"));
    let keys: Vec<String> = ["reader", "operator"].iter().map(|a| issue_key(&d, a)).collect();
    let mut replicas: Vec<Served> = (0..3).map(|_| Served::start(&d)).collect();
    let urls = Arc::new(Mutex::new(replicas.iter().map(|r| r.url("sample")).collect::<Vec<_>>()));

    let stop = Arc::new(AtomicBool::new(false));
    let answered_count = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = keys
        .iter()
        .enumerate()
        .flat_map(|(agent, key)| (0..2).map(move |n| (agent * 2 + n, key.clone())))
        .map(|(c, key)| {
            let (stop, urls, count) = (stop.clone(), urls.clone(), answered_count.clone());
            std::thread::spawn(move || {
                let mut client = Client { key, session: None };
                let mut answered = Vec::new();
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    // Ids unique across every client: each call's record can be found.
                    let id = (c as u64 + 1) * 1_000_000 + n;
                    n += 1;
                    let replicas = urls.lock().unwrap().clone();
                    if client.call(&replicas, c + n as usize, id).is_some() {
                        answered.push(id);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                answered
            })
        })
        .collect();

    // Kill a replica (SIGKILL, mid-load) three times, each time after more calls went through,
    // and start another in its place.
    for round in 0..3 {
        let seen = answered_count.load(Ordering::Relaxed);
        eventually("calls answered before the kill", || {
            (answered_count.load(Ordering::Relaxed) >= seen + 20).then_some(())
        });
        let victim = round % replicas.len();
        replicas[victim].child.kill().unwrap();
        replicas[victim].child.wait().unwrap();
        replicas[victim] = Served::start(&d);
        urls.lock().unwrap()[victim] = replicas[victim].url("sample");
    }
    let seen = answered_count.load(Ordering::Relaxed);
    eventually("calls answered after the last kill", || {
        (answered_count.load(Ordering::Relaxed) >= seen + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let answered: BTreeSet<u64> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    drop(replicas);

    assert!(answered.len() >= 80, "{} calls answered", answered.len());
    let events = d.events();
    let finished: BTreeSet<u64> = of_kind(&events, "call.finished")
        .iter()
        .filter(|e| e["detail"]["outcome"] == "ok")
        .filter_map(|e| e["detail"]["request_id"].as_str().and_then(|id| id.parse().ok()))
        .collect();
    let lost: Vec<&u64> = answered.difference(&finished).collect();
    assert!(lost.is_empty(), "answered but not in the log: {lost:?}");
    assert_eq!(d.verify_ok(), events.len() as u64);
}

#[test]
fn a_rate_limit_holds_across_replicas_not_once_per_replica() {
    let cluster = TestCluster::start();
    let url = cluster.create_database("limits");
    let d = Deployment::serving_sample(&format!(
        "[store]\nurl = \"{url}\"\n\n[[detection.limits]]\nagent = \"reader\"\ntool = \"sample/echo\"\ncalls_per_minute = 3\n"
    ));
    let key = issue_key(&d, "reader");
    let replicas: Vec<Served> = (0..2).map(|_| Served::start(&d)).collect();
    let urls: Vec<[String; 1]> = replicas.iter().map(|r| [r.url("sample")]).collect();
    let mut clients: Vec<Client> = (0..2).map(|_| Client { key: key.clone(), session: None }).collect();
    // Three calls in the minute, spread over both replicas: within the limit.
    for (id, replica) in [(1, 0), (2, 1), (3, 0)] {
        assert!(clients[replica].call(&urls[replica], 0, id).is_some(), "call {id}");
    }
    // The fourth, on the replica that saw one: over the agent's limit, counted across both.
    assert!(clients[1].call(&urls[1], 0, 4).is_none(), "the fourth call in a minute went through");
    drop(replicas);
    let events = d.events();
    let limited: Vec<&Value> = of_kind(&events, "finding.recorded")
        .into_iter()
        .filter(|e| e["detail"]["finding"] == "rate_limit" && e["detail"]["rule"] == "calls_per_minute")
        .collect();
    assert_eq!(limited.len(), 1, "{:?}", of_kind(&events, "finding.recorded"));
    assert!(
        limited[0]["detail"]["evidence"].as_str().unwrap().contains("4 calls to `sample/echo` in the last minute"),
        "{limited:?}"
    );
    let finished = of_kind(&events, "call.finished");
    assert_eq!(finished.iter().filter(|e| e["detail"]["outcome"] == "ok").count(), 3);
    d.verify_ok();
}

#[test]
fn a_call_held_on_one_replica_is_released_by_an_approval_through_another() {
    let cluster = TestCluster::start();
    let url = cluster.create_database("approvals");
    let d = Deployment::serving(
        common::harness::HELD_PRIVILEGED_POLICIES,
        &format!(
            "[store]\nurl = \"{url}\"\n\n[approvals]\ntimeout_ms = 30000\n[approvals.groups.ops]\nmembers = [\"carol@example.com\"]\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nassert_approvers = true\n"
        ),
        &[common::harness::sample_server().to_str().unwrap()],
    );
    let config = std::fs::read_to_string(d.config())
        .unwrap()
        .replace("name = \"sample\"\n", "name = \"sample\"\ntools = { \"write_note\" = \"privileged\" }\n");
    std::fs::write(d.config(), config).unwrap();
    std::fs::write(d.dir.path().join("admin.token"), "an-admin-token-for-tests").unwrap();
    let key = issue_key(&d, "operator");
    let (a, b) = (Served::start(&d), Served::start(&d));

    // The official SDK client's call waits on replica A.
    let on_a = a.url("sample");
    let client = std::thread::spawn(move || {
        common::harness::python_http(&on_a, &key, &["--call", "write_note", r#"{"title":"t","body":"deploy"}"#])
    });
    // Replica B sees the request (one queue in the database) and takes the approval.
    let admin = b.admin.clone().unwrap();
    let auth = ("Authorization", "Bearer an-admin-token-for-tests");
    let id = eventually("the held call listed by the other replica", || {
        let (status, _, body) = common::harness::http("GET", &format!("{admin}/v1/approvals"), &[auth], "");
        assert_eq!(status, 200, "{body}");
        let listed: Value = serde_json::from_str(&body).unwrap();
        listed["approvals"].as_array()?.first()?["id"].as_str().map(str::to_owned)
    });
    let approve = format!("{admin}/v1/approvals/{id}/approve");
    let (status, _, body) =
        common::harness::http("POST", &approve, &[auth], r#"{"approver":"carol@example.com","reason":"ok"}"#);
    assert_eq!(status, 200, "{body}");
    let report = client.join().unwrap();
    let step = &report["steps"][0];
    assert_eq!((step["ok"].clone(), step["is_error"].clone()), (json!(true), json!(false)), "{report}");
    drop((a, b));

    let events = d.events();
    let time_of = |kind: &str| of_kind(&events, kind)[0]["time_ms"].as_u64().unwrap();
    let waited = time_of("approval.used") - time_of("approval.approved");
    assert!(waited < 1000, "the approval took {waited} ms to release the call on the other replica");
    assert_eq!(of_kind(&events, "call.finished").len(), 1);
    d.verify_ok();
}

#[test]
fn while_postgres_is_down_calls_are_refused_and_once_it_is_back_they_are_served() {
    let mut cluster = TestCluster::start();
    let d = on_postgres(&cluster.create_database("restart"));
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    let urls = [served.url("sample")];
    let mut client = Client { key, session: None };
    assert!(client.call(&urls, 0, 1).is_some(), "served before the restart");

    cluster.stop();
    let body =
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"while down"}}}"#;
    let (_, session) = client.session.clone().unwrap();
    let auth = format!("Bearer {}", client.key);
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    let (status, _, text) = try_http("POST", &urls[0], &headers, body).unwrap();
    // Refused, never forwarded: the call could not be recorded (or the agent not checked).
    let refused = status != 200 || serde_json::from_str::<Value>(&text).unwrap()["error"].is_object();
    assert!(refused, "{status} {text}");
    assert!(!text.contains("while down"), "the upstream answered a call that was not recorded: {text}");

    cluster.restart();
    // The same gateway process serves again: its connections are replaced at the next call.
    let mut id = 3;
    eventually("a call served after PostgreSQL came back", || {
        id += 1;
        client.call(&urls, 0, id).map(|_| ())
    });
    assert!(served.child.id() > 0);
    drop(served);
    let events = d.events();
    assert!(of_kind(&events, "call.finished").iter().all(|e| e["detail"]["request_id"] != "2"), "{events:?}");
    d.verify_ok();
}

#[test]
fn a_database_unreachable_at_start_up_is_a_clear_error_without_its_password() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = Deployment::serving_sample(&format!(
        "[store]\nurl = \"postgres://custos:hunter2-secret@127.0.0.1:{port}/custos\"\nconnect_timeout_ms = 2000\n"
    ));
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("postgres://custos@127.0.0.1:{port}/custos")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A load balancer in miniature: forwards each TCP connection to the backend of the moment,
/// and closes the clients' connections when its backend changes, as a balancer does when it
/// takes a dead backend out.
struct Balancer {
    addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

impl Balancer {
    fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let clients = Arc::new(Mutex::new(Vec::new()));
        let (current, open) = (backend.clone(), clients.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let to = *current.lock().unwrap();
                let Ok(server) = TcpStream::connect(to) else { continue };
                open.lock().unwrap().push(client.try_clone().unwrap());
                for (mut from, mut into) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Balancer { addr, backend, clients }
    }

    fn point_at(&self, backend: SocketAddr) {
        *self.backend.lock().unwrap() = backend;
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn socket_of(served: &Served) -> SocketAddr {
    served.base.strip_prefix("http://").unwrap().parse().unwrap()
}

/// The official Python SDK client (`tests/peers/reconnecting_client.py`) reaches replica A
/// through a balancer; A is killed and the balancer sends it to B, which does not know its
/// session: the client's call fails (answered 404, or cut off with A's connection), it opens a
/// new session on B and its call goes through.
#[test]
fn the_python_sdk_client_goes_on_in_a_new_session_when_its_replica_dies() {
    let cluster = TestCluster::start();
    let d = on_postgres(&cluster.create_database("balanced"));
    let key = issue_key(&d, "operator");
    let mut a = Served::start(&d);
    let b = Served::start(&d);
    let balancer = Balancer::start(socket_of(&a));
    let wait_file = d.dir.path().join("replica-died");
    let ready_file = d.dir.path().join("first-call-answered");
    let mut client = Command::new(peers_python())
        .arg(repo_root().join("tests/peers/reconnecting_client.py"))
        // `/mcp` (every server, federated) holds no GET stream open: the client's only
        // connections are its calls, as with a balancer that closes idle streams.
        .arg(format!("http://{}/mcp", balancer.addr))
        .args(["--bearer", &key, "--tool", "sample__echo", "--arguments", r#"{"text":"through a balancer"}"#])
        .arg("--wait-file")
        .arg(&wait_file)
        .arg("--ready-file")
        .arg(&ready_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    eventually("the first call answered on replica A", || ready_file.exists().then_some(()));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    balancer.point_at(socket_of(&b));
    std::fs::write(&wait_file, "").unwrap();
    let mut stdout = String::new();
    client.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(client.wait().unwrap().success(), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(report["sessions"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!((&calls[0]["ok"], &calls[0]["session"]), (&json!(true), &json!(0)), "{report}");
    // Answered 404 by B, or cut off with A's connections, depending on where the client was.
    assert_eq!(calls[1]["ok"], json!(false), "{report}");
    assert_eq!((&calls[2]["ok"], &calls[2]["session"]), (&json!(true), &json!(1)), "{report}");
    drop(b);
    assert_eq!(of_kind(&d.events(), "call.finished").len(), 2);
    d.verify_ok();
}
