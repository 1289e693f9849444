//! JSON-RPC error codes and error responses.

use serde_json::value::RawValue;

/// Error codes: JSON-RPC's own, then Custos's in the implementation-defined range.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Policy denied the call.
    pub const DENIED: i64 = -32001;
    /// The call could not be recorded, so it was refused (fail closed).
    pub const AUDIT_UNAVAILABLE: i64 = -32002;
    /// The upstream server is gone or refused to answer.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32003;
    /// The call waits for a human approval that has not come yet; `data.approval_id` names it,
    /// and the identical call made again once it is approved goes through.
    pub const APPROVAL_PENDING: i64 = -32004;
}

/// A JSON-RPC error response for `id` (`null` when the request's id is unknown), as one line.
///
/// The id is written back exactly as the peer spelled it.
pub fn error_response(id: Option<&RawValue>, code: i64, message: &str, data: Option<serde_json::Value>) -> Vec<u8> {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let (Some(data), Some(obj)) = (data, error.as_object_mut()) {
        obj.insert("data".to_owned(), data);
    }
    let id = id.map_or("null", RawValue::get);
    let error = serde_json::to_string(&error).unwrap_or_default();
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_id_spelling() {
        let id = RawValue::from_string("3.0".to_owned()).unwrap();
        let out = error_response(Some(&id), codes::DENIED, "no", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":3.0,"error":{"code":-32001,"message":"no"}}"#
        );
        let out = error_response(None, codes::PARSE_ERROR, "bad", Some(serde_json::json!({"k": 1})));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["data"]["k"], 1);
    }
}
