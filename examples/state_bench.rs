//! What the state store adds to a run, and sustained append throughput,
//! for the SQLite store and PostgreSQL (RFC 0014).
//!
//!     cargo run --release --example state_bench -- LOCATION RUNS THREADS APPENDS
//!
//! LOCATION is a state directory or a `postgres://` URL (migrated). Prints
//! the median/p99 of RUNS runs' store work as `csc run` does it (open,
//! consume one approval, append one receipt, close), each phase's median,
//! the same work on one long-lived connection (as `csc mcp` does it), and
//! the appends/s of THREADS concurrent writers appending APPENDS receipts
//! in total (one connection each).

use csc::state::Location;
use std::path::Path;
use std::time::Instant;

fn receipt(tag: &str) -> Vec<u8> {
    // ~1.3 KiB, shaped like a signed receipt.
    format!(
        r#"{{"artifacts":[],"completed_command_ids":["t"],"contract_id":"ctr-bench","contract_sha256":"5a024e0f0007c896d04cd87fc6ac716bc271e616f4d8c5f439d285f48c4160c5","effect_summary":{{"files_written":0,"network_used":false,"secrets_used":0}},"ended_at":"2026-11-21T12:00:01.000000+00:00","error":"","execution_id":"exec_{tag}","execution_mode":"local","exit_code":0,"failed_command_id":null,"policy_profile":"bench","policy_sha256":"f582b66244ad7f87ebe80fd181a3ae5fa49e7260017fd837746a7793a5b5baf8","receipt_version":"csc.receipt.v0.1","runner_version":"csc","signature":{{"algorithm":"ed25519","key_id":"ops-1","signature":"{}","signed_at":"2026-11-21T12:00:02.000000+00:00"}},"started_at":"2026-11-21T12:00:00.000000+00:00","status":"success","stderr_hash":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","stdout_hash":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}"#,
        "x".repeat(600)
    )
    .into_bytes()
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// (median, p99) of `v`, in place.
fn quantiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [loc, runs, threads, appends] = args.as_slice() else {
        return Err("usage: state_bench LOCATION RUNS THREADS APPENDS".into());
    };
    let location = if loc.starts_with("postgres") {
        Location::Url(loc.clone())
    } else {
        Location::Dir(Path::new(loc).to_path_buf())
    };
    let (runs, threads, appends): (usize, usize, usize) =
        (runs.parse()?, threads.parse()?, appends.parse()?);
    let pid = std::process::id();
    let (mut total, mut open, mut consume, mut append) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let start = Instant::now();
        let mut s = location.open()?;
        open.push(ms(start));
        let t = Instant::now();
        s.consume_all(
            &[format!("appr-{pid}-{i}")],
            "h",
            &format!("e{pid}-{i}"),
            "now",
        )?
        .map_err(|e| format!("{e:?}"))?;
        consume.push(ms(t));
        let t = Instant::now();
        s.append(&receipt(&format!("{pid}_{i}")), "now")?;
        append.push(ms(t));
        drop(s);
        total.push(ms(start));
    }
    let (m, p) = quantiles(&mut total);
    println!(
        "per run, new connection (open + consume + append + close): {runs} runs, median {m:.3} ms, p99 {p:.3} ms"
    );
    println!(
        "  phase medians: open {:.3} ms, consume {:.3} ms, append {:.3} ms",
        quantiles(&mut open).0,
        quantiles(&mut consume).0,
        quantiles(&mut append).0
    );
    let mut s = location.open()?;
    let mut kept = vec![];
    for i in 0..runs {
        let start = Instant::now();
        s.consume_all(
            &[format!("appr-{pid}-k{i}")],
            "h",
            &format!("e{pid}-k{i}"),
            "now",
        )?
        .map_err(|e| format!("{e:?}"))?;
        s.append(&receipt(&format!("{pid}_k{i}")), "now")?;
        kept.push(ms(start));
    }
    drop(s);
    let (m, p) = quantiles(&mut kept);
    println!(
        "per run, one kept connection (consume + append): {runs} runs, median {m:.3} ms, p99 {p:.3} ms"
    );
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let location = location.clone();
            let n = appends / threads;
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = location.open().map_err(|e| e.to_string())?;
                for i in 0..n {
                    s.append(&receipt(&format!("{pid}_t{t}_{i}")), "now")
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = appends / threads * threads;
    println!(
        "sustained: {total} appends by {threads} writers in {secs:.2} s = {:.0} appends/s",
        total as f64 / secs
    );
    Ok(())
}
