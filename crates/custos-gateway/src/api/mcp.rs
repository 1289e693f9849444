//! An API's operations as an MCP server (`[[apis]] mcp = true`): an upstream in the gateway's
//! own process that answers `initialize` and `tools/list` from the API's operations and turns
//! each `tools/call` the pipeline forwarded into a request to the API.
//!
//! It sits where a child process or a remote MCP server would, behind the same pipeline: the
//! call was attributed, decided, held and recorded as `API/operation` before it reaches this,
//! and its answer goes back through `Gateway::from_upstream` (the leak guard, inspection, the
//! recorded end) like any upstream's message. So a call made as an MCP
//! tool and one made through the reverse proxy are one tool in policy, the log and the console.
//!
//! A tool's arguments are the operation's: each path, query and header parameter by name, and
//! the JSON body as `body`. The result is the answer's text (with `structuredContent` when it
//! is a JSON object), `isError` when the API answered with a 4xx or 5xx.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use custos_mcp::{codes, error_response, Frame};
use custos_openapi::{Location, Operation};

use super::{ApiRequest, ApiUpstream};
use crate::pipeline::{Gateway, Outcome};
use crate::remote::percent_encode;
use crate::stdio::StdioError;

/// The protocol revision answered when the client asks for one this server does not know.
const LATEST: &str = "2025-06-18";
/// Request headers a tool's arguments may never set: credentials and framing are the gateway's.
const FORBIDDEN_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "host", "content-length", "transfer-encoding", "connection"];

/// An API served as MCP tools, for one session.
#[derive(Debug)]
pub struct ApiMcpUpstream {
    input: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the upstream answers from.
#[derive(Debug)]
pub struct ApiTools {
    pub upstream: Arc<ApiUpstream>,
    /// Each operation and its tool descriptor, in the API's order.
    pub tools: Vec<(Operation, Value)>,
}

impl ApiMcpUpstream {
    /// Records the start of the run and starts answering what the session forwards.
    pub async fn start(
        gateway: &Arc<Gateway>,
        api: Arc<ApiTools>,
        onward: mpsc::Sender<Vec<u8>>,
    ) -> Result<Self, StdioError> {
        gateway.start(json!({ "transport": "api", "api": api.upstream.name() })).await?;
        let (input, mut frames) = mpsc::channel::<Vec<u8>>(256);
        let gateway = gateway.clone();
        let task = tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if frame.is_empty() {
                    break;
                }
                let (api, gateway, onward) = (api.clone(), gateway.clone(), onward.clone());
                tokio::spawn(async move {
                    let Some(answer) = answer(&api, &gateway, frame).await else { return };
                    // Back through the pipeline, as any upstream's message: the leak guard,
                    // inspection, and the call's recorded end before the client sees it.
                    if let Outcome::Forward(bytes) = gateway.from_upstream(Frame::Line(answer)).await {
                        let _ = onward.send(bytes).await;
                    }
                });
            }
        });
        Ok(Self { input, task })
    }

    pub fn input(&self) -> &mpsc::Sender<Vec<u8>> {
        &self.input
    }

    pub async fn close(&mut self) {
        self.task.abort();
    }
}

/// The answer to one frame the pipeline forwarded (which it already parsed and checked);
/// `None` for notifications and answers.
async fn answer(api: &ApiTools, gateway: &Gateway, frame: Vec<u8>) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Request {
        id: Option<Box<RawValue>>,
        method: Option<String>,
        #[serde(default)]
        params: Value,
    }
    let Ok(Request { id: Some(id), method: Some(method), params }) = serde_json::from_slice::<Request>(&frame) else {
        return None;
    };
    let result = match method.as_str() {
        "initialize" => {
            let version = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(LATEST);
            json!({
                "protocolVersion": version,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": api.upstream.name(), "version": "openapi" },
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({ "tools": api.tools.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>() }),
        "tools/call" => match call(api, gateway, &id, &frame, &params).await {
            Ok(result) => result,
            Err(message) => return Some(error_response(Some(&id), codes::INVALID_PARAMS, &message, None)),
        },
        other => {
            return Some(error_response(
                Some(&id),
                codes::METHOD_NOT_FOUND,
                &format!("`{other}` is not served here"),
                None,
            ))
        }
    };
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string().into_bytes())
}

/// A `tools/call`: the request made from its arguments, sent, and its answer as a result.
async fn call(api: &ApiTools, gateway: &Gateway, id: &RawValue, frame: &[u8], params: &Value) -> Result<Value, String> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let (op, _) = api.tools.iter().find(|(op, _)| op.tool_name == name).ok_or_else(|| format!("no tool `{name}`"))?;
    let arguments = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    let request = request_of(op, &arguments)?;
    let token = gateway.upstream_token(frame)?;
    let trace = gateway.trace_headers(id);
    Ok(match api.upstream.send(request, token, trace.as_ref()).await {
        Ok(answer) => {
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            let failed = !(answer.status.is_success() || answer.status.is_redirection());
            let text = if failed { format!("HTTP {}: {text}", answer.status.as_u16()) } else { text };
            let mut result = json!({ "content": [{ "type": "text", "text": text }], "isError": failed });
            if let (Ok(structured @ Value::Object(_)), Some(obj), false) =
                (serde_json::from_slice::<Value>(&answer.body), result.as_object_mut(), failed)
            {
                obj.insert("structuredContent".into(), structured);
            }
            result
        }
        Err(e) => json!({ "content": [{ "type": "text", "text": e.to_string() }], "isError": true }),
    })
}

/// The request a tool call's arguments make: path parameters into the template, query and
/// header parameters, and `body` as JSON.
pub fn request_of(op: &Operation, arguments: &Value) -> Result<ApiRequest, String> {
    let text = |name: &str| -> Option<String> {
        match arguments.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mut path = op.path_template.clone();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for param in &op.parameters {
        match param.location {
            Location::Path => {
                let value = text(&param.name).ok_or_else(|| format!("argument `{}` is required", param.name))?;
                path = path.replace(&format!("{{{}}}", param.name), &percent_encode(&value));
            }
            Location::Query => match arguments.get(&param.name) {
                Some(Value::Array(values)) => {
                    for v in values {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        query.push(format!("{}={}", percent_encode(&param.name), percent_encode(&v)));
                    }
                }
                Some(_) => {
                    if let Some(v) = text(&param.name) {
                        query.push(format!("{}={}", percent_encode(&param.name), percent_encode(&v)));
                    }
                }
                None if param.required => return Err(format!("argument `{}` is required", param.name)),
                None => {}
            },
            Location::Header => {
                let Some(value) = text(&param.name) else { continue };
                let lower = param.name.to_ascii_lowercase();
                if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                    return Err(format!("argument `{}` cannot set that header", param.name));
                }
                let name = HeaderName::try_from(lower).map_err(|_| format!("`{}` is not a header name", param.name))?;
                let value = HeaderValue::try_from(value)
                    .map_err(|_| format!("argument `{}` is not a header value", param.name))?;
                headers.push((name, value));
            }
            Location::Cookie => {}
        }
    }
    let body = match (&op.request_body, arguments.get("body")) {
        (Some(_), Some(body)) => {
            headers.push((hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
            Bytes::from(serde_json::to_vec(body).map_err(|e| e.to_string())?)
        }
        (Some(declared), None) if declared.required => return Err("argument `body` is required".to_owned()),
        _ => Bytes::new(),
    };
    let method = hyper::Method::from_bytes(op.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    Ok(ApiRequest { method, path, query: query.join("&"), headers, body: super::whole_body(body) })
}
