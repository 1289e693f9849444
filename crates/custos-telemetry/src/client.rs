//! The HTTP client of OTLP over HTTP/protobuf.
//!
//! The SDK exports from a thread of its own, outside any Tokio runtime, while hyper needs one
//! (for connections and timers). Each export is therefore spawned onto the runtime that
//! started telemetry and awaited from the exporter's thread.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// The largest answer read from a collector (it answers with a small status message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends OTLP requests with hyper on a Tokio runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeClient {
    runtime: tokio::runtime::Handle,
    client: Client<custos_tls::client::HttpsConnector, Full<Bytes>>,
    timeout: Duration,
}

impl RuntimeClient {
    /// A client on the current runtime; `tls` says which servers `https://` trusts.
    pub(crate) fn new(runtime: tokio::runtime::Handle, tls: &custos_tls::client::ClientTls, timeout: Duration) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(tls.connector());
        Self { runtime, client, timeout }
    }
}

/// Why an export got no answer.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("the collector did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the export task stopped: {0}")]
    Stopped(String),
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let task = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err(Box::new(SendError::Timeout(timeout))))
        });
        task.await.map_err(|e| Box::new(SendError::Stopped(e.to_string())) as HttpError)?
    }
}
