//! `custos console login-link` and the console served on the admin listener: the link the
//! command prints signs in once through a running `custos serve`; the command refuses
//! deployments without a console or with sign-in links off.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::harness::{header, http, of_kind, Deployment, Served, POLICIES};

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n";

#[test]
fn a_printed_link_signs_in_once_on_the_console_of_the_admin_listener() {
    let d = Deployment::serving_sample(&format!("{ADMIN}[console]\n"));
    std::fs::write(d.dir.path().join("admin.token"), "admin-token-for-tests-0123456789\n").unwrap();
    let served = Served::start(&d);
    let admin = served.admin.clone().unwrap();

    let out = d.output(&["console", "login-link", "--as", "carol@example.com", "--url", &admin]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(link.starts_with(&format!("{admin}/console/login?token=")), "{link}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("member of no [approvals.groups]"), "{stderr}");

    let (status, _, page) = http("GET", &link, &[], "");
    assert_eq!(status, 200, "{page}");
    let token = link.split("token=").nth(1).unwrap();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, headers, _) = http("POST", &format!("{admin}/console/login"), &form, &format!("token={token}"));
    assert_eq!(status, 303);
    let cookie = header(&headers, "set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert!(!header(&headers, "set-cookie").unwrap().contains("Secure"), "plain http: no Secure");
    let (status, _, page) = http("GET", &format!("{admin}/console/approvals"), &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("carol@example.com"), "the header names who is signed in: {page}");
    // The admin API beside it is unchanged.
    assert_eq!(http("GET", &format!("{admin}/v1/approvals"), &[], "").0, 401);
    assert_eq!(http("GET", &format!("{admin}/healthz"), &[], "").0, 200);
    let (status, _, page) = http("GET", &format!("{admin}/console/no-such-page"), &[], "");
    assert_eq!(status, 404, "{page}");

    // Signing out ends the session; the cookie no longer works.
    let (_, _, page) = http("GET", &format!("{admin}/console/approvals"), &[("Cookie", &cookie)], "");
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..].split('"').next().unwrap();
    let (status, headers, _) =
        http("POST", &format!("{admin}/console/sign-out"), &[("Cookie", &cookie), form[0]], &format!("csrf={csrf}"));
    assert_eq!((status, header(&headers, "location")), (303, Some("/console/sign-in?ended=signed_out")));
    let (status, headers, _) = http("GET", &format!("{admin}/console/approvals"), &[("Cookie", &cookie)], "");
    assert_eq!((status, header(&headers, "location")), (303, Some("/console/sign-in?ended=unknown_session")));
    drop(served);

    let events = d.events();
    assert_eq!(of_kind(&events, "console.link_issued").len(), 1);
    assert!(!serde_json::to_string(&events).unwrap().contains(token), "the token is never recorded");
    let signed_in = of_kind(&events, "console.signed_in");
    assert_eq!(signed_in[0]["detail"]["identity"]["method"], "login-link");
    assert_eq!(of_kind(&events, "console.signed_out")[0]["detail"]["why"], "signed_out");
    d.verify_ok();
}

#[test]
fn login_links_need_a_console_with_local_sign_in() {
    let d = Deployment::new(POLICIES, "");
    let out = d.output(&["console", "login-link", "--as", "carol@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [console] section"));

    let oidc =
        "[console]\nlisten = \"127.0.0.1:0\"\n[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n";
    let d = Deployment::new(POLICIES, oidc);
    let out = d.output(&["console", "login-link", "--as", "carol@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sign-in links are off"));

    let d = Deployment::new(POLICIES, "[console]\nlisten = \"127.0.0.1:0\"\n");
    let out = d.output(&["console", "login-link", "--as", "bad\u{7}name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an approver identity"));
}

/// `[console.tls]`: the console on its own listener over TLS; its session cookie is `Secure`
/// with the `__Host-` prefix (driven with curl, trusting the test CA).
#[test]
fn over_tls_the_console_cookie_is_secure_and_host_prefixed() {
    use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let d = Deployment::serving_sample(
        "[console]\nlisten = \"127.0.0.1:0\"\n[console.tls]\ncert_file = \"tls/console.pem\"\nkey_file = \"tls/console.key\"\n",
    );
    let tls = d.dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "console test ca");
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(tls.join("ca.pem"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    std::fs::write(tls.join("console.pem"), leaf.signed_by(&key, &ca).unwrap().pem()).unwrap();
    std::fs::write(tls.join("console.key"), key.serialize_pem()).unwrap();

    let mut child = d
        .custos(&["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("custos serve ended").unwrap();
        if let Some(url) = line.strip_prefix("console on ") {
            break url.trim_end_matches("/console/").to_owned();
        }
    };
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let out = d.output(&["console", "login-link", "--as", "carol@example.com", "--url", &base]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let token = link.split("token=").nth(1).unwrap();
    let curl = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(tls.join("ca.pem"))
        .args(["-d", &format!("token={token}"), &format!("{base}/console/login")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&curl.stdout).to_ascii_lowercase();
    let cookie = head.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_else(|| panic!("{head}"));
    assert!(cookie.contains("__host-custos_console=") && cookie.contains("; secure"), "{cookie}");
    assert!(cookie.contains("httponly") && cookie.contains("samesite=strict") && cookie.contains("path=/"), "{cookie}");
    let _ = child.kill();
    let _ = child.wait();
}
