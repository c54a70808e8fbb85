//! YAML 1.1 vs 1.2 (issue 8 item 7): policy scalars that the Python
//! reference (PyYAML, YAML 1.1) and csc read differently are refused with
//! their position; quoting them makes them unambiguous strings.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::Value;

use csc::protocol::load::{self, LoadError, PolicyFormat};
use csc::protocol::yaml11::{Reference, reference};

const BASE: &str = "policy_schema_version: csc.policy.v0.1
name: p
allow_commands: [ls, cat]
allowed_effect_types: [observe]
allowed_risk_classes: [low]
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: [/workspace]
allowed_read_prefixes: [/workspace]
";

fn load_value(text: &str) -> Result<Value, LoadError> {
    load::policy_value_from_bytes(text.as_bytes(), PolicyFormat::Yaml, "policy.yaml")
}

fn assert_ambiguous(text: &str, line: usize) {
    match load_value(text) {
        // csc's parser refuses some of them outright (`.inf`, `!!int 010`).
        Err(LoadError::Yaml { .. }) => {}
        Err(LoadError::YamlAmbiguous { ambiguity, .. }) => {
            assert_eq!(ambiguity.line, line, "{text}\n{ambiguity}");
            let msg = LoadError::YamlAmbiguous {
                origin: "policy.yaml".into(),
                ambiguity,
            }
            .to_string();
            assert!(msg.contains("quote it"), "{msg}");
            assert!(msg.contains("policy.yaml"), "{msg}");
        }
        other => panic!("not refused as ambiguous: {other:?}\n{text}"),
    }
    // The full loader (and so `csc run`/`check`) refuses it too.
    assert!(load::policy_from_bytes(text.as_bytes(), PolicyFormat::Yaml, "p").is_err());
}

/// Every scalar form PyYAML reads differently from csc's parser (checked
/// as a mapping value and as flow and block sequence items).
const AMBIGUOUS: &[&str] = &[
    "010",
    "-010",
    "00",
    "0_1",
    "0o17",
    "0O17",
    "0o7",
    "1e1",
    "1E1",
    "1e+1",
    "1.0e1",
    "+.5",
    "0x_1F",
    "0b_1",
    "1__0",
    "1:30",
    "1_0.5",
    "1:30.5",
    ".inf",
    "-.inf",
    ".nan",
    "2026-01-01",
    "2001-12-14t21:59:43.10-05:00",
    "oN",
    "yEs",
    "y",
    "n",
    "N",
    "=",
    "99999999999999999999999999",
    "!!int 010",
    "!!int 0o17",
    "!!float 1_0.5",
    "!!int 1:30",
];

/// Spellings both read the same way: they load, with that value.
const AGREED: &[(&str, &str)] = &[
    ("0x1F", "31"),
    ("0b101", "5"),
    ("1_000", "1000"),
    ("+5", "5"),
    ("-0", "0"),
    (".5", "0.5"),
    ("1.", "1.0"),
    ("1.0e+1", "10.0"),
    ("1.5E+3", "1500.0"),
    ("60", "60"),
    ("60.0", "60.0"),
    ("yes", "true"),
    ("Off", "false"),
    ("~", "null"),
    ("!!int 60", "60"),
    ("!!float 1e1", "10.0"),
];

#[test]
fn yaml_1_1_ambiguous_scalars_are_refused() {
    for s in AMBIGUOUS {
        let value = format!("{BASE}k: {s}\n");
        let flow = format!("{BASE}k: [ls, {s}]\n");
        let block = format!("{BASE}k:\n  - ls\n  - {s}\n");
        for text in [value, flow] {
            assert_ambiguous(&text, 10);
        }
        assert_ambiguous(&block, 12);
    }
}

#[test]
fn agreed_spellings_load_with_their_value() {
    for (s, want) in AGREED {
        let v =
            load_value(&format!("{BASE}k: {s}\nl: [{s}]\n")).unwrap_or_else(|e| panic!("{s}: {e}"));
        let want: Value = serde_json::from_str(want).unwrap();
        assert_eq!(v["k"], want, "{s}");
        assert_eq!(v["l"][0], want, "{s}");
    }
}

#[test]
fn ambiguous_keys_merges_aliases_and_tags_are_refused() {
    for (text, line) in [
        (format!("{BASE}on: 1\n"), 10),
        (format!("{BASE}yes: 1\n"), 10),
        (format!("{BASE}010: 1\n"), 10),
        (format!("{BASE}extra:\n  - &k a\n  - {{*k : 1}}\n"), 12),
        (format!("{BASE}base: &b {{x: 1}}\nmerged:\n  <<: *b\n"), 12),
        (format!("{BASE}s: !!set {{a: null}}\n"), 10),
        (format!("{BASE}s: !!omap [{{a: 1}}]\n"), 10),
        (format!("{BASE}s: !!int \"010\"\n"), 10),
        (format!("{BASE}s: !!binary aGVsbG8=\n"), 10),
    ] {
        match load_value(&text) {
            Err(LoadError::YamlAmbiguous { ambiguity, .. }) => {
                assert_eq!(ambiguity.line, line, "{text}\n{ambiguity}")
            }
            // Rejected by the parser itself is fine too (never accepted).
            Err(LoadError::Yaml { .. }) | Err(LoadError::YamlDuplicateKey { .. }) => {}
            other => panic!("accepted: {other:?}\n{text}"),
        }
    }
}

#[test]
fn ambiguous_scalars_quoted_are_accepted() {
    for s in AMBIGUOUS.iter().filter(|s| !s.starts_with("!!")) {
        for q in [format!("\"{s}\""), format!("'{s}'")] {
            let text = format!("{BASE}max_timeout_sec: 60\nextra: [ls, {q}]\nk: {q}\n");
            let v = load_value(&text).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(v["k"], Value::String((*s).to_owned()));
        }
    }
}

#[test]
fn unambiguous_policies_still_load() {
    let text = format!(
        "{BASE}max_timeout_sec: 60\nf: 60.0\nb: true\nc: yes\nd: No\nn: ~\ne:\nz: 0\nneg: -3\n\
         big: 1.5e+3\ns: !!str 010\nt: !!int 60\nu: ! 010\nw: 'x'\nlist: [1, -2, 3.25, abc, /a/b]\n"
    );
    let v = load_value(&text).unwrap();
    assert_eq!(v["max_timeout_sec"], 60);
    assert_eq!(v["f"], 60.0);
    assert_eq!(v["c"], true);
    assert_eq!(v["d"], false);
    assert!(v["n"].is_null() && v["e"].is_null());
    assert_eq!(v["s"], "010");
    assert_eq!(v["t"], 60);
    for pack in ["readonly-dev", "ci-build-test", "regulated-approvals"] {
        let p = std::fs::read(format!(
            "{}/policies/{pack}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        load::policy_from_bytes(&p, PolicyFormat::Yaml, pack).unwrap();
    }
}

fn numberish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "0", "1", "7", "8", "9", "_", ".", "e", "E", "+", "-", ":", "x", "o", "b", "a", "f",
            "inf", "nan", "5", "59",
        ]),
        1..7,
    )
    .prop_map(|parts| parts.concat())
}

/// The value csc loaded for a scalar agrees with PyYAML's reading, or the
/// policy is refused. Never a different value.
fn agrees(token: &str, loaded: &Value) -> bool {
    match (reference(token), loaded) {
        (Reference::Null, Value::Null) => true,
        (Reference::Bool(b), Value::Bool(c)) => b == *c,
        (Reference::Int(Some(i)), Value::Number(n)) => {
            n.as_i64().map(i128::from) == Some(i) || n.as_u64().map(i128::from) == Some(i)
        }
        (Reference::Float(x), Value::Number(n)) => n.is_f64() && n.as_f64() == Some(x),
        (Reference::Str, Value::String(s)) => s == token,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn loaded_scalars_mean_what_pyyaml_reads(token in numberish()) {
        for text in [
            format!("{BASE}k: {token}\n"),
            format!("{BASE}k: [{token}]\n"),
            format!("{BASE}k:\n  - {token}\n"),
        ] {
            if let Ok(v) = load_value(&text) {
                let got = if v["k"].is_array() { &v["k"][0] } else { &v["k"] };
                // Not a single scalar in YAML (e.g. `- -` is a nested sequence).
                if got.is_array() || got.is_object() {
                    continue;
                }
                prop_assert!(agrees(&token, got), "{token:?}: loaded {got}, PyYAML {:?}", reference(&token));
            }
        }
    }
}

/// Dev check against the real PyYAML (not part of the normal run):
/// `cargo test --test yaml_ambiguity -- --ignored`.
#[test]
#[ignore = "needs python3 with PyYAML"]
fn reference_model_matches_pyyaml() {
    let mut tokens: Vec<String> = AMBIGUOUS
        .iter()
        .filter(|s| !s.starts_with("!!"))
        .map(|s| s.to_string())
        .collect();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..5000 {
        tokens.push(numberish().new_tree(&mut runner).unwrap().current());
    }
    let script = r#"
import sys, json, yaml, datetime, math
out = []
for t in json.load(sys.stdin):
    try:
        v = yaml.safe_load("k: " + t + "\n")["k"]
    except Exception as e:
        out.append(["other", None]); continue
    if v is None: out.append(["null", None])
    elif isinstance(v, bool): out.append(["bool", v])
    elif isinstance(v, int): out.append(["int", str(v)])
    elif isinstance(v, float): out.append(["float", repr(v)])
    elif isinstance(v, str): out.append(["str", v == t])
    else: out.append(["other", None])
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&tokens).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let py: Vec<(String, Value)> = serde_json::from_slice(&out.stdout).unwrap();
    for (t, (kind, v)) in tokens.iter().zip(py) {
        // Tokens that are not a single plain scalar in YAML are skipped.
        let ours = reference(t);
        let ok = match (kind.as_str(), &ours) {
            ("null", Reference::Null) => true,
            ("bool", Reference::Bool(b)) => v == Value::Bool(*b),
            ("int", Reference::Int(Some(i))) => v == Value::String(i.to_string()),
            ("int", Reference::Int(None)) => true,
            ("float", Reference::Float(x)) => {
                let s = v.as_str().unwrap();
                (x.is_nan() && s == "nan")
                    || s.parse::<f64>().ok() == Some(*x)
                    || (s == "inf" && *x == f64::INFINITY)
                    || (s == "-inf" && *x == f64::NEG_INFINITY)
            }
            ("str", Reference::Str) => true,
            // PyYAML cannot load it at all (e.g. `k: :`): not a scalar case.
            ("other", _) => true,
            // Our model may refuse more than PyYAML rejects, never less.
            (_, Reference::Other(_)) => true,
            _ => false,
        };
        assert!(ok, "{t:?}: PyYAML {kind} {v}, model {ours:?}");
    }
}
