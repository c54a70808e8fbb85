//! The integration suite: one test binary (the crate is linked once), with
//! shared harnesses in `common` (CLI workspaces) and `support` (the sandbox
//! harness: root / uid 65534, skips) and one topic module per file in
//! `suite/`. Run one topic with `cargo test --test all suite::cli_mcp`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot set up or read back must fail loudly"
)]

mod common;
mod suite;
mod support;
