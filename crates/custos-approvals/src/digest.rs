//! The digest an approval is bound to.

use custos_core::{AgentId, Digest, RunId, ToolRef};
use serde_json::json;

/// Names the document hashed, so this digest can never equal another Custos digest of the same
/// fields (a descriptor, an event body).
const DOMAIN: &str = "custos.approval.v1";

/// The canonical SHA-256 digest (64 lowercase hex digits) of one call: the agent, the run, the
/// tool, the digest of the tool's descriptor when the call was made, and the arguments exactly
/// as sent (not redacted).
///
/// The document hashed is canonical JSON (keys sorted, no spaces), so the same call spelled
/// with other key order or spacing has the same digest, while any change of a part (one
/// argument, the run, a tool whose descriptor changed since) gives another digest, and needs
/// another approval. Missing arguments and `{}` are different calls: pass what the call carried.
pub fn call_digest(
    agent: &AgentId,
    run: &RunId,
    tool: &ToolRef,
    descriptor_sha256: Option<&str>,
    arguments: &serde_json::Value,
) -> String {
    let document = json!({
        "domain": DOMAIN,
        "agent": agent.0,
        "run": run.0,
        "tool": { "server": tool.server(), "name": tool.name() },
        "descriptor_sha256": descriptor_sha256,
        "arguments": arguments,
    });
    Digest::of_json(&document).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(agent: &str, run: &str, tool: &str, descriptor: Option<&str>, args: serde_json::Value) -> String {
        call_digest(&AgentId(agent.into()), &RunId(run.into()), &tool.parse().unwrap(), descriptor, &args)
    }

    #[test]
    fn the_digest_is_stable_across_spelling() {
        let a = digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10, "memo": {"b": 1, "a": 2}}));
        let parsed: serde_json::Value =
            serde_json::from_str(r#"{ "memo": {"a": 2, "b": 1}, "amount": 10,   "to": "x" }"#).unwrap();
        assert_eq!(a, digest("bot", "r1", "bank/pay", Some("d1"), parsed));
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Pinned: the digest is a stored, cross-process contract (SHA-256 of the canonical
        // document below); changing the document invalidates every open approval.
        // {"agent":"bot","arguments":{},"descriptor_sha256":null,"domain":"custos.approval.v1",
        //  "run":"r1","tool":{"name":"pay","server":"bank"}}
        assert_eq!(
            call_digest(
                &AgentId("bot".into()),
                &RunId("r1".into()),
                &ToolRef::new("bank", "pay").unwrap(),
                None,
                &json!({})
            ),
            "e939bd8cd3fe1ca8fd46ac1b2c9d5e8b628607feba32885ba3de6e1eb63f8bb0"
        );
    }

    #[test]
    fn every_part_changes_the_digest() {
        let base = || digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10}));
        let variants = [
            digest("bot2", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10})),
            digest("bot", "r2", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10})),
            digest("bot", "r1", "bank/refund", Some("d1"), json!({"to": "x", "amount": 10})),
            digest("bot", "r1", "bank2/pay", Some("d1"), json!({"to": "x", "amount": 10})),
            digest("bot", "r1", "bank/pay", Some("d2"), json!({"to": "x", "amount": 10})),
            digest("bot", "r1", "bank/pay", None, json!({"to": "x", "amount": 10})),
            digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 11})),
            digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10.5})),
            digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": "10"})),
            digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x", "amount": 10, "extra": null})),
            digest("bot", "r1", "bank/pay", Some("d1"), json!({"to": "x"})),
            digest("bot", "r1", "bank/pay", Some("d1"), serde_json::Value::Null),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(v, &base(), "variant {i}");
        }
        // Fields cannot bleed into each other: `a/b` + `c` is not `a` + `b/c`.
        assert_ne!(digest("a", "b", "s/t", None, json!({})), digest("a", "b", "s/t", Some(""), json!({})));
    }
}
