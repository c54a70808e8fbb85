//! Signed approvals and quorum (RFC 0010).
//!
//! An approval file is either a plain v0.1 ApprovalArtifact or a DSSE
//! envelope ([`crate::evidence::dsse`]) of payload type
//! [`APPROVAL_PAYLOAD_TYPE`] whose payload is that artifact. With an
//! approver keyring every approval must be an envelope whose every
//! signature verifies with a usable keyring key; a quorum needs that many
//! approvals from pairwise distinct approver identities and keys. The
//! approvals a run went ahead on are written to an approval record that
//! the receipt binds as an artifact (see [`record`]).

use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::evidence::dsse::{self, Envelope, SigOutcome};
use crate::evidence::keyring::Keyring;
use crate::protocol::approval::{Approval, ApprovalScope};
use crate::protocol::contract::{ApprovalMode, Contract, RiskClass};
use crate::protocol::load;

/// DSSE payload type of a signed approval (the payload is the v0.1
/// ApprovalArtifact JSON).
pub const APPROVAL_PAYLOAD_TYPE: &str = "application/vnd.csc.approval.v0.1+json";
/// Version tag of the approval record a receipt binds.
pub const RECORD_VERSION: &str = "csc.approval-record.v0.1";
/// Most `--approval` files one run accepts.
pub const MAX_APPROVALS: usize = 16;
/// Largest quorum an operator may ask for.
pub const MAX_REQUIRED: u32 = MAX_APPROVALS as u32;

/// An approval file as read: the artifact, and its envelope when signed.
#[derive(Debug, Clone)]
pub struct LoadedApproval {
    /// The path as given (for messages).
    pub shown: String,
    /// The v0.1 artifact (the envelope's payload when signed).
    pub approval: Approval,
    /// The DSSE envelope, when the file is one.
    pub envelope: Option<Envelope>,
    /// SHA-256 (hex) of the file's bytes.
    pub file_sha256: String,
}

/// Read an approval file: a DSSE envelope (recognized by its
/// `payloadType` member) or a plain v0.1 artifact. Strict, size-capped.
pub fn load_file(path: &Path) -> Result<LoadedApproval, String> {
    use crate::fsutil::{CappedReadError, read_regular_file_capped};
    let shown = path.display().to_string();
    let bytes =
        read_regular_file_capped(path, dsse::MAX_ENVELOPE_BYTES as u64).map_err(|e| match e {
            CappedReadError::NotAFile => format!("approval {shown} is not a regular file"),
            CappedReadError::TooLarge { size } => format!(
                "approval {shown} is {size} bytes (max {})",
                dsse::MAX_ENVELOPE_BYTES
            ),
            CappedReadError::Io(e) => format!("cannot read approval {shown}: {e}"),
        })?;
    from_bytes(&bytes, &shown)
}

/// [`load_file`] on bytes already read; `shown` names them in errors.
pub fn from_bytes(bytes: &[u8], shown: &str) -> Result<LoadedApproval, String> {
    let file_sha256 = crate::canonical::sha256_hex(bytes);
    let looks_signed = crate::protocol::strict_json::parse(bytes)
        .ok()
        .is_some_and(|v| v.get("payloadType").is_some());
    if !looks_signed {
        if bytes.len() > crate::protocol::limits::MAX_ARTIFACT_BYTES {
            return Err(format!(
                "approval {shown} is {} bytes (max {})",
                bytes.len(),
                crate::protocol::limits::MAX_ARTIFACT_BYTES
            ));
        }
        let approval = load::approval_from_bytes(bytes, shown).map_err(|e| e.to_string())?;
        return Ok(LoadedApproval {
            shown: shown.to_owned(),
            approval,
            envelope: None,
            file_sha256,
        });
    }
    let envelope = Envelope::parse(bytes).map_err(|e| format!("signed approval {shown}: {e}"))?;
    envelope
        .expect_type(APPROVAL_PAYLOAD_TYPE)
        .map_err(|e| format!("signed approval {shown}: {e}"))?;
    let approval = load::approval_from_bytes(&envelope.payload, &format!("{shown} (payload)"))
        .map_err(|e| e.to_string())?;
    Ok(LoadedApproval {
        shown: shown.to_owned(),
        approval,
        envelope: Some(envelope),
        file_sha256,
    })
}

/// Sign `approval` into a DSSE envelope.
pub fn sign(approval: &Approval, key: &ed25519_dalek::SigningKey, key_id: &str) -> Envelope {
    let payload = serde_json::to_vec(approval).unwrap_or_default();
    Envelope::sign(APPROVAL_PAYLOAD_TYPE, payload, &[(key, key_id)])
}

/// How many approvals a run needs (`--approvals-required`): one number, or
/// per contract risk class (`critical=2,high=1`; unlisted classes need 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// The same count for every contract.
    All(u32),
    /// A count per risk class.
    PerClass(BTreeMap<&'static str, u32>),
}

impl Default for Required {
    fn default() -> Self {
        Required::All(1)
    }
}

fn count(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if !(1..=MAX_REQUIRED).contains(&n) {
        return Err(format!("{n} must be between 1 and {MAX_REQUIRED}"));
    }
    Ok(n)
}

impl std::str::FromStr for Required {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if !text.contains('=') {
            return count(text.trim()).map(Required::All);
        }
        let mut map = BTreeMap::new();
        for part in text.split(',') {
            let (class, n) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not CLASS=N"))?;
            let class = match class.trim() {
                "low" => RiskClass::Low,
                "medium" => RiskClass::Medium,
                "high" => RiskClass::High,
                "critical" => RiskClass::Critical,
                other => {
                    return Err(format!(
                        "unknown risk class {other:?} (low, medium, high, critical)"
                    ));
                }
            };
            if map.insert(class.as_str(), count(n.trim())?).is_some() {
                return Err(format!("risk class {} given twice", class.as_str()));
            }
        }
        Ok(Required::PerClass(map))
    }
}

impl Required {
    /// The count for a contract of `class`.
    pub fn for_class(&self, class: RiskClass) -> u32 {
        match self {
            Required::All(n) => *n,
            Required::PerClass(m) => m.get(class.as_str()).copied().unwrap_or(1),
        }
    }
}

/// Approvals a needs-approval contract requires: `--approvals-required`
/// for its risk class, and with signatures verified (`signed`) at least
/// two for `approval_mode: dual_control_required`.
pub fn required_for(required: &Required, contract: &Contract, signed: bool) -> u32 {
    let n = required.for_class(contract.risk_class);
    if signed && contract.approval_mode == ApprovalMode::DualControlRequired {
        n.max(2)
    } else {
        n
    }
}

/// An approval the run may go ahead on.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The loaded file.
    pub file: LoadedApproval,
    /// Key ids whose signatures verified (empty without a keyring).
    pub key_ids: Vec<String>,
}

/// Why the approvals cannot authorize this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    /// Names the approval (file and id) and the reason.
    pub message: String,
    /// The receipt status is `expired` rather than `blocked`.
    pub expired: bool,
}

fn blocked(message: String) -> GateError {
    GateError {
        message,
        expired: false,
    }
}

/// Verify one approval's signatures against the approver keyring; returns
/// the key ids that signed it. Every signature must verify with a key that
/// is usable both at the approval's `approved_at` and now.
pub fn verify_signatures(
    file: &LoadedApproval,
    keyring: &Keyring,
    now: Timestamp,
) -> Result<Vec<String>, GateError> {
    let id = &file.approval.approval_id;
    let shown = &file.shown;
    let Some(envelope) = &file.envelope else {
        return Err(blocked(format!(
            "approval rejected: unsigned approval {shown} (approval_id={id:?}); --approver-keyring requires DSSE-signed approvals (csc approve)"
        )));
    };
    let now_text = crate::time::rfc3339(now);
    let outcomes = envelope.verify(|keyid| {
        keyring
            .usable_key(keyid, Some(&file.approval.approved_at))
            .and_then(|_| keyring.usable_key(keyid, Some(&now_text)))
            .copied()
            .map_err(|e| e.to_string())
    });
    let mut keys = Vec::new();
    for (keyid, outcome) in outcomes {
        match outcome {
            SigOutcome::Valid => keys.push(keyid),
            SigOutcome::KeyRejected(why) => {
                return Err(blocked(format!(
                    "approval rejected: signing key not trusted: {why} (approval {shown}, approval_id={id:?})"
                )));
            }
            SigOutcome::BadSignature => {
                return Err(blocked(format!(
                    "approval rejected: tampered: the signature by key {keyid:?} does not verify (approval {shown}, approval_id={id:?})"
                )));
            }
        }
    }
    if keys.iter().collect::<BTreeSet<_>>().len() != keys.len() {
        return Err(blocked(format!(
            "approval rejected: one key signed it twice (approval {shown}, approval_id={id:?})"
        )));
    }
    Ok(keys)
}

/// Decide whether `files` authorize a run of the contract hashed
/// `contract_sha256` at `now`. Without a keyring: the v0.1 checks on each
/// approval (signatures, if any, are not verified). With one: signatures
/// first, then the v0.1 checks, then the quorum of `required` approvals
/// from distinct approval ids, approver identities and keys.
pub fn gate(
    files: Vec<LoadedApproval>,
    contract_sha256: &str,
    now: Timestamp,
    keyring: Option<&Keyring>,
    required: u32,
) -> Result<Vec<Accepted>, GateError> {
    let mut accepted = Vec::with_capacity(files.len());
    for file in files {
        let key_ids = match keyring {
            Some(k) => verify_signatures(&file, k, now)?,
            None => Vec::new(),
        };
        if let Err(p) = super::check(&file.approval, contract_sha256, now) {
            return Err(GateError {
                message: format!("{p} (approval {})", file.shown),
                expired: p.is_expiry(),
            });
        }
        accepted.push(Accepted { file, key_ids });
    }
    let mut ids = BTreeMap::new();
    let mut identities = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for a in &accepted {
        let shown = &a.file.shown;
        if let Some(other) = ids.insert(a.file.approval.approval_id.as_str(), shown) {
            return Err(blocked(format!(
                "approval rejected: {other} and {shown} are the same approval (approval_id={:?}); each approval counts once",
                a.file.approval.approval_id
            )));
        }
        if keyring.is_none() {
            continue;
        }
        let identity = a.file.approval.approver.identity.as_str();
        if let Some(other) = identities.insert(identity, shown) {
            return Err(blocked(format!(
                "approval rejected: {other} and {shown} are both from approver {identity:?}; a quorum needs distinct approvers"
            )));
        }
        for k in &a.key_ids {
            if let Some(other) = keys.insert(k.as_str(), shown) {
                return Err(blocked(format!(
                    "approval rejected: {other} and {shown} are both signed by key {k:?}; a quorum needs distinct approver keys"
                )));
            }
        }
    }
    if (accepted.len() as u64) < u64::from(required) {
        return Err(blocked(format!(
            "approval quorum not met: {required} approvals from distinct approvers are required, {} given",
            accepted.len()
        )));
    }
    Ok(accepted)
}

/// The approval ids a run must consume (its `single_execution` ones).
pub fn single_use_ids(accepted: &[Accepted]) -> Vec<String> {
    accepted
        .iter()
        .filter(|a| a.file.approval.scope == ApprovalScope::SingleExecution)
        .map(|a| a.file.approval.approval_id.clone())
        .collect()
}

/// The approval record (`csc.approval-record.v0.1`, JSON, one line): which
/// approvals a run went ahead on, with the signing key ids and the full
/// envelopes so an auditor can re-verify them offline.
pub fn record(
    accepted: &[Accepted],
    execution_id: &str,
    contract_sha256: &str,
    required: u32,
    verified: bool,
) -> Vec<u8> {
    let approvals: Vec<Value> = accepted
        .iter()
        .map(|a| {
            let ap = &a.file.approval;
            json!({
                "approval_id": ap.approval_id,
                "approver_identity": ap.approver.identity,
                "scope": ap.scope,
                "key_ids": a.key_ids,
                "file_sha256": a.file.file_sha256,
                "envelope": a.file.envelope.as_ref().map(Envelope::to_value),
                "approval": if a.file.envelope.is_none() { serde_json::to_value(ap).unwrap_or(Value::Null) } else { Value::Null },
            })
        })
        .collect();
    let value = json!({
        "record_version": RECORD_VERSION,
        "execution_id": execution_id,
        "contract_sha256": contract_sha256,
        "approvals_required": required,
        "signatures_verified": verified,
        "approvals": approvals,
    });
    let mut bytes = crate::canonical::to_canonical_bytes(&value, crate::canonical::Nulls::Keep);
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::approval::{ApprovalMethod, Approver};
    use base64::Engine as _;
    use ed25519_dalek::SigningKey;

    const SHA: &str = "abababababababababababababababababababababababababababababababab";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn approval(id: &str, who: &str) -> Approval {
        Approval {
            approval_version: "csc.approval.v0.1".into(),
            approval_id: id.into(),
            contract_sha256: SHA.into(),
            approver: Approver {
                identity: who.into(),
                method: ApprovalMethod::Cli,
            },
            approved_at: crate::time::rfc3339_in(-60),
            expires_at: crate::time::rfc3339_in(3600),
            scope: ApprovalScope::SingleExecution,
            ticket_id: None,
            reason: None,
        }
    }

    fn signed(id: &str, who: &str, seed: u8, kid: &str) -> LoadedApproval {
        let env = sign(&approval(id, who), &key(seed), kid);
        from_bytes(&env.to_line(), &format!("{id}.dsse")).unwrap()
    }

    fn ring(entries: &[(&str, u8, &str)]) -> Keyring {
        let keys: Vec<String> = entries
            .iter()
            .map(|(id, seed, extra)| {
                let pk = base64::engine::general_purpose::STANDARD
                    .encode(key(*seed).verifying_key().as_bytes());
                format!(r#"{{"key_id":"{id}","public_key":"{pk}"{extra}}}"#)
            })
            .collect();
        let text = format!(
            r#"{{"keyring_version":"csc.keyring.v1","keys":[{}]}}"#,
            keys.join(",")
        );
        Keyring::from_bytes(text.as_bytes(), "t").unwrap()
    }

    fn err(r: Result<Vec<Accepted>, GateError>) -> String {
        r.unwrap_err().message
    }

    #[test]
    fn signed_quorum_and_every_refusal_is_named() {
        let kr = ring(&[
            ("alice-k", 1, ""),
            ("bob-k", 2, ""),
            ("old", 3, r#","revoked":true"#),
        ]);
        let now = Timestamp::now();
        let a = signed("a1", "alice", 1, "alice-k");
        let b = signed("b1", "bob", 2, "bob-k");
        let ok = gate(vec![a.clone(), b.clone()], SHA, now, Some(&kr), 2).unwrap();
        assert_eq!(ok[0].key_ids, vec!["alice-k".to_owned()]);

        // Tampered twin: payload edited after signing.
        let mut t = a.clone();
        let env = t.envelope.as_mut().unwrap();
        env.payload = serde_json::to_vec(&approval("a1", "mallory")).unwrap();
        let t = from_bytes(&env.to_line(), "t.dsse").unwrap();
        assert!(err(gate(vec![t], SHA, now, Some(&kr), 1)).contains("tampered"));
        // Unsigned.
        let plain =
            from_bytes(&serde_json::to_vec(&approval("p", "x")).unwrap(), "p.json").unwrap();
        assert!(err(gate(vec![plain.clone()], SHA, now, Some(&kr), 1)).contains("unsigned"));
        // ... still fine without a keyring (v0.1 interop).
        assert!(gate(vec![plain], SHA, now, None, 1).is_ok());
        // Revoked and unknown keys.
        let r = signed("r1", "carol", 3, "old");
        assert!(err(gate(vec![r], SHA, now, Some(&kr), 1)).contains("revoked"));
        let u = signed("u1", "dave", 9, "nobody");
        assert!(err(gate(vec![u], SHA, now, Some(&kr), 1)).contains("unknown key_id"));
        // A known key id with another key's signature.
        let f = signed("f1", "eve", 9, "bob-k");
        assert!(err(gate(vec![f], SHA, now, Some(&kr), 1)).contains("tampered"));
        // Wrong contract, expired.
        let mut w = approval("w1", "alice");
        w.contract_sha256 = "c".repeat(64);
        let w = from_bytes(&sign(&w, &key(1), "alice-k").to_line(), "w").unwrap();
        assert!(err(gate(vec![w], SHA, now, Some(&kr), 1)).contains("contract_sha256 mismatch"));
        let mut x = approval("x1", "alice");
        x.approved_at = crate::time::rfc3339_in(-7200);
        x.expires_at = crate::time::rfc3339_in(-3600);
        let x = from_bytes(&sign(&x, &key(1), "alice-k").to_line(), "x").unwrap();
        let e = gate(vec![x], SHA, now, Some(&kr), 1).unwrap_err();
        assert!(e.expired && e.message.contains("expired"), "{e:?}");
        // Quorum: too few, same identity, same key, same approval twice.
        assert!(err(gate(vec![a.clone()], SHA, now, Some(&kr), 2)).contains("quorum not met"));
        let a2 = signed("a2", "alice", 2, "bob-k");
        assert!(
            err(gate(vec![a.clone(), a2], SHA, now, Some(&kr), 2)).contains("distinct approvers")
        );
        let b2 = signed("b2", "bob", 1, "alice-k");
        assert!(
            err(gate(vec![a.clone(), b2], SHA, now, Some(&kr), 2))
                .contains("distinct approver keys")
        );
        assert!(err(gate(vec![a.clone(), a], SHA, now, Some(&kr), 2)).contains("same approval"));
    }

    #[test]
    fn key_windows_apply_to_approved_at_and_now() {
        let kr = ring(&[("k", 1, r#","not_after":"2020-01-01T00:00:00Z""#)]);
        let a = signed("a1", "alice", 1, "k");
        let e = err(gate(vec![a], SHA, Timestamp::now(), Some(&kr), 1));
        assert!(e.contains("expired at"), "{e}");
    }

    #[test]
    fn envelope_with_foreign_payload_type_or_bad_payload_is_refused() {
        let env = Envelope::sign(
            "application/vnd.in-toto+json",
            serde_json::to_vec(&approval("a", "b")).unwrap(),
            &[(&key(1), "k")],
        );
        assert!(
            from_bytes(&env.to_line(), "f")
                .unwrap_err()
                .contains("payloadType")
        );
        let env = Envelope::sign(APPROVAL_PAYLOAD_TYPE, b"{}".to_vec(), &[(&key(1), "k")]);
        assert!(from_bytes(&env.to_line(), "f").is_err());
    }

    #[test]
    fn required_parses_counts_and_classes() {
        assert_eq!("2".parse::<Required>(), Ok(Required::All(2)));
        let r: Required = "critical=2,high=1".parse().unwrap();
        assert_eq!(r.for_class(RiskClass::Critical), 2);
        assert_eq!(r.for_class(RiskClass::Low), 1);
        for bad in [
            "0",
            "17",
            "-1",
            "x",
            "critical=0",
            "huge=2",
            "high=1,high=2",
            "high",
        ] {
            assert!(bad.parse::<Required>().is_err(), "{bad}");
        }
    }

    #[test]
    fn record_lists_ids_and_key_ids() {
        let a = signed("a1", "alice", 1, "alice-k");
        let acc = vec![Accepted {
            file: a,
            key_ids: vec!["alice-k".into()],
        }];
        let bytes = record(&acc, "exec_1", SHA, 1, true);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["approvals"][0]["approval_id"], "a1");
        assert_eq!(v["approvals"][0]["key_ids"][0], "alice-k");
        assert!(v["approvals"][0]["envelope"]["payloadType"].is_string());
    }

    proptest::proptest! {
        #[test]
        fn approval_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = from_bytes(&bytes, "p");
        }
    }
}
