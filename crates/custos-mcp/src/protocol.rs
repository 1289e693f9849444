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

/// Requests of every revision Custos knows, in both directions (client to server, then server
/// to client; `ping` and the `tasks/*` requests go both ways).
pub const REQUEST_METHODS: [&str; 22] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "server/discover",
    "subscriptions/listen",
    "sampling/createMessage",
    "roots/list",
    "elicitation/create",
];

/// Notifications of every revision Custos knows, in both directions.
pub const NOTIFICATION_METHODS: [&str; 12] = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
    "notifications/subscriptions/acknowledged",
];

/// Why a method name is refused, as `(JSON-RPC code, reason)`; `Ok` for every method a peer
/// may send, including ones Custos does not know (extensions pass through).
///
/// A method that is not one of MCP's but would be taken for one by a peer that trims, ignores
/// case, drops invisible or control characters, stops at a NUL or reads full-width letters
/// (`Tools/Call`, `tools/call `, `tools/call\u0000`, `ｔｏｏｌｓ/call`) is refused: forwarded, it
/// would run as a tool call that nothing decided and nothing recorded. So is any method with a
/// control character, and a notification whose method is a request's (a `tools/call` without
/// an id): every request method expects an answer, and a lenient peer would run it.
pub fn check_method(method: &str, notification: bool) -> Result<(), (i64, String)> {
    let shown = method.escape_debug();
    let known_request = REQUEST_METHODS.contains(&method);
    if known_request || NOTIFICATION_METHODS.contains(&method) {
        if notification && known_request {
            return Err((
                crate::codes::INVALID_REQUEST,
                format!("`{shown}` is a request: it needs an `id`, and a notification carrying it is refused"),
            ));
        }
        return Ok(());
    }
    let canonical = canonical_method(method);
    let resembled =
        REQUEST_METHODS.iter().chain(NOTIFICATION_METHODS.iter()).find(|m| canonical_method(m) == canonical);
    if let Some(known) = resembled {
        return Err((
            crate::codes::METHOD_NOT_FOUND,
            format!("method `{shown}` is not `{known}`: methods are spelled exactly, and this one is refused"),
        ));
    }
    if method.chars().any(char::is_control) {
        return Err((crate::codes::INVALID_REQUEST, format!("method `{shown}` holds a control character")));
    }
    Ok(())
}

/// `method` as a lenient peer might read it: cut at a NUL, without whitespace, control,
/// invisible (format) characters or separators (`/`, `.`, `_`, `-`), full-width letters made
/// ASCII, case folded.
fn canonical_method(method: &str) -> String {
    let cut = method.split('\0').next().unwrap_or_default();
    cut.chars()
        .map(|c| match u32::from(c) {
            // Full-width forms of ASCII (U+FF01..U+FF5E) are ASCII shifted by 0xFEE0.
            code @ 0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .filter(|c| !(c.is_whitespace() || c.is_control() || is_invisible(*c) || matches!(c, '/' | '.' | '_' | '-')))
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Characters that render as nothing (Unicode format characters and the like) that a peer may
/// drop: soft hyphen, zero-width and bidi controls, word joiners, the BOM, tag characters.
fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF
        | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
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

    #[test]
    fn methods_that_pass_for_known_ones_are_refused() {
        for ok in ["tools/call", "notifications/progress", "vendor/custom", "x", "tools/call2", "tools/callback"] {
            assert_eq!(check_method(ok, false), Ok(()), "{ok}");
        }
        for look_alike in [
            "Tools/Call",
            "tools/call ",
            " tools/call",
            "tools/call\t",
            "tools/call\u{0}",
            "tools/call\u{0}anything",
            "tools/\u{200b}call",
            "TOOLS/CALL",
            "tools.call",
            "tools_call",
            "toolſ/call",
            "ｔｏｏｌｓ/call",
            "Notifications/Initialized",
            "initialize\u{feff}",
        ] {
            let (code, reason) = check_method(look_alike, false).unwrap_err();
            assert_eq!(code, crate::codes::METHOD_NOT_FOUND, "{}", look_alike.escape_debug());
            assert!(reason.contains("spelled exactly"), "{reason}");
        }
        let (code, reason) = check_method("tools/call", true).unwrap_err();
        assert_eq!(code, crate::codes::INVALID_REQUEST);
        assert!(reason.contains("needs an `id`"), "{reason}");
        assert!(check_method("notifications/initialized", true).is_ok());
        assert!(check_method("vendor/x\u{1}", false).is_err());
    }
}
