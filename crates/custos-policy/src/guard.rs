//! Argument guards: the tool arguments a policy cannot apply without.
//!
//! A policy about an argument opens with a test that the argument is there, because reading a
//! missing attribute is an evaluation error:
//!
//! ```cedar
//! forbid (principal, action, resource)
//! when { context.arguments has query && context.arguments.query like "*DROP*" };
//! ```
//!
//! Cedar evaluates a policy as its scope, then its conditions in order, each `&&` from left to
//! right, stopping at the first false. Scope tests never fail. So when the first condition is a
//! `when` whose leading conjuncts are `context.arguments has K`, a call whose arguments lack any
//! such `K` gets `false` from the policy, with no error: leaving the policy out of that call's
//! evaluation changes neither the decision, nor the policies that determined it, nor the errors.
//! The engine does so, and a deployment's argument rules cost nothing on calls that do not
//! carry the argument.
//!
//! The guard is read conservatively: a key the call's JSON arguments have is taken as present,
//! even if its value (a `null`, an out-of-range number) is left out of `context.arguments`; the
//! policy is then evaluated and Cedar decides.

use cedar_policy::Policy;
use serde_json::Value;

/// The argument keys `policy` needs before it can apply, in the order it tests them. Empty
/// when it has no such guard, or when its form cannot be read.
pub(crate) fn argument_guard(policy: &Policy) -> Vec<String> {
    // Reading the policy's form parses it again; most policies cannot have a guard.
    let may_have = policy.has_non_scope_constraint() && policy.to_cedar().is_none_or(|text| text.contains("has"));
    if !may_have {
        return Vec::new();
    }
    let Ok(est) = policy.to_json() else { return Vec::new() };
    let Some(first) = est.get("conditions").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Vec::new();
    };
    if first.get("kind").and_then(Value::as_str) != Some("when") {
        return Vec::new();
    }
    let Some(body) = first.get("body") else { return Vec::new() };
    let mut conjuncts = Vec::new();
    in_order(body, &mut conjuncts);
    conjuncts.into_iter().map_while(argument_tested).collect()
}

/// The conjuncts of `expr` in the order Cedar evaluates them: `a && b && c` is
/// `(a && b) && c`, so the left spine comes first.
fn in_order<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                in_order(left, out);
                in_order(right, out);
            } else {
                out.push(expr);
            }
        }
        None => out.push(expr),
    }
}

/// `K` when `expr` is `context.arguments has K` (or `context.arguments has K.…`, which needs
/// `K` first).
fn argument_tested(expr: &Value) -> Option<String> {
    let has = expr.get("has")?;
    let left = has.get("left")?.get(".")?;
    if left.get("left")?.get("Var")?.as_str()? != "context" || left.get("attr")?.as_str()? != "arguments" {
        return None;
    }
    match has.get("attr")? {
        Value::String(key) => Some(key.clone()),
        Value::Array(path) => path.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(text: &str) -> Vec<String> {
        argument_guard(&Policy::parse(None, text).unwrap())
    }

    #[test]
    fn leading_tests_of_arguments_are_the_guard() {
        let forbid = "forbid (principal, action, resource) when";
        assert_eq!(
            guard(&format!("{forbid} {{ context.arguments has query && context.arguments.query == \"x\" }};")),
            ["query"]
        );
        assert_eq!(
            guard(&format!(
                "{forbid} {{ context.arguments has a && context.arguments has \"b c\" && context.arguments.a == 1 \
                 && context.arguments has d }};"
            )),
            ["a", "b c"],
            "a test after another conjunct may be behind an error, so it is not part of the guard"
        );
        assert_eq!(guard(&format!("{forbid} {{ context.arguments has a.b && context.arguments.a.b }};")), ["a"]);
        assert_eq!(
            guard(&format!("{forbid} {{ context.arguments has a }} unless {{ context.arguments.a == 1 }};")),
            ["a"]
        );
    }

    #[test]
    fn anything_else_has_no_guard() {
        let none: [&str; 7] = [
            "permit (principal, action, resource);",
            "permit (principal, action, resource) when { resource.class == \"read\" && context.arguments has a };",
            "permit (principal, action, resource) unless { context.arguments has a };",
            "permit (principal, action, resource) when { context.arguments has a || context.run.step > 1 };",
            "permit (principal, action, resource) when { !(context.arguments has a) };",
            "permit (principal, action, resource) when { context.run has id };",
            "permit (principal, action, resource) when { context has arguments };",
        ];
        for text in none {
            assert_eq!(guard(text), Vec::<String>::new(), "{text}");
        }
    }
}
