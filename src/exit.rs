//! Every exit code csc uses, in one place: csc's own process exit codes
//! (0 allow/success, 1 deny or any error, 2 needs approval) and the codes
//! it records for a command that did not run to its own exit (124 timeout,
//! 125 sandbox setup failed, 126 not runnable, 127 not found).
//!
//! No other file in `src/` spells an exit code as a number.

/// csc: allow, success, or a valid result.
pub const SUCCESS: u8 = 0;
/// csc: deny, a failed or blocked run, an invalid document, or any error.
pub const FAILURE: u8 = 1;
/// csc: the policy needs an approval that was not provided.
pub const NEEDS_APPROVAL: u8 = 2;

/// Recorded for a command: killed at its `timeout_sec` (as `timeout(1)`).
pub const TIMEOUT: i32 = 124;
/// Recorded for a command: the sandbox could not be set up (nothing ran).
pub const SETUP_FAILED: i32 = 125;
/// Recorded for a command: found but not runnable (permission, format, or
/// a runtime path check refused it).
pub const NOT_RUNNABLE: i32 = 126;
/// Recorded for a command: the executable was not found.
pub const NOT_FOUND: i32 = 127;
/// Recorded for a command that exited normally.
pub const COMMAND_OK: i32 = 0;
/// Recorded for a command that failed without an exit status of its own
/// (could not start for another reason, or its output could not be kept).
pub const COMMAND_FAILED: i32 = 1;
/// Recorded for a command killed by a signal: this plus the signal number
/// (the shell's convention).
pub const SIGNAL_BASE: i32 = 128;

/// Recorded for a command terminated because its run was cancelled (an
/// MCP client's cancellation or disconnect): 128 + SIGTERM, as a shell
/// reports it.
pub const CANCELLED: i32 = SIGNAL_BASE + 15;

/// The exit code recorded for a command killed by signal `sig`.
pub fn signaled(sig: i32) -> i32 {
    SIGNAL_BASE.saturating_add(sig)
}

/// `__sandbox-run`'s exit code when its timeout killed the sandbox.
pub const TIMEOUT_U8: u8 = 124;

/// A recorded exit status as csc's own exit code (`__sandbox-init`,
/// `__sandbox-run` pass the command's through); out of range is failure.
pub fn passthrough(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_codes_agree() {
        assert_eq!(i32::from(TIMEOUT_U8), TIMEOUT);
        assert_eq!(passthrough(TIMEOUT), TIMEOUT_U8);
        assert_eq!(passthrough(-1), FAILURE);
        assert_eq!(passthrough(300), FAILURE);
    }
}
