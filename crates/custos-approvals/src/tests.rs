//! The approval queue against a real SQLite file, with second store handles standing in for
//! other processes, and a real local HTTP receiver for webhooks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custos_config::{ApprovalSettings, ApproverGroup, Webhook};
use custos_core::{Agent, AgentId, EventKind, RunId, ToolRef};
use custos_store::{AuditLog, EventQuery, SqlStore, Store, StoredEvent};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::*;

/// The longest any test waits for something (a bound, not a synchronisation).
const BOUND: Duration = Duration::from_secs(20);

/// An approver named on the command line.
fn asserted(name: &str) -> crate::Approver {
    crate::Approver::asserted(name, crate::ApproverMethod::Cli)
}

fn group(name: &str, members: &[&str]) -> ApproverGroup {
    ApproverGroup {
        name: name.into(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        idp_groups: Vec::new(),
        webhook: None,
    }
}

fn settings() -> ApprovalSettings {
    ApprovalSettings {
        groups: vec![
            // `alice` is the human the agent acts for; `pay-bot` is the agent itself.
            group("finance", &["carol@example.com", "alice@example.com", "pay-bot"]),
            group("ops", &["dave@example.com"]),
        ],
        admin_url: Some("https://admin.example".into()),
        console_url: Some("https://console.example".into()),
        ..ApprovalSettings::default()
    }
}

/// One "process": its own store connection, audit writer and approval queue.
struct Handle {
    audit: AuditLog,
    approvals: Approvals,
}

impl Handle {
    fn open(db: &Path, settings: ApprovalSettings) -> Self {
        let audit = AuditLog::start(Box::new(SqlStore::open(db).unwrap())).unwrap();
        let approvals = Approvals::new(audit.clone(), db, settings).unwrap();
        Self { audit, approvals }
    }
}

struct Fixture {
    _dir: TempDir,
    db: PathBuf,
    main: Handle,
}

impl Fixture {
    fn new(settings: ApprovalSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("custos.db");
        let main = Handle::open(&db, settings);
        Self { _dir: dir, db, main }
    }

    /// Another process on the same database.
    fn other(&self, settings: ApprovalSettings) -> Handle {
        Handle::open(&self.db, settings)
    }

    async fn events(&self, kind: EventKind) -> Vec<StoredEvent> {
        self.main.audit.flush().await.unwrap();
        let store = SqlStore::open_read_only(&self.db).unwrap();
        store.query(&EventQuery { kind: Some(kind), ..EventQuery::default() }).unwrap()
    }
}

/// The parts of a held call, owned; [`Call::get`] borrows them as a [`CallToApprove`].
#[derive(Clone)]
struct Call {
    agent: Agent,
    principal: Vec<String>,
    run: RunId,
    tool: ToolRef,
    descriptor: Option<String>,
    arguments: Value,
    policies: Vec<String>,
    groups: Vec<String>,
}

impl Call {
    fn new() -> Self {
        Self {
            agent: Agent {
                id: AgentId("pay-bot".into()),
                owner: "finance@example.com".into(),
                purpose: "payments".into(),
                groups: vec!["payers".into()],
            },
            principal: vec!["alice@example.com".into(), "pay-bot".into()],
            run: RunId("run-1".into()),
            tool: ToolRef::new("bank", "transfer").unwrap(),
            descriptor: Some("d".repeat(64)),
            arguments: json!({"to": "ACME", "amount": 1200, "password": "hunter2-hunter2"}),
            policies: vec!["transfers-need-finance".into()],
            groups: vec!["finance".into()],
        }
    }

    fn get(&self) -> CallToApprove<'_> {
        CallToApprove {
            agent: &self.agent,
            principal: &self.principal,
            run: &self.run,
            step: 3,
            tool: &self.tool,
            descriptor_sha256: self.descriptor.clone(),
            arguments: &self.arguments,
            policies: &self.policies,
            groups: &self.groups,
        }
    }

    fn digest(&self) -> String {
        call_digest(&self.agent.id, &self.run, &self.tool, self.descriptor.as_deref(), &self.arguments)
    }
}

#[test]
fn the_handle_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Approvals>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_call_gets_the_same_request_and_any_change_a_new_one() {
    let f = Fixture::new(settings());
    let call = Call::new();
    let first = f.main.approvals.hold(&call.get()).await.unwrap();
    assert!(first.id.starts_with("apr_") && first.id.len() == 4 + 32, "{}", first.id);
    assert_eq!(first.state, ApprovalState::Pending);
    assert_eq!(first.digest, call.digest());
    assert_eq!(first.arguments, json!({"to": "ACME", "amount": 1200, "password": REDACTED}));
    assert_eq!((first.step, first.expires_ms - first.created_ms), (3, 900_000));

    // A retry after a timeout, even from another process, is matched to the same request.
    let again = f.other(settings()).approvals.hold(&call.get()).await.unwrap();
    assert_eq!(again.id, first.id);

    let mut changed = Vec::new();
    for change in 0..4 {
        let mut c = call.clone();
        match change {
            0 => c.arguments["amount"] = json!(1201),
            1 => c.run = RunId("run-2".into()),
            2 => c.descriptor = Some("e".repeat(64)),
            _ => c.tool = ToolRef::new("bank", "transfer_v2").unwrap(),
        }
        let request = f.main.approvals.hold(&c.get()).await.unwrap();
        assert_ne!(request.id, first.id, "change {change}");
        assert_ne!(request.digest, first.digest, "change {change}");
        changed.push(request.id);
    }
    changed.sort();
    changed.dedup();
    assert_eq!(changed.len(), 4);

    let requested = f.events(EventKind::ApprovalRequested).await;
    assert_eq!(requested.len(), 5);
    let event = &requested[0].event;
    assert_eq!(event.agent.as_ref().map(|a| a.0.as_str()), Some("pay-bot"));
    assert_eq!((event.run.as_ref().map(|r| r.0.as_str()), event.step), (Some("run-1"), Some(3)));
    assert_eq!(event.detail["id"], json!(first.id));
    assert_eq!(event.detail["groups"], json!(["finance"]));
    assert_eq!(event.detail["policies"], json!(["transfers-need-finance"]));
    assert_eq!(event.detail["principal"], json!(["alice@example.com", "pay-bot"]));
    assert_eq!(event.detail["digest"], json!(call.digest()));
    // The secret never reached the database file, its WAL or any event.
    for entry in std::fs::read_dir(f.db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(15).any(|w| w == b"hunter2-hunter2"), "the secret leaked to disk");
    }
    assert!(SqlStore::open_read_only(&f.db).unwrap().verify().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_group_member_other_than_the_agent_and_its_principal_may_decide() {
    let f = Fixture::new(settings());
    let call = Call::new();
    let id = f.main.approvals.hold(&call.get()).await.unwrap().id;
    let decide = |who: &'static str, verdict, reason: Option<&'static str>| {
        let approvals = f.main.approvals.clone();
        let id = id.clone();
        async move { approvals.decide(&id, &asserted(who), verdict, reason).await }
    };

    let err = decide("dave@example.com", Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::NotInGroup { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Approver);
    assert!(err.to_string().contains("`dave@example.com`") && err.to_string().contains("`finance`"), "{err}");
    // The agent is listed in the group by mistake: still its own call.
    let err = decide("pay-bot", Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::SelfApproval { .. }), "{err}");
    let err = decide("alice@example.com", Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::PrincipalApproval { .. }), "{err}");
    assert!(err.is_approver_fault());
    let err = decide("carol@example.com", Verdict::Deny, Some("  ")).await.unwrap_err();
    assert!(matches!(err, ApprovalError::ReasonRequired), "{err}");
    let err = decide("", Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::InvalidApprover { .. }), "{err}");
    let err =
        f.main.approvals.decide("apr_nope", &asserted("carol@example.com"), Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Unknown { .. }) && err.is_approver_fault(), "{err}");
    assert_eq!(f.main.approvals.get(&id).unwrap().unwrap().state, ApprovalState::Pending);

    let approved = decide("carol@example.com", Verdict::Approve, Some("invoice 42 checked")).await.unwrap();
    match &approved.state {
        ApprovalState::Approved { by, reason, .. } => {
            assert_eq!((by.as_str(), reason.as_deref()), ("carol@example.com", Some("invoice 42 checked")));
        }
        other => panic!("{other:?}"),
    }
    let err = decide("carol@example.com", Verdict::Deny, Some("changed my mind")).await.unwrap_err();
    assert!(matches!(err, ApprovalError::AlreadyDecided { state: "approved", .. }), "{err}");

    let refused = f.events(EventKind::ApprovalRefused).await;
    let who: Vec<(&str, &str)> = refused
        .iter()
        .map(|e| (e.event.detail["approver"].as_str().unwrap(), e.event.detail["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("dave@example.com", "the approver is not a member of the request's approver groups"),
            ("pay-bot", "an agent cannot approve its own call"),
            ("alice@example.com", "the approver is the principal the agent acts for"),
            ("carol@example.com", "unknown approval"),
            ("carol@example.com", "already approved"),
        ]
    );
    assert_eq!(f.events(EventKind::ApprovalApproved).await.len(), 1);

    // Separation of duties from the principal is configurable; from the agent it is not.
    let lenient = ApprovalSettings { allow_principal_approval: true, ..settings() };
    let other = f.other(lenient);
    let mut call2 = call.clone();
    call2.arguments["amount"] = json!(5);
    let id2 = other.approvals.hold(&call2.get()).await.unwrap().id;
    let denied = other
        .approvals
        .decide(&id2, &asserted("alice@example.com"), Verdict::Deny, Some("not this one"))
        .await
        .unwrap();
    assert!(matches!(denied.state, ApprovalState::Denied { ref by, .. } if by == "alice@example.com"));
    assert_eq!(f.events(EventKind::ApprovalDenied).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_used_once_even_when_two_identical_calls_race() {
    let f = Fixture::new(settings());
    let call = Call::new();
    let digest = call.digest();
    let id = f.main.approvals.hold(&call.get()).await.unwrap().id;

    // Not approved yet: nothing to use.
    let err = f.main.approvals.consume(&id, &digest).await.unwrap_err();
    assert!(matches!(err, ApprovalError::NotApproved { state: "pending", .. }), "{err}");
    f.main.approvals.decide(&id, &asserted("carol@example.com"), Verdict::Approve, None).await.unwrap();
    // An approved-and-unused request is still the open one for the call.
    assert_eq!(f.main.approvals.hold(&call.get()).await.unwrap().id, id);

    // Another call presenting this approval is refused; the approval stays usable.
    let mut other_call = call.clone();
    other_call.arguments["amount"] = json!(9999);
    let err = f.main.approvals.consume(&id, &other_call.digest()).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Mismatch { .. }) && err.fault() == Fault::Agent, "{err}");

    // Two identical calls, one in this process and one in another, race for it.
    let other = f.other(settings());
    let (a, b) = tokio::join!(f.main.approvals.consume(&id, &digest), other.approvals.consume(&id, &digest));
    let outcomes = [a, b];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|r| matches!(r, Err(ApprovalError::Replayed { .. }))), "{outcomes:?}");
    assert!(matches!(f.main.approvals.get(&id).unwrap().unwrap().state, ApprovalState::Used { .. }));

    // A later replay is refused and recorded too.
    let err = other.approvals.consume(&id, &digest).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Replayed { .. }), "{err}");
    other.audit.flush().await.unwrap();
    assert_eq!(f.events(EventKind::ApprovalUsed).await.len(), 1);
    let replays = f.events(EventKind::ApprovalReplayRefused).await;
    let reasons: Vec<&str> = replays.iter().map(|e| e.event.detail["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["not approved (pending)", "the call does not match the approved digest", "already used", "already used"]
    );

    // Used is not open: the same call again needs a new approval.
    assert_ne!(f.main.approvals.hold(&call.get()).await.unwrap().id, id);
    assert!(SqlStore::open_read_only(&f.db).unwrap().verify().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_in_another_process_is_seen_and_used_there() {
    let f = Fixture::new(settings());
    let call = Call::new();
    let id = f.main.approvals.hold(&call.get()).await.unwrap().id;
    let cli = f.other(settings());

    // The gateway waits; the approver decides from "another terminal"; the wait sees it by
    // polling the store.
    let approvals = f.main.approvals.clone();
    let waiter = {
        let id = id.clone();
        tokio::spawn(async move { approvals.wait(&id, Instant::now() + BOUND).await })
    };
    cli.approvals.decide(&id, &asserted("carol@example.com"), Verdict::Approve, Some("ok")).await.unwrap();
    let state = tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap().unwrap();
    assert!(matches!(state, ApprovalState::Approved { ref by, .. } if by == "carol@example.com"), "{state:?}");

    // Used through the other handle; this one sees the use.
    cli.approvals.consume(&id, &call.digest()).await.unwrap();
    let err = f.main.approvals.consume(&id, &call.digest()).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Replayed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_through_the_same_handle_wakes_the_waiter_at_once() {
    let mut f = Fixture::new(settings());
    // No polling within the test's bound: only the in-process notification can wake the wait.
    f.main.approvals.set_poll_interval(Duration::from_secs(3600));
    let call = Call::new();
    let id = f.main.approvals.hold(&call.get()).await.unwrap().id;
    let approvals = f.main.approvals.clone();
    let waiter = {
        let id = id.clone();
        tokio::spawn(async move {
            let state = approvals.wait(&id, Instant::now() + BOUND).await;
            (state, Instant::now())
        })
    };
    let decided =
        f.main.approvals.decide(&id, &asserted("carol@example.com"), Verdict::Deny, Some("no")).await.unwrap();
    let at = Instant::now();
    let (state, woke) = tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap();
    assert_eq!(state.unwrap(), decided.state);
    assert!(woke.saturating_duration_since(at) < BOUND);

    // A wait with a deadline and no decision returns pending at the deadline.
    let mut call2 = call.clone();
    call2.arguments["amount"] = json!(1);
    let id2 = f.main.approvals.hold(&call2.get()).await.unwrap().id;
    let state = f.main.approvals.wait(&id2, Instant::now() + Duration::from_millis(50)).await.unwrap();
    assert_eq!(state, ApprovalState::Pending);
    let err = f.main.approvals.wait("apr_nope", Instant::now() + BOUND).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Unknown { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_can_be_neither_decided_nor_used() {
    // Requests that live 300 ms: the wait below ends at the expiry itself.
    let short = ApprovalSettings { expiry_ms: 300, ..settings() };
    let f = Fixture::new(short.clone());
    let call = Call::new();
    let request = f.main.approvals.hold(&call.get()).await.unwrap();
    let state = f.main.approvals.wait(&request.id, Instant::now() + BOUND).await.unwrap();
    assert_eq!(state, ApprovalState::Expired);
    assert_eq!(f.events(EventKind::ApprovalExpired).await.len(), 1);

    let err =
        f.main.approvals.decide(&request.id, &asserted("carol@example.com"), Verdict::Approve, None).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Expired { .. }) && err.is_approver_fault(), "{err}");
    let err = f.main.approvals.consume(&request.id, &call.digest()).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Expired { .. }), "{err}");
    // The same call again opens a new request.
    let again = f.main.approvals.hold(&call.get()).await.unwrap();
    assert_ne!(again.id, request.id);
    assert_eq!(f.main.approvals.list(ApprovalFilter::pending()).unwrap().len(), 1);
    let expired = ApprovalFilter { status: Some(ApprovalStatus::Expired), limit: None };
    assert_eq!(f.main.approvals.list(expired).unwrap()[0].id, request.id);
    assert_eq!(f.main.approvals.list(ApprovalFilter::default()).unwrap().len(), 2);
}

/// A local HTTP receiver answering with `statuses` in turn (the last one from then on), and
/// handing each request's signature header and body to the test.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/custos?team=finance", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut raw = Vec::new();
            let (head_len, length) = loop {
                let mut buf = [0u8; 4096];
                let read = socket.read(&mut buf).await.unwrap();
                assert!(read > 0, "the client closed before sending a whole request");
                raw.extend_from_slice(&buf[..read]);
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (end + 4, length);
                }
            };
            while raw.len() < head_len + length {
                let mut buf = [0u8; 4096];
                let read = socket.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..read]);
            }
            let head = String::from_utf8_lossy(&raw[..head_len]).into_owned();
            let signature = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("custos-signature")))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default();
            assert!(head.starts_with("POST /hooks/custos?team=finance HTTP/1.1"), "{head}");
            let status = statuses.get(n).or(statuses.last()).copied().unwrap();
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(answer.as_bytes()).await.unwrap();
            let _ = tx.send((signature, raw[head_len..].to_vec()));
        }
    });
    (url, rx)
}

fn with_webhook(dir: &Path, url: &str, secret: &[u8]) -> ApprovalSettings {
    let secret_file = dir.join("finance.secret");
    std::fs::write(&secret_file, [secret, b"\n"].concat()).unwrap();
    let mut s = settings();
    s.groups[0].webhook = Some(Webhook { url: url.into(), secret_file });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_after_errors_and_every_attempt_recorded() {
    let secret = b"finance-webhook-secret-0123456789";
    let f = Fixture::new(settings());
    let call = Call::new();
    // The request comes from a handle without webhooks, so this test owns every delivery.
    let request = f.main.approvals.hold(&call.get()).await.unwrap();

    let (url, mut received) = receiver(vec![500, 500, 200]).await;
    let mut notifying = f.other(with_webhook(f.db.parent().unwrap(), &url, secret)).approvals;
    notifying.shorten_webhook_backoff(Duration::from_millis(20));
    for task in notifying.announce_for_test(&request) {
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    }
    let mut deliveries = Vec::new();
    while let Ok(delivery) = received.try_recv() {
        deliveries.push(delivery);
    }
    assert_eq!(deliveries.len(), 3, "two 500s, then delivered: three attempts");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (signature, body) in &deliveries {
        assert!(webhook::verify(secret, signature, body, now, 300), "{signature}");
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert!(!webhook::verify(secret, signature, &tampered, now, 300));
        assert!(!webhook::verify(b"not-the-secret-at-all", signature, body, now, 300));
    }
    let body: Value = serde_json::from_slice(&deliveries[2].1).unwrap();
    assert_eq!(body["url"], json!(format!("https://admin.example/v1/approvals/{}", request.id)));
    assert_eq!(body["console_url"], json!(format!("https://console.example/console/approvals/{}", request.id)));
    assert_eq!(body["group"], "finance");
    assert_eq!(body["approval"]["id"], json!(request.id));
    assert_eq!(body["approval"]["digest"], json!(call.digest()));
    assert_eq!(body["approval"]["tool"], "bank/transfer");
    assert_eq!(body["approval"]["arguments"]["password"], REDACTED);

    let attempts = f.events(EventKind::ApprovalNotified).await;
    let seen: Vec<(u64, Value, bool)> = attempts
        .iter()
        .map(|e| {
            let d = &e.event.detail;
            (d["attempt"].as_u64().unwrap(), d["status"].clone(), d["delivered"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(seen, [(1, json!(500), false), (2, json!(500), false), (3, json!(200), true)]);
    let detail = attempts[0].event.detail.to_string();
    assert!(!detail.contains("team=finance") && !detail.contains("finance-webhook-secret"), "{detail}");

    // A receiver that keeps failing gets five attempts, then no more.
    let (url, mut received) = receiver(vec![503]).await;
    let mut notifying = f.other(with_webhook(f.db.parent().unwrap(), &url, secret)).approvals;
    notifying.shorten_webhook_backoff(Duration::from_millis(20));
    for task in notifying.announce_for_test(&request) {
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    }
    let mut count = 0;
    while received.try_recv().is_ok() {
        count += 1;
    }
    assert_eq!(count, 5);
    assert_eq!(f.events(EventKind::ApprovalNotified).await.len(), 3 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_settings_are_checked_at_start_up_without_revealing_the_secret() {
    let f = Fixture::new(settings());
    let dir = f.db.parent().unwrap();
    let audit = f.main.audit.clone();
    let short = with_webhook(dir, "http://127.0.0.1:9/x", b"short");
    let err = Approvals::new(audit.clone(), &f.db, short).unwrap_err().to_string();
    assert!(err.contains("finance.secret") && err.contains("too short") && !err.contains("short\n"), "{err}");
    let mut missing = settings();
    missing.groups[0].webhook = Some(Webhook { url: "http://127.0.0.1:9/x".into(), secret_file: dir.join("nope") });
    let err = Approvals::new(audit, &f.db, missing).unwrap_err();
    assert!(matches!(err, ApprovalError::Secret { .. }) && err.fault() == Fault::Gateway, "{err}");
}
