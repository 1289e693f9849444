//! The detection corpus (`tests/detection/` at the repository root): benign and malicious tool
//! descriptors and results, each saying which rules it should set off. Prints each rule's
//! precision and recall (`cargo test -p custos-detect --test corpus -- --nocapture`) and holds
//! every rule to at least 0.9 of both, with no benign item raising a high finding.
//!
//! An item is `{ "id", "family": "<rule id>|benign", "expect": [rule ids], "server",
//! "descriptor" | "result", "note" }`; a descriptor item may add `"other_tools": ["SERVER/TOOL"]`.
//! For shadowing, each descriptor is scanned with every other server's tools in the corpus as
//! `other_tools`, as the gateway would with every configured server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use custos_core::{Finding, Severity, ToolRef};
use custos_detect::{rules, scan_descriptor, scan_result};
use serde_json::Value;

const MIN_PRECISION: f64 = 0.9;
const MIN_RECALL: f64 = 0.9;
const MIN_BENIGN_DESCRIPTORS: usize = 25;
const MIN_BENIGN_OUTPUTS: usize = 20;
const MIN_MALICIOUS_PER_FAMILY: usize = 4;

fn corpus(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/detection").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let items: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut ids = BTreeSet::new();
    for item in &items {
        let id = item["id"].as_str().expect("every item has an id");
        assert!(ids.insert(id.to_owned()), "duplicate id `{id}` in {name}");
        assert!(item["note"].as_str().is_some_and(|n| !n.is_empty()), "`{id}` has no note");
        let family = item["family"].as_str().expect("family");
        let expect = expected(item);
        if family == "benign" {
            assert!(expect.is_empty(), "benign `{id}` expects findings");
        } else {
            assert!(expect.contains(family), "`{id}` of family `{family}` does not expect it");
        }
    }
    items
}

fn expected(item: &Value) -> BTreeSet<String> {
    item["expect"].as_array().expect("expect").iter().map(|v| v.as_str().expect("rule id").to_owned()).collect()
}

/// True and false positives and false negatives of one rule.
#[derive(Default, Debug)]
struct Tally {
    tp: usize,
    fp: usize,
    fn_: usize,
    /// Items written to exercise this rule (`family` equal to it).
    items: usize,
}

impl Tally {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

struct Evaluation {
    tallies: BTreeMap<String, Tally>,
    benign: usize,
    /// `(item, rule, severity)` of findings on benign items.
    benign_findings: Vec<(String, String, Severity)>,
    /// `(item, expected, got)` for every item whose findings differ from what it expects.
    mismatches: Vec<(String, BTreeSet<String>, BTreeSet<String>)>,
}

fn evaluate(items: &[Value], applies: &[&str], scan: impl Fn(&Value) -> Vec<Finding>) -> Evaluation {
    let mut tallies: BTreeMap<String, Tally> = rules()
        .iter()
        // The phrase rules; the learned classifier is measured on its own corpus by
        // `custos-bench detection`.
        .filter(|r| applies.contains(&r.applies_to) && r.id != custos_detect::ids::CLASSIFIER)
        .map(|r| (r.id.to_owned(), Tally::default()))
        .collect();
    let mut eval =
        Evaluation { tallies: BTreeMap::new(), benign: 0, benign_findings: Vec::new(), mismatches: Vec::new() };
    for item in items {
        let id = item["id"].as_str().unwrap().to_owned();
        let family = item["family"].as_str().unwrap();
        let expect = expected(item);
        let findings = scan(item);
        let got: BTreeSet<String> = findings.iter().map(|f| f.rule.clone()).collect();
        if family == "benign" {
            eval.benign += 1;
            eval.benign_findings.extend(findings.iter().map(|f| (id.clone(), f.rule.clone(), f.severity)));
        } else {
            tallies.get_mut(family).unwrap_or_else(|| panic!("`{id}`: unknown family `{family}`")).items += 1;
        }
        for rule in expect.union(&got) {
            let t = tallies.get_mut(rule).unwrap_or_else(|| panic!("`{id}`: rule `{rule}` does not apply here"));
            match (expect.contains(rule), got.contains(rule)) {
                (true, true) => t.tp += 1,
                (false, true) => t.fp += 1,
                (true, false) => t.fn_ += 1,
                (false, false) => {}
            }
        }
        if expect != got {
            eval.mismatches.push((id, expect, got));
        }
    }
    eval.tallies = tallies;
    eval
}

fn report(title: &str, eval: &Evaluation) {
    println!(
        "\n{title}: {} items ({} benign)",
        eval.tallies.values().map(|t| t.items).sum::<usize>() + eval.benign,
        eval.benign
    );
    println!("{:<22} {:>5} {:>4} {:>4} {:>4} {:>9} {:>7}", "family", "items", "tp", "fp", "fn", "precision", "recall");
    for (rule, t) in &eval.tallies {
        println!(
            "{:<22} {:>5} {:>4} {:>4} {:>4} {:>9.2} {:>7.2}",
            rule,
            t.items,
            t.tp,
            t.fp,
            t.fn_,
            t.precision(),
            t.recall()
        );
    }
    for (id, expect, got) in &eval.mismatches {
        println!("  mismatch {id}: expected {expect:?}, got {got:?}");
    }
    for (id, rule, severity) in &eval.benign_findings {
        println!("  benign {id}: {rule} ({severity})");
    }
}

fn check(title: &str, eval: &Evaluation, min_benign: usize) {
    report(title, eval);
    assert!(eval.benign >= min_benign, "{title}: {} benign items, want {min_benign}", eval.benign);
    for (rule, t) in &eval.tallies {
        assert!(
            t.items >= MIN_MALICIOUS_PER_FAMILY,
            "{title}: {} items for `{rule}`, want {MIN_MALICIOUS_PER_FAMILY}",
            t.items
        );
        assert!(t.precision() >= MIN_PRECISION, "{title}: `{rule}` precision {:.2}", t.precision());
        assert!(t.recall() >= MIN_RECALL, "{title}: `{rule}` recall {:.2}", t.recall());
    }
    let loud: Vec<_> = eval.benign_findings.iter().filter(|(_, _, s)| *s >= Severity::High).collect();
    assert!(loud.is_empty(), "{title}: benign items with high findings: {loud:?}");
}

#[test]
fn descriptor_corpus() {
    let items = corpus("descriptors.json");
    let all_tools: Vec<ToolRef> = items
        .iter()
        .map(|i| ToolRef::new(i["server"].as_str().unwrap(), i["descriptor"]["name"].as_str().unwrap()).unwrap())
        .collect();
    let eval = evaluate(&items, &["descriptor", "both"], |item| {
        let server = item["server"].as_str().unwrap();
        let mut others: Vec<ToolRef> = all_tools.iter().filter(|t| t.server() != server).cloned().collect();
        if let Some(extra) = item.get("other_tools").and_then(Value::as_array) {
            others.extend(extra.iter().map(|t| t.as_str().unwrap().parse::<ToolRef>().unwrap()));
        }
        scan_descriptor(server, &item["descriptor"], &others)
    });
    check("descriptors", &eval, MIN_BENIGN_DESCRIPTORS);
}

#[test]
fn output_corpus() {
    let items = corpus("outputs.json");
    let eval = evaluate(&items, &["output", "both"], |item| scan_result(&item["result"]));
    check("outputs", &eval, MIN_BENIGN_OUTPUTS);
}

#[test]
fn redaction_clears_every_malicious_output() {
    for item in corpus("outputs.json") {
        let mut result = item["result"].clone();
        let found = custos_detect::redact_result(&mut result);
        assert_eq!(found, scan_result(&item["result"]), "{}", item["id"]);
        assert!(scan_result(&result).is_empty(), "{} still has findings after redaction: {result}", item["id"]);
        if found.is_empty() {
            assert_eq!(result, item["result"], "{}: a clean result was changed", item["id"]);
        }
    }
}
