//! The v0.1 protocol objects, their schemas, limits and loaders.

pub mod approval;
pub mod contract;
pub mod decision;
pub mod explain_schema;
pub mod integer;
pub mod limits;
pub mod load;
pub mod policy;
pub mod schema;
pub mod strict_json;
pub mod yaml11;
