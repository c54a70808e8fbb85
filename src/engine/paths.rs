//! Path flavours, normalization and prefix matching, exactly as the
//! reference decides them (Python 3.11 `PurePosixPath` / `PureWindowsPath`).
//!
//! - A path starting with `//` or `\\`, or with `X:\` / `X:/`, is Windows
//!   flavour; anything else is POSIX flavour.
//! - POSIX: `//` collapsed, `.` segments dropped, `..` kept, case kept.
//! - Windows: separators become `/`, case folded, drive + root required
//!   for the path to count as absolute.
//! - Different flavours never match (fail closed).

/// Which path syntax a string uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `/`-rooted POSIX paths.
    Posix,
    /// Drive-letter or UNC Windows paths.
    Windows,
}

/// A path that is not absolute in its flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAbsolute(pub String);

impl std::fmt::Display for NotAbsolute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path must be absolute: {}", self.0)
    }
}

/// Detect the flavour of `path` (reference `_detect_path_flavour`).
pub fn flavour(path: &str) -> Flavour {
    if path.starts_with("\\\\") || path.starts_with("//") {
        return Flavour::Windows;
    }
    let mut chars = path.chars();
    let (_, second, third) = (chars.next(), chars.next(), chars.next());
    if second == Some(':') && matches!(third, Some('\\') | Some('/')) {
        return Flavour::Windows;
    }
    Flavour::Posix
}

/// Normalize an absolute path to its comparison form.
pub fn normalize(path: &str) -> Result<(Flavour, String), NotAbsolute> {
    match flavour(path) {
        Flavour::Posix => normalize_posix(path)
            .map(|p| (Flavour::Posix, p))
            .ok_or_else(|| NotAbsolute(path.to_owned())),
        Flavour::Windows => normalize_windows(path)
            .map(|p| (Flavour::Windows, p))
            .ok_or_else(|| NotAbsolute(path.to_owned())),
    }
}

/// `str(PurePosixPath(path))` for absolute paths; `None` when relative.
fn normalize_posix(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let stripped = path.trim_start_matches('/');
    // POSIX keeps exactly two leading slashes (implementation-defined root).
    let root = if path.len() - stripped.len() == 2 {
        "//"
    } else {
        "/"
    };
    let parts: Vec<&str> = stripped
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    Some(format!("{root}{}", parts.join("/")))
}

/// `PureWindowsPath(path).as_posix().lower()` for absolute paths.
fn normalize_windows(path: &str) -> Option<String> {
    let part = path.replace('/', "\\");
    let (drive, root, rel) = split_windows_root(&part);
    if drive.is_empty() || root.is_empty() {
        return None;
    }
    let parts: Vec<&str> = rel
        .split('\\')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let joined = format!("{drive}{root}{}", parts.join("\\"));
    Some(joined.replace('\\', "/").to_lowercase())
}

/// Python 3.11 `_WindowsFlavour.splitroot` on a backslash-only string.
fn split_windows_root(part: &str) -> (String, String, String) {
    let sep = '\\';
    let mut prefix = String::new();
    let mut part = part.to_owned();
    let starts_double = part.starts_with("\\\\");
    if starts_double {
        // Extended-length paths: \\?\C:\x and \\?\UNC\host\share.
        if let Some(rest) = part.strip_prefix("\\\\?\\") {
            prefix.push_str("\\\\?\\");
            let rest = rest.to_owned();
            if let Some(unc) = rest.strip_prefix("UNC\\") {
                prefix.push_str("UNC");
                part = format!("\\{unc}");
            } else {
                part = rest;
            }
        }
    }
    let chars: Vec<char> = part.chars().collect();
    let first = chars.first().copied();
    let second = chars.get(1).copied();
    let third = chars.get(2).copied();
    if first == Some(sep) && second == Some(sep) && third != Some(sep) {
        // UNC: \\machine\mountpoint\rest
        if let Some(index) = find_from(&chars, sep, 2) {
            let index2 = find_from(&chars, sep, index + 1);
            if index2 != Some(index + 1) {
                let end = index2.unwrap_or(chars.len());
                let drv: String = if prefix.is_empty() {
                    chars[..end].iter().collect()
                } else {
                    format!("{prefix}{}", chars[1..end].iter().collect::<String>())
                };
                let rest: String = chars.get(end + 1..).unwrap_or(&[]).iter().collect();
                return (drv, sep.to_string(), rest);
            }
        }
    }
    let mut drv = String::new();
    let mut idx = 0;
    let mut first = first;
    if second == Some(':') && first.is_some_and(|c| c.is_ascii_alphabetic()) {
        drv = chars[..2].iter().collect();
        idx = 2;
        first = third;
    }
    let mut root = String::new();
    let mut rest: String = chars[idx..].iter().collect();
    if first == Some(sep) {
        root.push(sep);
        rest = rest.trim_start_matches(sep).to_owned();
    }
    (format!("{prefix}{drv}"), root, rest)
}

fn find_from(chars: &[char], needle: char, start: usize) -> Option<usize> {
    chars
        .iter()
        .skip(start)
        .position(|&c| c == needle)
        .map(|p| p + start)
}

/// Is `path` under any of `prefixes`? Errors when `path` or a prefix is not
/// absolute (the reference raises on the first non-absolute prefix it meets).
pub fn within_prefixes(path: &str, prefixes: &[String]) -> Result<bool, NotAbsolute> {
    let (path_flavour, norm_path) = normalize(path)?;
    for prefix in prefixes {
        let (prefix_flavour, norm_prefix) = normalize(prefix)?;
        if prefix_flavour != path_flavour {
            continue;
        }
        let norm_prefix = norm_prefix.trim_end_matches('/');
        if norm_path == norm_prefix
            || (norm_path.starts_with(norm_prefix)
                && norm_path[norm_prefix.len()..].starts_with('/'))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Literal directory prefix of a declared scope before the first glob
/// metacharacter (`*`, `?`, `[`); the whole path when it has none.
pub fn glob_literal_prefix(path: &str) -> &str {
    match path.find(['*', '?', '[']) {
        None => path,
        Some(i) => {
            let head = &path[..i];
            match head.rfind(['/', '\\']) {
                Some(sep) => &path[..sep],
                None => "",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Option<String> {
        normalize(p).ok().map(|(_, s)| s)
    }

    #[test]
    fn posix_normalization_matches_purepath() {
        assert_eq!(norm("/a/./b//c/").as_deref(), Some("/a/b/c"));
        assert_eq!(norm("///a"), None); // `//` prefix is Windows flavour, no drive
        assert_eq!(norm("/a/../b").as_deref(), Some("/a/../b"));
        assert_eq!(norm("/").as_deref(), Some("/"));
        assert_eq!(norm("/.").as_deref(), Some("/"));
        assert_eq!(norm("relative/x"), None);
        assert_eq!(norm(""), None);
    }

    #[test]
    fn windows_normalization_matches_purewindowspath() {
        assert_eq!(norm("//host").as_deref(), None);
        assert_eq!(norm("//host/share").as_deref(), Some("//host/share/"));
        assert_eq!(norm("\\\\host").as_deref(), None);
        assert_eq!(norm("C:/").as_deref(), Some("c:/"));
        assert_eq!(norm("C:\\a\\..\\b").as_deref(), Some("c:/a/../b"));
        assert_eq!(norm("c:/A/./b//c/").as_deref(), Some("c:/a/b/c"));
        assert_eq!(norm("//a//b"), None);
        assert_eq!(
            norm("\\\\Srv\\Share\\Dir").as_deref(),
            Some("//srv/share/dir")
        );
    }

    #[test]
    fn prefix_matching() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(within_prefixes("/work/x", &p(&["/work"])), Ok(true));
        assert_eq!(within_prefixes("/work", &p(&["/work/"])), Ok(true));
        assert_eq!(within_prefixes("/workshop", &p(&["/work"])), Ok(false));
        assert_eq!(within_prefixes("/anything", &p(&["/"])), Ok(true));
        assert_eq!(within_prefixes("/Work/x", &p(&["/work"])), Ok(false));
        assert_eq!(within_prefixes("C:\\Work\\x", &p(&["c:/work"])), Ok(true));
        assert_eq!(within_prefixes("C:/work", &p(&["/"])), Ok(false));
        assert_eq!(within_prefixes("/work", &p(&["C:/"])), Ok(false));
        assert!(within_prefixes("work", &p(&["/"])).is_err());
        assert!(within_prefixes("/work", &p(&["rel"])).is_err());
    }

    #[test]
    fn glob_prefix() {
        assert_eq!(glob_literal_prefix("/workspace/out/**"), "/workspace/out");
        assert_eq!(
            glob_literal_prefix("/workspace/out/*.log"),
            "/workspace/out"
        );
        assert_eq!(glob_literal_prefix("/workspace/out"), "/workspace/out");
        assert_eq!(glob_literal_prefix("*"), "");
        assert_eq!(glob_literal_prefix("/a[b]/c"), "");
    }
}
