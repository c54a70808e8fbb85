//! Sandbox verbs: `doctor`, `sandbox-profile`, and the hidden
//! `__sandbox-init` (setup helper) and `__sandbox-run` (test driver).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{CliError, CliResult, EXIT_DENY, EXIT_OK};
use crate::sandbox::{self, SandboxConfig, SandboxSpec};

/// `csc doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Sandbox settings to probe with (as for `csc run --mode hardened`).
    #[command(flatten)]
    pub hardened: HardenedArgs,
}

/// Operator flags that shape the hardened sandbox. Shared by `run`,
/// `doctor` and `sandbox-profile`, so an auditor can recompute the
/// `sandbox_profile_id` of a run made with non-default settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HardenedArgs {
    /// minimum Landlock ABI; the run is refused below it.
    #[arg(long, value_name = "N", help_heading = "Hardened mode")]
    pub min_landlock_abi: Option<u32>,
    /// RLIMIT_CPU in seconds [default: 3600].
    #[arg(long, value_name = "SECS", help_heading = "Hardened mode")]
    pub rlimit_cpu: Option<u64>,
    /// RLIMIT_AS in bytes [default: 8 GiB].
    #[arg(long, value_name = "BYTES", help_heading = "Hardened mode")]
    pub rlimit_as: Option<u64>,
    /// process cap (RLIMIT_NPROC and pid namespace pid_max) [default: 512].
    #[arg(long, value_name = "N", help_heading = "Hardened mode")]
    pub rlimit_nproc: Option<u64>,
    /// RLIMIT_FSIZE in bytes [default: 8 GiB].
    #[arg(long, value_name = "BYTES", help_heading = "Hardened mode")]
    pub rlimit_fsize: Option<u64>,
    /// RLIMIT_NOFILE [default: 4096].
    #[arg(long, value_name = "N", help_heading = "Hardened mode")]
    pub rlimit_nofile: Option<u64>,
    /// size of the private /tmp in bytes [default: 256 MiB].
    #[arg(long, value_name = "BYTES", help_heading = "Hardened mode")]
    pub tmp_size: Option<u64>,
}

impl HardenedArgs {
    /// The sandbox configuration these flags describe.
    pub fn config(&self) -> SandboxConfig {
        let mut cfg = SandboxConfig::default();
        if let Some(v) = self.min_landlock_abi {
            cfg.min_landlock_abi = v;
        }
        if let Some(v) = self.tmp_size {
            cfg.tmp_size_bytes = v;
        }
        let r = &mut cfg.rlimits;
        for (flag, slot) in [
            (self.rlimit_cpu, &mut r.cpu_seconds),
            (self.rlimit_as, &mut r.address_space_bytes),
            (self.rlimit_nproc, &mut r.processes),
            (self.rlimit_fsize, &mut r.file_size_bytes),
            (self.rlimit_nofile, &mut r.open_files),
        ] {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        cfg
    }
}

/// `csc sandbox-profile`.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Print the profile as JSON.
    #[arg(long)]
    pub json: bool,
    /// Sandbox settings (as given to `csc run --mode hardened`).
    #[command(flatten)]
    pub hardened: HardenedArgs,
}

/// `csc __sandbox-init` (internal).
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Inherited descriptor carrying the JSON plan.
    #[arg(long)]
    pub plan_fd: i32,
    /// Inherited descriptor for JSON status lines.
    #[arg(long)]
    pub status_fd: i32,
}

/// `csc __sandbox-run` (internal test driver).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// JSON file: `{"spec": SandboxSpec, "config": SandboxConfig?, "timeout_ms": n?}`.
    #[arg(long)]
    pub spec: PathBuf,
    /// Kill the sandbox after this many milliseconds (exit 124).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    spec: SandboxSpec,
    #[serde(default)]
    config: SandboxConfig,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Exit code of `__sandbox-run` when the timeout killed the sandbox.
pub const EXIT_TIMEOUT: u8 = 124;

pub fn doctor(a: DoctorArgs) -> CliResult {
    let r = sandbox::doctor::probe_host(&a.hardened.config());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "hardened mode: {}",
            if r.hardened_available {
                "AVAILABLE"
            } else {
                "NOT AVAILABLE"
            }
        );
        println!("\nchecks:");
        for c in &r.checks {
            println!(
                "  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(f) = &c.fix {
                println!("         fix: {f}");
            }
        }
        println!("\nsysctls:");
        for (k, v) in &r.sysctls {
            println!("  {k} = {}", v.as_deref().unwrap_or("(absent)"));
        }
        println!("\nenforced here:");
        for e in &r.enforced {
            println!("  - {e}");
        }
        println!("\nnot enforced:");
        for e in &r.not_enforced {
            println!("  - {e}");
        }
    }
    Ok(if r.hardened_available {
        EXIT_OK
    } else {
        EXIT_DENY
    })
}

pub fn profile(a: ProfileArgs) -> CliResult {
    let p = sandbox::profile(&a.hardened.config());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!("sandbox_profile_id: {}", p.sandbox_profile_id);
        println!("{}", serde_json::to_string_pretty(&p.profile)?);
    }
    Ok(EXIT_OK)
}

pub fn init(a: InitArgs) -> CliResult {
    let code = sandbox::init::helper_main(a.plan_fd, a.status_fd);
    Ok(u8::try_from(code).unwrap_or(EXIT_DENY))
}

pub fn run(a: RunArgs) -> CliResult {
    let text = std::fs::read_to_string(&a.spec)
        .map_err(|e| CliError(format!("failed to read {}: {e}", a.spec.display())))?;
    let file: RunFile =
        serde_json::from_str(&text).map_err(|e| CliError(format!("invalid spec file: {e}")))?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut child = sandbox::spawn(&file.config, &file.spec, stdout, stderr)?;
    let exit = match a.timeout_ms.or(file.timeout_ms) {
        None => child.wait()?,
        Some(ms) => match child.wait_timeout(Duration::from_millis(ms))? {
            Some(e) => e,
            None => {
                child.kill();
                eprintln!("csc: sandbox timed out after {ms} ms; killed");
                return Ok(EXIT_TIMEOUT);
            }
        },
    };
    if let Some(e) = &exit.setup_error {
        eprintln!("csc: sandbox: {}", crate::text::escape_control(e));
    }
    Ok(u8::try_from(exit.exit_code).unwrap_or(EXIT_DENY))
}
