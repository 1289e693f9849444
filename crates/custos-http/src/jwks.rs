//! `[serve.jwt]`: the identity provider's keys, read from a file or fetched from a URL and kept
//! fresh.
//!
//! A fetched key set is fetched at start-up, then every `jwks_refresh_secs`, and again when a
//! token names a key id the set lacks (the provider rotated its keys), at most once per
//! [`KID_REFETCH_INTERVAL`] however many such tokens arrive, so random key ids cannot make the
//! gateway hammer the provider. Concurrent requests wait for the same fetch. Each fetch is
//! bounded in time ([`FETCH_TIMEOUT`]) and size ([`MAX_JWKS_BYTES`]) and follows no redirect. A
//! fetch that fails (unreachable, TLS, HTTP status, a document with no usable key) changes
//! nothing: the last good key set stays, a warning is logged (never the document), and the next
//! try comes after a backoff. Until a first fetch succeeds, bearer tokens are refused with 503
//! ([`AuthError::KeysUnavailable`]): the gateway cannot tell a good token from a bad one, and
//! a 401 would tell the agent to throw away a token that may be fine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use custos_auth::jwt::MAX_JWKS_BYTES;
use custos_auth::{AuthError, Credential, JwtVerifier, VerifiedToken};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::ACCEPT;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

/// Longest one fetch of the key set may take, connection and body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two fetches caused by unknown key ids.
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait between retries while fetches fail.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A key set that cannot be fetched, or a fetcher that cannot be set up. Messages name the URL
/// and never quote the document.
#[derive(Debug, thiserror::Error)]
#[error("jwks `{url}`: {reason}")]
pub struct JwksError {
    url: String,
    reason: String,
}

/// Verifies bearer tokens against the provider's key set, fetching it again when needed.
#[derive(Debug, Clone)]
pub struct Jwt {
    verifier: Arc<JwtVerifier>,
    /// `None` for a key set read from a file: it never changes.
    fetcher: Option<Arc<JwksFetcher>>,
}

impl Jwt {
    /// Keys read once (`jwks_file`).
    pub fn fixed(verifier: JwtVerifier) -> Self {
        Self { verifier: Arc::new(verifier), fetcher: None }
    }

    /// Keys that `fetcher` fetches (`jwks_url`) into its verifier.
    pub fn fetched(fetcher: Arc<JwksFetcher>) -> Self {
        Self { verifier: fetcher.verifier.clone(), fetcher: Some(fetcher) }
    }

    /// Verifies `token` against the key set in use.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        self.verifier.verify(token)
    }

    /// Before a request's token is verified: when it names a key id the fetched set lacks, fetch
    /// the set again (at most once per [`KID_REFETCH_INTERVAL`]) and wait for it.
    pub async fn catch_up(&self, authorization: Option<&str>) {
        let Some(fetcher) = &self.fetcher else { return };
        if let Ok(Credential::Jwt(token)) = Credential::from_authorization(authorization) {
            if self.verifier.names_unknown_key(token.expose()) {
                fetcher.refetch_for_unknown_kid().await;
            }
        }
    }
}

/// How the key set is reached: in the clear (`http://` on loopback only, as the config
/// enforces) or through rustls.
#[derive(Debug)]
enum Transport {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<custos_tls::client::HttpsConnector, Empty<Bytes>>),
}

impl Transport {
    fn request(&self, req: Request<Empty<Bytes>>) -> ResponseFuture {
        match self {
            Self::Plain(client) => client.request(req),
            Self::Tls(client) => client.request(req),
        }
    }
}

/// Fetches the provider's key set into a [`JwtVerifier`].
#[derive(Debug)]
pub struct JwksFetcher {
    url: Uri,
    client: Transport,
    verifier: Arc<JwtVerifier>,
    /// When the last fetch for an unknown key id started. Held across that fetch, so requests
    /// that arrive meanwhile wait for it instead of starting their own.
    kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksFetcher {
    /// A fetcher of `url` (`https://`, or `http://` for loopback hosts) into `verifier`,
    /// trusting the system's roots and `ca_file`. Fetches nothing yet.
    pub fn new(url: &str, ca_file: Option<&std::path::Path>, verifier: JwtVerifier) -> Result<Self, JwksError> {
        let error = |reason: String| JwksError { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|e| error(format!("not a url: {e}")))?;
        let client = match uri.scheme_str() {
            Some("http") => Transport::Plain(Client::builder(TokioExecutor::new()).build_http()),
            Some("https") => {
                let tls = custos_tls::client::ClientTls::load(ca_file, None).map_err(|e| error(e.to_string()))?;
                Transport::Tls(Client::builder(TokioExecutor::new()).build(tls.connector()))
            }
            _ => return Err(error("expected an https:// url".into())),
        };
        Ok(Self { url: uri, client, verifier: Arc::new(verifier), kid_fetch: tokio::sync::Mutex::new(None) })
    }

    /// Fetches the key set once and, if it has a usable key, puts it in use. On error the key
    /// set in use stays.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let error = |reason: String| JwksError { url: self.url.to_string(), reason };
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| error(format!("no answer within {} s", FETCH_TIMEOUT.as_secs())))?
            .map_err(error)?;
        let text = std::str::from_utf8(&body).map_err(|_| error("the document is not utf-8".into()))?;
        let skipped = self.verifier.replace_keys(text).map_err(|e| error(e.to_string()))?;
        for key in skipped {
            // Key ids of a key set are public.
            let kid = key.kid.as_deref().unwrap_or("(none)").escape_debug().to_string();
            tracing::warn!("jwks `{}`: key `{kid}` left out: {}", self.url, key.reason);
        }
        tracing::debug!("jwks `{}`: keys in use: {:?}", self.url, self.verifier.key_ids());
        Ok(())
    }

    /// One GET of the document, its body bounded by [`MAX_JWKS_BYTES`].
    async fn fetch(&self) -> Result<Bytes, String> {
        let req = Request::get(self.url.clone())
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .body(Empty::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = self.client.request(req).await.map_err(|e| {
            custos_tls::client::handshake_failure(&e).unwrap_or_else(|| format!("cannot reach it ({e})"))
        })?;
        if response.status() != StatusCode::OK {
            return Err(format!("http status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("the document is larger than {MAX_JWKS_BYTES} bytes")
            } else {
                "the document was cut off".to_owned()
            }
        })?;
        Ok(body.to_bytes())
    }

    /// Fetches again for a token whose key id the set lacks, unless such a fetch started less
    /// than [`KID_REFETCH_INTERVAL`] ago; waits for a fetch already under way.
    async fn refetch_for_unknown_kid(self: &Arc<Self>) {
        let mut last = self.kid_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < KID_REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        // Its own task: a client that hangs up does not cancel the fetch halfway.
        let fetcher = self.clone();
        let fetch = tokio::spawn(async move {
            if let Err(e) = fetcher.refresh().await {
                tracing::warn!("{e} (fetched for an unknown key id); keeping the keys in use");
            }
        });
        let _ = fetch.await;
    }

    /// Starts refreshing in the background: every `every` while fetches succeed; after a failure
    /// again after 1 s, 2 s, 4 s … at most [`MAX_RETRY_DELAY`] (nor more than `every`) until one
    /// succeeds. `failing` says the fetch at start-up failed.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration, failing: bool) -> tokio::task::JoinHandle<()> {
        let fetcher = self.clone();
        tokio::spawn(async move {
            let mut failures: u32 = u32::from(failing);
            loop {
                tokio::time::sleep(next_delay(failures, every)).await;
                match fetcher.refresh().await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::warn!("jwks `{}`: fetched again; bearer tokens are checked", fetcher.url);
                        }
                        failures = 0;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let state = if fetcher.verifier.has_keys() {
                            "keeping the keys in use"
                        } else {
                            "bearer tokens are refused until a fetch succeeds"
                        };
                        tracing::warn!("{e}; {state}");
                    }
                }
            }
        })
    }
}

/// The wait before the next fetch after `failures` failures in a row.
fn next_delay(failures: u32, every: Duration) -> Duration {
    if failures == 0 {
        return every;
    }
    let backoff = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    backoff.min(MAX_RETRY_DELAY).min(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_a_bound_and_success_waits_the_full_interval() {
        let every = Duration::from_secs(300);
        let delays: Vec<u64> = (0..8).map(|n| next_delay(n, every).as_secs()).collect();
        assert_eq!(delays, [300, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(next_delay(u32::MAX, every), MAX_RETRY_DELAY);
        assert_eq!(next_delay(3, Duration::from_secs(2)), Duration::from_secs(2));
    }

    #[test]
    fn only_http_and_https_urls_are_fetched() {
        let verifier = || JwtVerifier::without_keys(custos_auth::JwtConfig::new("https://idp", "https://gw")).unwrap();
        assert!(JwksFetcher::new("http://127.0.0.1:1/jwks", None, verifier()).is_ok());
        let err = JwksFetcher::new("ftp://idp/jwks", None, verifier()).unwrap_err().to_string();
        assert!(err.starts_with("jwks `ftp://idp/jwks`:") && err.contains("https://"), "{err}");
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        let err = JwksFetcher::new("https://idp/jwks", Some(missing), verifier()).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    /// A JWKS server on loopback that counts its requests and serves what it is given.
    async fn serve(documents: Vec<(u16, String)>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            for (status, body) in documents.into_iter().cycle() {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
            }
        });
        (url, count)
    }

    const KEYS: &str =
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_keys_in_use() {
        let (url, count) = serve(vec![(200, KEYS.to_owned()), (500, "oops".into()), (200, "not json".into())]).await;
        let verifier = JwtVerifier::without_keys(custos_auth::JwtConfig::new("https://idp", "https://gw")).unwrap();
        let fetcher = JwksFetcher::new(&url, None, verifier).unwrap();
        fetcher.refresh().await.unwrap();
        assert_eq!(fetcher.verifier.key_ids(), ["k1"]);
        let err = fetcher.refresh().await.unwrap_err().to_string();
        assert!(err.contains("http status 500") && !err.contains("oops"), "{err}");
        let err = fetcher.refresh().await.unwrap_err().to_string();
        assert!(err.contains("not json"), "{err}"); // the reason, not the document
        assert_eq!(fetcher.verifier.key_ids(), ["k1"]);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_document_over_the_limit_is_refused() {
        let huge = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_BYTES));
        let (url, _) = serve(vec![(200, huge)]).await;
        let verifier = JwtVerifier::without_keys(custos_auth::JwtConfig::new("https://idp", "https://gw")).unwrap();
        let fetcher = JwksFetcher::new(&url, None, verifier).unwrap();
        let err = fetcher.refresh().await.unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        assert!(!fetcher.verifier.has_keys());
    }

    #[tokio::test]
    async fn unknown_key_ids_refetch_at_most_once_per_interval() {
        let (url, count) = serve(vec![(200, KEYS.to_owned())]).await;
        let verifier = JwtVerifier::without_keys(custos_auth::JwtConfig::new("https://idp", "https://gw")).unwrap();
        let fetcher = Arc::new(JwksFetcher::new(&url, None, verifier).unwrap());
        fetcher.refresh().await.unwrap();
        let jwt = Jwt::fetched(fetcher);
        // `{"alg":"EdDSA","kid":"rotated"}`: an unknown kid; the signature is not looked at here.
        let authorization = "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6InJvdGF0ZWQifQ.e30.c2ln".to_owned();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let (jwt, authorization) = (jwt.clone(), authorization.clone());
                tokio::spawn(async move { jwt.catch_up(Some(&authorization)).await })
            })
            .collect();
        for w in waiters {
            w.await.unwrap();
        }
        for _ in 0..5 {
            jwt.catch_up(Some(&authorization)).await;
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2, "the start-up fetch and one refetch");
        jwt.catch_up(Some("Bearer cst_not_a_jwt")).await;
        jwt.catch_up(None).await;
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
