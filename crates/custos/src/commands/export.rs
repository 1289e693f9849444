//! `custos audit export`: the log's events as OCSF or JSON lines, a page at a time (memory does
//! not grow with the log), to standard output or a file.

use std::io::Write;

use custos_siem::{Format, Record};
use custos_store::{EventQuery, Store};

use super::parse_since;
use crate::cli::ExportArgs;
use crate::context;
use crate::Failure;

/// Events read per query.
const PAGE: usize = 1000;

/// One end of the range: a sequence number or a time (milliseconds since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Seq(u64),
    Time(i64),
}

fn bound(text: &str) -> Result<Bound, Failure> {
    match text.parse::<u64>() {
        Ok(seq) => Ok(Bound::Seq(seq)),
        Err(_) => parse_since(text).map(Bound::Time),
    }
}

pub fn run(args: &ExportArgs) -> Result<(), Failure> {
    let format = match args.format.as_str() {
        "ocsf" => Format::Ocsf,
        "jsonl" => Format::Jsonl,
        other => return Err(Failure::usage(format!("`{other}` is not an export format: expected ocsf or jsonl"))),
    };
    let since = args.since.as_deref().map(bound).transpose()?;
    let until = args.until.as_deref().map(bound).transpose()?;
    let store = context::open_for_reading(&args.location)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = match since {
        Some(Bound::Seq(seq)) => seq,
        _ => 0,
    };
    let since_ms = match since {
        Some(Bound::Time(ms)) => Some(ms),
        _ => None,
    };
    let (mut count, mut first, mut last) = (0u64, None, 0u64);
    'pages: loop {
        let q = EventQuery { after_seq: Some(after), since_ms, limit: Some(PAGE), ..EventQuery::default() };
        let page = store.query(&q).map_err(Failure::runtime)?;
        for e in &page {
            after = e.seq;
            match until {
                Some(Bound::Seq(end)) if e.seq > end => break 'pages,
                Some(Bound::Time(end)) if e.event.time_ms >= end => continue,
                _ => {}
            }
            let record = Record::encode(format, e);
            writeln!(out, "{}", record.json).map_err(|e| Failure::runtime(format!("cannot write the export: {e}")))?;
            count += 1;
            first.get_or_insert(e.seq);
            last = e.seq;
        }
        if page.len() < PAGE {
            break;
        }
    }
    out.flush().map_err(|e| Failure::runtime(format!("cannot write the export: {e}")))?;
    match first {
        Some(first) => eprintln!("custos: exported {count} events (seq {first} to {last})"),
        None => eprintln!("custos: exported no events"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_sequence_numbers_or_times() {
        assert_eq!(bound("42").unwrap(), Bound::Seq(42));
        assert_eq!(bound("2026-01-31T12:00:00Z").unwrap(), Bound::Time(1_769_860_800_000));
        assert!(matches!(bound("1h").unwrap(), Bound::Time(_)));
        assert!(bound("yesterday-ish").is_err());
    }
}
