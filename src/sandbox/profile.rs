//! The sandbox profile: a canonical JSON description of everything hardened
//! mode enforces on this host, and its id (`csbx2-` + 16 hex of the
//! SHA-256 of the canonical JSON). Receipts carry the id; auditors map it
//! back with `csc sandbox-profile`.

use ::landlock::{ABI, Access, AccessFs, AccessNet, Scope};
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{self, DEV_NODES, RuleClass};
use super::{SandboxConfig, caps, landlock, namespaces, seccomp};
use crate::canonical::{Nulls, sha256_hex_of};
use crate::protocol::contract::NetworkMode;

/// Profile id prefix (bump when the profile format changes).
pub const PROFILE_ID_PREFIX: &str = "csbx2-";

/// A sandbox profile and its id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxProfile {
    /// `csbx2-` + first 16 hex digits of SHA-256(canonical JSON of `profile`).
    pub sandbox_profile_id: String,
    /// The profile document.
    pub profile: Value,
}

fn rights(class: RuleClass, abi: u32, is_dir: bool, unix: bool) -> Vec<String> {
    landlock::names(landlock::access_with_sockets(class, abi, is_dir, unix))
}

/// Compute the profile for `cfg` on the running kernel (the Landlock ABI
/// achieved is part of it, so the id differs between hosts that enforce
/// different things).
// Long on purpose: one JSON document, written out as the auditor reads it;
// splitting it would scatter what `sandbox_profile_id` covers.
pub fn profile(cfg: &SandboxConfig) -> SandboxProfile {
    let kernel_abi = landlock::kernel_abi();
    let abi = landlock::effective_abi(kernel_abi);
    let abi_t = ABI::from(abi as i32);
    let (scope_read, scope_write) = plan::scope_classes(cfg);
    let sockets = seccomp::SocketPolicy {
        allow_unix_sockets: cfg.allow_unix_sockets,
    };
    let unix = cfg.allow_unix_sockets;
    let (digest, instructions) = match seccomp::program(sockets) {
        Ok(p) => (Value::String(seccomp::digest(p)), json!(p.len())),
        Err(e) => (Value::String(format!("unavailable: {e}")), Value::Null),
    };
    let denied: Vec<Value> = seccomp::denied_list()
        .into_iter()
        .map(|(n, w)| json!({"syscall": n, "when": w}))
        .collect();
    let body = json!({
        "format": "csc.sandbox_profile.v2",
        "arch": seccomp::arch_name(),
        "namespaces": {
            "network_deny": namespaces::names(NetworkMode::Deny),
            "network_full": namespaces::names(NetworkMode::Full),
            "network_allowlisted": namespaces::names(NetworkMode::Allowlisted),
            "uid_gid": "invoking uid/gid mapped to itself; setgroups denied",
            "pid_init": "csc init as pid 1: reaps, exits with the pipeline status; its death kills the namespace",
        },
        "network": {
            "deny": "private network namespace with only lo up; Landlock denies TCP bind/connect",
            "full": "host network namespace; every other confinement unchanged",
            "allowlisted": "private network namespace with only lo; csc's egress proxy reached through an in-namespace bridge (descriptor passing, no host listener); Landlock allows TCP connect only to the proxy port; see egress",
            "unix_pathname_sockets": if landlock::handles_pathname_sockets(abi) {
                if unix {
                    "connect only inside read/write scopes (Landlock RESOLVE_UNIX)"
                } else {
                    "socket(AF_UNIX) refused by seccomp; connect refused everywhere by Landlock RESOLVE_UNIX"
                }
            } else if unix {
                "operator opt-in: any pathname socket visible in the view is connectable (Landlock ABI < 9 cannot restrict connect)"
            } else {
                "socket(AF_UNIX) refused by seccomp (Landlock ABI < 9 has no pathname-socket control)"
            },
        },
        "egress": crate::egress::profile_json(&cfg.egress),
        "landlock": {
            "abi": abi,
            "kernel_abi": kernel_abi,
            "min_abi": cfg.min_landlock_abi,
            "compat": "hard requirement (fail closed)",
            "handled_fs": landlock::names(AccessFs::from_all(abi_t)),
            "handled_net_when_network_deny": landlock::names(AccessNet::from_all(abi_t)),
            "scopes": landlock::names(Scope::from_all(abi_t)),
            "rights": {
                "system_dirs": rights(RuleClass::ReadExec, abi, true, false),
                "read_scopes_and_cwd": rights(scope_read, abi, true, unix),
                "write_scopes_and_tmp": rights(scope_write, abi, true, unix),
                "dev_nodes": rights(RuleClass::Device, abi, false, false),
                "dev_dir": rights(RuleClass::ListDir, abi, true, false),
                "proc": rights(RuleClass::Read, abi, true, false),
            },
        },
        "seccomp": {
            "program_sha256": digest,
            "instructions": instructions,
            "default_action": "allow",
            "deny_action": "errno EPERM",
            "bad_arch_action": "kill_process",
            "x32_guard": seccomp::arch_name() == "x86_64",
            "clone3": "errno ENOSYS",
            "denied": denied,
            "sockets": sockets.describe(),
        },
        "privileges": {
            "no_new_privs": true,
            "capabilities": "bounding, permitted, effective, inheritable, ambient all empty",
            "securebits": format!("{:#x}", caps::SECUREBITS),
            "setsid": true,
            "inherited_fds": "0, 1, 2 only",
            "environment": "exactly the contract's",
        },
        "rlimits": cfg.rlimits,
        "mounts": {
            "root": "fresh tmpfs, read-only, pivot_root, old root detached",
            "system_paths": cfg.system_paths,
            "system_symlinks": "recreated when the target is in the view, else bound from the resolved target",
            "masked_paths": cfg.masked_paths,
            "csc_private_paths": "signing key, state dir, approval, receipt and output paths: masked wherever a bind covers them; a scope inside one is refused",
            "read_scopes": "recursive read-only binds of resolved, policy-checked literal prefixes that exist",
            "write_scopes": "recursive read-write binds of resolved, policy-checked literal prefixes that exist",
            "bind_source": "openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) of the resolved path, open_tree clone of that descriptor, move_mount onto a mount point opened the same way; Landlock rules from the same descriptors",
            "cwd": "read-only bind unless inside a scope; must lie under allowed_read_prefixes",
            "tmp": {"type": "tmpfs", "size_bytes": cfg.tmp_size_bytes},
            "dev": {"type": "tmpfs, read-only", "nodes": DEV_NODES},
            "proc": "fresh procfs of the sandbox pid namespace, read-only",
            "sys": "absent",
            "flags": "nosuid,nodev on every mount (device node binds: nosuid,noexec)",
            "setattr": "mount_setattr, recursive",
        },
        "lifetime": "PR_SET_PDEATHSIG on helper and init; killing init tears down the pid namespace",
        "hostname": cfg.hostname,
        "exec_in_scopes": cfg.exec_in_scopes,
    });
    let id = format!(
        "{PROFILE_ID_PREFIX}{}",
        &sha256_hex_of(&body, Nulls::Keep)[..16]
    );
    SandboxProfile {
        sandbox_profile_id: id,
        profile: body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_config_sensitive() {
        let a = profile(&SandboxConfig::default());
        let b = profile(&SandboxConfig::default());
        assert_eq!(a, b);
        assert!(a.sandbox_profile_id.starts_with(PROFILE_ID_PREFIX));
        assert_eq!(a.sandbox_profile_id.len(), PROFILE_ID_PREFIX.len() + 16);
        let mut cfg = SandboxConfig::default();
        cfg.rlimits.processes = 3;
        assert_ne!(profile(&cfg).sandbox_profile_id, a.sandbox_profile_id);
        let unix = SandboxConfig {
            allow_unix_sockets: true,
            ..SandboxConfig::default()
        };
        let u = profile(&unix);
        assert_ne!(u.sandbox_profile_id, a.sandbox_profile_id);
        assert_eq!(u.profile["seccomp"]["sockets"]["allow_unix_sockets"], true);
        assert_eq!(a.profile["seccomp"]["sockets"]["allow_unix_sockets"], false);
    }

    #[test]
    fn egress_allowlist_is_part_of_the_id() {
        let base = profile(&SandboxConfig::default()).sandbox_profile_id;
        let with = |allow: &[&str], cidr: &[&str]| {
            let mut cfg = SandboxConfig::default();
            cfg.egress.allow = allow.iter().map(|s| s.to_string()).collect();
            cfg.egress.allow_cidr = cidr.iter().map(|s| s.to_string()).collect();
            profile(&cfg).sandbox_profile_id
        };
        let a = with(&["example.org"], &[]);
        assert_ne!(a, base);
        assert_ne!(with(&["example.net"], &[]), a);
        assert_ne!(with(&["example.org"], &["10.0.0.0/8"]), a);
        // Same allowlist written differently: same id.
        assert_eq!(with(&["EXAMPLE.org.", "example.org"], &[]), a);
    }

    #[test]
    fn lists_denied_syscalls() {
        let p = profile(&SandboxConfig::default());
        let denied = p.profile["seccomp"]["denied"].as_array().unwrap();
        for name in [
            "mount",
            "ptrace",
            "bpf",
            "unshare",
            "clone3",
            "io_uring_setup",
        ] {
            assert!(denied.iter().any(|d| d["syscall"] == name), "{name}");
        }
    }
}
