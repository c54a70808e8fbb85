//! View building: which host objects appear where (system paths, scopes,
//! cwd, masks of csc's private paths) and the mount operations, parents
//! first.

use std::path::{Path, PathBuf};

use super::host::{HostFs, HostKind};
use super::validate::{depth, is_kernel_fs, normalize, scope};
use super::{BindAccess, MountOp};
use crate::sandbox::{SandboxConfig, SandboxError, SandboxSpec};

/// Where a system path appears in the view.
pub(super) enum SystemEntry {
    /// Bind host `src` at `dst`.
    Bind(PathBuf, PathBuf, bool),
    /// Recreate the symlink.
    Link(PathBuf, PathBuf),
}

/// Decide how each configured system path appears: a path without
/// symlinks is bound as is; a symlink whose target is in the view anyway
/// (another system path, `/proc`, `/dev`) is recreated; any other path is
/// bound from its resolved target (the operator's system configuration,
/// e.g. `/etc/resolv.conf -> /run/...`). Missing and dangling paths are
/// skipped.
pub(super) fn system_entries(
    cfg: &SandboxConfig,
    fs: &dyn HostFs,
) -> Result<Vec<SystemEntry>, SandboxError> {
    let mut paths = Vec::new();
    for p in &cfg.system_paths {
        let p = normalize(p)?;
        if is_kernel_fs(&p) || p == Path::new("/") {
            return Err(SandboxError::InvalidSpec(format!(
                "system path {} cannot be exposed",
                p.display()
            )));
        }
        paths.push(p);
    }
    let plain: Vec<PathBuf> = paths
        .iter()
        .filter(|p| fs.canonicalize(p).as_deref() == Some(p.as_path()))
        .cloned()
        .collect();
    let in_view = |c: &Path| {
        plain.iter().any(|q| c.starts_with(q)) || c.starts_with("/proc") || c.starts_with("/dev")
    };
    let mut out = Vec::new();
    for p in paths {
        let Some(kind) = fs.kind(&p) else { continue };
        let Some(c) = fs.canonicalize(&p) else {
            continue;
        };
        let is_dir = fs.kind(&c) == Some(HostKind::Dir);
        if c == p {
            out.push(SystemEntry::Bind(c, p, is_dir));
        } else if kind == HostKind::Symlink && in_view(&c) {
            let target = fs.read_link(&p).ok_or_else(|| {
                SandboxError::InvalidSpec(format!("cannot read symlink {}", p.display()))
            })?;
            out.push(SystemEntry::Link(target, p));
        } else if !is_kernel_fs(&c) {
            out.push(SystemEntry::Bind(c, p, is_dir));
        }
    }
    Ok(out)
}

/// Whether a bind at `q` shows the host's `p` in the view: `p` lies below
/// `q` and no virtual mount (the private `/tmp`) sits in between.
fn shows(q: &Path, p: &Path) -> bool {
    let tmp = Path::new("/tmp");
    p.starts_with(q) && (q.starts_with(tmp) || !p.starts_with(tmp))
}

/// One bind of the view: host `src` at `dst` with `access`; `is_dir`.
pub(super) type Bind = (PathBuf, PathBuf, BindAccess, bool);

/// System paths: binds, and the symlinks recreated in the view.
pub(super) fn system_binds(
    cfg: &SandboxConfig,
    fs: &dyn HostFs,
) -> Result<(Vec<Bind>, Vec<MountOp>), SandboxError> {
    let mut binds = Vec::new();
    let mut links = Vec::new();
    for entry in system_entries(cfg, fs)? {
        match entry {
            SystemEntry::Bind(src, dst, is_dir) => {
                binds.push((src, dst, BindAccess::System, is_dir))
            }
            SystemEntry::Link(target, dst) => links.push(MountOp::Symlink { target, dst }),
        }
    }
    Ok((binds, links))
}

/// Whether `p` is shown by an entry of `set` other than `skip` (of two
/// equal entries, the earlier one counts).
fn covered_by(p: &Path, set: &[(PathBuf, bool)], skip: Option<usize>) -> bool {
    set.iter()
        .enumerate()
        .any(|(i, (q, _))| Some(i) != skip && shows(q, p) && (p != q || skip.is_none_or(|s| i < s)))
}

/// Whether a system bind shows `p`.
fn system_covers(p: &Path, binds: &[Bind]) -> bool {
    binds
        .iter()
        .any(|(src, dst, _, _)| src == dst && shows(src, p))
}

/// Existing declared scopes of `what` (see [`scope`]).
fn existing(
    paths: &[PathBuf],
    what: &str,
    fs: &dyn HostFs,
) -> Result<Vec<(PathBuf, bool)>, SandboxError> {
    let mut out = Vec::new();
    for p in paths {
        if let Some(r) = scope(p, what, fs)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Add the read and write scopes and the cwd to `binds` (nested and
/// duplicate scopes dropped; the cwd bound read-only unless a bind shows
/// it already); returns the resolved cwd.
pub(super) fn scope_binds(
    spec: &SandboxSpec,
    fs: &dyn HostFs,
    binds: &mut Vec<Bind>,
) -> Result<PathBuf, SandboxError> {
    let writes = existing(&spec.write_paths, "write scope", fs)?;
    let reads = existing(&spec.read_paths, "read scope", fs)?;
    // Write scopes: drop duplicates and nested ones.
    let write_keep: Vec<(PathBuf, bool)> = writes
        .iter()
        .enumerate()
        .filter(|(i, (p, _))| !covered_by(p, &writes, Some(*i)))
        .map(|(_, w)| w.clone())
        .collect();
    // Read scopes: drop those covered by a write scope, a system dir or
    // another read scope.
    let mut read_keep: Vec<(PathBuf, bool)> = reads
        .iter()
        .enumerate()
        .filter(|(i, (p, _))| {
            !covered_by(p, &reads, Some(*i))
                && !covered_by(p, &write_keep, None)
                && !system_covers(p, binds)
        })
        .map(|(_, r)| r.clone())
        .collect();
    let cwd = match scope(&spec.cwd, "cwd", fs)? {
        Some((c, true)) => c,
        Some((c, false)) => {
            return Err(SandboxError::InvalidSpec(format!(
                "cwd {} is not a directory",
                c.display()
            )));
        }
        None => {
            return Err(SandboxError::InvalidSpec(format!(
                "cwd {} does not exist",
                spec.cwd.display()
            )));
        }
    };
    if !covered_by(&cwd, &write_keep, None)
        && !covered_by(&cwd, &read_keep, None)
        && !system_covers(&cwd, binds)
    {
        read_keep.push((cwd.clone(), true));
    }
    binds.extend(
        read_keep
            .into_iter()
            .map(|(p, d)| (p.clone(), p, BindAccess::Read, d)),
    );
    binds.extend(
        write_keep
            .into_iter()
            .map(|(p, d)| (p.clone(), p, BindAccess::Write, d)),
    );
    Ok(cwd)
}

/// Where masks go: the operator's masked paths and csc's private paths,
/// wherever a bind shows them. A bind inside one of csc's private paths
/// cannot be served without exposing it: refused.
pub(super) fn masks(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
    fs: &dyn HostFs,
    binds: &[Bind],
) -> Result<Vec<(PathBuf, bool)>, SandboxError> {
    let mut masks: Vec<(PathBuf, bool)> = Vec::new();
    for (m, private) in cfg
        .masked_paths
        .iter()
        .map(|m| (m, false))
        .chain(spec.hidden_paths.iter().map(|m| (m, true)))
    {
        let m = normalize(m)?;
        let Some(c) = fs.canonicalize(&m) else {
            continue;
        };
        let is_dir = fs.kind(&c) == Some(HostKind::Dir);
        if private && let Some((src, ..)) = binds.iter().find(|(src, ..)| src.starts_with(&c)) {
            return Err(SandboxError::InvalidSpec(format!(
                "{} lies inside csc's own private path {} (keys, state, evidence); the command cannot be given access to it",
                src.display(),
                c.display()
            )));
        }
        for (src, dst, _, _) in binds {
            if let Ok(rest) = c.strip_prefix(src) {
                let at = if rest.as_os_str().is_empty() {
                    dst.clone()
                } else {
                    dst.join(rest)
                };
                if !masks.iter().any(|(p, _)| p == &at) {
                    masks.push((at, is_dir));
                }
            }
        }
    }
    Ok(masks)
}

/// Whether a scope bind shows `p`.
fn scope_covers(p: &Path, binds: &[Bind]) -> bool {
    binds
        .iter()
        .any(|(_, dst, access, _)| *access != BindAccess::System && p.starts_with(dst))
}

/// The mount operations in execution order: binds (minus system binds and
/// recreated links a scope covers, since the scope shows the host's own
/// entry there), `/tmp`, `/dev`, `/proc`, masks, and `/sys` hidden when a
/// bind would show it; parents first, at equal depth system < virtual <
/// read < write.
pub(super) fn mount_ops(
    cfg: &SandboxConfig,
    mut binds: Vec<Bind>,
    mut mounts: Vec<MountOp>,
    masks: Vec<(PathBuf, bool)>,
) -> Vec<MountOp> {
    let covered: Vec<PathBuf> = binds
        .iter()
        .filter(|(src, dst, access, _)| {
            *access == BindAccess::System && src != dst && scope_covers(dst, &binds)
        })
        .map(|(_, dst, _, _)| dst.clone())
        .collect();
    binds.retain(|(_, dst, access, _)| *access != BindAccess::System || !covered.contains(dst));
    mounts.retain(|m| !matches!(m, MountOp::Symlink { dst, .. } if scope_covers(dst, &binds)));

    let covers_sys = binds
        .iter()
        .any(|(_, dst, _, _)| Path::new("/sys").starts_with(dst));
    for (src, dst, access, is_dir) in binds {
        mounts.push(MountOp::Bind {
            src,
            dst,
            access,
            is_dir,
        });
    }
    mounts.push(MountOp::Tmpfs {
        dst: PathBuf::from("/tmp"),
        size_bytes: cfg.tmp_size_bytes,
    });
    mounts.push(MountOp::Dev {
        dst: PathBuf::from("/dev"),
    });
    mounts.push(MountOp::Proc {
        dst: PathBuf::from("/proc"),
    });
    for (dst, is_dir) in masks {
        mounts.push(MountOp::Mask { dst, is_dir });
    }
    if covers_sys {
        mounts.push(MountOp::Hide {
            dst: PathBuf::from("/sys"),
        });
    }
    mounts.sort_by_key(|m| (depth(m.dst()), m.order_class()));
    mounts
}
