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
    /// Deny TCP bind/connect (ABI ≥ 4) — set when network is denied.
    pub deny_tcp: bool,
    /// Path rules.
    pub rules: Vec<LandlockRule>,
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
    /// Network mode (`allowlisted` never reaches a plan).
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
    match spec.network {
        NetworkMode::Deny | NetworkMode::Full => {}
        NetworkMode::Allowlisted => {
            return Err(SandboxError::Unsupported(
                "network mode 'allowlisted' is not supported by the hardened sandbox (it would need an egress proxy); refusing rather than opening the network".into(),
            ));
        }
    }
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

/// Build the plan. Scopes that do not exist on the host are not exposed
/// (fail closed: less access, never more).
pub fn build(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
    fs: &dyn HostFs,
) -> Result<SandboxPlan, SandboxError> {
    validate_spec(spec)?;
    let mut mounts: Vec<MountOp> = Vec::new();
    // (dst, access, is_dir) of every bind, for coverage checks.
    let mut binds: Vec<(PathBuf, BindAccess, bool)> = Vec::new();

    for dir in &cfg.system_ro_dirs {
        let dir = normalize(dir)?;
        if is_kernel_fs(&dir) || dir == Path::new("/") {
            return Err(SandboxError::InvalidSpec(format!(
                "system directory {} cannot be exposed",
                dir.display()
            )));
        }
        match fs.kind(&dir) {
            None => {}
            Some(HostKind::Symlink) => {
                let target = fs.read_link(&dir).ok_or_else(|| {
                    SandboxError::InvalidSpec(format!("cannot read symlink {}", dir.display()))
                })?;
                mounts.push(MountOp::Symlink { target, dst: dir });
            }
            Some(kind) => {
                let src = fs.canonicalize(&dir).unwrap_or_else(|| dir.clone());
                binds.push((src, BindAccess::System, kind == HostKind::Dir));
            }
        }
    }

    let resolve = |p: &Path| -> Result<Option<(PathBuf, bool)>, SandboxError> {
        let n = normalize(p)?;
        let Some(c) = fs.canonicalize(&n) else {
            return Ok(None);
        };
        if is_kernel_fs(&c) {
            return Err(SandboxError::InvalidSpec(format!(
                "scope {} resolves into a kernel file system ({})",
                n.display(),
                c.display()
            )));
        }
        let is_dir = fs.kind(&c) == Some(HostKind::Dir);
        Ok(Some((c, is_dir)))
    };

    let mut writes: Vec<(PathBuf, bool)> = Vec::new();
    for p in &spec.write_paths {
        if let Some(r) = resolve(p)? {
            writes.push(r);
        }
    }
    let mut reads: Vec<(PathBuf, bool)> = Vec::new();
    for p in &spec.read_paths {
        if let Some(r) = resolve(p)? {
            reads.push(r);
        }
    }
    let covered_by = |p: &Path, set: &[(PathBuf, bool)], skip: Option<usize>| {
        set.iter().enumerate().any(|(i, (q, _))| {
            Some(i) != skip && p.starts_with(q) && (p != q || skip.is_none_or(|s| i < s))
        })
    };
    let system_covers = |p: &Path, binds: &[(PathBuf, BindAccess, bool)]| {
        binds.iter().any(|(q, _, _)| p.starts_with(q))
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

    let cwd = fs.canonicalize(&normalize(&spec.cwd)?).ok_or_else(|| {
        SandboxError::InvalidSpec(format!("cwd {} does not exist", spec.cwd.display()))
    })?;
    if fs.kind(&cwd) != Some(HostKind::Dir) {
        return Err(SandboxError::InvalidSpec(format!(
            "cwd {} is not a directory",
            cwd.display()
        )));
    }
    if is_kernel_fs(&cwd) {
        return Err(SandboxError::InvalidSpec(format!(
            "cwd {} lies in a kernel file system",
            cwd.display()
        )));
    }
    let mut read_keep = read_keep;
    if !covered_by(&cwd, &write_keep, None)
        && !covered_by(&cwd, &read_keep, None)
        && !system_covers(&cwd, &binds)
    {
        read_keep.push((cwd.clone(), true));
    }

    binds.extend(read_keep.into_iter().map(|(p, d)| (p, BindAccess::Read, d)));
    binds.extend(
        write_keep
            .into_iter()
            .map(|(p, d)| (p, BindAccess::Write, d)),
    );

    let covers_sys = binds
        .iter()
        .any(|(p, _, _)| Path::new("/sys").starts_with(p));
    for (p, access, is_dir) in &binds {
        mounts.push(MountOp::Bind {
            src: p.clone(),
            dst: p.clone(),
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
    for m in &cfg.masked_paths {
        let m = normalize(m)?;
        let covered = binds.iter().any(|(p, _, _)| m.starts_with(p));
        match fs.kind(&m) {
            Some(HostKind::Dir) if covered => mounts.push(MountOp::Mask {
                dst: m,
                is_dir: true,
            }),
            Some(HostKind::File) if covered => mounts.push(MountOp::Mask {
                dst: m,
                is_dir: false,
            }),
            _ => {}
        }
    }
    if covers_sys {
        mounts.push(MountOp::Hide {
            dst: PathBuf::from("/sys"),
        });
    }
    // Parents before children; at equal depth system < virtual < read < write.
    mounts.sort_by_key(|m| (depth(m.dst()), m.order_class()));

    let rules = landlock_rules(cfg, &mounts);
    Ok(SandboxPlan {
        segments: spec.segments.clone(),
        cwd,
        env: spec.env.clone(),
        network: spec.network,
        mounts,
        landlock: LandlockPlan {
            min_abi: cfg.min_landlock_abi,
            deny_tcp: spec.network == NetworkMode::Deny,
            rules,
        },
        rlimits: cfg.rlimits,
        hostname: cfg.hostname.clone(),
        probe: false,
        allow_unix_sockets: cfg.allow_unix_sockets,
    })
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
        assert!(b.contains(&("/etc".into(), BindAccess::System)));
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
    fn symlinked_scope_is_bound_at_its_target() {
        let mut s = spec();
        s.read_paths = vec!["/lnk".into()];
        let plan = build(&SandboxConfig::default(), &s, &FakeFs::new()).unwrap();
        assert!(binds(&plan).contains(&("/data".into(), BindAccess::Read)));
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
    fn secrets_under_system_dirs_are_masked_after_their_bind() {
        let mut fs = FakeFs::new();
        fs.kinds.insert("/etc/shadow".into(), HostKind::File);
        fs.kinds.insert("/etc/ssh".into(), HostKind::Dir);
        let plan = build(&SandboxConfig::default(), &spec(), &fs).unwrap();
        let etc = plan
            .mounts
            .iter()
            .position(|m| m.dst() == Path::new("/etc"))
            .unwrap();
        let shadow = plan
            .mounts
            .iter()
            .position(|m| matches!(m, MountOp::Mask { dst, is_dir: false } if dst == Path::new("/etc/shadow")))
            .unwrap();
        assert!(etc < shadow);
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
