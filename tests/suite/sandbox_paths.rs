//! Hardened view: binds are made only from the objects csc checked (a
//! symlink swapped in after the check fails the setup), `/etc` is an
//! allowlist, and operator binds and masks work. Root and uid 65534.

use crate::support;

use serde_json::{Value, json};
use std::process::Stdio;
use support::{Fixture, Who, py, run, sandbox_test};

/// `__sandbox-run --simulate-swap`: the plan holds paths as given, as if
/// each had been checked before a symlink replaced it.
fn run_swapped(who: Who, fx: &Fixture, spec: Value) -> support::Run {
    let file = fx.run_file(spec, json!({}));
    let out = support::command(who)
        .args(["__sandbox-run", "--simulate-swap"])
        .arg(fx.dir.path())
        .arg("--spec")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

sandbox_test!(a_symlink_swapped_in_after_the_check_is_never_bound);
fn a_symlink_swapped_in_after_the_check_is_never_bound(who: Who) {
    for field in ["read_paths", "write_paths", "cwd"] {
        let fx = Fixture::new();
        let link = fx.dir.path().join("swapped");
        // Relative, so a bind that followed it would land on the host's
        // secret directory even from below the old root.
        std::os::unix::fs::symlink("secret", &link).unwrap();
        let script = format!(
            "print(open({:?}).read())",
            link.join("key.txt").to_str().unwrap()
        );
        let mut spec = fx.spec(vec![py(&script)], "deny");
        if field == "cwd" {
            spec["cwd"] = json!(link);
        } else {
            spec[field] = json!([link]);
        }
        let r = run_swapped(who, &fx, spec);
        let ctx = format!("{who:?} {field}: {} / {}", r.stdout, r.stderr);
        assert_eq!(r.code, 125, "{ctx}");
        assert!(r.stderr.contains("symbolic link"), "{ctx}");
        assert!(!r.stdout.contains("TOPSECRET"), "{ctx}");
        // Without the swap the builder itself refuses the path.
        let mut spec = fx.spec(vec![py(&script)], "deny");
        spec[if field == "cwd" { "cwd" } else { field }] = if field == "cwd" {
            json!(link)
        } else {
            json!([link])
        };
        let r = run(who, &fx, spec, json!({}), None);
        assert_ne!(r.code, 0, "{ctx}");
        assert!(
            r.stderr.contains("symbolic link"),
            "{who:?} {field}: {}",
            r.stderr
        );
    }
}

sandbox_test!(etc_is_an_allowlist_with_operator_binds_and_masks);
fn etc_is_an_allowlist_with_operator_binds_and_masks(who: Who) {
    let fx = Fixture::new();
    let data = fx.data.to_str().unwrap().to_owned();
    let secret = fx.secret.to_str().unwrap().to_owned();
    let script = format!(
        r#"
for p in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/machine-id", "/etc/hostname", "/etc/csc"]:
    print("BREACH", p, "visible") if os.path.lexists(p) else print("denied", p, "absent")
allowed("read /etc/passwd", lambda: open("/etc/passwd").read())
allowed("read /etc/ld.so.cache", lambda: open("/etc/ld.so.cache", "rb").read(1))
allowed("read operator bind", lambda: open({secret:?} + "/key.txt").read())
s = open({data:?} + "/file.txt").read()
print("BREACH masked file readable") if s else print("denied masked file is empty")
import subprocess
allowed("run /usr/bin/env", lambda: subprocess.run(["/usr/bin/env", "true"], check=True))
"#
    );
    let config = json!({
        "system_paths": ["/usr", "/bin", "/lib", "/lib64", "/etc/passwd", "/etc/ld.so.cache", secret],
        "masked_paths": [format!("{data}/file.txt")],
    });
    let r = run(who, &fx, fx.spec(vec![py(&script)], "deny"), config, None);
    r.assert_contained(&format!("{who:?} etc"));
    // The default allowlist: the same probe without operator settings.
    let script = r#"
for p in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/machine-id", "/etc/csc"]:
    print("BREACH", p, "visible") if os.path.lexists(p) else print("denied", p, "absent")
allowed("read /etc/passwd", lambda: open("/etc/passwd").read())
allowed("read /etc/hosts", lambda: open("/etc/hosts").read())
"#;
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?} default etc"));
    // A read scope of `/` (a policy may allow it) still hides the
    // host's secrets under /etc.
    let script = r#"
for p in ["/etc/shadow", "/etc/gshadow", "/etc/machine-id"]:
    try:
        s = open(p).read()
        print("BREACH", p, "readable") if s else print("denied", p, "masked (empty)")
    except OSError as e:
        print("denied", p, name(e.errno))
if os.path.exists("/etc/ssh"):
    print("BREACH /etc/ssh not masked") if os.listdir("/etc/ssh") else print("denied /etc/ssh masked")
allowed("read /etc/hostname through the / scope", lambda: open("/etc/passwd").read())
"#;
    let mut spec = fx.spec(vec![py(script)], "deny");
    spec["read_paths"] = json!(["/"]);
    let r = run(who, &fx, spec, json!({}), None);
    r.assert_contained(&format!("{who:?} root scope"));
}
