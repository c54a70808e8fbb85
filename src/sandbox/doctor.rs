//! Host probe: what hardened mode will and will not enforce here, found by
//! actually running the complete setup in a throwaway sandbox (probe
//! mode: every stage runs, nothing is executed), plus the relevant
//! sysctls for the explanation.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plan::{self, RealFs};
use super::spawn::spawn_plan;
use super::{SandboxConfig, SandboxError, SandboxSpec, StatusMsg, landlock};
use crate::protocol::contract::NetworkMode;

/// One probed capability of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCheck {
    /// Short name.
    pub name: String,
    /// Whether it works here.
    pub ok: bool,
    /// What was observed.
    pub detail: String,
    /// How to fix it when it does not work.
    pub fix: Option<String>,
}

/// Result of probing the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// Hardened mode can run here.
    pub hardened_available: bool,
    /// Landlock ABI offered by the kernel.
    pub landlock_abi_kernel: u32,
    /// Landlock ABI csc uses.
    pub landlock_abi_used: u32,
    /// Individual checks.
    pub checks: Vec<HostCheck>,
    /// Relevant sysctls (`None` when absent on this kernel).
    pub sysctls: Vec<(String, Option<String>)>,
    /// What hardened mode enforces here.
    pub enforced: Vec<String>,
    /// What it does not enforce (here or anywhere), and why.
    pub not_enforced: Vec<String>,
}

impl HostReport {
    /// One-paragraph explanation of why hardened mode cannot run.
    pub fn explanation(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| match &c.fix {
                Some(f) => format!("{}: {} (fix: {f})", c.name, c.detail),
                None => format!("{}: {}", c.name, c.detail),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

const SYSCTLS: [&str; 4] = [
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/unprivileged_userns_apparmor_policy",
];

fn read_sysctl(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn userns_fix(sysctls: &[(String, Option<String>)]) -> String {
    let get = |n: &str| {
        sysctls
            .iter()
            .find(|(k, _)| k.ends_with(n))
            .and_then(|(_, v)| v.clone())
    };
    let mut fixes = Vec::new();
    if get("apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        fixes.push(
            "AppArmor restricts unprivileged user namespaces: add an AppArmor profile granting `userns` to the csc binary, or `sysctl kernel.apparmor_restrict_unprivileged_userns=0`",
        );
    }
    if get("unprivileged_userns_clone").as_deref() == Some("0") {
        fixes.push("`sysctl kernel.unprivileged_userns_clone=1`");
    }
    if get("max_user_namespaces").as_deref() == Some("0") {
        fixes.push("`sysctl user.max_user_namespaces=15000`");
    }
    if fixes.is_empty() {
        fixes.push(
            "enable user namespaces (CONFIG_USER_NS) and allow them for this user; inside containers run with a seccomp/AppArmor profile that permits unshare(CLONE_NEWUSER) and mount",
        );
    }
    fixes.join("; ")
}

/// Probe the host; never fails (failures are part of the report).
// Long on purpose: one check after another, in the order `csc doctor`
// prints them; each check is a few lines of facts and its fix text.
pub fn probe_host(cfg: &SandboxConfig) -> HostReport {
    let sysctls: Vec<(String, Option<String>)> = SYSCTLS
        .iter()
        .map(|p| {
            (
                p.trim_start_matches("/proc/sys/").replace('/', "."),
                read_sysctl(p),
            )
        })
        .collect();
    let kernel_abi = landlock::kernel_abi();
    let used = landlock::effective_abi(kernel_abi);
    let mut checks = Vec::new();

    let ll_ok = kernel_abi > 0 && used >= cfg.min_landlock_abi;
    checks.push(HostCheck {
        name: "landlock".into(),
        ok: ll_ok,
        detail: if kernel_abi == 0 {
            "Landlock unavailable".into()
        } else {
            format!("kernel ABI {kernel_abi}, using {used}, minimum {}", cfg.min_landlock_abi)
        },
        fix: (!ll_ok).then(|| {
            "boot a kernel ≥ 6.7 with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y, `landlock` in the `lsm=` list), or lower `min_landlock_abi`".to_string()
        }),
    });
    let seccomp_field = std::fs::read_to_string("/proc/self/status")
        .ok()
        .is_some_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    checks.push(HostCheck {
        name: "seccomp (kernel support)".into(),
        ok: seccomp_field,
        detail: if seccomp_field {
            "CONFIG_SECCOMP_FILTER present".into()
        } else {
            "no seccomp support in /proc/self/status".into()
        },
        fix: (!seccomp_field).then(|| "kernel with CONFIG_SECCOMP_FILTER=y".to_string()),
    });

    // The real thing, in a throwaway sandbox.
    let stages = run_probe(cfg);
    let stage_checks: [(&str, &str, String); 4] = [
        (
            "namespaces",
            "user, mount, pid, net (lo up), ipc, uts, cgroup namespaces",
            userns_fix(&sysctls),
        ),
        (
            "mounts",
            "tmpfs root, binds, mount_setattr, fresh /proc, pivot_root",
            "kernel ≥ 5.12 (mount_setattr); /proc must not be partially over-mounted (container runtimes mask /proc paths: run the container with an unmasked /proc, e.g. `--security-opt systempaths=unconfined`)".into(),
        ),
        (
            "landlock",
            "Landlock ruleset restricted",
            "see the landlock check".into(),
        ),
        (
            "seccomp",
            "seccomp filter installed",
            "kernel with CONFIG_SECCOMP_FILTER=y; not blocked by an outer seccomp policy".into(),
        ),
    ];
    let mut failed_before = None::<String>;
    for (name, what, fix) in stage_checks {
        let ok = stages.ok.iter().any(|s| s == name);
        let detail = if ok {
            format!("{what}: works")
        } else if let Some((st, m)) = stages.error.as_ref().filter(|(st, _)| st == name) {
            format!("{what}: failed at {st}: {m}")
        } else if let Some(prev) = &failed_before {
            format!("{what}: not tested (blocked by failure at {prev})")
        } else if let Some((st, m)) = &stages.error {
            format!("{what}: not reached ({st}: {m})")
        } else {
            format!("{what}: not reported")
        };
        if !ok && failed_before.is_none() {
            failed_before = Some(name.to_string());
        }
        checks.push(HostCheck {
            name: format!("probe: {name}"),
            ok,
            detail,
            fix: (!ok).then_some(fix),
        });
    }
    let available = checks.iter().all(|c| c.ok);
    let mut enforced = Vec::new();
    if available {
        enforced.extend(
            [
                "namespaces: user, mount, pid (csc init), ipc, uts, cgroup; net when network=deny or allowlisted",
                "network=allowlisted (with --egress-allow and --output-dir): only lo; csc's egress proxy (reached by descriptor passing, no host listener) enforces hosts, ports, the private-address guard and TLS SNI; every attempt logged",
                "file-system view: tmpfs root, read-only system dirs, an allowlist of /etc and read scopes, read-write write scopes only, private /tmp, minimal /dev, fresh read-only /proc, no /sys; every bind made from the descriptor csc checked (a symlink swapped in fails the setup); csc's key, state and evidence paths masked",
                "seccomp filter (EPERM for mount/namespace/ptrace/bpf/io_uring/keyring/module/... families; clone3 ENOSYS; x32 guard)",
                "no_new_privs, all capability sets empty, locked securebits, setsid, fds > 2 closed",
                "rlimits: cpu, address space, processes, file size, open files, core=0",
                "lifetime: everything dies on timeout, when csc exits or is killed",
            ]
            .map(String::from),
        );
        enforced.push(format!(
            "sockets: AF_INET/AF_INET6 and NETLINK_ROUTE only; AF_UNIX {}; socketpair AF_UNIX{}",
            if cfg.allow_unix_sockets {
                "allowed (--allow-unix-sockets)"
            } else {
                "refused (EPERM)"
            },
            if cfg.allow_unix_sockets {
                ""
            } else {
                " stream/seqpacket only"
            }
        ));
        enforced.push(format!(
            "Landlock ABI {used}: file-system rights mirroring the view{}{}",
            if used >= 4 {
                "; TCP bind/connect denied when network=deny"
            } else {
                ""
            },
            if used >= 6 {
                "; signals and abstract Unix sockets scoped"
            } else {
                "; NO signal/abstract-socket scoping (ABI < 6): network=full is refused"
            }
        ));
    }
    let mut not_enforced = vec![
        "local mode does not enforce network=allowlisted (the command shares the host network); use --mode hardened with --egress-allow".to_string(),
        "memory and pid limits are per-process rlimits, not cgroup limits (no cgroup delegation required)".into(),
        "network=full shares the host network namespace: UDP and TCP to any host, including host loopback services, are reachable by design".into(),
        "scopes that do not exist when the sandbox starts are not exposed (create output directories first)".into(),
        "read scopes are exposed as their literal prefix before any glob; files matching no glob under that prefix are visible".into(),
    ];
    if cfg.allow_unix_sockets && !super::landlock::handles_pathname_sockets(used) {
        not_enforced.push(format!(
            "--allow-unix-sockets with Landlock ABI {used} (< 9, no RESOLVE_UNIX): every pathname socket visible in the view is connectable"
        ));
    }
    HostReport {
        hardened_available: available,
        landlock_abi_kernel: kernel_abi,
        landlock_abi_used: used,
        checks,
        sysctls,
        enforced,
        not_enforced,
    }
}

/// Probe and fail with the report's explanation when hardened mode cannot
/// run here.
pub fn preflight(cfg: &SandboxConfig) -> Result<HostReport, SandboxError> {
    let r = probe_host(cfg);
    if r.hardened_available {
        Ok(r)
    } else {
        Err(SandboxError::HostUnsupported(r.explanation()))
    }
}

struct ProbeResult {
    ok: Vec<String>,
    error: Option<(String, String)>,
}

fn run_probe(cfg: &SandboxConfig) -> ProbeResult {
    let cwd = ["/usr", "/etc", "/"]
        .iter()
        .map(PathBuf::from)
        .find(|p| Path::new(p).is_dir())
        .unwrap_or_else(|| PathBuf::from("/"));
    let spec = SandboxSpec {
        segments: vec![vec!["/nonexistent/probe".into()]],
        cwd,
        env: Vec::new(),
        read_paths: Vec::new(),
        write_paths: Vec::new(),
        network: NetworkMode::Deny,
        hidden_paths: vec![],
    };
    let fail = |stage: &str, m: String| ProbeResult {
        ok: Vec::new(),
        error: Some((stage.to_string(), m)),
    };
    let mut plan = match plan::build(cfg, &spec, &RealFs) {
        Ok(p) => p,
        Err(e) => return fail("plan", e.to_string()),
    };
    plan.probe = true;
    let devnull = |_| -> std::io::Result<std::os::fd::OwnedFd> {
        Ok(std::fs::File::options()
            .write(true)
            .open("/dev/null")?
            .into())
    };
    let (stdout, stderr) = match (devnull(()), devnull(())) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return fail("spawn", format!("open /dev/null: {e}")),
    };
    let mut child = match spawn_plan(cfg, &plan, stdout, stderr) {
        Ok(c) => c,
        Err(e) => return fail("spawn", e.to_string()),
    };
    let exit = child.wait_raw();
    let msgs = child.read_all_status();
    let mut r = ProbeResult {
        ok: Vec::new(),
        error: None,
    };
    for m in msgs {
        match m {
            StatusMsg::StageOk { stage } => r.ok.push(stage),
            StatusMsg::Error { stage, message } => {
                if r.error.is_none() {
                    r.error = Some((stage, message));
                }
            }
            // Probes run no pipeline.
            StatusMsg::Exited { .. } => {}
        }
    }
    if r.error.is_none() && exit != Some(0) {
        r.error = Some(("probe".into(), format!("probe exited with {exit:?}")));
    }
    r
}
