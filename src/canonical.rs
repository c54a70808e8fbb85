//! Canonical JSON and SHA-256 digests, byte-identical to the reference
//! implementation (`json.dumps(obj, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)`).
//!
//! Rules: object keys sorted by code point, no whitespace, non-ASCII kept as
//! UTF-8, control characters escaped (`\b \f \n \r \t`, else `\u00xx` with
//! lowercase hex), integers without a fraction, floats in Python `repr` form.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// How `null` members of objects are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// Keep `null` members (receipt signing payloads, policy hashes).
    Keep,
    /// Drop object members whose value is `null` (contract hashes).
    Drop,
}

/// Serialize `value` in canonical form.
pub fn to_canonical_bytes(value: &Value, nulls: Nulls) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, nulls);
    out
}

/// Lowercase hex SHA-256 of the canonical form of `value`.
pub fn sha256_hex_of(value: &Value, nulls: Nulls) -> String {
    sha256_hex(&to_canonical_bytes(value, nulls))
}

/// Lowercase hex SHA-256 of raw bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

fn write_value(out: &mut Vec<u8>, value: &Value, nulls: Nulls) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, nulls);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(_, v)| !(nulls == Nulls::Drop && v.is_null()))
                .collect();
            // UTF-8 byte order equals code point order.
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, v, nulls);
            }
            out.push(b'}');
        }
    }
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        out.extend_from_slice(python_float_repr(f).as_bytes());
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form when the
/// decimal exponent is < -4 or >= 16, otherwise positional with at least one
/// fractional digit.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` yields the shortest round-trip digits, e.g. "1.5e16", "-2e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat((-point) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if (point as usize) >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical_bytes(v, Nulls::Keep)).unwrap()
    }

    #[test]
    fn sorts_keys_by_code_point_and_strips_whitespace() {
        let v = json!({"b": 1, "a": [true, null], "é": "x", "Z": {}});
        assert_eq!(canon(&v), r#"{"Z":{},"a":[true,null],"b":1,"é":"x"}"#);
    }

    #[test]
    fn escapes_like_python() {
        let v = json!("q\"b\\n\n\t\r\u{8}\u{c}\u{1}\u{1f}\u{7f}é€😀");
        assert_eq!(
            canon(&v),
            "\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u0001\\u001f\u{7f}é€😀\""
        );
    }

    #[test]
    fn drop_nulls_only_when_asked() {
        let v = json!({"a": null, "b": {"c": null, "d": 1}});
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&v, Nulls::Drop)).unwrap(),
            r#"{"b":{"d":1}}"#
        );
        assert_eq!(canon(&v), r#"{"a":null,"b":{"c":null,"d":1}}"#);
    }

    #[test]
    fn floats_match_python_repr() {
        for (f, s) in [
            (60.0, "60.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (123.456, "123.456"),
        ] {
            assert_eq!(python_float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn empty_string_hash_is_known() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
