//! The Prometheus text exposition format, version 0.0.4: names, escaping, numbers and lines.
//!
//! Reference: <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>.

use std::fmt::{Display, Write as _};

/// Rewrites `name` into a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
///
/// Every other character becomes `_`, and a name that is empty or starts with a digit gets a
/// leading `_`. Returns the name and whether it had to change.
pub(crate) fn sanitize_metric_name(name: &str) -> (String, bool) {
    sanitize(name, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Rewrites `names` into valid, distinct label names (`[a-zA-Z_][a-zA-Z0-9_]*`).
///
/// Colons are not allowed in label names, and names starting with `__` are reserved for
/// Prometheus itself, so leading underscores are cut to one. A name equal to one in `reserved`
/// (`le` for histograms) or to an earlier name gets `_` appended until it is unique. Returns the
/// names and whether any had to change.
pub(crate) fn sanitize_label_names(names: &[&str], reserved: &[&str]) -> (Box<[String]>, bool) {
    let mut changed = false;
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let (mut clean, mut this_changed) = sanitize(name, |c| c.is_ascii_alphanumeric() || c == '_');
        if clean.starts_with("__") {
            clean = format!("_{}", clean.trim_start_matches('_'));
            this_changed = true;
        }
        while reserved.contains(&clean.as_str()) || out.contains(&clean) {
            clean.push('_');
            this_changed = true;
        }
        changed |= this_changed;
        out.push(clean);
    }
    (out.into_boxed_slice(), changed)
}

fn sanitize(name: &str, allowed: impl Fn(char) -> bool) -> (String, bool) {
    let mut out: String = name.chars().map(|c| if allowed(c) { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    let changed = out != name;
    (out, changed)
}

/// Formats a float so that Prometheus (Go's `ParseFloat`) reads it back exactly.
///
/// Rust's `Display` prints the shortest decimal that round-trips and never uses an exponent;
/// only the non-finite values need the format's own spelling.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

/// Writes the `# HELP` and `# TYPE` lines that must precede a family's samples.
pub(crate) fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    // HELP text escapes only backslash and line feed; quotes stay as they are.
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes one sample line: `name{label="value",...} value`.
///
/// `extra` is a label appended after the family's own, used for a histogram bucket's `le`.
pub(crate) fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    label_names: &[String],
    label_values: &[String],
    extra: Option<(&str, &str)>,
    value: impl Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = label_names.iter().map(String::as_str).zip(label_values.iter().map(String::as_str)).chain(extra);
    let mut first = true;
    for (label, value) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{value}");
    out.push('\n');
}

/// Escapes a label value: backslash, double quote and line feed.
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_sanitized() {
        assert_eq!(sanitize_metric_name("custos_calls_total"), ("custos_calls_total".to_owned(), false));
        assert_eq!(sanitize_metric_name("ns:sub_total"), ("ns:sub_total".to_owned(), false));
        assert_eq!(sanitize_metric_name("calls-total.x"), ("calls_total_x".to_owned(), true));
        assert_eq!(sanitize_metric_name("9lives"), ("_9lives".to_owned(), true));
        assert_eq!(sanitize_metric_name(""), ("_".to_owned(), true));
        assert_eq!(sanitize_metric_name("é"), ("_".to_owned(), true));
    }

    #[test]
    fn label_names_are_sanitized_and_made_unique() {
        let (names, changed) = sanitize_label_names(&["agent", "decision"], &["le"]);
        assert_eq!(&*names, ["agent", "decision"]);
        assert!(!changed);

        let (names, changed) = sanitize_label_names(&["a:b", "__name__", "le", "x", "x", "0"], &["le"]);
        assert_eq!(&*names, ["a_b", "_name__", "le_", "x", "x_", "_0"]);
        assert!(changed);
    }

    #[test]
    fn floats_use_the_exposition_spelling() {
        assert_eq!(format_float(0.0005), "0.0005");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        for v in [1e-9, 123456.789, 1e21] {
            assert_eq!(format_float(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);

        let mut out = String::new();
        write_header(&mut out, "m", "say \"hi\"\\\nbye", "counter");
        assert_eq!(out, "# HELP m say \"hi\"\\\\\\nbye\n# TYPE m counter\n");
    }

    #[test]
    fn samples_without_labels_have_no_braces() {
        let mut out = String::new();
        write_sample(&mut out, "m", "_sum", &[], &[], None, 1.5);
        write_sample(&mut out, "m", "_bucket", &[], &[], Some(("le", "+Inf")), 2);
        write_sample(&mut out, "m", "", &["a".to_owned()], &["x".to_owned()], Some(("le", "1")), 3);
        assert_eq!(out, "m_sum 1.5\nm_bucket{le=\"+Inf\"} 2\nm{a=\"x\",le=\"1\"} 3\n");
    }
}
