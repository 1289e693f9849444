//! `custos demo --console` end to end over HTTP: the printed one-time link signs the demo
//! approver in, the held calls of the demo's workflows are decided through the console's forms
//! (with their CSRF tokens and confirmation step), the waiting agents go on, and every refusal
//! on the way (a link used twice, a forged cookie, a form without its token, a denial without a
//! reason, a replayed decision, an unknown id) is answered and recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::harness::{custos_bin, header, http, of_kind};
use serde_json::Value;

/// The `csrf` field of the first form on `page`.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a csrf token") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

/// The approval ids listed on an inbox page.
fn listed(page: &str) -> Vec<String> {
    page.split("data-approval-id=\"").skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect()
}

fn events(config: &std::path::Path) -> Vec<Value> {
    let out = Command::new(custos_bin()).args(["audit", "query", "--json", "--config"]).arg(config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_demo_console_signs_the_approver_in_with_its_link_and_decides_the_held_calls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Command::new(custos_bin())
        .args(["demo", "--console", "--no-color", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, stdout) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let said = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().unwrap();
    let said_too = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut said = said_too.lock().unwrap();
            said.push_str(&line);
            said.push('\n');
        }
    });
    let link = loop {
        let line = stdout.recv_timeout(common::harness::ANSWER_TIMEOUT).expect("the demo printed no sign-in link");
        if let Some(link) = line.strip_prefix("sign-in link: ") {
            break link.to_owned();
        }
    };
    let base = link.split("/console/").next().unwrap().to_owned();
    let token = link.split("token=").nth(1).unwrap().to_owned();

    // Looking at the link does not use it; the button's post does, once.
    let (status, headers, page) = http("GET", &link, &[], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Continue as demo-approver@custos.example"), "{page}");
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert!(!page.contains("<script>") && !page.contains(" style=\""), "no inline script or style: {page}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, headers, _) = http("POST", &format!("{base}/console/login"), &form, &format!("token={token}"));
    assert_eq!((status, header(&headers, "location")), (303, Some("/console/approvals")));
    let set = header(&headers, "set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, _, page) = http("POST", &format!("{base}/console/login"), &form, &format!("token={token}"));
    assert_eq!(status, 401, "a link signs in once: {page}");
    assert!(page.contains("used already"), "{page}");

    // No cookie, or a forged one: the sign-in page, and nothing shown.
    let inbox = format!("{base}/console/approvals");
    let (status, headers, _) = http("GET", &inbox, &[], "");
    assert_eq!((status, header(&headers, "location")), (303, Some("/console/sign-in")));
    let (status, headers, _) = http("GET", &inbox, &[("Cookie", "custos_console=forged")], "");
    assert_eq!((status, header(&headers, "location")), (303, Some("/console/sign-in?ended=unknown_session")));
    let me = [("Cookie", cookie.as_str())];
    let (status, _, page) = http("GET", &format!("{base}/console/approvals/apr_nope"), &me, "");
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("apr_nope"), "{page}");
    let (status, _, _) = http("GET", &format!("{inbox}?state=nonsense"), &me, "");
    assert_eq!(status, 400);

    // Decide each held call as it appears: the procurement one is denied, the others approved.
    let mut decided: Vec<String> = Vec::new();
    let mut first = true;
    let mut denied = None;
    while !said.lock().unwrap().contains("keep running") {
        let (status, _, page) = http("GET", &inbox, &me, "");
        assert_eq!(status, 200, "{page}");
        let Some(id) = listed(&page).into_iter().find(|id| !decided.contains(id)) else {
            assert!(child.try_wait().unwrap().is_none(), "the demo ended early: {}", said.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        };
        let (status, _, detail) = http("GET", &format!("{base}/console/approvals/{id}"), &me, "");
        assert_eq!(status, 200, "{detail}");
        assert!(detail.contains("id=\"approve\"") && detail.contains("id=\"deny\""), "{detail}");
        let token = csrf(&detail);
        let decide = format!("{base}/console/approvals/{id}/decide");
        let post = |body: &str| http("POST", &decide, &[me[0], form[0]], body);
        if first {
            first = false;
            assert_eq!(post("verdict=approve&confirm=yes").0, 403, "no csrf token");
            assert_eq!(post("csrf=wrong&verdict=approve&confirm=yes").0, 403, "a wrong csrf token");
            let (status, _, page) = post(&format!("csrf={token}&verdict=deny&reason=&confirm=yes"));
            assert_eq!(status, 400, "a denial needs a reason: {page}");
            // A form from another site, even with the right token.
            let foreign = http(
                "POST",
                &decide,
                &[me[0], form[0], ("Origin", "https://evil.example")],
                &format!("csrf={token}&verdict=approve&confirm=yes"),
            );
            assert_eq!(foreign.0, 403);
        }
        let deny = detail.contains("update_finance_system");
        let verdict = if deny { "verdict=deny&reason=not+this+quarter" } else { "verdict=approve&reason=checked" };
        let (status, _, page) = post(&format!("csrf={token}&{verdict}"));
        assert_eq!(status, 200, "the confirmation step: {page}");
        assert!(page.contains("id=\"confirm-decision\""), "{page}");
        let (status, headers, _) = post(&format!("csrf={token}&{verdict}&confirm=yes"));
        assert_eq!((status, header(&headers, "location")), (303, Some(format!("/console/approvals/{id}").as_str())));
        let (status, _, page) = post(&format!("csrf={token}&{verdict}&confirm=yes"));
        assert_eq!(status, 409, "a replayed decision decides nothing: {page}");
        let (_, _, page) = http("GET", &format!("{base}/console/approvals/{id}"), &me, "");
        assert!(page.contains("by demo-approver@custos.example (login-link)"), "who decided, and how: {page}");
        if deny {
            denied = Some(id.clone());
        }
        decided.push(id);
    }
    assert_eq!(decided.len(), 4, "one held call per workflow: {decided:?}");
    let (_, _, page) = http("GET", &format!("{inbox}?state=all&q=finance"), &me, "");
    assert_eq!(listed(&page), [denied.clone().unwrap()], "decided requests are searchable");

    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}: {}", said.lock().unwrap());

    let events = events(&data.join("custos.toml"));
    let signed_in = of_kind(&events, "console.signed_in");
    assert_eq!(signed_in.len(), 1);
    let session = signed_in[0]["detail"]["identity"]["session"].as_str().unwrap();
    let approved = of_kind(&events, "approval.approved");
    assert_eq!(approved.len(), 3);
    for a in approved.iter().chain(of_kind(&events, "approval.denied").iter()) {
        assert_eq!(a["detail"]["identity"]["method"], "login-link", "{a}");
        assert_eq!(a["detail"]["identity"]["session"], session, "{a}");
        assert_eq!(a["detail"]["approver"], "demo-approver@custos.example");
    }
    let denial = of_kind(&events, "approval.denied");
    assert_eq!((denial.len(), denial[0]["detail"]["reason"].as_str()), (1, Some("not this quarter")));
    let reasons: Vec<&str> =
        of_kind(&events, "console.refused").iter().map(|e| e["detail"]["reason"].as_str().unwrap()).collect();
    for want in ["used_link", "unknown_session", "csrf_missing", "csrf_mismatch", "cross_site_form", "unknown_approval"]
    {
        assert!(reasons.contains(&want), "`{want}` not recorded: {reasons:?}");
    }
    assert!(!of_kind(&events, "approval.refused").is_empty(), "the replayed decisions are recorded");
    let verify = Command::new(custos_bin())
        .args(["audit", "verify", "--config"])
        .arg(data.join("custos.toml"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
