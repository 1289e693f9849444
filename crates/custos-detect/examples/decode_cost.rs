//! What decoding costs: `decode` over every part of the corpus descriptors, `scan_descriptor`
//! over them, and `decode` over 1 MiB of benign text.
//!
//! `cargo run --release -p custos-detect --example decode_cost [-- --show]`; `--show` also prints
//! the findings and redactions of the corpus items whose ids start with `dec-`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Instant;

use custos_detect::{decode, descriptor_parts, redact_result, scan_descriptor, scan_result};
use serde_json::Value;

fn corpus(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/detection").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn main() {
    let show = std::env::args().any(|a| a == "--show");
    let descriptors = corpus("descriptors.json");
    let outputs = corpus("outputs.json");
    if show {
        for item in &descriptors {
            if item["id"].as_str().unwrap().starts_with("dec-") {
                let f = scan_descriptor(item["server"].as_str().unwrap(), &item["descriptor"], &[]);
                for f in f {
                    println!("{}: {} | {}", item["id"], f.rule, f.evidence);
                }
            }
        }
        for item in &outputs {
            if item["id"].as_str().unwrap().starts_with("dec-") {
                for f in scan_result(&item["result"]) {
                    println!("{}: {} | {}", item["id"], f.rule, f.evidence);
                }
                let mut r = item["result"].clone();
                redact_result(&mut r);
                println!("  redacted: {}", r["content"][0]["text"]);
            }
        }
    }

    let rounds = 200;
    let parts: Vec<Vec<String>> =
        descriptors.iter().map(|i| descriptor_parts(&i["descriptor"]).into_iter().map(|p| p.text).collect()).collect();
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..rounds {
        for d in &parts {
            for t in d {
                bytes += decode(t).text.len();
            }
        }
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / (rounds * parts.len()) as f64;
    println!("decode, every part of {} corpus descriptors: {per:.1} µs/descriptor ({bytes} bytes out)", parts.len());

    let started = Instant::now();
    for _ in 0..rounds {
        for i in &descriptors {
            let _ = descriptor_parts(&i["descriptor"]);
        }
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / (rounds * parts.len()) as f64;
    println!("descriptor_parts (listing the parts, no decoding): {per:.1} µs/descriptor");

    let started = Instant::now();
    for _ in 0..rounds {
        for i in &descriptors {
            let _ = scan_descriptor(i["server"].as_str().unwrap(), &i["descriptor"], &[]);
        }
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / (rounds * descriptors.len()) as f64;
    println!("scan_descriptor (all rules, no other tools): {per:.1} µs/descriptor");

    for (name, unit) in [
        (
            "English prose (ASCII)",
            "The quick brown fox jumps over the lazy dog; see https://example.com/a?b=1 for details. ",
        ),
        ("Russian prose", "Съешь же ещё этих мягких французских булок, да выпей чаю. Ссылка: https://example.com/ "),
        (
            "mixed, with encodings",
            "Note SGVsbG8gd29ybGQgZnJvbSB0aGUgdGVzdA== and &lt;b&gt; %69%67 \\u0041 іgnore ｆｕｌｌ x\u{200b}y. ",
        ),
    ] {
        let text = unit.repeat((1 << 20) / unit.len() + 1);
        let started = Instant::now();
        let reps = 5;
        let mut out = 0;
        for _ in 0..reps {
            out = decode(&text).text.len();
        }
        let secs = started.elapsed().as_secs_f64() / f64::from(reps);
        let kib = text.len() as f64 / 1024.0;
        println!(
            "decode, 1 MiB {name}: {:.1} ms, {:.2} µs/KiB, output {:.2}× input",
            secs * 1e3,
            secs * 1e6 / kib,
            out as f64 / text.len() as f64
        );
    }
}
