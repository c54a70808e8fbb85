//! Evidence: Ed25519 keys, receipt signatures, keyrings and verification.

pub mod attest;
pub mod dsse;
pub mod keygen;
pub mod keyring;
pub mod keys;
pub mod ledger_log;
pub mod receipt;
pub mod signing;
pub mod verify;
