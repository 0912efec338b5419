//! Printing results: one JSON line on stdout per scenario, and a readable summary on stderr.

use std::time::Duration;

use serde_json::{json, Value};

/// What a scenario produced.
pub struct Outcome {
    /// The parameters it ran with.
    pub params: Value,
    /// Its measurements.
    pub results: Value,
    /// Readable lines for the summary.
    pub summary: Vec<String>,
}

/// The 1-minute load average (other work on the machine shows up here).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({"cores": cores, "cpu": cpu, "kernel": kernel})
}

/// Prints the JSON line and the summary.
pub fn emit(scenario: &str, out: Outcome, load_before: f64, load_after: f64, elapsed: Duration) {
    let line = json!({
        "scenario": scenario,
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": machine(),
        "loadavg_1m": {"before": r2(load_before), "after": r2(load_after)},
        "elapsed_s": r2(elapsed.as_secs_f64()),
        "params": out.params,
        "results": out.results,
    });
    println!("{line}");
    eprintln!(
        "== {scenario} ({:.1}s, load {load_before:.2} -> {load_after:.2})",
        elapsed.as_secs_f64()
    );
    for l in out.summary {
        eprintln!("   {l}");
    }
}

/// Rounds to 3 decimals (for JSON readability).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to 2 decimals.
pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
