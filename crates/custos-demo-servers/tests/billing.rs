//! The billing API over real HTTP on a loopback port: bearer JWTs only, refunds issued and
//! read back, bad input refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A token shaped as the gateway mints them (the API does not check the signature).
fn jwt(claims: &Value) -> String {
    let part = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", part(&json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k-1" })), part(claims))
}

fn live(jti: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    jwt(&json!({ "jti": jti, "exp": now + 60, "aud": "http://billing.test" }))
}

/// One request, `Connection: close`; the status and the body as JSON.
async fn http(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn refunds_need_a_live_bearer_jwt_and_say_which_token_they_saw() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(custos_demo_servers::serve_billing(listener, async move {
        let _ = stopped.await;
    }));
    let refund = r#"{"customer_id":"C-42","amount":80,"reason":"duplicate charge"}"#;

    // No token, an API key that is not a JWT, a JWT without `jti`, an expired one: 401.
    let (status, body) = http(addr, "POST", "/refunds", None, refund).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bearer token is required"), "{body}");
    for token in [
        "cst_live_an_agents_api_key".to_owned(),
        jwt(&json!({ "exp": 4_000_000_000_u64 })),
        jwt(&json!({ "jti": "old", "exp": 1 })),
    ] {
        let (status, body) = http(addr, "POST", "/refunds", Some(&token), refund).await;
        assert_eq!(status, 401, "{token}: {body}");
    }

    // A live token: the refund is issued, and the answer names the token.
    let (status, body) = http(addr, "POST", "/refunds", Some(&live("jti-1")), refund).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["refund_id"], "R-1");
    assert_eq!((body["amount"].as_i64(), body["currency"].as_str()), (Some(80), Some("EUR")));
    assert_eq!(body["token"]["jti"], "jti-1");
    assert_eq!(body["token"]["kid"], "k-1");
    assert_eq!(body["token"]["aud"], "http://billing.test");
    let (status, body) = http(addr, "POST", "/refunds", Some(&live("jti-2")), refund).await;
    assert_eq!((status, body["refund_id"].as_str()), (201, Some("R-2")), "{body}");

    // Read back, with the token of the read.
    let (status, body) = http(addr, "GET", "/refunds/R-1", Some(&live("jti-3")), "").await;
    assert_eq!((status, body["refund_id"].as_str(), body["token"]["jti"].as_str()), (200, Some("R-1"), Some("jti-3")));
    let (status, _) = http(addr, "GET", "/refunds/R-9", Some(&live("jti-4")), "").await;
    assert_eq!(status, 404);

    // Bad input: 400, nothing issued.
    for bad in [
        r#"{"customer_id":"C-1","amount":80,"reason":"x"}"#,
        r#"{"customer_id":"C-42","amount":0,"reason":"x"}"#,
        r#"{"customer_id":"C-42","amount":"80","reason":"x"}"#,
        r#"{"customer_id":"C-42"}"#,
        "not json",
    ] {
        let (status, body) = http(addr, "POST", "/refunds", Some(&live("jti-5")), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = http(addr, "POST", "/refunds", Some(&live("jti-6")), refund).await;
    assert_eq!((status, body["refund_id"].as_str()), (201, Some("R-3")), "{body}");

    // Unknown routes and methods.
    assert_eq!(http(addr, "GET", "/invoices", Some(&live("jti-7")), "").await.0, 404);
    assert_eq!(http(addr, "DELETE", "/refunds/R-1", Some(&live("jti-8")), "").await.0, 405);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
