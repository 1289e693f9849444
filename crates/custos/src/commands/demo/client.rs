//! The demo's scripted agents speak MCP to the gateway the way any Streamable HTTP client does:
//! `initialize` (naming the run in `Custos-Run-Id`), `notifications/initialized`, then requests
//! with the session id the gateway gave, each answered as JSON or as an SSE stream. They call
//! plain HTTP APIs through the gateway (`/api/{name}/…`) with the same key, naming the same run,
//! so the API calls are steps of the run their MCP calls are in.
//!
//! HTTP/1.1 by hand over a `TcpStream`, one connection per request (`Connection: close`, so the
//! answer is everything up to the end of the stream): the demo talks to its own gateway on
//! loopback and needs nothing more, and the binary gains no HTTP client dependency for it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol revision the scripted agents ask for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// Bounds an answer so a misbehaving peer cannot make the demo hold unbounded memory.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// One agent's MCP session with one server behind the gateway.
pub struct McpClient {
    addr: SocketAddr,
    path: String,
    /// The agent's API key, sent as a bearer token on every request.
    key: String,
    /// The run the gateway records the calls into (`Custos-Run-Id`).
    run: String,
    /// Given by the gateway in its answer to `initialize`.
    session: Option<String>,
    next_id: u64,
    /// How long one request may take before the workflow is given up.
    timeout: Duration,
}

impl McpClient {
    pub fn new(addr: SocketAddr, server: &str, key: &str, run: &str, timeout: Duration) -> Self {
        Self {
            addr,
            path: format!("/mcp/{server}"),
            key: key.to_owned(),
            run: run.to_owned(),
            session: None,
            next_id: 0,
            timeout,
        }
    }

    /// `initialize`, then `notifications/initialized`.
    pub async fn initialize(&mut self) -> Result<(), String> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "custos-demo-agent", "version": env!("CARGO_PKG_VERSION") },
        });
        let answer = self.request("initialize", params).await?;
        if let Some(error) = answer.get("error") {
            return Err(format!("the gateway refused `initialize`: {error}"));
        }
        let body = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
        let response = self.post(&body).await?;
        if !(200..300).contains(&response.status) {
            return Err(format!("`notifications/initialized` got HTTP {}", response.status));
        }
        Ok(())
    }

    /// Sends one request and returns the JSON-RPC message that answers it (a result or an
    /// error: a refusal is an answer too).
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
        let response = self.post(&body).await?;
        if self.session.is_none() {
            self.session = response.header("mcp-session-id").map(str::to_owned);
        }
        let text = String::from_utf8_lossy(&response.body);
        let answer = if response.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")) {
            sse_answer(&text, id)
        } else {
            serde_json::from_str::<Value>(&text).ok().filter(|v| v.get("id") == Some(&json!(id)))
        };
        answer.ok_or_else(|| format!("`{method}` got no answer (HTTP {}): {}", response.status, text.trim()))
    }

    /// A plain HTTP request to `path` on the gateway (`/api/{name}/…`), in the session's run;
    /// its status and its body (as JSON when it is, else as one string).
    pub async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let response = self.send_to(method, path, &body, false).await?;
        let text = String::from_utf8_lossy(&response.body);
        let answer = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()));
        Ok((response.status, answer))
    }

    /// Ends the session, so the gateway stops the server it started for it.
    pub async fn close(&mut self) {
        if self.session.is_some() {
            let _ = self.send("DELETE", "").await;
        }
    }

    async fn post(&self, body: &str) -> Result<Response, String> {
        self.send("POST", body).await
    }

    async fn send(&self, method: &str, body: &str) -> Result<Response, String> {
        self.send_to(method, &self.path, body, true).await
    }

    /// One request to `path`; `mcp`: with the session's headers.
    async fn send_to(&self, method: &str, path: &str, body: &str, mcp: bool) -> Result<Response, String> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body, mcp)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }

    async fn exchange(&self, method: &str, path: &str, body: &str, mcp: bool) -> Result<Response, String> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Custos-Run-Id: {}\r\nContent-Length: {}\r\n",
            self.addr,
            self.key,
            self.run,
            body.len()
        );
        if let Some(session) = self.session.as_ref().filter(|_| mcp) {
            request.push_str(&format!("Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: {PROTOCOL_VERSION}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let io = |e: std::io::Error| format!("cannot reach the gateway at {}: {e}", self.addr);
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.map_err(io)?;
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        let mut limited = (&mut stream).take(u64::try_from(MAX_RESPONSE_BYTES).unwrap_or(u64::MAX));
        limited.read_to_end(&mut raw).await.map_err(io)?;
        Response::parse(&raw)
    }
}

/// An HTTP response, its body already de-chunked.
struct Response {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Result<Self, String> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the gateway sent no HTTP response")?;
        let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default());
        let rest = raw.get(split + 4..).unwrap_or_default();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("the gateway sent no HTTP status")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked { dechunk(rest) } else { rest.to_vec() };
        Ok(Self { status, headers, body })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A chunked body's data; what follows a malformed chunk size is dropped.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned();
        let size = line.split(';').next().map(str::trim).and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else { break };
        let start = end + 2;
        let Some(chunk) = rest.get(start..start + size) else { break };
        body.extend_from_slice(chunk);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
    body
}

/// The message of an SSE stream that answers request `id` (progress and other messages before
/// it are skipped).
fn sse_answer(text: &str, id: u64) -> Option<Value> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        let message: Value = serde_json::from_str(&data.join("\n")).ok()?;
        let answers = message.get("id") == Some(&json!(id))
            && (message.get("result").is_some() || message.get("error").is_some());
        answers.then_some(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_and_sse_answers_are_read() {
        let mut raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in ["data: {\"method\":\"x\"}\n\n", "event: message\ndata: {\"id\":3,\"result\":{}}\n\n"] {
            raw.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let r = Response::parse(&raw).unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(sse_answer(&text, 3), Some(json!({ "id": 3, "result": {} })));
        assert_eq!(sse_answer(&text, 4), None);
    }
}
