//! The leak guard on held secrets an upstream hands back encoded: each form and alignment, a
//! property over random secrets and surroundings, and ordinary messages left alone.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "sk-live-4f9a2b7c1d";

fn guard_of(secrets: &[(&str, &str)]) -> LeakGuard {
    let held = secrets.iter().map(|(n, v)| ((*n).to_owned(), SecretValue::from(*v))).collect();
    LeakGuard::new(held, Fingerprinter::from_key(&[7; 32]))
}

/// A result message whose text is `text`.
fn result(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}}).to_string()
}

/// The text of the cleaned result and its hits, or `None` when nothing was found.
fn cleaned_text(guard: &LeakGuard, raw: &str) -> Option<(String, Vec<Hit>)> {
    let cleaned = guard.scan_message(raw.as_bytes())?;
    let msg: Value = serde_json::from_slice(&cleaned.raw).expect("a cleaned message is still json");
    Some((msg["result"]["content"][0]["text"].as_str().unwrap().to_owned(), cleaned.hits))
}

fn percent_all(bytes: &[u8], upper: bool) -> String {
    bytes.iter().map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }).collect()
}

#[test]
fn each_encoded_form_is_redacted_and_named() {
    let guard = guard_of(&[("stripe", SECRET)]);
    let b = SECRET.as_bytes();
    let basic = STANDARD.encode(format!("admin:{SECRET}"));
    let cases: Vec<(String, &str)> = vec![
        (STANDARD.encode(b), "base64"),
        (STANDARD_NO_PAD.encode(b), "base64"),
        (URL_SAFE.encode(format!("??>{SECRET}")), "base64url"),
        (URL_SAFE_NO_PAD.encode(format!("x{SECRET}yz")), "base64url"),
        (format!("Authorization: Basic {basic}"), "base64"),
        (STANDARD.encode(format!("ab{SECRET}")), "base64"),
        (hex::encode(b), "hex"),
        (hex::encode_upper(b), "hex"),
        (format!("0x{}ff", hex::encode(b)), "hex"),
        (percent_all(b, false), "percent"),
        (percent_all(b, true), "percent"),
        ("https://api.example/cb?key=sk%2Dlive%2d4f9a2b7c1d&x=1".to_owned(), "percent"),
        (SECRET.chars().map(|c| format!("\\u{:04x}", u32::from(c))).collect(), "escaped"),
        (r#"{"key": "sk\u002dlive\x2d4f9a2b7c1d"}"#.to_owned(), "escaped"),
    ];
    for (text, encoding) in cases {
        let (clean, hits) = cleaned_text(&guard, &result(&format!("before {text} after")))
            .unwrap_or_else(|| panic!("`{text}` ({encoding}) was not found"));
        assert!(clean.contains("[REDACTED:secret]"), "{text}: {clean}");
        assert!(!clean.contains(&text), "{text}: {clean}");
        assert!(clean.starts_with("before ") && clean.ends_with(" after"), "only the secret goes: {clean}");
        assert_eq!(hits.len(), 1, "{text}: {hits:?}");
        // A base64url blob whose secret part has no `-` or `_` reads the same in either alphabet.
        let named = hits[0].encoding.unwrap();
        let same = named == encoding || (encoding == "base64url" && named == "base64");
        assert!(hits[0].secret.as_deref() == Some("stripe") && same, "{text}: {hits:?}");
        assert_eq!(
            hits[0].fingerprint,
            Fingerprinter::from_key(&[7; 32]).fingerprint(b),
            "the value's, not the form's"
        );
    }
    // A whole base64 run goes, so no bit of the secret stays beside it.
    let (clean, _) = cleaned_text(&guard, &result(&format!("Basic {basic}"))).unwrap();
    assert_eq!(clean, "Basic [REDACTED:secret]");
}

#[test]
fn every_channel_of_a_message_is_covered() {
    let guard = guard_of(&[("stripe", SECRET)]);
    let b64 = STANDARD.encode(SECRET);
    for raw in [
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": format!("bad key {b64}")}}),
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": {"k": hex::encode(SECRET)}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1, "message": percent_all(SECRET.as_bytes(), false)}}),
        json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"messages": [{"role": "user", "content": {"type": "text", "text": b64}}]}}),
    ] {
        let text = raw.to_string();
        let cleaned = guard.scan_message(text.as_bytes()).unwrap_or_else(|| panic!("missed in {text}"));
        let out = String::from_utf8(cleaned.raw).unwrap();
        assert!(out.contains("[REDACTED:secret]") && serde_json::from_str::<Value>(&out).is_ok(), "{out}");
    }
    let (clean, hits) = guard.redact_text(&format!("stderr: token={}", hex::encode_upper(SECRET))).unwrap();
    assert_eq!((clean.as_str(), hits[0].encoding), ("stderr: token=[REDACTED:secret]", Some("hex")));
}

#[test]
fn ordinary_messages_are_left_alone() {
    // Secrets that look like words and like data, many of them.
    let mut held: Vec<(String, String)> = vec![
        ("word".into(), "password123".into()),
        ("digits".into(), "4111111111111111".into()),
        ("hexish".into(), "deadbeefcafe0042".into()),
    ];
    held.extend((0..1000).map(|i| (format!("s{i}"), format!("k{i:04}-{:016x}", u64::MAX / 1000 * i))));
    let refs: Vec<(&str, &str)> = held.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let guard = guard_of(&refs);
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/detection/");
    let mut scanned = 0;
    for file in ["outputs.json", "descriptors.json"] {
        let items: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(format!("{corpus}{file}")).unwrap()).unwrap();
        for item in items.iter().filter(|i| i["family"] == "benign") {
            let body = item.get("result").or_else(|| item.get("descriptor")).unwrap();
            let raw = json!({"jsonrpc": "2.0", "id": 3, "result": body}).to_string();
            if let Some(cleaned) = guard.scan_message(raw.as_bytes()) {
                let secrets: Vec<&Hit> = cleaned.hits.iter().filter(|h| h.secret.is_some()).collect();
                assert!(secrets.is_empty(), "{}: {secrets:?}", item["id"]);
            }
            scanned += 1;
        }
    }
    assert!(scanned > 40, "{scanned}");
    // Percent signs and backslashes in ordinary text.
    for text in ["100% sure, 50%off, %zz", "C:\\Users\\x\\new\\table", "\\u00e9t\\u00e9 %E2%82%AC", "aGVsbG8gd29ybGQ="]
    {
        assert!(cleaned_text(&guard, &result(text)).is_none(), "{text}");
    }
}

/// A secret of 8 to 48 bytes, ASCII or not.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["[!-~]{8,48}", "\\PC{8,24}"].prop_filter("8 bytes at least", |s| s.len() >= 8)
}

/// `secret` written as the `form`-th encoding, between `before` and `after` (raw bytes around it
/// for base64, where alignment matters; text around it otherwise).
fn encode(secret: &str, form: u8, before: &[u8], after: &[u8], flips: &[bool]) -> String {
    let blob = [before, secret.as_bytes(), after].concat();
    match form {
        0 => STANDARD.encode(&blob),
        1 => STANDARD_NO_PAD.encode(&blob),
        2 => URL_SAFE.encode(&blob),
        3 => URL_SAFE_NO_PAD.encode(&blob),
        4 => hex::encode(secret),
        5 => hex::encode_upper(secret),
        6 => secret
            .bytes()
            .zip(flips.iter().cycle())
            .map(
                |(b, &f)| if f || !b.is_ascii_alphanumeric() { format!("%{b:02X}") } else { char::from(b).to_string() },
            )
            .collect(),
        _ => secret
            .chars()
            .map(|c| {
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units).iter().map(|u| format!("\\u{u:04x}")).collect::<String>()
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the secret, its form, its alignment inside an encoded blob and the text around
    /// it: redacted, still valid JSON, and no form of the secret left in what the agent gets.
    #[test]
    fn an_encoded_secret_never_reaches_the_agent(
        value in secret(),
        form in 0u8..8,
        before in proptest::collection::vec(any::<u8>(), 0..5),
        after in proptest::collection::vec(any::<u8>(), 0..5),
        flips in proptest::collection::vec(any::<bool>(), 1..8),
        prefix in "[a-z ]{0,12}",
        suffix in "[a-z ]{0,12}",
    ) {
        let guard = guard_of(&[("held", &value), ("other", "unrelated-secret-value")]);
        let encoded = encode(&value, form, &before, &after, &flips);
        let text = format!("{prefix}{encoded} {suffix}");
        let found = cleaned_text(&guard, &result(&text));
        prop_assert!(found.is_some(), "form {form} not found: {text}");
        let (clean, hits) = found.unwrap();
        prop_assert!(hits.iter().any(|h| h.secret.as_deref() == Some("held")), "{hits:?}");
        prop_assert!(!clean.contains(&encoded), "form {form} left: {clean}");
        prop_assert!(!clean.contains(value.as_str()), "{clean}");
        prop_assert!(clean.contains("[REDACTED:secret]"));
    }
}
