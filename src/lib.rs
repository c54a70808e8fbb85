//! csc — Command Scope Contract runner.
//!
//! An agent submits a JSON contract (argv arrays, declared scopes, effect
//! type); csc checks it against a trusted policy, runs it if allowed, and
//! records the outcome in an Ed25519-signed receipt.
//!
//! Layout: [`protocol`] (objects, schemas, loaders), [`canonical`] (hashes),
//! [`engine`] (pure policy evaluation), [`conformance`] (fixture suites),
//! [`sandbox`] (native kernel sandbox for hardened mode), [`cli`] (the
//! command-line front end).
#![deny(unsafe_code)]

pub mod approval;
pub mod canonical;
pub mod cli;
pub mod conformance;
pub mod egress;
pub mod engine;
pub mod evidence;
pub mod exec;
pub mod fsutil;
pub mod ledger;
pub mod protocol;
pub mod sandbox;
pub mod state;
pub mod text;
pub mod time;

/// Version string recorded as `runner_version` in receipts.
pub const RUNNER_VERSION: &str = concat!("csc-rs/", env!("CARGO_PKG_VERSION"));
