//! Spec validation: absolute, lexically normal paths, no NUL bytes, no
//! scopes in kernel file systems, and scopes that are exactly the
//! resolved, symlink-free paths the caller checked.

use std::path::{Component, Path, PathBuf};

use super::HostFs;
use super::host::HostKind;
use super::{KERNEL_FS, MAX_SEGMENTS};
use crate::sandbox::{SandboxError, SandboxSpec};

/// Lexically normalize an absolute path: drop `.`, reject `..` and
/// relative paths.
pub fn normalize(path: &Path) -> Result<PathBuf, SandboxError> {
    if !path.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "path {} is not absolute",
            path.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(SandboxError::InvalidSpec(format!(
                    "path {} contains '..'",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

pub(super) fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

pub(super) fn is_kernel_fs(p: &Path) -> bool {
    KERNEL_FS.iter().any(|k| p.starts_with(k))
}

fn check_str(what: &str, s: &str) -> Result<(), SandboxError> {
    if s.contains('\0') {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} contains a NUL byte"
        )));
    }
    Ok(())
}

/// Validate the spec (no host access).
pub fn validate_spec(spec: &SandboxSpec) -> Result<(), SandboxError> {
    if spec.segments.is_empty() {
        return Err(SandboxError::InvalidSpec("no command segments".into()));
    }
    if spec.segments.len() > MAX_SEGMENTS {
        return Err(SandboxError::InvalidSpec(format!(
            "{} segments exceed the limit of {MAX_SEGMENTS}",
            spec.segments.len()
        )));
    }
    for argv in &spec.segments {
        let Some(first) = argv.first() else {
            return Err(SandboxError::InvalidSpec("empty argv".into()));
        };
        if !first.starts_with('/') {
            return Err(SandboxError::InvalidSpec(format!(
                "argv[0] {first:?} is not an absolute path"
            )));
        }
        for a in argv {
            check_str("argv element", a)?;
        }
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(SandboxError::InvalidSpec(format!(
                "invalid environment name {k:?}"
            )));
        }
        check_str("environment name", k)?;
        check_str("environment value", v)?;
    }
    normalize(&spec.cwd)?;
    for p in &spec.hidden_paths {
        normalize(p)?;
    }
    for p in spec.read_paths.iter().chain(&spec.write_paths) {
        let n = normalize(p)?;
        if is_kernel_fs(&n) {
            return Err(SandboxError::InvalidSpec(format!(
                "scope {} lies in a kernel file system (/proc, /sys, /dev) that hardened mode never exposes",
                n.display()
            )));
        }
    }
    Ok(())
}

/// A declared scope (already resolved by the caller): `None` when it does
/// not exist; an error when it is not symlink-free, since only the path the
/// caller checked against the policy may be bound.
pub(super) fn scope(
    p: &Path,
    what: &str,
    fs: &dyn HostFs,
) -> Result<Option<(PathBuf, bool)>, SandboxError> {
    let n = normalize(p)?;
    if fs.kind(&n).is_none() {
        return Ok(None);
    }
    let c = fs.canonicalize(&n).ok_or_else(|| {
        SandboxError::InvalidSpec(format!("{what} {} cannot be resolved", n.display()))
    })?;
    if c != n {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} passes through a symbolic link (it resolves to {}); only the resolved, policy-checked path can be bound",
            n.display(),
            c.display()
        )));
    }
    if is_kernel_fs(&c) {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} lies in a kernel file system",
            c.display()
        )));
    }
    let is_dir = fs.kind(&c) == Some(HostKind::Dir);
    Ok(Some((c, is_dir)))
}
