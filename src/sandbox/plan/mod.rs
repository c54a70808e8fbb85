//! Pure plan builder: turns a [`SandboxConfig`] and a [`SandboxSpec`] into a
//! serializable [`SandboxPlan`] (mount operations in execution order,
//! Landlock rules, limits). Host file-system facts come in through the
//! [`HostFs`] trait so the builder is unit-testable without a kernel.
//!
//! Layout: this file holds the plan's wire types and [`build`]; `host` the
//! [`HostFs`] seam, `validate` spec validation, `view` the mount view. The
//! view's vocabulary ([`MountOp`], [`BindAccess`]) lives in `sandbox::ops`
//! and the Landlock rules that mirror the view (with [`LandlockRule`]) in
//! `sandbox::landlock_rules`, beside `landlock.rs`, so neither depends on
//! the plan.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::rlimits::RlimitConfig;
use super::{SandboxConfig, SandboxError, SandboxSpec};
use crate::protocol::contract::NetworkMode;

mod host;
mod validate;
mod view;

pub use super::landlock_rules::{LandlockRule, RuleClass, landlock_rules, scope_classes};
pub use super::ops::{BindAccess, DEV_NODES, MountOp};
pub use host::{HostFs, HostKind, Memo, RealFs, SwappedFs};
pub use validate::{normalize, validate_spec};

/// Upper bound on pipeline segments accepted by the sandbox.
pub const MAX_SEGMENTS: usize = 16;
/// Kernel file systems that are never exposed from the host.
pub const KERNEL_FS: [&str; 3] = ["/proc", "/sys", "/dev"];

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
    let fs = &Memo::new(fs);
    let (mut binds, links) = view::system_binds(cfg, fs)?;
    let cwd = view::scope_binds(spec, fs, &mut binds)?;
    let masks = view::masks(cfg, spec, fs, &binds)?;
    let mounts = view::mount_ops(cfg, binds, links, masks);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

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
