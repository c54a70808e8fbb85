//! Pure plan builder: turns a [`SandboxConfig`] and a [`SandboxSpec`] into a
//! serializable [`SandboxPlan`] (mount operations in execution order,
//! Landlock rules, limits). Host file-system facts come in through the
//! [`HostFs`] trait so the builder is unit-testable without a kernel.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rlimits::RlimitConfig;
use super::{SandboxConfig, SandboxError, SandboxSpec};
use crate::protocol::contract::NetworkMode;

/// Upper bound on pipeline segments accepted by the sandbox.
pub const MAX_SEGMENTS: usize = 16;
/// Device nodes bound into the minimal `/dev`.
pub const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// Kernel file systems that are never exposed from the host.
pub const KERNEL_FS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// What a bind mount grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindAccess {
    /// Configured system directory: read-only, executable.
    System,
    /// Declared read scope (or the cwd): read-only.
    Read,
    /// Declared write scope: read-write.
    Write,
}

/// One mount-namespace operation, executed in order inside the new root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MountOp {
    /// Recursive bind of host `src` at `dst`; read-only unless `Write`.
    Bind {
        /// Host path (canonical).
        src: PathBuf,
        /// Path inside the sandbox.
        dst: PathBuf,
        /// Granted access.
        access: BindAccess,
        /// Directory (true) or file (false).
        is_dir: bool,
    },
    /// A symlink (system dirs that are symlinks on the host).
    Symlink {
        /// Link target, verbatim.
        target: PathBuf,
        /// Link location.
        dst: PathBuf,
    },
    /// Private size-capped tmpfs (`/tmp`).
    Tmpfs {
        /// Mount point.
        dst: PathBuf,
        /// Size cap in bytes.
        size_bytes: u64,
    },
    /// Minimal `/dev`: tmpfs with binds of [`DEV_NODES`].
    Dev {
        /// Mount point.
        dst: PathBuf,
    },
    /// Fresh read-only procfs for the sandbox's pid namespace.
    Proc {
        /// Mount point.
        dst: PathBuf,
    },
    /// Empty read-only tmpfs hiding a host directory (e.g. `/sys` below a
    /// scope that covers `/`).
    Hide {
        /// Mount point.
        dst: PathBuf,
    },
    /// Hide a configured secret path under a bind: an empty read-only
    /// file or directory is mounted over it.
    Mask {
        /// Path inside the sandbox.
        dst: PathBuf,
        /// Directory (true) or file (false).
        is_dir: bool,
    },
}

impl MountOp {
    /// Destination path of the operation.
    pub fn dst(&self) -> &Path {
        match self {
            MountOp::Bind { dst, .. }
            | MountOp::Symlink { dst, .. }
            | MountOp::Tmpfs { dst, .. }
            | MountOp::Dev { dst }
            | MountOp::Proc { dst }
            | MountOp::Hide { dst }
            | MountOp::Mask { dst, .. } => dst,
        }
    }

    fn order_class(&self) -> u8 {
        match self {
            MountOp::Symlink { .. } => 0,
            MountOp::Bind {
                access: BindAccess::System,
                ..
            } => 0,
            MountOp::Tmpfs { .. }
            | MountOp::Dev { .. }
            | MountOp::Proc { .. }
            | MountOp::Hide { .. } => 1,
            MountOp::Bind {
                access: BindAccess::Read,
                ..
            } => 2,
            MountOp::Bind {
                access: BindAccess::Write,
                ..
            } => 3,
            MountOp::Mask { .. } => 4,
        }
    }
}

/// Class of a Landlock rule; mapped to concrete access rights for the
/// kernel's ABI by [`super::landlock::access_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleClass {
    /// Read files, list directories, execute.
    ReadExec,
    /// Read files, list directories.
    Read,
    /// Full file access except device creation; execute only when the
    /// config allows execution in scopes.
    Write,
    /// Write scope without execute.
    WriteNoExec,
    /// Device node: read, write, truncate, device ioctls.
    Device,
    /// List a directory only.
    ListDir,
}

/// One Landlock path rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockRule {
    /// Path inside the sandbox.
    pub path: PathBuf,
    /// Granted class.
    pub class: RuleClass,
    /// Directory (true) or file (false).
    pub is_dir: bool,
}

/// Landlock part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockPlan {
    /// Minimum ABI; below it setup fails.
    pub min_abi: u32,
    /// Deny TCP bind/connect (ABI ≥ 4) — set when network is denied or
    /// allowlisted.
    pub deny_tcp: bool,
    /// Path rules.
    pub rules: Vec<LandlockRule>,
    /// TCP ports connect is allowed to despite `deny_tcp` (the egress
    /// bridge's port for `network: allowlisted`).
    #[serde(default)]
    pub connect_tcp_ports: Vec<u16>,
}

/// Egress bridge part of the plan (`network: allowlisted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPlan {
    /// Port of the bridge's listener on 127.0.0.1 in the sandbox.
    pub port: u16,
    /// Inherited descriptor of the helper's end of the bridge socketpair
    /// (set by `spawn`; -1 in a plan that has not been spawned).
    pub channel_fd: i32,
}

/// Everything the helper needs, serialized as JSON over the plan pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxPlan {
    /// Argv per segment.
    pub segments: Vec<Vec<String>>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// Exact environment.
    pub env: Vec<(String, String)>,
    /// Network mode.
    pub network: NetworkMode,
    /// Mount operations in execution order.
    pub mounts: Vec<MountOp>,
    /// Landlock rules.
    pub landlock: LandlockPlan,
    /// Resource limits.
    pub rlimits: RlimitConfig,
    /// Hostname in the UTS namespace.
    pub hostname: String,
    /// Probe mode (doctor): perform every setup stage, report each, exec
    /// nothing.
    #[serde(default)]
    pub probe: bool,
    /// Egress bridge, for `network: allowlisted`.
    #[serde(default)]
    pub egress: Option<EgressPlan>,
    /// Socket policy: `AF_UNIX` sockets allowed (seccomp) and pathname
    /// sockets in scopes connectable (Landlock, where the kernel can).
    #[serde(default)]
    pub allow_unix_sockets: bool,
}

/// Kind of a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// Directory.
    Dir,
    /// Anything else that can be bound (regular file, device, ...).
    File,
    /// Symbolic link (not followed).
    Symlink,
}

/// Host file-system facts the builder needs.
pub trait HostFs {
    /// Kind of `path` without following a final symlink; `None` if missing.
    fn kind(&self, path: &Path) -> Option<HostKind>;
    /// Canonical path (all symlinks resolved); `None` if missing.
    fn canonicalize(&self, path: &Path) -> Option<PathBuf>;
    /// Target of a symlink.
    fn read_link(&self, path: &Path) -> Option<PathBuf>;
}

/// [`HostFs`] backed by the real file system.
pub struct RealFs;

/// [`HostFs`] that reports every existing path below `under` as already
/// resolved: a plan built with it holds those paths exactly as given, as if
/// a symlink had appeared after csc checked them. Only for tests of the
/// helper's own refusal to bind through symlinks (`csc __sandbox-run
/// --simulate-swap DIR`).
pub struct SwappedFs {
    /// Paths below this one are taken as given.
    pub under: PathBuf,
}

impl HostFs for SwappedFs {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        if !path.starts_with(&self.under) {
            return RealFs.kind(path);
        }
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() {
            HostKind::Dir
        } else {
            HostKind::File
        })
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        if !path.starts_with(&self.under) {
            return RealFs.canonicalize(path);
        }
        std::fs::metadata(path).ok().map(|_| path.to_path_buf())
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        RealFs.read_link(path)
    }
}

impl HostFs for RealFs {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(if m.file_type().is_symlink() {
            HostKind::Symlink
        } else if m.is_dir() {
            HostKind::Dir
        } else {
            HostKind::File
        })
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        std::fs::read_link(path).ok()
    }
}

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

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn is_kernel_fs(p: &Path) -> bool {
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

/// Where a system path appears in the view.
enum SystemEntry {
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
fn system_entries(cfg: &SandboxConfig, fs: &dyn HostFs) -> Result<Vec<SystemEntry>, SandboxError> {
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

/// A declared scope (already resolved by the caller): `None` when it does
/// not exist; an error when it is not symlink-free, since only the path the
/// caller checked against the policy may be bound.
fn scope(p: &Path, what: &str, fs: &dyn HostFs) -> Result<Option<(PathBuf, bool)>, SandboxError> {
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

/// Build the plan. Scopes that do not exist on the host are not exposed
/// (fail closed: less access, never more); scopes, the cwd and csc's
/// private paths must be symlink-free (the caller resolved and checked
/// them).
pub fn build(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
    fs: &dyn HostFs,
) -> Result<SandboxPlan, SandboxError> {
    validate_spec(spec)?;
    let mut mounts: Vec<MountOp> = Vec::new();
    // (src, dst, access, is_dir) of every bind, for coverage checks.
    let mut binds: Vec<(PathBuf, PathBuf, BindAccess, bool)> = Vec::new();
    for entry in system_entries(cfg, fs)? {
        match entry {
            SystemEntry::Bind(src, dst, is_dir) => {
                binds.push((src, dst, BindAccess::System, is_dir))
            }
            SystemEntry::Link(target, dst) => mounts.push(MountOp::Symlink { target, dst }),
        }
    }

    let mut writes: Vec<(PathBuf, bool)> = Vec::new();
    for p in &spec.write_paths {
        if let Some(r) = scope(p, "write scope", fs)? {
            writes.push(r);
        }
    }
    let mut reads: Vec<(PathBuf, bool)> = Vec::new();
    for p in &spec.read_paths {
        if let Some(r) = scope(p, "read scope", fs)? {
            reads.push(r);
        }
    }
    let covered_by = |p: &Path, set: &[(PathBuf, bool)], skip: Option<usize>| {
        set.iter().enumerate().any(|(i, (q, _))| {
            Some(i) != skip && shows(q, p) && (p != q || skip.is_none_or(|s| i < s))
        })
    };
    let system_covers = |p: &Path, binds: &[(PathBuf, PathBuf, BindAccess, bool)]| {
        binds
            .iter()
            .any(|(src, dst, _, _)| src == dst && shows(src, p))
    };
    // Write scopes: drop duplicates and nested ones.
    let write_keep: Vec<(PathBuf, bool)> = writes
        .iter()
        .enumerate()
        .filter(|(i, (p, _))| !covered_by(p, &writes, Some(*i)))
        .map(|(_, w)| w.clone())
        .collect();
    // Read scopes: drop those covered by a write scope, a system dir or
    // another read scope.
    let read_keep: Vec<(PathBuf, bool)> = reads
        .iter()
        .enumerate()
        .filter(|(i, (p, _))| {
            !covered_by(p, &reads, Some(*i))
                && !covered_by(p, &write_keep, None)
                && !system_covers(p, &binds)
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
    let mut read_keep = read_keep;
    if !covered_by(&cwd, &write_keep, None)
        && !covered_by(&cwd, &read_keep, None)
        && !system_covers(&cwd, &binds)
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

    // csc's private paths: never visible. A scope inside one cannot be
    // served without exposing it; one covered by a bind is masked.
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
        for (src, dst, _, _) in &binds {
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

    // A scope that covers a system path shows the host's own entry there
    // (a symlink included): drop the system bind or recreated link.
    let scope_covers = |p: &Path, binds: &[(PathBuf, PathBuf, BindAccess, bool)]| {
        binds
            .iter()
            .any(|(_, dst, access, _)| *access != BindAccess::System && p.starts_with(dst))
    };
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
    for (src, dst, access, is_dir) in &binds {
        mounts.push(MountOp::Bind {
            src: src.clone(),
            dst: dst.clone(),
            access: *access,
            is_dir: *is_dir,
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
    // Parents before children; at equal depth system < virtual < read < write.
    mounts.sort_by_key(|m| (depth(m.dst()), m.order_class()));

    let rules = landlock_rules(cfg, &mounts);
    let egress = egress_plan(cfg, spec)?;
    let mut env = spec.env.clone();
    if egress.is_some() {
        env = crate::egress::proxy_env(env);
    }
    Ok(SandboxPlan {
        segments: spec.segments.clone(),
        cwd,
        env,
        network: spec.network,
        mounts,
        landlock: LandlockPlan {
            min_abi: cfg.min_landlock_abi,
            deny_tcp: spec.network != NetworkMode::Full,
            rules,
            connect_tcp_ports: egress.iter().map(|e| e.port).collect(),
        },
        rlimits: cfg.rlimits,
        hostname: cfg.hostname.clone(),
        probe: false,
        egress,
        allow_unix_sockets: cfg.allow_unix_sockets,
    })
}

/// `network: allowlisted` needs a valid, non-empty `--egress-allow` list;
/// other modes get no bridge.
fn egress_plan(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
) -> Result<Option<EgressPlan>, SandboxError> {
    if spec.network != NetworkMode::Allowlisted {
        return Ok(None);
    }
    if cfg.egress.allow.is_empty() {
        return Err(SandboxError::Unsupported(
            crate::egress::MISSING_ALLOWLIST.into(),
        ));
    }
    cfg.egress.compile().map_err(SandboxError::InvalidSpec)?;
    Ok(Some(EgressPlan {
        port: crate::egress::PROXY_PORT,
        channel_fd: -1,
    }))
}

/// Landlock classes of read scopes and write scopes: with execute rights
/// only when the configuration allows executing files found in scopes.
pub fn scope_classes(cfg: &SandboxConfig) -> (RuleClass, RuleClass) {
    if cfg.exec_in_scopes {
        (RuleClass::ReadExec, RuleClass::Write)
    } else {
        (RuleClass::Read, RuleClass::WriteNoExec)
    }
}

/// Landlock rules mirroring the mount view.
pub fn landlock_rules(cfg: &SandboxConfig, mounts: &[MountOp]) -> Vec<LandlockRule> {
    let (scope_read, scope_write) = scope_classes(cfg);
    let mut rules = Vec::new();
    for m in mounts {
        match m {
            MountOp::Bind {
                dst,
                access,
                is_dir,
                ..
            } => rules.push(LandlockRule {
                path: dst.clone(),
                class: match access {
                    BindAccess::System => RuleClass::ReadExec,
                    BindAccess::Read => scope_read,
                    BindAccess::Write => scope_write,
                },
                is_dir: *is_dir,
            }),
            MountOp::Tmpfs { dst, .. } => rules.push(LandlockRule {
                path: dst.clone(),
                class: scope_write,
                is_dir: true,
            }),
            MountOp::Dev { dst } => {
                rules.push(LandlockRule {
                    path: dst.clone(),
                    class: RuleClass::ListDir,
                    is_dir: true,
                });
                for n in DEV_NODES {
                    rules.push(LandlockRule {
                        path: dst.join(n),
                        class: RuleClass::Device,
                        is_dir: false,
                    });
                }
            }
            MountOp::Proc { dst } => rules.push(LandlockRule {
                path: dst.clone(),
                class: RuleClass::Read,
                is_dir: true,
            }),
            MountOp::Symlink { .. } | MountOp::Hide { .. } | MountOp::Mask { .. } => {}
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// In-memory host: path → kind, plus symlink targets.
    struct FakeFs {
        kinds: HashMap<PathBuf, HostKind>,
        links: HashMap<PathBuf, PathBuf>,
    }

    impl FakeFs {
        fn new() -> Self {
            let mut f = FakeFs {
                kinds: HashMap::new(),
                links: HashMap::new(),
            };
            for d in [
                "/",
                "/usr",
                "/etc",
                "/work",
                "/work/repo",
                "/work/repo/out",
                "/tmp",
                "/tmp/job",
                "/data",
            ] {
                f.kinds.insert(d.into(), HostKind::Dir);
            }
            f.kinds.insert("/work/repo/file.txt".into(), HostKind::File);
            f.kinds.insert("/bin".into(), HostKind::Symlink);
            f.links.insert("/bin".into(), "usr/bin".into());
            f.kinds.insert("/lnk".into(), HostKind::Symlink);
            f.links.insert("/lnk".into(), "/data".into());
            f
        }
    }

    impl HostFs for FakeFs {
        fn kind(&self, p: &Path) -> Option<HostKind> {
            self.kinds.get(p).copied()
        }
        fn canonicalize(&self, p: &Path) -> Option<PathBuf> {
            if let Some(t) = self.links.get(p) {
                return if t.is_absolute() {
                    Some(t.clone())
                } else {
                    Some(PathBuf::from("/").join(t))
                };
            }
            self.kinds.contains_key(p).then(|| p.to_path_buf())
        }
        fn read_link(&self, p: &Path) -> Option<PathBuf> {
            self.links.get(p).cloned()
        }
    }

    fn spec() -> SandboxSpec {
        SandboxSpec {
            segments: vec![vec!["/usr/bin/true".into()]],
            cwd: "/work/repo".into(),
            env: vec![("PATH".into(), "/usr/bin".into())],
            read_paths: vec!["/work/repo".into()],
            write_paths: vec![],
            network: NetworkMode::Deny,
            hidden_paths: vec![],
        }
    }

    fn binds(plan: &SandboxPlan) -> Vec<(String, BindAccess)> {
        plan.mounts
            .iter()
            .filter_map(|m| match m {
                MountOp::Bind { dst, access, .. } => Some((dst.display().to_string(), *access)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn system_dirs_bound_and_symlinks_recreated() {
        let plan = build(&SandboxConfig::default(), &spec(), &FakeFs::new()).unwrap();
        assert!(plan.mounts.contains(&MountOp::Symlink {
            target: "usr/bin".into(),
            dst: "/bin".into()
        }));
        let b = binds(&plan);
        assert!(b.contains(&("/usr".into(), BindAccess::System)));
        assert!(!b.contains(&("/etc".into(), BindAccess::System)));
        // Missing dirs (/sbin, /lib...) are skipped.
        assert!(!b.iter().any(|(p, _)| p == "/sbin"));
    }

    #[test]
    fn write_scope_nested_in_read_scope_is_mounted_after() {
        let mut s = spec();
        s.write_paths = vec!["/work/repo/out".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        let b = binds(&plan);
        let r = b
            .iter()
            .position(|x| x == &("/work/repo".into(), BindAccess::Read))
            .unwrap();
        let w = b
            .iter()
            .position(|x| x == &("/work/repo/out".into(), BindAccess::Write))
            .unwrap();
        assert!(r < w);
    }

    #[test]
    fn read_scope_inside_write_scope_is_dropped() {
        let mut s = spec();
        s.write_paths = vec!["/work".into()];
        s.read_paths = vec!["/work/repo".into(), "/work/repo/file.txt".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        let b = binds(&plan);
        assert!(b.contains(&("/work".into(), BindAccess::Write)));
        assert!(!b.iter().any(|(p, _)| p.starts_with("/work/")));
    }

    #[test]
    fn cwd_is_bound_read_only_when_not_in_scope() {
        let mut s = spec();
        s.read_paths = vec![];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        assert!(binds(&plan).contains(&("/work/repo".into(), BindAccess::Read)));
    }

    #[test]
    fn cwd_under_tmp_is_bound_over_private_tmp() {
        let mut s = spec();
        s.cwd = "/tmp/job".into();
        s.read_paths = vec![];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        let tmp = plan
            .mounts
            .iter()
            .position(|m| matches!(m, MountOp::Tmpfs { .. }))
            .unwrap();
        let job = plan
            .mounts
            .iter()
            .position(|m| m.dst() == Path::new("/tmp/job"))
            .unwrap();
        assert!(tmp < job);
    }

    #[test]
    fn missing_scopes_are_not_exposed() {
        let mut s = spec();
        s.write_paths = vec!["/nope".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        assert!(!binds(&plan).iter().any(|(p, _)| p == "/nope"));
    }

    #[test]
    fn symlinked_scope_is_refused_not_bound_at_its_target() {
        for field in ["read", "write", "cwd"] {
            let mut s = spec();
            match field {
                "read" => s.read_paths = vec!["/lnk".into()],
                "write" => s.write_paths = vec!["/lnk".into()],
                _ => s.cwd = "/lnk".into(),
            }
            let e = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{field}: {e}");
        }
    }

    #[test]
    fn etc_is_an_allowlist_and_private_paths_are_masked_or_refused() {
        let mut fs = FakeFs::new();
        for f in ["/etc/passwd", "/etc/shadow", "/work/repo/key.pem"] {
            fs.kinds.insert(f.into(), HostKind::File);
        }
        fs.kinds.insert("/etc/csc".into(), HostKind::Dir);
        fs.kinds
            .insert("/etc/csc/signing.pem".into(), HostKind::File);
        fs.kinds
            .insert("/etc/resolv.conf".into(), HostKind::Symlink);
        fs.links
            .insert("/etc/resolv.conf".into(), "/run/resolv.conf".into());
        fs.kinds.insert("/run/resolv.conf".into(), HostKind::File);
        let mut s = spec();
        s.hidden_paths = vec!["/work/repo/key.pem".into(), "/etc/csc/signing.pem".into()];
        let plan = build(&SandboxConfig::default(), &s, &fs).unwrap();
        let b = binds(&plan);
        assert!(b.contains(&("/etc/passwd".into(), BindAccess::System)));
        assert!(!b.iter().any(|(p, _)| p == "/etc"
            || p.starts_with("/etc/shadow")
            || p.starts_with("/etc/csc")));
        // A symlink leading out of the view is bound from its target.
        assert!(plan.mounts.contains(&MountOp::Bind {
            src: "/run/resolv.conf".into(),
            dst: "/etc/resolv.conf".into(),
            access: BindAccess::System,
            is_dir: false
        }));
        assert!(plan.mounts.contains(&MountOp::Mask {
            dst: "/work/repo/key.pem".into(),
            is_dir: false
        }));
        // A scope inside a private path is refused.
        let mut s = spec();
        s.hidden_paths = vec!["/work".into()];
        let e = build(&SandboxConfig::default(), &s, &fs).unwrap_err();
        assert!(e.to_string().contains("private"), "{e}");
        // Operator binds and masks.
        let cfg = SandboxConfig {
            system_paths: vec!["/usr".into(), "/data".into()],
            masked_paths: vec!["/data".into()],
            ..SandboxConfig::default()
        };
        let plan = build(&cfg, &spec(), &fs).unwrap();
        assert!(binds(&plan).contains(&("/data".into(), BindAccess::System)));
        assert!(plan.mounts.contains(&MountOp::Mask {
            dst: "/data".into(),
            is_dir: true
        }));
    }

    #[test]
    fn kernel_fs_scopes_are_rejected() {
        for p in ["/proc/1", "/sys", "/dev/sda", "/proc"] {
            let mut s = spec();
            s.read_paths = vec![p.into()];
            assert!(
                build(&SandboxConfig::default(), &s, &FakeFs::new()).is_err(),
                "{p}"
            );
        }
    }

    #[test]
    fn root_scope_hides_sys_and_is_overmounted() {
        let mut s = spec();
        s.read_paths = vec!["/".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        assert_eq!(plan.mounts[0].dst(), Path::new("/"));
        assert!(
            plan.mounts
                .iter()
                .any(|m| matches!(m, MountOp::Hide { dst } if dst == Path::new("/sys")))
        );
        let root = 0;
        let proc_ = plan
            .mounts
            .iter()
            .position(|m| matches!(m, MountOp::Proc { .. }))
            .unwrap();
        assert!(root < proc_);
    }

    #[test]
    fn masks_come_after_their_bind() {
        let mut fs = FakeFs::new();
        fs.kinds.insert("/work/repo/.env".into(), HostKind::File);
        fs.kinds.insert("/work/repo/keys".into(), HostKind::Dir);
        let cfg = SandboxConfig {
            masked_paths: vec!["/work/repo/.env".into(), "/work/repo/keys".into()],
            ..SandboxConfig::default()
        };
        let plan = build(&cfg, &spec(), &fs).unwrap();
        let repo = plan
            .mounts
            .iter()
            .position(|m| m.dst() == Path::new("/work/repo"))
            .unwrap();
        let env = plan
            .mounts
            .iter()
            .position(|m| matches!(m, MountOp::Mask { dst, is_dir: false } if dst == Path::new("/work/repo/.env")))
            .unwrap();
        assert!(repo < env);
        assert!(
            plan.mounts
                .iter()
                .any(|m| matches!(m, MountOp::Mask { is_dir: true, .. }))
        );
    }

    #[test]
    fn allowlisted_network_is_refused() {
        let mut s = spec();
        s.network = NetworkMode::Allowlisted;
        let e = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap_err();
        assert!(e.to_string().contains("allowlisted"));
    }

    #[test]
    fn bad_specs_are_rejected() {
        let fs = FakeFs::new();
        let cfg = SandboxConfig::default();
        let mut s = spec();
        s.segments = vec![vec!["true".into()]];
        assert!(build(&cfg, &s, &fs).is_err());
        let mut s = spec();
        s.segments = vec![];
        assert!(build(&cfg, &s, &fs).is_err());
        let mut s = spec();
        s.read_paths = vec!["/work/../etc".into()];
        assert!(build(&cfg, &s, &fs).is_err());
        let mut s = spec();
        s.env = vec![("A=B".into(), "x".into())];
        assert!(build(&cfg, &s, &fs).is_err());
        let mut s = spec();
        s.segments = vec![vec!["/usr/bin/x\0".into()]];
        assert!(build(&cfg, &s, &fs).is_err());
        let mut s = spec();
        s.cwd = "/nope".into();
        assert!(build(&cfg, &s, &fs).is_err());
    }

    #[test]
    fn landlock_rules_mirror_the_view() {
        let mut s = spec();
        s.write_paths = vec!["/work/repo/out".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        let class = |p: &str| {
            plan.landlock
                .rules
                .iter()
                .find(|r| r.path == Path::new(p))
                .map(|r| r.class)
        };
        assert_eq!(class("/usr"), Some(RuleClass::ReadExec));
        assert_eq!(class("/work/repo"), Some(RuleClass::ReadExec));
        assert_eq!(class("/work/repo/out"), Some(RuleClass::Write));
        assert_eq!(class("/tmp"), Some(RuleClass::Write));
        assert_eq!(class("/dev/null"), Some(RuleClass::Device));
        assert_eq!(class("/proc"), Some(RuleClass::Read));
        assert_eq!(class("/bin"), None);
        assert!(plan.landlock.deny_tcp);
        let cfg = SandboxConfig {
            exec_in_scopes: false,
            ..SandboxConfig::default()
        };
        let plan = build(&cfg, &s, &FakeFs::new()).unwrap();
        assert!(
            plan.landlock
                .rules
                .iter()
                .any(|r| r.class == RuleClass::WriteNoExec)
        );
    }

    #[test]
    fn plan_round_trips_through_json() {
        let plan = build(&SandboxConfig::default(), &spec(), &FakeFs::new()).unwrap();
        let j = serde_json::to_string(&plan).unwrap();
        let back: SandboxPlan = serde_json::from_str(&j).unwrap();
        assert_eq!(plan, back);
    }
}
