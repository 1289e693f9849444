//! Every route of the console, under `/console`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::console::Console;
use crate::{agents, approvals, audit, calls, explain, findings, page, runs, sign_in, stream, tools};

const CSS: &str = include_str!("../static/console.css");
const JS: &str = include_str!("../static/console.js");

/// The console's routes. Mounted as they are on the admin listener or the console's own.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(sign_in::home))
        .route("/console/", get(sign_in::home))
        .route("/console/sign-in", get(sign_in::sign_in_page))
        .route("/console/login", get(sign_in::link_page).post(sign_in::link_redeem))
        .route("/console/oidc/start", get(sign_in::oidc_start))
        .route("/console/oidc/callback", get(sign_in::oidc_callback))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/approvals", get(approvals::inbox))
        .route("/console/approvals/{id}", get(approvals::detail))
        .route("/console/approvals/{id}/decide", post(approvals::decide))
        .route("/console/calls", get(calls::calls))
        .route("/console/calls/stream", get(stream::calls_stream))
        .route("/console/runs", get(runs::runs))
        .route("/console/runs/{run}", get(runs::run))
        .route("/console/tools", get(tools::tools))
        .route("/console/tools/accept", post(tools::accept))
        .route("/console/findings", get(findings::findings))
        .route("/console/audit", get(audit::audit))
        .route("/console/audit/verify", post(audit::verify))
        .route("/console/explain", get(explain::explain))
        .route("/console/agents", get(agents::agents))
        .route("/console/static/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/console/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .with_state(console)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    page::secure(r)
}

async fn not_found() -> Response {
    page::error(StatusCode::NOT_FOUND, page::Frame::anonymous(), "Not found", "there is no such page in the console")
}
