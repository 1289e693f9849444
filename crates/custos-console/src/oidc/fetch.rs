//! The few HTTP requests the console makes to its OpenID provider: GET the discovery document
//! and the key set, POST the code to the token endpoint.
//!
//! Each request is bounded in time ([`REQUEST_TIMEOUT`], connection and body included) and its
//! answer in size (given per call); no redirect is followed. Which URLs may be asked is decided
//! once, from the issuer ([`Endpoints`]): an `https://` issuer's endpoints are all `https://`,
//! through rustls with the system's roots and `ca_file`; an `http://` issuer (loopback only, as
//! the configuration enforces) may only name loopback `http://` endpoints.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

use super::error::one_line;
use super::OidcError;

/// Longest one request to the provider may take, connection and body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which endpoint URLs this issuer's provider may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoints {
    /// `https://` only.
    Secure,
    /// `http://` on a loopback host only (a provider on this machine, in development).
    Loopback,
}

impl Endpoints {
    /// The rule for `issuer`; `None` for an issuer that is neither `https://` nor loopback
    /// `http://`.
    pub(crate) fn of_issuer(issuer: &str) -> Option<Self> {
        let uri: Uri = issuer.parse().ok()?;
        match uri.scheme_str() {
            Some("https") if uri.host().is_some() => Some(Self::Secure),
            Some("http") if uri.host().is_some_and(is_loopback) => Some(Self::Loopback),
            _ => None,
        }
    }

    /// `url` as a URI, if this rule allows it (an absolute URL with a host, no fragment).
    pub(crate) fn check(self, url: &str) -> Option<Uri> {
        if url.contains('#') {
            return None;
        }
        let uri: Uri = url.parse().ok()?;
        let host = uri.host()?;
        let allowed = match self {
            Self::Secure => uri.scheme_str() == Some("https"),
            Self::Loopback => uri.scheme_str() == Some("http") && is_loopback(host),
        };
        allowed.then_some(uri)
    }
}

/// `localhost`, or a loopback IP address (`[::1]` comes bracketed from a URI).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// In the clear (loopback providers) or through rustls.
#[derive(Debug)]
enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<custos_tls::client::HttpsConnector, Full<Bytes>>),
}

/// The HTTP client of one provider.
#[derive(Debug)]
pub(crate) struct Http {
    transport: Transport,
}

/// A POST body and the header that authenticates the client, if any.
pub(crate) struct Form {
    pub body: String,
    /// `Authorization: Basic …` for `client_secret_basic`; a secret, never logged.
    pub authorization: Option<HeaderValue>,
}

impl Http {
    /// A client for `endpoints`, trusting the system's roots and `ca_file` for `https://`.
    pub(crate) fn new(endpoints: Endpoints, ca_file: Option<&Path>) -> Result<Self, OidcError> {
        let transport = match endpoints {
            Endpoints::Loopback => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                Transport::Plain(Client::builder(TokioExecutor::new()).build(http))
            }
            Endpoints::Secure => {
                let tls = custos_tls::client::ClientTls::load(ca_file, None)
                    .map_err(|e| OidcError::Tls { reason: e.to_string() })?;
                Transport::Tls(Client::builder(TokioExecutor::new()).build(tls.connector()))
            }
        };
        Ok(Self { transport })
    }

    fn request(&self, req: Request<Full<Bytes>>) -> ResponseFuture {
        match &self.transport {
            Transport::Plain(client) => client.request(req),
            Transport::Tls(client) => client.request(req),
        }
    }

    /// GET `url`; its body when the answer is `200`, at most `limit` bytes.
    pub(crate) async fn get(&self, url: &Uri, accept: &'static str, limit: usize) -> Result<Bytes, OidcError> {
        let req = Request::builder().method(Method::GET).uri(url.clone()).header(ACCEPT, accept).body(Full::default());
        let (status, body) = self.send(url, req, limit).await?;
        if status != StatusCode::OK {
            return Err(OidcError::ProviderAnswer { url: url.to_string(), reason: format!("http status {status}") });
        }
        Ok(body)
    }

    /// POST `form` to `url`; the status and body, at most `limit` bytes, whatever the status.
    pub(crate) async fn post_form(
        &self,
        url: &Uri,
        form: Form,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), OidcError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(authorization) = form.authorization {
            req = req.header(AUTHORIZATION, authorization);
        }
        self.send(url, req.body(Full::new(Bytes::from(form.body))), limit).await
    }

    async fn send(
        &self,
        url: &Uri,
        req: Result<Request<Full<Bytes>>, hyper::http::Error>,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), OidcError> {
        let unreachable = |reason: String| OidcError::ProviderUnreachable { url: url.to_string(), reason };
        let req = req.map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self.request(req).await.map_err(|e| {
                unreachable(
                    custos_tls::client::handshake_failure(&e).unwrap_or_else(|| format!("cannot reach it ({e})")),
                )
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| {
                let reason = if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer is larger than {limit} bytes")
                } else {
                    "the answer was cut off".to_owned()
                };
                OidcError::ProviderAnswer { url: url.to_string(), reason }
            })?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
    }
}

/// `bytes` as a JSON object, or why not (never quoting the document).
pub(crate) fn json_object(url: &Uri, bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(OidcError::ProviderAnswer { url: url.to_string(), reason: "the answer is not a json object".into() }),
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before they are joined for
/// `Authorization: Basic`.
/// `None` cannot happen (base64 is always a valid header value), but is not a panic.
pub(crate) fn basic_authorization(client_id: &str, secret: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let joined = format!("{}:{}", form_encode(client_id), form_encode(secret));
    let mut value =
        HeaderValue::try_from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(joined))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The provider's `error` code from a refusal, when it looks like one (RFC 6749 §5.2: a short
/// ASCII word); anything else is dropped rather than repeated.
pub(crate) fn oauth_error_code(bytes: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let code = doc.get("error")?.as_str()?;
    let plain = !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then(|| one_line(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_decide_which_endpoints_may_be_used() {
        assert_eq!(Endpoints::of_issuer("https://idp.example.com"), Some(Endpoints::Secure));
        assert_eq!(Endpoints::of_issuer("http://127.0.0.1:8080"), Some(Endpoints::Loopback));
        assert_eq!(Endpoints::of_issuer("http://localhost:8080/realms/x"), Some(Endpoints::Loopback));
        assert_eq!(Endpoints::of_issuer("http://[::1]:8080"), Some(Endpoints::Loopback));
        assert_eq!(Endpoints::of_issuer("http://localhost.example.com"), None);
        assert_eq!(Endpoints::of_issuer("http://idp.example.com"), None);
        assert_eq!(Endpoints::of_issuer("ftp://idp.example.com"), None);

        let secure = Endpoints::Secure;
        assert!(secure.check("https://idp.example.com/token").is_some());
        assert!(secure.check("http://127.0.0.1/token").is_none(), "no downgrade from an https issuer");
        assert!(secure.check("/token").is_none());
        assert!(secure.check("https://idp.example.com/token#x").is_none());
        let loopback = Endpoints::Loopback;
        assert!(loopback.check("http://127.0.0.1:9/token").is_some());
        assert!(loopback.check("http://127.0.0.2:9/token").is_some());
        assert!(loopback.check("http://evil.example.com/token").is_none());
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
        let value = basic_authorization("custos console", "s3:cr%t").unwrap();
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.to_str().unwrap().strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"custos+console:s3%3Acr%25t");
        assert!(value.is_sensitive());
    }

    #[test]
    fn only_plain_oauth_error_codes_are_repeated() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(br#"{"error":"code abc123 is bad"}"#), None);
        assert_eq!(oauth_error_code(b"<html>"), None);
    }
}
