//! csc extension check (not in v0.1): every `expected_outputs` entry must
//! lie inside a declared write scope of the contract, so the receipt only
//! ever hashes files the command was allowed to produce (not `/etc/shadow`
//! or a secret). Pure: judged on the declared strings, like the engine; a
//! glob scope counts by its literal prefix, and `..` is refused because a
//! string prefix says nothing about where `..` leads. At run time the file
//! is additionally opened without following symlinks
//! (`exec::effects::collect_artifacts`).

use crate::engine::paths::{glob_literal_prefix, within_prefixes};
use crate::protocol::contract::Contract;

/// Reason code (csc extension namespace): an expected output is not inside
/// any command's `write_paths`.
pub const CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE: &str = "CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE";

/// One refused expected output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Command the failure is about; `-` (the contract as a whole) here.
    pub command: String,
    /// The offending `expected_outputs` entry.
    pub value: String,
    /// Reason code.
    pub reason: &'static str,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected output {:?} is not inside any command's write_paths",
            self.reason, self.value
        )
    }
}

/// The expected outputs of `contract` that are not inside a write scope.
pub fn check(contract: &Contract) -> Vec<Failure> {
    let scopes: Vec<String> = contract
        .commands
        .iter()
        .flat_map(|c| c.write_paths.iter())
        .map(|w| glob_literal_prefix(w).to_owned())
        .filter(|w| !w.is_empty() && !w.split(['/', '\\']).any(|p| p == ".."))
        .collect();
    contract
        .expected_outputs
        .iter()
        .filter(|out| {
            out.split(['/', '\\']).any(|p| p == "..")
                || !matches!(within_prefixes(out, &scopes), Ok(true))
        })
        .map(|out| Failure {
            command: "-".to_owned(),
            value: out.clone(),
            reason: CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(scopes: &[&str], outputs: &[&str]) -> Contract {
        let v = serde_json::json!({
            "version": "csc.v0.1", "contract_id": "c-1", "intent": "t",
            "actor": {"agent_id": "a", "session_id": "s", "initiating_user": "u", "delegation_scope": "d"},
            "commands": [{"id": "w", "exec": {"argv": ["true"]}, "cwd": "/", "read_paths": [],
                "write_paths": scopes, "network": "deny", "env_allow": [], "secret_refs": [],
                "timeout_sec": 5, "proposed_effect_type": "observe"}],
            "risk_class": "low", "approval_mode": "policy_only", "justification": "t",
            "expected_outputs": outputs
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn outputs_must_be_inside_a_write_scope() {
        let ok = contract(
            &["/w/out/**", "/w/log.txt"],
            &["/w/out/a/b.bin", "/w/log.txt"],
        );
        assert!(check(&ok).is_empty());
        for bad in [
            "/etc/shadow",
            "/w/out/../../etc/shadow",
            "/w/outside",
            "/w/log.txt.bak",
            "relative/x",
        ] {
            let f = check(&contract(&["/w/out/**", "/w/log.txt"], &[bad]));
            assert_eq!(f.len(), 1, "{bad}");
            assert_eq!(f[0].reason, CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE);
            assert_eq!(f[0].command, "-");
        }
        assert_eq!(check(&contract(&[], &["/w/x"])).len(), 1);
    }
}
