//! OpenTelemetry end to end: a client's call with a W3C `traceparent` through `custos run`
//! (stdio, `params._meta`) and `custos serve` (HTTP header) to a recording upstream, with the
//! spans exported over OTLP/gRPC and OTLP/HTTP to a receiver built from the official
//! OpenTelemetry protobuf definitions (`tests/peers/otlp_receiver.py`). Asserts span names,
//! attributes and parent links client → gateway → upstream, that no argument value reaches a
//! span, that a collector that is down costs spans, not calls, and that the metrics `/metrics`
//! serves are pushed over OTLP too (periodically, and at shutdown).

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use common::harness::{
    custos_bin, eventually, header, http, issue_key, open_session, peers_python, repo_root, Deployment, Peer,
    RawSession, Served,
};
use serde_json::{json, Value};

/// Operators may call anything on `sample` but `delete_everything`; `b` over 100 needs `ops`.
const POLICIES: &str = r#"
@id("operators-all")
permit (principal in Custos::Group::"operators", action == Custos::Action::"call_tool", resource);

@id("never-delete")
forbid (principal, action == Custos::Action::"call_tool", resource == Custos::Tool::"sample/delete_everything");

@id("b-over-100-needs-ops")
@approval("ops")
forbid (principal, action == Custos::Action::"call_tool", resource in Custos::Server::"sample")
when { context.arguments has b && context.arguments.b > 100 }
unless { context.approval.granted };
"#;

/// An argument value that must never appear in a span.
const MARK: i64 = 4_242_424;

/// The client's own span: the parent the gateway's spans must take.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The receiver (`otlp_receiver.py`), killed when dropped.
struct Receiver {
    child: Child,
    grpc: String,
    http: String,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let mut child = Command::new(peers_python())
            .arg(repo_root().join("tests/peers/otlp_receiver.py"))
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() == 4 && words[0] == "grpc" && words[2] == "http", "receiver did not start: {line:?}");
        Self { grpc: format!("http://{}", words[1]), http: format!("http://{}", words[3]), out, child, _dir: dir }
    }

    fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v.get("name").is_some()).collect()
    }

    /// The spans once one named `name` has arrived.
    fn spans_with(&self, name: &str) -> Vec<Value> {
        eventually(&format!("a span `{name}`"), || {
            let spans = self.spans();
            spans.iter().any(|s| s["name"] == name).then_some(spans)
        })
    }

    /// Every metric of every push received so far, in order.
    fn metrics(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v.get("metric").is_some()).collect()
    }

    /// The latest pushed point of metric `name` whose attributes include `attributes`, once one
    /// satisfies `ready`.
    fn metric_point(&self, name: &str, attributes: &Value, ready: impl Fn(&Value) -> bool) -> (Value, Value) {
        eventually(&format!("a pushed `{name}` point with {attributes}"), || {
            let metrics = self.metrics();
            let metric = metrics.iter().rev().find(|m| m["metric"] == name)?;
            let point = metric["points"]
                .as_array()?
                .iter()
                .find(|p| attributes.as_object().unwrap().iter().all(|(k, v)| &p["attributes"][k] == v))?;
            ready(point).then(|| (metric.clone(), point.clone()))
        })
    }

    fn raw(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn telemetry(endpoint: &str, protocol: &str) -> String {
    format!(
        "schema = \"schema.cedarschema\"\n[approvals]\ntimeout_ms = 1000\n[approvals.groups.ops]\n\
         members = [\"olga@example.com\"]\n[telemetry]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\n\
         service_name = \"custos-test\"\n"
    )
}

fn recording_upstream(record: &std::path::Path) -> Vec<String> {
    let script = repo_root().join("tests/peers/recording_upstream.py");
    vec!["python3".into(), script.to_string_lossy().into_owned(), record.to_string_lossy().into_owned()]
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span `{name}` expected in {spans:#?}");
    found[0]
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a str> {
    let mut names: Vec<&str> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == parent["span_id"] && s["trace_id"] == parent["trace_id"])
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names
}

/// What the upstream received for request `id`, as the recording upstream wrote it.
fn received(record: &std::path::Path, id: i64) -> Value {
    let text = std::fs::read_to_string(record).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"] == id && v["method"] == "tools/call")
        .unwrap_or_else(|| panic!("the upstream did not receive call {id}: {text}"))
}

/// The allowed call's spans: names, kinds, attributes, and links client → gateway → upstream.
fn assert_allowed_call(spans: &[Value], record: &std::path::Path, transport: &str) -> Value {
    let call = one(spans, "execute_tool add").clone();
    assert_eq!(call["transport"], transport);
    assert_eq!(call["service"], "custos-test");
    assert_eq!(call["kind"], 2, "SERVER: {call}");
    assert_eq!(call["trace_id"], CLIENT_TRACE, "the call is in the client's trace: {call}");
    assert_eq!(call["parent_span_id"], CLIENT_SPAN, "the call is a child of the client's span: {call}");
    let a = &call["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["gen_ai.tool.name"], "add");
    assert_eq!(a["gen_ai.tool.call.id"], "7");
    assert_eq!(a["gen_ai.agent.id"], "operator");
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["custos.server"], "sample");
    assert_eq!(a["custos.decision"], "allow");
    assert_eq!(a["custos.policies"], json!(["operators-all"]));
    assert_eq!(a["custos.outcome"], "ok");
    assert!(a["custos.run.id"].as_str().is_some_and(|r| !r.is_empty()), "{a}");
    assert_eq!(children(spans, &call), ["audit append", "audit append", "policy", "tools/call add"]);

    let upstream = spans
        .iter()
        .find(|s| s["name"] == "tools/call add" && s["parent_span_id"] == call["span_id"])
        .unwrap_or_else(|| panic!("no upstream span under {call}"));
    assert_eq!(upstream["kind"], 3, "CLIENT: {upstream}");
    // The upstream was handed the upstream span's context, in `_meta`, in place of the client's.
    let sent = received(record, 7);
    let expected = format!("00-{CLIENT_TRACE}-{}-01", upstream["span_id"].as_str().unwrap());
    assert_eq!(sent["params"]["_meta"]["traceparent"], expected.as_str(), "{sent}");
    assert_eq!(sent["params"]["arguments"], json!({"a": MARK, "b": 3}), "the arguments went on unchanged");
    call
}

fn assert_denied_call(spans: &[Value]) {
    let denied = one(spans, "execute_tool delete_everything");
    let a = &denied["attributes"];
    assert_eq!(a["custos.decision"], "deny");
    assert_eq!(a["custos.policies"], json!(["never-delete"]));
    assert_eq!(a["custos.outcome"], "denied");
    assert_eq!(a["error.type"], "-32001");
    assert_eq!(denied["status"]["code"], 2, "ERROR: {denied}");
    assert_eq!(children(spans, denied), ["audit append", "policy"], "a denied call never goes upstream");
}

fn call(id: i64, name: &str, arguments: Value, traceparent: Option<&str>) -> String {
    let mut params = json!({ "name": name, "arguments": arguments });
    if let Some(tp) = traceparent {
        params["_meta"] = json!({ "traceparent": tp, "tracestate": "client=1" });
    }
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string()
}

#[test]
fn run_over_stdio_joins_the_clients_trace_from_meta_and_exports_over_grpc() {
    let receiver = Receiver::start();
    let d = Deployment::new(POLICIES, &telemetry(&receiver.grpc, "grpc"));
    d.write_schema("a?: Long,\n    b?: Long,");
    let record = d.dir.path().join("upstream.jsonl");
    let upstream = recording_upstream(&record);
    let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
    let mut s = RawSession::start(&d, &["--agent", "operator"], &upstream);
    s.initialize();
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");

    s.send(&call(7, "add", json!({"a": MARK, "b": 3}), Some(&traceparent)));
    let answer = s.recv_answer(&json!(7)).0;
    assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains("4242427"), "{answer}");
    s.send(&call(8, "delete_everything", json!({}), Some(&traceparent)));
    assert_eq!(s.recv_answer(&json!(8)).0["error"]["code"], -32001);
    // Held for `ops`, who do not answer within the second of `[approvals] timeout_ms`.
    s.send(&call(9, "add", json!({"a": 1, "b": 500}), Some(&traceparent)));
    assert_eq!(s.recv_answer(&json!(9)).0["error"]["code"], -32004);
    // A short session: its spans are sent when it ends, not lost with the process.
    let (status, _) = s.finish();
    assert!(status.success());

    let spans = receiver.spans_with("execute_tool delete_everything");
    let spans = if named(&spans, "execute_tool add").len() < 2 { receiver.spans_with("approval wait") } else { spans };
    let allowed: Vec<Value> = spans
        .iter()
        .filter(|s| s["name"] != "execute_tool add" || s["attributes"]["gen_ai.tool.call.id"] == "7")
        .cloned()
        .collect();
    let call7 = assert_allowed_call(&allowed, &record, "grpc");
    assert_eq!(call7["attributes"]["custos.step"], 1);
    assert!(call7["attributes"].get("mcp.session.id").is_none(), "stdio has no MCP session: {call7}");
    assert_denied_call(&spans);

    let held = spans
        .iter()
        .find(|s| s["name"] == "execute_tool add" && s["attributes"]["gen_ai.tool.call.id"] == "9")
        .unwrap_or_else(|| panic!("no span for the held call in {spans:#?}"));
    let a = &held["attributes"];
    assert_eq!(a["custos.decision"], "hold");
    assert_eq!(a["custos.outcome"], "held");
    assert!(a["custos.approval.id"].as_str().is_some_and(|id| id.starts_with("apr_")), "{held}");
    assert_eq!(children(&spans, held), ["approval wait", "audit append", "policy"]);

    let raw = receiver.raw();
    assert!(!raw.contains(&MARK.to_string()), "an argument value reached a span: {raw}");
}

/// A `custos serve` deployment of the recording upstream (writing to `record`) with `settings`
/// appended, `add`'s arguments declared to policy, and an operator's key.
fn serving_recorded(record: &std::path::Path, settings: &str) -> (Deployment, String) {
    let upstream = recording_upstream(record);
    let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
    let d = Deployment::serving(POLICIES, settings, &upstream);
    d.write_schema("a?: Long,\n    b?: Long,");
    let key = issue_key(&d, "operator");
    (d, key)
}

#[test]
fn serve_over_http_takes_the_traceparent_header_and_exports_over_http_protobuf() {
    let receiver = Receiver::start();
    let record = tempfile::NamedTempFile::new().unwrap();
    let (d, key) = serving_recorded(record.path(), &telemetry(&receiver.http, "http/protobuf"));
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = format!("Bearer {key}");
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("Accept", "application/json"),
        ("traceparent", traceparent.as_str()),
    ];
    // The trace context in the HTTP header only, not in `_meta`.
    let (status, _, body) = http("POST", &url, &headers, &call(7, "add", json!({"a": MARK, "b": 3}), None));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("4242427"), "{body}");
    let (status, answered, body) = http("POST", &url, &headers, &call(8, "delete_everything", json!({}), None));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("-32001"), "{body}");
    assert_eq!(header(&answered, "mcp-session-id"), Some(session.as_str()));
    // Stopping the gateway sends what is still queued.
    assert!(served.stop().success());

    let spans = receiver.spans_with("execute_tool delete_everything");
    let spans =
        if named(&spans, "execute_tool add").is_empty() { receiver.spans_with("execute_tool add") } else { spans };
    let call7 = assert_allowed_call(&spans, record.path(), "http");
    assert_eq!(call7["attributes"]["mcp.session.id"].as_str(), Some(session.as_str()));
    assert_denied_call(&spans);
    let raw = receiver.raw();
    assert!(!raw.contains(&MARK.to_string()), "an argument value reached a span: {raw}");
    assert!(!raw.contains(&key), "the agent's key reached a span");
}

#[test]
fn an_http_upstream_gets_the_upstream_spans_context_as_headers_too() {
    use sha2::Digest as _;
    let receiver = Receiver::start();
    // The official Python SDK's server over Streamable HTTP; `digest(name)` is the SHA-256 of
    // the request header `name` it received.
    let remote = Peer::start("broker_upstream.py", &["http"]);
    let d = Deployment::new(POLICIES, &telemetry(&receiver.grpc, "grpc"));
    d.write_schema("a?: Long,\n    b?: Long,\n    name?: String,");
    let text = std::fs::read_to_string(d.config()).unwrap().replace(
        "name = \"sample\"\n",
        &format!("name = \"sample\"\nurl = \"http://127.0.0.1:{}/mcp\"\n", remote.port),
    );
    std::fs::write(d.config(), text).unwrap();
    let key = issue_key(&d, "operator");
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = format!("Bearer {key}");
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("Accept", "application/json"),
        ("traceparent", traceparent.as_str()),
    ];
    let (status, _, body) = http("POST", &url, &headers, &call(7, "digest", json!({"name": "traceparent"}), None));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let seen = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    assert!(served.stop().success());

    let spans = receiver.spans_with("execute_tool digest");
    let call = one(&spans, "execute_tool digest");
    assert_eq!(call["parent_span_id"], CLIENT_SPAN, "{call}");
    let upstream = spans
        .iter()
        .find(|s| s["name"] == "tools/call digest" && s["parent_span_id"] == call["span_id"])
        .unwrap_or_else(|| panic!("no upstream span under {call}"));
    let expected = format!("00-{CLIENT_TRACE}-{}-01", upstream["span_id"].as_str().unwrap());
    assert_eq!(seen, hex::encode(sha2::Sha256::digest(expected.as_bytes())), "the header named {expected}");
}

#[test]
fn a_collector_that_is_down_costs_spans_not_calls() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for protocol in ["grpc", "http/protobuf"] {
        let d = Deployment::new(POLICIES, &telemetry(&format!("http://127.0.0.1:{port}"), protocol));
        d.write_schema("a?: Long,\n    b?: Long,");
        let record = d.dir.path().join("upstream.jsonl");
        let upstream = recording_upstream(&record);
        let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
        let mut s = RawSession::start(&d, &["--agent", "operator"], &upstream);
        s.initialize();
        s.send(&call(7, "add", json!({"a": 2, "b": 3}), Some(&format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))));
        let answer = s.recv_answer(&json!(7)).0;
        assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains('5'), "{protocol}: {answer}");
        let started = std::time::Instant::now();
        let (status, _) = s.finish();
        assert!(status.success(), "{protocol}");
        // The shutdown waits for the exporter at most its bound, never for the collector.
        assert!(started.elapsed() < std::time::Duration::from_secs(12), "{protocol}: {:?}", started.elapsed());
        assert_eq!(d.verify_ok(), d.events().len() as u64);
    }
}

/// The metrics `/metrics` shows, pushed over OTLP/gRPC every `metrics_interval_ms` while the
/// gateway runs: the same names (`custos_calls_total` a monotonic sum, `custos_call_duration_seconds`
/// a histogram in seconds), the same labels as attributes, the resource named as the spans'.
#[test]
fn serve_pushes_the_metrics_it_serves_over_grpc_while_it_runs() {
    let receiver = Receiver::start();
    let record = tempfile::NamedTempFile::new().unwrap();
    let settings = format!("{}metrics_interval_ms = 200\n", telemetry(&receiver.grpc, "grpc"));
    let (d, key) = serving_recorded(record.path(), &settings);
    let served = Served::start(&d);
    let url = served.url("sample");
    let session = open_session(&url, &key);
    let auth = format!("Bearer {key}");
    let headers =
        [("Authorization", auth.as_str()), ("Mcp-Session-Id", session.as_str()), ("Accept", "application/json")];
    let (status, _, body) = http("POST", &url, &headers, &call(7, "add", json!({"a": 2, "b": 3}), None));
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http("POST", &url, &headers, &call(8, "delete_everything", json!({}), None));
    assert_eq!(status, 200, "{body}");

    // Pushed while the gateway still runs: the periodic push, not the one at shutdown.
    let (calls, allowed) =
        receiver.metric_point("custos_calls_total", &json!({"agent": "operator", "decision": "allow"}), |p| {
            p["value"] == 1
        });
    assert_eq!(calls["kind"], "sum", "{calls}");
    assert_eq!(calls["service"], "custos-test", "{calls}");
    assert_eq!(allowed["attributes"].as_object().unwrap().len(), 2, "{allowed}");
    receiver.metric_point("custos_calls_total", &json!({"agent": "operator", "decision": "deny"}), |p| p["value"] == 1);
    for stage in ["policy", "audit", "upstream", "whole"] {
        let (duration, point) = receiver
            .metric_point("custos_call_duration_seconds", &json!({"stage": stage}), |p| p["count"].as_u64() >= Some(1));
        assert_eq!(duration["kind"], "histogram", "{duration}");
        assert_eq!(duration["unit"], "s", "{duration}");
        assert!(point["sum"].as_f64().unwrap() > 0.0, "{point}");
    }
    receiver.metric_point("custos_sessions", &json!({"server": "sample"}), |p| p["value"] == 1);
    // The registry's own misuse counter goes out too, every reason present, none counted.
    let (errors, _) =
        receiver.metric_point("custos_metrics_errors_total", &json!({"reason": "label_count"}), |p| p["value"] == 0);
    assert_eq!(errors["kind"], "sum", "{errors}");
    assert!(served.stop().success());
    let raw = receiver.raw();
    assert!(!raw.contains(&key), "the agent's key reached a metric");
}

/// A stdio session shorter than the push interval still gets its metrics out: the push at
/// shutdown, over OTLP/HTTP.
#[test]
fn run_pushes_its_metrics_once_more_at_shutdown_over_http_protobuf() {
    let receiver = Receiver::start();
    // An hour: only the push at shutdown can deliver.
    let settings = format!("{}metrics_interval_ms = 3600000\n", telemetry(&receiver.http, "http/protobuf"));
    let d = Deployment::new(POLICIES, &settings);
    d.write_schema("a?: Long,\n    b?: Long,");
    let record = d.dir.path().join("upstream.jsonl");
    let upstream = recording_upstream(&record);
    let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
    let mut s = RawSession::start(&d, &["--agent", "operator"], &upstream);
    s.initialize();
    s.send(&call(7, "add", json!({"a": 2, "b": 3}), None));
    s.recv_answer(&json!(7));
    assert!(receiver.metrics().is_empty(), "{:?}", receiver.metrics());
    assert!(s.finish().0.success());
    let (calls, _) =
        receiver.metric_point("custos_calls_total", &json!({"agent": "operator", "decision": "allow"}), |p| {
            p["value"] == 1
        });
    assert_eq!(calls["transport"], "http", "{calls}");
}

#[test]
fn bad_telemetry_settings_are_refused_naming_the_key() {
    for (settings, key) in [
        ("endpoint = \"http://127.0.0.1:4317\"\nprotocol = \"udp\"\n", "telemetry.protocol"),
        ("endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 1.5\n", "telemetry.sample_ratio"),
        ("protocol = \"grpc\"\n", "telemetry.endpoint"),
        ("endpoint = \"ftp://collector\"\n", "telemetry.endpoint"),
        ("endpoint = \"http://127.0.0.1:4317\"\nexporter = \"x\"\n", "exporter"),
    ] {
        let d = Deployment::new(POLICIES, &format!("[telemetry]\n{settings}"));
        let out = Command::new(custos_bin())
            .args(["run", "--config"])
            .arg(d.config())
            .args(["--agent", "operator", "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{settings}");
        assert!(stderr.contains(key), "`{key}` not named for {settings:?}: {stderr}");
    }
}
