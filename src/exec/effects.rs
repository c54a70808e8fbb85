//! Evidence about effects: `files_written` and `artifacts`.
//!
//! `files_written` is measured, not declared: before the run csc records a
//! keyed 128-bit digest of (path, device, inode, size, mtime, ctime) of
//! every regular file under the literal prefix of each declared write scope;
//! after the run it streams the same walk and counts the regular files whose
//! digest is not in that set (new, replaced or changed). Memory is 16 bytes
//! per file seen before the run, bounded by the scan's entry budget, plus
//! O(depth) for the walk itself (see [`super::scan`]: `openat`-relative,
//! streaming, symlinks never followed, no crossing into other file systems,
//! entry/depth/time budgets).
//!
//! When either walk could not see everything, the count is a lower bound and
//! [`FilesWritten::lower_bound`] says why (the receipt then carries the
//! lower-bound marker of RFC 0007). If the walk before the run was cut
//! short, a file missing from the set counts only when its ctime is not
//! older than the run's start read on the kernel's coarse clock, the one
//! file times are stamped from (ctime cannot be set back without
//! `CAP_SYS_TIME`). Writes outside the declared scopes are not counted
//! (local mode does not confine them), a glob scope counts its whole
//! literal directory, and deleting a file is not counted as a write.

use std::path::Path;
use std::time::{Duration, Instant};

use super::scan::{Keyed, ScanLimits, Scanner, Seen, Shortfall, scan_roots};
/// One `artifacts` entry (the receipt type, filled in here).
pub use crate::evidence::receipt::Artifact;

/// Upper bound on directory entries visited per walk (default budget).
pub const MAX_ENTRIES: u64 = super::scan::DEFAULT_MAX_ENTRIES;

/// Regular files under the declared write scopes before the run.
#[derive(Debug, Clone)]
pub struct Snapshot {
    roots: Vec<String>,
    limits: ScanLimits,
    keyed: Keyed,
    /// Sorted digests of the files seen.
    keys: Vec<u128>,
    /// Coarse wall-clock time when the walk started (seconds, nanoseconds).
    started: (i64, i64),
    shortfall: Option<Shortfall>,
}

/// The measured `files_written`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesWritten {
    /// Files created or changed under the write scopes (as far as seen).
    pub count: u64,
    /// Why `count` is only a lower bound; `None` when it is exact.
    pub lower_bound: Option<String>,
}

/// The run's start on the clock file times come from; a reading error
/// (never seen) falls back to 0, which only makes the fallback count more.
fn now() -> (i64, i64) {
    super::sys::realtime_coarse().unwrap_or((0, 0))
}

impl Snapshot {
    /// Record the files under `write_paths` (declared scopes, may be globs)
    /// with the default budgets.
    pub fn take(write_paths: &[String]) -> Snapshot {
        Snapshot::take_with(write_paths, ScanLimits::default())
    }

    /// Record the files under `write_paths` within `limits` (each walk,
    /// before and after the run, gets the same budgets).
    pub fn take_with(write_paths: &[String], limits: ScanLimits) -> Snapshot {
        let roots = scan_roots(write_paths);
        let keyed = Keyed::default();
        let started = now();
        let mut keys = Vec::new();
        let shortfall = Scanner::new(limits, &keyed).scan(&roots, &mut |s: Seen| keys.push(s.key));
        keys.sort_unstable();
        keys.dedup();
        keys.shrink_to_fit();
        Snapshot {
            roots,
            limits,
            keyed,
            keys,
            started,
            shortfall,
        }
    }

    /// Walk the scopes again and count the files that are new or changed
    /// relative to this snapshot. Streams: nothing is stored per file.
    pub fn count_changed(&self) -> FilesWritten {
        let before_complete = self.shortfall.is_none();
        let mut count = 0u64;
        let after = Scanner::new(self.limits, &self.keyed).scan(&self.roots, &mut |s: Seen| {
            if self.keys.binary_search(&s.key).is_ok() {
                return;
            }
            if before_complete || s.ctime >= self.started {
                count += 1;
            }
        });
        let lower_bound = match (&self.shortfall, after) {
            (None, None) => None,
            (Some(b), None) => Some(format!("before the run, {b}")),
            (None, Some(a)) => Some(format!("after the run, {a}")),
            (Some(b), Some(a)) => Some(format!("before the run, {b}; after the run, {a}")),
        };
        FilesWritten { count, lower_bound }
    }

    /// Heap bytes held by the digest set (16 per file seen).
    pub fn digest_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<u128>()
    }
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
        assert_eq!(
            before.count_changed(),
            FilesWritten {
                count: 2,
                lower_bound: None
            }
        );
    }

    fn scope(dir: &Path) -> Vec<String> {
        vec![format!("{}/**", dir.display())]
    }

    #[test]
    fn symlinks_are_not_followed_and_deletions_are_not_writes() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("gone"), b"1").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let before = Snapshot::take(&scope(root));
        std::fs::write(outside.path().join("via-link"), b"x").unwrap();
        std::fs::remove_file(root.join("gone")).unwrap();
        assert_eq!(
            before.count_changed(),
            FilesWritten {
                count: 0,
                lower_bound: None
            }
        );
    }

    #[test]
    fn budgets_mark_the_count_as_a_lower_bound() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            std::fs::write(dir.path().join(i.to_string()), b"x").unwrap();
        }
        let limits = ScanLimits {
            max_entries: 10,
            ..ScanLimits::default()
        };
        let got = Snapshot::take_with(&scope(dir.path()), limits).count_changed();
        let why = got.lower_bound.unwrap();
        assert!(why.contains("budget of 10 entries"), "{why}");
        let limits = ScanLimits {
            max_time: std::time::Duration::ZERO,
            ..ScanLimits::default()
        };
        let got = Snapshot::take_with(&scope(dir.path()), limits).count_changed();
        assert!(got.lower_bound.unwrap().contains("time budget"));
        let limits = ScanLimits {
            max_depth: 1,
            ..ScanLimits::default()
        };
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let got = Snapshot::take_with(&scope(dir.path()), limits).count_changed();
        assert!(got.lower_bound.unwrap().contains("deeper than 1 levels"));
    }

    #[test]
    fn digest_memory_is_sixteen_bytes_per_file() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1000 {
            std::fs::write(dir.path().join(format!("{i:0>200}")), b"x").unwrap();
        }
        let snap = Snapshot::take(&scope(dir.path()));
        assert!(snap.digest_bytes() <= 1000 * 16, "{}", snap.digest_bytes());
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
