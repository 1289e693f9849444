//! Tool names made from a method and a path, for operations without a usable `operationId`.

use crate::Method;

/// `get_orders_by_order_id` for `GET /orders/{order_id}`: the method in lowercase, then each
/// segment, a variable as `by_NAME`; every run of characters other than ASCII letters and
/// digits becomes one `_`; `/` alone is `root`. Cut to [`custos_core::tool::MAX_TOOL_NAME_CHARS`].
/// Deterministic, so a tool keeps its name (and its policies) across imports.
pub(crate) fn derived(method: Method, path_template: &str) -> String {
    let mut words = vec![method.openapi_key().to_owned()];
    for segment in path_template.split('/').filter(|s| !s.is_empty()) {
        let mut text = String::new();
        for c in segment.chars() {
            match c {
                '{' => text.push_str("_by_"),
                c if c.is_ascii_alphanumeric() => text.push(c),
                _ => text.push('_'),
            }
        }
        words.push(text);
    }
    if words.len() == 1 {
        words.push("root".to_owned());
    }
    let joined = words.join("_");
    let mut name = String::new();
    for c in joined.chars() {
        if c == '_' && (name.is_empty() || name.ends_with('_')) {
            continue;
        }
        name.push(c);
    }
    while name.ends_with('_') {
        name.pop();
    }
    name.truncate(custos_core::tool::MAX_TOOL_NAME_CHARS);
    name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn names_come_from_the_method_and_path() {
        assert_eq!(derived(Method::Post, "/refunds"), "post_refunds");
        assert_eq!(derived(Method::Get, "/orders/{order_id}"), "get_orders_by_order_id");
        assert_eq!(derived(Method::Get, "/orders/{order_id}/receipt"), "get_orders_by_order_id_receipt");
        assert_eq!(derived(Method::Delete, "/v1/a-b.c/{x}"), "delete_v1_a_b_c_by_x");
        assert_eq!(derived(Method::Get, "/report.{format}"), "get_report_by_format");
        assert_eq!(derived(Method::Get, "/"), "get_root");
        assert_eq!(derived(Method::Get, "/é/"), "get");
        let long = format!("/{}", "a".repeat(300));
        assert_eq!(derived(Method::Get, &long).len(), custos_core::tool::MAX_TOOL_NAME_CHARS);
        for name in [derived(Method::Get, "/x y/{ä}"), derived(Method::Patch, "/~/{}")] {
            custos_core::check_tool_name(&name).unwrap();
        }
    }
}
