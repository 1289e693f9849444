//! What one metric update costs on the request path, and what rendering `/metrics` costs.
//!
//! `cargo bench -p custos-metrics --bench updates` (a plain timing loop, no harness): a
//! pipeline call makes about five updates (a decision counter, three or four stage timings).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use custos_metrics::{Registry, LATENCY_BUCKETS};

const N: u32 = 2_000_000;

fn per_update(what: &str, mut f: impl FnMut(u32)) {
    // Warm up: the series exist before the clock starts.
    for i in 0..10_000 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..N {
        f(black_box(i));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    println!("{what:<40} {ns:>8.1} ns");
}

fn main() {
    let registry = Registry::new();
    let calls = registry.counter("custos_calls_total", "c", &["agent", "decision"]);
    let duration = registry.histogram("custos_call_duration_seconds", "d", &["stage"], LATENCY_BUCKETS);
    let sessions = registry.gauge("custos_sessions", "s", &["server"]);
    let agents: Vec<String> = (0..10).map(|i| format!("agent-{i}")).collect();

    per_update("counter inc (2 labels, 20 series)", |i| {
        calls.inc(&[&agents[(i % 10) as usize], if i % 2 == 0 { "allow" } else { "deny" }]);
    });
    per_update("histogram observe (1 label, 4 series)", |i| {
        duration.observe(&[["policy", "audit", "upstream", "whole"][(i % 4) as usize]], f64::from(i % 1000) * 1e-5);
    });
    per_update("gauge inc + dec (1 label)", |_| {
        sessions.inc(&["sample"]);
        sessions.dec(&["sample"]);
    });
    per_update("timer start + observe", |_| {
        let timer = duration.start_timer(&["policy"]);
        timer.observe();
    });

    let start = Instant::now();
    let rounds = 1_000;
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes += registry.render().len();
    }
    let us = start.elapsed().as_micros() as f64 / f64::from(rounds);
    println!("{:<40} {us:>8.1} µs ({} bytes)", "render /metrics", bytes / rounds as usize);
}
