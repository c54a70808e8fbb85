//! Regenerate `tests/data/interop/ours-signed/` from `unsigned/`: each
//! receipt signed by csc with the TEST ONLY interop key (RFC 8032 test 1).
//!
//!     cargo run --example interop_sign
//!
//! Then let the reference check them:
//!     /tmp/refenv/bin/python tests/data/interop/regen_reference.py --check-ours

use csc::evidence::{keys, signing};
use std::path::Path;

const KEY_ID: &str = "csc-interop-test-key-1";
const SIGNED_AT: &str = "2026-11-21T12:30:00.000000+00:00";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interop");
    let key = keys::load_signing_key(&root.join("keys/test-key.pkcs8.pem"))?;
    let out = root.join("ours-signed");
    std::fs::create_dir_all(&out)?;
    let mut names: Vec<_> = std::fs::read_dir(root.join("unsigned"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for path in names {
        let mut receipt: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        signing::sign_receipt(&mut receipt, &key, KEY_ID, SIGNED_AT)?;
        let name = path.file_name().ok_or("no file name")?;
        std::fs::write(
            out.join(name),
            serde_json::to_string_pretty(&receipt)? + "\n",
        )?;
        println!("signed {}", name.to_string_lossy());
    }
    Ok(())
}
