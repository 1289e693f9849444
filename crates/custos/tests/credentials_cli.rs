//! `custos secrets / keys / token / inventory` through the binary: secret values never leave
//! the sealed store (not to stdout, stderr, the log or the database in the clear), signing keys
//! rotate with an overlap, minted tokens are recorded by jti only, and the inventory joins the
//! config with the log.

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::harness::{http, of_kind, Deployment, Served, POLICIES};
use serde_json::{json, Value};

/// A value no config, fingerprint or message could contain by chance.
const VALUE: &str = "ghp_Zq8sN4vW1xY7tK2mR9pL3bC6dF0hJ5gA";

/// `custos ARGS…` with `input` on stdin.
fn with_stdin(d: &Deployment, args: &[&str], input: &str) -> Output {
    let mut child = d.custos(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A refusal may come before stdin is read, and the pipe close under the write: what
    // matters is the command's answer.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refused command: exit code 2 and a message containing `needle`.
fn refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(out).contains(needle), "expected `{needle}` in: {}", stderr(out));
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn by<'a>(lines: &'a [Value], field: &str, value: &str) -> &'a Value {
    lines.iter().find(|l| l[field] == value).unwrap_or_else(|| panic!("no `{field}` = `{value}` in {lines:?}"))
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The fingerprint in `stored secret `NAME` (FINGERPRINT)`.
fn printed_fingerprint(out: &Output) -> String {
    let text = stdout(out);
    let fp = text.trim().rsplit_once(" (").unwrap().1.strip_suffix(')').unwrap().to_owned();
    assert!(fp.starts_with("hmac-sha256:"), "{text}");
    fp
}

#[test]
fn a_stored_secret_shows_its_fingerprint_and_never_its_value() {
    let d = Deployment::new(
        POLICIES,
        "[secrets.github]\nstore = true\n[secrets.from_env]\nenv = \"CUSTOS_TEST_NEVER_SET\"\n",
    );
    let mut outputs = Vec::new();

    let set = with_stdin(&d, &["secrets", "set", "github"], &format!("{VALUE}\n"));
    let fingerprint = printed_fingerprint(&set);
    assert_eq!(stdout(&set).trim(), format!("stored secret `github` ({fingerprint})"));
    outputs.push(set);

    let list = d.output(&["secrets", "list", "--json"]);
    let lines = json_lines(&list);
    let github = by(&lines, "name", "github");
    assert_eq!(
        (&github["source"], &github["available"], &github["fingerprint"], &github["declared"]),
        (&json!("store"), &json!(true), &json!(fingerprint), &json!(true))
    );
    let env = by(&lines, "name", "from_env");
    assert_eq!(
        (&env["source"], &env["available"], &env["fingerprint"]),
        (&json!("env:CUSTOS_TEST_NEVER_SET"), &json!(false), &Value::Null)
    );
    outputs.push(list);
    outputs.push(d.output(&["secrets", "list"]));

    // Replaced, the second time with a CRLF: one line ending is dropped, so the same value has
    // the same fingerprint; a different value has another.
    let other = with_stdin(&d, &["secrets", "set", "github"], "another-value-entirely");
    assert_ne!(printed_fingerprint(&other), fingerprint);
    outputs.push(other);
    let again = with_stdin(&d, &["secrets", "set", "github"], &format!("{VALUE}\r\n"));
    assert_eq!(printed_fingerprint(&again), fingerprint);
    outputs.push(again);

    let events = d.events();
    let sets = of_kind(&events, "secret.set");
    assert_eq!(sets.len(), 3);
    assert_eq!(sets[0]["detail"], json!({"name": "github", "fingerprint": fingerprint, "replaced": false}));
    assert_eq!(sets[2]["detail"]["replaced"], true);

    // Refusals name what was wrong.
    let undeclared = with_stdin(&d, &["secrets", "set", "nope"], VALUE);
    refused(&undeclared, "secret `nope` is not declared: add `[secrets.nope]` with `store = true`");
    let from_env = with_stdin(&d, &["secrets", "set", "from_env"], VALUE);
    refused(&from_env, "comes from `env:CUSTOS_TEST_NEVER_SET`");
    refused(&with_stdin(&d, &["secrets", "set", "github"], ""), "empty");
    refused(&with_stdin(&d, &["secrets", "set", "github"], "\n"), "empty");
    refused(&with_stdin(&d, &["secrets", "set", "github"], &"x".repeat(64 * 1024 + 1)), "larger than 65536 bytes");
    outputs.extend([undeclared, from_env]);

    let rm = d.output(&["secrets", "rm", "github"]);
    assert_eq!(stdout(&rm).trim(), "removed secret `github`");
    outputs.push(rm);
    refused(&d.output(&["secrets", "rm", "github"]), "secret `github` is not stored");
    let after = json_lines(&d.output(&["secrets", "list", "--json"]));
    assert_eq!(by(&after, "name", "github")["available"], false);

    let events = d.events();
    assert_eq!(of_kind(&events, "secret.removed").len(), 1, "the refused second rm records nothing");
    assert_eq!(of_kind(&events, "secret.removed")[0]["detail"]["name"], "github");
    for out in &outputs {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(VALUE), "the value was printed: {text}");
    }
    assert!(!serde_json::to_string(&events).unwrap().contains(VALUE), "the value is in the log");
    for entry in std::fs::read_dir(d.dir.path().join(".custos")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "the value is on disk in the clear");
    }
    d.verify_ok();
}

#[test]
fn the_master_key_is_private_and_where_the_config_says() {
    // Default: beside the database.
    let d = Deployment::new(POLICIES, "[secrets.github]\nstore = true\n");
    stdout(&with_stdin(&d, &["secrets", "set", "github"], VALUE));
    assert_eq!(mode(&d.dir.path().join(".custos/custos.key")), 0o600);

    // Elsewhere: that file is used, and no other is created. The same value read from the
    // environment, a file or the store has the same fingerprint under that key.
    let d = Deployment::new(
        POLICIES,
        "[credentials]\nkey_file = \"keys/master.key\"\n\
         [secrets.stored]\nstore = true\n\
         [secrets.from_env]\nenv = \"CUSTOS_TEST_FROM_ENV\"\n\
         [secrets.from_file]\nfile = \"secret.txt\"\n",
    );
    std::fs::write(d.dir.path().join("secret.txt"), format!("{VALUE}\n")).unwrap();
    let fingerprint = printed_fingerprint(&with_stdin(&d, &["secrets", "set", "stored"], VALUE));
    let key = d.dir.path().join("keys/master.key");
    assert_eq!(mode(&key), 0o600);
    assert!(!d.dir.path().join(".custos/custos.key").exists(), "a second key was created");
    let list = d.custos(&["secrets", "list", "--json"]).env("CUSTOS_TEST_FROM_ENV", VALUE).output().unwrap();
    let lines = json_lines(&list);
    for name in ["stored", "from_env", "from_file"] {
        let line = by(&lines, "name", name);
        assert_eq!((&line["available"], &line["fingerprint"]), (&json!(true), &json!(fingerprint)), "{name}");
    }
    assert!(!stdout(&list).contains(VALUE));

    // Another master key gives another fingerprint: they are keyed, not plain hashes.
    std::fs::remove_file(&key).unwrap();
    let rekeyed = printed_fingerprint(&with_stdin(&d, &["secrets", "set", "stored"], VALUE));
    assert_ne!(rekeyed, fingerprint);
}

/// Decodes unpadded base64url.
fn base64url(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("`{}` is not base64url", c as char),
        }
    };
    let (mut out, mut bits, mut acc) = (Vec::new(), 0, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The JSON of a token's header or claims.
fn jwt_part(token: &str, part: usize) -> Value {
    serde_json::from_slice(&base64url(token.split('.').nth(part).unwrap())).unwrap()
}

/// The published keys as the store holds them, as a JWKS document.
fn jwks_of(d: &Deployment) -> Value {
    let db = rusqlite::Connection::open_with_flags(d.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = db.prepare("SELECT public_jwk FROM signing_keys").unwrap();
    let keys: Vec<Value> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|k| serde_json::from_str(&k.unwrap()).unwrap())
        .collect();
    json!({ "keys": keys })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn rotation_changes_the_minting_key_and_keeps_the_old_one_published_for_the_overlap() {
    // The overlap is the longest token lifetime plus a minute: 120 s + 60 s.
    let d = Deployment::new(POLICIES, "[credentials]\ntoken_ttl_secs = 120\n");
    let audience = "https://gateway.example/mcp";
    let mint = |extra: &[&str]| -> Value {
        let mut args = vec!["token", "mint", "--agent", "reader", "--audience", audience, "--json"];
        args.extend_from_slice(extra);
        let out = d.output(&args);
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };

    // No key yet: minting makes the first one.
    let out = d.output(&["token", "mint", "--agent", "reader", "--audience", audience]);
    let first_token = stdout(&out).trim().to_owned();
    assert_eq!(first_token.split('.').count(), 3, "only the token on stdout: {first_token}");
    assert!(stderr(&out).contains("created signing key"), "{}", stderr(&out));
    let first = mint(&["--scope", "read  write", "--ttl", "90s", "--principal", "alice@example.com", "--run", "r1"]);
    assert_eq!((&first["audience"], &first["scope"]), (&json!(audience), &json!("read write")));
    let header = jwt_part(first["token"].as_str().unwrap(), 0);
    assert_eq!((&header["kid"], &header["alg"]), (&first["kid"], &json!("EdDSA")));
    let claims = jwt_part(first["token"].as_str().unwrap(), 1);
    assert_eq!((&claims["sub"], &claims["jti"], &claims["run"]), (&json!("reader"), &first["jti"], &json!("r1")));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 90);
    assert_eq!(claims["act"], json!({"sub": "alice@example.com"}));

    let rotated = d.output(&["keys", "rotate", "--algorithm", "ES256", "--activate-in", "0s"]);
    let text = stdout(&rotated);
    assert!(text.contains(&format!("retiring `{}`", first["kid"].as_str().unwrap())), "{text}");
    let second = mint(&[]);
    assert_ne!(second["kid"], first["kid"]);
    let header = jwt_part(second["token"].as_str().unwrap(), 0);
    assert_eq!((&header["kid"], &header["alg"]), (&second["kid"], &json!("ES256")));
    assert!(text.contains(&format!("created signing key `{}` (ES256)", second["kid"].as_str().unwrap())), "{text}");

    let keys = json_lines(&d.output(&["keys", "list", "--json"]));
    assert_eq!(keys.len(), 2);
    let (old, new) =
        (by(&keys, "kid", first["kid"].as_str().unwrap()), by(&keys, "kid", second["kid"].as_str().unwrap()));
    assert_eq!(
        (&old["state"], &new["state"], &new["algorithm"]),
        (&json!("retired"), &json!("active"), &json!("ES256"))
    );
    assert_eq!(old["retired_ms"], new["created_ms"]);
    assert_eq!(old["publish_until_ms"].as_i64().unwrap(), new["created_ms"].as_i64().unwrap() + 180_000);
    let table = stdout(&d.output(&["keys", "list"]));
    assert!(table.contains("retired (published until ") && table.contains("active"), "{table}");

    // Both tokens verify against the published keys: the old key is still in the set.
    let jwks = jwks_of(&d);
    for t in [&first, &second] {
        custos_secrets::verify(t["token"].as_str().unwrap(), &jwks, audience, "custos", now_secs(), 0).unwrap();
    }

    let events = d.events();
    assert_eq!(of_kind(&events, "signing_key.created").len(), 2);
    let minted = of_kind(&events, "token.minted");
    assert_eq!(minted.len(), 3);
    let recorded = minted.iter().find(|e| e["detail"]["jti"] == first["jti"]).unwrap();
    assert_eq!(recorded["agent"], "reader");
    assert_eq!(recorded["run"], "r1");
    let detail = &recorded["detail"];
    assert_eq!(
        (&detail["kid"], &detail["audience"], &detail["scope"], &detail["by"], &detail["principal"]),
        (&first["kid"], &json!(audience), &json!("read write"), &json!("cli"), &json!(["alice@example.com"]))
    );
    assert_eq!(detail["expires_at"], first["expires_at"]);
    let kid = first["kid"].as_str().unwrap();
    assert_eq!(detail["credentials"], json!([{"name": format!("signing_key:{kid}"), "fingerprint": kid}]));
    let log = serde_json::to_string(&events).unwrap();
    for token in [first_token.as_str(), first["token"].as_str().unwrap(), second["token"].as_str().unwrap()] {
        assert!(!log.contains(token), "a token is in the log");
        // Not even its signature, the part that makes it usable.
        assert!(!log.contains(token.rsplit('.').next().unwrap()));
    }

    // By default a new key is published a minute before it mints, so verifiers learn it first.
    stdout(&d.output(&["keys", "rotate"]));
    let keys = json_lines(&d.output(&["keys", "list", "--json"]));
    let states: Vec<&Value> = keys.iter().map(|k| &k["state"]).collect();
    assert_eq!(states, [&json!("retired"), &json!("active"), &json!("pending")]);
    assert!(keys[2]["created_ms"].as_i64().unwrap() >= keys[1]["retired_ms"].as_i64().unwrap());
    assert_eq!(mint(&[])["kid"], second["kid"], "the pending key does not mint yet");
    assert_eq!(jwks_of(&d)["keys"].as_array().unwrap().len(), 3, "but it is published");
    d.verify_ok();
}

#[test]
fn minting_is_refused_for_unknown_or_revoked_agents_and_overlong_lifetimes() {
    let d = Deployment::new(
        POLICIES,
        "[[servers]]\nname = \"api\"\nurl = \"https://api.example/mcp\"\n[servers.token]\naudience = \"api-audience\"\n\
         [[servers]]\nname = \"remote\"\nurl = \"https://remote.example/mcp\"\n",
    );
    refused(&d.output(&["token", "mint", "--agent", "ghost", "--audience", "x"]), "unknown agent `ghost`");
    assert!(!d.database().exists(), "a refused mint created a log");
    assert!(!d.dir.path().join(".custos/custos.key").exists(), "a refused mint created a key");
    refused(&d.output(&["token", "mint", "--agent", "reader", "--audience", "x", "--ttl", "2d"]), "out of range");
    refused(&d.output(&["token", "mint", "--agent", "reader", "--audience", "x", "--ttl", "later"]), "not a duration");
    refused(&d.output(&["token", "mint", "--agent", "reader", "--audience", "sample"]), "server `sample` has neither");

    // A server's name stands for its audience, else its url; the use counts against it.
    let api: Value = serde_json::from_str(&stdout(&d.output(&[
        "token",
        "mint",
        "--agent",
        "reader",
        "--audience",
        "api",
        "--json",
    ])))
    .unwrap();
    assert_eq!(api["audience"], "api-audience");
    let remote: Value = serde_json::from_str(&stdout(&d.output(&[
        "token",
        "mint",
        "--agent",
        "reader",
        "--audience",
        "remote",
        "--ttl",
        "120s",
        "--json",
    ])))
    .unwrap();
    assert_eq!(remote["audience"], "https://remote.example/mcp");
    let events = d.events();
    assert_eq!(of_kind(&events, "token.minted")[0]["detail"]["server"], "api");

    // A registered agent may have tokens until it is revoked.
    stdout(&d.output(&["agents", "add", "bot", "--owner", "ops@example.com", "--purpose", "ci"]));
    stdout(&d.output(&["token", "mint", "--agent", "bot", "--audience", "x"]));
    stdout(&d.output(&["agents", "revoke", "bot"]));
    refused(&d.output(&["token", "mint", "--agent", "bot", "--audience", "x"]), "agent `bot` is revoked");
    assert_eq!(of_kind(&d.events(), "token.minted").len(), 3, "refusals record nothing");
}

#[test]
fn a_token_is_revoked_once() {
    let d = Deployment::new(POLICIES, "");
    let minted: Value = serde_json::from_str(&stdout(&d.output(&[
        "token",
        "mint",
        "--agent",
        "operator",
        "--audience",
        "x",
        "--json",
    ])))
    .unwrap();
    let jti = minted["jti"].as_str().unwrap();
    let first = stdout(&d.output(&["token", "revoke", jti]));
    assert!(first.contains(&format!("revoked token `{jti}`")), "{first}");
    let second = stdout(&d.output(&["token", "revoke", jti]));
    assert!(second.contains(&format!("token `{jti}` was already revoked")), "{second}");
    refused(&d.output(&["token", "revoke", "not.a.jti"]), "`not.a.jti` is not a token id");
    refused(&d.output(&["token", "revoke", &"a".repeat(129)]), "is not a token id");
    // A jti is base64url, so one in 64 begins with `-`: it is a value, not an option.
    let dashed = stdout(&d.output(&["token", "revoke", "-Zq9_unminted"]));
    assert!(dashed.contains("revoked token `-Zq9_unminted`"), "{dashed}");

    let events = d.events();
    let revoked = of_kind(&events, "token.revoked");
    assert_eq!(revoked.len(), 2);
    assert_eq!((&revoked[0]["detail"]["jti"], &revoked[0]["agent"]), (&json!(jti), &json!("operator")));
    // Kept until the token's own expiry, which the minting event gave.
    let db = rusqlite::Connection::open_with_flags(d.database(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let expires: Option<i64> =
        db.query_row("SELECT expires_ms FROM revoked_tokens WHERE jti = ?1", [jti], |r| r.get(0)).unwrap();
    assert_eq!(expires, Some(minted["expires_at"].as_i64().unwrap() * 1000));
    d.verify_ok();
}

#[test]
fn the_inventory_lists_every_credential_with_its_upstreams_uses_and_warnings() {
    let d = Deployment::new(
        POLICIES,
        "[secrets.shared]\nstore = true\n\
         [secrets.unset]\nstore = true\nrotate_after_days = 1\n\
         [secrets.from_env]\nenv = \"CUSTOS_TEST_INVENTORY\"\n\
         [[servers]]\nname = \"one\"\ncommand = [\"true\"]\n\
         [[servers.inject]]\nsecret = \"shared\"\nenv = \"SHARED\"\n\
         [[servers.inject]]\nsecret = \"from_env\"\nenv = \"FROM_ENV\"\n\
         [[servers]]\nname = \"two\"\ncommand = [\"true\"]\n\
         [[servers.inject]]\nsecret = \"shared\"\nenv = \"SHARED\"\n",
    );
    let fingerprint = printed_fingerprint(&with_stdin(&d, &["secrets", "set", "shared"], VALUE));
    let minted: Value =
        serde_json::from_str(&stdout(&d.output(&["token", "mint", "--agent", "reader", "--audience", "x", "--json"])))
            .unwrap();
    let key = format!("signing_key:{}", minted["kid"].as_str().unwrap());

    let out = d
        .custos(&["inventory", "credentials", "--json", "--unused-days", "0"])
        .env("CUSTOS_TEST_INVENTORY", "an environment value")
        .output()
        .unwrap();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");

    let shared = by(&lines, "credential", "shared");
    assert_eq!(
        (&shared["source"], &shared["fingerprint"], &shared["kind"]),
        (&json!("store"), &json!(fingerprint), &json!("secret"))
    );
    assert_eq!(shared["upstreams"], json!(["one", "two"]));
    assert_eq!(shared["age_days"], 0);
    assert_eq!(shared["warnings"], json!(["never used", "shared by upstreams one, two"]));

    let unset = by(&lines, "credential", "unset");
    assert_eq!((&unset["available"], &unset["fingerprint"]), (&json!(false), &Value::Null));
    assert_eq!(unset["warnings"], json!(["not available", "never used"]));

    let env = by(&lines, "credential", "from_env");
    assert_eq!(
        (&env["source"], &env["available"], &env["upstreams"]),
        (&json!("env:CUSTOS_TEST_INVENTORY"), &json!(true), &json!(["one"]))
    );
    assert!(env["fingerprint"].as_str().unwrap().starts_with("hmac-sha256:"), "{env}");
    assert_eq!((&env["age_days"], &env["warnings"]), (&Value::Null, &json!(["never used"])));

    // The key was used once, by the mint, moments ago: not idle even at zero days.
    let signing = by(&lines, "credential", &key);
    assert_eq!(
        (&signing["kind"], &signing["state"], &signing["algorithm"]),
        (&json!("signing_key"), &json!("active"), &json!("EdDSA"))
    );
    assert_eq!(
        (&signing["agents"], &signing["uses"], &signing["warnings"]),
        (&json!(["reader"]), &json!(1), &json!([]))
    );
    assert!(signing["last_use_ms"].as_i64().is_some());

    // By default (30 days) only what is missing, shared, or of unknown age and unused is reported.
    let table = stdout(&d.output(&["inventory", "credentials"]));
    let header = table.lines().next().unwrap();
    for column in ["CREDENTIAL", "SOURCE", "FINGERPRINT", "AGE", "UPSTREAMS", "AGENTS", "LAST-USE", "WARNINGS"] {
        assert!(header.contains(column), "{header}");
    }
    let row = |name: &str| table.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap().to_owned();
    assert!(row("shared").ends_with("  shared by upstreams one, two"), "{table}");
    assert!(row("unset").ends_with("  not available; never used"), "{table}");
    assert!(row("from_env").ends_with("  never used"), "{table}");
    // Used by `reader`; the last use is the last column, as there is no warning after it.
    assert!(row(&key).contains(" reader ") && row(&key).ends_with('Z'), "{table}");
    assert!(!table.contains(VALUE));
}

#[test]
fn a_running_gateway_publishes_a_rotated_key_within_seconds() {
    let d = Deployment::serving_sample("");
    // A master key and a first signing key, so the gateway starts its broker and JWKS.
    stdout(&d.output(&["keys", "rotate"]));
    let first = json_lines(&d.output(&["keys", "list", "--json"]))[0]["kid"].as_str().unwrap().to_owned();
    let served = Served::start(&d);
    let jwks_url = format!("{}/.well-known/jwks.json", served.base);
    let kids = || -> Vec<String> {
        let (status, _, body) = http("GET", &jwks_url, &[], "");
        assert_eq!(status, 200, "{body}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        doc["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(kids(), std::slice::from_ref(&first));

    stdout(&d.output(&["keys", "rotate"]));
    let second = json_lines(&d.output(&["keys", "list", "--json"]))[1]["kid"].as_str().unwrap().to_owned();
    // Reloaded every 2 s; the bound leaves room for a slow machine.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = kids();
        if now.contains(&second) {
            assert!(now.contains(&first), "the retired key left the JWKS during its overlap: {now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the rotated key was not published: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(served);
}
