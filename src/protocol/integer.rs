//! Integer fields as JSON Schema and the reference see them: `10` and `10.0`
//! are the same integer (draft 2020-12 treats an integral number as an
//! integer, and the reference's models coerce it). Anything fractional,
//! negative, non-finite or out of range is an error.

use serde::de::{Deserializer, Error, Visitor};
use std::fmt;

/// Deserialize a non-negative integer that may be written as `10` or `10.0`.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Lenient)
}

struct U64Lenient;

impl Visitor<'_> for U64Lenient {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format_args!("integer {v} is negative")))
    }
    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        // 2^64 as f64; every integral value below it converts exactly.
        const LIMIT: f64 = 18_446_744_073_709_551_616.0;
        if v.is_finite() && v.fract() == 0.0 && (0.0..LIMIT).contains(&v) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(v as u64)
        } else {
            Err(E::custom(format_args!("{v} is not a non-negative integer")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "u64_lenient")]
        n: u64,
    }

    fn parse(text: &str) -> Option<u64> {
        serde_json::from_str::<T>(text).ok().map(|t| t.n)
    }

    #[test]
    fn integral_floats_are_integers() {
        assert_eq!(parse(r#"{"n": 10}"#), Some(10));
        assert_eq!(parse(r#"{"n": 10.0}"#), Some(10));
        assert_eq!(parse(r#"{"n": 1e1}"#), Some(10));
    }

    #[test]
    fn everything_else_is_rejected() {
        for bad in ["10.5", "-1", "-1.0", "1e30", "\"10\"", "true", "null"] {
            assert_eq!(parse(&format!(r#"{{"n": {bad}}}"#)), None, "{bad}");
        }
    }
}
