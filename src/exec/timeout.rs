//! When to signal a running command: a pure state machine, driven by the
//! capture loop's clock ticks, so its timing rules are unit-testable.
//!
//! - Deadline passes while running → SIGTERM the group, then SIGKILL after
//!   [`Timing::grace`]; the command counts as timed out.
//! - The command exits but its output pipes stay open (a background
//!   process inherited them) → after [`Timing::linger`] SIGKILL the group
//!   (strays), never waiting past the deadline.
//! - After SIGKILL, reading goes on for at most [`Timing::drain`], then the
//!   pipes are abandoned (a process that escaped the group cannot hold the
//!   run forever).

use std::time::{Duration, Instant};

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Send SIGTERM to the group.
    Term,
    /// Send SIGKILL to the group.
    Kill,
    /// Stop reading the pipes.
    Abandon,
}

/// Timing knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// SIGTERM → SIGKILL delay.
    pub grace: Duration,
    /// How long pipes may stay open after the command exited.
    pub linger: Duration,
    /// How long to keep reading after SIGKILL.
    pub drain: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            grace: Duration::from_secs(2),
            linger: Duration::from_millis(500),
            drain: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Exited { kill_at: Instant },
    Terminating { kill_at: Instant },
    Killed { abandon_at: Instant },
    Abandoned,
}

/// The escalation state of one command.
#[derive(Debug, Clone)]
pub struct Escalation {
    deadline: Instant,
    timing: Timing,
    phase: Phase,
    timed_out: bool,
    interrupted: bool,
    strays: bool,
    cancel: Option<super::cancel::Cancel>,
}

impl Escalation {
    /// A command started at `start` with `timeout`.
    pub fn new(start: Instant, timeout: Duration, timing: Timing) -> Self {
        Escalation {
            deadline: start.checked_add(timeout).unwrap_or(start),
            timing,
            phase: Phase::Running,
            timed_out: false,
            interrupted: false,
            strays: false,
            cancel: None,
        }
    }

    /// Also stop when `cancel` is raised (see [`Escalation::cancelled`]).
    pub fn with_cancel(mut self, cancel: Option<&super::cancel::Cancel>) -> Self {
        self.cancel = cancel.cloned();
        self
    }

    /// The run was cancelled from outside: the caller must
    /// [`Escalation::interrupt`], as for a signal to csc.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.reason().is_some())
    }

    /// Advance to `now`; `exited` says whether the command itself ended.
    pub fn on_tick(&mut self, now: Instant, exited: bool) -> Action {
        match self.phase {
            Phase::Running if exited => {
                let kill_at = (now + self.timing.linger).min(self.deadline.max(now));
                self.phase = Phase::Exited { kill_at };
                Action::None
            }
            Phase::Running if now >= self.deadline => {
                self.timed_out = true;
                self.phase = Phase::Terminating {
                    kill_at: now + self.timing.grace,
                };
                Action::Term
            }
            Phase::Exited { kill_at } if now >= kill_at => {
                self.strays = true;
                self.kill(now)
            }
            Phase::Terminating { kill_at } if now >= kill_at || exited => self.kill(now),
            Phase::Killed { abandon_at } if now >= abandon_at => {
                self.phase = Phase::Abandoned;
                Action::Abandon
            }
            Phase::Abandoned => Action::Abandon,
            _ => Action::None,
        }
    }

    /// csc itself was told to stop: terminate the group now (SIGKILL after
    /// the grace period). Only acts once.
    pub fn interrupt(&mut self, now: Instant) -> Action {
        if self.interrupted {
            return Action::None;
        }
        self.interrupted = true;
        match self.phase {
            Phase::Running | Phase::Exited { .. } => {
                self.phase = Phase::Terminating {
                    kill_at: now + self.timing.grace,
                };
                Action::Term
            }
            _ => Action::None,
        }
    }

    /// [`Escalation::interrupt`] was called.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    fn kill(&mut self, now: Instant) -> Action {
        self.phase = Phase::Killed {
            abandon_at: now + self.timing.drain,
        };
        Action::Kill
    }

    /// How long the caller may sleep before the next decision is due.
    pub fn next_wake(&self, now: Instant) -> Duration {
        let at = match self.phase {
            Phase::Running => self.deadline,
            Phase::Exited { kill_at } | Phase::Terminating { kill_at } => kill_at,
            Phase::Killed { abandon_at } => abandon_at,
            Phase::Abandoned => now,
        };
        at.saturating_duration_since(now)
    }

    /// The deadline passed before the command ended.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Processes left behind holding the pipes were killed.
    pub fn strays_killed(&self) -> bool {
        self.strays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn deadline_terms_then_kills_then_abandons() {
        let t0 = Instant::now();
        let timing = Timing {
            grace: ms(100),
            linger: ms(50),
            drain: ms(10),
        };
        let mut e = Escalation::new(t0, ms(1000), timing);
        assert_eq!(e.on_tick(t0 + ms(999), false), Action::None);
        assert_eq!(e.next_wake(t0 + ms(999)), ms(1));
        assert_eq!(e.on_tick(t0 + ms(1000), false), Action::Term);
        assert!(e.timed_out());
        assert_eq!(e.on_tick(t0 + ms(1050), false), Action::None);
        assert_eq!(e.on_tick(t0 + ms(1100), false), Action::Kill);
        assert_eq!(e.on_tick(t0 + ms(1105), false), Action::None);
        assert_eq!(e.on_tick(t0 + ms(1110), false), Action::Abandon);
        assert!(!e.strays_killed());
    }

    #[test]
    fn exit_with_open_pipes_kills_strays_after_linger() {
        let t0 = Instant::now();
        let mut e = Escalation::new(t0, ms(10_000), Timing::default());
        assert_eq!(e.on_tick(t0 + ms(5), true), Action::None);
        assert_eq!(e.on_tick(t0 + ms(100), true), Action::None);
        assert_eq!(e.on_tick(t0 + ms(505), true), Action::Kill);
        assert!(e.strays_killed());
        assert!(!e.timed_out());
    }

    #[test]
    fn interrupt_terminates_once() {
        let t0 = Instant::now();
        let mut e = Escalation::new(t0, ms(10_000), Timing::default());
        assert_eq!(e.interrupt(t0), Action::Term);
        assert_eq!(e.interrupt(t0), Action::None);
        assert!(e.interrupted() && !e.timed_out());
        assert_eq!(e.on_tick(t0 + ms(2000), false), Action::Kill);
    }

    #[test]
    fn linger_never_outlives_the_deadline() {
        let t0 = Instant::now();
        let mut e = Escalation::new(t0, ms(100), Timing::default());
        assert_eq!(e.on_tick(t0 + ms(90), true), Action::None);
        assert_eq!(e.on_tick(t0 + ms(100), true), Action::Kill);
    }
}
