//! Signing in and out: the sign-in page, one-time links, the OpenID Connect code flow.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use custos_approvals::{Approver, ApproverMethod};
use custos_core::EventKind;
use serde_json::json;

use crate::auth::{self, clear_cookie, set_cookie};
use crate::console::{now_ms, Console};
use crate::link::{self, LinkRefusal};
use crate::page::{self, Frame};

/// The cookie binding a begun OpenID Connect sign-in to the browser that began it (`Lax`: the
/// provider's redirect back is a cross-site navigation, which `Strict` cookies do not follow).
const OIDC_COOKIE: &str = "custos_oidc_state";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    frame: Frame,
    issuer: Option<String>,
    local: bool,
    message: Option<String>,
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage {
    frame: Frame,
    approver: String,
    token: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "continue.html")]
struct ContinuePage {
    frame: Frame,
    to: String,
}

/// `GET /console/`: the inbox when signed in, else the sign-in page.
pub async fn home(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let signed = auth::cookie(&c, &headers).is_some_and(|t| c.sessions().touch(t, now_ms()).is_ok());
    page::see_other(if signed { "/console/approvals" } else { "/console/sign-in" })
}

/// `GET /console/sign-in[?ended=REASON]`.
pub async fn sign_in_page(State(c): State<Arc<Console>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let message = q.get("ended").map(|why| match why.as_str() {
        "idle_timeout" => "Your session was idle too long and has ended. Sign in again.".to_owned(),
        "absolute_timeout" => "Your session reached its time limit and has ended. Sign in again.".to_owned(),
        "signed_out" => "You are signed out.".to_owned(),
        _ => "Your session is not known (the gateway may have restarted). Sign in again.".to_owned(),
    });
    let page = SignInPage {
        frame: Frame::anonymous(),
        issuer: c.oidc.as_ref().map(|o| o.issuer().to_owned()),
        local: c.settings.local_sign_in,
        message,
    };
    page::html(StatusCode::OK, &page)
}

/// `GET /console/login?token=…`: what a link signs in as, and a button to continue. Looking
/// does not use the link (a chat client unfurling it must not sign anyone in); the button's
/// post does.
pub async fn link_page(State(c): State<Arc<Console>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !c.settings.local_sign_in {
        return local_off();
    }
    let token = q.get("token").map(String::as_str).unwrap_or_default();
    match c.read(|store| Ok(link::find(store, token, now_ms()))) {
        Ok(Ok(found)) => page::html(
            StatusCode::OK,
            &LinkPage {
                frame: Frame::anonymous(),
                approver: found.approver,
                token: token.to_owned(),
                expires: page::time(found.expires_ms),
            },
        ),
        Ok(Err(Ok(refusal))) => refuse_link(&c, refusal).await,
        Ok(Err(Err(e))) => unavailable(&e.to_string()),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `POST /console/login` (form: `token`): uses the link once and opens a session.
pub async fn link_redeem(State(c): State<Arc<Console>>, body: axum::body::Bytes) -> Response {
    if !c.settings.local_sign_in {
        return local_off();
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    let _one_at_a_time = c.redeeming.lock().await;
    let found = match c.read(|store| Ok(link::find(store, token, now_ms()))) {
        Ok(Ok(found)) => found,
        Ok(Err(Ok(refusal))) => return refuse_link(&c, refusal).await,
        Ok(Err(Err(e))) => return unavailable(&e.to_string()),
        Err(e) => return unavailable(&e.to_string()),
    };
    let approver = Approver::asserted(found.approver.clone(), ApproverMethod::LoginLink);
    open_session(&c, approver, json!({ "link": found.link }), "/console/approvals", false).await
}

/// `GET /console/oidc/start`: off to the identity provider.
pub async fn oidc_start(State(c): State<Arc<Console>>) -> Response {
    let Some(oidc) = &c.oidc else { return no_provider() };
    let (url, pending) = match oidc.begin(&redirect_uri(&c)) {
        Ok(begun) => begun,
        Err(e) => {
            return page::error(StatusCode::SERVICE_UNAVAILABLE, Frame::anonymous(), "Sign-in failed", e.to_string())
        }
    };
    let state = pending.state.clone();
    c.sessions().begin(pending, now_ms());
    let mut r = page::see_other(&url);
    let secure = if c.secure() { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}={state}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /console/oidc/callback?code=…&state=…`: the provider's answer, checked (state bound to
/// this browser, code exchanged, ID token verified), then a session.
pub async fn oidc_callback(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(oidc) = &c.oidc else { return no_provider() };
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let refuse = |reason: &'static str, message: String| {
        let c = c.clone();
        async move {
            c.refused(reason, "/console/oidc/callback", None).await;
            page::error(StatusCode::UNAUTHORIZED, Frame::anonymous(), "Sign-in failed", message)
        }
    };
    if let Some(error) = q.get("error") {
        let said = q.get("error_description").map_or(String::new(), |d| format!(": {}", d.escape_debug()));
        return refuse(
            "provider_error",
            format!("the identity provider refused the sign-in (`{}`{said})", error.escape_debug()),
        )
        .await;
    }
    let bound = auth::cookie_named(&headers, OIDC_COOKIE).is_some_and(|value| crate::session::same_token(value, state));
    let pending = c.sessions().take_pending(state, now_ms());
    let Some(pending) = pending.filter(|_| bound) else {
        return refuse(
            "state_mismatch",
            "this sign-in was not begun in this browser, or took too long: start again".to_owned(),
        )
        .await;
    };
    let code = q.get("code").map(String::as_str).unwrap_or_default();
    let signed = match oidc.finish(&pending, state, code, &redirect_uri(&c)).await {
        Ok(signed) => signed,
        Err(e) => return refuse(e.reason(), format!("the sign-in could not be verified: {e}")).await,
    };
    let approver = Approver {
        name: signed.name,
        method: ApproverMethod::Oidc,
        issuer: Some(signed.issuer),
        subject: Some(signed.subject),
        session: None,
        idp_groups: signed.groups,
    };
    open_session(&c, approver, json!({}), "/console/approvals", true).await
}

/// `POST /console/sign-out` (form: `csrf`).
pub async fn sign_out(
    State(c): State<Arc<Console>>,
    signed: auth::Signed,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) =
        auth::check_form(&c, &signed.session, &headers, form.get("csrf").map(String::as_str), "/console/sign-out").await
    {
        return r;
    }
    if let Some(token) = auth::cookie(&c, &headers) {
        c.sessions().close(token);
    }
    let who = &signed.session.approver;
    let detail = json!({ "approver": who.name, "session": who.session, "why": "signed_out" });
    if let Err(e) = c.record(EventKind::ConsoleSignedOut, detail).await {
        tracing::warn!("the console could not record a sign-out: {e}");
    }
    let mut r = page::see_other("/console/sign-in?ended=signed_out");
    if let Some(clear) = clear_cookie(&c) {
        r.headers_mut().insert(header::SET_COOKIE, clear);
    }
    r
}

/// Opens a session for `approver`, records `console.signed_in` (with `extra` in its detail)
/// durably, and answers with the cookie: a redirect to `to`, or (after a cross-site redirect
/// from the provider, which `SameSite=Strict` cookies do not follow) a page that moves on by
/// itself. Nothing is signed in if the record fails.
async fn open_session(
    c: &Console,
    approver: Approver,
    extra: serde_json::Value,
    to: &str,
    cross_site: bool,
) -> Response {
    let opened = c.sessions().open(approver, now_ms());
    let (token, session) = match opened {
        Ok(opened) => opened,
        Err(e) => return unavailable(&e.to_string()),
    };
    let who = &session.approver;
    let mut detail = json!({ "approver": who.name, "identity": who.identity_json() });
    if let (Some(d), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
        d.extend(extra.clone());
    }
    if let Err(e) = c.record(EventKind::ConsoleSignedIn, detail).await {
        c.sessions().close(&token);
        return unavailable(&e.to_string());
    }
    let mut r = if cross_site {
        page::html(StatusCode::OK, &ContinuePage { frame: Frame::signed_in(&session, ""), to: to.to_owned() })
    } else {
        page::see_other(to)
    };
    if let Some(cookie) = set_cookie(c, &token) {
        r.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if cross_site {
        if let Ok(v) =
            HeaderValue::from_str(&format!("{OIDC_COOKIE}=; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=0"))
        {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn redirect_uri(c: &Console) -> String {
    format!("{}/console/oidc/callback", c.base_url)
}

async fn refuse_link(c: &Console, refusal: LinkRefusal) -> Response {
    c.refused(refusal.reason(), link::LOGIN_PATH, None).await;
    page::error(StatusCode::UNAUTHORIZED, Frame::anonymous(), "Sign-in failed", refusal.message())
}

fn no_provider() -> Response {
    page::error(StatusCode::NOT_FOUND, Frame::anonymous(), "Not found", "no identity provider is configured")
}

fn local_off() -> Response {
    page::error(
        StatusCode::NOT_FOUND,
        Frame::anonymous(),
        "Not found",
        "sign-in links are off for this console ([console] local_sign_in = false)",
    )
}

fn unavailable(why: &str) -> Response {
    page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        Frame::anonymous(),
        "Unavailable",
        format!("the console cannot record this now, so it does nothing: {why}"),
    )
}
