//! W3C trace context in `params._meta` (`traceparent`, `tracestate`): how an MCP client names
//! the trace a request belongs to, and how the gateway names its own span to the upstream.
//!
//! Written into a forwarded request after it was decided and recorded: the arguments, whose
//! digest approvals and replay detection bind, are carried over as the same raw JSON text.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::Message;

/// The `_meta` key of the W3C `traceparent`.
pub const META_TRACEPARENT: &str = "traceparent";
/// The `_meta` key of the W3C `tracestate`.
pub const META_TRACESTATE: &str = "tracestate";

/// The `traceparent` and `tracestate` strings in a request's `params._meta`, when present.
pub fn trace_context(msg: &Message) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Meta {
        traceparent: Option<String>,
        tracestate: Option<String>,
    }
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    let Some(params) = msg.params.as_ref() else { return (None, None) };
    match serde_json::from_str::<Params>(params.get()) {
        Ok(Params { meta: Some(meta) }) => (meta.traceparent, meta.tracestate),
        _ => (None, None),
    }
}

/// The request with `params._meta.traceparent` (and `tracestate`, or none) set to these; every
/// other member keeps its raw text. `None` when the frame has no object `params` (or `_meta`
/// that is not an object): the frame then goes on unchanged.
pub fn with_trace_context(frame: &[u8], traceparent: &str, tracestate: Option<&str>) -> Option<Vec<u8>> {
    type Members = IndexMap<String, Box<RawValue>>;
    let mut envelope: Members = serde_json::from_slice(frame).ok()?;
    let mut params: Members = serde_json::from_str(envelope.get("params")?.get()).ok()?;
    let mut meta: Members = match params.get("_meta") {
        Some(meta) => serde_json::from_str(meta.get()).ok()?,
        None => Members::new(),
    };
    meta.insert(META_TRACEPARENT.to_owned(), serde_json::value::to_raw_value(traceparent).ok()?);
    match tracestate {
        Some(state) => {
            meta.insert(META_TRACESTATE.to_owned(), serde_json::value::to_raw_value(state).ok()?);
        }
        // A client's `tracestate` belongs with its `traceparent`, which this one replaces.
        None => {
            meta.shift_remove(META_TRACESTATE);
        }
    }
    params.insert("_meta".to_owned(), serde_json::value::to_raw_value(&meta).ok()?);
    envelope.insert("params".to_owned(), serde_json::value::to_raw_value(&params).ok()?);
    serde_json::to_vec(&envelope).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Side;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const OURS: &str = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";

    #[test]
    fn the_clients_context_is_read_from_meta() {
        let raw = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","_meta":{{"traceparent":"{PARENT}","tracestate":"a=1"}}}}}}"#
        );
        let msg = Message::parse(raw.into_bytes(), Side::Client { max_argument_values: 100 }).unwrap();
        assert_eq!(trace_context(&msg), (Some(PARENT.to_owned()), Some("a=1".to_owned())));
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#.to_vec();
        let msg = Message::parse(bare, Side::Client { max_argument_values: 100 }).unwrap();
        assert_eq!(trace_context(&msg), (None, None));
    }

    #[test]
    fn our_context_replaces_the_clients_and_the_arguments_keep_their_spelling() {
        let raw = format!(
            r#"{{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{{"name":"t","arguments":{{"n":1.50,"s":"\u00e9"}},"_meta":{{"progressToken":7,"traceparent":"{PARENT}","tracestate":"a=1"}}}}}}"#
        );
        let out = with_trace_context(raw.as_bytes(), OURS, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""arguments":{"n":1.50,"s":"\u00e9"}"#), "{text}");
        assert!(text.contains(r#""id":3.0"#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], OURS);
        assert_eq!(v["params"]["_meta"]["progressToken"], 7);
        assert!(v["params"]["_meta"].get("tracestate").is_none());
    }

    #[test]
    fn meta_is_added_when_absent_and_odd_frames_are_left_alone() {
        let raw = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&with_trace_context(raw, OURS, Some("b=2")).unwrap()).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], OURS);
        assert_eq!(v["params"]["_meta"]["tracestate"], "b=2");
        assert_eq!(with_trace_context(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#, OURS, None), None);
        assert_eq!(
            with_trace_context(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":3}}"#, OURS, None),
            None
        );
    }
}
