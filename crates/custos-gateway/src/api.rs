//! Plain HTTP APIs (`[[apis]]`) behind the gateway: the request of an allowed call sent to the
//! API's base URL, with the credentials the broker holds for the API and never the agent's.
//!
//! Both front-ends of an API use this: the reverse proxy (`/api/{name}/…` of `custos serve`,
//! which passes the agent's request on) and the MCP tools made of its operations (which build
//! the request from a tool call's arguments). Either way the call was decided and recorded
//! first ([`Gateway::admit`](crate::Gateway::admit)); what comes back goes through the leak
//! guard and is recorded ([`Gateway::finish`](crate::Gateway::finish)) before the agent sees it.
//!
//! What is sent: the method, the path below the base URL, the query (with the broker's query
//! secrets added), the headers the front-end passes (never `Authorization`, `Cookie` or other
//! credentials of the agent), the broker's header secrets, the call's minted token, the trace
//! context, and the body. What comes back is read whole, up to a limit: an answer past it is an
//! error, never a truncated body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};

mod mcp;

pub use mcp::{request_of, ApiMcpUpstream, ApiTools};

use crate::broker::Broker;
use crate::pending::CallInFlight;
use crate::remote::{percent_encode, Transport};

/// Response headers an agent gets back from an API; the rest (cookies, hop-by-hop headers,
/// anything naming the upstream's internals) stay at the gateway.
const PASSED_BACK: &[&str] = &[
    "content-type",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "location",
    "retry-after",
    "x-request-id",
];

/// A request body on its way to an API: whole (a JSON body policy read, a tool call's `body`)
/// or streamed from the agent as it arrives (a body policy does not read).
pub type ApiBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A whole body.
pub fn whole_body(bytes: Bytes) -> ApiBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed on as it arrives, cut off (the request fails) past `limit` bytes.
pub fn streamed_body<B>(body: B, limit: usize) -> ApiBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, limit).boxed_unsync()
}

/// One API's upstream: where it is and how requests reach it.
#[derive(Debug)]
pub struct ApiUpstream {
    name: String,
    /// `scheme://authority/base/path`, without a trailing slash.
    base: String,
    transport: Transport<ApiBody>,
    broker: Arc<Broker>,
    timeout: Duration,
    max_response_bytes: usize,
}

/// A request to send, as the front-end built it.
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    /// Below the base URL, starting with `/`, percent-encoded as it is to be sent.
    pub path: String,
    /// The query as it is to be sent, without `?`; may be empty.
    pub query: String,
    /// Headers passed on; never the agent's credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ApiBody,
}

/// What the API answered.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    /// Only the headers an agent may see ([`PASSED_BACK`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Why an API gave no answer to pass back.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("API `{api}` cannot be reached: {reason}")]
    Unreachable { api: String, reason: String },
    #[error("API `{api}` did not answer within {} ms", .timeout.as_millis())]
    Timeout { api: String, timeout: Duration },
    #[error("API `{api}` answered more than {limit} bytes")]
    TooLarge { api: String, limit: usize },
    #[error("cannot send the request to API `{api}`: {reason}")]
    Request { api: String, reason: String },
}

impl ApiUpstream {
    /// The upstream of API `name` at `base_url` (`http://` or `https://`, with `tls`), its
    /// secrets in `broker`, answers awaited for `timeout` and read up to `max_response_bytes`.
    pub fn new(
        name: &str,
        base_url: &str,
        tls: &custos_config::UpstreamTls,
        broker: Arc<Broker>,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, String> {
        let uri: hyper::Uri = base_url.parse().map_err(|_| format!("`{base_url}` is not a url"))?;
        if uri.query().is_some() {
            return Err(format!("the base url of API `{name}` must not have a query"));
        }
        let transport = Transport::for_uri(&uri, tls)?;
        Ok(Self {
            name: name.to_owned(),
            base: base_url.trim_end_matches('/').to_owned(),
            transport,
            broker,
            timeout,
            max_response_bytes,
        })
    }

    /// The API's name (the server part of its tools' names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header carrying `call`'s minted token, when the API takes minted tokens.
    pub fn token_header(&self, call: &CallInFlight) -> Option<(String, String)> {
        let (token, settings) = (call.token.as_ref()?, self.broker.token_settings(&self.name)?);
        Some((settings.header.clone(), settings.render(token.expose())))
    }

    /// Sends `request` of an allowed call, with its minted `token` header and its `trace`
    /// context, and reads the answer.
    pub async fn send(
        &self,
        request: ApiRequest,
        token: Option<(String, String)>,
        trace: Option<&custos_telemetry::TraceHeaders>,
    ) -> Result<ApiResponse, ApiError> {
        let mut query = request.query;
        for (key, value) in self.broker.query(&self.name) {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&percent_encode(&key));
            query.push('=');
            query.push_str(&percent_encode(&value));
        }
        let mut url = format!("{}{}", self.base, request.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let bad = |reason: String| ApiError::Request { api: self.name.clone(), reason };
        let mut builder = Request::builder().method(request.method).uri(url);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        for (name, value) in self.broker.headers(&self.name) {
            // The value is a secret: an error names the header, never what it held.
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| bad(format!("the secret injected as `{name}` is not a valid header value")))?;
            value.set_sensitive(true);
            builder = builder.header(name.as_str(), value);
        }
        if let Some((name, value)) = token {
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| bad("the minted token is not a valid header value".to_owned()))?;
            value.set_sensitive(true);
            builder = builder.header(name.as_str(), value);
        }
        if let Some(headers) = trace {
            builder = builder.header("traceparent", headers.traceparent.as_str());
            if let Some(state) = &headers.tracestate {
                builder = builder.header("tracestate", state.as_str());
            }
        }
        // The url is never shown: it may carry the broker's query secrets.
        let req = builder.body(request.body).map_err(|_| bad("not a valid request".to_owned()))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self
                .transport
                .request(req)
                .await
                .map_err(|e| ApiError::Unreachable { api: self.name.clone(), reason: error_chain(&e) })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                        ApiError::TooLarge { api: self.name.clone(), limit: self.max_response_bytes }
                    } else {
                        ApiError::Unreachable { api: self.name.clone(), reason: e.to_string() }
                    }
                })?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .filter(|(name, _)| PASSED_BACK.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            Ok(ApiResponse { status: parts.status, headers, body })
        })
        .await;
        answer.unwrap_or_else(|_| Err(ApiError::Timeout { api: self.name.clone(), timeout: self.timeout }))
    }
}

/// The text at `url` (`http://` or `https://`, the system's roots for TLS), read at start-up
/// for an API's OpenAPI document: at most `max_bytes`, within `timeout`, a `200` answer only.
pub async fn fetch_document(url: &str, timeout: Duration, max_bytes: usize) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|_| format!("`{url}` is not a url"))?;
    let transport: Transport = Transport::for_uri(&uri, &custos_config::UpstreamTls::default())?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(hyper::header::ACCEPT, "application/json, application/yaml;q=0.9, */*;q=0.1")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let fetched = tokio::time::timeout(timeout, async {
        let response = transport.request(request).await.map_err(|e| error_chain(&e))?;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("cannot read the document (at most {max_bytes} bytes): {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the document is not UTF-8 text".to_owned())
    })
    .await;
    fetched.unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

/// An error and its causes, as one line (hyper's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
