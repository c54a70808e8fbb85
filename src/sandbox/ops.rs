//! The mount view's vocabulary: what [`super::plan`] builds, what
//! [`super::mounts`] applies and what [`super::landlock_rules`] derives
//! Landlock rules from. Kept below all three so none depends on another.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Device nodes bound into the minimal `/dev`.
pub const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

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

    pub(super) fn order_class(&self) -> u8 {
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
