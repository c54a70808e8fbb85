//! Resource caps (rlimits). Soft and hard limits are set to the same value
//! so the command cannot raise them (it has no `CAP_SYS_RESOURCE`).

use rlimit::Resource;
use serde::{Deserialize, Serialize};

use super::error::{StepResult, failed};

/// Resource limits for every sandboxed process. Values are per process, as
/// the kernel defines them (`processes` counts per user inside the
/// sandbox's user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlimitConfig {
    /// `RLIMIT_CPU`, seconds of CPU time.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS`, bytes of address space.
    pub address_space_bytes: u64,
    /// `RLIMIT_NPROC`, number of processes.
    pub processes: u64,
    /// `RLIMIT_FSIZE`, largest file that may be written, bytes.
    pub file_size_bytes: u64,
    /// `RLIMIT_NOFILE`, open descriptors.
    pub open_files: u64,
    /// `RLIMIT_CORE`, bytes; always 0 by default (no core dumps).
    pub core_bytes: u64,
}

impl Default for RlimitConfig {
    fn default() -> Self {
        RlimitConfig {
            cpu_seconds: 3600,
            address_space_bytes: 8 << 30,
            processes: 512,
            file_size_bytes: 8 << 30,
            open_files: 4096,
            core_bytes: 0,
        }
    }
}

impl RlimitConfig {
    /// The limits as `(name, resource, value)` triples, in a fixed order.
    pub fn entries(&self) -> [(&'static str, Resource, u64); 6] {
        [
            ("cpu_seconds", Resource::CPU, self.cpu_seconds),
            (
                "address_space_bytes",
                Resource::AS,
                self.address_space_bytes,
            ),
            ("processes", Resource::NPROC, self.processes),
            ("file_size_bytes", Resource::FSIZE, self.file_size_bytes),
            ("open_files", Resource::NOFILE, self.open_files),
            ("core_bytes", Resource::CORE, self.core_bytes),
        ]
    }
}

/// Apply the limits to the calling process (inherited by its children).
/// A limit above the current hard limit is clamped down to it (lowering
/// is always allowed; raising never happens).
pub(crate) fn apply(cfg: &RlimitConfig) -> StepResult<()> {
    for (name, resource, value) in cfg.entries() {
        let (_, hard) = resource
            .get()
            .map_err(failed(format!("getrlimit {name}")))?;
        let v = value.min(hard);
        resource
            .set(v, v)
            .map_err(failed(format!("setrlimit {name}={v}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_disable_core_dumps() {
        let c = RlimitConfig::default();
        assert_eq!(c.core_bytes, 0);
        assert!(c.processes > 0 && c.open_files >= 64);
    }

    #[test]
    fn partial_override_keeps_defaults() {
        let c: RlimitConfig = serde_json::from_str(r#"{"processes": 7}"#).unwrap();
        assert_eq!(c.processes, 7);
        assert_eq!(c.cpu_seconds, RlimitConfig::default().cpu_seconds);
    }
}
