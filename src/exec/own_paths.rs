//! csc's own files must stay out of the command's reach: the receipt, its
//! directory, `--output-dir`, the approval state directory and the signing
//! key (and any future keyring) may not lie inside a declared write scope,
//! and csc's own directories may not contain one either. Judged on what the
//! kernel resolves: the longest existing ancestor of each path is
//! canonicalized (symlinks followed), the rest is appended lexically; a
//! glob scope is judged by its literal prefix.

use std::path::{Component, Path, PathBuf};

use crate::engine::paths::glob_literal_prefix;
use crate::protocol::contract::Contract;

/// One of csc's own paths.
#[derive(Debug, Clone)]
pub struct OwnPath {
    /// The flag or role shown in errors, e.g. `--output-dir`.
    pub label: &'static str,
    /// The path as configured (relative paths are taken from the cwd).
    pub path: PathBuf,
    /// csc owns everything below it: a write scope inside it is refused
    /// too (output and state directories).
    pub exclusive: bool,
}

impl OwnPath {
    /// A path that no write scope may contain.
    pub fn file(label: &'static str, path: impl Into<PathBuf>) -> Self {
        OwnPath {
            label,
            path: path.into(),
            exclusive: false,
        }
    }

    /// A directory that no write scope may contain or lie in.
    pub fn dir(label: &'static str, path: impl Into<PathBuf>) -> Self {
        OwnPath {
            label,
            path: path.into(),
            exclusive: true,
        }
    }
}

/// Resolve `path` as the kernel would today: make it absolute, canonicalize
/// its longest existing ancestor, append the missing components (`.`
/// dropped, `..` removing the previous missing component).
pub fn resolve_lenient(path: &Path) -> std::io::Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut existing = abs.as_path();
    let mut missing = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => {
                let mut out = real;
                for part in missing.iter().rev() {
                    match part {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::Normal(n) => out.push(n),
                        _ => {}
                    }
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut comps = existing.components();
                let Some(last) = comps.next_back() else {
                    return Err(e);
                };
                missing.push(last);
                existing = comps.as_path();
                if existing.as_os_str().is_empty() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuse when any of `own` lies inside (or equals) a write scope of any
/// command of `contract`, or, for an exclusive path, contains one. The
/// error names the flag, the scope, the command and what to do.
pub fn check(own: &[OwnPath], contract: &Contract) -> Result<(), String> {
    let mut scopes = Vec::new();
    for cmd in &contract.commands {
        for scope in &cmd.write_paths {
            let literal = glob_literal_prefix(scope);
            if !literal.starts_with('/') || literal.starts_with("//") {
                return Err(format!(
                    "command {:?}: write scope {scope:?} is not an absolute POSIX path, so csc cannot show that its own files are out of the command's reach",
                    cmd.id
                ));
            }
            let real = resolve_lenient(Path::new(literal)).map_err(|e| {
                format!(
                    "command {:?}: cannot resolve write scope {scope:?}: {e}",
                    cmd.id
                )
            })?;
            scopes.push((cmd.id.as_str(), scope.as_str(), real));
        }
    }
    if scopes.is_empty() {
        return Ok(());
    }
    for p in own {
        let real = resolve_lenient(&p.path)
            .map_err(|e| format!("cannot resolve {} {}: {e}", p.label, p.path.display()))?;
        for (id, scope, scope_real) in &scopes {
            let inside = real.starts_with(scope_real);
            let contains = p.exclusive && scope_real.starts_with(&real);
            if inside || contains {
                let relation = if inside { "lies inside" } else { "contains" };
                return Err(format!(
                    "{} {} (resolves to {}) {relation} write scope {scope:?} of command {id:?} (resolves to {}): the command could replace, link or delete csc's own files; move {} outside every write_paths entry",
                    p.label,
                    p.path.display(),
                    real.display(),
                    scope_real.display(),
                    p.label
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(scopes: &[String]) -> Contract {
        let v = serde_json::json!({
            "version": "csc.v0.1", "contract_id": "c-1", "intent": "t",
            "actor": {"agent_id": "a", "session_id": "s", "initiating_user": "u", "delegation_scope": "d"},
            "commands": [{"id": "w", "exec": {"argv": ["true"]}, "cwd": "/", "read_paths": [],
                "write_paths": scopes, "network": "deny", "env_allow": [], "secret_refs": [],
                "timeout_sec": 5, "proposed_effect_type": "observe"}],
            "risk_class": "low", "approval_mode": "policy_only", "justification": "t"
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn inside_equal_containing_and_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("ws")).unwrap();
        std::fs::create_dir(root.join("evidence")).unwrap();
        std::os::unix::fs::symlink(root.join("evidence"), root.join("ws/link")).unwrap();
        let s = |p: &str| format!("{}/{p}", root.display());
        let out = OwnPath::dir("--output-dir", root.join("evidence/out"));
        let receipt = OwnPath::file("--receipt-out", root.join("evidence/r.json"));
        // Disjoint: fine.
        assert!(check(&[out.clone(), receipt.clone()], &contract(&[s("ws/a/**")])).is_ok());
        // Inside a glob scope's literal prefix.
        assert!(
            check(
                std::slice::from_ref(&receipt),
                &contract(&[s("evidence/*.json")])
            )
            .is_err()
        );
        // Equal.
        assert!(check(std::slice::from_ref(&out), &contract(&[s("evidence/out")])).is_err());
        // A scope inside an exclusive dir; fine for a plain file's parent.
        assert!(
            check(
                std::slice::from_ref(&out),
                &contract(&[s("evidence/out/sub")])
            )
            .is_err()
        );
        assert!(
            check(
                &[OwnPath::file("--receipt-out dir", root.join("evidence"))],
                &contract(&[s("evidence/sub")])
            )
            .is_ok()
        );
        // Through a symlink in the scope: judged on the resolved path.
        let err = check(&[receipt], &contract(&[s("ws/link/**")])).unwrap_err();
        assert!(
            err.contains("--receipt-out") && err.contains("lies inside"),
            "{err}"
        );
        // Not-yet-existing paths with `..` resolve lexically after the
        // existing ancestor.
        assert_eq!(
            resolve_lenient(&root.join("ws/new/../x")).unwrap(),
            root.join("ws/x")
        );
        assert!(check(&[out], &contract(&["C:\\x".to_owned()])).is_err());
    }
}
