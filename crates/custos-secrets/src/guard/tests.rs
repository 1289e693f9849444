use serde_json::{json, Value};

use super::*;

const GITHUB: &str = "ghs-very-secret-value-1";
const DB: &str = "pa\"ss\nword-xyz";
const PIN: &str = "12345678901";
const AKIA: &str = "AKIAIOSFODNN7EXAMPLE";

fn fingerprinter() -> Fingerprinter {
    Fingerprinter::from_key(&[9; 32])
}

fn guard() -> LeakGuard {
    LeakGuard::new(
        vec![
            ("github".to_owned(), SecretValue::from(GITHUB)),
            ("db".to_owned(), SecretValue::from(DB)),
            ("pin".to_owned(), SecretValue::from(PIN)),
            ("short".to_owned(), SecretValue::from("abc")),
            (String::new(), SecretValue::from("")),
        ],
        fingerprinter(),
    )
}

fn scan(guard: &LeakGuard, raw: &str) -> Option<Cleaned> {
    guard.scan_message(raw.as_bytes())
}

fn parsed(cleaned: &Cleaned) -> Value {
    serde_json::from_slice(&cleaned.raw).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&cleaned.raw)))
}

fn secret_hit(name: &str, value: &str, path: &str) -> Hit {
    Hit {
        rule: "secret".into(),
        secret: Some(name.into()),
        fingerprint: fingerprinter().fingerprint(value.as_bytes()),
        path: path.into(),
        encoding: Some("plain"),
    }
}

fn shape_hit(rule: &str, matched: &str, path: &str) -> Hit {
    Hit {
        rule: rule.into(),
        secret: None,
        fingerprint: fingerprinter().fingerprint(matched.as_bytes()),
        path: path.into(),
        encoding: None,
    }
}

#[test]
fn a_held_secret_in_a_result_is_redacted() {
    let raw = format!(
        r#"{{"jsonrpc":"2.0","id":42,"result":{{"content":[{{"type":"text","text":"token is {GITHUB} ok"}}]}}}}"#
    );
    let cleaned = scan(&guard(), &raw).unwrap();
    let msg = parsed(&cleaned);
    assert_eq!(msg["id"], 42);
    assert_eq!(msg["jsonrpc"], "2.0");
    assert_eq!(msg["result"]["content"][0]["text"], "token is [REDACTED:secret] ok");
    assert_eq!(cleaned.hits, vec![secret_hit("github", GITHUB, "/result/content/0/text")]);
    assert_eq!(cleaned.hits[0].fingerprint, fingerprinter().fingerprint(GITHUB.as_bytes()));
    assert_eq!(cleaned.more, 0);
    assert!(!String::from_utf8_lossy(&cleaned.raw).contains(GITHUB));
}

#[test]
fn everything_but_the_redacted_string_is_kept_byte_for_byte() {
    let raw = format!(
        "{{ \"zeta\": 98765432109876543210987654321, \"alpha\" : [1.0e5, -0.5, true, null],\n  \"id\":\"x\",\"t\":\"{GITHUB}\" }}"
    );
    let cleaned = scan(&guard(), &raw).unwrap();
    let expected = raw.replace(GITHUB, "[REDACTED:secret]");
    assert_eq!(String::from_utf8(cleaned.raw).unwrap(), expected);
    assert_eq!(cleaned.hits[0].path, "/t");
}

#[test]
fn a_secret_written_with_escapes_is_found() {
    let g = guard();
    let escaped = r#"{"id":1,"result":{"text":"\u0067hs-very-secret-value-1 and \u0041KIAIOSFODNN7EXAMPLE"}}"#;
    let cleaned = scan(&g, escaped).unwrap();
    assert_eq!(parsed(&cleaned)["result"]["text"], "[REDACTED:secret] and [REDACTED:aws_access_key_id]");
    assert_eq!(
        cleaned.hits,
        vec![secret_hit("github", GITHUB, "/result/text"), shape_hit("aws_access_key_id", AKIA, "/result/text")]
    );

    // Every character escaped, and `/` escaped as JSON allows.
    let all: String = GITHUB.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let cleaned = scan(&g, &format!(r#"{{"t":"{all}","u":"a\/b"}}"#)).unwrap();
    assert_eq!(parsed(&cleaned)["t"], "[REDACTED:secret]");
    assert_eq!(parsed(&cleaned)["u"], "a/b");

    // A lone surrogate before it does not stop the decoding.
    let cleaned = scan(&g, r#"{"t":"\ud800\u0041KIAIOSFODNN7EXAMPLE"}"#).unwrap();
    assert_eq!(parsed(&cleaned)["t"], "\u{fffd}[REDACTED:aws_access_key_id]");
}

#[test]
fn a_secret_with_a_quote_and_a_newline_is_found() {
    let raw =
        serde_json::to_string(&json!({ "id": 3, "error": { "message": format!("login failed: {DB}!") } })).unwrap();
    assert!(raw.contains(r#"pa\"ss\nword"#), "{raw}");
    let cleaned = scan(&guard(), &raw).unwrap();
    assert_eq!(parsed(&cleaned)["error"]["message"], "login failed: [REDACTED:secret]!");
    assert_eq!(cleaned.hits, vec![secret_hit("db", DB, "/error/message")]);
}

#[test]
fn a_non_ascii_secret_is_found_raw_and_escaped() {
    let g = LeakGuard::new(vec![("de".into(), SecretValue::from("pässwört-geheim"))], fingerprinter());
    let cleaned = scan(&g, r#"{"t":"x pässwört-geheim"}"#).unwrap();
    assert_eq!(parsed(&cleaned)["t"], "x [REDACTED:secret]");
    let cleaned = scan(&g, r#"{"t":"x p\u00e4ssw\u00F6rt-geheim"}"#).unwrap();
    assert_eq!(parsed(&cleaned)["t"], "x [REDACTED:secret]");
}

#[test]
fn nothing_found_means_none() {
    let g = guard();
    for raw in [
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"all clear"}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"text":"line one\nline \"two\" \u00e9"}}"#,
        r#"{"id":1,"result":{"n":1234567890}}"#,
        "",
        "not json at all \\ with a backslash",
        r#"{"t":"abc abc short values are not matched"}"#,
    ] {
        assert_eq!(scan(&g, raw), None, "{raw}");
    }
}

#[test]
fn a_raw_match_across_strings_is_not_a_hit() {
    // The value is in the raw bytes, but in no single string: nothing to redact.
    let g = LeakGuard::new(vec![("q".into(), SecretValue::from(r#"a","b12345"#))], fingerprinter());
    assert_eq!(scan(&g, r#"["a","b12345"]"#), None);
    let cleaned = scan(&g, r#"["a\",\"b12345"]"#).unwrap();
    assert_eq!(parsed(&cleaned), json!(["[REDACTED:secret]"]));
}

#[test]
fn short_secrets_are_listed_and_not_matched() {
    let g = guard();
    assert_eq!(g.too_short(), ["", "short"]);
    assert_eq!(g.redact_text("abc and abcdefg"), None);
    assert_eq!(MIN_SECRET_LEN, 8);
    let eight = LeakGuard::new(vec![("e".into(), SecretValue::from("12345678"))], fingerprinter());
    assert!(eight.too_short().is_empty());
    assert_eq!(eight.redact_text("x12345678x").unwrap().0, "x[REDACTED:secret]x");
}

#[test]
fn object_keys_are_scanned_and_paths_never_carry_a_secret() {
    let raw = format!(r#"{{"id":5,"result":{{"{GITHUB}":{{"{AKIA}":"v","a/b":{{"c~d":"{AKIA}"}}}}}}}}"#);
    let cleaned = scan(&guard(), &raw).unwrap();
    let msg = parsed(&cleaned);
    assert_eq!(msg["id"], 5);
    assert_eq!(msg["result"]["[REDACTED:secret]"]["[REDACTED:aws_access_key_id]"], "v");
    assert_eq!(msg["result"]["[REDACTED:secret]"]["a/b"]["c~d"], "[REDACTED:aws_access_key_id]");
    assert_eq!(
        cleaned.hits,
        vec![
            secret_hit("github", GITHUB, "/result"),
            shape_hit("aws_access_key_id", AKIA, "/result/[REDACTED:secret]"),
            shape_hit("aws_access_key_id", AKIA, "/result/[REDACTED:secret]/a~1b/c~0d"),
        ]
    );
}

#[test]
fn a_secret_sent_as_a_number_is_redacted() {
    let cleaned = scan(&guard(), &format!(r#"{{"id":12,"result":{{"pin":{PIN},"n":[7,{PIN}]}}}}"#)).unwrap();
    let msg = parsed(&cleaned);
    assert_eq!(msg["id"], 12);
    assert_eq!(msg["result"], json!({ "pin": "[REDACTED:secret]", "n": [7, "[REDACTED:secret]"] }));
    assert_eq!(cleaned.hits, vec![secret_hit("pin", PIN, "/result/pin"), secret_hit("pin", PIN, "/result/n/1")]);
}

#[test]
fn deep_nesting_does_not_crash() {
    let g = guard();
    for value in [format!("\"{GITHUB}\""), r#""\u0067hs-very-secret-value-1""#.to_owned()] {
        let raw = format!("{}{}{}", "[".repeat(2000), value, "]".repeat(2000));
        let cleaned = g.scan_message(raw.as_bytes()).unwrap();
        let out = String::from_utf8(cleaned.raw).unwrap();
        assert_eq!(out, format!("{}\"[REDACTED:secret]\"{}", "[".repeat(2000), "]".repeat(2000)));
        // Beyond MAX_PATH_DEPTH the path names the deepest tracked ancestor.
        assert_eq!(cleaned.hits[0].path, "/0".repeat(MAX_PATH_DEPTH));
    }
    let raw = format!("{}\"{AKIA}\"{}", "{\"a\":".repeat(2000), "}".repeat(2000));
    let cleaned = g.scan_message(raw.as_bytes()).unwrap();
    assert!(String::from_utf8(cleaned.raw).unwrap().contains("\"[REDACTED:aws_access_key_id]\"}"));
    // Hostile: only openers, no strings.
    assert_eq!(g.scan_message("[".repeat(4 << 20).as_bytes()), None);
    let unbalanced = format!("{}\"{AKIA}\"", "[".repeat(4 << 20));
    let cleaned = g.scan_message(unbalanced.as_bytes()).unwrap();
    assert!(cleaned.raw.ends_with(b"[REDACTED:aws_access_key_id]\""));
}

#[test]
fn huge_strings_are_handled() {
    let g = guard();
    let filler = "x".repeat(4 << 20);
    let raw = format!(r#"{{"id":1,"result":{{"text":"{filler} {GITHUB} {AKIA}"}}}}"#);
    let cleaned = g.scan_message(raw.as_bytes()).unwrap();
    assert_eq!(cleaned.hits.len(), 2);
    assert!(parsed(&cleaned)["result"]["text"]
        .as_str()
        .unwrap()
        .ends_with(" [REDACTED:secret] [REDACTED:aws_access_key_id]"));

    // Escapes all the way through, nothing to find.
    let escaped = format!(r#"{{"id":1,"result":{{"text":"{}"}}}}"#, "a\\n".repeat(1 << 20));
    assert_eq!(g.scan_message(escaped.as_bytes()), None);

    // One secret repeated through 4 MiB: every copy redacted, hits capped.
    let repeated = format!(r#"{{"t":"{}"}}"#, format!("{GITHUB} ").repeat((4 << 20) / (GITHUB.len() + 1)));
    let cleaned = g.scan_message(repeated.as_bytes()).unwrap();
    assert_eq!(cleaned.hits.len(), MAX_HITS);
    assert_eq!(cleaned.hits.len() + cleaned.more, (4 << 20) / (GITHUB.len() + 1));
    assert!(!String::from_utf8_lossy(&cleaned.raw).contains(GITHUB));
}

#[test]
fn hits_are_capped_per_message() {
    let g = guard();
    let items: Vec<String> = (0..40).map(|i| format!("\"{i}: {GITHUB}\"")).collect();
    let raw = format!(r#"{{"id":1,"result":[{}]}}"#, items.join(","));
    let cleaned = g.scan_message(raw.as_bytes()).unwrap();
    assert_eq!((cleaned.hits.len(), cleaned.more), (32, 8));
    assert_eq!(cleaned.hits[31].path, "/result/31");
    let msg = parsed(&cleaned);
    assert_eq!(msg["result"][39], "39: [REDACTED:secret]");

    let (text, hits) = g.redact_text(&format!("{GITHUB} ").repeat(40)).unwrap();
    assert_eq!(hits.len(), MAX_HITS);
    assert_eq!(text, "[REDACTED:secret] ".repeat(40));
}

#[test]
fn text_that_is_not_json_is_redacted_as_bytes() {
    let g = guard();
    let mut raw = format!("not json: {AKIA} and {GITHUB}").into_bytes();
    raw.push(0xff);
    let cleaned = g.scan_message(&raw).unwrap();
    assert_eq!(
        String::from_utf8(cleaned.raw).unwrap(),
        "not json: [REDACTED:aws_access_key_id] and [REDACTED:secret]\u{fffd}"
    );
    assert_eq!(cleaned.hits, vec![shape_hit("aws_access_key_id", AKIA, ""), secret_hit("github", GITHUB, "")]);

    // A truncated message: the strings seen so far do not count; the bytes are redacted.
    let cleaned = g.scan_message(format!(r#"{{"id":1,"result":{{"t":"{AKIA}""#).as_bytes()).unwrap();
    assert_eq!(String::from_utf8(cleaned.raw).unwrap(), r#"{"id":1,"result":{"t":"[REDACTED:aws_access_key_id]""#);
}

#[test]
fn invalid_utf8_in_a_string_is_handled() {
    let mut raw = br#"{"id":1,"t":""#.to_vec();
    raw.extend_from_slice(b"\xff\xfe ");
    raw.extend_from_slice(GITHUB.as_bytes());
    raw.extend_from_slice(b"\",\"u\":\"\xc3\"}");
    let cleaned = guard().scan_message(&raw).unwrap();
    // The string with the hit is re-encoded as a lenient reader decodes it; the other one is
    // left as it came.
    let mut expected = "{\"id\":1,\"t\":\"\u{fffd}\u{fffd} [REDACTED:secret]\",\"u\":\"".as_bytes().to_vec();
    expected.extend_from_slice(b"\xc3\"}");
    assert_eq!(cleaned.raw, expected);
    assert_eq!(cleaned.hits, vec![secret_hit("github", GITHUB, "/t")]);
}

#[test]
fn redacted_strings_are_re_encoded_validly() {
    let raw = format!(r#"{{"t":"a\u0001b\t\"q\" \\ {GITHUB} \ud83d\ude00"}}"#);
    let cleaned = scan(&guard(), &raw).unwrap();
    assert_eq!(parsed(&cleaned)["t"], "a\u{1}b\t\"q\" \\ [REDACTED:secret] 😀");
}

#[test]
fn redact_text_reports_plain_paths() {
    let g = guard();
    let (clean, hits) = g.redact_text(&format!("error: GITHUB_TOKEN={GITHUB} rejected\n")).unwrap();
    assert_eq!(clean, "error: GITHUB_TOKEN=[REDACTED:secret] rejected\n");
    assert_eq!(hits, vec![secret_hit("github", GITHUB, "")]);
    assert_eq!(g.redact_text("nothing here\n"), None);
}

#[test]
fn held_secrets_take_precedence_over_shapes() {
    let g = LeakGuard::new(vec![("aws".into(), SecretValue::from(AKIA))], fingerprinter());
    let (clean, hits) = g.redact_text(&format!("id {AKIA}.")).unwrap();
    assert_eq!(clean, "id [REDACTED:secret].");
    assert_eq!(hits, vec![secret_hit("aws", AKIA, "")]);

    // A held secret inside a longer shape: one redaction, named for the secret.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-ghs-very-secret-value-1";
    let (clean, hits) = guard().redact_text(&format!("t={jwt} end")).unwrap();
    assert_eq!(clean, "t=[REDACTED:secret] end");
    assert_eq!(hits, vec![secret_hit("github", GITHUB, "")]);
}

#[test]
fn overlapping_secrets_are_redacted_whole() {
    let g = LeakGuard::new(
        vec![("a".into(), SecretValue::from("abcdefgh12")), ("b".into(), SecretValue::from("gh12345678"))],
        fingerprinter(),
    );
    let (clean, hits) = g.redact_text("<abcdefgh12345678>").unwrap();
    assert_eq!(clean, "<[REDACTED:secret]>");
    assert_eq!(hits.len(), 1);

    // Overlapping copies of one value.
    let g = LeakGuard::new(vec![("a".into(), SecretValue::from("aaaaaaaa"))], fingerprinter());
    assert_eq!(g.redact_text("baaaaaaaaaab").unwrap().0, "b[REDACTED:secret]b");

    // Two names for one value: one entry, the first name.
    let g = LeakGuard::new(
        vec![("z".into(), SecretValue::from("same-value-1")), ("y".into(), SecretValue::from("same-value-1"))],
        fingerprinter(),
    );
    assert_eq!(g.redact_text("same-value-1").unwrap().1, vec![secret_hit("y", "same-value-1", "")]);
}

/// (rule, text, what of it is the credential) for each shape, and texts that must not match.
fn shape_cases() -> Vec<(&'static str, String, String)> {
    let gh36 = "A".repeat(18) + &"b1".repeat(9);
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_part-1";
    vec![
        ("aws_access_key_id", format!("key={AKIA}."), AKIA.to_owned()),
        ("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A".to_owned(), "ASIAY34FZKBOKMUTVV7A".to_owned()),
        ("github_token", format!("token ghp_{gh36}"), format!("ghp_{gh36}")),
        ("github_token", format!("gho_{gh36}xyz,"), format!("gho_{gh36}xyz")),
        (
            "github_token",
            "github_pat_11ABCDEFG0123456789_abcdefgh".into(),
            "github_pat_11ABCDEFG0123456789_abcdefgh".into(),
        ),
        ("slack_token", "xoxb-1234567890-abcdef ok".into(), "xoxb-1234567890-abcdef".into()),
        ("private_key", format!("before {pem} after"), pem.to_owned()),
        ("private_key", "x -----BEGIN PRIVATE KEY-----\nMIIEv".into(), "-----BEGIN PRIVATE KEY-----\nMIIEv".into()),
        ("jwt", format!("id_token: {jwt}"), jwt.to_owned()),
        ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(), "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into()),
        ("stripe_key", "rk_live_4eC39HqLyjWDarjtT1zdp7dc".into(), "rk_live_4eC39HqLyjWDarjtT1zdp7dc".into()),
        (
            "google_api_key",
            "k=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe".into(),
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe".into(),
        ),
        ("openai_key", format!("OPENAI_API_KEY=sk-{}", "Ab1".repeat(16)), format!("sk-{}", "Ab1".repeat(16))),
        ("openai_key", "sk-proj-abc_DEF-123456789012345".into(), "sk-proj-abc_DEF-123456789012345".into()),
    ]
}

#[test]
fn each_shape_is_found() {
    let g = LeakGuard::new(Vec::new(), fingerprinter());
    for (rule, text, credential) in shape_cases() {
        let (clean, hits) = g.redact_text(&text).unwrap_or_else(|| panic!("{rule}: nothing found in {text:?}"));
        assert_eq!(hits, vec![shape_hit(rule, &credential, "")], "{text:?}");
        assert_eq!(clean, text.replace(&credential, &format!("[REDACTED:{rule}]")), "{text:?}");
        // And inside a message, escaped as JSON needs.
        let raw = serde_json::to_string(&json!({ "id": 1, "result": { "text": text } })).unwrap();
        let cleaned = g.scan_message(raw.as_bytes()).unwrap();
        assert_eq!(parsed(&cleaned)["result"]["text"], clean.as_str());
        assert_eq!(cleaned.hits, vec![shape_hit(rule, &credential, "/result/text")]);
    }
}

#[test]
fn bearer_tokens_keep_the_prefix() {
    let g = LeakGuard::new(Vec::new(), fingerprinter());
    let (clean, hits) = g.redact_text("Authorization: Bearer abcdefghijklmnop1234").unwrap();
    assert_eq!(clean, "Authorization: Bearer [REDACTED:bearer_token]");
    assert_eq!(hits, vec![shape_hit("bearer_token", "abcdefghijklmnop1234", "")]);
    let (clean, _) = g.redact_text("authorization: bearer   abc.def~ghi+jkl/mno= next").unwrap();
    assert_eq!(clean, "authorization: bearer   [REDACTED:bearer_token] next");
    // A JWT as a bearer token is one redaction, named for the more specific shape.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_part-1";
    let (clean, hits) = g.redact_text(&format!("Bearer {jwt}")).unwrap();
    assert_eq!(clean, "Bearer [REDACTED:jwt]");
    assert_eq!(hits, vec![shape_hit("jwt", jwt, "")]);
}

#[test]
fn near_misses_are_not_shapes() {
    let g = LeakGuard::new(Vec::new(), fingerprinter());
    for text in [
        "MALAKIAIOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPL",
        "AKIAiosfodnn7example",
        "AKIAIOSFODNN7EXAMPLEXX",
        "ghp_short123",
        &format!("ghx_{}", "a".repeat(36)),
        "github_pat_short",
        "xoxz-1234567890-abcdef",
        "xoxb-123",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIB",
        "eyJhbGci.notajwt",
        "eyJhb.eyJzd.x",
        "the bearer of bad news",
        "Bearer short-token",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_short",
        "AIzaSyDaGmWKa4",
        "sk-short",
        "disk-encryption-settings-for-production",
        "task-runner-configuration-for-staging",
        "plain text with nothing in it",
    ] {
        assert_eq!(g.redact_text(text), None, "{text:?}");
    }
}

#[test]
fn stripe_keys_are_not_also_openai_keys() {
    let g = LeakGuard::new(Vec::new(), fingerprinter());
    let (_, hits) = g.redact_text("sk_live_4eC39HqLyjWDarjtT1zdp7dc-and-more-stuff-here").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule, "stripe_key");
}

#[test]
fn debug_names_secrets_but_shows_no_value() {
    let debug = format!("{:?}", guard());
    assert!(debug.contains("github") && !debug.contains(GITHUB), "{debug}");
}

#[test]
fn a_flood_of_small_strings_is_cheap() {
    let g = guard();
    let mut raw = String::from("[");
    for i in 0..200_000 {
        raw.push_str(if i % 2 == 0 { r#""","# } else { r#""ab\ncdefgh","# });
    }
    raw.push_str(&format!("\"{AKIA}\"]"));
    let started = std::time::Instant::now();
    let cleaned = g.scan_message(raw.as_bytes()).unwrap();
    assert_eq!(cleaned.hits, vec![shape_hit("aws_access_key_id", AKIA, "/200000")]);
    // Generous: a debug build, on a shared machine. Quadratic behaviour would take minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn the_guard_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<LeakGuard>();
    shared::<Fingerprinter>();
    shared::<crate::MasterKey>();
    shared::<crate::SigningKey>();
}
