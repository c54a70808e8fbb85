//! The command environment: empty except `PATH` (the trusted search path)
//! and the contract's `env_allow` names that the **operator** permits.
//!
//! The agent writes `env_allow`; the operator decides what may pass
//! ([`EnvAllowlist`], `csc run --allow-env NAME`):
//! - a name passes only if it matches an operator pattern (`*` globs) or
//!   the safe defaults [`DEFAULT_ALLOWED`];
//! - a name on the sensitive denylist ([`SENSITIVE`]: csc's own variables,
//!   tokens, keys, passwords, cloud credentials, ...) passes only when the
//!   operator names it **exactly**; a glob such as `*` or `AWS_*` never
//!   admits it;
//! - loader and interpreter hooks ([`DENIED`], [`DENIED_PREFIXES`]) never
//!   pass, whatever anybody says: they turn "pass a variable" into "run
//!   arbitrary code".
//!
//! A contract naming a refused variable is blocked before anything runs
//! (the receipt's `error` names the command and the variable). `PATH`
//! itself is never taken from the caller: it is always the trusted search
//! path, so naming it in `env_allow` is accepted and has no effect.

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

/// Names (patterns) passed without any operator flag: locale and terminal.
pub const DEFAULT_ALLOWED: &[&str] = &["LANG", "LANGUAGE", "LC_*", "TZ", "TERM"];

/// Sensitive names (patterns, matched case-insensitively): they pass only
/// when the operator names them exactly with `--allow-env`.
pub const SENSITIVE: &[&str] = &[
    // csc's own configuration (and the CI examples' signing key).
    "CSC_*",
    // Tokens, secrets, keys, passwords, credentials.
    "TOKEN",
    "*_TOKEN",
    "*_TOKEN_*",
    "*SECRET*",
    "KEY",
    "KEY_*",
    "*_KEY",
    "*_KEY_*",
    "*APIKEY*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_PASS",
    "*PASSPHRASE*",
    "*CREDENTIAL*",
    "*_AUTH",
    "*_AUTH_*",
    "*JWT*",
    "*COOKIE*",
    "*_DSN",
    "DATABASE_URL",
    // Cloud and CI providers.
    "AWS_*",
    "GOOGLE_*",
    "GCLOUD_*",
    "GCP_*",
    "CLOUDSDK_*",
    "AZURE_*",
    "ARM_*",
    "GITHUB_*",
    "ACTIONS_*",
    "GITLAB_*",
    "CI_JOB_*",
    "VAULT_*",
    "NPM_CONFIG_*",
    // Credential stores and agents.
    "KUBECONFIG",
    "DOCKER_AUTH_CONFIG",
    "DOCKER_CONFIG",
    "SSH_*",
    "GPG_*",
    "GNUPGHOME",
    "NETRC",
];

/// Why an `env_allow` name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A loader or interpreter hook.
    #[error("env_allow names {0:?}, a loader/interpreter variable csc never passes to commands")]
    Denied(String),
    /// Not a valid variable name.
    #[error("env_allow name {0:?} is not a valid environment variable name")]
    Invalid(String),
    /// The operator did not allow the name.
    #[error("env_allow names {0:?}, which the operator has not allowed (csc run --allow-env {0})")]
    NotAllowed(String),
    /// A sensitive name that a glob matched but the operator did not name.
    #[error(
        "env_allow names {0:?}, a sensitive variable (credentials, tokens, keys, csc's own settings); it passes only when the operator names it exactly (csc run --allow-env {0})"
    )]
    Sensitive(String),
}

/// Does `name` match the glob `pattern` (`*` = any run of characters)?
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Is `name` a loader/interpreter hook that never passes?
pub fn is_hook(name: &str) -> bool {
    DENIED.contains(&name) || DENIED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Is `name` on the sensitive denylist?
pub fn is_sensitive(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SENSITIVE.iter().any(|p| glob_match(p, &upper))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

/// The operator's environment allowlist (`--allow-env`, repeatable, `*`
/// globs), plus [`DEFAULT_ALLOWED`]. Shared by every verb that runs
/// commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvAllowlist {
    patterns: Vec<String>,
}

impl EnvAllowlist {
    /// Only the defaults.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// The defaults plus the operator's `patterns`. Refuses malformed
    /// patterns and hook names (which never pass, so allowing one is a
    /// mistake worth reporting).
    pub fn new<I, S>(patterns: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Vec::new();
        for p in patterns {
            let p: String = p.into();
            if !valid_name(&p) {
                return Err(format!(
                    "--allow-env {p:?}: not a variable name or glob (no '=', NUL, or empty)"
                ));
            }
            if !p.contains('*') && is_hook(&p) {
                return Err(format!(
                    "--allow-env {p}: loader/interpreter hook variables are never passed to commands"
                ));
            }
            out.push(p);
        }
        Ok(EnvAllowlist { patterns: out })
    }

    /// The operator's patterns (without the defaults).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Decide one `env_allow` name.
    pub fn check(&self, name: &str) -> Result<(), EnvError> {
        if !valid_name(name) {
            return Err(EnvError::Invalid(name.to_owned()));
        }
        if name == "PATH" {
            return Ok(());
        }
        if is_hook(name) {
            return Err(EnvError::Denied(name.to_owned()));
        }
        if self.patterns.iter().any(|p| p == name) {
            return Ok(());
        }
        let matched = DEFAULT_ALLOWED
            .iter()
            .copied()
            .chain(self.patterns.iter().map(String::as_str))
            .any(|p| glob_match(p, name));
        match (matched, is_sensitive(name)) {
            (_, true) => Err(EnvError::Sensitive(name.to_owned())),
            (true, false) => Ok(()),
            (false, false) => Err(EnvError::NotAllowed(name.to_owned())),
        }
    }

    /// Check every name of a command's `env_allow` (no environment access).
    pub fn check_names(&self, env_allow: &[String]) -> Result<(), EnvError> {
        env_allow.iter().try_for_each(|n| self.check(n))
    }
}

/// Build the complete environment for one command. `lookup` reads the
/// caller's environment (injected for tests).
pub fn build(
    env_allow: &[String],
    allow: &EnvAllowlist,
    trusted_path: &str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(OsString, OsString)>, EnvError> {
    allow.check_names(env_allow)?;
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
        let allow = EnvAllowlist::new(["HOME", "MISSING"]).unwrap();
        let env = build(
            &["HOME".into(), "PATH".into(), "MISSING".into()],
            &allow,
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
            // Not even `*` or the exact name admits a hook.
            let star = EnvAllowlist::new(["*"]).unwrap();
            assert_eq!(
                star.check_names(&[bad.into()]),
                Err(EnvError::Denied(bad.into()))
            );
            assert!(EnvAllowlist::new([bad]).is_err());
        }
        assert!(matches!(
            EnvAllowlist::defaults().check_names(&["A=B".into()]),
            Err(EnvError::Invalid(_))
        ));
    }

    #[test]
    fn only_operator_allowed_names_pass() {
        let d = EnvAllowlist::defaults();
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "PATH"] {
            assert_eq!(d.check(ok), Ok(()), "{ok}");
        }
        for no in ["HOME", "USER", "MY_VAR", "LANGX"] {
            assert_eq!(d.check(no), Err(EnvError::NotAllowed(no.into())), "{no}");
        }
        let a = EnvAllowlist::new(["HOME", "MY_*"]).unwrap();
        assert_eq!(a.check("HOME"), Ok(()));
        assert_eq!(a.check("MY_VAR"), Ok(()));
        assert_eq!(a.check("USER"), Err(EnvError::NotAllowed("USER".into())));
    }

    #[test]
    fn sensitive_names_need_their_exact_name() {
        let star = EnvAllowlist::new(["*", "AWS_*", "CSC_*", "LC_*"]).unwrap();
        for name in [
            "GITHUB_TOKEN",
            "CI_JOB_TOKEN",
            "CSC_SIGNING_KEY_PEM",
            "CSC_HOST_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AZURE_CLIENT_SECRET",
            "ARM_CLIENT_SECRET",
            "NPM_TOKEN",
            "OPENAI_API_KEY",
            "DB_PASSWORD",
            "MY_SECRET_THING",
            "SSH_AUTH_SOCK",
            "VAULT_TOKEN",
            "KUBECONFIG",
            "github_token",
            "LC_SECRET",
        ] {
            assert_eq!(
                star.check(name),
                Err(EnvError::Sensitive(name.into())),
                "{name}"
            );
            let exact = EnvAllowlist::new([name]).unwrap();
            assert_eq!(exact.check(name), Ok(()), "{name}");
        }
        // Exact naming of one does not admit another.
        let one = EnvAllowlist::new(["GITHUB_TOKEN"]).unwrap();
        assert!(one.check("GITLAB_TOKEN").is_err());
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "ABC"));
        assert!(glob_match("A*", "A"));
        assert!(glob_match("*_KEY", "API_KEY"));
        assert!(!glob_match("*_KEY", "API_KEYS"));
        assert!(glob_match("*SECRET*", "SECRET"));
        assert!(glob_match("A*B*C", "AxxBxxC"));
        assert!(!glob_match("A*B*C", "AC"));
        assert!(!glob_match("AB*BA", "ABA"));
        assert!(glob_match("LANG", "LANG"));
        assert!(!glob_match("LANG", "LANGX"));
    }
}
