//! The evidence commands over the verify benchmark's log (a million events by default): how long
//! `custos audit checkpoint` and `custos audit proof` take, and their peak memory against the same
//! binary doing no log work (`custos audit checkpoint-key`), which shows that neither grows with
//! the log's length.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::procfs;

/// One evidence command's run.
#[derive(Debug, Serialize)]
pub struct EvidenceRun {
    pub command: String,
    pub secs: f64,
    /// The largest resident set seen while it ran (sampled every 5 ms from `/proc`).
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct EvidenceResult {
    pub events: u64,
    /// `custos audit checkpoint-key`: the binary's own footprint, no log read.
    pub baseline: EvidenceRun,
    pub checkpoint: EvidenceRun,
    pub proof: EvidenceRun,
}

/// Runs `custos audit ARGS --config CONFIG` to its end, sampling its memory.
fn run(custos: &Path, config: &Path, args: &[&str]) -> Result<EvidenceRun> {
    let start = Instant::now();
    let mut child = std::process::Command::new(custos)
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting custos audit {args:?}"))?;
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(m) = procfs::memory(child.id()) {
            peak = peak.max(m.peak_rss);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("custos audit {args:?} failed: {err}");
    }
    Ok(EvidenceRun { command: format!("custos audit {}", args.join(" ")), secs, peak_rss_bytes: peak })
}

/// The three runs over the log of `events` events that `config` names.
pub fn measure(custos: &Path, config: &Path, events: u64) -> Result<EvidenceResult> {
    let middle = (events / 2).max(1).to_string();
    Ok(EvidenceResult {
        events,
        baseline: run(custos, config, &["checkpoint-key"])?,
        checkpoint: run(custos, config, &["checkpoint"])?,
        proof: run(custos, config, &["proof", "--seq", &middle])?,
    })
}
