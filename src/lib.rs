//! csc — Command Scope Contract runner.
//!
//! An agent submits a JSON contract (argv arrays, declared scopes, effect
//! type); csc checks it against a trusted policy, runs it if allowed, and
//! records the outcome in an Ed25519-signed receipt.
//!
//! # Module map
//!
//! Layers, lowest first: a module uses only modules of lower layers, never
//! one of its own layer or above (checked by the `suite::layering` tests,
//! which also refuse file cycles inside a module).
//!
//! | Layer | Module | What it is |
//! |---|---|---|
//! | 0 | [`canonical`] | canonical JSON and SHA-256 digests (byte-identical to the reference) |
//! | 0 | [`exit`] | every exit code csc returns or records, in one place |
//! | 0 | [`text`] | making command-derived text safe to print |
//! | 0 | [`time`] | RFC 3339 timestamps in the reference's shape |
//! | 1 | [`fsutil`] | no-follow file-system helpers and file hashing |
//! | 1 | [`egress`] | allowlist proxy for `network: allowlisted` (given its descriptor receiver by `sandbox`) |
//! | 2 | [`protocol`] | v0.1 objects, JSON schemas, limits and loaders |
//! | 3 | [`engine`] | pure policy evaluation: contract + policy -> decision |
//! | 3 | [`evidence`] | keys, receipts and their artifacts, DSSE, keyrings, verification |
//! | 3 | [`sandbox`] | native kernel sandbox for hardened mode (starts the `egress` proxy) |
//! | 4 | [`conformance`] | fixture-suite runner over `engine` |
//! | 4 | [`approval`] | approval artifacts at run time and the single-use state store |
//! | 5 | [`exec`] | running contracts: resolution, env, launch, pipelines, capture, effects |
//! | 5 | [`ledger`] | receipt transparency log in the state store |
//! | 6 | [`state`] | the state store behind one trait: SQLite (embedded) or PostgreSQL (fleet) |
//! | 7 | [`cli`] | the command-line front end: clap, dispatch, exit codes |
//!
//! `unsafe` lives only in the crate-private `exec::sys` and `sandbox::sys`.
#![deny(unsafe_code)]

pub mod approval;
pub mod canonical;
pub mod cli;
pub mod conformance;
pub mod egress;
pub mod engine;
pub mod evidence;
pub mod exec;
pub mod exit;
pub mod fsutil;
pub mod ledger;
pub mod protocol;
pub mod sandbox;
pub mod state;
pub mod text;
pub mod time;

/// Version string recorded as `runner_version` in receipts.
pub const RUNNER_VERSION: &str = concat!("csc-rs/", env!("CARGO_PKG_VERSION"));
