//! The build profiles in Cargo.toml: `dist` (shipped binaries) must not
//! inherit the quick-build optimization levels of `release`.
//!
//! A custom profile inherits the package overrides of the profile it
//! names, and a named override wins over `dist`'s `"*"`. So every package
//! `release` names must be named again in `dist` at opt-level 3, or the
//! shipped binary silently builds that dependency at `release`'s level.

use std::collections::BTreeMap;

/// `name = { opt-level = N }` lines of the `[profile.<profile>.package]`
/// table, in file order.
fn package_levels(manifest: &str, profile: &str) -> BTreeMap<String, String> {
    let header = format!("[profile.{profile}.package]");
    let mut levels = BTreeMap::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = line.split_once('=').expect("name = { … }");
        let level = rest
            .split("opt-level")
            .nth(1)
            .and_then(|r| r.split_once('=').map(|(_, v)| v))
            .map(|v| v.trim().trim_end_matches('}').trim().to_string())
            .unwrap_or_else(|| panic!("no opt-level in `{line}`"));
        levels.insert(name.trim().trim_matches('"').to_string(), level);
    }
    levels
}

fn manifest() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap()
}

#[test]
fn dist_overrides_every_package_release_names_at_opt_level_3() {
    let manifest = manifest();
    let release = package_levels(&manifest, "release");
    let dist = package_levels(&manifest, "dist");
    assert!(
        release.contains_key("*"),
        "release has no \"*\" override: {release:?}"
    );
    for name in release.keys() {
        assert_eq!(
            dist.get(name).map(String::as_str),
            Some("3"),
            "[profile.dist.package] must set {name} = {{ opt-level = 3 }} \
             (release sets it to {}; dist inherits release's overrides)",
            release[name]
        );
    }
    assert!(
        dist.values().all(|l| l == "3"),
        "every dist override is opt-level 3: {dist:?}"
    );
}

#[test]
fn the_parser_sees_a_missing_dist_override() {
    let manifest = "[profile.release.package]\n\"*\" = { opt-level = 0 }\nsha2 = { opt-level = 2 }\n\n\
                    [profile.dist.package]\n\"*\" = { opt-level = 3 }\n";
    let release = package_levels(manifest, "release");
    let dist = package_levels(manifest, "dist");
    assert_eq!(release.get("sha2").map(String::as_str), Some("2"));
    assert!(!dist.contains_key("sha2"));
}
