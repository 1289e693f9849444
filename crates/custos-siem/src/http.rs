//! HTTP sinks: Splunk's HTTP Event Collector and a generic webhook.
//!
//! One POST per batch. Splunk HEC gets the events as HEC envelopes, one after the other, at
//! `/services/collector/event` with `Authorization: Splunk <token>`, and acknowledges with 200
//! and `{"code": 0}`. A webhook gets a JSON array and acknowledges with any 2xx. Anything else,
//! or no answer within [`TIMEOUT`], leaves the batch unacknowledged and it is sent again. The
//! token never appears in an error, a log line or `Debug` output.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

use crate::{Record, SiemError, Sink};

/// How long one POST may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (HEC answers are a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A bearer secret (a HEC token); shown nowhere.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Surrounding whitespace (a file's trailing newline) is not part of the token.
    pub fn new(text: &str) -> Result<Self, SiemError> {
        let t = text.trim();
        if t.is_empty() || t.chars().any(|c| c.is_control()) {
            return Err(SiemError::Config("the token is empty or holds control characters".into()));
        }
        Ok(Self(t.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What the receiver speaks.
#[derive(Clone, Debug)]
pub enum Receiver {
    /// Splunk HEC: `sourcetype` of each event, and the token.
    SplunkHec { token: Token, source_type: String },
    /// A JSON array per POST; with a token, sent as `Authorization: Bearer`.
    Webhook { token: Option<Token> },
}

/// The HTTP sink.
pub struct HttpSink {
    uri: hyper::Uri,
    receiver: Receiver,
    runtime: tokio::runtime::Runtime,
    client: Client<custos_tls::client::HttpsConnector, Full<Bytes>>,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink").field("host", &self.uri.host()).field("receiver", &self.receiver).finish()
    }
}

impl HttpSink {
    /// A sink POSTing to `url` (for HEC, a base URL gets `/services/collector/event`), trusting
    /// the system's roots and the CAs of `ca_file`.
    pub fn new(url: &str, receiver: Receiver, ca_file: Option<&std::path::Path>) -> Result<Self, SiemError> {
        let mut uri: hyper::Uri = url.parse().map_err(|_| SiemError::Config(format!("`{url}` is not a url")))?;
        if matches!(receiver, Receiver::SplunkHec { .. }) && matches!(uri.path(), "" | "/") {
            let base = url.trim_end_matches('/');
            uri = format!("{base}/services/collector/event")
                .parse()
                .map_err(|_| SiemError::Config(format!("`{url}` is not a url")))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SiemError::Config(format!("cannot start the http sink: {e}")))?;
        let tls = custos_tls::client::ClientTls::load(ca_file, None).map_err(|e| SiemError::Config(e.to_string()))?;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(tls.connector());
        Ok(Self { uri, receiver, runtime, client })
    }

    fn target(&self) -> String {
        let host = self.uri.host().unwrap_or_default();
        match self.uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    fn request(&self, batch: &[Record]) -> Result<hyper::Request<Full<Bytes>>, SiemError> {
        let (body, auth) = match &self.receiver {
            Receiver::SplunkHec { token, source_type } => {
                (hec_body(batch, source_type), Some(format!("Splunk {}", token.0)))
            }
            Receiver::Webhook { token } => (array_body(batch), token.as_ref().map(|t| format!("Bearer {}", t.0))),
        };
        let mut request =
            hyper::Request::post(self.uri.clone()).header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            request = request.header(hyper::header::AUTHORIZATION, auth);
        }
        request.body(Full::new(Bytes::from(body))).map_err(|_| SiemError::Config("cannot build the request".into()))
    }
}

/// HEC envelopes, one after another (HEC's batch format): `time` in seconds, the event as is.
pub fn hec_body(batch: &[Record], source_type: &str) -> String {
    let source_type = serde_json::Value::from(source_type).to_string();
    let mut body = String::with_capacity(batch.iter().map(|r| r.json.len() + 96).sum());
    for r in batch {
        let (secs, ms) = (r.time_ms.div_euclid(1000), r.time_ms.rem_euclid(1000));
        body.push_str(&format!(
            "{{\"time\":{secs}.{ms:03},\"source\":\"custos\",\"sourcetype\":{source_type},\"event\":{}}}\n",
            r.json
        ));
    }
    body
}

/// A JSON array of the events.
pub fn array_body(batch: &[Record]) -> String {
    let mut body = String::with_capacity(batch.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, r) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&r.json);
    }
    body.push(']');
    body
}

impl Sink for HttpSink {
    fn deliver(&mut self, batch: &[Record]) -> Result<(), SiemError> {
        let request = self.request(batch)?;
        let target = self.target();
        let hec = matches!(self.receiver, Receiver::SplunkHec { .. });
        let client = &self.client;
        self.runtime.block_on(async move {
            let exchange = async {
                let answer = client.request(request).await.map_err(|e| SiemError::Unreachable {
                    target: target.clone(),
                    reason: custos_tls::client::handshake_failure(&e).unwrap_or_else(|| e.to_string()),
                })?;
                let status = answer.status();
                let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok::<_, SiemError>((status, body))
            };
            let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
                .await
                .map_err(|_| SiemError::Unreachable { target: target.clone(), reason: "timed out".into() })??;
            if !status.is_success() {
                return Err(SiemError::Refused { target, reason: format!("answered {status}") });
            }
            if hec {
                // HEC says 200 with a code; only code 0 is success.
                let code =
                    serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("code")?.as_i64());
                if code != Some(0) {
                    let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                    return Err(SiemError::Refused { target, reason: format!("hec code {code}") });
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, time_ms: i64) -> Record {
        Record {
            seq,
            uid: String::new(),
            time_ms,
            kind: "run.started",
            syslog_severity: 6,
            json: format!("{{\"s\":{seq}}}"),
        }
    }

    #[test]
    fn bodies_are_hec_envelopes_and_json_arrays() {
        let batch = [record(1, 1_700_000_000_123), record(2, 5)];
        assert_eq!(
            hec_body(&batch, "ocsf"),
            "{\"time\":1700000000.123,\"source\":\"custos\",\"sourcetype\":\"ocsf\",\"event\":{\"s\":1}}\n\
             {\"time\":0.005,\"source\":\"custos\",\"sourcetype\":\"ocsf\",\"event\":{\"s\":2}}\n"
        );
        assert_eq!(array_body(&batch), "[{\"s\":1},{\"s\":2}]");
    }

    #[test]
    fn tokens_are_never_shown() {
        let t = Token::new("  abc-123\n").unwrap();
        assert_eq!(format!("{t:?}"), "Token(…)");
        assert!(Token::new("\n").is_err());
        let sink =
            HttpSink::new("http://127.0.0.1:9/", Receiver::SplunkHec { token: t, source_type: "x".into() }, None);
        let sink = sink.unwrap();
        assert_eq!(sink.uri.path(), "/services/collector/event");
        assert!(!format!("{sink:?}").contains("abc-123"));
    }
}
