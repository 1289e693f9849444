//! HTTP answers. Every error has a JSON body: a JSON-RPC error object where the request was an
//! MCP message, so MCP clients can show it; the HTTP status says what kind of failure it was.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;

/// A JSON-RPC error answer with an HTTP status.
pub fn rpc_error(status: StatusCode, id: Option<&RawValue>, code: i64, message: &str) -> Response {
    json_bytes(status, custos_mcp::error_response(id, code, message, None))
}

/// Raw JSON bytes with a status.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `202 Accepted` with no body: what notifications and responses from the client get.
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}
