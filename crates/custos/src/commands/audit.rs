//! `custos audit verify / query / tail`; checkpoints and proofs are in `evidence.rs`, exports
//! in `export.rs`.

use std::time::{Duration, UNIX_EPOCH};

use custos_core::EventKind;
use custos_store::{EventQuery, Store, StoredEvent, VerifyReport};

use super::parse_since;
use crate::cli::{AuditCommand, QueryArgs, TailArgs};
use crate::context;
use crate::Failure;

/// How often `tail -f` looks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

pub fn run(cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify { location, json, checkpoint: None, .. } => {
            verify(&context::open_for_reading(&location)?, json)
        }
        AuditCommand::Verify { location, json, checkpoint: Some(file), public_key } => {
            verify(&context::open_for_reading(&location)?, json)?;
            super::evidence::verify_checkpoint(&location, &file, public_key.as_deref(), json)
        }
        AuditCommand::Checkpoint { location, out } => super::evidence::checkpoint(&location, out.as_deref()),
        AuditCommand::CheckpointKey { location } => super::evidence::show_public_key(&location),
        AuditCommand::Proof { location, seq, size } => super::evidence::proof(&location, seq, size),
        AuditCommand::Consistency { location, old, new, proof, public_key } => {
            super::evidence::consistency(&location, &old, &new, proof.as_deref(), public_key.as_deref())
        }
        AuditCommand::Query(args) => query(&args),
        AuditCommand::Tail(args) => tail(&args),
        AuditCommand::Export(args) => super::export::run(&args),
    }
}

fn verify(store: &dyn Store, json: bool) -> Result<(), Failure> {
    let report = store.verify().map_err(Failure::runtime)?;
    match report {
        VerifyReport::Ok { count, head } => {
            let head = head.map_or_else(|| "none".to_owned(), |h| h.to_hex());
            if json {
                println!("{}", serde_json::json!({ "ok": true, "count": count, "head": head }));
            } else {
                println!("OK: {count} events, head {head}");
            }
            Ok(())
        }
        VerifyReport::Broken { seq, problem, detail } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "seq": seq, "problem": problem.as_str(), "detail": detail })
                );
            } else {
                println!("BROKEN at event {seq}: {problem}: {detail}");
            }
            Err(Failure::check(""))
        }
    }
}

fn query(args: &QueryArgs) -> Result<(), Failure> {
    let store = context::open_for_reading(&args.location)?;
    let kind = match &args.kind {
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            Failure::usage(format!("`{k}` is not an event kind: expected one of {}", known.join(", ")))
        })?),
        None => None,
    };
    if let Some(d) = &args.decision {
        if !matches!(d.as_str(), "allow" | "deny" | "hold") {
            return Err(Failure::usage(format!("`{d}` is not a decision: expected allow, deny or hold")));
        }
    }
    let since_ms = args.since.as_deref().map(parse_since).transpose()?;
    let q = EventQuery {
        agent: args.agent.clone(),
        run: args.run.clone(),
        tool: args.tool.clone(),
        decision: args.decision.clone(),
        kind,
        since_ms,
        after_seq: None,
        limit: args.limit,
    };
    for e in store.query(&q).map_err(Failure::runtime)? {
        print_event(&e, args.json);
    }
    Ok(())
}

fn tail(args: &TailArgs) -> Result<(), Failure> {
    let store = context::open_for_reading(&args.location)?;
    let head = store.head().map_err(Failure::runtime)?.map_or(0, |(seq, _)| seq);
    let mut after = head.saturating_sub(args.lines as u64);
    loop {
        let events =
            store.query(&EventQuery { after_seq: Some(after), ..EventQuery::default() }).map_err(Failure::runtime)?;
        for e in &events {
            print_event(e, args.json);
            after = e.seq;
        }
        if !args.follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

fn print_event(e: &StoredEvent, json: bool) {
    let ev = &e.event;
    if json {
        let mut v = serde_json::to_value(ev).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("seq".into(), e.seq.into());
            obj.insert("hash".into(), e.hash.to_hex().into());
            obj.insert("prev".into(), e.prev.to_hex().into());
        }
        println!("{v}");
        return;
    }
    let time = u64::try_from(ev.time_ms)
        .ok()
        .map(|ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
        .unwrap_or_default();
    let dash = || "-".to_owned();
    let summary =
        ev.detail.get("reason").or_else(|| ev.detail.get("outcome")).and_then(|v| v.as_str()).unwrap_or_default();
    println!(
        "{:>6}  {time}  {:<15} agent={} run={} step={} tool={} {}{}",
        e.seq,
        ev.kind.as_str(),
        ev.agent.as_ref().map_or_else(dash, |a| a.0.clone()),
        ev.run.as_ref().map_or_else(dash, |r| r.0.clone()),
        ev.step.map_or_else(dash, |s| s.to_string()),
        ev.tool.as_ref().map_or_else(dash, ToString::to_string),
        ev.decision.as_deref().map(|d| format!("decision={d} ")).unwrap_or_default(),
        summary,
    );
}
