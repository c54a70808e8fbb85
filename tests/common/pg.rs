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
    /// For a TLS cluster: its loopback port, certificates and password.
    pub tls: Option<TlsSetup>,
    port: Option<u16>,
    _watchdog: Mutex<Child>,
    next: AtomicU32,
}

/// A cluster listening on loopback TCP with `ssl=on` and a `hostssl`-only
/// pg_hba (SCRAM passwords): a throwaway CA signed its certificate for the
/// host name `localhost` only.
pub struct TlsSetup {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The CA that signed the server certificate (PEM).
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server presents (PEM).
    pub other_ca: PathBuf,
    /// The password of the `postgres` role over TCP.
    pub password: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TLS_CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The TLS cluster (see [`TlsSetup`]), or `None` after reporting why it is
/// missing (a failure under `CSC_REQUIRE_POSTGRES=1`).
pub fn tls_cluster() -> Option<&'static Cluster> {
    cluster()?;
    match TLS_CLUSTER.get_or_init(|| start_tls().map_err(|e| format!("TLS cluster: {e}"))) {
        Ok(c) => Some(c),
        Err(why) => {
            if std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1") {
                panic!("{REQUIRE_VAR}=1 but the TLS cluster is not usable: {why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIP: PostgreSQL TLS tests: {why}");
            None
        }
    }
}

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
    start_with(|_, _| Ok(Vec::new()), None)
}

/// Run `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A self-signed CA `name`.crt/.key in `dir`.
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=csc test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

fn start_tls() -> Result<Cluster, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let password = "hunter2-tls-Secret".to_owned();
    let mut setup = None;
    let cluster = start_with(
        |root, data| {
            let pki = root.join("pki");
            std::fs::create_dir(&pki).map_err(|e| e.to_string())?;
            make_ca(&pki, "ca")?;
            make_ca(&pki, "other-ca")?;
            std::fs::write(
                pki.join("server.ext"),
                "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
            )
            .map_err(|e| e.to_string())?;
            openssl(
                &pki,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ],
            )?;
            openssl(
                &pki,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "server.ext",
                    "-out",
                    "server.crt",
                ],
            )?;
            // The server reads its key as uid 65534 and wants it private.
            for f in ["server.crt", "server.key"] {
                std::fs::copy(pki.join(f), data.join(f)).map_err(|e| e.to_string())?;
                if nix::unistd::geteuid().is_root() {
                    std::os::unix::fs::chown(data.join(f), Some(65534), Some(65534))
                        .map_err(|e| e.to_string())?;
                }
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .map_err(|e| e.to_string())?;
            // TCP only with TLS and a password; the socket stays trusted
            // for the harness's own administration.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all ::1/128 scram-sha-256\n",
            )
            .map_err(|e| e.to_string())?;
            setup = Some(TlsSetup {
                port,
                ca: pki.join("ca.crt"),
                other_ca: pki.join("other-ca.crt"),
                password: password.clone(),
            });
            Ok(vec![
                "-c".to_owned(),
                "listen_addresses=127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                "ssl_cert_file=server.crt".to_owned(),
                "-c".to_owned(),
                "ssl_key_file=server.key".to_owned(),
            ])
        },
        Some(port),
    )?;
    let mut cluster = cluster;
    cluster
        .try_admin("postgres")
        .map_err(|e| e.to_string())?
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '{password}'"
        ))
        .map_err(|e| e.to_string())?;
    cluster.tls = setup;
    Ok(cluster)
}

/// Start a cluster; `configure(root, data)` runs after initdb and returns
/// extra server arguments (the default: unix socket only). `port` is the
/// server's port when not the default.
fn start_with(
    configure: impl FnOnce(&Path, &Path) -> Result<Vec<String>, String>,
    port: Option<u16>,
) -> Result<Cluster, String> {
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
    let mut extra = configure(&root, &data)?;
    if extra.is_empty() {
        extra = vec!["-c".to_owned(), "listen_addresses=".to_owned()];
    }
    // The watchdog restarts a postmaster that stops (see `restart`) and
    // shuts it down, removing everything, when this process exits.
    let script = r#"
        exec 3<&0
        bin=$1 data=$2 sock=$3 root=$4
        shift 4
        trap 'kill -INT "$pid" 2>/dev/null; wait "$pid"; rm -rf "$root"; exit 0' TERM
        ( cat <&3 >/dev/null; kill -TERM $$ ) &
        while :; do
            "$bin" -D "$data" -k "$sock" -c max_connections=200 -c fsync=on "$@" &
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
            .args(&extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .map_err(|e| format!("cannot start postgres: {e}"))?;
    let cluster = Cluster {
        sock,
        data,
        tls: None,
        port,
        _watchdog: Mutex::new(child),
        next: AtomicU32::new(0),
    };
    cluster.wait_ready()?;
    Ok(cluster)
}

impl Cluster {
    /// URL of database `db` as `user` over the socket.
    pub fn url_for(&self, db: &str, user: &str) -> String {
        let port = self.port.map(|p| format!("&port={p}")).unwrap_or_default();
        format!(
            "postgresql:///{db}?host={}&user={user}{port}",
            self.sock.display()
        )
    }

    /// A connection configuration for the socket.
    fn socket(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config.host_path(&self.sock);
        if let Some(p) = self.port {
            config.port(p);
        }
        config
    }

    /// A superuser connection to `db`.
    pub fn admin(&self, db: &str) -> postgres::Client {
        self.try_admin(db).unwrap()
    }

    fn try_admin(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        self.socket()
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match self
                .socket()
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
        self.url_for(&self.new_db_name(), "postgres")
    }

    /// A new empty database; returns its name.
    pub fn new_db_name(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        self.admin("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        name
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
