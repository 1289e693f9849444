//! The credential shapes the leak guard redacts whether or not the gateway holds the value:
//! well-known token formats whose prefix and alphabet say "this is a credential".
//!
//! Every pattern is ASCII-only (`(?-u)`), so a match starts and ends on a character boundary
//! of any UTF-8 text, and the same compiled regex serves raw bytes and decoded strings.

use std::sync::LazyLock;

use regex::bytes::Regex;

/// One shape: its name (what the audit record and the replacement text say), its pattern, and
/// which capture group is the credential (0: the whole match).
struct RuleSpec {
    name: &'static str,
    pattern: &'static str,
    group: usize,
}

/// The rules, most specific first: when two shapes overlap, the earlier one names the merged
/// redaction (a JWT sent as a bearer token is reported as a `jwt`).
const RULES: &[RuleSpec] = &[
    RuleSpec {
        name: "private_key",
        // Lazy up to the first END line, or to the end of the text when the block was cut off:
        // half a private key is still a leak.
        pattern: r"(?-u)-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.)*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
        group: 0,
    },
    RuleSpec { name: "aws_access_key_id", pattern: r"(?-u)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", group: 0 },
    RuleSpec {
        name: "github_token",
        pattern: r"(?-u)gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
        group: 0,
    },
    RuleSpec { name: "slack_token", pattern: r"(?-u)xox[abposr]-[A-Za-z0-9-]{10,}", group: 0 },
    RuleSpec { name: "stripe_key", pattern: r"(?-u)(?:sk|rk)_live_[0-9A-Za-z]{20,}", group: 0 },
    RuleSpec { name: "google_api_key", pattern: r"(?-u)AIza[0-9A-Za-z_-]{35}", group: 0 },
    // The leading word boundary keeps it off ordinary hyphenated words that happen to contain
    // `sk-` (`disk-encryption-settings-for-prod`). `sk_live_` has an underscore, so the
    // Stripe rule's keys never match here.
    RuleSpec { name: "openai_key", pattern: r"(?-u)\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}", group: 0 },
    RuleSpec { name: "jwt", pattern: r"(?-u)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", group: 0 },
    // Only the token is redacted: `Bearer [REDACTED:bearer_token]` still tells a reader what
    // the header was.
    RuleSpec { name: "bearer_token", pattern: r"(?i-u)\bbearer\s+([A-Za-z0-9._~+/=-]{16,})", group: 1 },
];

/// A compiled rule.
#[derive(Debug)]
pub(super) struct Rule {
    pub(super) name: &'static str,
    /// `[REDACTED:<name>]`, made once.
    pub(super) label: String,
    re: Regex,
    group: usize,
}

impl Rule {
    /// Every match of the rule's credential in `hay`, as byte ranges, leftmost first and not
    /// overlapping each other.
    pub(super) fn find_iter<'h>(&'h self, hay: &'h [u8]) -> Box<dyn Iterator<Item = (usize, usize)> + 'h> {
        if self.group == 0 {
            Box::new(self.re.find_iter(hay).map(|m| (m.start(), m.end())))
        } else {
            Box::new(self.re.captures_iter(hay).filter_map(|c| c.get(self.group)).map(|m| (m.start(), m.end())))
        }
    }
}

/// All rules, and one regex matching any of them for the fast "anything here?" question.
#[derive(Debug)]
pub(super) struct Shapes {
    pub(super) rules: Vec<Rule>,
    any: Option<Regex>,
}

impl Shapes {
    /// Whether any rule matches somewhere in `hay`: one pass over it.
    pub(super) fn is_match(&self, hay: &[u8]) -> bool {
        match &self.any {
            Some(any) => any.is_match(hay),
            None => self.rules.iter().any(|r| r.re.is_match(hay)),
        }
    }
}

/// The compiled shapes, built on first use.
pub(super) fn shapes() -> &'static Shapes {
    static SHAPES: LazyLock<Shapes> = LazyLock::new(compile);
    &SHAPES
}

fn compile() -> Shapes {
    // The patterns are constants, and a test checks that every one compiles; a rule that did
    // not would be skipped rather than take the gateway down.
    let rules = RULES
        .iter()
        .filter_map(|spec| {
            let re = Regex::new(spec.pattern).ok()?;
            Some(Rule { name: spec.name, label: format!("[REDACTED:{}]", spec.name), re, group: spec.group })
        })
        .collect();
    let any = RULES.iter().map(|spec| format!("(?:{})", spec.pattern)).collect::<Vec<_>>().join("|");
    Shapes { rules, any: Regex::new(&any).ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles() {
        let shapes = shapes();
        assert_eq!(shapes.rules.len(), RULES.len());
        assert!(shapes.any.is_some());
    }

    #[test]
    fn no_rule_matches_fewer_bytes_than_a_held_secret() {
        // The guard skips strings shorter than MIN_SECRET_LEN; the shortest match of each rule
        // must not be shorter. (The shortest forms, by hand from the patterns.)
        let shortest = [
            "-----BEGIN PRIVATE KEY-----",
            "AKIAAAAAAAAAAAAAAAAA",
            "github_pat_AAAAAAAAAAAAAAAAAAAAAA",
            "xoxb-AAAAAAAAAA",
            "sk_live_AAAAAAAAAAAAAAAAAAAA",
            "AIzaAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "sk-AAAAAAAAAAAAAAAAAAAA",
            "eyJAAAAA.eyJAAAAA.",
            "bearer AAAAAAAAAAAAAAAA",
        ];
        for (rule, text) in shapes().rules.iter().zip(shortest) {
            let (start, end) =
                rule.find_iter(text.as_bytes()).next().unwrap_or_else(|| panic!("{}: {text}", rule.name));
            assert!(end - start >= crate::MIN_SECRET_LEN, "{}", rule.name);
            // One byte less is no match.
            let cut = &text.as_bytes()[..text.len() - 1];
            let partial = rule.find_iter(cut).next();
            assert!(rule.name == "private_key" || partial.is_none(), "{}", rule.name);
        }
    }

    #[test]
    fn rule_names_are_distinct() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
    }
}
