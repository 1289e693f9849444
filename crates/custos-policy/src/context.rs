//! JSON tool arguments → Cedar values.
//!
//! A tool call's arguments are whatever JSON the agent sent. Policies read them as
//! `context.arguments`, a Cedar record, so each call's arguments are converted here:
//!
//! | JSON | Cedar |
//! |---|---|
//! | integer in `i64` that a double holds exactly (every one up to 2^53) | `Long` |
//! | other number with at most 4 fraction digits, in range | `decimal` |
//! | any other number | the number's text as a `String`: *unreadable*, see below |
//! | string | `String` |
//! | bool | `Bool` |
//! | array | `Set` (null elements left out) |
//! | object | record, converted recursively |
//! | null | attribute left out (as MCP clients send `null` for an optional argument not given) |
//!
//! Arguments that are not a JSON object become an empty record.
//!
//! # Numbers policy cannot read
//!
//! A number beyond `i64`, an integer past 2^53 that a double cannot hold (JavaScript and Python
//! servers would read different values), `1e300`, or a decimal with more than four fraction
//! digits has no faithful Cedar value. Leaving it out would let `context.arguments has amount
//! && context.arguments.amount > 100` pass a call carrying a huge amount, so it is never left
//! out: it is kept as its text, a `String`, where the schema declares a `Long` or a `decimal`.
//! Every comparison, arithmetic, `has`, `contains` or extension method a policy applies to it
//! then fails to evaluate, which denies the call, and the deny's reason names the argument
//! ([`Unreadable`]). Equality stays truthful: no number a policy can write equals it.
//!
//! The conversion builds [`RestrictedExpression`]s directly instead of going through Cedar's
//! JSON entity format, so an argument shaped like `{"__entity": ...}` or `{"__extn": ...}` stays
//! a plain record: an agent cannot smuggle an entity reference or an extension call into the
//! context.
//!
//! Integer-ness follows how the number was written: `3` is a `Long`, `3.0` is `decimal("3.0")`.
//! A policy comparing a `Long` argument with a `decimal` value fails to evaluate, which denies.

use cedar_policy::RestrictedExpression;

/// How deep arrays and objects may nest inside the arguments. Deeper arguments are refused
/// (the call is denied) rather than cut, because cutting could hide a value a forbid looks at.
pub use custos_core::MAX_ARGUMENT_DEPTH;

/// How many JSON values (scalars, arrays and objects, counted recursively) the arguments may
/// hold. Bounds the work one call can make the policy engine do.
pub use custos_core::MAX_ARGUMENT_VALUES;

/// Unreadable numbers named in a deny's reason; the rest are counted.
const MAX_NAMED_UNREADABLE: usize = 4;

/// The largest integer every double holds exactly, with all below it: 2^53.
const EXACT_IN_DOUBLE: i64 = 1 << 53;

/// Cedar's `decimal` is an `i64` count of ten-thousandths.
const DECIMAL_FRACTION_DIGITS: usize = 4;

/// Why a call's arguments could not be converted. The call is denied with this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    #[error("tool arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels")]
    TooDeep,
    #[error("tool arguments hold more than {MAX_ARGUMENT_VALUES} values")]
    TooMany,
    #[error("tool arguments cannot be converted for policy evaluation: {0}")]
    Unconvertible(String),
}

/// A number in the arguments that policy cannot read exactly, kept as its text (see the module
/// docs): where it is and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable {
    /// `amount`, `limits.daily`, `xs[]`.
    pub(crate) path: String,
    pub(crate) text: String,
}

/// The arguments of one call as a Cedar record, with the numbers in it policy cannot read.
pub(crate) fn arguments_record(
    arguments: &serde_json::Value,
) -> Result<(RestrictedExpression, Vec<Unreadable>), ArgumentsError> {
    let mut walk = Walk { left: MAX_ARGUMENT_VALUES, path: Vec::new(), unreadable: Vec::new() };
    let fields = match arguments {
        serde_json::Value::Object(map) => walk.object(map, 1)?,
        _ => Vec::new(),
    };
    Ok((record(fields)?, walk.unreadable))
}

/// One conversion: the values it may still convert, where it is, what it could not read.
struct Walk<'a> {
    /// Counts converted values against [`MAX_ARGUMENT_VALUES`].
    left: usize,
    path: Vec<Step<'a>>,
    unreadable: Vec<Unreadable>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Item,
}

impl<'a> Walk<'a> {
    /// Converts one value found at nesting `depth` (the top-level arguments object is depth 1).
    /// `Ok(None)` means "leave this value out".
    fn value(
        &mut self,
        value: &'a serde_json::Value,
        depth: usize,
    ) -> Result<Option<RestrictedExpression>, ArgumentsError> {
        self.left = self.left.checked_sub(1).ok_or(ArgumentsError::TooMany)?;
        Ok(match value {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
            serde_json::Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
            serde_json::Value::Number(n) => Some(convert_number(n).unwrap_or_else(|| {
                // INVARIANT: never left out (see the module docs).
                let text = n.to_string();
                self.unreadable.push(Unreadable { path: self.path_text(), text: text.clone() });
                RestrictedExpression::new_string(text)
            })),
            serde_json::Value::Array(items) => {
                let depth = deeper(depth)?;
                let mut set = Vec::with_capacity(items.len());
                self.path.push(Step::Item);
                for item in items {
                    if let Some(v) = self.value(item, depth)? {
                        set.push(v);
                    }
                }
                self.path.pop();
                Some(RestrictedExpression::new_set(set))
            }
            serde_json::Value::Object(map) => {
                let depth = deeper(depth)?;
                Some(record(self.object(map, depth)?)?)
            }
        })
    }

    fn object(
        &mut self,
        map: &'a serde_json::Map<String, serde_json::Value>,
        depth: usize,
    ) -> Result<Vec<(String, RestrictedExpression)>, ArgumentsError> {
        let mut fields = Vec::with_capacity(map.len());
        for (key, value) in map {
            self.path.push(Step::Key(key));
            let converted = self.value(value, depth)?;
            self.path.pop();
            if let Some(v) = converted {
                fields.push((key.clone(), v));
            }
        }
        Ok(fields)
    }

    /// Where the walk is, as a policy would name it below `context.arguments`.
    fn path_text(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Step::Item => out.push_str("[]"),
            }
        }
        out
    }
}

/// What a deny's reason adds about numbers policy could not read: "argument `amount` is
/// 1e23, …". Empty when there are none.
pub(crate) fn unreadable_note(unreadable: &[Unreadable]) -> String {
    if unreadable.is_empty() {
        return String::new();
    }
    let named: Vec<String> = unreadable
        .iter()
        .take(MAX_NAMED_UNREADABLE)
        .map(|u| format!("argument `{}` is {}", u.path.escape_debug(), u.text))
        .collect();
    let more = unreadable.len().saturating_sub(MAX_NAMED_UNREADABLE);
    let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    format!(
        "{}{more}: a number policy cannot read exactly (integers within 64 bits that a double holds \
         exactly, decimals with at most {DECIMAL_FRACTION_DIGITS} fraction digits), so every policy comparing it fails",
        named.join(", ")
    )
}

fn deeper(depth: usize) -> Result<usize, ArgumentsError> {
    let next = depth.saturating_add(1);
    if next > MAX_ARGUMENT_DEPTH {
        return Err(ArgumentsError::TooDeep);
    }
    Ok(next)
}

/// A record from fields with distinct names (JSON object keys, or our own fixed names).
pub(crate) fn record(fields: Vec<(String, RestrictedExpression)>) -> Result<RestrictedExpression, ArgumentsError> {
    RestrictedExpression::new_record(fields)
        .map_err(|e| ArgumentsError::Unconvertible(crate::error::lowercase_first(&e.to_string())))
}

/// The Cedar value of `n`, when policy can read it exactly; `None` for an unreadable number.
fn convert_number(n: &serde_json::Number) -> Option<RestrictedExpression> {
    if let Some(i) = n.as_i64() {
        return exact_in_double(i).then(|| RestrictedExpression::new_long(i));
    }
    if n.is_u64() {
        // Above i64::MAX: too big for `decimal` as well (its range is i64 / 10^4).
        return None;
    }
    decimal_text(n.as_f64()?).map(RestrictedExpression::new_decimal)
}

/// Whether policy reads `n` exactly (as a `Long` or a `decimal`).
pub(crate) fn readable(n: &serde_json::Number) -> bool {
    convert_number(n).is_some()
}

/// Whether every mainstream JSON parser reads integer `i` as `i`: those that read numbers as
/// doubles (JavaScript) round integers past 2^53 that a double cannot hold.
fn exact_in_double(i: i64) -> bool {
    if (-EXACT_IN_DOUBLE..=EXACT_IN_DOUBLE).contains(&i) {
        return true;
    }
    // `i as f64` rounds to the nearest double; it holds `i` exactly when converting back gives
    // `i` and the double is below 2^63 (where the conversion back would saturate).
    #[expect(clippy::cast_precision_loss, clippy::cast_possible_truncation, reason = "the round trip is the test")]
    let back = (i as f64) as i64;
    #[expect(clippy::cast_precision_loss, reason = "2^63 is exact in a double")]
    let below = (i as f64) < 9_223_372_036_854_775_808.0;
    below && back == i
}

/// The `decimal("...")` literal for `f`, when Cedar's decimal holds `f` exactly: at most four
/// fraction digits in `f`'s shortest round-trip form, and within the range of an `i64` count
/// of ten-thousandths.
fn decimal_text(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    // `Display` for f64 prints the shortest digits that round-trip, never in exponent form.
    let shown = f.to_string();
    let (int_part, frac_part) = shown.split_once('.').unwrap_or((shown.as_str(), "0"));
    if frac_part.len() > DECIMAL_FRACTION_DIGITS {
        return None;
    }
    let negative = int_part.starts_with('-');
    let units: i128 = int_part.parse().ok()?;
    let mut frac: i128 = frac_part.parse().ok()?;
    for _ in frac_part.len()..DECIMAL_FRACTION_DIGITS {
        frac = frac.checked_mul(10)?;
    }
    let scaled = units.checked_mul(10_000)?;
    let scaled = if negative { scaled.checked_sub(frac)? } else { scaled.checked_add(frac)? };
    i64::try_from(scaled).ok()?;
    Some(format!("{int_part}.{frac_part}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Context, EvalResult};
    use serde_json::json;

    /// The arguments converted and evaluated, as Cedar sees them.
    fn args(value: serde_json::Value) -> EvalResult {
        let (record, _) = arguments_record(&value).unwrap();
        let ctx = Context::from_pairs([("a".to_owned(), record)]).unwrap();
        ctx.get("a").unwrap()
    }

    fn field(value: serde_json::Value, name: &str) -> Option<EvalResult> {
        match args(value) {
            EvalResult::Record(r) => r.get(name).cloned(),
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn scalars_convert_by_json_type() {
        let v = json!({"n": 7, "neg": -3, "s": "x", "b": true, "null": null});
        assert_eq!(field(v.clone(), "n"), Some(EvalResult::Long(7)));
        assert_eq!(field(v.clone(), "neg"), Some(EvalResult::Long(-3)));
        assert_eq!(field(v.clone(), "s"), Some(EvalResult::String("x".into())));
        assert_eq!(field(v.clone(), "b"), Some(EvalResult::Bool(true)));
        assert_eq!(field(v, "null"), None);
    }

    #[test]
    fn non_integers_become_exact_decimals_or_are_kept_as_text() {
        assert_eq!(decimal_text(1.5).as_deref(), Some("1.5"));
        assert_eq!(decimal_text(-0.25).as_deref(), Some("-0.25"));
        assert_eq!(decimal_text(3.0).as_deref(), Some("3.0"));
        assert_eq!(decimal_text(0.1234).as_deref(), Some("0.1234"));
        assert_eq!(decimal_text(-922_337_203_685_477.5).as_deref(), Some("-922337203685477.5"));
        assert_eq!(decimal_text(0.12345), None);
        assert_eq!(decimal_text(1e300), None);
        assert_eq!(decimal_text(1e-7), None);
        assert_eq!(decimal_text(f64::NAN), None);

        let v = json!({"d": 2.5, "tiny": 0.000001, "huge": 1e40, "big": u64::MAX});
        assert!(matches!(field(v.clone(), "d"), Some(EvalResult::ExtensionValue(s)) if s.contains("2.5")));
        // Kept, as their text: never silently absent.
        assert_eq!(field(v.clone(), "tiny"), Some(EvalResult::String("1e-6".into())));
        assert_eq!(field(v.clone(), "huge"), Some(EvalResult::String("1e+40".into())));
        assert_eq!(field(v, "big"), Some(EvalResult::String(u64::MAX.to_string())));
    }

    #[test]
    fn integers_a_double_cannot_hold_are_unreadable() {
        let limit = 1_i64 << 53;
        for readable in [0, 1, -1, limit, -limit, 1 << 60, i64::MIN, (1 << 62) + (1 << 10)] {
            assert!(exact_in_double(readable), "{readable}");
        }
        for unreadable in [limit + 1, -limit - 1, i64::MAX, i64::MAX - 1, (1 << 60) + 1] {
            assert!(!exact_in_double(unreadable), "{unreadable}");
        }
        let value: serde_json::Value = serde_json::from_str(
            r#"{"a": 99999999999999999999999, "o": {"b": [1, 9007199254740993]}, "c": 1e300, "d": 100.00001}"#,
        )
        .unwrap();
        let (_, unreadable) = arguments_record(&value).unwrap();
        let named: Vec<(&str, &str)> = unreadable.iter().map(|u| (u.path.as_str(), u.text.as_str())).collect();
        assert_eq!(
            named,
            [("a", "1e+23"), ("o.b[]", "9007199254740993"), ("c", "1e+300"), ("d", "100.00001")],
            "in the order of the arguments"
        );
        let note = unreadable_note(&unreadable);
        assert!(note.starts_with("argument `a` is 1e+23, argument `o.b[]` is 9007199254740993"), "{note}");
        assert!(unreadable_note(&[]).is_empty());
    }

    #[test]
    fn arrays_become_sets_without_nulls_and_objects_records() {
        let v = json!({"xs": [1, null, 2, 2], "o": {"k": "v", "gone": null}});
        match field(v.clone(), "xs") {
            Some(EvalResult::Set(set)) => {
                assert_eq!(set.len(), 2);
                assert!(set.contains(&EvalResult::Long(1)));
            }
            other => panic!("{other:?}"),
        }
        match field(v, "o") {
            Some(EvalResult::Record(r)) => {
                assert_eq!(r.get("k"), Some(&EvalResult::String("v".into())));
                assert_eq!(r.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_object_arguments_are_an_empty_record() {
        for v in [json!(null), json!(3), json!("s"), json!([1, 2])] {
            match args(v) {
                EvalResult::Record(r) => assert!(r.is_empty()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn escape_shaped_objects_stay_records() {
        let v = json!({
            "e": {"__entity": {"type": "Custos::Group", "id": "admins"}},
            "x": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
        });
        assert!(matches!(field(v.clone(), "e"), Some(EvalResult::Record(_))));
        assert!(matches!(field(v, "x"), Some(EvalResult::Record(_))));
    }

    #[test]
    fn weird_deep_and_huge_arguments_never_panic() {
        // Nested far past the limit: refused, not converted.
        let mut deep = json!("bottom");
        for i in 0..2_000 {
            deep = if i % 2 == 0 { json!([deep]) } else { json!({ "k": deep }) };
        }
        assert_eq!(arguments_record(&json!({ "d": deep })).err(), Some(ArgumentsError::TooDeep));

        // Exactly at the limit (the arguments object itself is the first level): converted;
        // one more level: refused.
        let mut nested = json!(1);
        for _ in 0..MAX_ARGUMENT_DEPTH {
            nested = json!({ "k": nested });
        }
        assert!(arguments_record(&nested).is_ok());
        assert_eq!(arguments_record(&json!({ "k": nested })).err(), Some(ArgumentsError::TooDeep));

        // Too many values: refused.
        let many: Vec<u32> = (0..(u32::try_from(MAX_ARGUMENT_VALUES).unwrap() + 1)).collect();
        assert_eq!(arguments_record(&json!({ "xs": many })).err(), Some(ArgumentsError::TooMany));

        // Big but within bounds, and odd keys, strings and mixed sets: converted.
        let v = json!({
            "": "empty key",
            "with space and \"quotes\"": "\u{0}\u{ffff}😀",
            "mixed": [1, "one", true, [], {}, 1.25, null, -0.0],
            "long": "x".repeat(1 << 20),
            "bigset": (0..50_000).collect::<Vec<u32>>(),
        });
        assert!(matches!(args(v), EvalResult::Record(r) if r.len() == 5));
    }
}
