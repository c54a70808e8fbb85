//! `effect_summary.files_written` under hostile trees (issue 16 item 3) and
//! escaping of command-derived text in what csc prints (issue 16 item 4).

use crate::common;
use crate::support;
use crate::support::{Who, sandbox_test};

use common::*;
use serde_json::{Value, json};
use std::process::Command;

const MARKER: &str = csc::evidence::receipt::LOWER_BOUND_MARKER;

/// A command that writes under `out/` (its write scope).
fn writer(ws: &Ws, script: &str) -> Value {
    let mut cmd = ws.cmd("w", &["sh", "-c", script]);
    cmd["write_paths"] = json!([format!("{}/out/**", ws.root.display())]);
    cmd["proposed_effect_type"] = json!("transform_local");
    cmd
}

fn sh(dir: &std::path::Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "setup script failed: {script}");
}

fn error_of(r: &Run) -> String {
    r.receipt()["error"].as_str().unwrap().to_owned()
}

/// 30 levels of 200-byte names put the bottom at > 6000 bytes, past
/// PATH_MAX (4096): a path-based walk cannot reach it and used to report 0.
#[test]
fn writes_deeper_than_path_max_are_counted() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    // dash's `cd` cannot go past PATH_MAX; walk with directory descriptors.
    let deep = |make: bool, file: &str, text: &str| {
        format!(
            "python3 -c \"import os\nfd = os.open('out', os.O_RDONLY)\nfor i in range(30):\n    \
             {}fd = os.open('{}', os.O_RDONLY, dir_fd=fd)\n\
             w = os.open('{file}', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)\nos.write(w, b'{text}')\"",
            if make {
                format!("os.mkdir('{}', dir_fd=fd); ", "d".repeat(200))
            } else {
                String::new()
            },
            "d".repeat(200)
        )
    };
    sh(&ws.root, &deep(true, "keep", "old"));
    let c = ws.contract("c.json", vec![writer(&ws, &deep(false, "written", "new"))]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["effect_summary"]["files_written"], 1);
    assert_eq!(error_of(&r), "");
}

/// Deeper than the walk keeps directories open (64), with entries on every
/// level both before and after the subdirectory: levels are closed and
/// re-entered through `..` at their saved position, and every sibling is
/// seen exactly once (neither lost nor counted twice).
#[test]
fn deep_tree_with_siblings_on_every_level_is_counted_exactly() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    let setup = "for i in $(seq 100); do for f in a b c m x y z; do echo $i > $f; done; \
                 mkdir n && cd n || exit 1; done; echo bottom > leaf";
    sh(&ws.path("out"), setup);
    // Change 2 files on each of the 100 levels, plus one new file at the bottom.
    let script = "cd out && for i in $(seq 100); do echo changed >> b; echo changed >> y; \
                  cd n || exit 1; done; echo new > fresh";
    let c = ws.contract("c.json", vec![writer(&ws, script)]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["effect_summary"]["files_written"], 201);
    assert_eq!(error_of(&r), "");
}

/// A write in a later scope once went unseen because an earlier scope had
/// spent the shared budget, and the receipt said 0 as if it were exact.
/// Now the count is marked as a lower bound.
#[test]
fn exhausted_budget_marks_the_count_as_a_lower_bound() {
    let ws = ws();
    std::fs::create_dir_all(ws.path("out/a_big")).unwrap();
    std::fs::create_dir_all(ws.path("out2")).unwrap();
    for i in 0..50 {
        std::fs::write(ws.path(&format!("out/a_big/{i}")), b"x").unwrap();
    }
    let mut cmd = writer(&ws, "echo hidden > out2/late");
    cmd["write_paths"] = json!([
        format!("{}/out/**", ws.root.display()),
        format!("{}/out2/**", ws.root.display())
    ]);
    let c = ws.contract("c.json", vec![cmd]);

    let r = ws.run(&c, &["--scan-max-entries", "20"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status(), "success");
    let err = error_of(&r);
    assert!(err.starts_with(MARKER), "{err}");
    assert!(err.contains("budget of 20 entries"), "{err}");
    assert!(csc::evidence::receipt::is_lower_bound(&err));
    assert!(r.stderr.contains(MARKER), "{}", r.stderr);

    // With the default budget the same run is exact and unmarked.
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["effect_summary"]["files_written"], 1);
    assert_eq!(error_of(&r), "");
}

/// The marker goes in front of any other error, so truncation to the v0.1
/// cap can never remove it, and the failure text stays.
#[test]
fn marker_precedes_a_failure_message() {
    let ws = ws();
    std::fs::create_dir_all(ws.path("out")).unwrap();
    for i in 0..30 {
        std::fs::write(ws.path(&format!("out/{i}")), b"x").unwrap();
    }
    let long = "e".repeat(5000);
    let c = ws.contract(
        "c.json",
        vec![writer(&ws, &format!("echo {long} >&2; exit 3"))],
    );
    let r = ws.run(&c, &["--scan-max-entries", "10"]);
    assert_eq!(r.status(), "failed");
    let err = error_of(&r);
    assert!(err.starts_with(MARKER), "{err}");
    assert!(err.contains("; command \"w\" failed"), "{err}");
    assert!(err.ends_with("... [truncated]"));
}

/// Another file system mounted inside a scope is not entered; the count
/// says it is a lower bound instead of silently skipping it. Root only
/// (needs a private mount namespace).
#[test]
fn other_filesystem_inside_a_scope_marks_a_lower_bound() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: other_filesystem_inside_a_scope_marks_a_lower_bound: needs root");
        return;
    }
    let ws = ws();
    std::fs::create_dir_all(ws.path("out/mnt")).unwrap();
    let c = ws.contract("c.json", vec![writer(&ws, "echo x > out/mnt/f")]);
    let receipt = ws.path("receipt.json");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none '{}' && exec \"$0\" run '{}' '{}' --receipt-out '{}' --quiet",
            ws.s("out/mnt"),
            c.display(),
            ws.s("policy.yaml"),
            receipt.display()
        ))
        .arg(CSC)
        .current_dir(&ws.root)
        .output()
        .unwrap();
    if !out.status.success() && !receipt.exists() {
        eprintln!(
            "SKIP: other_filesystem_inside_a_scope_marks_a_lower_bound: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let r = Run::new(out, &receipt);
    let err = error_of(&r);
    assert!(err.starts_with(MARKER), "{err}");
    assert!(err.contains("another file system"), "{err}");
}

sandbox_test!(
    unreadable_directory_marks_a_lower_bound_as_either_user,
    any_host
);
/// As root and as uid 65534: a directory csc cannot read (mode 000, root's)
/// is not silently counted as empty; the receipt marks a lower bound. As
/// root (which reads everything) the same tree is counted exactly.
fn unreadable_directory_marks_a_lower_bound_as_either_user(who: Who) {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: unreadable_directory_marks_a_lower_bound_as_either_user: needs root");
        return;
    }
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&root, 0o777);
    std::fs::create_dir_all(root.join("out/locked")).unwrap();
    std::fs::write(root.join("out/locked/f"), b"x").unwrap();
    mode(&root.join("out"), 0o777);
    mode(&root.join("out/locked"), 0o000);
    let r = root.display();
    std::fs::write(
        root.join("policy.yaml"),
        format!(
            "policy_schema_version: csc.policy.v0.1\nname: p\nallow_commands: [sh]\n\
                 allowed_effect_types: [transform_local]\nallowed_risk_classes: [low]\n\
                 max_timeout_sec: 60\nnetwork: deny\nallow_secret_refs: false\n\
                 allowed_cwd_prefixes: [\"{r}\"]\nallowed_read_prefixes: [\"{r}\"]\n\
                 allowed_write_prefixes: [\"{r}\"]\n"
        ),
    )
    .unwrap();
    let contract = json!({
        "version": "csc.v0.1", "contract_id": "contract-unreadable", "intent": "t",
        "actor": {"agent_id": "a", "session_id": "s", "initiating_user": "u", "delegation_scope": "d"},
        "commands": [{"id": "w", "exec": {"argv": ["sh", "-c", "echo x > out/new"]},
            "cwd": r.to_string(), "read_paths": [], "write_paths": [format!("{r}/out/**")],
            "network": "deny", "env_allow": [], "secret_refs": [], "timeout_sec": 20,
            "proposed_effect_type": "transform_local"}],
        "risk_class": "low", "approval_mode": "policy_only", "justification": "t"
    });
    std::fs::write(root.join("c.json"), contract.to_string()).unwrap();
    let receipt = root.join("receipt.json");
    let out = support::command(who)
        .arg("run")
        .arg(root.join("c.json"))
        .arg(root.join("policy.yaml"))
        .arg("--receipt-out")
        .arg(&receipt)
        .arg("--quiet")
        .current_dir(&root)
        .output()
        .unwrap();
    let run = Run::new(out, &receipt);
    assert_eq!(run.code, 0, "{who:?}: {}", run.stderr);
    assert_eq!(
        run.receipt()["effect_summary"]["files_written"],
        1,
        "{who:?}"
    );
    let err = error_of(&run);
    match who {
        support::Who::Root => assert_eq!(err, "", "{who:?}"),
        support::Who::Nobody => {
            assert!(err.starts_with(MARKER), "{who:?}: {err}");
            assert!(err.contains("could not be read"), "{who:?}: {err}");
        }
    }
    mode(&root.join("out/locked"), 0o755);
}

/// Memory no longer grows with the number of files: 200,000 entries used
/// to cost ~84 MB of path map; now 16 bytes per file. csc runs under a data
/// limit the old map could not fit in.
#[test]
fn two_hundred_thousand_entries_fit_in_bounded_memory() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    for d in 0..200 {
        let dir = ws.path(&format!("out/{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..1000 {
            std::fs::File::create(dir.join(format!("file-with-a-longish-name-{f:04}"))).unwrap();
        }
    }
    let c = ws.contract("c.json", vec![writer(&ws, "echo x > out/007/new")]);
    let receipt = ws.path("receipt.json");
    // The new walk runs in < 16 MiB here; the old path map aborted under 32 MiB.
    let limit_kib = 32 * 1024;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -d {limit_kib} && exec \"$0\" run '{}' '{}' --receipt-out '{}' --quiet",
            c.display(),
            ws.s("policy.yaml"),
            receipt.display()
        ))
        .arg(CSC)
        .current_dir(&ws.root)
        .output()
        .unwrap();
    let r = Run::new(out, &receipt);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["effect_summary"]["files_written"], 1);
    assert_eq!(error_of(&r), "");
}

/// A failing command's stderr is quoted in csc's verdict line and in the
/// receipt `error`: terminal sequences and line breaks in it are escaped,
/// so it cannot erase the line and paint a fake "SUCCESS".
#[test]
fn verdict_line_escapes_the_commands_stderr() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![ws.cmd(
            "x",
            &[
                "sh",
                "-c",
                "printf '\\r\\033[2K\\033[32mSUCCESS\\033[0m \\342\\200\\256 x\\nSUCCESS\\n' >&2; exit 1",
            ],
        )],
    );
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "failed");
    let verdict = r.stderr.trim_end_matches('\n');
    assert!(
        verdict.starts_with("FAILED (exit code 1) — "),
        "{verdict:?}"
    );
    assert_eq!(verdict.lines().count(), 1, "{verdict:?}");
    assert!(
        !verdict.contains('\x1b') && !verdict.contains('\r') && !verdict.contains('\u{202e}'),
        "{verdict:?}"
    );
    assert!(verdict.contains("\\x1b[32mSUCCESS"), "{verdict:?}");
    let err = error_of(&r);
    assert!(!err.chars().any(|c| c.is_control()), "{err:?}");
    assert!(
        err.contains("\\r\\x1b[2K") && err.contains("\\u{202e}"),
        "{err:?}"
    );
}

/// Contract-derived strings (argv, ids) in `check`, `explain` and
/// `validate` output are escaped too.
#[test]
fn check_and_explain_escape_contract_strings() {
    let ws = ws();
    let hostile = "evil\x1b[2K\rALLOW";
    let c = ws.contract("c.json", vec![ws.cmd("id\x1b[1m", &[hostile])]);
    for verb in ["check", "explain"] {
        let out = Command::new(CSC)
            .args([verb])
            .arg(&c)
            .arg(ws.path("policy.yaml"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("evil"), "{verb}: {text}");
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "{verb}: {text:?}"
        );
    }
}
