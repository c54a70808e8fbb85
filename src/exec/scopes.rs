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

/// Extension code of a declared scope that does not exist at launch and
/// that csc cannot (or must not) create.
pub const SCOPE_MISSING: &str = "CSC_SCOPE_MISSING";

/// What `run` does about a declared scope that does not exist at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingScope {
    /// A write scope below an existing allowed write prefix: `run` creates
    /// the directories `names` under `base` (without following symlinks).
    Create {
        /// The existing, symlink-free allowed write prefix.
        base: PathBuf,
        /// The directories to create below it, outermost first.
        names: Vec<std::ffi::OsString>,
    },
    /// The run is blocked with this message.
    Block(String),
}

impl MissingScope {
    /// One line for `csc explain` and the run's notes.
    pub fn describe(&self, declared: &str, field: &str) -> String {
        match self {
            MissingScope::Create { base, names } => {
                let mut full = base.clone();
                full.extend(names);
                format!(
                    "{field}: {declared:?} does not exist; csc run creates {} (below the existing allowed write prefix {})",
                    full.display(),
                    base.display()
                )
            }
            MissingScope::Block(msg) => msg.clone(),
        }
    }
}

/// Decide what to do about the declared scope `declared` of `field`,
/// resolved to `resolved`, which does not exist: write scopes lying at or
/// below an allowed write prefix that exists as a real directory are
/// created; anything else (a read scope, a write scope whose allowed
/// prefix is missing too) blocks the run, never a silently empty view.
pub fn missing_scope(
    declared: &str,
    resolved: &Path,
    allowed: &[String],
    field: &str,
) -> MissingScope {
    if field == "write_paths" {
        let base = allowed
            .iter()
            .filter_map(|a| lexical(a))
            .filter(|a| resolved.starts_with(a) && a.as_path() != resolved)
            .filter(|a| std::fs::canonicalize(a).is_ok_and(|c| &c == a) && a.is_dir())
            .max_by_key(|a| a.components().count());
        if let Some(base) = base
            && let Ok(rest) = resolved.strip_prefix(&base)
        {
            let names = rest.iter().map(|n| n.to_os_string()).collect();
            return MissingScope::Create { base, names };
        }
        return MissingScope::Block(format!(
            "{field}: {declared:?} does not exist ({}) and csc creates a missing write scope only below an allowed write prefix that exists; create it before the run (mkdir -p {}) [{SCOPE_MISSING}]",
            resolved.display(),
            resolved.display()
        ));
    }
    MissingScope::Block(format!(
        "{field}: {declared:?} does not exist ({}); a missing read scope would be an empty view: create it before the run or remove it from the contract [{SCOPE_MISSING}]",
        resolved.display()
    ))
}

/// A command's declared scopes, resolved now, and what `run` does about
/// the missing ones. Shared by `run` (which acts on it right before the
/// launch) and `explain` (which reports it), so both say the same thing.
#[derive(Debug, Default)]
pub struct CommandScopes {
    /// `(declared, resolved)` read scopes.
    pub read: Vec<(String, Resolved)>,
    /// `(declared, resolved)` write scopes.
    pub write: Vec<(String, Resolved)>,
    /// `(declared, field, decision)` for every missing scope that matters:
    /// a missing read scope inside another existing scope of the command
    /// (or inside one of its write scopes) is visible once created there
    /// and is not listed.
    pub missing: Vec<(String, &'static str, MissingScope)>,
}

/// Resolve and check all scopes of one command (see [`CommandScopes`]).
pub fn command_scopes(
    read_paths: &[String],
    write_paths: &[String],
    allowed_read: &[String],
    allowed_write: &[String],
) -> Result<CommandScopes, String> {
    let mut out = CommandScopes::default();
    for p in write_paths {
        let r = resolve_scope(p, allowed_write, "write_paths")?;
        if !r.exists {
            let m = missing_scope(p, &r.path, allowed_write, "write_paths");
            out.missing.push((p.clone(), "write_paths", m));
        }
        out.write.push((p.clone(), r));
    }
    for p in read_paths {
        out.read
            .push((p.clone(), resolve_scope(p, allowed_read, "read_paths")?));
    }
    for (p, r) in &out.read {
        let covered = out.write.iter().any(|(_, w)| r.path.starts_with(&w.path))
            || out
                .read
                .iter()
                .any(|(_, o)| o.exists && o.path != r.path && r.path.starts_with(&o.path));
        if !r.exists && !covered {
            let m = missing_scope(p, &r.path, allowed_read, "read_paths");
            out.missing.push((p.clone(), "read_paths", m));
        }
    }
    Ok(out)
}

/// Act on [`CommandScopes::missing`]: block on the first scope that must
/// not be created, else create the missing write scopes (re-checked): as
/// an empty regular file when the contract lists the scope itself in
/// `expected_outputs` (a file the command produces), else as a directory.
pub fn ensure_scopes(
    scopes: &CommandScopes,
    allowed_write: &[String],
    expected_outputs: &[String],
) -> Result<(), String> {
    if let Some((_, _, MissingScope::Block(msg))) = scopes
        .missing
        .iter()
        .find(|(_, _, m)| matches!(m, MissingScope::Block(_)))
    {
        return Err(msg.clone());
    }
    for (declared, field, _) in &scopes.missing {
        if let Some((_, r)) = scopes.write.iter().find(|(d, _)| d == declared) {
            let is_file = expected_outputs
                .iter()
                .any(|o| lexical(o).is_some_and(|o| o == r.path));
            create_scope(declared, &r.path, allowed_write, field, is_file)?;
        }
    }
    Ok(())
}

/// Make a missing write scope exist as [`missing_scope`] decided, then
/// resolve and re-check it: it must now exist at exactly `resolved`.
pub fn create_scope(
    declared: &str,
    resolved: &Path,
    allowed: &[String],
    field: &str,
    is_file: bool,
) -> Result<(), String> {
    match missing_scope(declared, resolved, allowed, field) {
        MissingScope::Block(msg) => Err(msg),
        MissingScope::Create { base, names } => {
            let made = match names.split_last() {
                Some((file, dirs)) if is_file => {
                    crate::fsutil::mkfile_nofollow(&base, dirs, file).map(drop)
                }
                _ => crate::fsutil::mkdirs_nofollow(&base, &names).map(drop),
            };
            made.map_err(|e| {
                format!(
                    "{field}: cannot create {declared:?} at {}: {e} [{SCOPE_MISSING}]",
                    resolved.display()
                )
            })?;
            let again = resolve_scope(declared, allowed, field)?;
            if !again.exists || again.path != resolved {
                return Err(format!(
                    "{field}: {declared:?} changed while csc created it (now {}) [{SCOPE_MISSING}]",
                    again.path.display()
                ));
            }
            Ok(())
        }
    }
}

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
