//! One reading of JSON: what two mainstream JSON parsers would read differently is refused.
//!
//! The gateway decides a call on its reading of the message and forwards the same bytes, so a
//! message that another parser reads differently would be decided as one thing and run as
//! another. Every frame passes [`check`] before anything else reads it. It refuses:
//!
//! - a key twice in one object, at any depth: parsers keep the first, keep the last, merge or
//!   fail;
//! - from clients, two keys of one object that differ only by case, under Unicode simple case
//!   folding (`amount` / `AMOUNT`, or `kind` / `\u{212A}ind` with the Kelvin sign): Go's `encoding/json`
//!   matches struct fields that way, so `{"arguments":…,"Arguments":…}` reaches such a server as
//!   the second;
//! - from clients, a top-level member spelled like a JSON-RPC one but not exactly so (`Method`,
//!   `PARAMS`), and in `params` one spelled like `name`, `arguments`, `_meta` or `uri`: the
//!   gateway would pass it on as a vendor member, a parser that ignores case would take it for
//!   the member (other vendor members pass);
//! - a NUL character in a key (C parsers end the key there), and from clients in a string of
//!   `params.arguments`;
//! - lone UTF-16 surrogates in `\u` escapes, invalid escapes and invalid UTF-8 (some parsers
//!   replace them, some keep them, some fail), numbers beyond the range of a double (`1e400`
//!   is infinity to Python and JavaScript), and anything that is not strict JSON (`NaN`,
//!   comments, trailing commas): `serde_json` refuses all of these, and the check reads every
//!   string, so none of them hides inside a part the gateway would otherwise skip;
//! - from clients, `params.arguments` holding more values than the deployment allows (`[limits]
//!   max_argument_values`, at most [`MAX_ARGUMENT_VALUES`]) or nested deeper than
//!   [`MAX_ARGUMENT_DEPTH`]: counted while reading, so a hostile message is refused before
//!   anything is built from it and costs the gateway little more than its bytes.
//!
//! Upstream messages get every rule but those marked "from clients": a result may legitimately
//! carry data with keys such as `ETag` and `etag`, and the gateway's detectors read every string
//! of a result whatever its key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use custos_core::{MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_VALUES};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Which peer sent a frame: clients are held to the stricter rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A client (an agent), whose `params.arguments` may hold at most `max_argument_values`
    /// values (`[limits] max_argument_values`; capped at [`MAX_ARGUMENT_VALUES`]).
    Client {
        max_argument_values: usize,
    },
    Upstream,
}

impl Side {
    /// A client held to the largest bound there is (for tests and tools without a config).
    pub const ANY_CLIENT: Side = Side::Client { max_argument_values: MAX_ARGUMENT_VALUES };

    fn is_client(self) -> bool {
        matches!(self, Side::Client { .. })
    }
}

/// Why a frame was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    /// Whether the problem is inside `params`: the answer is then "invalid params" (`-32602`),
    /// otherwise "invalid request" (`-32600`).
    pub in_params: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The members of a JSON-RPC 2.0 message.
const ENVELOPE: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// Members of `params` the gateway reads (tools, prompts, resources): one spelled otherwise
/// would be the member to a parser that ignores case and an unknown one to the gateway.
const READ_PARAMS: [&str; 4] = ["name", "arguments", "_meta", "uri"];

/// Objects with more keys than this are checked for duplicates with a hash set, smaller ones
/// by comparing with each key before.
const LINEAR_KEYS: usize = 16;

/// Path segments kept for error messages.
const MAX_PATH: usize = 8;

/// Checks one frame. `Ok` does not mean the frame is a valid JSON-RPC message, only that every
/// parser reads it the same way.
pub fn check(raw: &[u8], side: Side) -> Result<(), Refusal> {
    let mut state = State { side, path: Vec::new(), depth: 0, arguments: None, refusal: None };
    let mut de = serde_json::Deserializer::from_slice(raw);
    let parsed = Node { state: &mut state }.deserialize(&mut de).and_then(|()| de.end());
    match (parsed, state.refusal.take()) {
        (_, Some(refusal)) => Err(refusal),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(Refusal { reason: parse_reason(&e), in_params: state.in_params() }),
    }
}

/// A parser error without its position (a byte offset into a message nobody else sees means
/// little), first letter lowercase.
fn parse_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    if text.contains("surrogate") || text.contains("hex escape") {
        return format!(
            "the message is not strict json: {text} (a `\\u` escape must be a whole unicode character; \
             parsers read lone surrogates differently)"
        );
    }
    format!("the message is not strict json: {text}")
}

struct State<'de> {
    side: Side,
    /// The keys down to where the walk is (the first [`MAX_PATH`]).
    path: Vec<Cow<'de, str>>,
    /// How many containers the walk is in.
    depth: usize,
    /// Inside `params.arguments` of a client's message: where it started and the values seen.
    arguments: Option<Arguments>,
    refusal: Option<Refusal>,
}

#[derive(Clone, Copy)]
struct Arguments {
    /// `depth` of the arguments object itself.
    root: usize,
    values: usize,
}

impl State<'_> {
    fn in_params(&self) -> bool {
        self.path.first().is_some_and(|k| k == "params")
    }

    fn at(&self) -> String {
        if self.path.is_empty() {
            return "the message".to_owned();
        }
        let mut shown: Vec<String> = self.path.iter().map(|k| k.escape_debug().to_string()).collect();
        // Deeper than the keys say: inside an array, or past the keys kept.
        if self.path.len() + 1 < self.depth {
            shown.push("…".to_owned());
        }
        format!("`{}`", shown.join("."))
    }

    fn refuse<E: serde::de::Error>(&mut self, reason: String) -> E {
        let in_params = self.in_params();
        let refusal = self.refusal.get_or_insert(Refusal { reason, in_params });
        E::custom(refusal.reason.clone())
    }

    /// Counts one value, if inside a client's arguments.
    fn count<E: serde::de::Error>(&mut self) -> Result<(), E> {
        let Some(args) = &mut self.arguments else { return Ok(()) };
        args.values += 1;
        let limit = match self.side {
            Side::Client { max_argument_values } => max_argument_values.min(MAX_ARGUMENT_VALUES),
            Side::Upstream => MAX_ARGUMENT_VALUES,
        };
        if args.values > limit {
            return Err(
                self.refuse(format!("tool arguments hold more than {limit} values (`[limits] max_argument_values`)"))
            );
        }
        Ok(())
    }

    /// Enters a container (the caller leaves it with [`State::leave`]).
    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if let Some(args) = self.arguments {
            if self.depth - args.root + 1 > MAX_ARGUMENT_DEPTH {
                return Err(self.refuse(format!("tool arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels")));
            }
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn check_string<E: serde::de::Error>(&mut self, s: &str) -> Result<(), E> {
        if self.arguments.is_some() && s.contains('\0') {
            return Err(
                self.refuse(format!("a string in {} holds a nul character, where c-based parsers end it", self.at()))
            );
        }
        Ok(())
    }
}

/// One value of the frame.
struct Node<'s, 'de> {
    state: &'s mut State<'de>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.state.count()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.state.count()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.state.count()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.state.count()
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.state.count()?;
        self.state.check_string(s)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.state.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.state.count()?;
        self.state.enter()?;
        while seq.next_element_seed(Node { state: &mut *self.state })?.is_some() {}
        self.state.leave();
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        state.count()?;
        state.enter()?;
        let depth = state.depth;
        let mut keys = Keys::new(state.side.is_client());
        let is_params = depth == 2 && state.in_params();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let added = keys.add(&key).and_then(|()| match state.side {
                Side::Client { .. } => check_spelling(&key, depth, is_params),
                Side::Upstream => Ok(()),
            });
            if let Err(reason) = added {
                let reason = format!("{reason} in {}", state.at());
                return Err(state.refuse(reason));
            }
            // `params.arguments` of a client's message: counted and bounded from here.
            let starts_arguments = state.side.is_client() && is_params && key == "arguments";
            if starts_arguments {
                state.arguments = Some(Arguments { root: depth + 1, values: 0 });
            }
            if state.path.len() < MAX_PATH && state.path.len() + 1 == depth {
                state.path.push(key);
                map.next_value_seed(Node { state: &mut *state })?;
                state.path.pop();
            } else {
                map.next_value_seed(Node { state: &mut *state })?;
            }
            if starts_arguments {
                state.arguments = None;
            }
        }
        state.leave();
        Ok(())
    }
}

/// A key, borrowed from the frame when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

/// The keys of one object seen so far: as sent (upstreams' messages), or case-folded with the
/// key as sent (clients', where a duplicate is a collision too).
struct Keys<'de> {
    seen: Seen<Cow<'de, str>>,
    fold: bool,
}

impl<'de> Keys<'de> {
    fn new(fold: bool) -> Self {
        Self { seen: Seen::default(), fold }
    }

    /// Adds `key`, or says why it may not be there.
    #[expect(clippy::ptr_arg, reason = "the key is kept as it came: borrowed from the frame when it can be")]
    fn add(&mut self, key: &Cow<'de, str>) -> Result<(), String> {
        if key.contains('\0') {
            return Err(format!("key `{}` holds a nul character, where c-based parsers end it", key.escape_debug()));
        }
        let compared = match (self.fold, fold(key)) {
            (true, Cow::Owned(folded)) => Cow::Owned(folded),
            _ => key.clone(),
        };
        match self.seen.insert(compared, key) {
            None => Ok(()),
            Some(earlier) if earlier == *key => Err(format!("duplicate key `{}`", key.escape_debug())),
            Some(earlier) => Err(format!(
                "keys `{}` and `{}` differ only by case, which some json parsers ignore",
                earlier.escape_debug(),
                key.escape_debug()
            )),
        }
    }
}

/// Keys seen, each with the key as sent: compared one by one while few, then hashed.
struct Seen<K> {
    few: Vec<(K, K)>,
    many: HashMap<K, K>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self { few: Vec::new(), many: HashMap::new() }
    }
}

impl<K: Clone + Eq + std::hash::Hash> Seen<K> {
    /// Adds `key` (sent as `sent`); the key sent earlier when one compares equal.
    fn insert(&mut self, key: K, sent: &K) -> Option<K> {
        if self.many.is_empty() && self.few.len() < LINEAR_KEYS {
            if let Some((_, earlier)) = self.few.iter().find(|(k, _)| *k == key) {
                return Some(earlier.clone());
            }
            self.few.push((key, sent.clone()));
            return None;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.drain(..));
        }
        if let Some(earlier) = self.many.get(&key) {
            return Some(earlier.clone());
        }
        self.many.insert(key, sent.clone());
        None
    }
}

/// Refuses, in a client's message, a member spelled like a JSON-RPC member (`Method`,
/// `PARAMS`) or like a member of `params` the gateway reads (`Arguments`), but not exactly so:
/// the gateway would ignore it as a vendor field, and a parser that ignores case would take it
/// for the member. `depth`: of the object `key` is in; `in_params`: whether that object is
/// `params`. Other vendor members pass.
fn check_spelling(key: &str, depth: usize, in_params: bool) -> Result<(), String> {
    let known: &[&str] = match depth {
        1 => &ENVELOPE,
        2 if in_params => &READ_PARAMS,
        _ => return Ok(()),
    };
    if known.contains(&key) {
        return Ok(());
    }
    let folded = fold(key);
    match known.iter().find(|k| fold(k) == folded) {
        Some(k) => Err(format!("member `{}` is spelled like `{k}` but is not it", key.escape_debug())),
        None => Ok(()),
    }
}

/// `s` under Unicode simple case folding, closely enough for comparing keys: each character
/// upper-cased, then lower-cased, so `K` (Kelvin) and `k`, `ſ` and `s`, `µ` and `μ` meet.
/// Borrowed when `s` is folded already (the usual key).
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> Result<(), Refusal> {
        check(s.as_bytes(), Side::ANY_CLIENT)
    }

    fn upstream(s: &str) -> Result<(), Refusal> {
        check(s.as_bytes(), Side::Upstream)
    }

    #[test]
    fn plain_messages_pass() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1,"A_b":[1,{"x":"y"}],"s":"\u00e9\ud83d\ude00"},"_meta":{"progressToken":1}}}"#;
        assert_eq!(client(call), Ok(()));
        assert_eq!(upstream(r#"{"jsonrpc":"2.0","id":1,"result":{"ETag":"a","etag":"b"}}"#), Ok(()));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_on_both_sides() {
        for dup in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":500,"b":1,"a":5}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"o":{"p":[{"q":1,"q":2}]}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"\u0061":1,"a":2}}}"#,
        ] {
            let err = client(dup).unwrap_err();
            assert!(err.in_params && err.reason.contains("duplicate key"), "{dup}: {err}");
            assert!(upstream(dup).is_err(), "{dup}");
        }
        let err = upstream(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"content":[1]}}"#).unwrap_err();
        assert!(!err.in_params && err.reason.contains("`result`"), "{err}");
    }

    #[test]
    fn big_objects_find_duplicates_too() {
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"arguments":{{{}}}}}}}"#, keys.join(","));
        assert_eq!(client(&ok), Ok(()));
        let dup = ok.replace("\"k99\":99", "\"k3\":99");
        assert!(client(&dup).unwrap_err().reason.contains("duplicate key `k3`"));
        let case = ok.replace("\"k99\":99", "\"K3\":99");
        assert!(client(&case).unwrap_err().reason.contains("differ only by case"));
    }

    #[test]
    fn case_collisions_are_refused_from_clients() {
        for (input, other) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"amount":5,"AMOUNT":500}}}"#,
                "AMOUNT",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"kind":"a","\u212aind":"b"}}}"#,
                "Kind",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":1},"Arguments":{"x":2}}}"#,
                "Arguments",
            ),
        ] {
            let err = client(input).unwrap_err();
            assert!(err.reason.contains("differ only by case"), "{input}: {err}");
            assert!(err.in_params);
            let _ = other;
        }
        assert_eq!(fold("\u{212a}ind"), "kind");
        assert!(matches!(fold("already_folded"), Cow::Borrowed(_)));
        assert_eq!(fold("ſ"), "s");
    }

    #[test]
    fn look_alike_members_are_refused_from_clients() {
        let err = client(r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#).unwrap_err();
        assert!(err.reason.contains("differ only by case") && !err.in_params, "{err}");
        let err = client(r#"{"jsonrpc":"2.0","id":1,"result":{},"METHOD":"tools/call"}"#).unwrap_err();
        assert!(err.reason.contains("`METHOD` is spelled like `method`") && !err.in_params, "{err}");
        // Vendor members pass through.
        assert_eq!(client(r#"{"jsonrpc":"2.0","id":1,"method":"ping","x-vendor":{"a":1}}"#), Ok(()));
        let err =
            client(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","Arguments":{"a":1}}}"#)
                .unwrap_err();
        assert!(err.reason.contains("`Arguments` is spelled like `arguments`") && err.in_params, "{err}");
        assert_eq!(upstream(r#"{"jsonrpc":"2.0","id":1,"result":{},"vendor":1}"#), Ok(()));
        // Other members of params are the method's business.
        assert_eq!(client(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"Cursor":"c","level":"info"}}"#), Ok(()));
    }

    #[test]
    fn what_parsers_disagree_on_is_refused() {
        for bad in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"\ud800"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"\udc00x"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"k":"\ud83d"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":1e400}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":[1,]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"k\u0000":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"path":"/etc/shadow\u0000.txt"}}}"#,
        ] {
            assert!(client(bad).is_err(), "{bad}");
        }
        assert!(check(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"s\":\"\xff\"}}", Side::Upstream)
            .is_err());
        let err = client(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"\ud800"}}"#).unwrap_err();
        assert!(err.reason.contains("surrogate") && err.in_params, "{err}");
        let err = client(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"\ud800\u0041"}}"#).unwrap_err();
        assert!(err.reason.contains("surrogate"), "{err}");
        // A nul in a string outside the arguments is data (a log line, a file's bytes).
        assert_eq!(upstream(r#"{"jsonrpc":"2.0","id":1,"result":{"text":"a\u0000b"}}"#), Ok(()));
    }

    #[test]
    fn arguments_are_bounded_while_read() {
        let many = (0..=MAX_ARGUMENT_VALUES).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let input = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"xs":[{many}]}}}}}}"#
        );
        let err = client(&input).unwrap_err();
        assert!(err.reason.contains("more than") && err.in_params, "{err}");
        // The deployment's own bound, counted the same way (the arguments object is a value).
        let ten = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"xs":[1,2,3,4,5,6,7,8]}}}"#;
        assert_eq!(check(ten.as_bytes(), Side::Client { max_argument_values: 10 }), Ok(()));
        let err = check(ten.as_bytes(), Side::Client { max_argument_values: 9 }).unwrap_err();
        assert!(err.reason.contains("more than 9 values"), "{err}");
        // The same data in a result is not an argument.
        let result = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"xs":[{many}]}}}}"#);
        assert_eq!(upstream(&result), Ok(()));

        let deep = |levels: usize| {
            let open = "[".repeat(levels - 1);
            let close = "]".repeat(levels - 1);
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"d":{open}1{close}}}}}}}"#
            )
        };
        assert_eq!(client(&deep(MAX_ARGUMENT_DEPTH)), Ok(()));
        let err = client(&deep(MAX_ARGUMENT_DEPTH + 1)).unwrap_err();
        assert!(err.reason.contains("nest deeper"), "{err}");
    }
}
