//! Typed errors of sandbox setup. Every step returns a [`Cause`]; the
//! helper and init attach the [`Stage`] they were in ([`SetupError`]) and
//! only the status pipe turns it into text (`StatusMsg::Error`).

use std::error::Error as StdError;

/// The setup stage a failure belongs to (the `stage` of a status line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the plan (re-exec path).
    Plan,
    /// The helper's own work: threads, descriptors, signals, fork.
    Helper,
    /// The egress bridge of `network: allowlisted`.
    Egress,
    /// Landlock requirements and restriction.
    Landlock,
    /// Entering and configuring the namespaces.
    Namespaces,
    /// Compiling or installing the seccomp filter.
    Seccomp,
    /// Init (pid 1): parent-death signal, signal mask, session, pipeline.
    Init,
    /// Resource limits and the pid cap.
    Rlimits,
    /// The mount view and `pivot_root`.
    Mounts,
    /// `no_new_privs` and the capability drop.
    Privileges,
    /// Preparing or executing a segment's target.
    Exec,
}

impl Stage {
    /// The name on the status pipe (and in `csc doctor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Helper => "helper",
            Stage::Egress => "egress",
            Stage::Landlock => "landlock",
            Stage::Namespaces => "namespaces",
            Stage::Seccomp => "seccomp",
            Stage::Init => "init",
            Stage::Rlimits => "rlimits",
            Stage::Mounts => "mounts",
            Stage::Privileges => "privileges",
            Stage::Exec => "exec",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one setup step failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// A call failed: what was being done, and the error it returned
    /// (kept with its own type and message).
    #[error("{what}: {source}")]
    Call {
        /// What was being done (`mount tmpfs on /newroot/tmp`, ...).
        what: String,
        /// The error of the failed call.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A check failed: the host, the plan or an object on disk is not
    /// what the sandbox needs (no error of a call behind it).
    #[error("{0}")]
    Refused(String),
}

impl Cause {
    /// A failed call.
    pub fn call(
        what: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Cause::Call {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A failed check.
    pub fn refused(why: impl Into<String>) -> Self {
        Cause::Refused(why.into())
    }
}

/// `map_err` adapter: `.map_err(failed("open x"))`.
pub(crate) fn failed<E>(what: impl Into<String>) -> impl FnOnce(E) -> Cause
where
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    move |e| Cause::call(what, e)
}

/// A failed setup step and the stage it belongs to.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {source}")]
pub struct SetupError {
    /// Where setup failed.
    pub stage: Stage,
    /// Why.
    #[source]
    pub source: Cause,
}

impl SetupError {
    /// Attach `stage` to `source`.
    pub fn new(stage: Stage, source: Cause) -> Self {
        SetupError { stage, source }
    }
}

/// Result of one setup step.
pub type StepResult<T> = Result<T, Cause>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_the_text_of_the_failed_call() {
        let e = SetupError::new(
            Stage::Mounts,
            Cause::call("mkdir /x", nix::errno::Errno::EACCES),
        );
        assert_eq!(e.stage.as_str(), "mounts");
        assert_eq!(e.source.to_string(), "mkdir /x: EACCES: Permission denied");
        assert_eq!(
            Cause::refused("plan too large").to_string(),
            "plan too large"
        );
    }
}
