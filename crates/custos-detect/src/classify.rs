//! The learned classifier on descriptors and results: the built-in models, the segments they
//! read, and the findings they make (rule `classifier`).
//!
//! Two models ship in the binary (`model/descriptor.model`, `model/result.model`); nothing is
//! read from disk or the network at run time. A descriptor is read whole (every part a model
//! is shown, [`crate::parts`]); a result, every text it carries. Each text is judged decoded
//! ([`crate::decode`]). A score at or above a severity's threshold makes one finding, its
//! evidence the score, the strongest stretch of text and the strongest features.

use std::sync::OnceLock;

use custos_core::finding::kinds;
use custos_core::{Finding, Severity, ToolRef};
use serde_json::Value;

use crate::features::Segment;
use crate::model::{Calibrated, Model};
use crate::rules::ids;

static DESCRIPTOR_MODEL: &[u8] = include_bytes!("../model/descriptor.model");
static RESULT_MODEL: &[u8] = include_bytes!("../model/result.model");

/// Which model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Descriptor,
    Result,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Descriptor => "descriptor",
            Self::Result => "result",
        }
    }
}

/// The built-in model for `target`. The artifacts are checked by this crate's tests, so
/// `None` (an unreadable artifact) cannot ship; callers treat it as "no classifier".
pub fn model(target: Target) -> Option<&'static Model> {
    static MODELS: OnceLock<(Option<Model>, Option<Model>)> = OnceLock::new();
    let (d, r) = MODELS.get_or_init(|| (Model::read(DESCRIPTOR_MODEL).ok(), Model::read(RESULT_MODEL).ok()));
    match target {
        Target::Descriptor => d.as_ref(),
        Target::Result => r.as_ref(),
    }
}

/// Scores at or above which the classifier reports a finding of each severity; `None`: that
/// severity is never reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub low: Option<f32>,
    pub medium: Option<f32>,
    pub high: Option<f32>,
}

impl Thresholds {
    /// The model's calibrated thresholds: medium and high, low off (a low finding on a few
    /// percent of real tools is noise).
    pub fn calibrated(target: Target) -> Self {
        model(target).map_or(Self { low: None, medium: None, high: None }, |m| {
            let Calibrated { medium, high, .. } = m.calibrated();
            Self { low: None, medium: Some(medium), high: Some(high) }
        })
    }

    /// The severity of a finding for `score`, if any.
    pub fn severity(&self, score: f32) -> Option<Severity> {
        let at = |t: Option<f32>| t.is_some_and(|t| score >= t);
        if at(self.high) {
            Some(Severity::High)
        } else if at(self.medium) {
            Some(Severity::Medium)
        } else if at(self.low) {
            Some(Severity::Low)
        } else {
            None
        }
    }
}

/// How the classifier runs: on or off, and its thresholds per target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub enabled: bool,
    pub descriptors: Thresholds,
    pub results: Thresholds,
}

impl Settings {
    /// The classifier off: the phrase rules alone.
    pub fn off() -> Self {
        Self { enabled: false, ..Self::default() }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            descriptors: Thresholds::calibrated(Target::Descriptor),
            results: Thresholds::calibrated(Target::Result),
        }
    }
}

/// A score and, when it made a finding, the finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub score: f32,
    pub finding: Option<Finding>,
}

/// The segments of a descriptor the model reads: every part a model is shown, decoded.
pub fn descriptor_segments(descriptor: &Value) -> Vec<Segment> {
    crate::parts::descriptor_parts(descriptor)
        .into_iter()
        .map(|p| {
            let decoded = crate::decode::decode(&p.text);
            segment(p.field.as_str(), p.path, decoded)
        })
        .collect()
}

/// The segments of a result the model reads: each text it carries, decoded.
pub fn result_segments(result: &Value) -> Vec<Segment> {
    let mut out = Vec::new();
    crate::output::each_text(result, &mut |text| {
        let path = format!("text[{}]", out.len());
        out.push(segment("result", path, crate::decode::decode(text)));
    });
    out
}

fn segment(field: &'static str, path: String, decoded: crate::decode::Decoded) -> Segment {
    let mut marks: Vec<&'static str> = decoded.transforms.iter().map(|t| t.kind.as_str()).collect();
    marks.sort_unstable();
    marks.dedup();
    Segment { field, path, text: decoded.text, marks }
}

/// The score of `segments` under `target`'s model, and a finding when `thresholds` say so.
pub fn judge(target: Target, segments: &[Segment], thresholds: &Thresholds) -> Judged {
    let Some(model) = model(target) else {
        return Judged { score: 0.0, finding: None };
    };
    let scored = model.score(segments);
    let finding = thresholds.severity(scored.score).map(|severity| {
        let kind = match target {
            Target::Descriptor => kinds::TOOL_POISONING,
            Target::Result => kinds::OUTPUT_INJECTION,
        };
        let evidence = model.explain(segments, &scored).map_or_else(
            || format!("score {:.2}", scored.score),
            |why| {
                let features: Vec<String> = why.features.iter().map(|(f, c)| format!("{f} {c:+.2}")).collect();
                format!("score {:.2} in {}: \"{}\"; features: {}", why.score, why.path, why.span, features.join(", "))
            },
        );
        Finding::new(kind, severity, ids::CLASSIFIER, &evidence)
    });
    Judged { score: scored.score, finding }
}

/// [`judge`] on one descriptor.
pub fn judge_descriptor(descriptor: &Value, thresholds: &Thresholds) -> Judged {
    judge(Target::Descriptor, &descriptor_segments(descriptor), thresholds)
}

/// [`judge`] on one result.
pub fn judge_result(result: &Value, thresholds: &Thresholds) -> Judged {
    judge(Target::Result, &result_segments(result), thresholds)
}

/// The rules' findings on one descriptor ([`crate::scan_descriptor`]) and, when `settings`
/// has the classifier on, its finding.
pub fn scan_descriptor_with(
    server: &str,
    descriptor: &Value,
    other_tools: &[ToolRef],
    settings: &Settings,
) -> Vec<Finding> {
    let mut findings = crate::scan_descriptor(server, descriptor, other_tools);
    if settings.enabled {
        findings.extend(judge_descriptor(descriptor, &settings.descriptors).finding);
    }
    findings
}

/// The rules' findings on one result ([`crate::scan_result`]) and, when `settings` has the
/// classifier on, its finding.
pub fn scan_result_with(result: &Value, settings: &Settings) -> Vec<Finding> {
    let mut findings = crate::scan_result(result);
    if settings.enabled {
        findings.extend(judge_result(result, &settings.results).finding);
    }
    findings
}

/// [`crate::redact_result`], and the classifier's finding on the result as it came (a
/// classifier finding removes nothing: it names a window, not a span to cut).
pub fn redact_result_with(result: &mut Value, settings: &Settings) -> Vec<Finding> {
    let judged = settings.enabled.then(|| judge_result(result, &settings.results));
    let mut findings = crate::redact_result(result);
    findings.extend(judged.and_then(|j| j.finding));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_models_load() {
        for target in [Target::Descriptor, Target::Result] {
            let m = model(target).unwrap_or_else(|| panic!("the {} model does not load", target.as_str()));
            let meta: Value = serde_json::from_str(m.metadata()).expect("metadata is JSON");
            assert!(meta["version"].is_string(), "{meta}");
            let c = m.calibrated();
            assert!(0.0 < c.low && c.low <= c.medium && c.medium <= c.high && c.high < 1.0, "{c:?}");
        }
    }

    #[test]
    fn thresholds_pick_the_highest_severity_reached() {
        let t = Thresholds { low: None, medium: Some(0.5), high: Some(0.9) };
        assert_eq!(t.severity(0.95), Some(Severity::High));
        assert_eq!(t.severity(0.5), Some(Severity::Medium));
        assert_eq!(t.severity(0.49), None);
        let off = Thresholds { low: None, medium: None, high: None };
        assert_eq!(off.severity(1.0), None);
    }
}
