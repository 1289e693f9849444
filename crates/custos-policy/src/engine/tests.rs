//! The engine end to end: policies in, decisions out.

use std::path::PathBuf;

use custos_core::{Agent, AgentId, Decision, ToolClass, ToolRef};
use serde_json::{json, Value};

use crate::{CallRequest, PolicyEffect, PolicyEngine, PolicyError, SchemaSource, ToolInfo, EMBEDDED_SCHEMA};

/// The call-tool scope most test policies use.
const CALL: &str = r#"action == Custos::Action::"call_tool""#;

fn engine(files: &[(&str, &str)]) -> PolicyEngine {
    try_engine(files).unwrap_or_else(|e| panic!("{e}"))
}

fn try_engine(files: &[(&str, &str)]) -> Result<PolicyEngine, PolicyError> {
    let sources: Vec<(String, String)> =
        files.iter().map(|(name, text)| ((*name).to_owned(), text.replace("CALL", CALL))).collect();
    PolicyEngine::from_sources(EMBEDDED_SCHEMA, &sources)
}

fn agent(id: &str, groups: &[&str]) -> Agent {
    Agent {
        id: AgentId(id.to_owned()),
        owner: "team-a".to_owned(),
        purpose: "testing".to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

/// A call to decide; fields are set per test before `decide`.
struct Call {
    agent: Agent,
    tool: ToolRef,
    class: ToolClass,
    annotations: Option<Value>,
    arguments: Value,
    labels: Vec<String>,
    findings: Vec<String>,
    flows: Vec<String>,
    approved: bool,
}

impl Call {
    fn new(agent: Agent, tool: &str, class: ToolClass) -> Self {
        Self {
            agent,
            tool: tool.parse().unwrap(),
            class,
            annotations: None,
            arguments: json!({}),
            labels: Vec::new(),
            findings: Vec::new(),
            flows: Vec::new(),
            approved: false,
        }
    }

    fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn findings(mut self, findings: &[&str]) -> Self {
        self.findings = findings.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn flows(mut self, flows: &[&str]) -> Self {
        self.flows = flows.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn args(mut self, arguments: Value) -> Self {
        self.arguments = arguments;
        self
    }

    /// The same call, approved by a human.
    fn approved(mut self) -> Self {
        self.approved = true;
        self
    }

    fn info(&self) -> ToolInfo<'_> {
        ToolInfo { tool: &self.tool, class: self.class, annotations: self.annotations.as_ref() }
    }

    fn request(&self) -> CallRequest<'_> {
        CallRequest {
            agent: &self.agent,
            tool: self.info(),
            arguments: &self.arguments,
            run_id: "run-1",
            step: 3,
            labels: &self.labels,
            findings: &self.findings,
            flows: &self.flows,
            approval_granted: self.approved,
        }
    }

    fn decide(&self, engine: &PolicyEngine) -> Decision {
        engine.decide(&self.request())
    }
}

fn allowed_by(ids: &[&str]) -> Decision {
    Decision::Allow { policies: ids.iter().map(|s| (*s).to_owned()).collect() }
}

fn denied_by(decision: &Decision) -> Vec<&str> {
    match decision {
        Decision::Deny { policies, .. } => policies.iter().map(String::as_str).collect(),
        Decision::Allow { .. } | Decision::Hold { .. } => panic!("expected a deny, got {decision:?}"),
    }
}

fn reason(decision: &Decision) -> &str {
    match decision {
        Decision::Deny { reason, .. } => reason,
        Decision::Allow { .. } | Decision::Hold { .. } => panic!("expected a deny, got {decision:?}"),
    }
}

fn held(policies: &[&str], groups: &[&str], reason: &str) -> Decision {
    Decision::Hold {
        policies: policies.iter().map(|s| (*s).to_owned()).collect(),
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        reason: reason.to_owned(),
    }
}

fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ---- decisions ----

#[test]
fn permit_by_group() {
    let e = engine(&[("readers.cedar", r#"permit (principal in Custos::Group::"readers", CALL, resource);"#)]);
    let reader = Call::new(agent("bot", &["other", "readers"]), "files/read", ToolClass::Read);
    assert_eq!(reader.decide(&e), allowed_by(&["readers:0"]));
    let outsider = Call::new(agent("bot", &["other"]), "files/read", ToolClass::Read);
    assert_eq!(denied_by(&outsider.decide(&e)), Vec::<&str>::new());
}

#[test]
fn permit_by_tool_class_and_server() {
    let e = engine(&[(
        "classes.cedar",
        r#"permit (principal, CALL, resource) when { resource.class == "read" };
           permit (principal, CALL, resource in Custos::Server::"tickets")
           when { resource.name == "comment" && resource.annotations has readOnlyHint && !resource.annotations.readOnlyHint };"#,
    )]);
    let bot = agent("bot", &[]);
    assert_eq!(Call::new(bot.clone(), "files/read", ToolClass::Read).decide(&e), allowed_by(&["classes:0"]));
    assert!(!Call::new(bot.clone(), "files/write", ToolClass::Write).decide(&e).is_allow());

    let mut comment = Call::new(bot, "tickets/comment", ToolClass::Write);
    assert!(!comment.decide(&e).is_allow(), "no annotations: the `has` test fails");
    comment.annotations = Some(json!({"readOnlyHint": false, "title": "not a hint", "destructiveHint": "yes"}));
    assert_eq!(comment.decide(&e), allowed_by(&["classes:1"]));
}

#[test]
fn default_deny_and_empty_policy_set() {
    let e = engine(&[]);
    assert!(e.is_empty());
    assert_eq!(e.len(), 0);
    let d = Call::new(agent("bot", &[]), "files/read", ToolClass::Read).decide(&e);
    assert_eq!(d, Decision::Deny { policies: vec![], reason: "no policy permits this call (default deny)".to_owned() });
}

#[test]
fn forbid_on_an_argument() {
    let e = engine(&[(
        "refunds.cedar",
        r#"permit (principal, CALL, resource == Custos::Tool::"payments/refund");
           forbid (principal, CALL, resource)
           when { context.arguments has amount && context.arguments.amount > 100 };"#,
    )]);
    let bot = agent("bot", &[]);
    let small = Call::new(bot.clone(), "payments/refund", ToolClass::Write).args(json!({"amount": 40, "note": "x"}));
    assert_eq!(small.decide(&e), allowed_by(&["refunds:0"]));
    let none = Call::new(bot.clone(), "payments/refund", ToolClass::Write).args(json!({"amount": null}));
    assert_eq!(none.decide(&e), allowed_by(&["refunds:0"]));
    let big = Call::new(bot, "payments/refund", ToolClass::Write).args(json!({"amount": 250}));
    let d = big.decide(&e);
    assert_eq!(denied_by(&d), ["refunds:1"]);
    assert_eq!(reason(&d), "forbidden by policy");
}

#[test]
fn forbid_beats_permit() {
    let e = engine(&[(
        "p.cedar",
        r#"permit (principal, CALL, resource);
           permit (principal in Custos::Group::"ops", CALL, resource);
           forbid (principal, CALL, resource) when { context.run.labels.contains("untrusted_input") };"#,
    )]);
    let mut call = Call::new(agent("bot", &["ops"]), "shell/exec", ToolClass::Privileged);
    assert_eq!(call.decide(&e), allowed_by(&["p:0", "p:1"]));
    call.labels = vec!["read_sensitive".to_owned(), "untrusted_input".to_owned()];
    assert_eq!(denied_by(&call.decide(&e)), ["p:2"]);
}

#[test]
fn run_facts_reach_policies() {
    let e = engine(&[(
        "run.cedar",
        r#"permit (principal, CALL, resource) when { context.run.id == "run-1" && context.run.step == 3 };"#,
    )]);
    assert!(Call::new(agent("bot", &[]), "a/b", ToolClass::Read).decide(&e).is_allow());
}

#[test]
fn an_erroring_policy_denies_even_when_permits_match() {
    // The schema says `amount` is a Long; at run time it is a string, so `>` fails to evaluate.
    let e = engine(&[(
        "limits.cedar",
        r#"permit (principal, CALL, resource);
           @id("amount-cap")
           forbid (principal, CALL, resource)
           when { context.arguments has amount && context.arguments.amount > 100 };"#,
    )]);
    let call = Call::new(agent("bot", &[]), "payments/refund", ToolClass::Write).args(json!({"amount": "lots"}));
    let d = call.decide(&e);
    assert_eq!(denied_by(&d), ["amount-cap"]);
    let why = reason(&d);
    assert!(why.starts_with("policy `amount-cap` could not be evaluated: "), "{why}");
    assert!(why.contains("type error"), "{why}");

    // A permit that errors denies too, rather than silently not matching.
    let e = engine(&[(
        "p.cedar",
        r#"permit (principal, CALL, resource);
           permit (principal, CALL, resource) when { context.arguments has amount && context.arguments.amount < 5 };"#,
    )]);
    let call = Call::new(agent("bot", &[]), "x/y", ToolClass::Read).args(json!({"amount": 2.5}));
    assert_eq!(denied_by(&call.decide(&e)), ["p:1"]);
}

#[test]
fn id_and_reason_annotations() {
    let e = engine(&[(
        "shell.cedar",
        r#"@id("everyone-may-call")
           permit (principal, CALL, resource);
           @id("no-shell")
           @reason("shell access needs a human")
           forbid (principal, CALL, resource in Custos::Server::"shell");
           @reason("and no deletes")
           forbid (principal, CALL, resource) when { resource.name == "delete" };"#,
    )]);
    assert_eq!(e.policy_ids(), ["everyone-may-call", "no-shell", "shell:2"]);
    let bot = agent("bot", &[]);
    assert_eq!(Call::new(bot.clone(), "files/read", ToolClass::Read).decide(&e), allowed_by(&["everyone-may-call"]));

    let d = Call::new(bot.clone(), "shell/exec", ToolClass::Privileged).decide(&e);
    assert_eq!(
        d,
        Decision::Deny {
            policies: vec!["no-shell".to_owned()],
            reason: "forbidden by policy: shell access needs a human".to_owned()
        }
    );
    assert_eq!(d.explain(), "forbidden by policy: shell access needs a human (policies: no-shell)");

    let d = Call::new(bot, "shell/delete", ToolClass::Privileged).decide(&e);
    assert_eq!(denied_by(&d), ["no-shell", "shell:2"]);
    assert_eq!(reason(&d), "forbidden by policy: shell access needs a human; and no deletes");
}

#[test]
fn ids_are_unique_across_files() {
    let err = try_engine(&[
        ("a.cedar", "permit (principal, CALL, resource);"),
        ("b.cedar", "\n  @id(\"a:0\")\n  permit (principal, CALL, resource);"),
    ])
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "b.cedar:2:3: policy id `a:0` is already used by the policy at a.cedar:1:1");
    let err = try_engine(&[("a.cedar", "@id(\"\") permit (principal, CALL, resource);")]).err().unwrap();
    assert_eq!(err.to_string(), "a.cedar:1:1: policy `@id` must not be empty");
}

#[test]
fn weird_arguments_never_panic() {
    let e = engine(&[(
        "p.cedar",
        r#"permit (principal, CALL, resource);
           forbid (principal, CALL, resource) when { context.arguments has path && context.arguments.path like "/etc/*" };"#,
    )]);
    let bot = agent("bot", &[]);
    let mut deep = json!(1);
    for _ in 0..1_000 {
        deep = json!({ "path": [deep] });
    }
    let cases = [
        json!(null),
        json!("just a string"),
        json!([1, 2, 3]),
        json!({"path": 7}),
        json!({"path": {"__entity": {"type": "Custos::Agent", "id": "root"}}}),
        json!({"": null, "🙂": [null, [[]], {"a": 1e308}], "n": -9_223_372_036_854_775_808i64}),
        json!({"blob": "x".repeat(1 << 20)}),
        json!({"xs": (0..200_000).collect::<Vec<u32>>()}),
        deep,
    ];
    for args in cases {
        let _ = Call::new(bot.clone(), "files/read", ToolClass::Read).args(args).decide(&e);
    }
    // Deep but within the limit: evaluated like any other call.
    let mut nested = json!({"path": "/home/x"});
    for _ in 0..(crate::MAX_ARGUMENT_DEPTH - 1) {
        nested = json!({ "k": nested });
    }
    let d = Call::new(bot.clone(), "files/read", ToolClass::Read).args(nested).decide(&e);
    assert_eq!(d, allowed_by(&["p:0"]));
    // Over the limits: denied, naming the limit.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let d = Call::new(bot.clone(), "files/read", ToolClass::Read).args(json!({ "d": deep })).decide(&e);
    assert_eq!(d, Decision::Deny { policies: vec![], reason: "tool arguments nest deeper than 64 levels".to_owned() });
    // A path of the wrong type errors the forbid: denied.
    let d = Call::new(bot.clone(), "files/read", ToolClass::Read).args(json!({"path": 7})).decide(&e);
    assert_eq!(denied_by(&d), ["p:1"]);
    // Odd ids are just ids.
    let odd = agent("a\"gent\u{0}/\\", &["", "g\"roup"]);
    let call = Call::new(odd, "srv\"/to/ol", ToolClass::Read).args(json!({"path": "/etc/passwd"}));
    assert_eq!(denied_by(&call.decide(&e)), ["p:1"]);
}

// ---- holds ----

/// Operators may call anything; privileged tools wait for `ops`, payments over 100 for
/// `finance`; nobody deletes.
const HOLDS: &str = r#"@id("operators")
permit (principal in Custos::Group::"operators", CALL, resource);
@id("privileged-needs-ops")
@approval("ops")
@reason("privileged tools need a human")
forbid (principal, CALL, resource)
when { resource.class == "privileged" }
unless { context.approval.granted };
@id("big-payments")
@approval("finance")
forbid (principal, CALL, resource in Custos::Server::"payments")
when { context.arguments has amount && context.arguments.amount > 100 && !context.approval.granted };
@id("also-ops")
@approval("ops")
forbid (principal, CALL, resource == Custos::Tool::"payments/wire")
unless { context.approval.granted };
@id("no-deletes")
forbid (principal, CALL, resource) when { resource.name == "delete" };
"#;

#[test]
fn held_when_only_approval_forbids_deny() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    let op = agent("op", &["operators"]);
    let exec = Call::new(op.clone(), "shell/exec", ToolClass::Privileged);
    let d = exec.decide(&e);
    assert_eq!(d, held(&["privileged-needs-ops"], &["ops"], "needs approval by `ops`: privileged tools need a human"));
    assert_eq!(d.as_str(), "hold");
    assert!(!d.is_allow());
    assert_eq!(d.explain(), "needs approval by `ops`: privileged tools need a human (policies: privileged-needs-ops)");

    // Not privileged: the forbid does not apply, the permit allows.
    assert_eq!(Call::new(op.clone(), "files/read", ToolClass::Read).decide(&e), allowed_by(&["operators"]));

    // Several approval forbids: every one is named, groups sorted and without duplicates.
    let wire = Call::new(op, "payments/wire", ToolClass::Privileged).args(json!({"amount": 500}));
    assert_eq!(
        wire.decide(&e),
        held(
            &["privileged-needs-ops", "big-payments", "also-ops"],
            &["finance", "ops"],
            "needs approval by `finance`, `ops`: privileged tools need a human"
        )
    );
}

#[test]
fn a_granted_approval_lifts_the_hold() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    let op = agent("op", &["operators"]);
    let exec = Call::new(op.clone(), "shell/exec", ToolClass::Privileged).approved();
    assert_eq!(exec.decide(&e), allowed_by(&["operators"]));
    // One approval lifts every approval forbid of the call.
    let wire = Call::new(op, "payments/wire", ToolClass::Privileged).args(json!({"amount": 500})).approved();
    assert_eq!(wire.decide(&e), allowed_by(&["operators"]));

    // The context carries the approval to any policy that reads it.
    let e = engine(&[("p.cedar", "permit (principal, CALL, resource) when { context.approval.granted };")]);
    let call = Call::new(agent("bot", &[]), "a/b", ToolClass::Read);
    assert_eq!(denied_by(&call.decide(&e)), Vec::<&str>::new());
    assert_eq!(call.approved().decide(&e), allowed_by(&["p:0"]));
}

#[test]
fn a_plain_forbid_beside_an_approval_forbid_denies() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    let op = agent("op", &["operators"]);
    let delete = Call::new(op, "shell/delete", ToolClass::Privileged);
    let d = delete.decide(&e);
    assert_eq!(denied_by(&d), ["privileged-needs-ops", "no-deletes"]);
    assert_eq!(reason(&d), "forbidden by policy: privileged tools need a human");
    // An approval would not help: the plain forbid still applies.
    assert_eq!(denied_by(&delete.approved().decide(&e)), ["no-deletes"]);
}

#[test]
fn no_permit_means_deny_even_when_only_approval_forbids_apply() {
    // Nothing permits a stranger; holding its call would ask a human for a yes that changes
    // nothing. It is denied, and the reason says why an approval would not help.
    let e = engine(&[("holds.cedar", HOLDS)]);
    let stranger = Call::new(agent("x", &["strangers"]), "shell/exec", ToolClass::Privileged);
    let d = stranger.decide(&e);
    assert_eq!(denied_by(&d), ["privileged-needs-ops"]);
    assert_eq!(
        reason(&d),
        "forbidden by policy: privileged tools need a human; with an approval: no policy permits this call (default deny)"
    );
    assert_eq!(denied_by(&stranger.approved().decide(&e)), Vec::<&str>::new());

    // The same with no permit loaded at all.
    let only_forbid =
        HOLDS.replace("@id(\"operators\")\npermit (principal in Custos::Group::\"operators\", CALL, resource);", "");
    let e = engine(&[("holds.cedar", &only_forbid)]);
    let op = Call::new(agent("op", &["operators"]), "shell/exec", ToolClass::Privileged);
    assert_eq!(denied_by(&op.decide(&e)), ["privileged-needs-ops"]);
}

#[test]
fn an_evaluation_error_never_holds() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    let op = agent("op", &["operators"]);

    // The approval forbid itself fails (`amount` is a string): denied, fail closed.
    let refund = Call::new(op.clone(), "payments/refund", ToolClass::Write).args(json!({"amount": "lots"}));
    let d = refund.decide(&e);
    assert_eq!(denied_by(&d), ["big-payments"]);
    assert!(reason(&d).starts_with("policy `big-payments` could not be evaluated: "), "{d:?}");
    // An approval does not make an erroring policy pass either.
    assert_eq!(denied_by(&refund.approved().decide(&e)), ["big-payments"]);

    // Another approval forbid holds, but the erroring one might have been a plain deny had
    // it evaluated: denied, naming the holding forbid and the error.
    let exec = Call::new(op.clone(), "payments/exec", ToolClass::Privileged).args(json!({"amount": "lots"}));
    let x = e.explain(&exec.request());
    assert_eq!(denied_by(&x.decision), ["privileged-needs-ops"]);
    let errored: Vec<&str> = x.policies.iter().filter(|p| p.error.is_some()).map(|p| p.id.as_str()).collect();
    assert_eq!(errored, ["big-payments"]);

    // A permit that errors while an approval forbid applies: denied too.
    let e = engine(&[(
        "p.cedar",
        r#"permit (principal, CALL, resource) when { context.arguments has amount && context.arguments.amount < 5 };
           @approval("ops") forbid (principal, CALL, resource) unless { context.approval.granted };"#,
    )]);
    let call = Call::new(agent("bot", &[]), "x/y", ToolClass::Read).args(json!({"amount": 2.5}));
    assert_eq!(denied_by(&call.decide(&e)), ["p:1"]);
}

#[test]
fn approval_groups_are_exposed() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    assert_eq!(e.approval_group("privileged-needs-ops"), Some("ops"));
    assert_eq!(e.approval_group("big-payments"), Some("finance"));
    assert_eq!(e.approval_group("no-deletes"), None);
    assert_eq!(e.approval_group("operators"), None);
    assert_eq!(e.approval_group("nope"), None);
}

#[test]
fn approval_annotations_that_cannot_work_are_refused() {
    let load = |text: &str| try_engine(&[("a.cedar", text)]).err().map(|e| e.to_string());

    // Only a forbid can be lifted.
    assert_eq!(
        load("permit (principal, CALL, resource);\n\n  @approval(\"ops\")\n  permit (principal, CALL, resource)\n  when { context.approval.granted };").as_deref(),
        Some("a.cedar:3:3: policy `a:1` is a `permit`: `@approval` belongs on a `forbid`, which an approval lifts")
    );

    // The group is a plain, non-empty name.
    for (group, shown) in [("", ""), ("ops team", "ops team"), ("a/b", "a/b"), ("ops\\n", "ops\\n"), ("é", "é")] {
        let text = format!(
            "@approval(\"{group}\")\nforbid (principal, CALL, resource) unless {{ context.approval.granted }};"
        );
        assert_eq!(
            load(&text).as_deref(),
            Some(
                format!(
                    "a.cedar:1:1: policy `a:0` names approval group `{shown}`: a group is a non-empty name of letters, digits, `_`, `.` and `-`"
                )
                .as_str()
            ),
            "{group}"
        );
    }
    let bare = "@approval\nforbid (principal, CALL, resource) unless { context.approval.granted };";
    assert!(load(bare).unwrap().contains("names approval group ``"), "{bare}");
    for group in ["ops", "OPS_2", "team.sec-ops", "0"] {
        let text = format!(
            "@approval(\"{group}\")\nforbid (principal, CALL, resource) unless {{ context.approval.granted }};"
        );
        assert_eq!(load(&text), None, "{group}");
    }

    // A forbid no approval could lift: its conditions never read `context.approval.granted`.
    let never = "permit (principal, CALL, resource);\n@id(\"stuck\")\n@approval(\"ops\")\nforbid (principal, CALL, resource)\nwhen { resource.class == \"privileged\" };";
    let err = try_engine(&[("a.cedar", never)]).err().unwrap();
    assert!(matches!(err, PolicyError::ApprovalNeverLifted { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "a.cedar:2:1: policy `stuck` has `@approval` but never reads `context.approval.granted`, so no approval could lift it (add `unless { context.approval.granted }`)"
    );
    // Reading something else of the context, or only testing for the attribute, is not enough.
    for condition in [
        "unless { context.run.labels.contains(\"approval\") }",
        "unless { context.approval has granted }",
        "when { context.arguments has granted }",
    ] {
        let text = format!("@approval(\"ops\")\nforbid (principal, CALL, resource)\n{condition};");
        let err = try_engine(&[("a.cedar", &text)]).err().unwrap();
        assert!(matches!(err, PolicyError::ApprovalNeverLifted { .. }), "{condition}: {err:?}");
    }
    // Any read of it counts, in any clause.
    for condition in [
        "when { !context.approval.granted }",
        "when { resource.class == \"write\" && (context.approval.granted == false) }",
        "unless { context.approval.granted || principal in Custos::Group::\"ops\" }",
    ] {
        let text = format!("@approval(\"ops\")\nforbid (principal, CALL, resource)\n{condition};");
        assert!(try_engine(&[("a.cedar", &text)]).is_ok(), "{condition}");
    }
}

#[test]
fn explain_shows_a_hold() {
    let e = engine(&[("policies/holds.cedar", HOLDS)]);
    let exec = Call::new(agent("op", &["operators"]), "shell/exec", ToolClass::Privileged);
    let x = e.explain(&exec.request());
    assert_eq!(x.decision.as_str(), "hold");
    assert_eq!(x.policies.len(), 1);
    let p = &x.policies[0];
    assert_eq!((p.id.as_str(), p.line, p.column), ("privileged-needs-ops", 3, 1));
    assert_eq!(p.approval.as_deref(), Some("ops"));
    assert_eq!(
        x.to_string(),
        "hold: needs approval by `ops`: privileged tools need a human (policies: privileged-needs-ops)\n  forbid `privileged-needs-ops` at policies/holds.cedar:3:1 (lifted by an approval of `ops`): privileged tools need a human\n"
    );
    let json = serde_json::to_value(&x).unwrap();
    assert_eq!(json["decision"]["decision"], "hold");
    assert_eq!(json["decision"]["groups"], json!(["ops"]));
    assert_eq!(json["decision"]["policies"], json!(["privileged-needs-ops"]));
    assert_eq!(json["policies"][0]["approval"], "ops");

    // A deny shows the approval forbids among its policies too.
    let delete = Call::new(agent("op", &["operators"]), "shell/delete", ToolClass::Privileged);
    let text = e.explain(&delete.request()).to_string();
    assert!(text.starts_with("deny: "), "{text}");
    assert!(text.contains("forbid `privileged-needs-ops` at policies/holds.cedar:3:1 (lifted by an approval of `ops`)"));
    assert!(text.contains("forbid `no-deletes` at policies/holds.cedar:17:1\n"), "{text}");
}

#[test]
fn a_schema_without_the_approval_context_is_refused() {
    // A deployment schema copied before approvals existed lacks `context.approval`: the
    // gateway could not fill in the context it declares.
    let start = EMBEDDED_SCHEMA.find("      approval: {").unwrap();
    let end = start + EMBEDDED_SCHEMA[start..].find("},").unwrap() + 2;
    let old = format!("{}{}", &EMBEDDED_SCHEMA[..start], &EMBEDDED_SCHEMA[end..]);
    let err = PolicyEngine::from_sources(&old, &[]).err().unwrap();
    assert!(matches!(err, PolicyError::SchemaShape { .. }), "{err:?}");
    assert!(err.to_string().contains("approval"), "{err}");
}

// ---- may_ever_allow ----

#[test]
fn may_ever_allow_cases() {
    let e = engine(&[(
        "p.cedar",
        r#"permit (principal in Custos::Group::"readers", CALL, resource) when { resource.class == "read" };
           permit (principal in Custos::Group::"payers", CALL, resource == Custos::Tool::"payments/refund")
           when { context.arguments has amount && context.arguments.amount <= 100 };
           forbid (principal, CALL, resource in Custos::Server::"shell");
           permit (principal in Custos::Group::"ops", CALL, resource);
           forbid (principal in Custos::Group::"ops", CALL, resource) when { context.run.labels.contains("untrusted_input") };"#,
    )]);
    let reader = agent("r", &["readers"]);
    let payer = agent("p", &["payers"]);
    let ops = agent("o", &["ops"]);
    let refund = ToolRef::new("payments", "refund").unwrap();
    let read = ToolRef::new("files", "read").unwrap();
    let exec = ToolRef::new("shell", "exec").unwrap();
    let info = |tool, class| ToolInfo { tool, class, annotations: None };

    // An unconditional permit matches.
    assert!(e.may_ever_allow(&reader, &info(&read, ToolClass::Read)));
    // No permit can match.
    assert!(!e.may_ever_allow(&reader, &info(&refund, ToolClass::Write)));
    assert!(!e.may_ever_allow(&payer, &info(&read, ToolClass::Read)));
    // The permit depends on the arguments: some call may be allowed.
    assert!(e.may_ever_allow(&payer, &info(&refund, ToolClass::Write)));
    // A permit matches, and a forbid depends on run facts: some call may be allowed.
    assert!(e.may_ever_allow(&ops, &info(&refund, ToolClass::Write)));
    // An unconditional forbid applies, whatever permits match.
    assert!(!e.may_ever_allow(&ops, &info(&exec, ToolClass::Privileged)));

    // Nothing loaded: nothing is ever allowed.
    assert!(!engine(&[]).may_ever_allow(&ops, &info(&read, ToolClass::Read)));
}

#[test]
fn may_ever_allow_lists_tools_reachable_through_an_approval() {
    let e = engine(&[("holds.cedar", HOLDS)]);
    let op = agent("op", &["operators"]);
    let exec = ToolRef::new("shell", "exec").unwrap();
    let wire = ToolRef::new("payments", "wire").unwrap();
    let delete = ToolRef::new("shell", "delete").unwrap();
    let info = |tool, class| ToolInfo { tool, class, annotations: None };

    // Held is not never allowed: the approval forbids read the context, which is unknown here.
    assert!(e.may_ever_allow(&op, &info(&exec, ToolClass::Privileged)));
    assert!(e.may_ever_allow(&op, &info(&wire, ToolClass::Privileged)));
    // A plain forbid that applies whatever the context still hides the tool.
    assert!(!e.may_ever_allow(&op, &info(&delete, ToolClass::Privileged)));
    // With no permit, no approval helps: hidden.
    assert!(!e.may_ever_allow(&agent("x", &[]), &info(&exec, ToolClass::Privileged)));
}

// ---- explain ----

#[test]
fn explain_names_the_deciding_policies() {
    let e = engine(&[
        (
            "policies/base.cedar",
            "permit (principal, CALL, resource);\n\n@id(\"everyone\")\npermit (principal, CALL, resource);\n",
        ),
        (
            "policies/limits.cedar",
            "// refunds\n@reason(\"too much\")\nforbid (principal, CALL, resource)\n  when { context.arguments has amount && context.arguments.amount > 100 };\n",
        ),
    ]);
    let bot = agent("bot", &[]);

    let ok = Call::new(bot.clone(), "payments/refund", ToolClass::Write).args(json!({"amount": 5}));
    let x = e.explain(&ok.request());
    assert_eq!(x.decision, allowed_by(&["base:0", "everyone"]));
    assert_eq!(x.policies.len(), 2);
    let p = &x.policies[1];
    assert_eq!((p.id.as_str(), p.file.as_str(), p.line, p.column), ("everyone", "policies/base.cedar", 3, 1));
    assert_eq!(p.effect, PolicyEffect::Permit);
    assert_eq!(p.error, None);

    let too_much = Call::new(bot.clone(), "payments/refund", ToolClass::Write).args(json!({"amount": 500}));
    let x = e.explain(&too_much.request());
    assert_eq!(denied_by(&x.decision), ["limits:0"]);
    assert_eq!(x.policies.len(), 1);
    let p = &x.policies[0];
    assert_eq!((p.file.as_str(), p.line, p.column), ("policies/limits.cedar", 2, 1));
    assert_eq!(p.effect, PolicyEffect::Forbid);
    assert_eq!(p.reason.as_deref(), Some("too much"));
    assert_eq!(
        x.to_string(),
        "deny: forbidden by policy: too much (policies: limits:0)\n  forbid `limits:0` at policies/limits.cedar:2:1: too much\n"
    );

    let wrong_type = Call::new(bot, "payments/refund", ToolClass::Write).args(json!({"amount": "500"}));
    let x = e.explain(&wrong_type.request());
    assert_eq!(denied_by(&x.decision), ["limits:0"]);
    assert_eq!(x.policies.len(), 1, "the matching permits did not decide: {x}");
    assert!(x.policies[0].error.as_deref().unwrap_or("").contains("type error"), "{x}");
    assert!(x.to_string().contains("(evaluation error: "), "{x}");
    assert!(serde_json::to_value(&x).is_ok());
}

// ---- loading ----

#[test]
fn parse_error_names_file_line_and_column() {
    let err = try_engine(&[(
        "policies/support.cedar",
        "// support\npermit (principal, CALL, resource);\n\npermit (principal, CALL, resource)\n  when { true };;\n",
    )])
    .err()
    .unwrap();
    assert!(matches!(err, PolicyError::Parse { .. }), "{err:?}");
    let pos = err.position().unwrap();
    assert_eq!((pos.line, pos.column), (5, 17), "{err}");
    assert!(err.to_string().starts_with("policies/support.cedar:5:17: unexpected token `;`"), "{err}");

    let err = try_engine(&[("x.cedar", "permit (principal, CALL, resource)\nwhen { 1 + };")]).err().unwrap();
    assert!(err.to_string().starts_with("x.cedar:2:"), "{err}");
}

#[test]
fn validation_error_names_file_line_and_column() {
    let err = try_engine(&[(
        "policies/support.cedar",
        "permit (principal, CALL, resource);\n\n@id(\"refunds\")\nforbid (principal, CALL, resource)\n  when { context.arguments.amout > 100 };\n",
    )])
    .err()
    .unwrap();
    let PolicyError::Validation { at, policy, message } = &err else { panic!("{err:?}") };
    assert_eq!(policy, "refunds");
    assert_eq!((at.line, at.column), (5, 10), "{err}");
    assert!(message.contains("amout"), "{err}");
    assert!(!message.contains("for policy"), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("policies/support.cedar:5:10: policy `refunds` does not validate: "), "{text}");
    assert!(!text.contains('\n'), "{text}");

    // Behind `has`, the typo is not an error to Cedar, just a test that is always false: the
    // forbid could never apply. That is refused too, pointing at the policy.
    let err = try_engine(&[(
        "policies/support.cedar",
        "permit (principal, CALL, resource);\n\nforbid (principal, CALL, resource)\n  when { context.arguments has amout && context.arguments.amout > 100 };\n",
    )])
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("policies/support.cedar:3:1: policy `support:1` does not validate: policy is impossible"),
        "{err}"
    );

    // Unknown entity types and actions, and a type error, all point into the right file.
    for (policy, line, column) in [
        ("permit (principal, action, resource)\n  when { principal in Custos::Team::\"x\" };", 2, 23),
        ("permit (principal, action == Custos::Action::\"delete\", resource);", 1, 30),
        ("permit (principal, CALL, resource)\nwhen { resource.class > 1 };", 2, 8),
    ] {
        let err =
            try_engine(&[("ok.cedar", "permit (principal, CALL, resource);"), ("bad.cedar", policy)]).err().unwrap();
        let at = err.position().unwrap();
        assert_eq!((at.file.as_str(), at.line, at.column), ("bad.cedar", line, column), "{err}");
        assert!(err.to_string().contains("policy `bad:0` does not validate: "), "{err}");
    }
}

#[test]
fn templates_are_refused() {
    let err = try_engine(&[(
        "t.cedar",
        "permit (principal, CALL, resource);\npermit (principal == ?principal, CALL, resource);",
    )])
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "t.cedar:2:1: templates (policies with `?principal` or `?resource`) are not supported");
}

#[test]
fn missing_policy_file() {
    let err = PolicyEngine::load(&SchemaSource::Embedded, &[PathBuf::from("x")]).err().unwrap();
    assert_eq!(err.to_string(), "cannot read policy file `x`: no such file or directory");
    let err = PolicyEngine::load(&SchemaSource::File(PathBuf::from("nope.cedarschema")), &[]).err().unwrap();
    assert_eq!(err.to_string(), "cannot read schema file `nope.cedarschema`: no such file or directory");
}

#[test]
fn schema_errors_name_the_schema_file() {
    let err = PolicyEngine::from_sources("namespace Custos {\n  entity Agent = { owner: String, };\n  entity;\n}", &[])
        .err()
        .unwrap();
    let at = err.position().unwrap();
    assert_eq!((at.file.as_str(), at.line), ("schema", 3), "{err}");
    assert!(err.to_string().starts_with("schema:3:"), "{err}");

    // A schema that parses but lacks what the gateway fills in.
    let err = PolicyEngine::from_sources("namespace Custos { entity Agent; }", &[]).err().unwrap();
    assert!(matches!(err, PolicyError::SchemaShape { .. }), "{err:?}");
    assert!(err.to_string().starts_with("schema `schema` does not fit custos calls: "), "{err}");

    // A required argument attribute would make every call without it fail.
    let required = EMBEDDED_SCHEMA.replace("path?: String", "path: String");
    let err = PolicyEngine::from_sources(&required, &[]).err().unwrap();
    assert!(matches!(err, PolicyError::SchemaShape { .. }), "{err:?}");
}

#[test]
fn a_deployment_schema_may_declare_more_arguments() {
    let schema = EMBEDDED_SCHEMA
        .replace("query?: String,", "query?: String,\n    recipient?: String,\n    limits?: { daily?: Long },");
    let sources = vec![(
        "mail.cedar".to_owned(),
        format!(
            r#"permit (principal, {CALL}, resource)
               when {{ context.arguments has recipient && context.arguments.recipient like "*@example.com"
                       && context.arguments has limits && context.arguments.limits has daily
                       && context.arguments.limits.daily < 10 }};"#
        ),
    )];
    let e = PolicyEngine::from_sources(&schema, &sources).unwrap();
    let ok = Call::new(agent("bot", &[]), "mail/send", ToolClass::Write)
        .args(json!({"recipient": "a@example.com", "limits": {"daily": 3, "undeclared": true}, "body": "hi"}));
    assert!(ok.decide(&e).is_allow());
    // The embedded schema does not declare `recipient`: the same policy does not validate.
    let err = PolicyEngine::from_sources(EMBEDDED_SCHEMA, &sources).err().unwrap();
    assert!(err.to_string().contains("policy is impossible"), "{err}");
}

#[test]
fn example_policy_file_loads_and_behaves() {
    let e = PolicyEngine::load(
        &SchemaSource::File(crate_path("schema/custos.cedarschema")),
        &[crate_path("policies/example.cedar")],
    )
    .unwrap();
    assert_eq!(e.policy_ids(), ["example:0", "operators", "no-privileged-tools", "privileged-needs-approval"]);
    assert_eq!(e.approval_group("privileged-needs-approval"), Some("ops"));
    let e2 = PolicyEngine::load(&SchemaSource::Embedded, &[crate_path("policies/example.cedar")]).unwrap();
    assert_eq!(e2.len(), 4);

    let reader = agent("docs-bot", &["readers"]);
    assert_eq!(Call::new(reader.clone(), "files/read", ToolClass::Read).decide(&e), allowed_by(&["example:0"]));
    assert!(!Call::new(reader.clone(), "files/write", ToolClass::Write).decide(&e).is_allow());
    let d = Call::new(reader.clone(), "shell/exec", ToolClass::Privileged).decide(&e);
    assert_eq!(denied_by(&d), ["no-privileged-tools", "privileged-needs-approval"]);
    assert_eq!(
        reason(&d),
        "forbidden by policy: privileged tools are only for operators; privileged calls need a human's approval"
    );
    // No approval turns a reader's privileged call into an allowed one.
    let d = Call::new(reader.clone(), "shell/exec", ToolClass::Privileged).approved().decide(&e);
    assert_eq!(denied_by(&d), ["no-privileged-tools"]);

    // An operator's privileged call is held for `ops`, and runs once approved.
    let operator = agent("deploy-bot", &["operators"]);
    assert_eq!(Call::new(operator.clone(), "files/write", ToolClass::Write).decide(&e), allowed_by(&["operators"]));
    let exec = Call::new(operator.clone(), "shell/exec", ToolClass::Privileged);
    assert_eq!(
        exec.decide(&e),
        held(
            &["privileged-needs-approval"],
            &["ops"],
            "needs approval by `ops`: privileged calls need a human's approval"
        )
    );
    assert_eq!(exec.approved().decide(&e), allowed_by(&["operators"]));

    let shell = ToolRef::new("shell", "exec").unwrap();
    let info = ToolInfo { tool: &shell, class: ToolClass::Privileged, annotations: None };
    assert!(!e.may_ever_allow(&reader, &info));
    assert!(e.may_ever_allow(&operator, &info));
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicyEngine>();
}

// ---- toxic flows and findings ----

#[test]
fn the_shipped_toxic_flow_policies_hold_egress_only_after_both_labels() {
    let text = std::fs::read_to_string(crate_path("../../examples/policies/toxic-flow.cedar")).unwrap();
    let e = engine(&[("allow.cedar", r#"permit (principal, CALL, resource);"#), ("toxic-flow.cedar", &text)]);
    let bot = agent("bot", &[]);
    let egress = || Call::new(bot.clone(), "github/create_pull_request", ToolClass::Write).flows(&["egress"]);
    assert!(egress().decide(&e).is_allow(), "a clean run may write");
    assert!(egress().labels(&["untrusted_input"]).decide(&e).is_allow(), "one label is not a toxic flow");
    assert!(egress().labels(&["read_sensitive"]).decide(&e).is_allow());
    let toxic = egress().labels(&["read_sensitive", "untrusted_input"]);
    match toxic.decide(&e) {
        Decision::Hold { policies, groups, .. } => {
            assert_eq!((policies, groups), (vec!["toxic-flow-egress".to_owned()], vec!["security".to_owned()]));
        }
        other => panic!("expected a hold, got {other:?}"),
    }
    assert!(toxic.approved().decide(&e).is_allow(), "an approval lifts it");
    // Reads in a toxic run are fine: only egress is held.
    let read = Call::new(bot.clone(), "github/get_file_contents", ToolClass::Read)
        .flows(&["read_sensitive"])
        .labels(&["read_sensitive", "untrusted_input"]);
    assert!(read.decide(&e).is_allow());
    // An injection finding in the run stops egress outright.
    let injected = egress().findings(&["output_injection"]);
    assert_eq!(denied_by(&injected.decide(&e)), vec!["no-egress-after-injection"]);
    // A replayed privileged call is held.
    let replay = Call::new(bot, "ops/rollback", ToolClass::Privileged).findings(&["replay"]);
    assert!(matches!(replay.decide(&e), Decision::Hold { .. }), "{:?}", replay.decide(&e));
}

/// Every scope form, for other and for the calling agents, groups, tools and servers, with
/// conditions that match, do not match, and fail to evaluate; and argument guards of one and
/// two keys, one with a failing test before a later `has`, one with an `unless`.
const SCOPED: &str = r#"
@id("any") permit (principal, CALL, resource) when { resource.class == "read" };
@id("eq-agent") permit (principal == Custos::Agent::"alice", CALL, resource);
@id("eq-other") forbid (principal == Custos::Agent::"mallory", CALL, resource);
@id("in-group") permit (principal in Custos::Group::"ops", CALL, resource == Custos::Tool::"files/write");
@id("in-agent") forbid (principal in Custos::Agent::"bob", CALL, resource) when { context.arguments has path };
@id("is") forbid (principal is Custos::Agent, CALL, resource) when { context.arguments has amount && context.arguments.amount > 100 };
@id("is-in") permit (principal is Custos::Agent in Custos::Group::"readers", CALL, resource in Custos::Server::"files");
@id("tool-other") forbid (principal, CALL, resource == Custos::Tool::"files/delete");
@id("server-other") forbid (principal, CALL, resource in Custos::Server::"payments");
@id("tool-is") forbid (principal, CALL, resource is Custos::Tool) when { context.run.labels.contains("tainted") };
@id("two-keys") forbid (principal, CALL, resource == Custos::Tool::"payments/refund") when { context.arguments has path && context.arguments has amount && context.arguments.amount > 1000 };
@id("error-before-key") forbid (principal, CALL, resource in Custos::Server::"mail") when { context.arguments has amount && context.arguments.amount > 5 && context.arguments has path };
@id("guard-unless") forbid (principal, CALL, resource) when { context.arguments has url } unless { context.arguments.url like "https://*" };
"#;

#[test]
fn leaving_out_policies_scoped_elsewhere_or_guarded_by_absent_arguments_changes_no_decision() {
    let engine = engine(&[("scoped.cedar", SCOPED)]);
    let agents =
        [agent("alice", &[]), agent("bob", &["ops"]), agent("carol", &["readers"]), agent("mallory", &["ops"])];
    let tools = ["files/read", "files/write", "files/delete", "payments/refund", "mail/send"];
    let mut checked = 0;
    for a in &agents {
        for tool in tools {
            let arguments = [
                json!({}),
                json!({ "path": "/tmp/x" }),
                json!({ "amount": 500 }),
                json!({ "amount": "x" }),
                json!({ "path": "/tmp/x", "amount": 5000 }),
                json!({ "path": "/tmp/x", "amount": null }),
                json!({ "url": "http://example.com" }),
                json!({ "url": "https://example.com", "path": "/p", "amount": 5000, "query": "q" }),
                json!([1, 2]),
            ];
            for args in &arguments {
                for labels in [&[][..], &["tainted"][..]] {
                    let call = Call::new(a.clone(), tool, ToolClass::Read).args(args.clone()).labels(labels);
                    let req = call.request();
                    let (request, prepared, chosen, _) = engine.request(&req).unwrap();
                    let all = engine.authorizer.is_authorized(&request, &engine.policies, &prepared.entities);
                    let some = engine.authorizer.is_authorized(&request, &chosen, &prepared.entities);
                    let ids = |r: &cedar_policy::Response| {
                        let mut reasons: Vec<String> = r.diagnostics().reason().map(ToString::to_string).collect();
                        let mut errors: Vec<String> = r.diagnostics().errors().map(ToString::to_string).collect();
                        reasons.sort();
                        errors.sort();
                        (r.decision(), reasons, errors)
                    };
                    assert_eq!(ids(&all), ids(&some), "{} calling {tool} with {args} {labels:?}", a.id);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 5 * 9 * 2);
    // The cache is per agent and tool: mallory and files/delete see neither alice's grant nor
    // the payments forbid; and a policy guarded by an argument only when the call has it.
    let call = Call::new(agent("mallory", &["ops"]), "files/delete", ToolClass::Read);
    let (_, prepared, _, _) = engine.request(&call.request()).unwrap();
    let kept = |args: serde_json::Value| -> Vec<String> {
        let set = prepared.policies(&args).unwrap();
        let ids: std::collections::BTreeSet<String> =
            set.policies().filter_map(|p| p.annotation("id")).map(str::to_owned).collect();
        ids.into_iter().collect()
    };
    let unguarded = ["any", "eq-other", "tool-is", "tool-other"];
    assert_eq!(kept(json!({ "path": "/p" })), unguarded);
    assert_eq!(kept(json!("not an object")), unguarded);
    assert_eq!(kept(json!({ "amount": null })), ["any", "eq-other", "is", "tool-is", "tool-other"]);
    assert_eq!(
        kept(json!({ "amount": 1, "url": "u" })),
        ["any", "eq-other", "guard-unless", "is", "tool-is", "tool-other"]
    );
    assert_eq!(kept(json!({ "path": "/p" })), unguarded, "from the guard sets kept");
}

#[test]
fn the_prepared_cache_holds_a_bounded_number_of_policies() {
    use crate::request::{MAX_PREPARED, MAX_PREPARED_WEIGHT};
    // 600 guarded forbids and a grant, every one applicable to every tool: each pair may come
    // to hold 3 × 601 policies, so the weight bound, not the pair bound, is what holds.
    let mut text = String::from("@id(\"grant\") permit (principal, CALL, resource);\n");
    for i in 0..600 {
        text.push_str(&format!(
            "@id(\"f{i}\") forbid (principal, CALL, resource) when {{ context.arguments has query && context.arguments.query == \"x{i}\" }};\n"
        ));
    }
    let engine = engine(&[("many.cedar", &text)]);
    let bot = agent("bot", &[]);
    let mut most = 0;
    for i in 0..300 {
        let call = Call::new(bot.clone(), &format!("server/tool-{i}"), ToolClass::Read).args(json!({ "path": "/p" }));
        assert!(call.decide(&engine).is_allow());
        let (pairs, weight) = engine.prepared.held();
        assert!(weight <= MAX_PREPARED_WEIGHT && pairs <= MAX_PREPARED, "{pairs} pairs of weight {weight}");
        most = most.max(pairs);
    }
    assert_eq!(most, MAX_PREPARED_WEIGHT / (3 * 601), "as many pairs as the weight allows, then emptied");
    let denied = Call::new(bot, "server/tool-0", ToolClass::Read).args(json!({ "query": "x7" }));
    assert_eq!(denied_by(&denied.decide(&engine)), vec!["f7"], "a rebuilt pair still decides over every policy");
}
