//! The command environment: empty except `PATH` (the trusted search path)
//! and the contract's `env_allow` names that the policy permits.
//!
//! v0.1 policies have no environment allowlist, so every `env_allow` name
//! counts as permitted **except** the hard-coded [`DENIED`] names and
//! prefixes: loader and interpreter hooks that turn "pass a variable" into
//! "run arbitrary code". A contract naming one is blocked before anything
//! runs (the receipt's `error` names the variable). `PATH` itself is never
//! taken from the caller: it is always the trusted search path, so naming
//! it in `env_allow` is accepted and has no effect.

use std::ffi::OsString;

/// Variables never passed through, whatever the contract says.
pub const DENIED: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "RUBYOPT",
    "RUBYLIB",
    "GCONV_PATH",
    "GIT_EXEC_PATH",
    "GIT_SSH_COMMAND",
];

/// Prefixes never passed through (dynamic loader families).
pub const DENIED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_"];

/// Why an `env_allow` name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("env_allow names {0:?}, a loader/interpreter variable csc never passes to commands")]
    Denied(String),
    #[error("env_allow name {0:?} is not a valid environment variable name")]
    Invalid(String),
}

/// Check every name of a command's `env_allow` (no environment access).
pub fn check_names(env_allow: &[String]) -> Result<(), EnvError> {
    for name in env_allow {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(EnvError::Invalid(name.clone()));
        }
        if name == "PATH" {
            continue;
        }
        if DENIED.contains(&name.as_str()) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err(EnvError::Denied(name.clone()));
        }
    }
    Ok(())
}

/// Build the complete environment for one command. `lookup` reads the
/// caller's environment (injected for tests).
pub fn build(
    env_allow: &[String],
    trusted_path: &str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(OsString, OsString)>, EnvError> {
    check_names(env_allow)?;
    let mut env = vec![(OsString::from("PATH"), OsString::from(trusted_path))];
    for name in env_allow {
        if name == "PATH" || env.iter().any(|(k, _)| k == name.as_str()) {
            continue;
        }
        if let Some(value) = lookup(name) {
            env.push((OsString::from(name), value));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_path_and_allowed_names() {
        let look = |k: &str| match k {
            "HOME" => Some(OsString::from("/root")),
            "PATH" => Some(OsString::from("/evil")),
            _ => None,
        };
        let env = build(
            &["HOME".into(), "PATH".into(), "MISSING".into()],
            "/usr/bin",
            look,
        )
        .unwrap();
        assert_eq!(
            env,
            vec![
                ("PATH".into(), "/usr/bin".into()),
                ("HOME".into(), "/root".into())
            ]
        );
    }

    #[test]
    fn dangerous_names_are_refused() {
        for bad in [
            "LD_PRELOAD",
            "LD_FOO",
            "BASH_ENV",
            "PYTHONPATH",
            "NODE_OPTIONS",
        ] {
            assert_eq!(
                check_names(&[bad.into()]),
                Err(EnvError::Denied(bad.into()))
            );
        }
        assert!(matches!(
            check_names(&["A=B".into()]),
            Err(EnvError::Invalid(_))
        ));
    }
}
