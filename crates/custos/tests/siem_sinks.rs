//! Evidence to SIEMs: every event kind mapped to OCSF and validated against the OCSF schema
//! (`tests/peers/ocsf_validate.py`, pydantic-ocsf's models of OCSF 1.7.0); `custos audit
//! export`; and `custos serve`'s sinks against real receivers: an HTTP receiver that is down
//! and recovers, as a webhook and shaped like Splunk HEC (`tests/peers/flaky_sink.py`), a
//! syslog listener parsing RFC 5424 octet-counted frames (`tests/peers/syslog_listener.py`),
//! and a JSON lines file that rotates. Each asserts every event delivered once, in order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::harness::{
    eventually, issue_key, open_session, peers_python, post_in, repo_root, Deployment, Peer, Served,
};
use custos_core::{AgentId, Digest, EventKind, NewEvent, RunId, ToolRef};
use custos_store::StoredEvent;
use serde_json::{json, Value};

/// The validator's verdict on a JSON lines file of OCSF events.
fn ocsf_verdict(path: &Path) -> Value {
    let out =
        Command::new(peers_python()).arg(repo_root().join("tests/peers/ocsf_validate.py")).arg(path).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `n` allowed calls and one denied, in one session of agent `reader`; each answered.
fn make_calls(served: &Served, key: &str, n: u32) {
    let url = served.url("sample");
    let session = open_session(&url, key);
    for id in 0..n {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"t{id}"}}}}}}"#,
            id + 2
        );
        let (status, _, body) = post_in(&url, key, &session, &call);
        assert_eq!(status, 200, "a sink never holds up a call: {body}");
    }
    let denied =
        r#"{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"delete_everything","arguments":{}}}"#;
    assert_eq!(post_in(&url, key, &session, denied).0, 200);
}

/// The sequence numbers received, in order of arrival.
fn seqs(events: &[Value], field: &str) -> Vec<u64> {
    events.iter().map(|e| e.pointer(field).and_then(Value::as_u64).unwrap_or_else(|| panic!("{e}"))).collect()
}

/// Asserts `got` is exactly 1..=count: every event once, in log order.
fn exactly_once_in_order(got: &[u64], count: u64) {
    let want: Vec<u64> = (1..=count).collect();
    assert_eq!(got, want.as_slice(), "every event once, in order");
}

/// One event of every kind, with and without an agent, holding the detail keys the mapping
/// reads; each mapped to OCSF and validated against the schema.
#[test]
fn every_event_kind_maps_to_an_event_the_ocsf_schema_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.jsonl");
    let mut lines = String::new();
    let mut seq: u64 = 0;
    for kind in EventKind::ALL {
        for attributed in [true, false] {
            seq += 1;
            let mut event = NewEvent::new(kind, 1_780_000_000_000 + seq as i64);
            event.detail = json!({
                "server": "sample", "reason": "because", "outcome": "ok", "request_id": 3,
                "finding": "injection", "severity": "high", "rule": "hidden_instructions",
                "evidence": "ignore previous", "action": "denied", "key_id": "k-1",
                "approver": "carol@example.com",
            });
            if attributed {
                event.agent = Some(AgentId("reader".into()));
                event.run = Some(RunId("run-1".into()));
                event.step = Some(2);
                event.tool = ToolRef::new("sample", "echo").ok();
                event.decision = Some("deny".into());
            }
            let stored = StoredEvent { seq, prev: Digest::ZERO, hash: Digest::of(&seq.to_be_bytes()), event };
            lines.push_str(&custos_siem::ocsf::to_ocsf(&stored).to_string());
            lines.push('\n');
        }
    }
    std::fs::write(&path, lines).unwrap();
    let verdict = ocsf_verdict(&path);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["count"], EventKind::ALL.len() * 2);
    for class in ["2004", "3001", "3002", "6002", "6003"] {
        assert!(verdict["classes"][class].as_u64().unwrap() > 0, "{verdict}");
    }

    // The validator is not a rubber stamp.
    let mut broken: Value = serde_json::from_str(lines_of(&path).first().unwrap()).unwrap();
    broken["metadata"]["made_up"] = json!(1);
    broken["severity_id"] = json!("high");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{broken}\n")).unwrap();
    let verdict = ocsf_verdict(&bad);
    assert_eq!(verdict["ok"], false, "{verdict}");
    let problems = verdict["errors"][0]["problems"].to_string();
    assert!(problems.contains("metadata.made_up") && problems.contains("severity_id"), "{problems}");
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

/// `custos audit export`: the whole log as OCSF the schema accepts, as JSON lines like `audit
/// query --json`, and a range by sequence number.
#[test]
fn audit_export_writes_ocsf_the_schema_accepts_and_jsonl_by_range() {
    let d = Deployment::serving_sample("");
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 3);
    // An agent that fails to authenticate.
    let (status, _, _) = common::harness::http(
        "POST",
        &served.url("sample"),
        &[("Authorization", "Bearer nope"), ("Accept", "application/json")],
        "{}",
    );
    assert_eq!(status, 401);
    assert!(served.stop().success());
    let count = d.verify_ok();

    let out = d.dir.path().join("export.ocsf.jsonl");
    let run = d.output(&["audit", "export", "--format", "ocsf", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains(&format!("exported {count} events")));
    let verdict = ocsf_verdict(&out);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["count"], count);
    for class in ["6003", "3002", "3001"] {
        assert!(verdict["classes"][class].as_u64().is_some_and(|n| n > 0), "class {class}: {verdict}");
    }
    let events = read_lines(&out);
    exactly_once_in_order(&seqs(&events, "/metadata/sequence"), count);
    let log = d.events();
    assert_eq!(events[0]["metadata"]["uid"], log[0]["hash"], "metadata.uid is the event's digest");

    // JSON lines, events 3 to 5.
    let run = d.output(&["audit", "export", "--format", "jsonl", "--since", "2", "--until", "5"]);
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    let got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got, log[2..5].to_vec(), "the same events as `audit query --json`");

    let bad = d.output(&["audit", "export", "--format", "cef"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`cef` is not an export format"));
}

/// A webhook that is down: the calls go on, the events wait in the log, and a restart of the
/// gateway in the middle of the outage neither loses nor repeats any of them.
#[test]
fn a_webhook_down_then_up_gets_every_event_once_in_order_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let received = tmp.path().join("received.jsonl");
    let down = tmp.path().join("down");
    std::fs::write(&down, "").unwrap();
    let sink = Peer::start("flaky_sink.py", &[received.to_str().unwrap(), "--down-while", down.to_str().unwrap()]);
    let d = Deployment::serving_sample(&format!(
        "[[audit.sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/events\"\n\
         batch_size = 4\nflush_interval_ms = 50\n",
        sink.port
    ));
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 3);
    assert!(served.stop().success(), "a sink that is down does not fail the gateway's stop");
    assert!(read_lines(&received).is_empty(), "the receiver was down throughout");

    let served = Served::start(&d);
    make_calls(&served, &key, 2);
    std::fs::remove_file(&down).unwrap();
    let count_now = d.verify_ok();
    eventually("the receiver to catch up", || (read_lines(&received).len() as u64 >= count_now).then_some(()));
    assert!(served.stop().success());

    let count = d.verify_ok();
    let got = read_lines(&received);
    exactly_once_in_order(&seqs(&got, "/metadata/sequence"), count);
    let cursor: Value =
        serde_json::from_str(&std::fs::read_to_string(d.dir.path().join(".custos/sinks/hook.cursor")).unwrap())
            .unwrap();
    assert_eq!(cursor["seq"], count, "the cursor is at the last event delivered");
    drop(sink);
}

/// Splunk HEC: the token from a file as `Authorization: Splunk …`, the first batches refused
/// with 503, then every event once, in HEC envelopes, valid OCSF.
#[test]
fn splunk_hec_gets_ocsf_envelopes_with_its_token_after_refusing_the_first_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let received = tmp.path().join("hec.jsonl");
    let token = "7f3c2a10-hec-token";
    let sink = Peer::start("flaky_sink.py", &[received.to_str().unwrap(), "--hec-token", token, "--fail", "2"]);
    let d = Deployment::serving_sample(&format!(
        "[[audit.sinks]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = \"http://127.0.0.1:{}\"\n\
         token_file = \"hec.token\"\nbatch_size = 5\nflush_interval_ms = 50\n",
        sink.port
    ));
    std::fs::write(d.dir.path().join("hec.token"), format!("{token}\n")).unwrap();
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 3);
    let count_now = d.verify_ok();
    eventually("HEC to receive the events", || (read_lines(&received).len() as u64 >= count_now).then_some(()));
    assert!(served.stop().success());

    let count = d.verify_ok();
    let got = read_lines(&received);
    assert!(got.iter().all(|e| e["sourcetype"] == "ocsf" && e["source"] == "custos" && e["time"].is_f64()));
    exactly_once_in_order(&seqs(&got, "/event/metadata/sequence"), count);
    let events = tmp.path().join("events.jsonl");
    std::fs::write(&events, got.iter().map(|e| format!("{}\n", e["event"])).collect::<String>()).unwrap();
    let verdict = ocsf_verdict(&events);
    assert_eq!(verdict["ok"], true, "{verdict}");
}

/// Syslog over TCP: RFC 5424 messages, octet-counted, one per event, in order.
#[test]
fn syslog_over_tcp_gets_rfc5424_octet_counted_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let received = tmp.path().join("syslog.jsonl");
    let listener = Peer::start("syslog_listener.py", &[received.to_str().unwrap()]);
    let d = Deployment::serving_sample(&format!(
        "[[audit.sinks]]\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\nflush_interval_ms = 50\n",
        listener.port
    ));
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 2);
    assert!(served.stop().success());
    let count = d.verify_ok();
    let got = eventually("every message", || {
        let got = read_lines(&received);
        (got.len() as u64 >= count).then_some(got)
    });
    assert!(got.iter().all(|m| m.get("error").is_none()), "{got:?}");
    let seqs: Vec<u64> =
        got.iter().map(|m| m["sd"]["custos@32473"]["seq"].as_str().unwrap().parse().unwrap()).collect();
    exactly_once_in_order(&seqs, count);
    for m in &got {
        assert_eq!((m["facility"].as_u64(), m["app"].as_str()), (Some(13), Some("custos")));
        assert_eq!(m["sd"]["custos@32473"]["uid"], m["msg"]["metadata"]["uid"]);
        assert_eq!(m["msgid"], m["msg"]["metadata"]["event_code"]);
    }
    let denied = got.iter().find(|m| m["msg"]["status"] == "Failure").unwrap();
    assert_eq!(denied["severity"], 4, "a refusal is a warning");
}

/// A JSON lines file rotated by size: every event once, in order, across the files kept.
#[test]
fn a_jsonl_file_rotates_and_keeps_every_event_once() {
    let d = Deployment::serving_sample(
        "[[audit.sinks]]\nname = \"file\"\nkind = \"jsonl\"\nformat = \"jsonl\"\npath = \"siem/events.jsonl\"\n\
         rotate_bytes = 1024\nkeep = 100\nbatch_size = 2\nflush_interval_ms = 20\n",
    );
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 4);
    assert!(served.stop().success());
    let count = d.verify_ok();
    let dir = d.dir.path().join("siem");
    let rotated = std::fs::read_dir(&dir).unwrap().count() - 1;
    assert!(rotated >= 2, "rotated {rotated} times");
    let mut all = Vec::new();
    for n in (1..=rotated).rev() {
        let part = read_lines(&dir.join(format!("events.jsonl.{n}")));
        assert!(!part.is_empty());
        all.extend(part);
    }
    all.extend(read_lines(&dir.join("events.jsonl")));
    exactly_once_in_order(&seqs(&all, "/seq"), count);
    assert_eq!(all, d.events(), "the log's own shape, as `audit query --json`");
}

/// A sink that can never work stops start-up, naming it; a bad key names the key.
#[test]
fn a_sink_that_cannot_work_stops_start_up_naming_it() {
    let d = Deployment::serving_sample(
        "[[audit.sinks]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = \"http://127.0.0.1:9\"\ntoken_file = \"missing.token\"\n",
    );
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[audit.sinks]] `splunk`") && err.contains("missing.token"), "{err}");

    let d =
        Deployment::serving_sample("[[audit.sinks]]\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\npath = \"x\"\n");
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`audit.sinks[0].path`: not a setting of a `syslog` sink"), "{err}");
}

/// `custos secrets set NAME` with the value on stdin.
fn set_secret(d: &Deployment, name: &str, value: &str) {
    use std::io::Write;
    let mut child = d
        .custos(&["secrets", "set", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{value}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key).
fn pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "custos siem test ca");
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Two sinks at once: HEC with its token from the encrypted store, and syslog over TLS
/// (RFC 5425) trusting a private CA; both get every event once, in order.
#[test]
fn hec_with_a_stored_token_and_syslog_over_tls_each_get_every_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key_file) = pki(tmp.path());
    let hec_out = tmp.path().join("hec.jsonl");
    let syslog_out = tmp.path().join("syslog.jsonl");
    let token = "stored-hec-token-5d1e";
    let hec = Peer::start("flaky_sink.py", &[hec_out.to_str().unwrap(), "--hec-token", token]);
    let syslog = Peer::start(
        "syslog_listener.py",
        &[syslog_out.to_str().unwrap(), "--tls", cert.to_str().unwrap(), key_file.to_str().unwrap()],
    );
    let d = Deployment::serving_sample(&format!(
        "[secrets.splunk_hec]\nstore = true\n\
         [[audit.sinks]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nformat = \"jsonl\"\nurl = \"http://127.0.0.1:{}\"\n\
         token_secret = \"splunk_hec\"\nflush_interval_ms = 50\n\
         [[audit.sinks]]\nname = \"syslog\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\ntls = true\n\
         ca_file = \"{}\"\nflush_interval_ms = 50\n",
        hec.port,
        syslog.port,
        ca.display()
    ));
    set_secret(&d, "splunk_hec", token);
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 2);
    assert!(served.stop().success());
    let count = d.verify_ok();

    let got = eventually("HEC to get every event", || {
        let got = read_lines(&hec_out);
        (got.len() as u64 >= count).then_some(got)
    });
    assert!(got.iter().all(|e| e["sourcetype"] == "custos:audit"), "format jsonl has its own source type");
    exactly_once_in_order(&seqs(&got, "/event/seq"), count);
    let messages = eventually("syslog over TLS to get every event", || {
        let got = read_lines(&syslog_out);
        (got.len() as u64 >= count).then_some(got)
    });
    assert!(messages.iter().all(|m| m.get("error").is_none()), "{messages:?}");
    let seqs: Vec<u64> =
        messages.iter().map(|m| m["sd"]["custos@32473"]["seq"].as_str().unwrap().parse().unwrap()).collect();
    exactly_once_in_order(&seqs, count);
}

/// A receiver that accepted a batch but whose acknowledgement was lost gets that batch again;
/// each event carries its digest (`metadata.uid`), so deduping on it leaves every event once.
#[test]
fn a_lost_acknowledgement_resends_the_batch_and_the_event_uids_dedupe_it() {
    let tmp = tempfile::tempdir().unwrap();
    let received = tmp.path().join("received.jsonl");
    let sink = Peer::start("flaky_sink.py", &[received.to_str().unwrap(), "--lose-acks", "1"]);
    let d = Deployment::serving_sample(&format!(
        "[[audit.sinks]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/\"\nbatch_size = 3\nflush_interval_ms = 50\n",
        sink.port
    ));
    let key = issue_key(&d, "reader");
    let served = Served::start(&d);
    make_calls(&served, &key, 2);
    assert!(served.stop().success());
    let count = d.verify_ok();
    let got = eventually("every event", || {
        let got = read_lines(&received);
        (got.len() as u64 > count).then_some(got)
    });
    let seqs = seqs(&got, "/metadata/sequence");
    // The first batch, whatever its size, came twice in a row.
    let again = seqs.iter().skip(1).position(|&s| s == 1).unwrap() + 1;
    assert_eq!(&seqs[..again], &seqs[again..2 * again], "{seqs:?}");
    let mut seen = std::collections::HashSet::new();
    let deduped: Vec<u64> = got
        .iter()
        .filter(|e| seen.insert(e["metadata"]["uid"].as_str().unwrap().to_owned()))
        .map(|e| e["metadata"]["sequence"].as_u64().unwrap())
        .collect();
    exactly_once_in_order(&deduped, count);
}

/// A cursor the log does not bear out (the data directory replaced under it) stops start-up
/// rather than skip events or send another history as the old one's continuation.
#[test]
fn a_cursor_past_the_log_or_at_another_event_stops_start_up() {
    let d = Deployment::serving_sample(
        "[[audit.sinks]]\nname = \"file\"\nkind = \"jsonl\"\npath = \"out.jsonl\"\nflush_interval_ms = 20\n",
    );
    issue_key(&d, "reader");
    let cursors = d.dir.path().join(".custos/sinks");
    std::fs::create_dir_all(&cursors).unwrap();
    std::fs::write(cursors.join("file.cursor"), r#"{"seq": 99, "uid": "00"}"#).unwrap();
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("past the end of this log") && err.contains("file.cursor"), "{err}");

    std::fs::write(cursors.join("file.cursor"), format!(r#"{{"seq": 1, "uid": "{}"}}"#, "ab".repeat(32))).unwrap();
    let out = d.output(&["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("event 1 is not the one the sink delivered"), "{err}");
}
