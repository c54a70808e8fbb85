//! CLI integration tests: drive the real `csc` binary.

use crate::common::shipped_hashes as shipped;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> PathBuf {
    root().join("examples/contracts").join(name)
}

fn pack(name: &str) -> PathBuf {
    root().join("policies").join(name)
}

fn csc(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csc"))
        .args(args)
        .output()
        .expect("spawn csc")
}

macro_rules! run {
    ($($arg:expr),* $(,)?) => {
        csc(&[$(std::ffi::OsStr::new(&$arg)),*])
    };
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// A scratch directory with helpers to write files into it.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Scratch(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.path().join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn readonly_yaml() -> String {
    std::fs::read_to_string(pack("readonly-dev.yaml")).unwrap()
}

fn list_repo() -> Value {
    serde_json::from_slice(&std::fs::read(example("list-repo.json")).unwrap()).unwrap()
}

/// Assert a `check` failed with an error naming `file` and containing `needle`.
fn assert_load_error(o: &Output, file: &Path, needle: &str) {
    let err = stderr(o);
    assert_eq!(code(o), 1, "stderr: {err}");
    assert!(
        stdout(o).is_empty(),
        "nothing on stdout on error: {}",
        stdout(o)
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(name.as_ref()),
        "stderr does not name {name}: {err}"
    );
}

// ---- exit codes -----------------------------------------------------------

#[test]
fn allow_exits_0() {
    let o = run!(
        "check",
        example("list-repo.json"),
        pack("readonly-dev.yaml")
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ALLOW"), "{}", stdout(&o));
}

#[test]
fn needs_approval_exits_2() {
    // `csc run` passes KUBECONFIG only when the operator names it; with
    // that flag the contract needs an approval, without it even an
    // approval could not make it run (check agrees with run).
    let o = run!(
        "check",
        example("deploy-release.json"),
        pack("regulated-approvals.yaml"),
        "--allow-env",
        "KUBECONFIG"
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stdout(&o).contains("APPROVAL_REQUIRED"), "{}", stdout(&o));
}

#[test]
fn deny_exits_1_with_reason_code() {
    let o = run!(
        "check",
        example("force-push.json"),
        pack("ci-build-test.yaml")
    );
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("ARGV_PREFIX_DENIED"), "{}", stdout(&o));
    assert!(
        stderr(&o).is_empty(),
        "a deny is not an error: {}",
        stderr(&o)
    );
}

#[test]
fn cwd_outside_read_prefixes_is_denied_with_an_extension_code() {
    let s = Scratch::new();
    let mut c = list_repo();
    c["commands"][0]["cwd"] = json!("/srv/other");
    c["commands"][0]["read_paths"] = json!([]);
    let contract = s.file("c.json", serde_json::to_vec(&c).unwrap());
    let policy = s.file(
        "p.yaml",
        readonly_yaml().replace(
            "allowed_cwd_prefixes: [/tmp,",
            "allowed_cwd_prefixes: [/srv/other, /tmp,",
        ),
    );
    let o = run!("check", &contract, &policy);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("READ_SCOPE_DENIED"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("CSC_CWD_OUTSIDE_READ_PREFIXES"),
        "{}",
        stdout(&o)
    );
    // The reference's semantics allow it; explain says the same as check.
    let o = run!("check", &contract, &policy, "--reference-semantics");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let o = run!("explain", &contract, &policy, "--json");
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["decision"], "deny");
    let row = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "cwd_within_read_prefixes")
        .unwrap();
    assert_eq!(row["extension_code"], "CSC_CWD_OUTSIDE_READ_PREFIXES");
}

// ---- --json ---------------------------------------------------------------

#[test]
fn json_decision_carries_hash_effects_and_expiry() {
    let o = run!(
        "check",
        example("refund-payment.json"),
        pack("regulated-approvals.yaml"),
        "--json"
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let d: Value = serde_json::from_str(&stdout(&o)).expect("--json output is JSON");
    assert_eq!(d["decision"], "needs_approval");
    assert_eq!(d["reason_codes"], serde_json::json!(["APPROVAL_REQUIRED"]));
    assert_eq!(d["policy_profile"], "regulated-approvals");
    assert_eq!(
        d["contract_sha256"],
        "a629ddb28591218730448b6832f8caed9dc391ea1cff647e0b821693e386c736"
    );
    assert_eq!(
        d["classified_effects"],
        serde_json::json!([{"command_id": "refund", "effect_type": "financial_action"}])
    );
    let expires: jiff::Timestamp = d["expires_at"].as_str().unwrap().parse().unwrap();
    let ahead = expires.duration_since(jiff::Timestamp::now());
    assert!(
        ahead > jiff::SignedDuration::from_secs(200)
            && ahead <= jiff::SignedDuration::from_secs(300),
        "expires_at should be ~300 s ahead, is {ahead:?}"
    );
    // The decision validates against the decision schema.
    let s = Scratch::new();
    let f = s.file("decision.json", stdout(&o));
    let v = run!("validate", "decision", f);
    assert_eq!(code(&v), 0, "{}", stdout(&v));
}

#[test]
fn json_allow_lists_every_classified_effect() {
    // The operator flags `csc run` needs for this contract (the CI guide's).
    let o = run!(
        "check",
        "--json",
        example("ci-test-run.json"),
        pack("ci-build-test.yaml"),
        "--allow-env",
        "HOME",
        "--allow-env",
        "CARGO_HOME",
        "--allow-env",
        "RUSTUP_HOME"
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let d: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["decision"], "allow");
    assert_eq!(
        d["classified_effects"],
        serde_json::json!([
            {"command_id": "build", "effect_type": "transform_local"},
            {"command_id": "test", "effect_type": "transform_local"}
        ])
    );
}

// ---- load errors ------------------------------------------------------------

#[test]
fn missing_files_fail_to_read() {
    let s = Scratch::new();
    let missing = s.path().join("nope-contract.json");
    assert_load_error(
        &run!("check", missing, pack("readonly-dev.yaml")),
        &missing,
        "failed to read",
    );
    let missing = s.path().join("nope-policy.yaml");
    assert_load_error(
        &run!("check", example("list-repo.json"), missing),
        &missing,
        "failed to read",
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let s = Scratch::new();
    let p = s.file("dup.yaml", readonly_yaml() + "network: full\n");
    assert_load_error(
        &run!("check", example("list-repo.json"), p),
        &p,
        "duplicate key",
    );
    let c = s.file(
        "dup.json",
        br#"{"version": "csc.v0.1", "version": "csc.v0.1"}"#,
    );
    assert_load_error(
        &run!("check", c, pack("readonly-dev.yaml")),
        &c,
        "duplicate key",
    );
}

#[test]
fn invalid_yaml_is_reported_with_position() {
    let s = Scratch::new();
    let p = s.file(
        "broken.yaml",
        readonly_yaml().replace("[ls, cat", "[ls, cat\n  ]]"),
    );
    let o = run!("check", example("list-repo.json"), p);
    assert_load_error(&o, &p, "invalid YAML");
    assert!(stderr(&o).contains("line "), "{}", stderr(&o));
}

#[test]
fn non_mapping_policies_are_rejected() {
    let s = Scratch::new();
    for (name, text) in [
        ("list.yaml", "- a\n- b\n"),
        ("scalar.yaml", "hello\n"),
        ("empty.yaml", ""),
    ] {
        let p = s.file(name, text);
        assert_load_error(
            &run!("check", example("list-repo.json"), p),
            &p,
            "must contain a YAML mapping",
        );
    }
}

#[test]
fn unsupported_versions_are_rejected() {
    let s = Scratch::new();
    let p = s.file(
        "v2.yaml",
        readonly_yaml().replace("csc.policy.v0.1", "csc.policy.v0.2"),
    );
    assert_load_error(
        &run!("check", example("list-repo.json"), p),
        &p,
        "unsupported policy version",
    );
    let mut c = list_repo();
    c["version"] = "csc.v0.2".into();
    let c = s.file("v2.json", c.to_string());
    assert_load_error(
        &run!("check", c, pack("readonly-dev.yaml")),
        &c,
        "unsupported contract version",
    );
}

#[test]
fn schema_violations_name_the_json_pointer() {
    let s = Scratch::new();
    let mut c = list_repo();
    c["commands"][0]["timeout_sec"] = 0.into();
    let c = s.file("t0.json", c.to_string());
    let o = run!("check", c, pack("readonly-dev.yaml"));
    assert_load_error(&o, &c, "schema validation");
    assert!(
        stderr(&o).contains("/commands/0/timeout_sec"),
        "{}",
        stderr(&o)
    );
    let p = s.file(
        "nocwd.yaml",
        readonly_yaml().replace("allowed_cwd_prefixes: [/tmp, /workspace, /home]\n", ""),
    );
    let o = run!("check", example("list-repo.json"), p);
    assert_load_error(&o, &p, "allowed_cwd_prefixes");
}

#[test]
fn oversize_files_are_rejected_before_parsing() {
    let s = Scratch::new();
    let base = readonly_yaml();
    // Exactly 512 KiB still loads ...
    let pad = 524_288 - base.len() - 3;
    let at_limit = s.file("max.yaml", format!("{base}# {}\n", "x".repeat(pad)));
    assert_eq!(std::fs::metadata(&at_limit).unwrap().len(), 524_288);
    let o = run!("check", example("list-repo.json"), at_limit);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // ... one byte more does not.
    let over = s.file("big.yaml", format!("{base}# {}\n", "x".repeat(pad + 1)));
    assert_load_error(
        &run!("check", example("list-repo.json"), over),
        &over,
        "(max 524288)",
    );
    let c = s.file("big.json", vec![b' '; 1_048_577]);
    assert_load_error(
        &run!("check", c, pack("readonly-dev.yaml")),
        &c,
        "(max 1048576)",
    );
}

#[test]
fn non_utf8_files_are_rejected() {
    let s = Scratch::new();
    let mut bytes = readonly_yaml().into_bytes();
    bytes.extend_from_slice(b"# \xff\xfe\n");
    let p = s.file("latin1.yaml", bytes);
    assert_load_error(
        &run!("check", example("list-repo.json"), p),
        &p,
        "not valid UTF-8",
    );
    let c = s.file("latin1.json", b"{\"version\": \"csc.v0.1\xe9\"}");
    assert_load_error(
        &run!("check", c, pack("readonly-dev.yaml")),
        &c,
        "not valid UTF-8",
    );
}

#[test]
fn alias_bomb_is_rejected() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names: Vec<char> = "abcdefghij".chars().collect();
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    let s = Scratch::new();
    let p = s.file("laughs.yaml", text);
    // Unbounded expansion would never finish (9^10 nodes): a hang guard of
    // a generous 120 s (not a timing assertion), then the refusal itself.
    let mut child = Command::new(env!("CARGO_BIN_EXE_csc"))
        .arg("check")
        .arg(example("list-repo.json"))
        .arg(&p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("alias expansion is not bounded: csc check still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_load_error(&o, &p, "invalid YAML");
}

// ---- validate ---------------------------------------------------------------

#[test]
fn validate_lists_every_error_and_fails_if_any_file_is_invalid() {
    let s = Scratch::new();
    let mut c = list_repo();
    c["commands"][0]["timeout_sec"] = 0.into();
    c["risk_class"] = "extreme".into();
    c["actor"]["role"] = "admin".into();
    let bad = s.file("bad.json", c.to_string());
    let o = run!(
        "validate",
        "contract",
        example("list-repo.json"),
        bad,
        example("todo-histogram.json")
    );
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(out.contains("list-repo.json: valid contract"), "{out}");
    assert!(out.contains("todo-histogram.json: valid contract"), "{out}");
    assert!(
        out.contains("bad.json: INVALID contract (3 error(s))"),
        "{out}"
    );
    for pointer in ["/commands/0/timeout_sec", "/risk_class", "/actor"] {
        assert!(out.contains(pointer), "missing {pointer}: {out}");
    }
}

#[test]
fn validate_passes_the_shipped_files() {
    let mut args: Vec<PathBuf> = vec!["validate".into(), "policy".into()];
    args.extend(
        [
            "ci-build-test.yaml",
            "readonly-dev.yaml",
            "regulated-approvals.yaml",
        ]
        .map(pack),
    );
    let o = csc(&args.iter().map(|p| p.as_os_str()).collect::<Vec<_>>());
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let s = Scratch::new();
    let missing = s.path().join("gone.json");
    let o = run!("validate", "receipt", missing);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("failed to read"), "{}", stdout(&o));
}

// ---- hash ---------------------------------------------------------------------

#[test]
fn hash_prints_the_reference_hashes() {
    for &(file, want) in shipped::SHIPPED {
        let kind = if file.starts_with("policies/") {
            "policy"
        } else {
            "contract"
        };
        let o = run!("hash", kind, root().join(file));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{want}\n"), "{file}");
    }
}

// ---- conformance ----------------------------------------------------------------

#[test]
fn shipped_conformance_suite_passes() {
    let o = run!("conformance", root().join("conformance"));
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}");
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary {last:?}"));
    assert!(passed >= 150, "only {passed} fixtures");
}

#[test]
fn empty_suite_fails() {
    let s = Scratch::new();
    let o = run!("conformance", s.path());
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no fixtures"), "{}", stderr(&o));
}

#[test]
fn broken_suite_fails_and_names_the_fixture() {
    let text = std::fs::read(root().join("conformance/decisions/reason_codes.json")).unwrap();
    let mut fixtures: Vec<Value> = serde_json::from_slice(&text).unwrap();
    let target = fixtures
        .iter_mut()
        .find(|f| f["id"] == "command-not-allowed")
        .expect("fixture exists");
    target["expected_decision"] = "allow".into();
    target["expected_reason_codes"] = serde_json::json!(["ALLOW"]);
    let s = Scratch::new();
    s.file(
        "decisions/reason_codes.json",
        serde_json::to_vec(&fixtures).unwrap(),
    );
    let o = run!("conformance", s.path());
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("FAIL decisions/reason_codes.json#command-not-allowed"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} passed, 1 failed", fixtures.len() - 1)),
        "{out}"
    );
}

/// A contract with a relative cwd, an unknown enum value and a misspelt
/// field, in a command named "build".
fn teaching_contract(s: &Scratch) -> PathBuf {
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(example("list-repo.json")).unwrap()).unwrap();
    let cmd = &mut c["commands"][0];
    cmd["id"] = json!("build");
    cmd["cwd"] = json!("relative/dir");
    cmd["network"] = json!("some");
    let w = cmd.as_object_mut().unwrap().remove("write_paths").unwrap();
    cmd["writ_paths"] = w;
    s.file("teach.json", serde_json::to_vec(&c).unwrap())
}

#[test]
fn schema_errors_teach_name_the_command_list_enum_values_and_suggest_fields() {
    let s = Scratch::new();
    let c = teaching_contract(&s);
    let o = run!("check", c, pack("readonly-dev.yaml"));
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    for needle in [
        "`cwd` of command \"build\" (commands[0]) must be an absolute path (got \"relative/dir\")",
        "`network` of command \"build\" (commands[0]) must be one of \"deny\", \"allowlisted\", \"full\" (got \"some\")",
        "`writ_paths`: did you mean `write_paths`?",
        "command \"build\" (commands[0]) lacks the required field `write_paths`",
        "schema validation",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn with_json_check_explain_and_validate_print_errors_as_json_on_stdout() {
    let s = Scratch::new();
    let c = teaching_contract(&s);
    for verb in ["check", "explain"] {
        let o = run!(verb, "--json", c, pack("readonly-dev.yaml"));
        assert_eq!(code(&o), 1, "{verb}");
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{verb} --json printed no JSON ({e}): {}", stdout(&o)));
        let e = &v["error"];
        assert_eq!(e["kind"], "schema", "{verb}: {v}");
        assert_eq!(e["file"], c.display().to_string());
        assert_eq!(e["hint"], "`writ_paths`: did you mean `write_paths`?");
        let problems = e["problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| p["field"] == "/commands/0/cwd"
                && p["message"].as_str().unwrap().contains("absolute path")),
            "{v}"
        );
    }
    // A YAML error: the location once, as numbers in JSON.
    let bad = s.file(
        "bad.yaml",
        "policy_schema_version: csc.policy.v0.1\nname: p\n  bad: [\n",
    );
    let o = run!("check", "--json", example("list-repo.json"), bad);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "yaml");
    assert_eq!(
        (v["error"]["line"].as_u64(), v["error"]["column"].as_u64()),
        (Some(3), Some(6))
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert_eq!(msg.matches("line 3").count(), 1, "{msg}");
    // validate --json: one report, every file.
    let good = example("list-repo.json");
    let o = run!("validate", "contract", "--json", good, c);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][1]["error"]["kind"], "schema");
    // Even a usage error is JSON when --json was asked for.
    let o = run!("check", "--json", "--no-such-flag");
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
}

#[test]
fn yaml_errors_print_their_location_once() {
    let s = Scratch::new();
    let bad = s.file(
        "bad.yaml",
        "policy_schema_version: csc.policy.v0.1\nname: p\n  bad: [\n",
    );
    let o = run!("validate", "policy", bad);
    let out = stdout(&o);
    assert!(out.contains("at line 3 column 6"), "{out}");
    assert!(
        !out.contains("line 3, column 6"),
        "location repeated: {out}"
    );
}

/// A reader that goes away (`csc check --json … | head -c0`) ends the verb
/// quietly with exit 1: never a panic on the closed stdout.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    for args in [
        vec!["check", "--json"],
        vec!["explain", "--json"],
        vec!["check"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_csc"))
            .args(&args)
            .arg(example("list-repo.json"))
            .arg(pack("readonly-dev.yaml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code(&o), 1, "{args:?}: {err}");
    }
}
