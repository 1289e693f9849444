//! Who is asking: the session cookie read and checked, and the CSRF check of every form post.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use custos_core::EventKind;
use serde_json::json;

use crate::console::{now_ms, Console};
use crate::page::{self, Frame};
use crate::session::{same_token, Ended, Session};

/// A request from a signed-in approver.
#[derive(Debug)]
pub struct Signed {
    pub session: Session,
}

/// The session cookie's value, if the request carries one.
pub fn cookie<'a>(console: &Console, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie_named(headers, console.cookie)
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that holds `token` for the session's lifetime.
pub fn set_cookie(console: &Console, token: &str) -> Option<HeaderValue> {
    let secure = if console.secure() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        console.cookie, console.settings.session_max_secs
    ))
    .ok()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(console: &Console) -> Option<HeaderValue> {
    let secure = if console.secure() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}", console.cookie)).ok()
}

/// The signed-in session of this request, or the answer to give instead: a redirect to the
/// sign-in page (no cookie, or a session that ended), recorded when the cookie named no session
/// (`console.refused`, `unknown_session`: forged, or from before a restart) or a session timed
/// out (`console.signed_out`).
pub async fn signed_in(console: &Console, headers: &HeaderMap, path: &str) -> Result<Signed, Response> {
    let Some(token) = cookie(console, headers) else {
        return Err(page::see_other("/console/sign-in"));
    };
    let touched = console.sessions().touch(token, now_ms());
    match touched {
        Ok(session) => Ok(Signed { session }),
        Err((ended, session)) => {
            match (ended, session) {
                (Ended::Unknown, _) | (_, None) => console.refused(ended.reason(), path, None).await,
                (_, Some(s)) => {
                    let detail = json!({
                        "approver": s.approver.name, "session": s.approver.session, "why": ended.reason(),
                    });
                    if let Err(e) = console.record(EventKind::ConsoleSignedOut, detail).await {
                        tracing::warn!("the console could not record a session's end: {e}");
                    }
                }
            }
            let mut r = page::see_other(&format!("/console/sign-in?ended={}", ended.reason()));
            if let Some(clear) = clear_cookie(console) {
                r.headers_mut().insert(header::SET_COOKIE, clear);
            }
            Err(r)
        }
    }
}

/// Checks a form post of `session`: the form's `csrf` field must be the session's token, and a
/// browser's `Origin` (or `Sec-Fetch-Site`) must say the form came from the console itself.
/// A refusal is recorded (`console.refused`, `csrf`) and answered with 403.
pub async fn check_form(
    console: &Console,
    session: &Session,
    headers: &HeaderMap,
    form_csrf: Option<&str>,
    path: &str,
) -> Result<(), Response> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"));
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin != "null" && !same_origin(origin, &console.base_url));
    let token_ok = form_csrf.is_some_and(|t| same_token(t, &session.csrf));
    if token_ok && !cross_site && !foreign_origin {
        return Ok(());
    }
    let reason = if token_ok {
        "cross_site_form"
    } else if form_csrf.is_none() {
        "csrf_missing"
    } else {
        "csrf_mismatch"
    };
    console.refused(reason, path, Some(&session.approver)).await;
    Err(page::error(
        StatusCode::FORBIDDEN,
        Frame::signed_in(session, ""),
        "Request refused",
        "this form did not come from this console session (its CSRF token is missing or wrong): reload the page and try again; nothing was decided",
    ))
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of `base` (a URL).
fn same_origin(origin: &str, base: &str) -> bool {
    let base_origin = base.find("://").map_or(base, |i| {
        let after = i + 3;
        base.get(after..)
            .and_then(|rest| rest.find('/'))
            .map_or(base, |slash| base.get(..after + slash).unwrap_or(base))
    });
    origin.eq_ignore_ascii_case(base_origin)
}

/// Every page but the sign-in ones takes a [`Signed`]: the handler runs only for a signed-in
/// approver; anyone else gets [`signed_in`]'s redirect (recorded as it says).
impl axum::extract::FromRequestParts<std::sync::Arc<Console>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &std::sync::Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        signed_in(console, &parts.headers, parts.uri.path()).await
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        assert!(same_origin("http://127.0.0.1:9091", "http://127.0.0.1:9091"));
        assert!(same_origin("https://console.example", "https://console.example/base"));
        assert!(!same_origin("https://evil.example", "https://console.example"));
        assert!(!same_origin("http://127.0.0.1:9092", "http://127.0.0.1:9091"));
        assert!(!same_origin("http://console.example", "https://console.example"));
    }
}
