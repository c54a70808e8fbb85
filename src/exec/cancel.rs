//! Stopping one run from outside: the caller (e.g. `csc mcp` when its
//! client cancels a request or disconnects) cancels a [`Cancel`]; the
//! capture loop then terminates the running command's whole process group
//! (in hardened mode the sandbox, pid namespace included) as it does on
//! SIGINT/SIGTERM, the remaining commands are not started, and the run
//! still gets its receipt, whose error says why it stopped.

use std::sync::{Arc, OnceLock};

/// A cancellation flag shared between a run and whoever may stop it;
/// clones share the flag. The first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<OnceLock<String>>);

impl Cancel {
    /// A flag nobody has raised yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stop the run; `reason` (e.g. "the MCP client cancelled the
    /// request") goes into the receipt's error.
    pub fn cancel(&self, reason: &str) {
        let _ = self.0.set(reason.to_owned());
    }

    /// Why the run was cancelled, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_clones_share_it() {
        let c = Cancel::new();
        assert_eq!(c.reason(), None);
        let other = c.clone();
        other.cancel("client went away");
        c.cancel("later reason");
        assert_eq!(c.reason(), Some("client went away"));
    }
}
