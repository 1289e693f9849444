//! Bodies of the fuzz targets that exercise this crate.
//!
//! Each function is what one `cargo fuzz` target in `fuzz/fuzz_targets/` runs. They live here,
//! not in the fuzz crate, so that `cargo test` replays the committed corpus
//! (`fuzz/corpus/<target>/`) through exactly the same code without a fuzzing engine: a
//! regression the fuzzer once found fails an ordinary test run. Each function asserts its
//! invariants with `assert!`, which is how a fuzzer learns that an input is bad.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde_json::value::RawValue;
use tokio::io::BufReader;

use crate::frame::{Frame, FrameReader};
use crate::message::{Message, MessageKind, ToolCallParams};
use crate::sniff::sniff;

/// The largest frame the fuzzed reader accepts; small, so oversized frames are common.
const FUZZ_MAX_BYTES_CAP: usize = 512;

/// The body of fuzz target `frames`; asserts the invariants: no panic; the frame reader, fed
/// `data` through a small buffer, returns lines without a newline and at most the limit long,
/// and oversized frames with a bounded prefix; never more bytes than it was given;
/// [`Message::parse`] classifies every line consistently; [`sniff`] finds only ids and methods
/// that are valid JSON.
///
/// The first two bytes choose the frame limit and the reader's buffer size, so the fuzzer
/// explores lines that straddle buffer refills and the limit.
pub fn frames(data: &[u8]) {
    let (max_bytes, buf_size, input) = match data {
        [a, b, rest @ ..] => (usize::from(*a) % FUZZ_MAX_BYTES_CAP + 1, usize::from(*b) % 64 + 1, rest),
        _ => (FUZZ_MAX_BYTES_CAP, 8, data),
    };
    let got = read_all(input, max_bytes, buf_size);
    let mut seen = 0usize;
    for frame in &got {
        match frame {
            Frame::Line(line) => {
                assert!(!line.contains(&b'\n'), "a line holds no newline");
                assert!(line.len() <= max_bytes, "a line is at most the limit");
                assert!(!line.iter().all(u8::is_ascii_whitespace), "blank lines are skipped");
                seen += line.len();
                message(line);
            }
            Frame::Oversized { prefix, total } => {
                assert!(*total > max_bytes, "only lines past the limit are oversized");
                assert!(prefix.len() <= *total, "the prefix is part of the line");
                assert!(prefix.len() <= 64 * 1024, "the prefix is bounded");
                seen += total;
                sniffed(prefix);
            }
        }
    }
    assert!(seen <= input.len(), "frames hold no more bytes than were read");
    // The whole input as one frame, as the HTTP transport hands a body over.
    message(input);
    sniffed(input);
}

/// The body of fuzz target `sniff`; asserts the invariants: no panic, and what [`sniff`] finds
/// is valid JSON (the id a string or number, the method a string).
pub fn sniff_prefix(data: &[u8]) {
    sniffed(data);
}

/// Reads every frame of `input`. The reader sits on a byte slice, which is always ready, so
/// each read completes on its first poll; no runtime is needed.
fn read_all(input: &[u8], max_bytes: usize, buf_size: usize) -> Vec<Frame> {
    let mut reader = FrameReader::new(BufReader::with_capacity(buf_size, input), max_bytes);
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let next = pin!(reader.next_frame());
        let polled = match next.poll(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        };
        assert!(polled.is_some(), "reading a byte slice never waits");
        let Some(result) = polled else { return out };
        assert!(result.is_ok(), "reading a byte slice never fails: {result:?}");
        match result {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) | Err(_) => return out,
        }
        // INVARIANT: every frame consumes at least one byte, so this bound is never reached by
        // a correct reader; it turns an endless loop into a failure.
        assert!(out.len() <= input.len(), "more frames than bytes");
    }
}

/// Parses one frame and checks the classification agrees with itself.
fn message(line: &[u8]) {
    let from_client = Message::parse(line.to_vec(), crate::Side::ANY_CLIENT);
    if from_client.is_ok() {
        assert!(Message::parse(line.to_vec(), crate::Side::Upstream).is_ok(), "clients get the stricter rules");
    }
    match from_client {
        Ok(msg) => {
            assert_eq!(msg.raw, line, "the raw bytes are kept untouched");
            match &msg.kind {
                MessageKind::Request { id, method } => {
                    assert!(valid_id(id), "a request id is a string or a number");
                    assert_eq!(msg.method(), Some(method.as_str()));
                    assert!(msg.id().is_some());
                    if method == "tools/call" {
                        if let Ok(params) = ToolCallParams::from_message(&msg) {
                            assert!(params.arguments().is_object(), "arguments are always an object");
                        }
                    }
                }
                MessageKind::Notification { method } => {
                    assert_eq!(msg.method(), Some(method.as_str()));
                    assert!(msg.id().is_none());
                }
                MessageKind::Response { id, .. } => {
                    assert!(valid_id(id) || id.get() == "null", "a response id is a string, a number or null");
                    assert!(msg.method().is_none());
                }
            }
            let _ = msg.meta();
            if let Ok(ours) = RawValue::from_string("\"custos-1\"".to_owned()) {
                if let Some(rewritten) = crate::message::with_id(line, &ours) {
                    // A rewritten frame is still a message, with our id.
                    if let Ok(again) = Message::parse(rewritten, crate::Side::ANY_CLIENT) {
                        assert_eq!(again.id().map(RawValue::get), Some("\"custos-1\""));
                    }
                }
                let _ = crate::message::subscription_id(line);
                let _ = crate::message::with_subscription_id(line, &ours);
            }
        }
        Err(err) => {
            // An id offered for the error reply is one a client could have sent.
            if let Some(id) = err.id() {
                assert!(valid_id(id) || id.get() == "null", "an error reply's id is a valid id");
            }
            let _ = err.code();
            let _ = err.to_string();
        }
    }
}

/// Sniffs `prefix` and checks what it found.
fn sniffed(prefix: &[u8]) {
    let found = sniff(prefix);
    if let Some(id) = &found.id {
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(id).is_ok(), "a sniffed id is JSON");
        assert!(found.raw_id().is_some_and(|raw| valid_id(&raw)), "a sniffed id is a string or a number: {id}");
    }
    if let Some(method) = &found.method {
        assert!(
            prefix.windows(b"method".len()).any(|w| w == b"method"),
            "a sniffed method was in the prefix: {method}"
        );
    }
}

fn valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_pass() {
        for input in [&b""[..], b"\n", b"{", b"\xff\xfe", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}\n"] {
            frames(input);
            sniff_prefix(input);
        }
    }
}
