//! Making command- and contract-derived text safe to print.
//!
//! Everything csc itself prints ABOUT a command (verdict lines, error
//! strings, command ids, paths, argv in messages, explain/check output)
//! goes through [`escape_control`] or [`escape_control_lines`], so a
//! command cannot paint terminal control sequences (cursor moves, colour,
//! "clear line") or fake lines into csc's own output. The command's own
//! output streams, echoed live, are passed through as-is.
//!
//! Escaped: C0 controls (including TAB, LF, CR), DEL, C1 controls, and the
//! Unicode format characters that reorder or break displayed text (bidi
//! embeddings/overrides/isolates and marks, line/paragraph separators).
//! ASCII controls become `\n`, `\r`, `\t` or `\xHH`; the others `\u{HHHH}`.
//! Backslashes are left alone: an attacker who writes a literal `\x1b`
//! only gets those four harmless characters.

use std::borrow::Cow;
use std::fmt::Write;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn escape_with(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_newlines && c == '\n';
    if !text.chars().any(|c| needs_escape(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) || keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// `text` on one line with every control or display-reordering character
/// shown as a visible escape. Idempotent: escaped text has nothing left to
/// escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Like [`escape_control`] but keeps line feeds, for csc's own multi-line
/// messages (e.g. a list of schema violations). Only for text whose line
/// structure csc itself chose; a command's text goes through
/// [`escape_control`] first.
pub fn escape_control_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "command \"build\" failed: exit 1 — é ✓ C:\\path";
        assert!(matches!(escape_control(s), Cow::Borrowed(_)));
        assert_eq!(escape_control(s), s);
    }

    #[test]
    fn terminal_sequences_and_fake_lines_are_defused() {
        let hostile =
            "oops\r\x1b[2K\x1b[32mSUCCESS\x1b[0m — receipt written\nSUCCESS\u{9b}31m\u{7f}\t\0";
        let e = escape_control(hostile);
        assert!(!e.chars().any(|c| c.is_control()), "{e}");
        assert_eq!(
            e,
            "oops\\r\\x1b[2K\\x1b[32mSUCCESS\\x1b[0m — receipt written\\nSUCCESS\\u{009b}31m\\x7f\\t\\x00"
        );
    }

    #[test]
    fn bidi_and_separators_are_escaped() {
        let e = escape_control("a\u{202E}b\u{2066}c\u{2028}d\u{200F}");
        assert_eq!(e, "a\\u{202e}b\\u{2066}c\\u{2028}d\\u{200f}");
    }

    #[test]
    fn escaping_is_idempotent() {
        let once = escape_control("x\x1b]0;title\x07y\n").into_owned();
        assert_eq!(escape_control(&once), once);
    }

    #[test]
    fn lines_variant_keeps_only_line_feeds() {
        assert_eq!(escape_control_lines("a\nb\r\x1b[1m\n"), "a\nb\\r\\x1b[1m\n");
    }
}
