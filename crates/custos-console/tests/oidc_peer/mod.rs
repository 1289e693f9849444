//! The real OpenID provider of the sign-in tests (`tests/peers/oidc_provider.mjs`, the
//! certified `oidc-provider` npm package), and a browser stand-in that drives its sign-in
//! pages: plain HTTP requests that keep cookies and follow no redirect on their own.
//!
//! Shared by the console's tests: `mod oidc_peer;` from a test file.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: any failure should fail the test"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The client id every test registers.
pub const CLIENT_ID: &str = "custos-console";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `.ci/setup-peers` installed `oidc-provider`. Without it a test is skipped with a
/// message, except in CI (`CI=true`), which installs it: there its absence fails the test.
pub fn provider_installed() -> bool {
    let package = repo_root().join("tests/peers/node_modules/oidc-provider/package.json");
    if package.exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`{}` is missing in CI: `.ci/setup-peers` should have installed it",
        package.display()
    );
    eprintln!("skipped: `{}` is missing; run `.ci/setup-peers` to install oidc-provider", package.display());
    false
}

/// A running provider, killed when dropped.
pub struct OidcProvider {
    child: Child,
    /// `http://127.0.0.1:PORT`, as its discovery document and tokens name it.
    pub issuer: String,
    /// What it wrote on stderr, for failure messages.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl OidcProvider {
    /// Starts `node tests/peers/oidc_provider.mjs --client-id custos-console --redirect-uri
    /// REDIRECT_URI` and `extra` arguments; returns once it printed its issuer.
    pub fn start(redirect_uri: &str, extra: &[&str]) -> OidcProvider {
        let script = repo_root().join("tests/peers/oidc_provider.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--client-id", CLIENT_ID, "--redirect-uri", redirect_uri])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", script.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            // Keep reading, so the provider never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(60));
        let issuer = match first {
            Ok(Some(Ok(ref line))) => line.strip_prefix("issuer ").map(str::to_owned),
            _ => None,
        };
        let Some(issuer) = issuer else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the provider did not print its issuer: {first:?}; stderr: {}", stderr.lock().unwrap().join("\n"));
        };
        OidcProvider { child, issuer, stderr }
    }

    /// `[console.oidc]` for this provider: a public client asking for email and groups.
    pub fn settings(&self) -> custos_config::OidcSettings {
        custos_config::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret_file: None,
            scopes: vec!["openid".into(), "email".into(), "groups".into()],
            identity_claim: "email".into(),
            groups_claim: "groups".into(),
            ca_file: None,
        }
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer, as a browser would see it before following anything.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A browser stand-in: keeps cookies (by name, for every path: the provider's cookies have
/// distinct names), follows no redirect by itself.
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Mutex<Vec<(String, String)>>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser { client: Client::builder(TokioExecutor::new()).build_http(), cookies: Mutex::new(Vec::new()) }
    }
}

impl Browser {
    pub async fn get(&self, url: &str) -> Page {
        self.send(Method::GET, url, None).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        self.send(Method::POST, url, Some(serde_urlencoded::to_string(fields).unwrap())).await
    }

    async fn send(&self, method: Method, url: &str, form: Option<String>) -> Page {
        let mut req = Request::builder().method(method).uri(url);
        let cookie = self.cookies.lock().unwrap().iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>();
        if !cookie.is_empty() {
            req = req.header(COOKIE, cookie.join("; "));
        }
        if form.is_some() {
            req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let req = req.body(Full::new(Bytes::from(form.unwrap_or_default()))).unwrap();
        let response = self.client.request(req).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for set in response.headers().get_all(SET_COOKIE) {
            self.keep(set.to_str().unwrap());
        }
        let status = response.status().as_u16();
        let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page { status, location, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// One `Set-Cookie`: kept, replaced, or (expired in the past) dropped.
    fn keep(&self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else { return };
        let expired = parts.any(|attr| {
            let attr = attr.trim().to_ascii_lowercase();
            attr == "max-age=0" || attr.starts_with("expires=") && attr.contains("1970")
        });
        let mut cookies = self.cookies.lock().unwrap();
        cookies.retain(|(n, _)| n != name);
        if !expired {
            cookies.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// `location` made absolute against `base` (`http://host:port`), as a browser would.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// The `action` of the first form of `html`, and the names of its inputs.
pub fn form_of(html: &str) -> (String, Vec<String>) {
    let attr = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        tag.get(start..).and_then(|rest| rest.split('"').next()).map(str::to_owned)
    };
    let form = html.split("<form").nth(1).unwrap_or_else(|| panic!("no form in {html}"));
    let form = form.split("</form>").next().unwrap();
    let action = attr(form.split('>').next().unwrap(), "action").unwrap().replace("&amp;", "&");
    let inputs =
        form.split("<input").skip(1).filter_map(|input| attr(input.split('>').next().unwrap(), "name")).collect();
    (action, inputs)
}

/// Where the provider sent the browser back: the callback's query parameters.
#[derive(Debug)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

/// Follows `url` (the sign-in URL of `begin`) through the provider's pages as a person would:
/// the login form filled with `login` and any password, then every redirect, until the
/// provider sends the browser to `redirect_uri`.
pub async fn sign_in(browser: &Browser, issuer: &str, url: &str, login: &str, redirect_uri: &str) -> Callback {
    let mut next = url.to_owned();
    let mut filled = false;
    for _ in 0..10 {
        let page = browser.get(&next).await;
        let location = match (page.status, page.location) {
            (302 | 303, Some(location)) => absolute(issuer, &location),
            (200, _) if !filled => {
                let (action, inputs) = form_of(&page.body);
                assert!(inputs.contains(&"login".into()) && inputs.contains(&"password".into()), "{inputs:?}");
                filled = true;
                let answer =
                    browser.post_form(&absolute(issuer, &action), &[("login", login), ("password", "any")]).await;
                match (answer.status, answer.location) {
                    (302 | 303, Some(location)) => absolute(issuer, &location),
                    (status, _) => panic!("the login form answered {status}: {}", answer.body),
                }
            }
            (status, _) => panic!("{next} answered {status}: {}", page.body),
        };
        if let Some(query) = location.strip_prefix(&format!("{redirect_uri}?")) {
            let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
            let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            return Callback { code: param("code"), state: param("state"), iss: param("iss"), error: param("error") };
        }
        assert!(location.starts_with(issuer), "sent off the provider to {location}");
        next = location;
    }
    panic!("more than 10 redirects");
}
