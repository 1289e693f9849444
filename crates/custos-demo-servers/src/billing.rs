//! `billing`: a plain REST API (not MCP) that issues refunds, the one `custos demo`'s support
//! workflow refunds through.
//!
//! - `POST /refunds` with `{"customer_id", "amount", "reason"}` (a known customer, a positive
//!   whole number of euros) issues refund `R-1`, `R-2`, … and answers `201` with it.
//! - `GET /refunds/{refund_id}` reads one back (`404` for an unknown one).
//!
//! Every request needs `Authorization: Bearer <JWT>`: a token whose payload carries a `jti` and
//! an `exp` still in the future (`401` otherwise). The gateway mints one per call; the agent's
//! own API key is not a JWT and is refused. The API does not verify the signature (it would need
//! the gateway's JWKS before the gateway exists); it decodes the payload and says, in each
//! answer's `token`, which token it saw (`jti`, `exp`, `aud`, `kid`), so the demo can show that
//! the credential behind a refund was minted for that call.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::common::Counter;
use crate::helpdesk::customer;

/// The largest request body read: a refund is a few dozen bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; past it new ones wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 64;
/// Refunds remembered for `GET /refunds/{id}`; past it the oldest are forgotten.
const MAX_REFUNDS: usize = 10_000;

/// A refund request's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRefund {
    customer_id: String,
    amount: i64,
    reason: String,
}

/// What the API holds: the refunds issued, and the counter that numbers them.
#[derive(Debug)]
struct Billing {
    refunds: Mutex<Vec<Value>>,
    next: Counter,
}

/// Serves the billing API on `listener` until `shutdown` completes; connections already open
/// finish their request.
pub async fn serve_billing<F>(listener: TcpListener, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let billing = Arc::new(Billing { refunds: Mutex::new(Vec::new()), next: Counter::starting_at(1) });
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let place = tokio::select! {
            () = &mut shutdown => return Ok(()),
            place = places.clone().acquire_owned() => place,
        };
        let Ok(place) = place else { return Ok(()) };
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let billing = billing.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let billing = billing.clone();
                async move { Ok::<_, Infallible>(billing.answer(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            drop(place);
        });
    }
}

impl Billing {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let token = match bearer_token(&request) {
            Ok(token) => token,
            Err(why) => {
                let mut response = reply(StatusCode::UNAUTHORIZED, &json!({ "error": why }));
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        };
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method().clone(), segments.as_slice()) {
            (Method::POST, ["refunds"]) => self.create(request, token).await,
            (Method::GET, ["refunds", id]) => self.read(id, token),
            (_, ["refunds"] | ["refunds", _]) => {
                reply(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method not allowed here" }))
            }
            _ => reply(StatusCode::NOT_FOUND, &json!({ "error": format!("no route `{path}`") })),
        }
    }

    /// `POST /refunds`.
    async fn create(&self, request: Request<Incoming>, token: Value) -> Response<Full<Bytes>> {
        let bad = |why: String| reply(StatusCode::BAD_REQUEST, &json!({ "error": why }));
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return bad(format!("cannot read the body (at most {MAX_BODY_BYTES} bytes): {e}")),
        };
        let refund: NewRefund = match serde_json::from_slice(&body) {
            Ok(refund) => refund,
            Err(e) => return bad(format!("the body must be {{\"customer_id\", \"amount\", \"reason\"}}: {e}")),
        };
        if customer(&refund.customer_id).is_none() {
            return bad(format!("unknown customer `{}`", refund.customer_id));
        }
        if refund.amount <= 0 {
            return bad(format!("the amount must be a positive whole number of euros, not `{}`", refund.amount));
        }
        let issued = json!({
            "refund_id": format!("R-{}", self.next.next()),
            "customer_id": refund.customer_id,
            "amount": refund.amount,
            "currency": "EUR",
            "reason": refund.reason,
            "status": "issued",
        });
        {
            let mut refunds = self.refunds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if refunds.len() >= MAX_REFUNDS {
                refunds.remove(0);
            }
            refunds.push(issued.clone());
        }
        reply(StatusCode::CREATED, &with_token(issued, token))
    }

    /// `GET /refunds/{refund_id}`.
    fn read(&self, id: &str, token: Value) -> Response<Full<Bytes>> {
        let refunds = self.refunds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match refunds.iter().find(|r| r.get("refund_id").and_then(Value::as_str) == Some(id)) {
            Some(refund) => reply(StatusCode::OK, &with_token(refund.clone(), token)),
            None => reply(StatusCode::NOT_FOUND, &json!({ "error": format!("unknown refund `{id}`") })),
        }
    }
}

/// What the API saw of the request's bearer token: the claims that say which token it was.
/// `Err` says why the request is refused.
fn bearer_token(request: &Request<Incoming>) -> Result<Value, String> {
    let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("a bearer token is required (Authorization: Bearer <JWT>)")?;
    seen(token, now_secs())
}

/// The `jti`, `exp`, `aud` and `kid` of JWT `token`, when it is one that has not expired at
/// `now` (seconds). The signature is not checked (see the module doc).
pub fn seen(token: &str, now: u64) -> Result<Value, String> {
    let not_jwt = "the bearer token is not a JWT";
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_jwt.to_owned());
    };
    let decode = |part: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
    };
    let (Some(header), Some(claims)) = (decode(header), decode(payload)) else {
        return Err(not_jwt.to_owned());
    };
    let jti = claims.get("jti").and_then(Value::as_str).ok_or("the bearer token has no `jti`")?;
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or("the bearer token has no `exp`")?;
    if exp <= now {
        return Err(format!("the bearer token `{jti}` expired"));
    }
    Ok(json!({ "jti": jti, "exp": exp, "aud": claims.get("aud"), "kid": header.get("kid") }))
}

fn with_token(mut answer: Value, token: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.insert("token".to_owned(), token);
    }
    answer
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &Value, claims: &Value) -> String {
        let part = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", part(header), part(claims))
    }

    #[test]
    fn a_token_is_seen_by_its_claims_and_refused_when_it_is_not_a_live_jwt() {
        let header = json!({ "alg": "EdDSA", "kid": "k1" });
        let token = jwt(&header, &json!({ "jti": "j-1", "exp": 200, "aud": "http://billing" }));
        assert_eq!(
            seen(&token, 100).unwrap(),
            json!({ "jti": "j-1", "exp": 200, "aud": "http://billing", "kid": "k1" })
        );
        assert!(seen(&token, 200).unwrap_err().contains("expired"));
        assert!(seen(&jwt(&header, &json!({ "exp": 200 })), 100).unwrap_err().contains("`jti`"));
        assert!(seen(&jwt(&header, &json!({ "jti": "j" })), 100).unwrap_err().contains("`exp`"));
        for not_a_jwt in ["cst_live_agentkey", "a.b.c", "a.b", &format!("{token}.x")] {
            assert_eq!(seen(not_a_jwt, 100).unwrap_err(), "the bearer token is not a JWT", "{not_a_jwt}");
        }
    }
}
