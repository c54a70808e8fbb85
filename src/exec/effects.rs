//! Evidence about effects: `files_written` and `artifacts`.
//!
//! `files_written` is measured, not declared: before the run csc records
//! (device, inode, size, mtime, ctime) of every regular file under the
//! literal prefix of each declared write scope (symlinks are not followed,
//! at most [`MAX_ENTRIES`] entries); after the run it counts the regular
//! files there that appeared or whose record changed. Writes outside the
//! declared scopes are not counted (local mode does not confine them), and
//! a glob scope counts its whole literal directory.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::engine::paths::glob_literal_prefix;

/// Upper bound on directory entries visited per snapshot.
pub const MAX_ENTRIES: usize = 100_000;

type Stamp = (u64, u64, u64, i64, i64, i64, i64);

/// Regular files under the declared write scopes at one moment.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    files: HashMap<PathBuf, Stamp>,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

impl Snapshot {
    /// Record the files under `write_paths` (declared scopes, may be globs).
    pub fn take(write_paths: &[String]) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut budget = MAX_ENTRIES;
        let mut roots: Vec<&str> = write_paths
            .iter()
            .map(|p| glob_literal_prefix(p))
            .filter(|p| !p.is_empty())
            .collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            snap.walk(Path::new(root), &mut budget);
        }
        snap
    }

    fn walk(&mut self, root: &Path, budget: &mut usize) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(path) = stack.pop() {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                self.files.insert(path, stamp(&meta));
            } else if meta.is_dir()
                && let Ok(entries) = std::fs::read_dir(&path)
            {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }

    /// Files in `after` that are new or changed relative to `self`.
    pub fn changed_in(&self, after: &Snapshot) -> u64 {
        after
            .files
            .iter()
            .filter(|(p, s)| self.files.get(*p) != Some(s))
            .count() as u64
    }
}

/// One `artifacts` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// The expected output path, as declared.
    pub path: String,
    /// Lowercase hex SHA-256 of its content.
    pub sha256: String,
}

/// Hash every expected output present; list the problems with the rest.
pub fn collect_artifacts(expected: &[String]) -> (Vec<Artifact>, Vec<String>) {
    let mut artifacts = Vec::new();
    let mut problems = Vec::new();
    for path in expected {
        match crate::evidence::digest::sha256_regular_file(Path::new(path)) {
            Ok(sha256) => artifacts.push(Artifact {
                path: path.clone(),
                sha256,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("expected output missing: {path}"))
            }
            Err(e) => problems.push(format!("expected output {path} unreadable: {e}")),
        }
    }
    (artifacts, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_new_and_changed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("same"), b"1").unwrap();
        std::fs::write(root.join("changed"), b"1").unwrap();
        let scopes = vec![format!("{}/**", root.display())];
        let before = Snapshot::take(&scopes);
        std::fs::write(root.join("changed"), b"22").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/new"), b"x").unwrap();
        let after = Snapshot::take(&scopes);
        assert_eq!(before.changed_in(&after), 2);
    }

    #[test]
    fn artifacts_hash_present_and_report_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"abc").unwrap();
        let (a, p) = collect_artifacts(&[
            f.display().to_string(),
            dir.path().join("b").display().to_string(),
        ]);
        assert_eq!(
            a[0].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("missing"));
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (a, p) = collect_artifacts(&[fifo.display().to_string()]);
        assert!(a.is_empty() && p[0].contains("not a regular file"), "{p:?}");
    }
}
