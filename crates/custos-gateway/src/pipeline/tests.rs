//! The pipeline on a real store, driven frame by frame as a transport would: which answers from
//! an upstream (and from the client) are relayed, and how a renamed tool is quarantined.

use std::path::PathBuf;

use custos_core::{AgentId, EventKind, ToolRef};
use custos_store::{EventQuery, SqlStore, Store, ToolPins};
use serde_json::{json, Value};

use super::*;

const PERMIT_ALL: &str = r#"permit (principal, action == Custos::Action::"call_tool", resource);"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    gateway: Gateway,
}

fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custos.db");
    let audit = AuditLog::start(Box::new(SqlStore::open(&path).unwrap())).unwrap();
    let policy =
        PolicyEngine::from_sources(custos_policy::EMBEDDED_SCHEMA, &[("p.cedar".into(), PERMIT_ALL.into())]).unwrap();
    let detection = Detection::new(Default::default(), Some(SqlStore::open_read_only(&path).unwrap()), Vec::new());
    let gateway = Gateway::new(GatewaySpec {
        agent: Agent { id: AgentId("bot".into()), owner: "ops".into(), purpose: "tests".into(), groups: Vec::new() },
        principal: Vec::new(),
        run: RunId("run-1".into()),
        parent_run: None,
        shared_steps: None,
        first_step_after: 0,
        server: "s".into(),
        classes: Default::default(),
        policy: Arc::new(policy),
        audit,
        tools_list: ToolsListMode::Show,
        audit_config: Default::default(),
        limits,
        known_tools: Vec::new(),
        metrics: GatewayMetrics::register(&custos_metrics::Registry::new()),
        tracer: custos_telemetry::CallTracer::default(),
        approvals: None,
        broker: None,
        detection: Arc::new(detection),
        run_state: None,
        flows: Default::default(),
        quarantined: Vec::new(),
    });
    Fixture { _dir: dir, path, gateway }
}

fn frame(v: Value) -> Frame {
    Frame::Line(serde_json::to_vec(&v).unwrap())
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

impl Fixture {
    fn events(&self, kind: EventKind) -> Vec<NewEvent> {
        let store = SqlStore::open_read_only(&self.path).unwrap();
        let q = EventQuery { kind: Some(kind), ..EventQuery::default() };
        store.query(&q).unwrap().into_iter().map(|e| e.event).collect()
    }

    /// A request from the client, forwarded.
    async fn forwarded(&self, request: Value) {
        let outcome = self.gateway.from_client(frame(request.clone())).await;
        assert_eq!(outcome, Outcome::Forward(bytes(&request)));
    }

    async fn upstream_says(&self, message: &Value) -> Outcome {
        self.gateway.from_upstream(frame(message.clone())).await
    }

    /// The upstream lists `tools`, in answer to a `tools/list` with `id`.
    async fn listed(&self, id: u64, tools: Value) {
        self.forwarded(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})).await;
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}});
        assert_eq!(self.upstream_says(&answer).await, Outcome::Forward(bytes(&answer)));
    }

    async fn call(&self, id: u64, name: &str) -> Outcome {
        let call =
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}}});
        self.gateway.from_client(frame(call)).await
    }
}

fn ok(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}})
}

/// The error an answer carries, parsed.
fn error_of(outcome: Outcome) -> Value {
    let Outcome::Answer(raw) = outcome else { panic!("expected an answer, got {outcome:?}") };
    serde_json::from_slice::<Value>(&raw).unwrap()
}

#[tokio::test]
async fn an_upstream_answer_to_an_id_not_forwarded_or_already_answered_is_dropped_and_recorded() {
    let f = fixture(Limits::default());
    // Made up: nothing was forwarded yet.
    assert_eq!(f.upstream_says(&ok(json!(99))).await, Outcome::Drop);
    // A forwarded ping is answered once; the second answer is not relayed.
    f.forwarded(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"})).await;
    let pong = json!({"jsonrpc": "2.0", "id": "p", "result": {}});
    assert_eq!(f.upstream_says(&pong).await, Outcome::Forward(bytes(&pong)));
    assert_eq!(f.upstream_says(&pong).await, Outcome::Drop);
    // An id the client uses for a call still being decided (or held) is not the upstream's to
    // answer: dropped, and the call is still the client's to make.
    f.gateway.pending().reserve(&RawValue::from_string("7".into()).unwrap(), "tools/call").unwrap();
    assert_eq!(f.upstream_says(&ok(json!(7))).await, Outcome::Drop);
    assert_eq!(f.gateway.pending().len(), 1);

    let errors = f.events(EventKind::ProtocolError);
    let seen: Vec<(&Value, &Value, &Value)> =
        errors.iter().map(|e| (&e.detail["from"], &e.detail["request_id"], &e.detail["code"])).collect();
    assert_eq!(
        seen,
        [
            (&json!("upstream"), &json!("99"), &json!(codes::INVALID_REQUEST)),
            (&json!("upstream"), &json!("\"p\""), &json!(codes::INVALID_REQUEST)),
            (&json!("upstream"), &json!("7"), &json!(codes::INVALID_REQUEST)),
        ]
    );
    assert!(errors[2].detail["reason"].as_str().unwrap().contains("not forwarded"), "{:?}", errors[2].detail);
    assert_eq!(errors[0].agent, Some(AgentId("bot".into())));
}

#[tokio::test]
async fn a_call_the_client_cancelled_still_has_its_answer_recorded_then_a_second_answer_is_dropped() {
    let f = fixture(Limits::default());
    assert!(matches!(f.call(3, "echo").await, Outcome::Forward(_)));
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}});
    assert_eq!(f.gateway.from_client(frame(cancel.clone())).await, Outcome::Forward(bytes(&cancel)));
    let answer = ok(json!(3));
    assert_eq!(f.upstream_says(&answer).await, Outcome::Forward(bytes(&answer)));
    let finished = f.events(EventKind::CallFinished);
    assert_eq!(finished.len(), 1);
    assert_eq!((&finished[0].detail["outcome"], &finished[0].detail["cancelled"]), (&json!("ok"), &json!(true)));
    assert_eq!(f.upstream_says(&answer).await, Outcome::Drop);
    assert_eq!(f.events(EventKind::CallFinished).len(), 1, "one call, one call.finished");
    assert_eq!(f.events(EventKind::ProtocolError).len(), 1);
}

#[tokio::test]
async fn the_clients_answers_reach_the_upstream_only_for_requests_it_sent() {
    let f = fixture(Limits { max_pending_requests: 1, ..Limits::default() });
    let sampling = json!({"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage", "params": {}});
    assert_eq!(f.upstream_says(&sampling).await, Outcome::Forward(bytes(&sampling)));
    // Past the limit of unanswered requests to the client: refused to the upstream.
    let roots = json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"});
    let refused = error_of(f.upstream_says(&roots).await);
    assert_eq!((&refused["id"], &refused["error"]["code"]), (&json!(1), &json!(codes::INVALID_REQUEST)));

    let answer = json!({"jsonrpc": "2.0", "id": 0, "result": {"content": {"type": "text", "text": "hi"}}});
    assert_eq!(f.gateway.from_client(frame(answer.clone())).await, Outcome::Forward(bytes(&answer)));
    // Again, and to an id the upstream never used: refused, without an id the client may use.
    for id in [json!(0), json!("made-up")] {
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {}});
        let refused = error_of(f.gateway.from_client(frame(answer)).await);
        assert_eq!((&refused["id"], &refused["error"]["code"]), (&Value::Null, &json!(codes::INVALID_REQUEST)));
    }
    let errors = f.events(EventKind::ProtocolError);
    let seen: Vec<(&Value, &Value)> = errors.iter().map(|e| (&e.detail["from"], &e.detail["request_id"])).collect();
    assert_eq!(
        seen,
        [(&json!("upstream"), &json!("1")), (&json!("client"), &json!("0")), (&json!("client"), &json!("\"made-up\""))]
    );
    // The upstream gone, its unanswered requests go with it.
    f.upstream_says(&roots).await;
    f.gateway.upstream_gone("exit code 1").await;
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
    assert!(matches!(f.gateway.from_client(frame(answer)).await, Outcome::Answer(_)));
}

#[tokio::test]
async fn a_renamed_tool_is_refused_naming_the_tool_it_resembles_until_accepted() {
    let f = fixture(Limits::default());
    let schema = json!({"type": "object", "properties": {"order": {"type": "string"}}});
    f.listed(1, json!([{"name": "refund", "description": "Refund an order.", "inputSchema": schema}])).await;
    assert!(matches!(f.call(2, "refund").await, Outcome::Forward(_)));
    assert!(matches!(f.upstream_says(&ok(json!(2))).await, Outcome::Forward(_)));

    // The upstream renames it: same descriptor, another name, the old one gone.
    f.listed(3, json!([{"name": "Refund", "description": "Refund an order.", "inputSchema": schema}])).await;
    let refused = error_of(f.call(4, "Refund").await);
    assert_eq!(refused["error"]["code"], json!(codes::DENIED));
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("resembles `s/refund`") && message.contains("custos tools accept s/Refund"), "{message}");
    let findings = f.events(EventKind::FindingRecorded);
    let rug_pulls: Vec<(&Value, &Value)> = findings
        .iter()
        .filter(|e| e.detail["finding"] == "rug_pull")
        .map(|e| (&e.detail["rule"], &e.detail["action"]))
        .collect();
    assert_eq!(
        rug_pulls,
        [(&json!("renamed"), &json!("quarantined")), (&json!("quarantined"), &json!("denied"))],
        "the listing's finding, then the refused call's"
    );

    // An operator accepts it (another process, the same database): it runs at once.
    let mut operator = SqlStore::open(&f.path).unwrap();
    let mut event = NewEvent::new(EventKind::ToolAccepted, 1);
    event.tool = Some(ToolRef::new("s", "Refund").unwrap());
    event.detail = json!({});
    operator.accept_tool(&ToolRef::new("s", "Refund").unwrap(), "alice", &event).unwrap();
    assert!(matches!(f.call(5, "Refund").await, Outcome::Forward(_)));
}
