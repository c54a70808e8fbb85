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
use std::time::{Duration, Instant};

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

/// Default of `--artifact-max-bytes`: 1 GiB hashed over all expected
/// outputs of one run (a few seconds of SHA-256 on current hardware).
pub const DEFAULT_ARTIFACT_MAX_BYTES: u64 = 1 << 30;
/// Hashing gets at least this long even when the contract's time budget
/// is already used up.
pub const MIN_ARTIFACT_TIME: Duration = Duration::from_secs(1);
const HASH_CHUNK: usize = 1 << 20;

/// Bounds on artifact hashing.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactLimits {
    /// Bytes hashed over all expected outputs together.
    pub max_bytes: u64,
    /// Hashing stops here.
    pub deadline: Instant,
}

enum HashStop {
    Io(std::io::Error),
    Bytes { size: u64, left: u64 },
    Deadline,
}

fn hash_bounded(path: &str, budget: &mut u64, deadline: Instant) -> Result<String, HashStop> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let file = crate::fsutil::open_regular_nofollow(Path::new(path)).map_err(HashStop::Io)?;
    let size = file.metadata().map_err(HashStop::Io)?.len();
    if size > *budget {
        return Err(HashStop::Bytes {
            size,
            left: *budget,
        });
    }
    // Never more than the budget, even if the file grows meanwhile.
    let mut reader = file.take(budget.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut total = 0u64;
    loop {
        if Instant::now() >= deadline {
            return Err(HashStop::Deadline);
        }
        let n = reader.read(&mut buf).map_err(HashStop::Io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > *budget {
            return Err(HashStop::Bytes {
                size: total,
                left: *budget,
            });
        }
        hasher.update(&buf[..n]);
    }
    *budget -= total;
    Ok(crate::canonical::hex(&hasher.finalize()))
}

/// Hash every expected output present; list the problems with the rest.
///
/// Each path is opened without following a symlink in any component and
/// must be a regular file. Hashing is bounded by `limits`: a file larger
/// than what is left of the byte budget is not read, and hashing stops at
/// the deadline. An output that is not hashed is left out of `artifacts`
/// (the v0.1 item has only `path` and `sha256`; a hash is never faked) and
/// the reason is listed.
pub fn collect_artifacts(
    expected: &[String],
    limits: &ArtifactLimits,
) -> (Vec<Artifact>, Vec<String>) {
    let mut artifacts = Vec::new();
    let mut problems = Vec::new();
    let mut budget = limits.max_bytes;
    for path in expected {
        if !path.starts_with('/') || path.starts_with("//") {
            problems.push(format!(
                "expected output {path} not hashed: not an absolute POSIX path"
            ));
            continue;
        }
        match hash_bounded(path, &mut budget, limits.deadline) {
            Ok(sha256) => artifacts.push(Artifact {
                path: path.clone(),
                sha256,
            }),
            Err(HashStop::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("expected output missing: {path}"))
            }
            Err(HashStop::Io(e)) => problems.push(format!("expected output {path} unreadable: {e}")),
            Err(HashStop::Bytes { size, left }) => problems.push(format!(
                "expected output {path} not hashed: {size} bytes exceed the {left} bytes left of --artifact-max-bytes {}",
                limits.max_bytes
            )),
            Err(HashStop::Deadline) => problems.push(format!(
                "expected output {path} not hashed: the contract's time budget for hashing artifacts ran out"
            )),
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

    fn limits(max_bytes: u64) -> ArtifactLimits {
        ArtifactLimits {
            max_bytes,
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    #[test]
    fn artifacts_are_bounded_and_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let f = root.join("f");
        std::fs::write(&f, b"abc").unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let f = f.display().to_string();
        // The budget is shared: the second listing of the file does not fit.
        let (a, p) = collect_artifacts(
            &[f.clone(), f.clone(), link.display().to_string()],
            &limits(5),
        );
        assert_eq!(a.len(), 1);
        assert!(p[0].contains("--artifact-max-bytes"), "{p:?}");
        assert!(p[1].contains("symlink"), "{p:?}");
        let past = ArtifactLimits {
            max_bytes: 1 << 20,
            deadline: Instant::now(),
        };
        let (a, p) = collect_artifacts(&[f], &past);
        assert!(a.is_empty() && p[0].contains("time budget"), "{p:?}");
    }

    #[test]
    fn artifacts_hash_present_and_report_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"abc").unwrap();
        let (a, p) = collect_artifacts(
            &[
                f.display().to_string(),
                dir.path().join("b").display().to_string(),
            ],
            &limits(1 << 20),
        );
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
        let (a, p) = collect_artifacts(&[fifo.display().to_string()], &limits(1 << 20));
        assert!(a.is_empty() && p[0].contains("not a regular file"), "{p:?}");
    }
}
