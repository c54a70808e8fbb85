//! Runtime path checks, right before launch: the cwd is resolved on the
//! real filesystem (symlinks followed) and re-checked against the policy;
//! declared read/write scopes are checked by their literal (pre-glob)
//! prefix, and `..` in that literal part is refused.

use std::path::PathBuf;

use crate::engine::paths::{glob_literal_prefix, within_prefixes};

/// Why a cwd cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum CwdError {
    #[error("cwd must be an absolute POSIX path: declared={0:?}")]
    NotAbsolute(String),
    #[error("cwd resolves outside allowed scope: declared={declared:?}, resolved={resolved:?}")]
    Escapes { declared: String, resolved: String },
    #[error(
        "cwd is readable by the command but resolves outside allowed_read_prefixes: declared={declared:?}, resolved={resolved:?} [{code}]",
        code = crate::engine::ext::CWD_OUTSIDE_READ_PREFIXES
    )]
    Unreadable { declared: String, resolved: String },
    #[error("cwd does not exist or is not a directory: {declared:?} ({reason})")]
    Missing { declared: String, reason: String },
}

impl CwdError {
    /// A scope violation blocks the run; a missing directory fails it.
    pub fn is_block(&self) -> bool {
        !matches!(self, CwdError::Missing { .. })
    }
}

/// Resolve `declared` (following symlinks) and check the resolved path
/// against `allowed` (the cwd prefixes) and `readable` (the read prefixes:
/// the command can read its cwd, RFC 0005).
pub fn resolve_cwd(
    declared: &str,
    allowed: &[String],
    readable: &[String],
) -> Result<PathBuf, CwdError> {
    if !declared.starts_with('/') || declared.starts_with("//") {
        return Err(CwdError::NotAbsolute(declared.to_owned()));
    }
    let resolved = std::fs::canonicalize(declared).map_err(|e| CwdError::Missing {
        declared: declared.to_owned(),
        reason: e.to_string(),
    })?;
    let shown = resolved.to_string_lossy().into_owned();
    if !matches!(within_prefixes(&shown, allowed), Ok(true)) {
        return Err(CwdError::Escapes {
            declared: declared.to_owned(),
            resolved: shown,
        });
    }
    if !matches!(within_prefixes(&shown, readable), Ok(true)) {
        return Err(CwdError::Unreadable {
            declared: declared.to_owned(),
            resolved: shown,
        });
    }
    if !resolved.is_dir() {
        return Err(CwdError::Missing {
            declared: declared.to_owned(),
            reason: "not a directory".to_owned(),
        });
    }
    Ok(resolved)
}

/// Check one declared read/write scope (`label` names the field).
pub fn check_scope(declared: &str, allowed: &[String], label: &str) -> Result<(), String> {
    let literal = glob_literal_prefix(declared);
    if literal.is_empty() {
        return Err(format!(
            "{label}: no literal prefix before glob metacharacter: {declared:?}"
        ));
    }
    if literal.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "{label}: '..' not allowed in declared scope: {declared:?}"
        ));
    }
    if !matches!(within_prefixes(literal, allowed), Ok(true)) {
        return Err(format!(
            "{label}: scope outside allowed prefixes: {declared:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let allowed = vec!["/work".to_owned()];
        assert!(check_scope("/work/out/**", &allowed, "w").is_ok());
        assert!(
            check_scope("/work/../etc/*", &allowed, "w")
                .unwrap_err()
                .contains("..")
        );
        assert!(check_scope("/etc/passwd", &allowed, "w").is_err());
        assert!(check_scope("*.txt", &allowed, "w").is_err());
        assert!(check_scope("/work/a/*/../../x", &allowed, "w").is_ok());
    }

    #[test]
    fn cwd_symlink_escape_is_blocked() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("in");
        std::fs::create_dir(&inside).unwrap();
        let link = inside.join("out");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let allowed = vec![inside.to_string_lossy().into_owned()];
        let canon_inside = std::fs::canonicalize(&inside).unwrap();
        let allowed_canon = vec![canon_inside.to_string_lossy().into_owned()];
        let err = resolve_cwd(link.to_str().unwrap(), &allowed_canon, &allowed_canon).unwrap_err();
        assert!(err.is_block(), "{err}");
        let missing = resolve_cwd(
            &format!("{}/nope", canon_inside.display()),
            &allowed,
            &allowed,
        )
        .unwrap_err();
        assert!(!missing.is_block());
        let unreadable =
            resolve_cwd(canon_inside.to_str().unwrap(), &allowed_canon, &[]).unwrap_err();
        assert!(
            matches!(unreadable, CwdError::Unreadable { .. }),
            "{unreadable}"
        );
    }
}
