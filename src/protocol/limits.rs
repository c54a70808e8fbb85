//! Runner-side limits the schemas cannot express (reference values).

use super::contract::Contract;

/// Maximum contract file size.
pub const MAX_CONTRACT_BYTES: usize = 1_048_576;
/// Maximum policy file size.
pub const MAX_POLICY_BYTES: usize = 524_288;
/// Maximum approval / receipt / decision file size (ours).
pub const MAX_ARTIFACT_BYTES: usize = 1_048_576;
/// Maximum commands per contract.
pub const MAX_COMMANDS: usize = 20;
/// Maximum segments in one pipeline.
pub const MAX_PIPELINE_SEGMENTS: usize = 10;
/// Maximum elements in one argv.
pub const MAX_ARGV_LEN: usize = 200;
/// Maximum UTF-8 bytes of one argv element.
pub const MAX_ARGV_ELEMENT_BYTES: usize = 131_072;
/// Maximum characters of the contract justification.
pub const MAX_JUSTIFICATION_CHARS: usize = 4_000;
/// Maximum characters of a receipt `error`.
pub const MAX_RECEIPT_ERROR_CHARS: usize = 4_000;
/// Default stdout capture cap.
pub const MAX_STDOUT_CAPTURE_BYTES: u64 = 10_485_760;
/// Default stderr capture cap.
pub const MAX_STDERR_CAPTURE_BYTES: u64 = 1_048_576;

/// Check a parsed contract against the runner budgets. Each violation says
/// which limit and the actual value; empty means within budget.
pub fn contract_violations(contract: &Contract) -> Vec<String> {
    let mut out = Vec::new();
    if contract.commands.len() > MAX_COMMANDS {
        out.push(format!(
            "contract has {} commands (max {MAX_COMMANDS})",
            contract.commands.len()
        ));
    }
    for cmd in &contract.commands {
        let mut vectors: Vec<(String, &[String])> = Vec::new();
        if let Some(exec) = &cmd.exec {
            vectors.push((format!("command {:?} exec", cmd.id), &exec.argv));
        }
        if let Some(p) = &cmd.pipeline {
            if p.segments.len() > MAX_PIPELINE_SEGMENTS {
                out.push(format!(
                    "command {:?}: pipeline has {} segments (max {MAX_PIPELINE_SEGMENTS})",
                    cmd.id,
                    p.segments.len()
                ));
            }
            for (i, seg) in p.segments.iter().enumerate() {
                vectors.push((
                    format!("command {:?} pipeline segment {i}", cmd.id),
                    &seg.argv,
                ));
            }
        }
        for (label, argv) in vectors {
            if argv.len() > MAX_ARGV_LEN {
                out.push(format!(
                    "{label}: argv has {} elements (max {MAX_ARGV_LEN})",
                    argv.len()
                ));
            }
            for (j, elem) in argv.iter().enumerate() {
                if elem.len() > MAX_ARGV_ELEMENT_BYTES {
                    out.push(format!(
                        "{label}: argv[{j}] is {} bytes (max {MAX_ARGV_ELEMENT_BYTES})",
                        elem.len()
                    ));
                }
                if let Some(pos) = elem.find('\0') {
                    out.push(format!(
                        "{label}: argv[{j}] contains a NUL byte at offset {pos}"
                    ));
                }
            }
        }
        for (field, values) in [
            ("cwd", std::slice::from_ref(&cmd.cwd)),
            ("read_paths", cmd.read_paths.as_slice()),
            ("write_paths", cmd.write_paths.as_slice()),
            ("env_allow", cmd.env_allow.as_slice()),
        ] {
            if values.iter().any(|v| v.contains('\0')) {
                out.push(format!("command {:?}: {field} contains a NUL byte", cmd.id));
            }
        }
    }
    let chars = contract.justification.chars().count();
    if chars > MAX_JUSTIFICATION_CHARS {
        out.push(format!(
            "justification is {chars} chars (max {MAX_JUSTIFICATION_CHARS})"
        ));
    }
    out
}

/// Truncate a receipt error to the cap, marking the cut like the reference.
pub fn truncate_error(text: &str) -> String {
    const SUFFIX: &str = "... [truncated]";
    if text.chars().count() <= MAX_RECEIPT_ERROR_CHARS {
        return text.to_owned();
    }
    let keep = MAX_RECEIPT_ERROR_CHARS - SUFFIX.len();
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(SUFFIX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_cap() {
        let long = "é".repeat(5000);
        let t = truncate_error(&long);
        assert_eq!(t.chars().count(), MAX_RECEIPT_ERROR_CHARS);
        assert!(t.ends_with("... [truncated]"));
        assert_eq!(truncate_error("short"), "short");
    }
}
