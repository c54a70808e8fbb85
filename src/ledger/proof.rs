//! Offline proofs (RFC 0011): an inclusion proof of one receipt, or a
//! consistency proof between two checkpointed sizes, each carrying the
//! signed checkpoint(s) it is anchored to, checked with only a keyring.
//!
//! ```json
//! {"proof_version": "csc.ledger-proof.v1", "type": "inclusion",
//!  "leaf_index": 3, "tree_size": 8, "leaf_hash": "<hex>",
//!  "audit_path": ["<hex>", ...], "checkpoint": <DSSE envelope>}
//! {"proof_version": "csc.ledger-proof.v1", "type": "consistency",
//!  "first_size": 5, "second_size": 8, "proof": ["<hex>", ...],
//!  "first_checkpoint": <DSSE envelope>, "second_checkpoint": <DSSE envelope>}
//! ```

use serde_json::{Map, Value, json};

use super::merkle::{self, Hash};
use super::{Checkpoint, parse_hash};
use crate::canonical::hex;
use crate::evidence::dsse::Envelope;
use crate::evidence::keyring::Keyring;

/// `proof_version` of a proof document.
pub const PROOF_VERSION: &str = "csc.ledger-proof.v1";
/// Largest proof file read.
pub const MAX_PROOF_BYTES: u64 = 1024 * 1024;
/// Longest hash list accepted (a tree of 2^64 leaves needs 64; a
/// consistency proof at most twice that).
pub const MAX_PATH: usize = 128;

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(|h| hex(h)).collect()
}

/// An inclusion proof document.
pub fn inclusion(index: u64, leaves: &[Hash], checkpoint: &Envelope, size: u64) -> Option<Value> {
    let path = merkle::inclusion_proof(index as usize, leaves.get(..size as usize)?)?;
    Some(json!({
        "proof_version": PROOF_VERSION, "type": "inclusion",
        "leaf_index": index, "tree_size": size,
        "leaf_hash": hex(&leaves[index as usize]), "audit_path": hexes(&path),
        "checkpoint": checkpoint.to_value(),
    }))
}

/// A consistency proof document.
pub fn consistency(
    leaves: &[Hash],
    first: (u64, &Envelope),
    second: (u64, &Envelope),
) -> Option<Value> {
    let proof = merkle::consistency_proof(first.0 as usize, leaves.get(..second.0 as usize)?)?;
    Some(json!({
        "proof_version": PROOF_VERSION, "type": "consistency",
        "first_size": first.0, "second_size": second.0, "proof": hexes(&proof),
        "first_checkpoint": first.1.to_value(), "second_checkpoint": second.1.to_value(),
    }))
}

fn get<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a Value, String> {
    o.get(k).ok_or_else(|| format!("proof has no {k:?}"))
}

fn uint(o: &Map<String, Value>, k: &str) -> Result<u64, String> {
    get(o, k)?
        .as_u64()
        .ok_or_else(|| format!("proof {k:?} is not a whole number"))
}

fn path(o: &Map<String, Value>, k: &str) -> Result<Vec<Hash>, String> {
    let items = get(o, k)?
        .as_array()
        .ok_or_else(|| format!("proof {k:?} is not an array"))?;
    if items.len() > MAX_PATH {
        return Err(format!(
            "proof {k:?} has {} hashes (max {MAX_PATH})",
            items.len()
        ));
    }
    items
        .iter()
        .map(|h| {
            h.as_str().and_then(parse_hash).ok_or_else(|| {
                format!("proof {k:?} holds a value that is not 64 lowercase hex digits")
            })
        })
        .collect()
}

fn anchored(
    o: &Map<String, Value>,
    k: &str,
    keyring: &Keyring,
    size: u64,
) -> Result<(Checkpoint, Hash, Vec<String>), String> {
    let env = Envelope::from_value(get(o, k)?.clone()).map_err(|e| format!("{k}: {e}"))?;
    let (cp, keys) = Checkpoint::verified(&env, keyring).map_err(|e| format!("{k}: {e}"))?;
    if cp.tree_size != size {
        return Err(format!(
            "{k} covers {} entries, the proof claims {size}",
            cp.tree_size
        ));
    }
    let root = parse_hash(&cp.root_hash).ok_or("checkpoint root is malformed")?;
    Ok((cp, root, keys))
}

fn only(o: &Map<String, Value>, keys: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("proof has unknown member {k:?}")),
        None => Ok(()),
    }
}

/// Verify a proof document offline. `receipt` (canonical bytes) is
/// required for an inclusion proof. Returns a one-line summary.
pub fn verify(proof: &Value, receipt: Option<&[u8]>, keyring: &Keyring) -> Result<String, String> {
    let o = proof.as_object().ok_or("proof is not a JSON object")?;
    if get(o, "proof_version")?.as_str() != Some(PROOF_VERSION) {
        return Err(format!(
            "unsupported proof_version (expected {PROOF_VERSION:?})"
        ));
    }
    match get(o, "type")?.as_str() {
        Some("inclusion") => {
            only(
                o,
                &[
                    "proof_version",
                    "type",
                    "leaf_index",
                    "tree_size",
                    "leaf_hash",
                    "audit_path",
                    "checkpoint",
                ],
            )?;
            let (index, size) = (uint(o, "leaf_index")?, uint(o, "tree_size")?);
            let audit = path(o, "audit_path")?;
            let leaf = get(o, "leaf_hash")?
                .as_str()
                .and_then(parse_hash)
                .ok_or("proof leaf_hash is malformed")?;
            let receipt = receipt.ok_or("an inclusion proof is checked against its RECEIPT")?;
            if merkle::leaf_hash(receipt) != leaf {
                return Err("the receipt is not the one this proof is for (leaf hash differs: edited receipt or another receipt)".to_owned());
            }
            let (cp, root, keys) = anchored(o, "checkpoint", keyring, size)?;
            if !merkle::verify_inclusion(index, size, &leaf, &audit, &root) {
                return Err(format!(
                    "inclusion proof does not lead to the signed root of {size} entries (tampered proof)"
                ));
            }
            Ok(format!(
                "receipt is entry {index} of the ledger of store {}, covered by the checkpoint of {size} entries signed at {} by {}",
                cp.store_id,
                cp.timestamp,
                keys.join(", ")
            ))
        }
        Some("consistency") => {
            only(
                o,
                &[
                    "proof_version",
                    "type",
                    "first_size",
                    "second_size",
                    "proof",
                    "first_checkpoint",
                    "second_checkpoint",
                ],
            )?;
            let (m, n) = (uint(o, "first_size")?, uint(o, "second_size")?);
            let proof = path(o, "proof")?;
            let (c1, r1, _) = anchored(o, "first_checkpoint", keyring, m)?;
            let (c2, r2, _) = anchored(o, "second_checkpoint", keyring, n)?;
            if c1.store_id != c2.store_id {
                return Err("the two checkpoints belong to different stores".to_owned());
            }
            if !merkle::verify_consistency(m, n, &r1, &r2, &proof) {
                return Err(format!(
                    "the log of {n} entries does not extend the log of {m} entries (history rewritten, or tampered proof)"
                ));
            }
            Ok(format!(
                "the ledger of store {} at {n} entries extends its state at {m} entries",
                c1.store_id
            ))
        }
        _ => Err("proof type must be inclusion or consistency".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<u64>().prop_map(|n| json!(n)),
            "[a-z0-9]{0,70}".prop_map(Value::String),
            Just(json!(PROOF_VERSION)),
            Just(json!("inclusion")),
            Just(json!("consistency")),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("proof_version".to_owned()),
                        Just("type".to_owned()),
                        Just("leaf_index".to_owned()),
                        Just("tree_size".to_owned()),
                        Just("audit_path".to_owned()),
                        Just("checkpoint".to_owned()),
                        Just("first_size".to_owned()),
                        Just("proof".to_owned()),
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn proof_verifier_never_panics_nor_passes_garbage(v in arb_json()) {
            let ring = Keyring::single("k", ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
            let receipt: &[u8] = br"{}".as_slice();
            let outcome = verify(&v, Some(receipt), &ring);
            prop_assert!(outcome.is_err());
        }
    }
}
