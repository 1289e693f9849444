//! The benchmark harness end to end, in miniature: every phase runs against the real binaries
//! and every call succeeds. Nothing here is timed; the numbers are `custos-bench`'s to report.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_short_run_measures_every_path_and_writes_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = Command::new(env!("CARGO_BIN_EXE_custos-bench"))
        .arg("--out")
        .arg(&out)
        .args(["--warmup-ms", "50", "--measure-ms", "200", "--connections", "1,4"])
        .args(["--policies", "10,100", "--policy-ms", "20", "--append-ms", "100"])
        .args(["--guard-secrets", "10,1000", "--guard-ms", "20"])
        .args(["--events", "3000", "--sessions", "12", "--export-events", "2000"])
        .args(["--postgres-replicas", "1,3", "--postgres-connections", "6", "--postgres-measure-ms", "1500"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // Every export pass went through all the events.
    let export = report["export"].as_array().unwrap();
    assert_eq!(export.len(), 6, "{stdout}");
    assert!(export.iter().all(|e| e["events"] == 2000 && e["cpu_us_per_event"].as_f64().unwrap() >= 0.0));

    let load = report["load"].as_array().unwrap();
    let paths: Vec<(&str, &str, u64)> = load
        .iter()
        .map(|l| (l["transport"].as_str().unwrap(), l["path"].as_str().unwrap(), l["connections"].as_u64().unwrap()))
        .collect();
    let mut expected = Vec::new();
    for (transport, path) in [
        ("http", "direct"),
        ("http", "custos serve"),
        ("http", "custos serve traced"),
        ("http", "custos serve classifier off"),
        ("stdio", "direct"),
        ("stdio", "custos run"),
        ("stdio", "custos run traced"),
    ] {
        for connections in [1, 4] {
            expected.push((transport, path, connections));
        }
    }
    assert_eq!(paths, expected);
    for l in load {
        assert_eq!(l["errors"], 0, "{l}");
        assert!(l["calls"].as_u64().unwrap() > 0, "{l}");
        assert!(l["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{l}");
        let gated = l["path"] != "direct";
        assert_eq!(l["gateway_cpu_us_per_call"].is_number(), gated, "{l}");
    }
    assert_eq!(report["comparisons"].as_array().unwrap().len(), 10);
    // The traced gateways exported to the collector, and each traced row has its untraced pair.
    let tracing = &report["tracing"];
    assert!(tracing["trace_exports"].as_u64().unwrap() > 0, "{tracing}");
    let pairs: Vec<(&str, u64)> = tracing["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["path"].as_str().unwrap(), t["connections"].as_u64().unwrap()))
        .collect();
    assert_eq!(pairs, [("custos serve", 1), ("custos serve", 4), ("custos run", 1), ("custos run", 4)]);

    let policy: Vec<u64> =
        report["policy"].as_array().unwrap().iter().map(|p| p["policies"].as_u64().unwrap()).collect();
    assert_eq!(policy, [10, 100]);
    for p in report["policy"].as_array().unwrap() {
        assert!(p["latency_ns"]["p50"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["every_forbid_ns"]["p50"].as_f64().unwrap() > 0.0, "{p}");
    }
    let guard: Vec<(u64, &str)> = report["leak_guard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["secrets"].as_u64().unwrap(), g["message"].as_str().unwrap()))
        .collect();
    assert_eq!(guard, [(10, "clean"), (10, "one hit"), (1000, "clean"), (1000, "one hit")]);
    assert!(report["leak_guard"].as_array().unwrap().iter().all(|g| g["ns_per_kib"].as_f64().unwrap() > 0.0));
    let append = report["audit_append"].as_array().unwrap();
    assert_eq!(append.len(), 2);
    assert!(append.iter().all(|a| a["events"].as_u64().unwrap() > 0));
    assert_eq!(report["audit_verify"]["events"], 3000);

    // The PostgreSQL rows: appends on the file and on the server, then one and three replicas.
    let pg = &report["postgres"];
    let appends: Vec<(&str, u64)> = pg["append"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["store"].as_str().unwrap(), a["writers"].as_u64().unwrap()))
        .collect();
    assert_eq!(appends, [("sqlite", 1), ("sqlite", 64), ("postgres", 1), ("postgres", 64)]);
    for a in pg["append"].as_array().unwrap() {
        assert!(a["events"].as_u64().unwrap() > 0 && a["append_latency_us"]["p50"].as_f64().unwrap() > 0.0, "{a}");
        assert_eq!(a["server_cpu_us_per_event"].is_number(), a["store"] == "postgres", "{a}");
    }
    let replicas = pg["replicas"].as_array().unwrap();
    assert_eq!(replicas.iter().map(|r| r["replicas"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    for r in replicas {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["calls"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["replica_cpu_us_per_call"].as_array().unwrap().len() as u64, r["replicas"].as_u64().unwrap());
        assert!(r["server_cpu_us_per_call"].as_f64().unwrap() > 0.0, "the replicas wrote to PostgreSQL: {r}");
    }
    let memory = &report["memory"];
    assert_eq!(memory["sessions"], 12);
    assert!(memory["idle_rss_bytes"].as_u64().unwrap() > 0);
    assert!(memory["sessions_rss_bytes"].as_u64().unwrap() > 0);
    assert!(!report["targets"].as_array().unwrap().is_empty());
    // The table names each target with its verdict.
    assert!(stdout.contains("targets") && stdout.contains("audit verify"), "{stdout}");
}
