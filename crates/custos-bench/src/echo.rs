//! The upstream of the benchmarks: an MCP server with one tool, `echo`, that answers every
//! message at once, over Streamable HTTP (plain JSON replies, no event stream) or stdio.
//!
//! It does as little as a correct server can, so that what the benchmarks measure is the path
//! in front of it: one JSON parse and one small reply per message.

use std::convert::Infallible;
use std::io::{BufRead, Write};
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The session id the HTTP server hands out on `initialize` (it keeps no state per session).
const SESSION: &str = "echo-session";

/// The largest request body the HTTP server reads.
const MAX_BODY: usize = 1 << 20;

/// The answer to one JSON-RPC message, as JSON text; `None` for notifications and replies.
pub fn answer(message: &[u8]) -> Option<Vec<u8>> {
    let msg: Value = match serde_json::from_slice(message) {
        Ok(v) => v,
        Err(e) => return Some(error(&Value::Null, -32700, &format!("parse error: {e}"))),
    };
    let id = msg.get("id")?;
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A reply to a request of ours: we send none.
        return None;
    };
    let params = msg.get("params").unwrap_or(&Value::Null);
    let result = match method {
        "initialize" => json!({
            "protocolVersion": params.get("protocolVersion").cloned().unwrap_or_else(|| json!("2025-06-18")),
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "custos-bench-echo", "version": env!("CARGO_PKG_VERSION") },
        }),
        "ping" => json!({}),
        "tools/list" => json!({ "tools": [{
            "name": "echo",
            "description": "Returns the text it is given.",
            "inputSchema": {
                "type": "object",
                "properties": { "text": { "type": "string" } },
                "required": ["text"],
            },
            "annotations": { "readOnlyHint": true },
        }]}),
        "tools/call" if params.get("name").and_then(Value::as_str) == Some("echo") => {
            let text = params.pointer("/arguments/text").and_then(Value::as_str).unwrap_or_default();
            json!({ "content": [{ "type": "text", "text": text }], "isError": false })
        }
        "tools/call" => return Some(error(id, -32602, "unknown tool")),
        _ => return Some(error(id, -32601, "method not found")),
    };
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "result": result })).ok()
}

fn error(id: &Value, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }))
        .unwrap_or_default()
}

/// Serves newline-delimited JSON-RPC on stdin/stdout until stdin ends. Replies are flushed
/// when no more input is already buffered, so pipelined requests share a write.
pub fn serve_stdio() -> std::io::Result<()> {
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return output.flush();
        }
        if let Some(reply) = answer(&line) {
            output.write_all(&reply)?;
            output.write_all(b"\n")?;
        }
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
}

/// Serves Streamable HTTP on `listen` (POST only; GET gets 405: no server-initiated stream),
/// printing `listening on http://ADDR` once bound. Runs until the process is killed.
pub async fn serve_http(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return Ok(reply(StatusCode::OK, Vec::new())),
        _ => return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, Vec::new())),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, Vec::new())),
    };
    let Some(answer) = answer(&body) else {
        return Ok(reply(StatusCode::ACCEPTED, Vec::new()));
    };
    let initialize = body.windows(12).any(|w| w == b"\"initialize\"");
    let mut response = reply(StatusCode::OK, answer);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if initialize {
        response.headers_mut().insert("mcp-session-id", HeaderValue::from_static(SESSION));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Value {
        answer(text.as_bytes()).and_then(|r| serde_json::from_slice(&r).ok()).unwrap_or(Value::Null)
    }

    #[test]
    fn echo_returns_its_text_and_refuses_what_it_does_not_know() {
        let r = reply(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        );
        assert_eq!(r["id"], 7);
        assert_eq!(r["result"]["content"][0]["text"], "hi");
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)["error"]["code"],
            -32602
        );
        assert_eq!(reply(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#)["error"]["code"], -32601);
        assert_eq!(reply("{not json")["error"]["code"], -32700);
        assert!(answer(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
        assert!(answer(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).is_none());
    }

    #[test]
    fn initialize_echoes_the_protocol_version_and_lists_one_read_only_tool() {
        let r = reply(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#);
        assert_eq!(r["result"]["protocolVersion"], "2025-03-26");
        let tools = reply(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(tools["result"]["tools"][0]["name"], "echo");
        assert_eq!(tools["result"]["tools"][0]["annotations"]["readOnlyHint"], true);
    }
}
