//! Facts about MCP revisions that the gateway needs.
//!
//! Two generations are live. The session-based revisions (2025-06-18, 2025-11-25) negotiate a
//! version in `initialize`. The stateless revision (2026-07-28) has no `initialize`: every request
//! carries its version and the client's capabilities in `params._meta`, and servers answer
//! `server/discover`.

/// The `_meta` key that carries a stateless request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key that carries a stateless request's client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key that may carry a stateless request's client info.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// The `_meta` key stamped on every message of a `subscriptions/listen` stream (its
/// acknowledgment, its notifications and its final result): the listen request's id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Revisions Custos knows, newest first.
pub const KNOWN_REVISIONS: [&str; 5] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The first stateless revision.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// The protocol version a request states for itself: `_meta`'s version on stateless requests,
/// `protocolVersion` on `initialize`.
pub fn stated_version(method: &str, params: Option<&serde_json::value::RawValue>) -> Option<String> {
    let params: serde_json::Value = serde_json::from_str(params?.get()).ok()?;
    if let Some(v) = params.get("_meta").and_then(|m| m.get(META_PROTOCOL_VERSION)).and_then(|v| v.as_str()) {
        return Some(v.to_owned());
    }
    if method == "initialize" {
        return params.get("protocolVersion").and_then(|v| v.as_str()).map(str::to_owned);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn reads_versions_from_meta_and_initialize() {
        let p = RawValue::from_string(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#.into())
            .unwrap();
        assert_eq!(stated_version("tools/list", Some(&p)).as_deref(), Some("2026-07-28"));
        let p = RawValue::from_string(r#"{"protocolVersion":"2025-06-18","capabilities":{}}"#.into()).unwrap();
        assert_eq!(stated_version("initialize", Some(&p)).as_deref(), Some("2025-06-18"));
        assert_eq!(stated_version("tools/list", Some(&p)), None);
        assert_eq!(stated_version("tools/list", None), None);
    }
}
