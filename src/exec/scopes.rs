//! Declared scopes as the kernel resolves them, right before launch.
//!
//! A declared read or write path is a string; what the command reaches is
//! whatever the kernel resolves it to, symlinks included, and an earlier
//! command of the same contract may have planted such a link. So every
//! scope's literal prefix is resolved on the real file system (the longest
//! existing ancestor through `realpath`, the rest appended) and the
//! *resolved* path is re-checked against the policy's literal prefixes.
//! Hardened mode then binds exactly the resolved path, opened again without
//! following any symlink, so a swap after this check fails the setup
//! instead of widening the view.

use std::path::{Component, Path, PathBuf};

use crate::engine::paths::{glob_literal_prefix, within_prefixes};

/// Extension code of a scope, cwd or program that resolves (through a
/// symbolic link) outside what the policy allows.
pub const RESOLVES_OUTSIDE_POLICY: &str = "CSC_RESOLVES_OUTSIDE_POLICY";

/// A declared scope after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path the kernel resolves the literal prefix to (no symlinks in
    /// the existing part).
    pub path: PathBuf,
    /// Whether the whole path exists now (only existing scopes are bound).
    pub exists: bool,
}

/// Resolve `path` (absolute, no `..`): `realpath` of its longest existing
/// ancestor, with the missing remainder appended unchanged.
pub fn resolve_path(path: &Path) -> std::io::Result<Resolved> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err(e);
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut resolved = std::fs::canonicalize(&existing)?;
    let exists = rest.is_empty();
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    Ok(Resolved {
        path: resolved,
        exists,
    })
}

/// Resolve one declared scope of `field` (`read_paths`/`write_paths`) and
/// check the resolved path against `allowed` (the policy's prefixes, taken
/// literally: a prefix is never itself resolved, since a link inside it
/// could be the command's).
pub fn resolve_scope(declared: &str, allowed: &[String], field: &str) -> Result<Resolved, String> {
    let literal = glob_literal_prefix(declared);
    let lexical = lexical(literal)
        .ok_or_else(|| format!("{field}: {declared:?} is not an absolute path without '..'"))?;
    let r =
        resolve_path(&lexical).map_err(|e| format!("{field}: cannot resolve {declared:?}: {e}"))?;
    check_resolved(declared, &r.path, allowed, field)?;
    Ok(r)
}

/// Refuse `resolved` unless it lies under `allowed`.
pub fn check_resolved(
    declared: &str,
    resolved: &Path,
    allowed: &[String],
    field: &str,
) -> Result<(), String> {
    let shown = resolved.to_string_lossy();
    if matches!(within_prefixes(&shown, allowed), Ok(true)) {
        return Ok(());
    }
    Err(format!(
        "{field}: {declared:?} resolves to {shown:?}, which is outside the policy's allowed prefixes (a symbolic link leads out of scope) [{RESOLVES_OUTSIDE_POLICY}]"
    ))
}

/// `path` as an absolute, `.`-free path; `None` when relative or with `..`.
fn lexical(path: &str) -> Option<PathBuf> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_resolved_and_rechecked() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let work = root.join("work");
        let secret = root.join("secret");
        std::fs::create_dir_all(work.join("out")).unwrap();
        std::fs::create_dir(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, work.join("out/lnk")).unwrap();
        let allowed = vec![work.to_string_lossy().into_owned()];
        let ok = resolve_scope(&format!("{}/out/**", work.display()), &allowed, "w").unwrap();
        assert_eq!(ok.path, work.join("out"));
        assert!(ok.exists);
        let err = resolve_scope(&format!("{}/out/lnk", work.display()), &allowed, "w");
        assert!(err.unwrap_err().contains(RESOLVES_OUTSIDE_POLICY));
        // A missing scope below a link is judged by where the link leads.
        let err = resolve_scope(&format!("{}/out/lnk/new/x", work.display()), &allowed, "w");
        assert!(err.unwrap_err().contains(RESOLVES_OUTSIDE_POLICY));
        let missing = resolve_scope(&format!("{}/out/new", work.display()), &allowed, "w").unwrap();
        assert!(!missing.exists);
        assert_eq!(missing.path, work.join("out/new"));
    }
}
