//! [`SecretValue`]: a secret's value, which neither `Debug`, `Display` nor serde will show.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::error::SecretsError;

/// A secret's value. Zeroized on drop; `Debug` and `Display` print `[redacted]`; it does not
/// implement `Serialize`, so it cannot end up in a log line, an event or a response by
/// accident. [`SecretValue::expose`] is the one way to read it, and so the one place to review.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// The value itself, for injecting it into an upstream request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A value opened by [`crate::MasterKey::open`]: `context` names it in the error when the
    /// bytes are not UTF-8 text (the bytes are zeroized either way).
    pub fn from_utf8(context: &str, mut bytes: Zeroizing<Vec<u8>>) -> Result<SecretValue, SecretsError> {
        // Moves the buffer out without copying; the emptied Zeroizing is dropped harmlessly.
        match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Ok(SecretValue(Zeroizing::new(text))),
            Err(err) => {
                err.into_bytes().zeroize();
                Err(SecretsError::NotUtf8 { context: context.to_owned() })
            }
        }
    }

    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        SecretValue(Zeroizing::new(value.to_owned()))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let v = SecretValue::from("hunter2-hunter2".to_owned());
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(v.clone())), "Some([redacted])");
        assert_eq!(v.expose(), "hunter2-hunter2");
        assert_eq!(v.len(), 15);
    }

    #[test]
    fn from_utf8_checks_the_text() {
        let v = SecretValue::from_utf8("secret:a", Zeroizing::new(b"abc".to_vec())).unwrap();
        assert_eq!(v.expose(), "abc");
        let err = SecretValue::from_utf8("secret:a", Zeroizing::new(vec![0xff])).unwrap_err();
        assert_eq!(err.to_string(), "secret `secret:a` is not utf-8 text");
    }
}
