//! `custos report run RUN`: one run's story (built by `custos_console::story`, as the console's
//! run page is) with the evidence that it is the story the log was given: the hash chain walked
//! over the whole log, and the latest signed checkpoint checked against it.
//!
//! Every string of the story comes from agents and upstreams. The HTML page escapes it
//! (askama, by default), carries no script and allows none (its Content-Security-Policy admits
//! its own stylesheet by digest and nothing else); the Markdown escapes what Markdown would read
//! as markup or HTML.

use std::path::{Path, PathBuf};

use askama::Template;
use custos_console::story::{self, RunStory};
use custos_evidence::{Checkpoint, CheckpointKey};
use custos_store::{EventQuery, Store, VerifyReport};

use super::{page_csp, write_out, STYLE};
use crate::cli::{Location, RunFormat};
use crate::context;
use crate::Failure;

/// Whether the hash chain holds, as far as the run is concerned.
#[derive(Debug)]
pub struct ChainStatus {
    pub ok: bool,
    pub text: String,
}

/// What the latest signed checkpoint says.
#[derive(Debug)]
pub struct CheckpointStatus {
    /// `held`, `not-held`, `none` (no checkpoint found) or `unchecked` (no key to check it with).
    pub state: &'static str,
    /// Whether the checkpoint holds and covers every event of the run.
    pub covers_run: bool,
    pub text: String,
}

#[derive(Template)]
#[template(path = "report_run.html")]
struct RunPage<'a> {
    story: &'a RunStory,
    chain: &'a ChainStatus,
    checkpoint: &'a CheckpointStatus,
    generated: String,
    csp: String,
    style: &'static str,
    counts: Counts,
}

impl RunPage<'_> {
    /// `ms` as a UTC date, for the template.
    fn time(&self, ms: &i64) -> String {
        custos_console::time(*ms)
    }
}

/// How the run's steps were decided, for the summary line.
#[derive(Debug, Default)]
struct Counts {
    allow: usize,
    deny: usize,
    /// Held for an approval, whatever came of it.
    hold: usize,
    credentials: usize,
}

impl Counts {
    fn of(story: &RunStory) -> Self {
        let mut c = Self::default();
        for s in &story.steps {
            match s.decision.as_str() {
                "allow" => c.allow += 1,
                "deny" => c.deny += 1,
                _ => {}
            }
            c.hold += usize::from(s.decision == "hold" || !s.held_by.is_empty());
            c.credentials += s.credential_list.len();
        }
        c
    }
}

pub fn run(location: &Location, run: &str, format: RunFormat, out: Option<&Path>) -> Result<(), Failure> {
    let store = context::open_for_reading(location)?;
    let config = optional_config(location)?;
    let q = EventQuery { run: Some(run.to_owned()), limit: Some(story::MAX_EVENTS), ..EventQuery::default() };
    let events = store.query(&q).map_err(Failure::runtime)?;
    if events.is_empty() {
        return Err(Failure::usage(format!("the audit log has no run `{}`", run.escape_debug())));
    }
    let truncated = events.len() >= story::MAX_EVENTS;
    let story = story::build(run.to_owned(), &events, truncated);
    let chain = chain_status(&store, &story)?;
    let mut checkpoint = checkpoint_status(&store, config.as_ref(), location, &story)?;
    if !chain.ok && checkpoint.state == "held" {
        // A checkpoint covers the stored digests; only the chain ties them to the events' content.
        checkpoint
            .text
            .push_str("; but the chain is broken, so the digests it covers no longer stand for every event's content");
    }
    let generated = custos_console::time(custos_gateway::now_ms());
    let text = match format {
        RunFormat::Html => {
            let page = RunPage {
                story: &story,
                chain: &chain,
                checkpoint: &checkpoint,
                generated,
                csp: page_csp(),
                style: STYLE,
                counts: Counts::of(&story),
            };
            page.render().map_err(|e| Failure::runtime(format!("the report cannot be rendered: {e}")))?
        }
        RunFormat::Markdown => markdown(&story, &chain, &checkpoint, &generated),
    };
    write_out(out, &text)?;
    if !chain.ok || checkpoint.state == "not-held" {
        return Err(Failure::check(""));
    }
    Ok(())
}

/// The config when there is one: with only `--data-dir` the report is still written, without
/// the checkpoint's key.
fn optional_config(location: &Location) -> Result<Option<custos_config::Config>, Failure> {
    let default = PathBuf::from(custos_config::DEFAULT_CONFIG_FILE);
    if location.config.is_none() && location.data_dir.is_some() && !default.exists() {
        return Ok(None);
    }
    context::load_config(location).map(Some)
}

/// The chain walked over the whole log.
fn chain_status(store: &dyn Store, story: &RunStory) -> Result<ChainStatus, Failure> {
    Ok(match store.verify().map_err(Failure::runtime)? {
        VerifyReport::Ok { count, head } => ChainStatus {
            ok: true,
            text: format!(
                "intact: all {count} events verified, head {}",
                head.map_or_else(|| "none".to_owned(), |h| h.to_hex())
            ),
        },
        VerifyReport::Broken { seq, problem, detail } => {
            let scope = if seq > story.last_seq {
                format!("after the run's last event ({}): the run's events verified", story.last_seq)
            } else {
                format!(
                    "at or before the run's last event ({}): the run's events from {seq} on cannot be trusted",
                    story.last_seq
                )
            };
            ChainStatus { ok: false, text: format!("BROKEN at event {seq} ({}): {detail}; {scope}", problem.as_str()) }
        }
    })
}

/// The signed checkpoint of the most events in the checkpoints folder, by its file name
/// (`checkpoint-<size>.json`), and its path.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<(PathBuf, Checkpoint)>, Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::runtime(format!("cannot read the checkpoints in `{}`: {e}", dir.display()))),
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let size = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(size) = size {
            if best.as_ref().is_none_or(|(b, _)| size > *b) {
                best = Some((size, entry.path()));
            }
        }
    }
    let Some((_, path)) = best else { return Ok(None) };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::runtime(format!("cannot read the checkpoint `{}`: {e}", path.display())))?;
    let checkpoint = Checkpoint::parse(&text).map_err(|e| Failure::runtime(format!("`{}`: {e}", path.display())))?;
    Ok(Some((path, checkpoint)))
}

/// Where signed checkpoints are kept: `[audit.checkpoints] dir`, else `<data_dir>/checkpoints`.
pub fn checkpoints_dir(config: Option<&custos_config::Config>, location: &Location) -> Result<PathBuf, Failure> {
    match config {
        Some(c) => Ok(c.audit.checkpoints.as_ref().map_or_else(|| c.data_dir.join("checkpoints"), |s| s.dir.clone())),
        None => Ok(context::data_dir(location)?.join("checkpoints")),
    }
}

/// The latest signed checkpoint, checked against the log with this deployment's key.
fn checkpoint_status(
    store: &dyn Store,
    config: Option<&custos_config::Config>,
    location: &Location,
    story: &RunStory,
) -> Result<CheckpointStatus, Failure> {
    let dir = checkpoints_dir(config, location)?;
    let Some((path, checkpoint)) = latest_checkpoint(&dir)? else {
        return Ok(CheckpointStatus {
            state: "none",
            covers_run: false,
            text: format!(
                "no signed checkpoint in `{}`: a cut or rewritten tail of the log would not show \
                 (switch on [audit.checkpoints], or keep the output of `custos audit checkpoint` there \
                 as checkpoint-SIZE.json)",
                dir.display()
            ),
        });
    };
    let key = config
        .and_then(|c| crate::credentials::master_key(c, false).ok())
        .and_then(|master| CheckpointKey::from_seed(master.checkpoint_seed()).ok());
    let Some(key) = key else {
        return Ok(CheckpointStatus {
            state: "unchecked",
            covers_run: false,
            text: format!(
                "`{}` (size {}) not checked: this deployment's master key is not available here",
                path.display(),
                checkpoint.size
            ),
        });
    };
    let signed = custos_console::time(checkpoint.time_ms);
    Ok(match super::super::evidence::holds(store, &checkpoint, key.public_key())? {
        Ok(()) => {
            let covers_run = story.last_seq <= checkpoint.size;
            let coverage = if covers_run {
                format!("covers every event of the run (events {} to {})", story.first_seq, story.last_seq)
            } else {
                format!(
                    "does not yet cover the run's events after {} (the run's last is {})",
                    checkpoint.size, story.last_seq
                )
            };
            CheckpointStatus {
                state: "held",
                covers_run,
                text: format!(
                    "held: signed {signed} by key {} over the first {} events, root {}; {coverage}",
                    checkpoint.key_id, checkpoint.size, checkpoint.root
                ),
            }
        }
        Err(why) => CheckpointStatus {
            state: "not-held",
            covers_run: false,
            text: format!("NOT HELD: `{}` (signed {signed}, size {}): {why}", path.display(), checkpoint.size),
        },
    })
}

/// `text` safe to put in Markdown prose or a table cell: nothing in it is read as emphasis, a
/// link, an autolink, HTML or a new line.
pub fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            // `scheme://` and `www.` would be links: the escape keeps them text.
            ':' if rest.starts_with("//") => out.push_str("\\:"),
            '.' if out.len() >= 3 && out.get(out.len() - 3..).is_some_and(|t| t.eq_ignore_ascii_case("www")) => {
                out.push_str("\\.");
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a Markdown code span: shown as it is, whatever it holds.
pub fn code(text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
}

/// The report as Markdown.
fn markdown(story: &RunStory, chain: &ChainStatus, checkpoint: &CheckpointStatus, generated: &str) -> String {
    use std::fmt::Write as _;
    let mut m = String::new();
    let _ = writeln!(m, "# Run {}\n", code(&story.run));
    let _ = writeln!(m, "| | |\n|---|---|");
    let _ = writeln!(m, "| Agent | {} |", md(&story.agent));
    let _ = writeln!(m, "| On behalf of | {} |", md(&story.principal));
    let _ = writeln!(m, "| From | {} |", md(&story.timeline.start));
    let _ = writeln!(m, "| To | {} |", md(&story.timeline.end));
    let _ = writeln!(m, "| Steps | {} |", story.steps.len());
    let _ = writeln!(m, "| Events | {} (seq {} to {}) |", story.events, story.first_seq, story.last_seq);
    let _ = writeln!(m, "| Audit chain | {} |", md(&chain.text));
    let _ = writeln!(m, "| Signed checkpoint | {} |", md(&checkpoint.text));
    let _ = writeln!(m, "| Generated | {} |\n", md(generated));
    if story.truncated {
        let _ = writeln!(m, "**The run has more events than the report reads; the latest are not shown.**\n");
    }
    if !story.errors.is_empty() {
        let _ = writeln!(m, "## Errors of the run\n");
        for e in &story.errors {
            let _ = writeln!(m, "- {}", md(e));
        }
        m.push('\n');
    }
    let _ = writeln!(m, "## Steps\n");
    if story.steps.is_empty() {
        let _ = writeln!(m, "No steps recorded.\n");
    }
    for s in &story.steps {
        let decision = if s.decision.is_empty() { "undecided" } else { s.decision.as_str() };
        let _ = writeln!(m, "### Step {}: {} {}\n", s.step, code(&s.tool), md(decision).to_uppercase());
        // Values are escaped where they are put together: `row` takes Markdown.
        let mut row = |name: &str, value: String| {
            if !value.is_empty() {
                let _ = writeln!(m, "- **{name}:** {value}");
            }
        };
        row("Time", md(&s.time));
        row("Events", format!("{} to {}", s.first_seq, s.last_seq));
        row("Class", md(&s.class));
        if s.decision != "hold" {
            row("Held by", md(&s.held_by));
        }
        row("Policies", md(&s.policies));
        row("Reason", md(&s.reason));
        if !s.arguments.is_empty() {
            row("Arguments", code(&s.arguments));
        }
        if let Some(a) = &s.approval {
            let mut text = format!("{} {}", code(&a.id), md(&a.state));
            if !a.by.is_empty() {
                text.push_str(&format!(" by **{}** at {}", md(&a.by), md(&a.at)));
            }
            if !a.reason.is_empty() {
                text.push_str(&format!(": {}", md(&a.reason)));
            }
            row("Approval", text);
            if !a.by.is_empty() {
                let mut identity = format!("method {}", code(&a.identity_method));
                for (what, value) in [("issuer", &a.issuer), ("subject", &a.subject)] {
                    if !value.is_empty() {
                        identity.push_str(&format!(", {what} {}", code(value)));
                    }
                }
                row("Approver identity", identity);
            }
        }
        let credentials: Vec<String> = s
            .credential_list
            .iter()
            .map(|c| format!("{} fingerprint {}", code(&c.name), code(&c.fingerprint)))
            .collect();
        row("Credentials", credentials.join("; "));
        row("Findings", md(&s.findings.join(", ")));
        row("Outcome", md(&s.outcome));
        row("Latency", md(&s.latency));
        row("Errors", md(&s.errors.join("; ")));
        m.push('\n');
    }
    if !story.findings.is_empty() {
        let _ = writeln!(m, "## Findings\n\n| step | kind | severity | rule |\n|---|---|---|---|");
        for f in &story.findings {
            let step = f.step.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let _ = writeln!(m, "| {step} | {} | {} | {} |", md(&f.kind), md(&f.severity), md(&f.rule));
        }
        m.push('\n');
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_reads_hostile_text_as_text() {
        let hostile =
            "<script>alert(1)</script> | [x](javascript:y) `code` **b** https://evil.test www.evil.test\nnext";
        let safe = md(hostile);
        assert_eq!(
            safe,
            "&lt;script&gt;alert(1)&lt;/script&gt; \\| \\[x\\](javascript:y) \\`code\\` \\*\\*b\\*\\* \
             https\\://evil.test www\\.evil.test next"
        );
        assert_eq!(code("a ``b`` c"), "``` a ``b`` c ```");
        assert_eq!(code("x\ny"), "` x y `");
    }

    #[test]
    fn the_page_escapes_every_value_from_the_log() {
        // The gateway refuses such a tool name; a log written by anyone else may hold one.
        let hostile = "<script>alert(1)</script>\"'&";
        let step = custos_console::story::StepView {
            step: 1,
            tool: hostile.into(),
            class: hostile.into(),
            decision: "allow".into(),
            reason: hostile.into(),
            arguments: hostile.into(),
            findings: vec![hostile.into()],
            ..Default::default()
        };
        let story = RunStory { run: hostile.into(), agent: hostile.into(), steps: vec![step], ..Default::default() };
        let chain = ChainStatus { ok: true, text: hostile.into() };
        let checkpoint = CheckpointStatus { state: "none", covers_run: false, text: hostile.into() };
        let page = RunPage {
            story: &story,
            chain: &chain,
            checkpoint: &checkpoint,
            generated: String::new(),
            csp: page_csp(),
            style: STYLE,
            counts: Counts::of(&story),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert_eq!(html.matches("&#60;script&#62;").count() + html.matches("&lt;script&gt;").count(), 10, "{html}");
        assert!(!html.contains("\"'&<"), "{html}");
    }

    #[test]
    fn the_latest_checkpoint_is_the_largest_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointKey::from_seed(&[3; 32]).unwrap();
        for size in [9_u64, 10, 2] {
            let c = key.sign(size, &[1; 32], 5);
            std::fs::write(dir.path().join(format!("checkpoint-{size}.json")), serde_json::to_string(&c).unwrap())
                .unwrap();
        }
        std::fs::write(dir.path().join("checkpoint-99.json.tmp"), "partial").unwrap();
        let (path, c) = latest_checkpoint(dir.path()).unwrap().unwrap();
        assert_eq!(c.size, 10);
        assert!(path.ends_with("checkpoint-10.json"));
        assert!(latest_checkpoint(&dir.path().join("missing")).unwrap().is_none());
    }
}
