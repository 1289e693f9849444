//! Answers the console gives: pages with the security headers every page carries, error pages,
//! redirects, and the frame (navigation, who is signed in) around every page.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::session::Session;

/// No inline script or style, nothing from elsewhere, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every page shows around its content.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// The signed-in approver's name; `None` on the sign-in pages.
    pub who: Option<String>,
    /// How they signed in (`oidc`, `login-link`).
    pub method: String,
    /// The session's CSRF token, for the sign-out form and every other form.
    pub csrf: String,
    /// Which navigation entry is the current page.
    pub active: &'static str,
}

impl Frame {
    pub fn signed_in(session: &Session, active: &'static str) -> Self {
        Self {
            who: Some(session.approver.name.clone()),
            method: session.approver.method.as_str().to_owned(),
            csrf: session.csrf.clone(),
            active,
        }
    }

    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Whether `entry` is the current page (for `aria-current`).
    pub fn is(&self, entry: &str) -> bool {
        self.active == entry
    }
}

/// The navigation entries, in order: (key, path, label).
pub const NAV: [(&str, &str, &str); 8] = [
    ("approvals", "/console/approvals", "Approvals"),
    ("calls", "/console/calls", "Live calls"),
    ("runs", "/console/runs", "Runs"),
    ("agents", "/console/agents", "Agents"),
    ("tools", "/console/tools", "Tools"),
    ("findings", "/console/findings", "Findings"),
    ("audit", "/console/audit", "Audit"),
    ("explain", "/console/explain", "Explain"),
];

/// Adds the headers every console answer carries.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Sign-in links carry their token in the query: never send it on as a referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    r
}

/// A rendered page with `status`.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            secure(r)
        }
        Err(e) => {
            tracing::error!("a console page could not be rendered: {e}");
            secure((StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response())
        }
    }
}

/// A page that says what went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub frame: Frame,
    pub title: String,
    pub message: String,
    /// Where to go from here: (path, label).
    pub next: Option<(String, String)>,
}

/// An error page with `status`.
pub fn error(status: StatusCode, frame: Frame, title: &str, message: impl Into<String>) -> Response {
    html(status, &ErrorPage { frame, title: title.to_owned(), message: message.into(), next: None })
}

/// A `303 See Other` to `to` (a path of the console).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure(r)
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (times before the epoch read as it).
pub fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string().replacen('T', " ", 1).replacen('Z', " UTC", 1)
}

/// A duration in ms as `1h 2m`, `3m 4s` or `5s`.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_780_000_000_000), "2026-05-28 20:26:40 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn spans_read_in_the_largest_units() {
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(61_000), "1m 1s");
        assert_eq!(span(3_726_000), "1h 2m");
        assert_eq!(span(-5), "0s");
    }
}
