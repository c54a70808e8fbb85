//! Landlock rule derivation: the rules that mirror a plan's mount view
//! (applied by [`super::landlock::restrict`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SandboxConfig;
use super::ops::{BindAccess, DEV_NODES, MountOp};

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
