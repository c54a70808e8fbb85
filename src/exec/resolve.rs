//! Resolving `argv[0]` against the trusted search path.
//!
//! The search path is a fixed system default that only the operator can
//! change (`csc run --search-path`); neither the contract nor the caller's
//! environment influences it. An absolute `argv[0]` runs as is; a bare name
//! is looked up in each directory in order; a relative path containing `/`
//! is refused (it would depend on the cwd).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The default trusted search path.
pub const DEFAULT_SEARCH_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A validated trusted search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
    joined: String,
}

impl Default for SearchPath {
    fn default() -> Self {
        SearchPath::parse(DEFAULT_SEARCH_PATH).unwrap_or(SearchPath {
            dirs: Vec::new(),
            joined: String::new(),
        })
    }
}

impl SearchPath {
    /// Parse a `:`-separated list of absolute directories.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut dirs = Vec::new();
        for part in text.split(':') {
            if part.is_empty() || !part.starts_with('/') || part.contains('\0') {
                return Err(format!(
                    "search path entry {part:?} must be a non-empty absolute directory"
                ));
            }
            dirs.push(PathBuf::from(part));
        }
        Ok(SearchPath {
            dirs,
            joined: text.to_owned(),
        })
    }

    /// The value given to commands as `PATH`.
    pub fn as_env_value(&self) -> &str {
        &self.joined
    }
}

/// Why `argv[0]` cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum ResolveError {
    #[error("executable {name:?} not found in the trusted search path {path}{hint}")]
    NotFound {
        name: String,
        path: String,
        /// Where to look next: `--search-path`, and where the name is on
        /// the caller's `PATH` if it is there.
        hint: String,
    },
    #[error("{path} is not an executable regular file")]
    NotExecutable { path: String },
    #[error("executable {path} does not exist")]
    Missing { path: String },
    #[error(
        "argv[0] {name:?} is a relative path; use a bare name (looked up in the trusted search path) or an absolute path"
    )]
    Relative { name: String },
}

impl ResolveError {
    /// Exit code recorded for this failure (127 not found, 126 not runnable).
    pub fn exit_code(&self) -> i32 {
        match self {
            ResolveError::NotExecutable { .. } => crate::exit::NOT_RUNNABLE,
            _ => crate::exit::NOT_FOUND,
        }
    }
}

fn executable(path: &Path) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    Some(meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Resolve `argv0` to the file that will be executed.
pub fn resolve(argv0: &str, search: &SearchPath) -> Result<PathBuf, ResolveError> {
    if argv0.starts_with('/') {
        let path = PathBuf::from(argv0);
        return match executable(&path) {
            Some(true) => Ok(path),
            Some(false) => Err(ResolveError::NotExecutable {
                path: argv0.to_owned(),
            }),
            None => Err(ResolveError::Missing {
                path: argv0.to_owned(),
            }),
        };
    }
    if argv0.contains('/') || argv0.is_empty() || argv0 == "." || argv0 == ".." {
        return Err(ResolveError::Relative {
            name: argv0.to_owned(),
        });
    }
    let mut not_executable = None;
    for dir in &search.dirs {
        let candidate = dir.join(argv0);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) if not_executable.is_none() => not_executable = Some(candidate),
            _ => {}
        }
    }
    match not_executable {
        Some(p) => Err(ResolveError::NotExecutable {
            path: p.display().to_string(),
        }),
        None => Err(ResolveError::NotFound {
            name: argv0.to_owned(),
            path: search.joined.clone(),
            hint: not_found_hint(argv0, search, std::env::var_os("PATH").as_deref()),
        }),
    }
}

/// The hint of [`ResolveError::NotFound`]: where `name` is on the
/// caller's `PATH` (`caller_path`), and the `--search-path` value that
/// would trust that directory. The caller's `PATH` is only reported, never
/// used to run anything.
pub fn not_found_hint(
    name: &str,
    search: &SearchPath,
    caller_path: Option<&std::ffi::OsStr>,
) -> String {
    let found = caller_path
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| executable(p) == Some(true));
    match found.as_ref().and_then(|p| p.parent()) {
        Some(dir) => format!(
            "; it is {} on the caller's PATH: if that directory is trusted, the operator adds it with --search-path {}:{}",
            found
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            dir.display(),
            search.joined
        ),
        None => "; the operator sets the trusted search path with --search-path DIRS".to_owned(),
    }
}

/// An absolute `argv[0]` names a path, and what runs is whatever the
/// kernel resolves it to: when that differs (a symlink, possibly planted by
/// an earlier command), the target must itself be trusted: inside a
/// trusted search path directory or a system directory (`/usr`, `/bin`,
/// ...: operator-installed), or listed in `allow_commands`.
pub fn check_program_target(
    argv0: &str,
    program: &Path,
    search: &SearchPath,
    allow_commands: &[String],
) -> Result<(), String> {
    if !argv0.starts_with('/') {
        // Found on the operator's search path: trusted as it is.
        return Ok(());
    }
    let target = std::fs::canonicalize(program)
        .map_err(|e| format!("cannot resolve executable {argv0:?}: {e}"))?;
    if target == program {
        return Ok(());
    }
    let in_search_path = target.parent().is_some_and(|parent| {
        search
            .dirs
            .iter()
            .any(|d| std::fs::canonicalize(d).is_ok_and(|d| d == parent))
    });
    let in_system_dirs = crate::sandbox::SYSTEM_DIRS
        .iter()
        .any(|d| std::fs::canonicalize(d).is_ok_and(|d| target.starts_with(d)));
    let listed = allow_commands
        .iter()
        .any(|c| Path::new(c) == target.as_path());
    if in_search_path || in_system_dirs || listed {
        return Ok(());
    }
    Err(format!(
        "argv[0] {argv0:?} resolves to {:?}, which is neither in the trusted search path, a system directory, nor allow_commands [{}]",
        target.display().to_string(),
        super::scopes::RESOLVES_OUTSIDE_POLICY
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_bare_names_and_absolute_paths() {
        let sp = SearchPath::default();
        let sh = resolve("sh", &sp).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(resolve("/bin/sh", &sp).unwrap(), PathBuf::from("/bin/sh"));
        assert_eq!(
            resolve("no-such-tool-xyz", &sp).unwrap_err().exit_code(),
            crate::exit::NOT_FOUND
        );
        assert!(matches!(
            resolve("./sh", &sp),
            Err(ResolveError::Relative { .. })
        ));
        assert!(matches!(
            resolve("/etc/passwd", &sp),
            Err(ResolveError::NotExecutable { .. })
        ));
    }

    #[test]
    fn absolute_argv0_links_must_lead_somewhere_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let tool = root.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&tool, &link).unwrap();
        let sp = SearchPath::default();
        let l = link.to_str().unwrap();
        let err = check_program_target(l, &link, &sp, &[l.to_owned()]).unwrap_err();
        assert!(err.contains("CSC_RESOLVES_OUTSIDE_POLICY"), "{err}");
        let listed = [l.to_owned(), tool.to_string_lossy().into_owned()];
        assert!(check_program_target(l, &link, &sp, &listed).is_ok());
        assert!(check_program_target(tool.to_str().unwrap(), &tool, &sp, &[]).is_ok());
        // /bin/sh -> dash through /bin -> usr/bin: inside the search path.
        assert!(check_program_target("/bin/sh", Path::new("/bin/sh"), &sp, &[]).is_ok());
    }

    #[test]
    fn not_found_names_search_path_and_the_callers_copy() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool-xyz");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sp = SearchPath::default();
        let caller = format!("/nonexistent:{}", dir.path().display());
        let hint = not_found_hint("mytool-xyz", &sp, Some(caller.as_ref()));
        assert!(
            hint.contains(&format!("it is {} on the caller's PATH", tool.display()))
                && hint.contains(&format!(
                    "--search-path {}:{DEFAULT_SEARCH_PATH}",
                    dir.path().display()
                )),
            "{hint}"
        );
        let none = not_found_hint("mytool-xyz", &sp, Some("/nonexistent".as_ref()));
        assert!(none.contains("--search-path DIRS"), "{none}");
        let err = resolve("no-such-tool-xyz", &sp).unwrap_err().to_string();
        assert!(err.contains("--search-path"), "{err}");
    }

    #[test]
    fn search_path_must_be_absolute() {
        assert!(SearchPath::parse("/bin:relative").is_err());
        assert!(SearchPath::parse("/bin::/usr/bin").is_err());
        assert_eq!(
            SearchPath::parse("/opt/x").unwrap().as_env_value(),
            "/opt/x"
        );
    }
}
