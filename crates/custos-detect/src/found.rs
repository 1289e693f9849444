//! Findings as a scan gathers them: one per rule per descriptor or result, the first match
//! giving the evidence.

use custos_core::Finding;

use crate::rules;

/// The first evidence seen for each rule.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// `(rule, evidence)`, at most one entry per rule.
    first: Vec<(&'static str, String)>,
}

impl Found {
    /// Records `evidence` for `rule` unless the rule already has some.
    pub(crate) fn add(&mut self, rule: &'static str, evidence: impl Into<String>) {
        if !self.has(rule) {
            self.first.push((rule, evidence.into()));
        }
    }

    pub(crate) fn has(&self, rule: &str) -> bool {
        self.first.iter().any(|(r, _)| *r == rule)
    }

    /// The findings, in rule-table order; `kind_of` says each rule's finding kind.
    pub(crate) fn into_findings(mut self, kind_of: impl Fn(&str) -> &'static str) -> Vec<Finding> {
        self.first.sort_by_key(|(rule, _)| rules::rank(rule));
        self.first
            .into_iter()
            .map(|(rule, evidence)| Finding::new(kind_of(rule), rules::severity(rule), rule, evidence.trim()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ids;

    #[test]
    fn one_finding_per_rule_in_table_order() {
        let mut f = Found::default();
        f.add(ids::EXFIL_URL, "second");
        f.add(ids::MODEL_INSTRUCTION, " first ");
        f.add(ids::MODEL_INSTRUCTION, "ignored");
        let out = f.into_findings(|_| "output_injection");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].rule, ids::MODEL_INSTRUCTION);
        assert_eq!(out[0].evidence, "first");
        assert_eq!(out[1].severity, custos_core::Severity::High);
    }
}
