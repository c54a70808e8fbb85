//! Scalars that YAML 1.1 and csc's YAML parser read differently.
//!
//! The Python reference loads policies with PyYAML, which implements the
//! YAML 1.1 resolver: `010` is the integer 8, `0o17`, `1e1` and `1_0e1`
//! are strings, `1:30` is 90, `2026-01-01` is a date, `<<` merges. csc's
//! parser follows YAML 1.2 for most of these. A policy whose meaning
//! depends on the parser could turn a deny into an allow, so csc refuses
//! every scalar the two read differently ([`check`]), naming its line and
//! column; quoting the scalar makes it an unambiguous string for both.
//!
//! What is compared, per scalar (after the document parsed):
//! - plain scalars in value/sequence position: PyYAML's type and value
//!   ([`reference`]) against csc's ([`CscScalar`], computed by csc's own
//!   parser on the scalar alone);
//! - plain mapping keys: csc always reads keys as text, so PyYAML must
//!   resolve the key to a string too;
//! - explicit tags: `!!str` and `!` anywhere; `!!int`, `!!float`,
//!   `!!bool`, `!!null` on plain scalars (compared as above, with PyYAML's
//!   constructor for the tag); `!!map` / `!!seq` on collections; any other
//!   tag is refused;
//! - aliases as mapping keys are refused (their key type would depend on
//!   the anchored node).

use granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// What PyYAML (YAML 1.1, `SafeLoader`) makes of a scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// `None`.
    Null,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` (`None`: outside `i128`).
    Int(Option<i128>),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str,
    /// Something a JSON policy cannot hold, or a load error: a timestamp,
    /// a merge key, the `=` value key, a failing constructor.
    Other(&'static str),
}

/// What csc's parser makes of a scalar (in value position).
#[derive(Debug, Clone, PartialEq)]
pub enum CscScalar {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str,
    /// A collection or a parse failure (never equal to a scalar).
    Other,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Null => write!(f, "null"),
            Reference::Bool(b) => write!(f, "the boolean {b}"),
            Reference::Int(Some(i)) => write!(f, "the integer {i}"),
            Reference::Int(None) => write!(f, "an integer too large for JSON"),
            Reference::Float(x) => write!(f, "the number {x:?}"),
            Reference::Str => write!(f, "a string"),
            Reference::Other(what) => write!(f, "{what}"),
        }
    }
}

impl std::fmt::Display for CscScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CscScalar::Null => write!(f, "null"),
            CscScalar::Bool(b) => write!(f, "the boolean {b}"),
            CscScalar::Int(i) => write!(f, "the integer {i}"),
            CscScalar::Float(x) => write!(f, "the number {x:?}"),
            CscScalar::Str => write!(f, "a string"),
            CscScalar::Other => write!(f, "something else"),
        }
    }
}

/// A scalar the two parsers read differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Ambiguity {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The scalar as written (without quotes).
    pub text: String,
    /// Why it is refused.
    pub reason: String,
}

impl std::fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ambiguous YAML scalar {:?} at line {} column {}: {}",
            self.text, self.line, self.column, self.reason
        )
    }
}

fn digits_only(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// PyYAML's `construct_yaml_int` (conservative: anything Python would
/// parse in a way not modelled here is `Other`).
fn construct_int(text: &str) -> Reference {
    let value: String = text.chars().filter(|&c| c != '_').collect();
    let neg = value.starts_with('-');
    let body = value.strip_prefix(['-', '+']).unwrap_or(&value);
    let apply = |v: Option<i128>| Reference::Int(v.map(|v| if neg { -v } else { v }));
    let radix = |digits: &str, r: u32| {
        if digits_only(digits, r) {
            apply(i128::from_str_radix(digits, r).ok())
        } else {
            Reference::Other("an integer PyYAML cannot construct")
        }
    };
    if body == "0" {
        Reference::Int(Some(0))
    } else if let Some(d) = body.strip_prefix("0b") {
        radix(d, 2)
    } else if let Some(d) = body.strip_prefix("0x") {
        radix(d, 16)
    } else if body.starts_with('0') {
        radix(body, 8)
    } else if body.contains(':') {
        let mut total: Option<i128> = Some(0);
        for part in body.split(':') {
            if !digits_only(part, 10) {
                return Reference::Other("an integer PyYAML cannot construct");
            }
            let p = part.parse::<i128>().ok();
            total = total
                .and_then(|t| t.checked_mul(60))
                .and_then(|t| p.and_then(|p| t.checked_add(p)));
        }
        apply(total)
    } else {
        radix(body, 10)
    }
}

/// PyYAML's `construct_yaml_float`.
fn construct_float(text: &str) -> Reference {
    let value: String = text
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let neg = value.starts_with('-');
    let body = value.strip_prefix(['-', '+']).unwrap_or(&value);
    let sign = if neg { -1.0 } else { 1.0 };
    if body == ".inf" {
        return Reference::Float(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Reference::Float(f64::NAN);
    }
    let plain_float = |s: &str| -> Option<f64> {
        // Python's float(): digits, one dot, optional exponent.
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
            && s.chars().any(|c| c.is_ascii_digit());
        if ok { s.parse::<f64>().ok() } else { None }
    };
    if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            match plain_float(part) {
                Some(p) => total = total * 60.0 + p,
                None => return Reference::Other("a number PyYAML cannot construct"),
            }
        }
        return Reference::Float(sign * total);
    }
    match plain_float(body) {
        Some(v) => Reference::Float(sign * v),
        None => Reference::Other("a number PyYAML cannot construct"),
    }
}

fn bool_value(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

// The implicit resolvers of PyYAML's `resolver.py`, as hand-written
// matchers of their regular expressions.

fn is_yaml11_bool(s: &str) -> bool {
    matches!(
        s,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

/// `[0-9_]*` (possibly empty).
fn digits_us(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// `[0-9][0-9_]*`.
fn digit_then_us(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) && digits_us(s)
}

/// `(?:[eE][-+][0-9]+)?` — the whole of `s`.
fn opt_exponent(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let Some(rest) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let Some(digits) = rest.strip_prefix(['-', '+']) else {
        return false;
    };
    digits_only(digits, 10)
}

/// `(?::[0-5]?[0-9])+` — the whole of `s`.
fn sexagesimal_tail(s: &str) -> bool {
    if !s.starts_with(':') {
        return false;
    }
    s[1..].split(':').all(|p| {
        let b = p.as_bytes();
        match b.len() {
            1 => b[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
            _ => false,
        }
    })
}

fn is_yaml11_float(s: &str) -> bool {
    // [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    let signed = strip_sign(s);
    if let Some(dot) = signed.find('.') {
        let (int, rest) = (&signed[..dot], &signed[dot + 1..]);
        let frac_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if digit_then_us(int) && opt_exponent(&rest[frac_end..]) {
            return true;
        }
    }
    // \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?   (no sign)
    if let Some(rest) = s.strip_prefix('.') {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if digit_then_us(&rest[..end]) && opt_exponent(&rest[end..]) {
            return true;
        }
    }
    // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    if let Some(dot) = signed.rfind('.')
        && let Some(colon) = signed[..dot].find(':')
        && digit_then_us(&signed[..colon])
        && sexagesimal_tail(&signed[colon..dot])
        && digits_us(&signed[dot + 1..])
    {
        return true;
    }
    // [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
    matches!(signed, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN")
}

fn is_yaml11_int(s: &str) -> bool {
    let signed = strip_sign(s);
    if let Some(d) = signed.strip_prefix("0b") {
        return !d.is_empty() && d.chars().all(|c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(d) = signed.strip_prefix("0x") {
        return !d.is_empty() && d.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    }
    if let Some(d) = signed.strip_prefix('0') {
        // 0[0-7_]+ | 0
        return d.is_empty() || d.chars().all(|c| matches!(c, '0'..='7' | '_'));
    }
    // [1-9][0-9_]* | [1-9][0-9_]*(?::[0-5]?[0-9])+
    if !signed.starts_with(|c: char| matches!(c, '1'..='9')) {
        return false;
    }
    match signed.find(':') {
        None => digits_us(signed),
        Some(colon) => digits_us(&signed[..colon]) && sexagesimal_tail(&signed[colon..]),
    }
}

fn is_yaml11_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // Every form starts with YYYY-M; the date-only form is YYYY-MM-DD and
    // the long form needs a time. Both start with four digits and '-':
    // anything of that shape is treated as a timestamp candidate, which
    // can only make csc refuse more, never accept differently.
    b.len() >= 8 && d(0) && d(1) && d(2) && d(3) && b[4] == b'-' && d(5)
}

/// PyYAML's reading of a plain, untagged scalar (implicit resolution, then
/// construction).
pub fn reference(text: &str) -> Reference {
    let first = text.chars().next();
    let in_first = |set: &str| first.is_some_and(|c| set.contains(c));
    if text.is_empty() || matches!(text, "~" | "null" | "Null" | "NULL") {
        return Reference::Null;
    }
    if in_first("yYnNtTfFoO") && is_yaml11_bool(text) {
        return Reference::Bool(bool_value(text).unwrap_or(false));
    }
    if in_first("-+0123456789.") && is_yaml11_float(text) {
        return construct_float(text);
    }
    if in_first("-+0123456789") && is_yaml11_int(text) {
        return construct_int(text);
    }
    if text == "<<" {
        return Reference::Other("a YAML 1.1 merge key");
    }
    if in_first("0123456789") && is_yaml11_timestamp(text) {
        return Reference::Other("a YAML 1.1 timestamp");
    }
    if text == "=" {
        return Reference::Other("a YAML 1.1 value key (a load error)");
    }
    Reference::Str
}

/// PyYAML's reading of a plain scalar with an explicit core tag.
fn reference_tagged(suffix: &str, text: &str) -> Reference {
    match suffix {
        "str" => Reference::Str,
        "int" => construct_int(text),
        "float" => construct_float(text),
        "bool" => bool_value(text)
            .map(Reference::Bool)
            .unwrap_or(Reference::Other("a boolean PyYAML cannot construct")),
        "null" => Reference::Null,
        _ => Reference::Other("an unsupported tag"),
    }
}

fn same(r: &Reference, c: &CscScalar) -> bool {
    match (r, c) {
        (Reference::Null, CscScalar::Null) | (Reference::Str, CscScalar::Str) => true,
        (Reference::Bool(a), CscScalar::Bool(b)) => a == b,
        (Reference::Int(Some(a)), CscScalar::Int(b)) => a == b,
        (Reference::Float(a), CscScalar::Float(b)) => a.is_finite() && a == b,
        _ => false,
    }
}

const CORE: &str = "tag:yaml.org,2002:";

/// The non-specific tag `!` (the parser reports it as handle "" and
/// suffix "!"): a string for both parsers.
fn is_non_specific(tag: &Tag) -> bool {
    (tag.handle() == "!" && tag.suffix().is_empty())
        || (tag.handle().is_empty() && tag.suffix() == "!")
}

fn core_suffix(tag: &Tag) -> Option<&str> {
    (tag.handle() == CORE).then(|| tag.suffix())
}

fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.original_handle(), tag.suffix())
}

enum Frame {
    Seq,
    /// `true` when the next node is a key.
    Map(bool),
}

/// Check every scalar of a (successfully parsed) YAML text. `csc` reads
/// one scalar the way csc's parser does: given a standalone YAML
/// document holding just that scalar, it returns its value.
pub fn check(text: &str, csc: impl Fn(&str) -> CscScalar) -> Result<(), Ambiguity> {
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        // Syntax errors were reported by the real parse already.
        let Ok((event, span)) = item else {
            return Ok(());
        };
        let is_key = matches!(stack.last(), Some(Frame::Map(true)));
        // A node completes: the enclosing mapping expects the other half.
        let advance = |stack: &mut Vec<Frame>| {
            if let Some(Frame::Map(k)) = stack.last_mut() {
                *k = !*k;
            }
        };
        match event {
            Event::Scalar(value, style, _, tag) => {
                check_scalar(&value, style, tag.as_deref(), is_key, &span, &csc)?;
                advance(&mut stack);
            }
            Event::Alias(_) => {
                if is_key {
                    return Err(at(&span, "*alias", "an alias as a mapping key"));
                }
                advance(&mut stack);
            }
            Event::SequenceStart(_, _, tag) => {
                check_collection_tag(tag.as_deref(), "seq", &span)?;
                stack.push(Frame::Seq);
            }
            Event::MappingStart(_, _, tag) => {
                check_collection_tag(tag.as_deref(), "map", &span)?;
                stack.push(Frame::Map(true));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    Ok(())
}

fn at(span: &Span, text: &str, reason: impl Into<String>) -> Ambiguity {
    Ambiguity {
        line: span.start.line(),
        column: span.start.col() + 1,
        text: text.to_owned(),
        reason: reason.into(),
    }
}

fn check_collection_tag(tag: Option<&Tag>, own: &str, span: &Span) -> Result<(), Ambiguity> {
    match tag {
        None => Ok(()),
        Some(t) if is_non_specific(t) || core_suffix(t) == Some(own) => Ok(()),
        Some(t) => Err(at(
            span,
            &tag_name(t),
            format!(
                "the tag {} on a collection is not accepted in policies (remove it)",
                tag_name(t)
            ),
        )),
    }
}

const QUOTE_IT: &str = "quote it (\"...\") if you mean the text, or write the value the way both YAML 1.1 and 1.2 read it";

fn check_scalar(
    value: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    is_key: bool,
    span: &Span,
    csc: &impl Fn(&str) -> CscScalar,
) -> Result<(), Ambiguity> {
    let suffix = match tag {
        None => None,
        Some(t) if is_non_specific(t) => return Ok(()),
        Some(t) => match core_suffix(t) {
            Some("str") => return Ok(()),
            Some(s @ ("int" | "float" | "bool" | "null"))
                if style == ScalarStyle::Plain && !is_key =>
            {
                Some(s)
            }
            _ => {
                return Err(at(
                    span,
                    value,
                    format!(
                        "the tag {} is accepted only on a plain scalar value (use !!str, or no tag)",
                        tag_name(t)
                    ),
                ));
            }
        },
    };
    if style != ScalarStyle::Plain {
        return Ok(());
    }
    let py = match suffix {
        None => reference(value),
        Some(s) => reference_tagged(s, value),
    };
    if is_key {
        if py == Reference::Str {
            return Ok(());
        }
        return Err(at(
            span,
            value,
            format!(
                "as a mapping key the Python reference (YAML 1.1) reads it as {py}, csc as a string; {QUOTE_IT}"
            ),
        ));
    }
    let doc = match suffix {
        None => value.to_owned(),
        Some(s) => format!("!!{s} {value}"),
    };
    let ours = csc(&doc);
    if same(&py, &ours) {
        return Ok(());
    }
    Err(at(
        span,
        value,
        format!(
            "the Python reference (YAML 1.1) reads it as {py}, csc (YAML 1.2) as {ours}; {QUOTE_IT}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_resolution_matches_pyyaml() {
        use Reference::*;
        let cases: &[(&str, Reference)] = &[
            ("", Null),
            ("~", Null),
            ("null", Null),
            ("NULL", Null),
            ("nUll", Str),
            ("yes", Bool(true)),
            ("No", Bool(false)),
            ("ON", Bool(true)),
            ("off", Bool(false)),
            ("y", Str),
            ("n", Str),
            ("yEs", Str),
            ("010", Int(Some(8))),
            ("0o17", Str),
            ("0x1F", Int(Some(31))),
            ("0b101", Int(Some(5))),
            ("1_000", Int(Some(1000))),
            ("+5", Int(Some(5))),
            ("-0", Int(Some(0))),
            ("1:30", Int(Some(90))),
            ("-1:30", Int(Some(-90))),
            ("08", Str),
            ("1e1", Str),
            ("1.0e1", Str),
            ("1.0e+1", Float(10.0)),
            (".5", Float(0.5)),
            ("+.5", Str),
            ("1.", Float(1.0)),
            ("1_0.5", Float(10.5)),
            ("1:30.5", Float(90.5)),
            (".inf", Float(f64::INFINITY)),
            ("-.Inf", Float(f64::NEG_INFINITY)),
            ("inf", Str),
            ("2026-01-01", Other("a YAML 1.1 timestamp")),
            ("<<", Other("a YAML 1.1 merge key")),
            ("=", Other("a YAML 1.1 value key (a load error)")),
            ("60", Int(Some(60))),
            ("60.0", Float(60.0)),
            ("ls", Str),
            ("/workspace", Str),
        ];
        for (text, want) in cases {
            let got = reference(text);
            match (want, &got) {
                (Float(a), Float(b)) => assert!(a == b, "{text:?}: {got:?}"),
                _ => assert_eq!(&got, want, "{text:?}"),
            }
        }
        assert!(matches!(reference(".nan"), Float(x) if x.is_nan()));
        assert!(matches!(reference("0b"), Str));
        assert!(matches!(
            reference("0b__"),
            Other("an integer PyYAML cannot construct")
        ));
        assert_eq!(
            reference("99999999999999999999999999999999999999999"),
            Int(None)
        );
    }
}
