//! JSON tool arguments → Cedar values.
//!
//! A tool call's arguments are whatever JSON the agent sent. Policies read them as
//! `context.arguments`, a Cedar record, so each call's arguments are converted here:
//!
//! | JSON | Cedar |
//! |---|---|
//! | integer that fits `i64` | `Long` |
//! | any other number | `decimal`, when it has at most 4 fraction digits and is in range; else left out |
//! | string | `String` |
//! | bool | `Bool` |
//! | array | `Set` (null elements left out) |
//! | object | record, converted recursively |
//! | null | attribute left out |
//!
//! Arguments that are not a JSON object become an empty record.
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
pub const MAX_ARGUMENT_DEPTH: usize = 64;

/// How many JSON values (scalars, arrays and objects, counted recursively) the arguments may
/// hold. Bounds the work one call can make the policy engine do.
pub const MAX_ARGUMENT_VALUES: usize = 100_000;

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

/// The arguments of one call as a Cedar record.
pub(crate) fn arguments_record(arguments: &serde_json::Value) -> Result<RestrictedExpression, ArgumentsError> {
    let mut budget = Budget { left: MAX_ARGUMENT_VALUES };
    let fields = match arguments {
        serde_json::Value::Object(map) => convert_object(map, 1, &mut budget)?,
        _ => Vec::new(),
    };
    record(fields)
}

/// Counts converted values against [`MAX_ARGUMENT_VALUES`].
struct Budget {
    left: usize,
}

impl Budget {
    fn take(&mut self) -> Result<(), ArgumentsError> {
        self.left = self.left.checked_sub(1).ok_or(ArgumentsError::TooMany)?;
        Ok(())
    }
}

/// Converts one value found at nesting `depth` (the top-level arguments object is depth 1).
/// `Ok(None)` means "leave this value out".
fn convert(
    value: &serde_json::Value,
    depth: usize,
    budget: &mut Budget,
) -> Result<Option<RestrictedExpression>, ArgumentsError> {
    budget.take()?;
    Ok(match value {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        serde_json::Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        serde_json::Value::Number(n) => convert_number(n),
        serde_json::Value::Array(items) => {
            let depth = deeper(depth)?;
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                if let Some(v) = convert(item, depth, budget)? {
                    set.push(v);
                }
            }
            Some(RestrictedExpression::new_set(set))
        }
        serde_json::Value::Object(map) => {
            let depth = deeper(depth)?;
            Some(record(convert_object(map, depth, budget)?)?)
        }
    })
}

fn convert_object(
    map: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
    budget: &mut Budget,
) -> Result<Vec<(String, RestrictedExpression)>, ArgumentsError> {
    let mut fields = Vec::with_capacity(map.len());
    for (key, value) in map {
        if let Some(v) = convert(value, depth, budget)? {
            fields.push((key.clone(), v));
        }
    }
    Ok(fields)
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

fn convert_number(n: &serde_json::Number) -> Option<RestrictedExpression> {
    if let Some(i) = n.as_i64() {
        return Some(RestrictedExpression::new_long(i));
    }
    if n.is_u64() {
        // Above i64::MAX: too big for `decimal` as well (its range is i64 / 10^4).
        return None;
    }
    decimal_text(n.as_f64()?).map(RestrictedExpression::new_decimal)
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
        let record = arguments_record(&value).unwrap();
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
    fn non_integers_become_exact_decimals_or_are_dropped() {
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
        assert_eq!(field(v.clone(), "tiny"), None);
        assert_eq!(field(v.clone(), "huge"), None);
        assert_eq!(field(v, "big"), None);
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
        let many: Vec<u32> = (0..(MAX_ARGUMENT_VALUES as u32 + 1)).collect();
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
