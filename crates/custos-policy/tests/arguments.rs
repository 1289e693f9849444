//! Properties of how a call's arguments reach policy, through the public engine: no argument
//! the schema declares is ever silently absent when the call carried it, and no number that
//! policy cannot read exactly gets past a policy comparing it.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use custos_core::{Agent, AgentId, Decision, ToolClass, ToolRef};
use custos_policy::{CallRequest, PolicyEngine, ToolInfo, EMBEDDED_SCHEMA};
use proptest::prelude::*;
use serde_json::Value;

/// The shipped schema with nested and set-valued arguments declared as well.
fn schema() -> String {
    EMBEDDED_SCHEMA.replace(
        "    query?: String,\n",
        "    query?: String,\n    limits?: { daily?: Long, note?: String },\n    amounts?: Set<Long>,\n    rate?: decimal,\n",
    )
}

const POLICIES: &str = r#"
permit (principal, action == Custos::Action::"call_tool", resource);

@id("no-big-amounts")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has amount && context.arguments.amount > 100 };

@id("no-big-daily")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has limits && context.arguments.limits has daily && context.arguments.limits.daily > 100 };

@id("no-high-rate")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has rate && context.arguments.rate.greaterThan(decimal("0.5")) };
"#;

/// Forbids a call that carries the argument, so a decision shows whether policy saw it.
const PRESENCE: &str = r#"
permit (principal, action == Custos::Action::"call_tool", resource);

@id("sees-amount")
forbid (principal, action == Custos::Action::"call_tool", resource) when { context.arguments has amount };

@id("sees-path")
forbid (principal, action == Custos::Action::"call_tool", resource) when { context.arguments has path };

@id("sees-daily")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has limits && context.arguments.limits has daily };
"#;

fn engine(policies: &str) -> PolicyEngine {
    PolicyEngine::from_sources(&schema(), &[("p.cedar".to_owned(), policies.to_owned())]).unwrap()
}

fn decide(engine: &PolicyEngine, arguments: &Value) -> Decision {
    let agent = Agent {
        id: AgentId("bot".to_owned()),
        owner: "team".to_owned(),
        purpose: "tests".to_owned(),
        groups: Vec::new(),
    };
    let tool = ToolRef::new("billing", "refund").unwrap();
    engine.decide(&CallRequest {
        agent: &agent,
        tool: ToolInfo { tool: &tool, class: ToolClass::Write, annotations: None },
        arguments,
        run_id: "r",
        step: 1,
        labels: &[],
        findings: &[],
        flows: &[],
        approval_granted: false,
    })
}

/// The text of a JSON number of any size and precision: integers up to 40 digits, decimals
/// with up to 12 fraction digits, exponents up to ±400 (past a double's range: refused when
/// parsed, which is fine, the property is about what gets through).
fn number_text() -> impl Strategy<Value = String> {
    let digits = |max| {
        proptest::collection::vec(0u8..10, 1..=max)
            .prop_map(|d| d.iter().map(|d| (b'0' + d) as char).collect::<String>())
    };
    let int = (any::<bool>(), digits(40)).prop_map(|(neg, d)| {
        let d = d.trim_start_matches('0');
        let d = if d.is_empty() { "0" } else { d };
        format!("{}{d}", if neg { "-" } else { "" })
    });
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-200i64..200).prop_map(|i| i.to_string()),
        int.clone(),
        (int.clone(), digits(12)).prop_map(|(i, f)| format!("{i}.{f}")),
        (int, -400i32..400).prop_map(|(i, e)| format!("{i}e{e}")),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
    ]
}

/// Any JSON value, numbers of any spelling among them, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
        number_text().prop_filter_map("a double's range", |t| serde_json::from_str(&t).ok()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever a declared argument holds (but `null`, which MCP clients send for "not
    /// given"), policy sees that the call carried it.
    #[test]
    fn a_declared_argument_the_call_carries_is_never_absent(
        amount in json_value(), path in json_value(), daily in json_value(), extra in json_value()
    ) {
        let engine = engine(PRESENCE);
        let mut arguments = serde_json::Map::new();
        arguments.insert("amount".into(), amount.clone());
        arguments.insert("path".into(), path.clone());
        arguments.insert("limits".into(), serde_json::json!({ "daily": daily.clone(), "x": extra }));
        let carried = !amount.is_null() || !path.is_null() || !daily.is_null();
        let decision = decide(&engine, &Value::Object(arguments));
        if carried {
            prop_assert!(matches!(decision, Decision::Deny { .. }), "policy did not see a carried argument: {decision:?}");
        } else {
            prop_assert!(decision.is_allow(), "{decision:?}");
        }
    }

    /// A number a policy compares is allowed only when every mainstream parser reads it as a
    /// value the policy allows: here, an integer of at most 100.
    #[test]
    fn no_number_gets_past_a_comparison_by_being_unreadable(text in number_text()) {
        let Ok(amount) = serde_json::from_str::<Value>(&text) else { return Ok(()) };
        let engine = engine(POLICIES);
        for arguments in [
            serde_json::json!({ "amount": amount.clone() }),
            serde_json::json!({ "limits": { "daily": amount.clone() } }),
        ] {
            let decision = decide(&engine, &arguments);
            if decision.is_allow() {
                // Every parser reads it alike: an integer a double holds exactly.
                let i = amount.as_i64();
                let alike = i.is_some_and(|i| i128::from(i) == (i as f64) as i128);
                prop_assert!(alike && i.is_some_and(|i| i <= 100), "`{text}` allowed in {arguments}");
            }
        }
        // Compared as a decimal: allowed only when it is one, of at most 0.5.
        let decision = decide(&engine, &serde_json::json!({ "rate": amount.clone() }));
        if decision.is_allow() {
            let f = amount.as_f64().unwrap_or(f64::MAX);
            prop_assert!(!amount.is_i64() && !amount.is_u64() && f <= 0.5, "rate `{text}` allowed");
        }
    }
}

/// The README's own pattern, with the values from the issue that used to vanish from the
/// context: each denied, the reason naming the argument.
#[test]
fn huge_and_over_precise_amounts_are_denied_naming_the_argument() {
    let engine = engine(POLICIES);
    for (text, shown) in [
        ("99999999999999999999999", "1e+23"),
        ("1e300", "1e+300"),
        ("100.00001", "100.00001"),
        ("9007199254740993", "9007199254740993"),
        ("18446744073709551615", "18446744073709551615"),
    ] {
        let arguments: Value = serde_json::from_str(&format!(r#"{{"amount": {text}}}"#)).unwrap();
        match decide(&engine, &arguments) {
            Decision::Deny { policies, reason } => {
                assert_eq!(policies, ["no-big-amounts"], "{text}");
                assert!(reason.contains(&format!("argument `amount` is {shown}")), "{text}: {reason}");
                assert!(reason.contains("cannot read exactly"), "{reason}");
            }
            other => panic!("`{text}` must be denied: {other:?}"),
        }
    }
    // Readable amounts are decided as before.
    assert!(decide(&engine, &serde_json::json!({ "amount": 100 })).is_allow());
    assert!(decide(&engine, &serde_json::json!({ "amount": 9_007_199_254_740_992_i64 }))
        .explain()
        .contains("forbidden"));
    // Equality stays truthful: no number a policy writes equals an unreadable one.
    let eq = r#"permit (principal, action == Custos::Action::"call_tool", resource)
        when { context.arguments has amount && context.arguments.amount == 5 };"#;
    let eq = PolicyEngine::from_sources(&schema(), &[("eq.cedar".to_owned(), eq.to_owned())]).unwrap();
    let huge: Value = serde_json::from_str(r#"{"amount": 99999999999999999999999}"#).unwrap();
    assert!(!decide(&eq, &huge).is_allow());
}
