//! The classified view of one JSON-RPC frame.
//!
//! Parsing borrows nothing and copies little: the envelope keeps `id` and `params` as raw JSON
//! text, and the frame's bytes are kept whole for forwarding.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::codes;
use crate::strict::Side;

/// A JSON-RPC id exactly as the peer spelled it (`1`, `3.0`, `"abc"`).
pub type RawId = Box<RawValue>;

/// One frame, classified, with its raw bytes.
#[derive(Debug)]
pub struct Message {
    pub raw: Vec<u8>,
    pub kind: MessageKind,
    /// `params` as raw JSON, when present.
    pub params: Option<Box<RawValue>>,
}

#[derive(Debug)]
pub enum MessageKind {
    Request { id: RawId, method: String },
    Notification { method: String },
    Response { id: RawId, is_error: bool },
}

/// Why a frame is not a JSON-RPC message we can forward.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: {reason}")]
    Invalid { reason: String, id: Option<RawId> },
    /// A well-formed message the gateway refuses to pass on (see [`crate::strict`] and
    /// [`crate::protocol::check_method`]), answered with `code`.
    #[error("{reason}")]
    Refused { code: i64, reason: String, id: Option<RawId>, method: Option<String> },
}

impl MessageError {
    /// The JSON-RPC error code for the reply.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => codes::PARSE_ERROR,
            Self::Invalid { .. } => codes::INVALID_REQUEST,
            Self::Refused { code, .. } => *code,
        }
    }

    /// The id to answer with, if the frame had a usable one.
    pub fn id(&self) -> Option<&RawValue> {
        match self {
            Self::Parse(_) => None,
            Self::Invalid { id, .. } | Self::Refused { id, .. } => id.as_deref(),
        }
    }

    /// The method the refused message named, when it was readable.
    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Refused { method, .. } => method.as_deref(),
            _ => None,
        }
    }

    /// Whether the frame was a response (it has no method; answering it is pointless, but the
    /// request it answers may wait for an answer).
    pub fn is_response(&self) -> bool {
        matches!(self, Self::Refused { method: None, id: Some(_), .. })
    }

    fn invalid(reason: impl Into<String>, id: Option<RawId>) -> Self {
        Self::Invalid { reason: reason.into(), id }
    }
}

/// The envelope fields Custos reads. Unknown fields are ignored here and kept in `raw`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    jsonrpc: Option<String>,
    #[serde(default, deserialize_with = "present")]
    id: Option<RawId>,
    #[serde(default)]
    method: Option<Box<RawValue>>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

/// Keeps a field that is present even when its value is `null`, so `"id": null` is told apart
/// from a missing id.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

fn is_valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

impl Message {
    /// Classifies one frame `from` a client or an upstream, after checking that every JSON
    /// parser reads it as the gateway does ([`crate::strict`]) and that its method is one a
    /// peer cannot take for another ([`crate::protocol::check_method`]).
    ///
    /// Batches (arrays) are refused: MCP removed them in 2025-06-18, and a batch would carry
    /// tool calls past per-call governance.
    pub fn parse(raw: Vec<u8>, from: Side) -> Result<Self, MessageError> {
        let msg = Self::classify(raw)?;
        let refused = |code: i64, reason: String| MessageError::Refused {
            code,
            reason,
            id: msg.id().filter(|id| id.get() != "null").map(ToOwned::to_owned),
            method: msg.method().map(str::to_owned),
        };
        if let Err(refusal) = crate::strict::check(&msg.raw, from) {
            let code = if refusal.in_params { codes::INVALID_PARAMS } else { codes::INVALID_REQUEST };
            return Err(refused(code, refusal.reason));
        }
        if let Some(method) = msg.method() {
            let notification = matches!(msg.kind, MessageKind::Notification { .. });
            if let Err((code, reason)) = crate::protocol::check_method(method, notification) {
                return Err(refused(code, reason));
            }
        }
        Ok(msg)
    }

    /// The envelope of one frame, classified.
    fn classify(raw: Vec<u8>) -> Result<Self, MessageError> {
        let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            // Still check that it is JSON, so garbage gets a parse error.
            serde_json::from_slice::<serde::de::IgnoredAny>(&raw).map_err(|e| MessageError::Parse(e.to_string()))?;
            return Err(MessageError::invalid("batches are not supported", None));
        }
        if first != Some(b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(&raw).map_err(|e| MessageError::Parse(e.to_string()))?;
            return Err(MessageError::invalid("a message must be a json object", None));
        }
        let env: Envelope = serde_json::from_slice(&raw).map_err(|e| {
            if e.is_data() {
                MessageError::invalid(e.to_string(), None)
            } else {
                MessageError::Parse(e.to_string())
            }
        })?;
        let id_present = env.id.is_some();
        let id = env.id.filter(|id| is_valid_id(id) || id.get() == "null");
        if id_present && id.is_none() {
            return Err(MessageError::invalid("an id must be a string or a number", None));
        }
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(MessageError::invalid("`jsonrpc` must be \"2.0\"", id));
        }
        let method = match env.method {
            None => None,
            Some(m) => match serde_json::from_str::<String>(m.get()) {
                Ok(m) => Some(m),
                Err(_) => return Err(MessageError::invalid("`method` must be a string", id)),
            },
        };
        let kind = match (method, id) {
            (Some(method), Some(id)) => {
                if !is_valid_id(&id) {
                    return Err(MessageError::invalid("a request id must be a string or a number", None));
                }
                MessageKind::Request { id, method }
            }
            (Some(method), None) => MessageKind::Notification { method },
            (None, Some(id)) => match (env.result.is_some(), env.error.is_some()) {
                (true, false) => MessageKind::Response { id, is_error: false },
                (false, true) => MessageKind::Response { id, is_error: true },
                _ => {
                    return Err(MessageError::invalid("a response needs exactly one of `result` and `error`", Some(id)))
                }
            },
            (None, None) => return Err(MessageError::invalid("a message needs a `method` or an `id`", None)),
        };
        Ok(Self { raw, kind, params: env.params })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::Request { method, .. } | MessageKind::Notification { method } => Some(method),
            MessageKind::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&RawValue> {
        match &self.kind {
            MessageKind::Request { id, .. } | MessageKind::Response { id, .. } => Some(id),
            MessageKind::Notification { .. } => None,
        }
    }

    /// `params._meta`, when present and an object.
    pub fn meta(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        #[derive(Deserialize)]
        struct WithMeta {
            #[serde(rename = "_meta")]
            meta: Option<serde_json::Map<String, serde_json::Value>>,
        }
        let params = self.params.as_ref()?;
        serde_json::from_str::<WithMeta>(params.get()).ok()?.meta
    }
}

/// The frame with its top-level `id` replaced by `id`; everything else is written back as the
/// same raw JSON text. `None` when the frame is not a JSON object. For gateways that must give a
/// request an id of their own (federation, stateless clients) and give the answer the client's
/// id back.
pub fn with_id(frame: &[u8], id: &RawValue) -> Option<Vec<u8>> {
    let mut envelope: indexmap::IndexMap<String, Box<RawValue>> = serde_json::from_slice(frame).ok()?;
    envelope.insert("id".to_owned(), id.to_owned());
    serde_json::to_vec(&envelope).ok()
}

/// The subscription id a `subscriptions/listen` stream message carries in its `_meta` (under
/// `params` for notifications, `result` for the final answer), as raw JSON text.
pub fn subscription_id(frame: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "_meta")]
        meta: Option<indexmap::IndexMap<String, Box<RawValue>>>,
    }
    #[derive(Deserialize)]
    struct View {
        params: Option<Meta>,
        result: Option<Meta>,
    }
    let view: View = serde_json::from_slice(frame).ok()?;
    let meta = view.params.or(view.result)?.meta?;
    meta.get(crate::protocol::META_SUBSCRIPTION_ID).map(|id| id.get().to_owned())
}

/// The frame with the subscription id in its `_meta` (see [`subscription_id`]) replaced by
/// `id`, and a top-level `id`, if it has one, too: a gateway that renumbered a client's
/// `subscriptions/listen` gives the stream's messages the client's id back. `None` when the frame
/// is not a JSON object; a frame without a subscription id is returned with only its `id` changed.
pub fn with_subscription_id(frame: &[u8], id: &RawValue) -> Option<Vec<u8>> {
    let mut envelope: indexmap::IndexMap<String, Box<RawValue>> = serde_json::from_slice(frame).ok()?;
    if envelope.contains_key("id") {
        envelope.insert("id".to_owned(), id.to_owned());
    }
    for part in ["params", "result"] {
        let Some(body) = envelope.get(part) else { continue };
        let Ok(mut body) = serde_json::from_str::<indexmap::IndexMap<String, Box<RawValue>>>(body.get()) else {
            continue;
        };
        let Some(meta) = body.get("_meta") else { continue };
        let Ok(mut meta) = serde_json::from_str::<indexmap::IndexMap<String, Box<RawValue>>>(meta.get()) else {
            continue;
        };
        if meta.contains_key(crate::protocol::META_SUBSCRIPTION_ID) {
            meta.insert(crate::protocol::META_SUBSCRIPTION_ID.to_owned(), id.to_owned());
            body.insert("_meta".to_owned(), serde_json::value::to_raw_value(&meta).ok()?);
            envelope.insert(part.to_owned(), serde_json::value::to_raw_value(&body).ok()?);
        }
    }
    serde_json::to_vec(&envelope).ok()
}

/// The parameters of `tools/call` that governance reads.
#[derive(Debug, Deserialize)]
pub struct ToolCallParams {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

impl ToolCallParams {
    /// Parses `tools/call` params, and checks the tool's name ([`custos_core::check_tool_name`]).
    /// The error text is for the `-32602` reply.
    ///
    /// The arguments are built only from a [`Message`], which [`Message::parse`] has bounded
    /// (values, depth) and checked for duplicate keys while reading it.
    pub fn from_message(msg: &Message) -> Result<Self, String> {
        let params = msg.params.as_ref().ok_or("`tools/call` needs `params`")?;
        let parsed: Self = serde_json::from_str(params.get()).map_err(|e| format!("`tools/call` params: {e}"))?;
        custos_core::check_tool_name(&parsed.name)?;
        match &parsed.arguments {
            None | Some(serde_json::Value::Object(_)) => Ok(parsed),
            Some(_) => Err("`tools/call` `arguments` must be an object".to_owned()),
        }
    }

    /// The arguments as an object (`{}` when absent).
    pub fn arguments(&self) -> serde_json::Value {
        self.arguments.clone().unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, MessageError> {
        Message::parse(s.as_bytes().to_vec(), Side::ANY_CLIENT)
    }

    #[test]
    fn subscription_ids_are_read_and_replaced_where_the_stream_carries_them() {
        let ack = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"custos-7","x":1},"notifications":{"toolsListChanged":true}}}"#;
        assert_eq!(subscription_id(ack).as_deref(), Some("\"custos-7\""));
        let client: Box<RawValue> = RawValue::from_string("1".into()).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&with_subscription_id(ack, &client).unwrap()).unwrap();
        assert_eq!(back["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1);
        assert_eq!(back["params"]["_meta"]["x"], 1, "other meta keys stay");
        assert_eq!(back["params"]["notifications"]["toolsListChanged"], true);
        assert!(back.get("id").is_none(), "a notification gets no id");
        let end = br#"{"jsonrpc":"2.0","id":"custos-7","result":{"_meta":{"io.modelcontextprotocol/subscriptionId":"custos-7"}}}"#;
        assert_eq!(subscription_id(end).as_deref(), Some("\"custos-7\""));
        let back: serde_json::Value = serde_json::from_slice(&with_subscription_id(end, &client).unwrap()).unwrap();
        assert_eq!(
            (back["id"].clone(), back["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone()),
            (1.into(), 1.into())
        );
        let plain = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
        assert_eq!(subscription_id(plain), None);
        assert_eq!(subscription_id(b"[1,2]"), None);
        assert!(with_subscription_id(b"not json", &client).is_none());
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let m = parse(r#"{"jsonrpc":"2.0","id":3.0,"method":"tools/list","x-vendor":1}"#).unwrap();
        assert!(matches!(&m.kind, MessageKind::Request { id, method } if id.get() == "3.0" && method == "tools/list"));
        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(m.kind, MessageKind::Notification { .. }));
        let m = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(m.kind, MessageKind::Response { is_error: false, .. }));
        let m = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert!(matches!(m.kind, MessageKind::Response { is_error: true, .. }));
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        for (input, code) in [
            ("not json", codes::PARSE_ERROR),
            ("{\"jsonrpc\":\"2.0\",", codes::PARSE_ERROR),
            ("[]", codes::INVALID_REQUEST),
            ("[{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]", codes::INVALID_REQUEST),
            ("42", codes::INVALID_REQUEST),
            ("{}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":1}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}", codes::INVALID_REQUEST),
            ("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"x\"}", codes::INVALID_REQUEST),
        ] {
            let err = parse(input).unwrap_err();
            assert_eq!(err.code(), code, "{input}: {err}");
        }
    }

    #[test]
    fn refuses_what_a_peer_could_read_as_another_message() {
        // A tool call without an id: forwarded, a lenient server would run it undecided.
        let err = parse(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#).unwrap_err();
        assert_eq!((err.code(), err.id().map(RawValue::get)), (codes::INVALID_REQUEST, None), "{err}");
        assert_eq!(err.method(), Some("tools/call"));
        for method in ["Tools/Call", "tools/call ", "tools/call\\u0000"] {
            let err = parse(&format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{{"name":"t"}}}}"#))
                .unwrap_err();
            assert_eq!((err.code(), err.id().map(RawValue::get)), (codes::METHOD_NOT_FOUND, Some("7")), "{method}");
        }
        // Duplicate keys in a tool's arguments: invalid params, answered with the request's id.
        let err = parse(r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t","arguments":{"a":500,"b":1,"a":5}}}"#)
            .unwrap_err();
        assert_eq!((err.code(), err.id().map(RawValue::get)), (codes::INVALID_PARAMS, Some("\"a\"")));
        assert!(err.to_string().contains("duplicate key `a` in `params.arguments`"), "{err}");
        assert!(!err.is_response());
        // An upstream's answer with duplicate keys: refused, and known as an answer to `9`.
        let err =
            Message::parse(br#"{"jsonrpc":"2.0","id":9,"result":{"a":1,"a":2}}"#.to_vec(), Side::Upstream).unwrap_err();
        assert!(err.is_response() && err.id().map(RawValue::get) == Some("9"), "{err}");
        // Case collisions matter from clients only.
        let both = br#"{"jsonrpc":"2.0","id":9,"result":{"ETag":1,"etag":2}}"#;
        assert!(Message::parse(both.to_vec(), Side::Upstream).is_ok());
        assert!(Message::parse(both.to_vec(), Side::ANY_CLIENT).is_err());
    }

    #[test]
    fn invalid_request_keeps_a_usable_id() {
        let err = parse(r#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).unwrap_err();
        assert_eq!(err.id().map(RawValue::get), Some("7"));
    }

    #[test]
    fn only_the_id_changes() {
        let ours = RawValue::from_string("\"custos-1\"".into()).unwrap();
        let out =
            with_id(br#"{"jsonrpc":"2.0","id":1.0,"method":"x","params":{"id":7,"a":[1,2]},"z":null}"#, &ours).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":"custos-1","method":"x","params":{"id":7,"a":[1,2]},"z":null}"#
        );
        assert!(with_id(b"[1]", &ours).is_none());
    }

    #[test]
    fn tool_call_params_and_meta() {
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":5}}}"#).unwrap();
        let p = ToolCallParams::from_message(&m).unwrap();
        assert_eq!(p.name, "echo");
        assert_eq!(p.arguments()["text"], "hi");
        assert_eq!(m.meta().unwrap()["progressToken"], 5);
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#)
            .unwrap();
        assert!(ToolCallParams::from_message(&m).is_err());
        let err =
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#).unwrap_err();
        assert_eq!(err.code(), codes::INVALID_PARAMS, "duplicate names must not be resolved by the gateway: {err}");
        for bad_name in ["", "evil ", "re fund"] {
            let m =
                parse(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{bad_name}"}}}}"#))
                    .unwrap();
            assert!(ToolCallParams::from_message(&m).is_err(), "{bad_name:?}");
        }
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#).unwrap();
        assert!(ToolCallParams::from_message(&m).is_err());
    }
}
