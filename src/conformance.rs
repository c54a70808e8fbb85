//! Runner for conformance suites in the interoperable fixture format.
//!
//! A suite directory may hold (every part optional, at least one fixture
//! required overall):
//! - `contracts/valid.json`, `contracts/invalid.json`: schema fixtures
//!   `{id, input, valid}` for contracts;
//! - `policies/schema.json`: schema fixtures for policies;
//! - `policies/loader.json`: `{id, raw_text | source: "missing_file",
//!   format, valid, expected_error_contains}`;
//! - `decisions/*.json`: `{id, contract, policy, expected_decision,
//!   expected_reason_codes, expected_classified_effects?}`;
//! - `receipts/valid.json`, `receipts/invalid.json`: receipt schema fixtures
//!   (validated without the `signature` member).
//!
//! A fixture file is a JSON array of fixtures, or an object whose
//! `fixtures` member is that array.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::engine;
use crate::protocol::contract::Contract;
use crate::protocol::load::{self, PolicyFormat};
use crate::protocol::policy::Policy;
use crate::protocol::schema::{self, Kind};

/// The outcome of one fixture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FixtureResult {
    /// `file#id`.
    pub id: String,
    /// Whether the fixture's expectation held.
    pub passed: bool,
    /// Why it failed (empty when passed).
    pub detail: String,
}

/// The outcome of a whole suite.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SuiteReport {
    /// Fixtures that passed.
    pub passed: usize,
    /// Fixtures that failed.
    pub failed: usize,
    /// Every fixture's outcome, in suite order.
    pub results: Vec<FixtureResult>,
}

impl SuiteReport {
    fn push(&mut self, id: String, outcome: Result<(), String>) {
        let passed = outcome.is_ok();
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.results.push(FixtureResult {
            id,
            passed,
            detail: outcome.err().unwrap_or_default(),
        });
    }

    /// True when something ran and nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

/// Run every fixture file found under `dir`.
pub fn run_suite(dir: &Path) -> Result<SuiteReport, String> {
    if !dir.is_dir() {
        return Err(format!(
            "conformance suite {} is not a directory",
            dir.display()
        ));
    }
    let mut report = SuiteReport::default();
    for (rel, kind) in [
        ("contracts/valid.json", Kind::Contract),
        ("contracts/invalid.json", Kind::Contract),
        ("policies/schema.json", Kind::Policy),
        ("receipts/valid.json", Kind::Receipt),
        ("receipts/invalid.json", Kind::Receipt),
    ] {
        let path = dir.join(rel);
        if path.exists() {
            run_file(&mut report, &path, rel, |fx| schema_fixture(kind, fx));
        }
    }
    let loader = dir.join("policies/loader.json");
    if loader.exists() {
        run_file(&mut report, &loader, "policies/loader.json", loader_fixture);
    }
    let decisions = dir.join("decisions");
    if decisions.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&decisions)
            .map_err(|e| format!("failed to read {}: {e}", decisions.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let rel = format!(
                "decisions/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            run_file(&mut report, &path, &rel, decision_fixture);
        }
    }
    Ok(report)
}

fn run_file(
    report: &mut SuiteReport,
    path: &Path,
    rel: &str,
    run: impl Fn(&Value) -> Result<(), String>,
) {
    let fixtures = match read_fixtures(path) {
        Ok(f) => f,
        Err(e) => {
            report.push(rel.to_owned(), Err(e));
            return;
        }
    };
    for (i, fx) in fixtures.iter().enumerate() {
        let id = fx
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("#{i}"));
        report.push(format!("{rel}#{id}"), run(fx));
    }
}

fn read_fixtures(path: &Path) -> Result<Vec<Value>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let value = crate::protocol::strict_json::parse(&bytes)
        .map_err(|e| format!("invalid JSON in {}: {e}", path.display()))?;
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut obj) => match obj.remove("fixtures") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(format!("{}: expected an array of fixtures", path.display())),
        },
        _ => Err(format!("{}: expected an array of fixtures", path.display())),
    }
}

fn expected_bool(fx: &Value, field: &str) -> Result<bool, String> {
    fx.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("fixture lacks boolean `{field}`"))
}

fn schema_fixture(kind: Kind, fx: &Value) -> Result<(), String> {
    let expected = expected_bool(fx, "valid")?;
    let input = fx.get("input").ok_or("fixture lacks `input`")?;
    let problems: Vec<String> = match kind {
        Kind::Contract => match load::contract_from_value(input.clone(), "fixture input") {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        },
        Kind::Receipt => schema::validate(kind, &load::receipt_without_signature(input))
            .iter()
            .map(ToString::to_string)
            .collect(),
        _ => schema::validate(kind, input)
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    match (expected, problems.is_empty()) {
        (true, true) | (false, false) => Ok(()),
        (true, false) => Err(format!("expected valid, got: {}", problems.join("; "))),
        (false, true) => Err("expected invalid, but it validated".to_owned()),
    }
}

fn loader_fixture(fx: &Value) -> Result<(), String> {
    let expected = expected_bool(fx, "valid")?;
    let format = match fx.get("format").and_then(Value::as_str) {
        Some("json") => PolicyFormat::Json,
        _ => PolicyFormat::Yaml,
    };
    let result = if fx.get("source").and_then(Value::as_str) == Some("missing_file") {
        let path = std::env::temp_dir().join(format!(
            "csc-conformance-missing-{}/policy.yaml",
            std::process::id()
        ));
        load::load_policy(&path).map(|_| ())
    } else {
        let text = fx
            .get("raw_text")
            .and_then(Value::as_str)
            .ok_or("fixture lacks `raw_text` or `source`")?;
        load::policy_from_bytes(text.as_bytes(), format, "fixture raw_text").map(|_| ())
    };
    match (expected, result) {
        (true, Ok(())) => Ok(()),
        (true, Err(e)) => Err(format!("expected the policy to load, got: {e}")),
        (false, Ok(())) => Err("expected a load error, but the policy loaded".to_owned()),
        (false, Err(e)) => match fx.get("expected_error_contains").and_then(Value::as_str) {
            Some(needle) if !e.to_string().contains(needle) => Err(format!(
                "error {:?} does not contain {needle:?}",
                e.to_string()
            )),
            _ => Ok(()),
        },
    }
}

fn decision_fixture(fx: &Value) -> Result<(), String> {
    let contract_v = fx.get("contract").ok_or("fixture lacks `contract`")?;
    let policy_v = fx.get("policy").ok_or("fixture lacks `policy`")?;
    let expected = fx
        .get("expected_decision")
        .and_then(Value::as_str)
        .ok_or("fixture lacks `expected_decision`")?;
    let contract: Contract = serde_json::from_value(contract_v.clone())
        .map_err(|e| format!("contract does not parse: {e}"))?;
    let model = contract.model_errors();
    if !model.is_empty() {
        return Err(format!("contract is invalid: {}", model.join("; ")));
    }
    let policy: Policy = serde_json::from_value(policy_v.clone())
        .map_err(|e| format!("policy does not parse: {e}"))?;
    let decision = engine::evaluate(&contract, &policy);
    let mut problems = Vec::new();
    if decision.decision.as_str() != expected {
        problems.push(format!(
            "decision {} (expected {expected}; reason: {})",
            decision.decision.as_str(),
            decision.reasons.join("; ")
        ));
    }
    if let Some(codes) = fx.get("expected_reason_codes") {
        let got: Vec<&str> = decision.reason_codes.iter().map(|c| c.as_str()).collect();
        let want: Vec<&str> = codes
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if got != want {
            problems.push(format!("reason codes {got:?} (expected {want:?})"));
        }
    }
    if let Some(effects) = fx.get("expected_classified_effects") {
        let want: BTreeSet<(String, String)> = effects
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e.get("command_id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            e.get("effect_type")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let got: BTreeSet<(String, String)> = decision
            .classified_effects
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.command_id, e.effect_type))
            .collect();
        if got != want {
            problems.push(format!("classified effects {got:?} (expected {want:?})"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
