//! A throwaway PostgreSQL cluster for the state-store tests (RFC 0014):
//! started once per test binary on a unix socket in a temporary directory,
//! as uid 65534 (initdb refuses root), and stopped when the binary exits
//! (a watchdog shell notices its stdin close). Tests that need it call
//! [`cluster`], which skips with a printed reason when the server binaries
//! are missing, or fails when `CSC_REQUIRE_POSTGRES=1` (set by `.ci/run`).

use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Name of the variable that turns PostgreSQL skips into failures.
pub const REQUIRE_VAR: &str = "CSC_REQUIRE_POSTGRES";

/// The running cluster.
pub struct Cluster {
    /// Directory holding the server's unix socket.
    pub sock: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    _watchdog: Mutex<Child>,
    next: AtomicU32,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, or `None` after reporting why it is missing.
pub fn cluster() -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c),
        Err(why) => {
            if std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1") {
                panic!("{REQUIRE_VAR}=1 but PostgreSQL is not usable: {why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIP: PostgreSQL tests: {why}");
            None
        }
    }
}

/// A cluster of the caller's own (for tests that restart it), stopped
/// and removed when dropped.
pub fn private_cluster() -> Option<Cluster> {
    cluster()?;
    Some(start().expect("a second cluster"))
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CSC_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn as_server(cmd: &mut Command) -> &mut Command {
    if nix::unistd::geteuid().is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir().ok_or(
        "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin; apt-get install postgresql)",
    )?;
    let root = tempfile::Builder::new()
        .prefix("csc-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = root.join("data");
    let sock = root.join("sock");
    for d in [&root, &data, &sock] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(d, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let out = as_server(Command::new(bin.join("initdb")).args([
        "-D",
        data.to_str().unwrap(),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]))
    .output()
    .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The watchdog restarts a postmaster that stops (see `restart`) and
    // shuts it down, removing everything, when this process exits.
    let script = r#"
        exec 3<&0
        trap 'kill -INT "$pid" 2>/dev/null; wait "$pid"; rm -rf "$4"; exit 0' TERM
        ( cat <&3 >/dev/null; kill -TERM $$ ) &
        while :; do
            "$1" -D "$2" -k "$3" -c listen_addresses= -c max_connections=200 -c fsync=on &
            pid=$!
            wait "$pid"
            sleep 0.2
        done
    "#;
    let child = as_server(
        Command::new("sh")
            .args(["-c", script, "pg-watchdog"])
            .arg(bin.join("postgres"))
            .arg(&data)
            .arg(&sock)
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .map_err(|e| format!("cannot start postgres: {e}"))?;
    let cluster = Cluster {
        sock,
        data,
        _watchdog: Mutex::new(child),
        next: AtomicU32::new(0),
    };
    cluster.wait_ready()?;
    Ok(cluster)
}

impl Cluster {
    /// URL of database `db` as `user` over the socket.
    pub fn url_for(&self, db: &str, user: &str) -> String {
        format!(
            "postgresql:///{db}?host={}&user={user}",
            self.sock.display()
        )
    }

    /// A superuser connection to `db`.
    pub fn admin(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.sock)
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match postgres::Config::new()
                .host_path(&self.sock)
                .user("postgres")
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(2))
                .connect(postgres::NoTls)
            {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(60) => {
                    return Err(format!("postgres did not come up: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A new empty database; returns its URL (superuser, socket).
    pub fn new_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        self.admin("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url_for(&name, "postgres")
    }

    /// A new database with csc's schema migrated; returns its URL.
    pub fn migrated_db(&self) -> String {
        let url = self.new_db();
        csc::state::postgres::migrate(&url).unwrap();
        url
    }

    /// Stop the server (fast shutdown) and wait until it serves again.
    pub fn restart(&self) {
        let pid_file = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap();
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        // Until the old postmaster is gone.
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_ready().unwrap();
    }
}
