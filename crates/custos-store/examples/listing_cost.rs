//! What recording one `tools/list` costs on a real file (synced commits), for servers of 10,
//! 100 and 1,000 tools: the first listing (every tool pinned on sight, each compared with the
//! ones before it for look-alike names), the same listing again, and the listing with one tool
//! added (the server's pins read and compared with it, for a rename).
//!
//!     cargo run --release -p custos-store --example listing_cost

use std::error::Error;
use std::time::{Duration, Instant};

use custos_core::{EventKind, NewEvent, ToolDescriptor};
use custos_store::{SqlStore, Store};
use serde_json::json;

/// Listings timed per case, averaged.
const RUNS: u32 = 20;

fn tool(i: usize) -> Result<ToolDescriptor, Box<dyn Error>> {
    let raw = json!({
        "name": format!("tool_{i}"),
        "description": format!("Does thing number {i} with care."),
        "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}},
    });
    ToolDescriptor::from_listing("s", raw).ok_or_else(|| "a tool without a name".into())
}

fn listed(time_ms: i64) -> NewEvent {
    NewEvent::new(EventKind::ToolSeen, time_ms)
}

fn main() -> Result<(), Box<dyn Error>> {
    for n in [10usize, 100, 1000] {
        let dir = tempfile::tempdir()?;
        let mut store = SqlStore::open(dir.path().join("custos.db"))?;
        let tools = (0..n).map(tool).collect::<Result<Vec<_>, _>>()?;
        let start = Instant::now();
        store.observe_tools(&tools, &listed(1))?;
        let first = start.elapsed();
        let mut unchanged = Duration::ZERO;
        let mut one_new = Duration::ZERO;
        for run in 0..RUNS {
            let start = Instant::now();
            store.observe_tools(&tools, &listed(2))?;
            unchanged += start.elapsed();
            let mut more = tools.clone();
            more.push(tool(n + 1 + usize::try_from(run)?)?);
            let start = Instant::now();
            store.observe_tools(&more, &listed(3))?;
            one_new += start.elapsed();
        }
        println!(
            "{n:>5} tools: first listing {first:?}, unchanged {:?}, with one new tool {:?}",
            unchanged / RUNS,
            one_new / RUNS
        );
    }
    Ok(())
}
