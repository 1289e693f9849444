//! What an approver is shown of a call's arguments: everything but what looks like a secret.
//!
//! Approval requests are stored, listed, shown and sent to webhooks; none of that may carry a
//! credential an agent passed in its arguments. Two rules, applied at every depth:
//!
//! - a value under a key that names a secret (`password`, `api_key`, `Authorization`,
//!   `clientSecret`, …; case, `_`, `-` and camelCase do not matter) is replaced whole;
//! - a string that looks like a credential wherever it is (a bearer or basic authorization, an
//!   AWS access key id, a PEM private key, a JWT, a well-known token prefix, a long
//!   high-entropy string) is replaced.
//!
//! Redaction errs on the side of hiding: a false positive costs an approver a look at the log,
//! a false negative leaks a secret. The digest an approval is bound to is computed over the
//! arguments as sent, never over the redacted copy.

use serde_json::Value;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Words in a key that name a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "apikey",
    "privatekey",
    "signature",
];

/// Adjacent word pairs in a key that name a secret (`api_key`, `privateKey`, `x-access-key`).
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
    ("session", "id"),
    ("client", "secret"),
];

/// Prefixes of well-known tokens: GitHub, GitLab, Slack, OpenAI/Anthropic style, Stripe,
/// Google API keys, Custos API keys.
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "sk-",
    "sk_live_",
    "rk_live_",
    "AIza",
    "cst_",
];

/// A copy of `arguments` with secrets replaced by `"[redacted]"`.
pub fn redact(arguments: &Value) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if key_names_secret(k) { Value::String(REDACTED.to_owned()) } else { redact(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if looks_like_credential(s) => Value::String(REDACTED.to_owned()),
        other => other.clone(),
    }
}

/// Whether a key names a secret: split into lowercase words at `_`, `-`, `.`, spaces and
/// camelCase humps, then matched word by word and pair by pair.
fn key_names_secret(key: &str) -> bool {
    let words = words(key);
    let joined: String = words.concat();
    if SECRET_WORDS.contains(&joined.as_str()) {
        return true;
    }
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || words.windows(2).any(|pair| match pair {
            [a, b] => SECRET_PAIRS.iter().any(|(x, y)| a == x && b == y),
            _ => false,
        })
}

fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Whether a string value looks like a credential, whatever key it is under.
fn looks_like_credential(s: &str) -> bool {
    let trimmed = s.trim();
    let lower = trimmed.to_ascii_lowercase();
    if ["bearer ", "basic ", "token "].iter().any(|p| lower.starts_with(p)) && trimmed.len() > 12 {
        return true;
    }
    if trimmed.contains("-----BEGIN") && trimmed.contains("PRIVATE KEY") {
        return true;
    }
    if has_aws_key_id(trimmed) {
        return true;
    }
    // A JWT: three base64url segments, the first a JSON object (`eyJ` is `{"`).
    if trimmed.starts_with("eyJ") && trimmed.split('.').count() == 3 && trimmed.len() > 30 {
        return true;
    }
    if TOKEN_PREFIXES.iter().any(|p| trimmed.starts_with(p)) && trimmed.len() >= 20 && !trimmed.contains(' ') {
        return true;
    }
    high_entropy(trimmed)
}

/// An AWS access key id (`AKIA` or `ASIA` and 16 upper-case letters or digits) anywhere in `s`.
fn has_aws_key_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    (0..bytes.len()).any(|i| {
        let Some(window) = bytes.get(i..i + 20) else { return false };
        (window.starts_with(b"AKIA") || window.starts_with(b"ASIA"))
            && window.iter().skip(4).all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

/// A long token-shaped string that mixes cases and digits with the entropy of random data.
///
/// Lower-case hex (commit ids, digests) and UUIDs are left alone: they identify things rather
/// than grant access, and an approver needs to see them.
fn high_entropy(s: &str) -> bool {
    const MIN_LEN: usize = 24;
    if s.len() < MIN_LEN || !s.chars().all(|c| c.is_ascii_alphanumeric() || "+/=_-.~".contains(c)) {
        return false;
    }
    let classes = [
        s.chars().any(|c| c.is_ascii_lowercase()),
        s.chars().any(|c| c.is_ascii_uppercase()),
        s.chars().any(|c| c.is_ascii_digit()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return false;
    }
    let mut counts = [0usize; 128];
    for b in s.bytes() {
        if let Some(n) = counts.get_mut(usize::from(b)) {
            *n += 1;
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "string lengths here are far below 2^52")]
    let len = s.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|n| **n > 0)
        .map(|n| {
            #[expect(clippy::cast_precision_loss, reason = "counts are at most the length")]
            let p = *n as f64 / len;
            -p * p.log2()
        })
        .sum();
    entropy >= 4.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_redacted_at_any_depth_and_case() {
        let args = json!({
            "user": "alice",
            "password": "hunter2",
            "Authorization": "Basic abc",
            "nested": {"apiKey": "k", "X-Api-Key": "k", "client_secret": {"any": "shape"}, "note": "fine"},
            "list": [{"access_token": "t"}, {"refreshToken": "t"}, {"PRIVATE_KEY": "p"}, {"db_credentials": ["a"]}],
            "max_tokens": 100,
            "author": "bob",
            "keyboard": "qwerty",
        });
        let out = redact(&args);
        assert_eq!(
            out,
            json!({
                "user": "alice",
                "password": REDACTED,
                "Authorization": REDACTED,
                "nested": {"apiKey": REDACTED, "X-Api-Key": REDACTED, "client_secret": REDACTED, "note": "fine"},
                "list": [{"access_token": REDACTED}, {"refreshToken": REDACTED}, {"PRIVATE_KEY": REDACTED},
                         {"db_credentials": REDACTED}],
                "max_tokens": 100,
                "author": "bob",
                "keyboard": "qwerty",
            })
        );
    }

    #[test]
    fn credential_shaped_values_are_redacted_under_any_key() {
        for secret in [
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "bearer abcdefghijklmnop",
            "AKIAIOSFODNN7EXAMPLE",
            "use key AKIAIOSFODNN7EXAMPLE please",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMII",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-1234-5678-abcdefghijkl",
            "sk-proj-Abc123Def456Ghi789",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "Zx8Qp2Lm9Rt4Wv6Ys1Kb3Nd5Hg7Jf0",
        ] {
            assert_eq!(redact(&json!({"note": secret})), json!({"note": REDACTED}), "{secret}");
            assert_eq!(redact(&json!([secret])), json!([REDACTED]), "{secret}");
        }
    }

    #[test]
    fn ordinary_values_are_kept() {
        let args = json!({
            "commit": "4f2a9c0d1e3b5a7c9e1f3a5b7c9d1e3f5a7b9c1d",
            "digest": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "id": "123e4567-e89b-12d3-a456-426614174000",
            "path": "/home/alice/projects/custos/src/main.rs",
            "sentence": "Please refund order 12345 for Alice Smith, she was charged twice.",
            "amount": 12.5,
            "flag": true,
            "none": null,
            "short": "Ab3",
            "CamelCaseIdentifierName": "SomeLongIdentifierWithoutDigits",
        });
        assert_eq!(redact(&args), args);
    }
}
