//! Path templates (`/orders/{order_id}/receipt`) read once, for matching and for the import's
//! checks.

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Matches exactly this text (compared with the request's decoded segment).
    Literal(String),
    /// `{name}`: matches any whole segment.
    Variable(String),
    /// `prefix{name}suffix` (`report.{format}`): one variable inside literal text.
    Mixed { prefix: String, name: String, suffix: String },
}

impl Piece {
    /// How specific the piece is: lower wins when several templates match a path.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 0,
            Self::Mixed { .. } => 1,
            Self::Variable(_) => 2,
        }
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
    /// Whether the template ends with `/` (`/orders/`): a request must too. `/` alone is the
    /// root, with no pieces and no trailing slash.
    pub(crate) trailing_slash: bool,
}

impl Template {
    /// Reads `text`, or says why it is not a template we can match safely: it starts with `/`,
    /// has no empty segment inside, no `.` or `..` segment, no `?`, `#`, `%`, `\` or control
    /// character, balanced braces, at most one variable per segment, each variable once.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let shown = text.escape_debug();
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path template `{shown}` does not start with `/`"));
        };
        if let Some(c) = text.chars().find(|c| c.is_control() || matches!(c, '?' | '#' | '%' | '\\')) {
            return Err(format!("path template `{shown}` holds `{}`", c.escape_debug()));
        }
        let trailing_slash = !rest.is_empty() && rest.ends_with('/');
        let body = if trailing_slash { rest.get(..rest.len() - 1).unwrap_or_default() } else { rest };
        let mut pieces = Vec::new();
        if !rest.is_empty() {
            for segment in body.split('/') {
                pieces.push(piece(segment).map_err(|m| format!("path template `{shown}`: {m}"))?);
            }
        }
        let template = Self { pieces, trailing_slash };
        let mut seen = Vec::new();
        for name in template.variables() {
            if seen.contains(&name) {
                return Err(format!("path template `{shown}` names `{{{name}}}` twice"));
            }
            seen.push(name);
        }
        Ok(template)
    }

    /// The variables, in order.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Literal(_) => None,
            Piece::Variable(name) | Piece::Mixed { name, .. } => Some(name.as_str()),
        })
    }

    /// The template with its variables' names left out: two templates of one shape match the
    /// same paths.
    pub(crate) fn shape(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            out.push('/');
            match p {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(_) => out.push_str("{}"),
                Piece::Mixed { prefix, suffix, .. } => {
                    out.push_str(prefix);
                    out.push_str("{}");
                    out.push_str(suffix);
                }
            }
        }
        if self.trailing_slash || self.pieces.is_empty() {
            out.push('/');
        }
        out
    }
}

fn piece(segment: &str) -> Result<Piece, String> {
    if segment.is_empty() {
        return Err("an empty segment (`//`)".to_owned());
    }
    if segment == "." || segment == ".." {
        return Err(format!("a `{segment}` segment"));
    }
    let Some(open) = segment.find('{') else {
        if segment.contains('}') {
            return Err(format!("unbalanced braces in `{segment}`"));
        }
        return Ok(Piece::Literal(segment.to_owned()));
    };
    let (prefix, after) = segment.split_at(open);
    let after = after.get(1..).unwrap_or_default();
    let Some(close) = after.find('}') else {
        return Err(format!("unbalanced braces in `{segment}`"));
    };
    let (name, suffix) = after.split_at(close);
    let suffix = suffix.get(1..).unwrap_or_default();
    if name.is_empty() || name.contains('{') {
        return Err(format!("`{segment}` is not a variable: expected `{{name}}`"));
    }
    if suffix.contains('{') || suffix.contains('}') {
        return Err(format!("`{segment}` holds more than one variable, which cannot be matched unambiguously"));
    }
    if prefix.is_empty() && suffix.is_empty() {
        Ok(Piece::Variable(name.to_owned()))
    } else {
        Ok(Piece::Mixed { prefix: prefix.to_owned(), name: name.to_owned(), suffix: suffix.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn templates_read_into_pieces() {
        let t = Template::parse("/orders/{order_id}/report.{format}").unwrap();
        assert_eq!(
            t.pieces,
            [
                Piece::Literal("orders".into()),
                Piece::Variable("order_id".into()),
                Piece::Mixed { prefix: "report.".into(), name: "format".into(), suffix: String::new() },
            ]
        );
        assert!(!t.trailing_slash);
        assert_eq!(t.variables().collect::<Vec<_>>(), ["order_id", "format"]);
        assert_eq!(t.shape(), "/orders/{}/report.{}");
        let root = Template::parse("/").unwrap();
        assert!(root.pieces.is_empty() && !root.trailing_slash);
        assert!(Template::parse("/orders/").unwrap().trailing_slash);
        assert_eq!(Template::parse("/a/{x}").unwrap().shape(), Template::parse("/a/{y}").unwrap().shape());
    }

    #[test]
    fn templates_that_cannot_be_matched_safely_are_refused() {
        for (bad, why) in [
            ("orders", "does not start with `/`"),
            ("", "does not start with `/`"),
            ("/a//b", "empty segment"),
            ("//", "empty segment"),
            ("/a/../b", "`..` segment"),
            ("/./b", "`.` segment"),
            ("/a?x=1", "`?`"),
            ("/a#f", "`#`"),
            ("/a%2Fb", "`%`"),
            ("/a\\b", "`\\\\`"),
            ("/a\nb", "`\\n`"),
            ("/a/{x", "unbalanced"),
            ("/a/x}", "unbalanced"),
            ("/a/{}", "not a variable"),
            ("/a/{x}{y}", "more than one variable"),
            ("/a/{x}/{x}", "twice"),
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
