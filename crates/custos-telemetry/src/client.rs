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
    client: Connector,
    timeout: Duration,
}

/// In the clear, or through rustls: an `http://` collector needs no trust store (a host
/// without system roots must still be able to export to a local collector).
#[derive(Debug, Clone)]
enum Connector {
    Plain(Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>),
    Tls(Client<custos_tls::client::HttpsConnector, Full<Bytes>>),
}

impl RuntimeClient {
    /// A client on the current runtime; `tls`, for an `https://` collector, says which servers
    /// it trusts.
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        tls: Option<&custos_tls::client::ClientTls>,
        timeout: Duration,
    ) -> Self {
        let builder = Client::builder(hyper_util::rt::TokioExecutor::new());
        let client = match tls {
            Some(tls) => Connector::Tls(builder.build(tls.connector())),
            None => Connector::Plain(builder.build_http()),
        };
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
            let request = request.map(Full::new);
            let response = match client {
                Connector::Plain(client) => client.request(request).await?,
                Connector::Tls(client) => client.request(request).await?,
            };
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
