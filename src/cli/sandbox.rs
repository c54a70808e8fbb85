//! Sandbox verbs: `doctor`, `sandbox-profile`, and the hidden
//! `__sandbox-init` (setup helper) and `__sandbox-run` (test driver).

use crate::exit;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{CliResult, Error};
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
    /// also bind this host path read-only into the view (e.g. /etc/java-17-openjdk); repeatable.
    #[arg(long, value_name = "PATH", help_heading = "Hardened mode")]
    pub ro_bind_system: Vec<PathBuf>,
    /// hide this host path inside the view (empty file or directory); repeatable.
    #[arg(long, value_name = "PATH", help_heading = "Hardened mode")]
    pub mask: Vec<PathBuf>,
    /// allow `network: allowlisted` commands to reach this destination through csc's egress proxy: HOST, HOST:PORT, *.DOMAIN[:PORT] (subdomains only), IP[:PORT], [IPv6][:PORT]; no port = 80 and 443; repeatable.
    #[arg(long, value_name = "PATTERN", help_heading = "Hardened mode")]
    pub egress_allow: Vec<String>,
    /// let allowlisted destinations resolve into this private/local range (loopback, RFC 1918, link-local, CGNAT, ULA, ... are refused otherwise); repeatable.
    #[arg(long, value_name = "CIDR", help_heading = "Hardened mode")]
    pub egress_allow_cidr: Vec<String>,
    /// Test only: resolve NAME to IP in the egress proxy (NAME=IP); repeatable. Recorded in the profile.
    #[arg(long, value_name = "NAME=IP", hide = true)]
    pub egress_test_resolve: Vec<String>,
    /// let commands create AF_UNIX sockets and connect to the pathname sockets
    /// they can see (only in read/write scopes on Landlock ABI >= 9);
    /// default: socket(AF_UNIX) fails with EPERM.
    #[arg(long, help_heading = "Hardened mode")]
    pub allow_unix_sockets: bool,
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
        cfg.system_paths.extend(self.ro_bind_system.iter().cloned());
        cfg.masked_paths.extend(self.mask.iter().cloned());
        cfg.egress = crate::egress::EgressConfig {
            allow: self.egress_allow.clone(),
            allow_cidr: self.egress_allow_cidr.clone(),
            test_resolve: self.egress_test_resolve.clone(),
        };
        cfg.allow_unix_sockets = self.allow_unix_sockets;
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
    /// Build the plan as if every path below DIR were still what csc
    /// checked (a symlink swapped in after the check): tests the helper's
    /// own refusal.
    #[arg(long, value_name = "DIR")]
    pub simulate_swap: Option<PathBuf>,
    /// Write the egress proxy's log (JSON lines) here after the run.
    #[arg(long, value_name = "FILE")]
    pub egress_log: Option<PathBuf>,
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
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

pub fn profile(a: ProfileArgs) -> CliResult {
    let cfg = a.hardened.config();
    cfg.egress.compile().map_err(Error::Failed)?;
    let p = sandbox::profile(&cfg);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!("sandbox_profile_id: {}", p.sandbox_profile_id);
        println!("{}", serde_json::to_string_pretty(&p.profile)?);
    }
    Ok(exit::SUCCESS)
}

pub fn init(a: InitArgs) -> CliResult {
    let code = sandbox::init::helper_main(a.plan_fd, a.status_fd);
    Ok(exit::passthrough(code))
}

pub fn run(a: RunArgs) -> CliResult {
    let text = std::fs::read_to_string(&a.spec)
        .map_err(|e| Error::Failed(format!("failed to read {}: {e}", a.spec.display())))?;
    let file: RunFile = serde_json::from_str(&text)
        .map_err(|e| Error::Failed(format!("invalid spec file: {e}")))?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let swapped = a
        .simulate_swap
        .map(|under| sandbox::plan::SwappedFs { under });
    let fs: &dyn sandbox::plan::HostFs = match &swapped {
        Some(s) => s,
        None => &sandbox::plan::RealFs,
    };
    let mut child = sandbox::spawn_with(&file.config, &file.spec, fs, stdout, stderr)?;
    let exit = match a.timeout_ms.or(file.timeout_ms) {
        None => child.wait()?,
        Some(ms) => match child.wait_timeout(Duration::from_millis(ms))? {
            Some(e) => e,
            None => {
                child.kill();
                eprintln!("csc: sandbox timed out after {ms} ms; killed");
                return Ok(exit::TIMEOUT_U8);
            }
        },
    };
    if let Some(e) = &exit.setup_error {
        eprintln!("csc: sandbox: {}", crate::text::escape_control(e));
    }
    if let (Some(path), Some(report)) = (&a.egress_log, child.egress_finish()) {
        let text = crate::egress::log::to_jsonl(&report.entries, report.dropped);
        std::fs::write(path, text)
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(exit::passthrough(exit.exit_code))
}
