//! Property tests: hostile bytes and mutated documents against every loader
//! and the engine.
//!
//! Properties:
//! - no loader or engine call panics, whatever the input;
//! - a document that fails to load never reaches the engine, so it can
//!   never be allowed;
//! - for documents that load, evaluation is deterministic, and an `allow`
//!   is sound: an independent restatement of every v0.1 check agrees.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use std::path::Path;

use csc::engine;
use csc::engine::paths::within_prefixes;
use csc::protocol::contract::{
    ApprovalMode, Argv, Command, Contract, EffectType, NetworkMode, Pipeline, RiskClass,
};
use csc::protocol::decision::{Decision, Verdict};
use csc::protocol::load::{self, PolicyFormat};
use csc::protocol::policy::Policy;

const CASES: u32 = 256;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn example_contracts() -> Vec<Vec<u8>> {
    [
        "list-repo",
        "ci-test-run",
        "todo-histogram",
        "fetch-artifact-index",
        "deploy-release",
        "refund-payment",
        "force-push",
    ]
    .iter()
    .map(|n| read(&format!("examples/contracts/{n}.json")))
    .collect()
}

fn pack_texts() -> Vec<Vec<u8>> {
    ["readonly-dev", "ci-build-test", "regulated-approvals"]
        .iter()
        .map(|n| read(&format!("policies/{n}.yaml")))
        .collect()
}

fn packs() -> Vec<Policy> {
    pack_texts()
        .iter()
        .map(|t| {
            load::policy_from_bytes(t, PolicyFormat::Yaml, "pack")
                .unwrap()
                .policy
        })
        .collect()
}

fn approval_doc() -> Value {
    serde_json::json!({
        "approval_version": "csc.approval.v0.1",
        "approval_id": "apr-0001",
        "contract_sha256": "471cee49f74a7e49baf2d941388a25841a1bbf86faa706875d0840a7663f6028",
        "approver": {"identity": "bob@example.com", "method": "cli"},
        "approved_at": "2026-11-21T13:00:00Z",
        "expires_at": "2026-11-21T14:00:00Z",
        "scope": "single_execution",
        "ticket_id": "CHG-1234",
        "reason": "scheduled release"
    })
}

fn receipt_doc() -> Value {
    let text = read("conformance/receipts/valid.json");
    let fixtures: Vec<Value> = serde_json::from_slice(&text).unwrap();
    fixtures
        .into_iter()
        .find(|f| f["id"] == "signed-full")
        .map(|f| f["input"].clone())
        .unwrap()
}

// ---- document mutations -------------------------------------------------------

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn all_paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Seg::Key(k.clone()));
                all_paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Seg::Idx(i));
                all_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Idx(i) => v.get_mut(*i),
    })
}

/// A structural edit of a JSON document.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index),
    Replace(Index, Value),
    Huge(Index),
    UnknownField(Index),
    DuplicateKey(Index),
}

fn filler() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(86400.0)),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(Value::from("")),
        Just(Value::from("curl")),
        Just(Value::from("/")),
        Just(Value::from("//host")),
        Just(Value::from("a\u{0}b")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!(["ls"])),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), filler()).prop_map(|(i, v)| Edit::Replace(i, v)),
        any::<Index>().prop_map(Edit::Huge),
        any::<Index>().prop_map(Edit::UnknownField),
        any::<Index>().prop_map(Edit::DuplicateKey),
    ]
}

/// Apply `edits` to `doc` and serialize; `DuplicateKey` works on the text.
fn mutate(doc: &Value, edits: &[Edit]) -> Vec<u8> {
    let mut doc = doc.clone();
    let mut dup: Option<Vec<Seg>> = None;
    for e in edits {
        let mut paths = Vec::new();
        all_paths(&doc, &mut Vec::new(), &mut paths);
        let pick = |i: &Index| paths[i.index(paths.len())].clone();
        match e {
            Edit::Delete(i) => {
                let path = pick(i);
                if let Some((last, parent)) = path.split_last() {
                    match (node_mut(&mut doc, parent), last) {
                        (Some(Value::Object(m)), Seg::Key(k)) => {
                            m.shift_remove(k);
                        }
                        (Some(Value::Array(a)), Seg::Idx(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            Edit::Replace(i, v) => {
                if let Some(n) = node_mut(&mut doc, &pick(i)) {
                    *n = v.clone();
                }
            }
            Edit::Huge(i) => {
                if let Some(n) = node_mut(&mut doc, &pick(i)) {
                    *n = match n {
                        Value::Array(_) => Value::Array(vec![Value::from("x"); 300]),
                        _ => Value::from("A".repeat(200_000)),
                    };
                }
            }
            Edit::UnknownField(i) => {
                if let Some(Value::Object(m)) = node_mut(&mut doc, &pick(i)) {
                    m.insert("unexpected".into(), Value::from(1));
                }
            }
            Edit::DuplicateKey(i) => dup = Some(pick(i)),
        }
    }
    let text = serde_json::to_string(&doc).unwrap();
    let Some(path) = dup else {
        return text.into_bytes();
    };
    match node_mut(&mut doc, &path) {
        Some(Value::Object(m)) if !m.is_empty() => {
            let obj = serde_json::to_string(&Value::Object(m.clone())).unwrap();
            let (k, v) = m.iter().next().unwrap();
            let doubled = format!(
                "{{{}:{},{}",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap(),
                &obj[1..]
            );
            text.replacen(&obj, &doubled, 1).into_bytes()
        }
        _ => text.into_bytes(),
    }
}

/// A byte-level edit.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    DuplicateRange(Index, Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let snippet = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        Just(b"\n- &a [*a]\n".to_vec()),
        Just(b" !!python/object:os.system ".to_vec()),
        Just(b"\nname: dup\n".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"{".to_vec()),
    ];
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), snippet).prop_map(|(i, s)| ByteEdit::Insert(i, s)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ByteEdit::DuplicateRange(a, b)),
    ]
}

fn mutate_bytes(bytes: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for e in edits {
        let len = b.len().max(1);
        match e {
            ByteEdit::Flip(i, x) if !b.is_empty() => {
                let i = i.index(len);
                b[i] ^= x | 1;
            }
            ByteEdit::Flip(..) => {}
            ByteEdit::Truncate(i) => b.truncate(i.index(len)),
            ByteEdit::Insert(i, s) => {
                let at = i.index(len + 1).min(b.len());
                b.splice(at..at, s.iter().copied());
            }
            ByteEdit::DuplicateRange(x, y) if !b.is_empty() => {
                let (x, y) = (x.index(len), y.index(len));
                let (lo, hi) = (x.min(y), x.max(y) + 1);
                let copy = b[lo..hi.min(b.len())].to_vec();
                b.splice(hi.min(b.len())..hi.min(b.len()), copy);
            }
            ByteEdit::DuplicateRange(..) => {}
        }
    }
    b
}

// ---- the oracle -------------------------------------------------------------------

/// The parts of a decision that must not vary between two evaluations.
fn stable(d: &Decision) -> Decision {
    Decision {
        expires_at: String::new(),
        ..d.clone()
    }
}

/// Every v0.1 check restated independently of the engine: an `allow` must
/// satisfy all of them.
fn assert_allow_is_sound(c: &Contract, p: &Policy) {
    assert!(p.allowed_risk_classes.contains(&c.risk_class));
    assert_eq!(c.approval_mode, ApprovalMode::PolicyOnly);
    for cmd in &c.commands {
        let vectors: Vec<&Vec<String>> = match (&cmd.exec, &cmd.pipeline) {
            (Some(e), None) => vec![&e.argv],
            (None, Some(pl)) => pl.segments.iter().map(|s| &s.argv).collect(),
            other => panic!("allowed a command with exec/pipeline {other:?}"),
        };
        for argv in &vectors {
            let exe = argv.first().expect("allowed an empty argv");
            assert!(p.allow_commands.contains(exe), "allowed {exe}");
            assert!(
                !p.deny_argv_prefixes.iter().any(|pre| argv.starts_with(pre)),
                "allowed denied argv {argv:?}"
            );
        }
        assert!(p.allowed_effect_types.contains(&cmd.proposed_effect_type));
        let classified = if vectors[0][0] == "curl" {
            let joined = vectors[0].join(" ");
            if p.allowed_egress_hosts
                .iter()
                .any(|h| joined.contains(h.as_str()) && h.contains("stripe"))
            {
                "financial_action".to_owned()
            } else {
                "fetch_external".to_owned()
            }
        } else {
            cmd.proposed_effect_type.as_str().to_owned()
        };
        assert!(
            !p.manual_approval_for_classified_effect_types
                .contains(&classified)
        );
        assert!(cmd.timeout_sec <= p.max_timeout_sec);
        assert!(cmd.network <= p.network);
        assert!(cmd.secret_refs.is_empty() || p.allow_secret_refs);
        assert_eq!(within_prefixes(&cmd.cwd, &p.allowed_cwd_prefixes), Ok(true));
        for r in &cmd.read_paths {
            assert_eq!(within_prefixes(r, &p.allowed_read_prefixes), Ok(true));
        }
        assert!(cmd.write_paths.is_empty() || !p.require_write_paths_empty);
        for w in &cmd.write_paths {
            assert_eq!(within_prefixes(w, &p.allowed_write_prefixes), Ok(true));
        }
    }
}

fn check_decision(c: &Contract, p: &Policy) {
    let first = engine::evaluate(c, p);
    let second = engine::evaluate(c, p);
    assert_eq!(
        stable(&first),
        stable(&second),
        "evaluation is not deterministic"
    );
    assert_eq!(first.reason_codes.len(), 1);
    if first.decision == Verdict::Allow {
        assert_allow_is_sound(c, p);
    }
    // explain() walks every check without stopping; it must not panic either.
    let _ = engine::explain(c, p, engine::Semantics::Csc);
    // csc's extension checks never loosen a decision nor change a v0.1 denial.
    let ext = engine::decide(c, p, engine::Semantics::Csc);
    match first.decision {
        Verdict::Deny => assert_eq!(stable(&ext), stable(&first)),
        Verdict::NeedsApproval => assert_ne!(ext.decision, Verdict::Allow),
        Verdict::Allow => {}
    }
}

/// Load mutated contract bytes; only loaded contracts reach the engine.
fn contract_case(bytes: &[u8], policies: &[Policy]) {
    if let Ok(loaded) = load::contract_from_bytes(bytes, "mutant") {
        // A loaded contract is schema-valid and within limits.
        assert!(
            load::validate_bytes(
                csc::protocol::schema::Kind::Contract,
                bytes,
                PolicyFormat::Yaml,
                "mutant"
            )
            .is_empty()
        );
        for p in policies {
            check_decision(&loaded.contract, p);
        }
    }
}

fn policy_case(bytes: &[u8], format: PolicyFormat, contracts: &[Contract]) {
    if let Ok(loaded) = load::policy_from_bytes(bytes, format, "mutant") {
        let _ = loaded.sha256();
        for c in contracts {
            check_decision(c, &loaded.policy);
        }
    }
}

fn loaded_examples() -> Vec<Contract> {
    example_contracts()
        .iter()
        .map(|b| load::contract_from_bytes(b, "example").unwrap().contract)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let policies = packs();
        contract_case(&bytes, &policies);
        policy_case(&bytes, PolicyFormat::Yaml, &[]);
        policy_case(&bytes, PolicyFormat::Json, &[]);
        let _ = load::approval_from_bytes(&bytes, "random");
        let _ = load::receipt_from_bytes(&bytes, "random");
    }

    #[test]
    fn mutated_contracts(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..4)) {
        let docs = example_contracts();
        let doc: Value = serde_json::from_slice(&docs[which.index(docs.len())]).unwrap();
        contract_case(&mutate(&doc, &edits), &packs());
    }

    #[test]
    fn byte_mutated_contracts(which in any::<Index>(), edits in prop::collection::vec(byte_edit(), 1..4)) {
        let docs = example_contracts();
        contract_case(&mutate_bytes(&docs[which.index(docs.len())], &edits), &packs());
    }

    #[test]
    fn mutated_yaml_policies(which in any::<Index>(), edits in prop::collection::vec(byte_edit(), 1..4)) {
        let texts = pack_texts();
        let bytes = mutate_bytes(&texts[which.index(texts.len())], &edits);
        policy_case(&bytes, PolicyFormat::Yaml, &loaded_examples());
    }

    #[test]
    fn mutated_json_policies(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..4)) {
        let texts = pack_texts();
        let raw = load::policy_from_bytes(&texts[which.index(texts.len())], PolicyFormat::Yaml, "pack")
            .unwrap()
            .raw;
        let bytes = mutate(&raw, &edits);
        policy_case(&bytes, PolicyFormat::Json, &loaded_examples());
        // JSON is YAML too: the YAML loader must cope with the same text.
        policy_case(&bytes, PolicyFormat::Yaml, &loaded_examples());
    }

    #[test]
    fn mutated_approvals(edits in prop::collection::vec(edit(), 1..4), flips in prop::collection::vec(byte_edit(), 0..2)) {
        let bytes = mutate_bytes(&mutate(&approval_doc(), &edits), &flips);
        let _ = load::approval_from_bytes(&bytes, "mutant");
    }

    #[test]
    fn mutated_receipts(edits in prop::collection::vec(edit(), 1..4), flips in prop::collection::vec(byte_edit(), 0..2)) {
        let bytes = mutate_bytes(&mutate(&receipt_doc(), &edits), &flips);
        if let Ok(receipt) = load::receipt_from_bytes(&bytes, "mutant") {
            // What loaded is an object with the required members.
            prop_assert!(receipt.get("contract_sha256").is_some());
        }
    }

    #[test]
    fn engine_on_random_contracts(c in contract_strategy(), p in policy_strategy()) {
        check_decision(&c, &p);
    }
}

#[test]
fn mutation_helpers_do_mutate() {
    // Guard against mutators that silently return their input.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let indices: Vec<Index> = (0..64)
        .map(|_| any::<Index>().new_tree(&mut runner).unwrap().current())
        .collect();
    let doc = approval_doc();
    let original = serde_json::to_vec(&doc).unwrap();
    assert!(load::approval_from_bytes(&original, "ok").is_ok());
    let duplicated = indices.iter().any(|i| {
        let bytes = mutate(&doc, &[Edit::DuplicateKey(*i)]);
        load::approval_from_bytes(&bytes, "dup")
            .is_err_and(|e| e.to_string().contains("duplicate key"))
    });
    assert!(duplicated, "DuplicateKey never produced a duplicate key");
    let deleted = indices.iter().any(|i| {
        let bytes = mutate(&doc, &[Edit::Delete(*i)]);
        bytes.len() < original.len() && load::approval_from_bytes(&bytes, "del").is_err()
    });
    assert!(deleted, "Delete never removed anything");
    let truncated = indices
        .iter()
        .any(|i| mutate_bytes(&original, &[ByteEdit::Truncate(*i)]).len() < original.len());
    assert!(truncated, "Truncate never shortened the input");
}

// ---- structured generators for the engine ---------------------------------------

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ls".to_owned()),
        Just("curl".to_owned()),
        Just("git".to_owned()),
        Just("push".to_owned()),
        Just("https://api.stripe.com/v1".to_owned()),
        Just("".to_owned()),
        "[a-z]{1,6}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("/workspace".to_owned()),
        Just("/workspace/".to_owned()),
        Just("/workspace/../etc".to_owned()),
        Just("/workshop".to_owned()),
        Just("//host".to_owned()),
        Just("//host/share/x".to_owned()),
        Just("\\\\host\\share".to_owned()),
        Just("C:\\Work".to_owned()),
        Just("c:/work/x".to_owned()),
        Just("relative".to_owned()),
        Just("".to_owned()),
        Just("///x".to_owned()),
        "/[a-zA-Z./*]{0,12}",
    ]
}

const EXES: &[&str] = &["ls", "curl", "git", "make", "sh"];

fn exe() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(EXES).prop_map(str::to_owned),
        1 => word(),
    ]
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    (exe(), prop::collection::vec(word(), 0..4)).prop_map(|(e, mut rest)| {
        rest.insert(0, e);
        rest
    })
}

fn effect() -> impl Strategy<Value = EffectType> {
    prop_oneof![
        Just(EffectType::Observe),
        Just(EffectType::TransformLocal),
        Just(EffectType::FetchExternal),
        Just(EffectType::MutateRepo),
        Just(EffectType::Deploy),
        Just(EffectType::TouchSecrets),
    ]
}

fn network() -> impl Strategy<Value = NetworkMode> {
    prop_oneof![
        Just(NetworkMode::Deny),
        Just(NetworkMode::Allowlisted),
        Just(NetworkMode::Full)
    ]
}

fn risk() -> impl Strategy<Value = RiskClass> {
    prop_oneof![
        Just(RiskClass::Low),
        Just(RiskClass::Medium),
        Just(RiskClass::High),
        Just(RiskClass::Critical)
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let shape = prop_oneof![
        argv().prop_map(|a| (Some(Argv { argv: a }), None)),
        prop::collection::vec(argv(), 2..4).prop_map(|segs| {
            (
                None,
                Some(Pipeline {
                    segments: segs.into_iter().map(|argv| Argv { argv }).collect(),
                }),
            )
        }),
    ];
    (
        shape,
        path(),
        prop::collection::vec(path(), 0..3),
        prop::collection::vec(path(), 0..3),
        network(),
        prop::collection::vec(Just("vault:x".to_owned()), 0..2),
        prop_oneof![Just(1u64), Just(60), Just(61), Just(86400)],
        effect(),
    )
        .prop_map(
            |(
                (exec, pipeline),
                cwd,
                read_paths,
                write_paths,
                network,
                secret_refs,
                timeout_sec,
                e,
            )| {
                Command {
                    id: "c".into(),
                    exec,
                    pipeline,
                    cwd,
                    read_paths,
                    write_paths,
                    network,
                    env_allow: vec![],
                    secret_refs,
                    timeout_sec,
                    proposed_effect_type: e,
                }
            },
        )
}

fn contract_strategy() -> impl Strategy<Value = Contract> {
    (
        prop::collection::vec(command(), 1..3),
        risk(),
        prop_oneof![
            Just(ApprovalMode::PolicyOnly),
            Just(ApprovalMode::PolicyOnly),
            Just(ApprovalMode::HumanRequired),
            Just(ApprovalMode::DualControlRequired)
        ],
    )
        .prop_map(|(commands, risk_class, approval_mode)| {
            let base: Contract =
                serde_json::from_slice(&read("examples/contracts/list-repo.json")).unwrap();
            Contract {
                commands,
                risk_class,
                approval_mode,
                ..base
            }
        })
}

/// Mostly lenient policies with random restrictions, plus fully random ones,
/// so that every verdict is reachable.
fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop_oneof![lenient_policy(), random_policy()]
}

fn lenient_policy() -> impl Strategy<Value = Policy> {
    (
        random_policy(),
        prop::collection::vec(prop::sample::select(EXES).prop_map(str::to_owned), 0..2),
        any::<bool>(),
    )
        .prop_map(|(random, dropped, keep_manual)| Policy {
            allow_commands: EXES
                .iter()
                .map(|s| (*s).to_owned())
                .filter(|e| !dropped.contains(e))
                .collect(),
            allowed_effect_types: vec![
                EffectType::Observe,
                EffectType::TransformLocal,
                EffectType::FetchExternal,
                EffectType::MutateRepo,
                EffectType::Deploy,
                EffectType::TouchSecrets,
            ],
            manual_approval_for_classified_effect_types: if keep_manual {
                random.manual_approval_for_classified_effect_types.clone()
            } else {
                vec![]
            },
            allowed_risk_classes: vec![RiskClass::Low, RiskClass::Medium, RiskClass::High],
            max_timeout_sec: 86_400,
            network: NetworkMode::Full,
            allow_secret_refs: true,
            allowed_cwd_prefixes: vec!["/".into()],
            allowed_read_prefixes: vec!["/".into(), "c:/".into()],
            require_write_paths_empty: false,
            allowed_write_prefixes: vec!["/workspace".into(), "/".into()],
            ..random
        })
}

fn random_policy() -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec(word(), 1..6),
        prop::collection::vec(argv(), 0..3),
        prop::collection::vec(effect(), 1..6),
        prop::collection::vec(
            prop_oneof![
                Just("financial_action".to_owned()),
                Just("fetch_external".to_owned()),
                Just("deploy".to_owned())
            ],
            0..3,
        ),
        prop::collection::vec(risk(), 1..4),
        prop_oneof![Just(1u64), Just(60), Just(3600)],
        network(),
        any::<bool>(),
        (
            prop::collection::vec(path(), 1..3),
            prop::collection::vec(path(), 1..3),
            any::<bool>(),
            prop::collection::vec(path(), 0..3),
            prop::collection::vec(
                prop_oneof![
                    Just("api.stripe.com".to_owned()),
                    Just("example.com".to_owned())
                ],
                0..2,
            ),
        ),
    )
        .prop_map(
            |(
                allow,
                deny,
                effects,
                manual,
                risks,
                max_t,
                net,
                secrets,
                (cwd, read, wempty, write, egress),
            )| {
                Policy {
                    policy_schema_version: None,
                    name: "random".into(),
                    allow_commands: allow,
                    deny_argv_prefixes: deny,
                    allowed_effect_types: effects,
                    manual_approval_for_classified_effect_types: manual,
                    allowed_risk_classes: risks,
                    max_timeout_sec: max_t,
                    network: net,
                    allow_secret_refs: secrets,
                    allowed_cwd_prefixes: cwd,
                    allowed_read_prefixes: read,
                    require_write_paths_empty: wempty,
                    allowed_write_prefixes: write,
                    allowed_egress_hosts: egress,
                }
            },
        )
}

#[test]
fn generators_reach_every_verdict_and_some_mutants_load() {
    // The properties above are only meaningful if the generators produce
    // allowed decisions and loadable mutants; check that they do.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let c = contract_strategy().new_tree(&mut runner).unwrap().current();
        let p = policy_strategy().new_tree(&mut runner).unwrap().current();
        seen.insert(engine::evaluate(&c, &p).decision.as_str());
    }
    assert_eq!(seen.len(), 3, "verdicts reached: {seen:?}");
    let docs = example_contracts();
    let mut loaded = 0;
    for _ in 0..256 {
        let edits = prop::collection::vec(edit(), 1..4)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let doc: Value = serde_json::from_slice(&docs[loaded % docs.len()]).unwrap();
        if load::contract_from_bytes(&mutate(&doc, &edits), "m").is_ok() {
            loaded += 1;
        }
    }
    assert!(loaded > 0, "no mutated contract ever loaded");
}
