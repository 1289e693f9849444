//! Body of the fuzz target that exercises this crate.
//!
//! The function is what the `cargo fuzz` target `policy_input` in `fuzz/fuzz_targets/` runs. It
//! lives here, not in the fuzz crate, so that `cargo test` replays the committed corpus
//! (`fuzz/corpus/policy_input/`) through exactly the same code without a fuzzing engine, and
//! so it can reach the crate-private argument conversion.

use std::sync::OnceLock;

use custos_core::{Agent, AgentId, Decision, ToolClass, ToolRef};

use crate::context::arguments_record;
use crate::{CallRequest, PolicyEngine, ToolInfo, EMBEDDED_SCHEMA};

/// Policies that read the arguments the embedded schema declares, so converted values reach
/// Cedar's evaluator: a permit for everything, a forbid on a string argument, and one on a
/// `Long` argument that an approval lifts.
const POLICIES: &str = r#"
permit (principal, action == Custos::Action::"call_tool", resource);

@id("no-etc")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has path && context.arguments.path like "/etc/*" };

@id("big-amounts")
@approval("ops")
forbid (principal, action == Custos::Action::"call_tool", resource)
when { context.arguments has amount && context.arguments.amount > 100 }
unless { context.approval.granted };
"#;

/// Built once per process: building validates the schema and policies, which is far slower
/// than deciding one call, and would drown the fuzzer's time.
fn engine() -> Option<&'static PolicyEngine> {
    static ENGINE: OnceLock<Option<PolicyEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            PolicyEngine::from_sources(EMBEDDED_SCHEMA, &[("fuzz.cedar".to_owned(), POLICIES.to_owned())]).ok()
        })
        .as_ref()
}

/// The body of fuzz target `policy_input`; asserts the invariants: no panic, whatever the
/// JSON shape of a call's arguments; arguments that cannot be converted to Cedar are denied,
/// with the conversion error as the reason and no policy named; an argument a policy reads,
/// present with another type than the schema declares, denies (fail closed); a `path` under
/// `/etc/` is denied; `explain` agrees with `decide`.
///
/// `data` is the arguments as JSON text; input that is not JSON is passed as a JSON string.
pub fn decide(data: &[u8]) {
    let arguments: serde_json::Value = serde_json::from_slice(data)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(data).into_owned()));
    let engine = engine();
    assert!(engine.is_some(), "the fuzzing policies load");
    let Some(engine) = engine else { return };
    let agent = Agent {
        id: AgentId("fuzz-agent".to_owned()),
        owner: "fuzz".to_owned(),
        purpose: "fuzzing".to_owned(),
        groups: vec!["readers".to_owned()],
    };
    let Ok(tool) = ToolRef::new("files", "read") else { return };
    let req = CallRequest {
        agent: &agent,
        tool: ToolInfo { tool: &tool, class: ToolClass::Read, annotations: None },
        arguments: &arguments,
        run_id: "run-fuzz",
        step: 1,
        labels: &[],
        findings: &[],
        flows: &[],
        approval_granted: false,
    };
    let decision = engine.decide(&req);
    assert_eq!(engine.explain(&req).decision, decision, "explain agrees with decide");

    match arguments_record(&arguments) {
        Err(err) => assert_eq!(
            decision,
            Decision::Deny { policies: Vec::new(), reason: err.to_string() },
            "unconvertible arguments are denied with the reason"
        ),
        Ok(_) => {
            let path = arguments.get("path");
            let amount = arguments.get("amount");
            let wrong_type = path.is_some_and(|v| converts_to_other_than(v, true))
                || amount.is_some_and(|v| converts_to_other_than(v, false));
            let etc = path.and_then(serde_json::Value::as_str).is_some_and(|p| p.starts_with("/etc/"));
            if wrong_type || etc {
                assert!(matches!(decision, Decision::Deny { .. }), "must deny {arguments}: {decision:?}");
            }
            if let Some(serde_json::Value::Number(n)) = amount {
                if !crate::context::readable(n) {
                    assert!(
                        decision.explain().contains("argument `amount` is"),
                        "a deny names the unreadable argument: {decision:?}"
                    );
                }
            }
        }
    }
}

/// Whether `value` surely converts to a Cedar value of another type than the declared
/// `String` (`want_string`) or `Long`. A number policy cannot read is kept as its text (a
/// `String`), so it counts as another type than `Long` only.
fn converts_to_other_than(value: &serde_json::Value, want_string: bool) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(_) | serde_json::Value::Array(_) | serde_json::Value::Object(_) => true,
        serde_json::Value::String(_) => !want_string,
        serde_json::Value::Number(n) => {
            let readable = crate::context::readable(n);
            let long = readable && n.is_i64();
            if want_string {
                readable
            } else {
                !long
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_pass() {
        for input in [
            &b""[..],
            b"{}",
            b"null",
            b"{\"path\":7}",
            b"{\"path\":\"/etc/passwd\"}",
            b"\xff",
            b"{\"amount\":99999999999999999999999}",
            b"{\"amount\":1e300}",
            b"{\"amount\":100.00001}",
            b"{\"amount\":9007199254740993}",
            b"{\"path\":1e300}",
        ] {
            decide(input);
        }
    }
}
