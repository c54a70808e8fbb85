//! Evidence: Ed25519 keys and receipt signatures.

pub mod keys;
pub mod receipt;
pub mod signing;
