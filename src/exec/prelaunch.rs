//! The pre-launch checks of `csc run` that need neither the file system
//! nor a process: they depend only on the contract, the policy and the
//! operator's flags. `csc run` makes them before anything is launched and
//! writes a blocked receipt naming the first failure; `csc check` and
//! `csc explain` evaluate the very same functions (given the same operator
//! flags), so they say what `run` will say, with the same message.
//!
//! Checks only `run` can make (they look at the file system as it is at
//! launch: cwd and scope resolution, missing scopes, argv\[0\] lookup, csc's
//! own paths) are listed in docs/run.md#what-only-run-can-check.

use crate::egress::EgressConfig;
use crate::protocol::contract::{Command, Contract, NetworkMode};
use crate::protocol::decision::ReasonCode;
use crate::protocol::policy::Policy;

use super::{env, paths};

use crate::engine::ext::{COMMAND_REFUSED, EGRESS_UNENFORCEABLE, ENV_NAME_REFUSED, SCOPE_REFUSED};

/// The operator settings the pre-launch checks depend on.
#[derive(Debug, Clone, Copy)]
pub struct Operator<'a> {
    /// `--allow-env` (with csc's defaults and denylists).
    pub env_allow: &'a env::EnvAllowlist,
    /// Whether `--output-dir` is given.
    pub output_dir: bool,
    /// `Some` in hardened mode: the `--egress-allow*` settings.
    pub egress: Option<&'a EgressConfig>,
}

/// One failed pre-launch check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command it is about (`None`: the whole contract).
    pub command_id: Option<String>,
    /// Short stable name of the check (as `csc explain` shows it).
    pub check: &'static str,
    /// The value that was checked.
    pub value: String,
    /// The extension code.
    pub ext_code: &'static str,
    /// The v0.1 code a decision reports it under.
    pub code: ReasonCode,
    /// The message: exactly the error of `csc run`'s blocked receipt.
    pub message: String,
}

/// Hardened mode and `network: allowlisted`: the allowlist must be given
/// and valid, and `--output-dir` must keep the connection log. `csc run`
/// makes this check first, before the policy decision.
pub fn egress(contract: &Contract, op: &Operator<'_>) -> Option<Refusal> {
    let cfg = op.egress?;
    let cmd = contract
        .commands
        .iter()
        .find(|cmd| cmd.network == NetworkMode::Allowlisted)?;
    let message = if cfg.allow.is_empty() {
        format!("command {:?}: {}", cmd.id, crate::egress::MISSING_ALLOWLIST)
    } else if let Err(e) = cfg.compile() {
        e
    } else if !op.output_dir {
        format!(
            "command {:?} declares network: allowlisted: hardened mode records every connection in <command_id>.egress.jsonl and needs --output-dir DIR to keep it; nothing was run",
            cmd.id
        )
    } else {
        return None;
    };
    Some(Refusal {
        command_id: Some(cmd.id.clone()),
        check: "egress_allowlist",
        value: "allowlisted".to_owned(),
        ext_code: EGRESS_UNENFORCEABLE,
        code: ReasonCode::NetworkExceedsPolicy,
        message,
    })
}

/// Every failing static check, in the order `csc run` makes them (it stops
/// at the first): duplicate ids, `--output-dir` ids, empty argv, env names,
/// declared scopes. Expected outputs outside write scopes are a decision
/// extension check already ([`crate::engine::ext`]).
pub fn commands(contract: &Contract, policy: &Policy, op: &Operator<'_>) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for cmd in &contract.commands {
        let mut refuse = |check, value: &str, ext_code, code, message| {
            out.push(Refusal {
                command_id: Some(cmd.id.clone()),
                check,
                value: value.to_owned(),
                ext_code,
                code,
                message,
            });
        };
        let duplicate = !seen.insert(cmd.id.as_str());
        command_shape(cmd, op, duplicate, &mut refuse);
        env_and_scopes(cmd, policy, op, &mut refuse);
    }
    out
}

/// How [`commands`] records one refusal: check, value, extension code,
/// v0.1 reason code, message.
type Refuse<'r> = dyn FnMut(&'static str, &str, &'static str, ReasonCode, String) + 'r;

/// The command's own shape: a unique id that can name an output file, and
/// no empty argv.
fn command_shape(cmd: &Command, op: &Operator<'_>, duplicate: bool, refuse: &mut Refuse<'_>) {
    if duplicate {
        refuse(
            "unique_command_id",
            &cmd.id,
            COMMAND_REFUSED,
            ReasonCode::CommandNotAllowed,
            format!("duplicate command id {:?}", cmd.id),
        );
    }
    if op.output_dir
        && let Err(e) = check_output_id(&cmd.id)
    {
        refuse(
            "output_dir_file_name",
            &cmd.id,
            COMMAND_REFUSED,
            ReasonCode::CommandNotAllowed,
            e,
        );
    }
    if cmd.argv_vectors().iter().any(|a| a.is_empty()) || cmd.argv_vectors().is_empty() {
        refuse(
            "argv_not_empty",
            "",
            COMMAND_REFUSED,
            ReasonCode::CommandNotAllowed,
            format!("command {:?} has an empty argv", cmd.id),
        );
    }
}

/// The operator's environment-name rules and the confinability of every
/// declared scope.
fn env_and_scopes(cmd: &Command, policy: &Policy, op: &Operator<'_>, refuse: &mut Refuse<'_>) {
    for name in &cmd.env_allow {
        if let Err(e) = op.env_allow.check_names(std::slice::from_ref(name)) {
            refuse(
                "operator_allow_env",
                name,
                ENV_NAME_REFUSED,
                ReasonCode::SecretRefNotAllowed,
                format!("command {:?}: {e}", cmd.id),
            );
        }
    }
    for (field, scopes, prefixes, code) in [
        (
            "read_paths",
            &cmd.read_paths,
            &policy.allowed_read_prefixes,
            ReasonCode::ReadScopeDenied,
        ),
        (
            "write_paths",
            &cmd.write_paths,
            &policy.allowed_write_prefixes,
            ReasonCode::WriteScopeDenied,
        ),
    ] {
        for p in scopes {
            if let Err(e) = paths::check_scope(p, prefixes, field) {
                refuse(
                    "confinable_scope",
                    p,
                    SCOPE_REFUSED,
                    code,
                    format!("command {:?}: {e}", cmd.id),
                );
            }
        }
    }
}

/// Is `id` safe as a file-name stem inside `--output-dir`? The same rule
/// as `verify-receipt --outputs` ([`crate::fsutil::is_output_stem`]).
pub fn check_output_id(id: &str) -> Result<(), String> {
    if !crate::fsutil::is_output_stem(id) {
        return Err(format!(
            "command id {id:?} cannot name a file in --output-dir (no '/', '\\', '..', NUL, leading '.', max 240 bytes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        serde_json::from_str(include_str!("../../examples/contracts/list-repo.json")).unwrap()
    }

    fn policy() -> Policy {
        serde_json::from_value(serde_json::json!({
            "name": "p", "allow_commands": ["ls"], "allowed_effect_types": ["observe"],
            "allowed_risk_classes": ["low"], "allowed_cwd_prefixes": ["/"],
            "allowed_read_prefixes": ["/"], "allowed_write_prefixes": ["/tmp"]
        }))
        .unwrap()
    }

    #[test]
    fn env_names_are_judged_one_by_one_with_runs_message() {
        let mut c = contract();
        c.commands[0].env_allow = vec!["LANG".into(), "AWS_SECRET_ACCESS_KEY".into()];
        let allow = env::EnvAllowlist::new(Vec::<String>::new()).unwrap();
        let op = Operator {
            env_allow: &allow,
            output_dir: false,
            egress: None,
        };
        let r = commands(&c, &policy(), &op);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].ext_code, ENV_NAME_REFUSED);
        // The same text run's precheck stops with.
        let run = allow.check_names(&c.commands[0].env_allow).unwrap_err();
        assert_eq!(
            r[0].message,
            format!("command {:?}: {run}", c.commands[0].id)
        );
    }

    #[test]
    fn egress_needs_hardened_mode_to_matter() {
        let mut c = contract();
        c.commands[0].network = NetworkMode::Allowlisted;
        let allow = env::EnvAllowlist::new(Vec::<String>::new()).unwrap();
        let mut op = Operator {
            env_allow: &allow,
            output_dir: false,
            egress: None,
        };
        assert_eq!(egress(&c, &op), None);
        let cfg = EgressConfig::default();
        op.egress = Some(&cfg);
        let r = egress(&c, &op).unwrap();
        assert!(r.message.contains("--egress-allow"), "{}", r.message);
    }
}
