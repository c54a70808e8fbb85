//! The crate's layering (issue 13): every `crate::`/`super::` reference in
//! production code (before a file's `#[cfg(test)]`) goes to a module in a
//! lower layer, and no two files of one module use each other in a cycle.
//! The layer table is the one in `src/lib.rs` and the README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first (keep in step with src/lib.rs).
const LAYERS: &[&[&str]] = &[
    &["canonical", "exit", "text", "time"],
    &["fsutil", "egress"],
    &["protocol"],
    &["engine", "evidence", "sandbox"],
    &["conformance", "approval"],
    &["exec", "ledger"],
    &["state"],
    &["cli"],
];

fn rank(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Module path (`["exec", "spawn"]`) of every `.rs` file under `src/`.
fn files(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            files(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut p = prefix.to_vec();
            if name != "mod" {
                p.push(name);
            }
            out.push((p, path));
        }
    }
}

/// Production code of a file: up to its first `#[cfg(test)]`, comments removed.
fn production(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Up to two path segments (`a::b`) at the start of `s`.
fn segments(s: &str) -> Vec<String> {
    let first = ident_at(s);
    let mut out = vec![first.to_string()];
    if let Some(rest) = s[first.len()..].strip_prefix("::") {
        let second = ident_at(rest);
        if !second.is_empty() {
            out.push(second.to_string());
        }
    }
    out
}

/// Paths referenced right after each occurrence of `prefix` (`a::b` in
/// `prefix a::b::…`, and every item in `prefix {a, b::c}`), `self` left out.
fn names_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let items: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for item in items {
            let seg = segments(item);
            if !seg[0].is_empty() && seg[0] != "self" {
                out.push(seg);
            }
        }
    }
    out
}

/// File-level edges: module path -> module paths of files it references.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &[], &mut all);
    let known: BTreeSet<Vec<String>> = all.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeMap::new();
    for (module, path) in &all {
        if module.is_empty() || module == &["lib"] || module == &["main"] {
            continue;
        }
        let code = production(path);
        let mut to = BTreeSet::new();
        for seg in names_after(&code, "crate::") {
            let top = vec![seg[0].clone()];
            to.insert(if known.contains(&seg) { seg } else { top });
        }
        // `super` of `a/b.rs` is `a`; of `a/mod.rs` and `a.rs` the root.
        let parent: Vec<String> = module[..module.len() - 1].to_vec();
        for seg in names_after(&code, "super::") {
            let mut m = parent.clone();
            m.push(seg[0].clone());
            if known.contains(&m) {
                to.insert(m);
            }
        }
        to.remove(module);
        edges.insert(module.clone(), to);
    }
    edges
}

#[test]
fn every_top_level_module_has_a_layer() {
    for module in graph().keys() {
        assert!(
            rank(&module[0]).is_some(),
            "src/{} is in no layer: add it to LAYERS here and to the module map in src/lib.rs",
            module[0]
        );
    }
}

#[test]
fn modules_only_use_lower_layers() {
    let mut wrong = Vec::new();
    for (from, to) in graph() {
        for t in to {
            if from[0] == t[0] {
                continue;
            }
            let (Some(a), Some(b)) = (rank(&from[0]), rank(&t[0])) else {
                continue;
            };
            if b >= a {
                wrong.push(format!("{} -> {}", from.join("::"), t.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "upward or sideways uses: {wrong:#?}");
}

#[test]
fn no_file_cycles_within_a_module() {
    let g = graph();
    // Depth-first search for a back edge among files of one top module.
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        path: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(n.clone(), 1);
        path.push(n.clone());
        for t in g.get(n).into_iter().flatten() {
            if t[0] != n[0] {
                continue;
            }
            match state.get(t) {
                Some(1) => {
                    let at = path.iter().position(|p| p == t).unwrap_or(0);
                    return Some(path[at..].iter().map(|p| p.join("::")).collect());
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(t, g, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n) {
            let cycle = visit(n, &g, &mut state, &mut Vec::new());
            assert!(cycle.is_none(), "file cycle: {cycle:?}");
        }
    }
}

#[test]
fn the_checker_sees_a_planted_upward_use() {
    // The parser itself: a grouped `use` and a plain path are both seen.
    let code = "use crate::{exec, cli::run};\nlet x = crate::ledger::db::open();";
    assert_eq!(
        names_after(code, "crate::"),
        [vec!["exec"], vec!["cli", "run"], vec!["ledger", "db"]]
    );
    assert_eq!(
        names_after("use super::{a, b::c};", "super::"),
        [vec!["a"], vec!["b", "c"]]
    );
}
