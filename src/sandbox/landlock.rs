//! Landlock: a ruleset mirroring the mount view, TCP bind/connect denial
//! when the network is denied (ABI ≥ 4) and scoping of signals and
//! abstract Unix sockets (ABI ≥ 6). The highest ABI the kernel offers is
//! used, every requested right is a hard requirement, and a configurable
//! minimum ABI is enforced (fail closed).
//!
//! Pathname Unix sockets: from ABI 9 the kernel handles
//! `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (`connect(2)`/`sendmsg(2)` to a
//! socket file). csc handles it and grants it nowhere unless the operator
//! allowed Unix sockets, and then only in read and write scopes
//! ([`access_with_sockets`]). Below ABI 9 (Linux 6.18 offers ABI 7) the
//! seccomp socket policy is the only control: `socket(AF_UNIX)` is refused
//! without the opt-in.

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use std::os::fd::AsFd;

use super::plan::{LandlockPlan, RuleClass};
use super::sys;
use crate::protocol::contract::NetworkMode;

use super::error::{Cause, StepResult, failed};

/// Landlock ABI offered by the running kernel (0 = unavailable).
pub fn kernel_abi() -> u32 {
    sys::landlock_abi_version().max(0) as u32
}

/// The ABI csc will use on a kernel offering `kernel`: the kernel's, capped
/// at the newest ABI the `landlock` crate knows.
pub fn effective_abi(kernel: u32) -> u32 {
    (ABI::from(kernel.min(i32::MAX as u32) as i32)) as u32
}

fn abi_of(v: u32) -> ABI {
    ABI::from(v.min(i32::MAX as u32) as i32)
}

/// Concrete file-system rights for a rule class at an ABI.
pub fn access_for(class: RuleClass, abi: u32, is_dir: bool) -> BitFlags<AccessFs> {
    let abi = abi_of(abi);
    let all = AccessFs::from_all(abi);
    let read_exec = AccessFs::from_read(abi);
    let read = read_exec & !BitFlags::from(AccessFs::Execute);
    let write_all = all & !(AccessFs::MakeChar | AccessFs::MakeBlock);
    let access = match class {
        RuleClass::ReadExec => read_exec,
        RuleClass::Read => read,
        RuleClass::Write => write_all,
        RuleClass::WriteNoExec => write_all & !BitFlags::from(AccessFs::Execute),
        RuleClass::Device => {
            all & (AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::IoctlDev)
        }
        RuleClass::ListDir => all & AccessFs::ReadDir,
    };
    // Connecting to pathname sockets is granted only by
    // [`access_with_sockets`].
    let access = access & !BitFlags::from(AccessFs::ResolveUnix);
    if is_dir {
        access
    } else {
        access & AccessFs::from_file(abi)
    }
}

/// [`access_for`] plus `RESOLVE_UNIX` (ABI ≥ 9) on read and write scopes
/// when the operator allowed Unix sockets.
pub fn access_with_sockets(
    class: RuleClass,
    abi: u32,
    is_dir: bool,
    allow_unix_sockets: bool,
) -> BitFlags<AccessFs> {
    let base = access_for(class, abi, is_dir);
    let scope = matches!(
        class,
        RuleClass::Read | RuleClass::ReadExec | RuleClass::Write | RuleClass::WriteNoExec
    );
    if allow_unix_sockets && scope {
        base | (AccessFs::from_all(abi_of(abi)) & AccessFs::ResolveUnix)
    } else {
        base
    }
}

/// Whether the kernel ABI lets Landlock control connecting to pathname
/// Unix sockets.
pub fn handles_pathname_sockets(abi: u32) -> bool {
    AccessFs::from_all(abi_of(abi)).contains(AccessFs::ResolveUnix)
}

/// Names of the rights in a set (stable, for profiles).
pub fn names<I>(set: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: std::fmt::Debug,
{
    set.into_iter().map(|f| format!("{f:?}")).collect()
}

/// What the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// ABI used.
    pub abi: u32,
    /// TCP bind/connect handled (and denied).
    pub net: bool,
    /// Signal and abstract-socket scoping active.
    pub scoped: bool,
}

/// Check the host against the plan's requirements without restricting.
pub fn check_requirements(plan: &LandlockPlan, network: NetworkMode) -> StepResult<Enforced> {
    let kernel = kernel_abi();
    if kernel == 0 {
        return Err(Cause::refused(
            "Landlock is not available (kernel built without it or not in the `lsm=` boot list)",
        ));
    }
    let abi = effective_abi(kernel);
    if abi < plan.min_abi {
        return Err(Cause::refused(format!(
            "kernel offers Landlock ABI {kernel}, the configured minimum is {}",
            plan.min_abi
        )));
    }
    if network == NetworkMode::Allowlisted && abi < 4 {
        return Err(Cause::refused(format!(
            "network 'allowlisted' needs Landlock ABI 4 (TCP connect limited to the egress proxy port); kernel offers {kernel}"
        )));
    }
    if network == NetworkMode::Full && abi < 6 {
        return Err(Cause::refused(format!(
            "network 'full' needs Landlock ABI 6 (abstract Unix socket scoping); kernel offers {kernel}"
        )));
    }
    Ok(Enforced {
        abi,
        net: plan.deny_tcp && abi >= 4,
        scoped: abi >= 6,
    })
}

/// Build the ruleset and restrict the calling process (and its future
/// children). Requires `no_new_privs` to be set already. A rule whose path
/// is a bind's destination is added from `bound`, the descriptor of the
/// host object that was checked and bound, never by opening the path
/// again.
pub(crate) fn restrict(
    plan: &LandlockPlan,
    network: NetworkMode,
    bound: &[(std::path::PathBuf, std::os::fd::OwnedFd)],
    allow_unix_sockets: bool,
) -> StepResult<Enforced> {
    let enforced = check_requirements(plan, network)?;
    let abi = abi_of(enforced.abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(failed("handle fs access"))?;
    if enforced.net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(failed("handle net access"))?;
    }
    if enforced.scoped {
        ruleset = ruleset
            .scope(Scope::from_all(abi))
            .map_err(failed("scope"))?;
    }
    let mut created = ruleset.create().map_err(failed("create ruleset"))?;
    for rule in &plan.rules {
        let access = access_with_sockets(rule.class, enforced.abi, rule.is_dir, allow_unix_sockets);
        let added = match bound.iter().find(|(dst, _)| dst == &rule.path) {
            Some((_, fd)) => created.add_rule(PathBeneath::new(fd.as_fd(), access)),
            None => {
                let fd = PathFd::new(&rule.path)
                    .map_err(failed(format!("open {}", rule.path.display())))?;
                created.add_rule(PathBeneath::new(fd, access))
            }
        };
        created = added.map_err(failed(format!("add rule {}", rule.path.display())))?;
    }
    if enforced.net {
        for &port in &plan.connect_tcp_ports {
            created = created
                .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
                .map_err(failed(format!("add connect rule for port {port}")))?;
        }
    }
    let status = created.restrict_self().map_err(failed("restrict_self"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(Cause::refused(format!("ruleset only {:?}", status.ruleset)));
    }
    Ok(enforced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_classes_never_write() {
        for abi in 1..=7 {
            for class in [RuleClass::Read, RuleClass::ReadExec, RuleClass::ListDir] {
                let a = access_for(class, abi, true);
                assert!(!a.contains(AccessFs::WriteFile), "{class:?} abi {abi}");
                assert!(!a.contains(AccessFs::MakeReg));
                assert!(!a.contains(AccessFs::RemoveFile));
            }
            assert!(!access_for(RuleClass::Read, abi, true).contains(AccessFs::Execute));
            assert!(access_for(RuleClass::ReadExec, abi, true).contains(AccessFs::Execute));
        }
    }

    #[test]
    fn write_class_never_creates_devices() {
        for abi in 1..=7 {
            let a = access_for(RuleClass::Write, abi, true);
            assert!(a.contains(AccessFs::WriteFile) && a.contains(AccessFs::MakeReg));
            assert!(!a.contains(AccessFs::MakeChar) && !a.contains(AccessFs::MakeBlock));
            assert!(!access_for(RuleClass::WriteNoExec, abi, true).contains(AccessFs::Execute));
        }
    }

    #[test]
    fn file_rules_only_carry_file_rights() {
        let a = access_for(RuleClass::Write, 7, false);
        assert!(!a.contains(AccessFs::MakeDir));
        assert!(a.contains(AccessFs::WriteFile));
        let d = access_for(RuleClass::Device, 7, false);
        assert!(d.contains(AccessFs::IoctlDev) && d.contains(AccessFs::Truncate));
        assert_eq!(
            access_for(RuleClass::Device, 2, false) & AccessFs::Truncate,
            BitFlags::EMPTY
        );
    }

    #[test]
    fn pathname_socket_connect_only_with_opt_in_in_scopes() {
        for class in [
            RuleClass::Read,
            RuleClass::ReadExec,
            RuleClass::Write,
            RuleClass::WriteNoExec,
            RuleClass::Device,
            RuleClass::ListDir,
        ] {
            for is_dir in [true, false] {
                for abi in 1..=9 {
                    assert!(!access_for(class, abi, is_dir).contains(AccessFs::ResolveUnix));
                    assert!(
                        !access_with_sockets(class, abi, is_dir, false)
                            .contains(AccessFs::ResolveUnix)
                    );
                }
            }
        }
        assert!(
            access_with_sockets(RuleClass::Read, 9, true, true).contains(AccessFs::ResolveUnix)
        );
        assert!(
            access_with_sockets(RuleClass::Write, 9, false, true).contains(AccessFs::ResolveUnix)
        );
        assert!(
            !access_with_sockets(RuleClass::Device, 9, false, true).contains(AccessFs::ResolveUnix)
        );
        assert!(
            !access_with_sockets(RuleClass::Read, 7, true, true).contains(AccessFs::ResolveUnix)
        );
        assert!(handles_pathname_sockets(9) && !handles_pathname_sockets(7));
    }

    #[test]
    fn effective_abi_is_capped() {
        assert_eq!(effective_abi(0), 0);
        assert_eq!(effective_abi(4), 4);
        assert!(effective_abi(1000) >= 7);
    }
}
