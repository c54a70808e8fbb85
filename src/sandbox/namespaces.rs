//! Namespaces: user (invoking uid/gid mapped to itself), mount, pid, ipc,
//! uts, cgroup, and network unless the network is `full` (for
//! `allowlisted` the private namespace holds only `lo` and the egress
//! bridge).

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid};

use super::sys;
use crate::protocol::contract::NetworkMode;

use super::error::{StepResult, failed};

/// Namespace flags for a network mode.
pub(crate) fn flags(network: NetworkMode) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    if network != NetworkMode::Full {
        f |= CloneFlags::CLONE_NEWNET;
    }
    f
}

/// Names of the namespaces entered for a network mode.
pub fn names(network: NetworkMode) -> Vec<&'static str> {
    let mut v = vec!["user", "mount", "pid", "ipc", "uts", "cgroup"];
    if network != NetworkMode::Full {
        v.push("net");
    }
    v
}

/// Unshare all namespaces and map the caller's uid/gid to themselves.
/// The pid namespace applies to the caller's next child.
pub(crate) fn enter(network: NetworkMode) -> StepResult<()> {
    let uid = Uid::effective();
    let gid = Gid::effective();
    unshare(flags(network)).map_err(failed("unshare"))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(failed("write setgroups"))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))
        .map_err(failed("write uid_map"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
        .map_err(failed("write gid_map"))?;
    Ok(())
}

/// Set the hostname and, in a private network namespace, bring `lo` up.
pub(crate) fn configure(network: NetworkMode, hostname: &str) -> StepResult<()> {
    nix::unistd::sethostname(hostname).map_err(failed("sethostname"))?;
    if network != NetworkMode::Full {
        sys::interface_up("lo").map_err(failed("bring lo up"))?;
    }
    Ok(())
}
