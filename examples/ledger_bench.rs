//! Fill a ledger for benchmarks and time the appends.
//!
//!     cargo run --release --example ledger_bench -- COUNT STATE_DIR [RUNS]
//!
//! Appends COUNT distinct receipts (~1.3 KiB, shaped like real signed
//! receipts) to the ledger of a new state store in STATE_DIR, each in its
//! own durable transaction exactly as `csc run` does, and prints the
//! per-append latency (median, p99, mean). Then RUNS times (default 200),
//! interleaved: what a run adds — open the store, append one receipt,
//! close — and the baseline of the same run, one 4 KiB write + `fdatasync`
//! of a file in STATE_DIR (the disk's flush latency), with the ratio, the
//! floor (per-run median minus one flush) and the CPU time (user + system)
//! a run costs. Last, RUNS times interleaved, what the ledger adds to the
//! end of a run: the atomic receipt write alone, against opening the store
//! and writing the receipt with the append alongside (as `csc run` does).
use csc::approval::store::Store;
use csc::ledger::{canonical_receipt, db};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ledger_bench COUNT STATE_DIR";
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let runs: usize = args.next().map_or(Ok(200), |r| r.parse())?;
    // TRIM_BYTES=N: trim the log above N bytes in the per-run phase (a
    // lever to measure; the store's default is WAL_TRIM_BYTES).
    let trim: Option<u64> = std::env::var("TRIM_BYTES")
        .ok()
        .map(|t| t.parse())
        .transpose()?;
    let mut store = Store::open(&dir)?;
    let mut times = Vec::with_capacity(count);
    let mut last = Vec::new();
    for i in 0..count {
        let receipt = json!({
            "receipt_version": "csc.receipt.v0.1",
            "contract_id": "ctr-list-repo-0001",
            "execution_id": format!("exec_{:032x}", i),
            "contract_sha256": "5a024e0f0007c896d04cd87fc6ac716bc271e616f4d8c5f439d285f48c4160c5",
            "status": "success",
            "started_at": "2026-11-21T12:00:00.000000+00:00",
            "ended_at": "2026-11-21T12:00:01.000000+00:00",
            "policy_profile": "readonly-dev",
            "policy_schema_version": "csc.policy.v0.1",
            "policy_sha256": "f582b66244ad7f87ebe80fd181a3ae5fa49e7260017fd837746a7793a5b5baf8",
            "runner_version": csc::RUNNER_VERSION,
            "execution_mode": "local",
            "exit_code": 0,
            "stdout_hash": format!("sha256:{}", csc::canonical::sha256_hex(format!("{i}").as_bytes())),
            "stderr_hash": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "artifacts": [],
            "effect_summary": {"files_written": 0, "network_used": false, "secrets_used": 0},
            "completed_command_ids": ["ls-workspace"],
            "failed_command_id": null,
            "error": "",
            "signing_key_id": "ops-1",
            "signature": {"algorithm": "ed25519", "key_id": "ops-1",
                "signed_at": "2026-11-21T12:00:02.000000+00:00",
                "signature": "x".repeat(88)}
        });
        let bytes = canonical_receipt(&receipt);
        if i == count - 1 {
            last = bytes.clone();
        }
        let start = Instant::now();
        db::append(&mut store, &bytes, "2026-11-21T12:00:02.000000+00:00")?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (median, p99, mean) = stats(&mut times);
    println!("append: {count} receipts, median {median:.3} ms, p99 {p99:.3} ms, mean {mean:.3} ms");
    drop(store);

    let flush_file = dir.join("flush-baseline");
    let mut f = std::fs::File::create(&flush_file)?;
    f.write_all(&[0u8; 4096])?;
    f.sync_all()?;
    let (mut run_add, mut flush) = (Vec::new(), Vec::new());
    let mut cpu_ms = 0.0;
    for i in 0..runs {
        // The last receipt with one more member: distinct, still JSON.
        let mut r = last[..last.len() - 1].to_vec();
        r.extend_from_slice(format!(",\"zz_run\":{i}}}").as_bytes());
        let cpu_start = cpu_time_ms()?;
        let start = Instant::now();
        let mut s = Store::open(&dir)?;
        if let Some(t) = trim {
            s.set_trim_threshold(t);
        }
        db::append(&mut s, &r, "2026-11-21T12:00:02.000000+00:00")?;
        drop(s);
        run_add.push(start.elapsed().as_secs_f64() * 1e3);
        cpu_ms += cpu_time_ms()? - cpu_start;
        let start = Instant::now();
        f.write_all_at(&[i as u8; 4096], 0)?;
        f.sync_data()?;
        flush.push(start.elapsed().as_secs_f64() * 1e3);
    }
    // What the ledger adds to a run's end, as `csc run` does it: the
    // atomic receipt write (temp file fsync, rename, directory fsync)
    // alone, against opening the store and then the receipt write with the
    // append alongside it (the two flushes overlap), interleaved.
    let out = csc::fsutil::DirFd::open(&dir.join("receipts"), true)?;
    let (mut alone, mut with_ledger, mut sequential) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let mut r = last[..last.len() - 1].to_vec();
        r.extend_from_slice(format!(",\"zz_end\":{i}}}").as_bytes());
        let name = std::ffi::OsString::from(format!("r{}.json", i % 8));
        let start = Instant::now();
        out.write_atomic(&name, &r)?;
        alone.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let mut s = Store::open(&dir)?;
        let (written, appended) = std::thread::scope(|scope| {
            let append = scope.spawn(|| db::append(&mut s, &r, "2026-11-21T12:00:02.000000+00:00"));
            (out.write_atomic(&name, &r), append.join())
        });
        written?;
        appended.map_err(|_| "append panicked")??;
        drop(s);
        with_ledger.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let mut s = Store::open(&dir)?;
        out.write_atomic(&name, &r)?;
        db::append(&mut s, &r, "2026-11-21T12:00:02.000000+00:00")?;
        drop(s);
        sequential.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (m_alone, _, _) = stats(&mut alone);
    let (m_with, _, _) = stats(&mut with_ledger);
    let (m_seq, _, _) = stats(&mut sequential);
    println!(
        "a run's end: receipt write alone median {m_alone:.3} ms; open store + receipt write with the append alongside median {m_with:.3} ms (the ledger adds {:.3} ms); one after the other {m_seq:.3} ms (adds {:.3} ms)",
        m_with - m_alone,
        m_seq - m_alone
    );
    std::fs::remove_file(&flush_file)?;
    let (m_run, p99_run, _) = stats(&mut run_add);
    let (m_flush, _, _) = stats(&mut flush);
    println!(
        "per run (open + append + close): {runs} runs, median {m_run:.3} ms, p99 {p99_run:.3} ms; baseline 4 KiB write + fdatasync: median {m_flush:.3} ms; ratio {:.2}",
        m_run / m_flush
    );
    println!(
        "floor (per-run median minus one flush): {:.3} ms; CPU (user + system) per run: {:.3} ms",
        m_run - m_flush,
        cpu_ms / runs.max(1) as f64
    );
    Ok(())
}

/// User + system CPU time of this process so far, in ms.
fn cpu_time_ms() -> Result<f64, nix::errno::Errno> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
    Ok(ms(u.user_time()) + ms(u.system_time()))
}

/// Sorts `times`; returns (median, p99, mean).
fn stats(times: &mut [f64]) -> (f64, f64, f64) {
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99), mean)
}
