//! csc's extension checks: rules csc enforces on top of CSC v0.1 (RFC 0005).
//!
//! They run only where the v0.1 walk did not deny, so every v0.1 denial
//! keeps its reference reason code; they can only turn an `allow` or a
//! `needs_approval` into a `deny`, never loosen a decision. A failure
//! carries a v0.1 reason code (so decisions stay valid v0.1 documents) and
//! names its extension code in the reason text, e.g.
//! `[CSC_CWD_OUTSIDE_READ_PREFIXES]`.

use super::{Check, Failure, Finding, Flow, paths};
use crate::protocol::contract::Contract;
use crate::protocol::decision::{ReasonCode, Verdict};
use crate::protocol::policy::Policy;

/// The cwd is readable by the command, so it must lie under
/// `allowed_read_prefixes` as a read path would.
pub const CWD_OUTSIDE_READ_PREFIXES: &str = "CSC_CWD_OUTSIDE_READ_PREFIXES";

/// An expected output outside every write scope of the contract.
pub use super::expected_outputs::CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE as EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE;

/// Pre-launch (operator flags): a command's `env_allow` names a variable
/// the operator's `--allow-env` flags (or csc's denylists) refuse.
pub const ENV_NAME_REFUSED: &str = "CSC_ENV_NAME_REFUSED";
/// Pre-launch: a declared read or write scope csc cannot confine (no
/// literal prefix before a glob, `..` in it, or its literal prefix outside
/// the policy's prefixes). Reported as `READ_SCOPE_DENIED` or
/// `WRITE_SCOPE_DENIED` after the field.
pub const SCOPE_REFUSED: &str = "CSC_SCOPE_REFUSED";
/// Pre-launch: a command csc cannot run as declared (duplicate id, empty
/// argv, an id that cannot name a file in `--output-dir`).
pub const COMMAND_REFUSED: &str = "CSC_COMMAND_REFUSED";
/// Pre-launch (hardened mode): `network: allowlisted` without a usable
/// `--egress-allow` list, or without `--output-dir` for its connection log.
pub const EGRESS_UNENFORCEABLE: &str = "CSC_EGRESS_UNENFORCEABLE";

/// Every extension code with the v0.1 code it is reported under.
pub const CODES: [(&str, ReasonCode); 6] = [
    (CWD_OUTSIDE_READ_PREFIXES, ReasonCode::ReadScopeDenied),
    (
        EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE,
        ReasonCode::WriteScopeDenied,
    ),
    (ENV_NAME_REFUSED, ReasonCode::SecretRefNotAllowed),
    (SCOPE_REFUSED, ReasonCode::WriteScopeDenied),
    (COMMAND_REFUSED, ReasonCode::CommandNotAllowed),
    (EGRESS_UNENFORCEABLE, ReasonCode::NetworkExceedsPolicy),
];

/// Which rules `check`, `explain` and `run` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// v0.1 checks plus csc's extension checks (the default).
    #[default]
    Csc,
    /// Exactly the v0.1 reference's checks (conformance suites, interop).
    Reference,
}

/// The text a failed extension check carries: the reason and its code.
pub fn tagged(reason: &str, ext_code: &str) -> String {
    format!("{reason} [{ext_code}]")
}

/// The extension code named in a failure's reason, if any.
pub fn ext_code_of(reason: &str) -> Option<&'static str> {
    CODES
        .iter()
        .map(|(c, _)| *c)
        .find(|c| reason.ends_with(&format!("[{c}]")))
}

/// Walk the extension checks, reporting each to `sink`.
pub fn walk(contract: &Contract, policy: &Policy, sink: &mut dyn FnMut(Finding) -> Flow) {
    for command in &contract.commands {
        // A cwd v0.1 already rejects (not absolute, outside the cwd
        // prefixes) was reported there.
        let cwd_ok = matches!(
            paths::within_prefixes(&command.cwd, &policy.allowed_cwd_prefixes),
            Ok(true)
        );
        let failure = match paths::within_prefixes(&command.cwd, &policy.allowed_read_prefixes) {
            Ok(true) => None,
            _ if !cwd_ok => None,
            _ => Some(Failure {
                verdict: Verdict::Deny,
                code: ReasonCode::ReadScopeDenied,
                reason: tagged(
                    &format!(
                        "cwd is readable by the command but not under allowed_read_prefixes: {}",
                        command.cwd
                    ),
                    CWD_OUTSIDE_READ_PREFIXES,
                ),
            }),
        };
        if sink(Finding {
            command_id: Some(command.id.clone()),
            check: Check::CwdReadable,
            value: command.cwd.clone(),
            failure,
        }) == Flow::Stop
        {
            return;
        }
    }
    let refused = super::expected_outputs::check(contract);
    for out in &contract.expected_outputs {
        let failure = refused.iter().find(|f| &f.value == out).map(|_| Failure {
            verdict: Verdict::Deny,
            code: ReasonCode::WriteScopeDenied,
            reason: tagged(
                &format!("expected output is not inside any command's write_paths: {out}"),
                EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE,
            ),
        });
        if sink(Finding {
            command_id: None,
            check: Check::ExpectedOutput,
            value: out.clone(),
            failure,
        }) == Flow::Stop
        {
            return;
        }
    }
}
