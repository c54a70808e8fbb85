//! Write N distinct signed receipts for benchmarks and load tests.
//!
//!     cargo run --release --example gen_signed_receipts -- COUNT OUT_DIR
//!
//! Signs with the TEST ONLY interop key (RFC 8032 test 1, key id
//! `csc-interop-test-key-1`); verify with
//! `--public-key tests/data/interop/keys/test-key.pub.raw --key-id csc-interop-test-key-1`.

use csc::evidence::{keys, signing};
use serde_json::json;
use std::path::{Path, PathBuf};

const KEY_ID: &str = "csc-interop-test-key-1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: gen_signed_receipts COUNT OUT_DIR";
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interop");
    let key = keys::load_signing_key(&root.join("keys/test-key.seed.raw"))?;
    std::fs::create_dir_all(&out)?;
    for i in 0..count {
        let mut receipt = json!({
            "receipt_version": "csc.receipt.v0.1",
            "contract_id": "ctr-list-repo-0001",
            "execution_id": format!("exec-bench-{i:08}"),
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
            "error": ""
        });
        signing::sign_receipt(
            &mut receipt,
            &key,
            KEY_ID,
            "2026-11-21T12:00:02.000000+00:00",
        )?;
        std::fs::write(
            out.join(format!("receipt-{i:06}.json")),
            serde_json::to_string_pretty(&receipt)? + "\n",
        )?;
    }
    println!("wrote {count} signed receipts to {}", out.display());
    Ok(())
}
