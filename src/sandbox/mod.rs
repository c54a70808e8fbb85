//! Native kernel sandbox for hardened mode.
//!
//! [`spawn`] starts a single-threaded setup helper — a `fork` of csc when
//! csc is single-threaded, else a re-exec of csc's own binary
//! (`csc __sandbox-init`) that gets the [`plan::SandboxPlan`] as JSON over
//! an inherited pipe — and returns a [`SandboxChild`]. The helper enters fresh
//! user/mount/pid/net/ipc/uts/cgroup namespaces, forks a csc-controlled init
//! (pid 1) which builds a tmpfs root with read-only binds, pivots into it,
//! applies Landlock, rlimits and drops every capability, and then forks the
//! pipeline segments, each of which installs the seccomp filter last and
//! execs its target. Setup failures travel back as JSON lines over a status
//! pipe; nothing ever runs unconfined. See `docs/sandbox.md`.
//!
//! Layout, one mechanism per file: [`plan`] (pure plan builder:
//! `plan/{mod,host,validate,view}.rs`), `namespaces`, `mounts`,
//! [`landlock`] with `landlock_rules` (rules derived from the view),
//! [`seccomp`], `caps`, [`rlimits`], `init` (helper + pid 1), `spawn`
//! (parent side: fork or re-exec), [`error`] (typed setup errors),
//! [`doctor`], [`profile`], and `sys` (the only home of `unsafe`).

pub mod bridge;
mod caps;
pub mod doctor;
pub mod error;
pub mod init;
pub mod landlock;
mod landlock_rules;
mod mounts;
mod namespaces;
mod ops;
pub mod plan;
pub mod profile;
pub mod rlimits;
pub mod seccomp;
mod spawn;
mod sys;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::protocol::contract::NetworkMode;

pub use doctor::{HostReport, preflight};
pub use error::{Cause, SetupError, Stage};
pub use profile::{SandboxProfile, profile};
pub use rlimits::RlimitConfig;
pub use spawn::{SandboxChild, spawn, spawn_with};

/// Exit code of the helper when sandbox setup failed (nothing was run).
pub const SETUP_FAILED_EXIT: i32 = crate::exit::SETUP_FAILED;
/// Exit code of a segment whose target could not be executed.
pub const EXEC_FAILED_EXIT: i32 = crate::exit::NOT_FOUND;

/// Host-level sandbox configuration (from the runner's configuration, not
/// from the agent's contract). Every field has a conservative default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// System paths (directories or files) bound read-only, with execute,
    /// when they exist on the host: the loader and libraries, and an
    /// allowlist of `/etc` entries programs need ([`ETC_ALLOWLIST`]; never
    /// all of `/etc`). Symlinks whose target is in the view anyway (e.g.
    /// `/bin -> usr/bin`) are recreated; others are bound from their
    /// target. Operators add entries with `--ro-bind-system`.
    pub system_paths: Vec<PathBuf>,
    /// Size cap of the private `/tmp` tmpfs, in bytes.
    pub tmp_size_bytes: u64,
    /// Resource limits applied to every sandboxed process.
    pub rlimits: RlimitConfig,
    /// Minimum Landlock ABI required; below it the sandbox refuses to run.
    pub min_landlock_abi: u32,
    /// Allow executing files found in read and write scopes (Landlock
    /// `EXECUTE` right). System directories are always executable.
    pub exec_in_scopes: bool,
    /// Host paths hidden inside the view even when a bind covers them
    /// ([`DEFAULT_MASKS`] plus the operator's `--mask`): files are replaced
    /// by an empty read-only file, directories by an empty read-only tmpfs.
    pub masked_paths: Vec<PathBuf>,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// Binary to re-execute as the setup helper. `None` (default): fork
    /// csc when it is single-threaded, else re-execute `/proc/self/exe`;
    /// `Some`: always re-execute this binary.
    pub helper_exe: Option<PathBuf>,
    /// Allowlisted egress (`--egress-allow`, `--egress-allow-cidr`): used
    /// by commands with `network: allowlisted` only; part of the profile.
    pub egress: crate::egress::EgressConfig,
    /// Operator opt-in (`--allow-unix-sockets`): let sandboxed commands
    /// create `AF_UNIX` sockets and so connect to pathname sockets inside
    /// their read and write scopes. Off: `socket(AF_UNIX)` fails with
    /// `EPERM`; `socketpair(AF_UNIX)` stays available for stream and
    /// seqpacket types.
    pub allow_unix_sockets: bool,
}

/// System directories bound read-only (with execute) when they exist.
pub const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The `/etc` entries programs need, bound read-only when they exist:
/// dynamic loader, users and name service, name resolution, TLS trust
/// stores, time zone, locale, alternatives, OS identity, system-wide git
/// and pip configuration. Nothing else of `/etc` is in the view (no
/// shadow files, no host keys, no csc keys), whoever runs csc.
pub const ETC_ALLOWLIST: [&str; 36] = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/networks",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/etc/crypto-policies",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/default/locale",
    "/etc/alternatives",
    "/etc/os-release",
    "/etc/lsb-release",
    "/etc/debian_version",
    "/etc/mime.types",
    "/etc/inputrc",
    "/etc/terminfo",
    "/etc/gitconfig",
    "/etc/pip.conf",
    "/etc/python3",
    "/etc/mtab",
];

/// Host secrets hidden even when a read scope the policy allows covers
/// them (e.g. a scope of `/`): shadow files, sudoers, host keys, the
/// machine id. `/etc` itself is never bound whole.
pub const DEFAULT_MASKS: [&str; 10] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/machine-id",
];

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            system_paths: SYSTEM_DIRS
                .iter()
                .chain(ETC_ALLOWLIST.iter())
                .map(PathBuf::from)
                .collect(),
            tmp_size_bytes: 256 * 1024 * 1024,
            rlimits: RlimitConfig::default(),
            min_landlock_abi: 4,
            exec_in_scopes: true,
            masked_paths: DEFAULT_MASKS.iter().map(PathBuf::from).collect(),
            hostname: "csc-sandbox".to_string(),
            helper_exe: None,
            egress: crate::egress::EgressConfig::default(),
            allow_unix_sockets: false,
        }
    }
}

/// What to run and with which scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Argv vectors, one per pipeline segment; `argv[0]` is an absolute,
    /// already resolved path.
    pub segments: Vec<Vec<String>>,
    /// Resolved host working directory (must exist).
    pub cwd: PathBuf,
    /// Exact environment of the target(s).
    pub env: Vec<(String, String)>,
    /// Literal read prefixes (bound read-only).
    pub read_paths: Vec<PathBuf>,
    /// Literal write prefixes (bound read-write).
    pub write_paths: Vec<PathBuf>,
    /// Network mode of the command.
    pub network: NetworkMode,
    /// csc's own files (signing key, state dir, approval, receipt and
    /// output paths): masked wherever a bind would expose them, and no
    /// scope may lie inside one.
    #[serde(default)]
    pub hidden_paths: Vec<PathBuf>,
}

/// How a sandboxed run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxExit {
    /// Pipeline status: first non-zero segment exit code in order, 128+N
    /// for a segment killed by signal N, 0 if all succeeded;
    /// [`SETUP_FAILED_EXIT`] when setup failed.
    pub exit_code: i32,
    /// Set when the sandbox could not be set up (or a target could not be
    /// executed); nothing ran unconfined in that case.
    pub setup_error: Option<String>,
}

/// Errors of the sandbox API.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec or configuration cannot be enforced as given.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The requested mode is not supported by the native sandbox.
    #[error("{0}")]
    Unsupported(String),
    /// The host lacks a kernel feature hardened mode requires.
    #[error("hardened mode unavailable on this host: {0}")]
    HostUnsupported(String),
    /// A system call on the parent side failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Setup inside the helper failed (structured report from the helper).
    #[error("sandbox setup failed at {stage}: {message}")]
    Setup {
        /// Setup stage (`namespaces`, `mounts`, `landlock`, ...).
        stage: String,
        /// Human-readable reason.
        message: String,
    },
}

impl SandboxError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            what: what.into(),
            source,
        }
    }
}

/// One line of the helper → parent status protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StatusMsg {
    /// A setup stage failed; nothing was executed by the reporting process.
    Error {
        /// Stage name.
        stage: String,
        /// Reason.
        message: String,
    },
    /// A setup stage succeeded (emitted in probe mode only).
    StageOk {
        /// Stage name.
        stage: String,
    },
    /// Init's last line: every segment exited, every other process of
    /// the pid namespace has been killed and reaped, and init no longer
    /// holds the capture pipes; `code` is the pipeline status. The parent
    /// may end the run on it without waiting for the namespaces' teardown.
    Exited {
        /// Pipeline status (what init exits with).
        code: i32,
    },
}
