//! `CSC_REQUIRE_SANDBOX=1` (set by `.ci/run`): a kernel-feature test that
//! would skip fails instead, so a broken sandbox cannot pass CI quietly.

use std::io::Write as _;

/// Name of the variable that turns kernel-feature skips into failures.
pub const REQUIRE_VAR: &str = "CSC_REQUIRE_SANDBOX";

/// Whether kernel-feature skips must fail.
pub fn required() -> bool {
    std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1")
}

/// Report a skipped kernel-feature test: a loud `SKIP:` line (bypassing
/// libtest's capture), or a panic when [`required`].
pub fn skip_or_fail(message: &str) {
    if required() {
        panic!("{REQUIRE_VAR}=1 but this test cannot run here: {message}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {message}");
}
