//! Where a logical unit stands with SANITIZE (SBC-4 4.11): idle, a
//! sanitize running (and how far it is), or failed and waiting for a way
//! out. Kept apart from the command so that admission, REQUEST SENSE and
//! the sanitize itself share it without importing each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::cdb::invalid_field;

/// The sanitize phase of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Idle,
    /// `done` of `total` units of work finished.
    Running { done: u64, total: u64 },
    /// The last sanitize failed. With `exit_allowed` (its AUSE bit was
    /// set) EXIT FAILURE MODE leaves this phase; otherwise only another
    /// sanitize that completes does.
    Failed { exit_allowed: bool },
}

/// A unit's sanitize state, shared by every command.
#[derive(Debug, Default)]
pub(crate) struct SanitizeState {
    /// Set while the phase is not idle, so that every other command checks
    /// one atomic rather than taking the lock.
    engaged: AtomicBool,
    phase: Mutex<Phase>,
}

/// NOT READY, SANITIZE IN PROGRESS with `done` of `total` as the progress
/// indication.
fn in_progress(done: u64, total: u64) -> Sense {
    let fraction = u128::from(done) * 65536 / u128::from(total.max(1));
    Sense::new(
        SenseKey::NotReady,
        AdditionalSense::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
    )
    .with_progress(u16::try_from(fraction).unwrap_or(u16::MAX))
}

/// MEDIUM ERROR, SANITIZE COMMAND FAILED: what a failed sanitize leaves.
pub(crate) fn sanitize_failed() -> Sense {
    Sense::new(
        SenseKey::MediumError,
        AdditionalSense::SANITIZE_COMMAND_FAILED,
    )
}

impl SanitizeState {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Every update is a single assignment: a panic elsewhere cannot
        // leave the phase half-written.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        self.engaged.store(next != Phase::Idle, Ordering::SeqCst);
    }

    /// Why a command may not run now, if it may not: every command but
    /// the few SBC-4 allows during a sanitize (`allowed_while_running`)
    /// is NOT READY while one runs; after a failure, commands that touch
    /// the medium (`medium_access`) fail until the way out is taken.
    pub(crate) fn refusal(
        &self,
        allowed_while_running: bool,
        medium_access: bool,
    ) -> Option<Sense> {
        if !self.engaged.load(Ordering::SeqCst) {
            return None;
        }
        match *self.phase() {
            Phase::Running { done, total } if !allowed_while_running => {
                Some(in_progress(done, total))
            }
            Phase::Failed { .. } if medium_access => Some(sanitize_failed()),
            _ => None,
        }
    }

    /// What REQUEST SENSE reports: the sanitize in progress with its
    /// progress, or the failure not yet left.
    pub(crate) fn pending_sense(&self) -> Option<Sense> {
        if !self.engaged.load(Ordering::SeqCst) {
            return None;
        }
        match *self.phase() {
            Phase::Idle => None,
            Phase::Running { done, total } => Some(in_progress(done, total)),
            Phase::Failed { .. } => Some(sanitize_failed()),
        }
    }

    /// Start a sanitize of `total` units of work. Refused while one runs,
    /// and with AUSE set after a failure in restricted mode (SBC-4: once
    /// restricted, a unit stays restricted until a sanitize completes).
    pub(crate) fn begin(&self, total: u64, ause: bool) -> Result<(), Sense> {
        let mut phase = self.phase();
        match *phase {
            Phase::Running { done, total } => return Err(in_progress(done, total)),
            Phase::Failed {
                exit_allowed: false,
            } if ause => return Err(invalid_field(1, 5)),
            _ => {}
        }
        self.set(&mut phase, Phase::Running { done: 0, total });
        Ok(())
    }

    /// Record `done` units of the running sanitize's work as finished.
    pub(crate) fn advance(&self, done: u64) {
        let mut phase = self.phase();
        if let Phase::Running { total, .. } = *phase {
            *phase = Phase::Running { done, total };
        }
    }

    /// End the running sanitize: idle when it `succeeded`, else failed,
    /// with EXIT FAILURE MODE allowed when it was started with AUSE.
    pub(crate) fn finish(&self, succeeded: bool, ause: bool) {
        let next = if succeeded {
            Phase::Idle
        } else {
            Phase::Failed { exit_allowed: ause }
        };
        let mut phase = self.phase();
        self.set(&mut phase, next);
    }

    /// EXIT FAILURE MODE: leave an unrestricted failure. Nothing to do
    /// when idle; refused after a restricted failure (SBC-4: INVALID
    /// FIELD IN CDB) and while a sanitize runs.
    pub(crate) fn exit_failure_mode(&self) -> Result<(), Sense> {
        let mut phase = self.phase();
        match *phase {
            Phase::Idle => Ok(()),
            Phase::Running { done, total } => Err(in_progress(done, total)),
            Phase::Failed { exit_allowed: true } => {
                self.set(&mut phase, Phase::Idle);
                Ok(())
            }
            Phase::Failed {
                exit_allowed: false,
            } => Err(invalid_field(1, 4)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_refuses_nothing() {
        let state = SanitizeState::default();
        assert_eq!(state.refusal(false, true), None);
        assert_eq!(state.pending_sense(), None);
        assert_eq!(state.exit_failure_mode(), Ok(()));
    }

    #[test]
    fn running_reports_progress_to_all_but_the_allowed() {
        let state = SanitizeState::default();
        state.begin(4, false).unwrap();
        state.advance(1);
        let expected = in_progress(1, 4);
        assert_eq!(expected.progress, Some(0x4000));
        assert_eq!(state.refusal(false, false), Some(expected));
        assert_eq!(state.refusal(true, false), None);
        assert_eq!(state.pending_sense(), Some(expected));
        assert_eq!(state.begin(8, false), Err(expected));
        assert_eq!(state.exit_failure_mode(), Err(expected));
        state.finish(true, false);
        assert_eq!(state.refusal(false, true), None);
    }

    #[test]
    fn progress_never_reaches_65536() {
        assert_eq!(in_progress(0, 0).progress, Some(0));
        assert_eq!(in_progress(u64::MAX, u64::MAX).progress, Some(0xFFFF));
        assert_eq!(in_progress(1, 3).progress, Some(21845));
    }

    #[test]
    fn failure_refuses_medium_access_until_left() {
        let state = SanitizeState::default();
        state.begin(1, true).unwrap();
        state.finish(false, true);
        assert_eq!(state.refusal(false, true), Some(sanitize_failed()));
        assert_eq!(state.refusal(false, false), None);
        assert_eq!(state.pending_sense(), Some(sanitize_failed()));
        assert_eq!(state.exit_failure_mode(), Ok(()));
        assert_eq!(state.refusal(false, true), None);

        // Restricted: no EXIT FAILURE MODE, no AUSE; another sanitize.
        state.begin(1, false).unwrap();
        state.finish(false, false);
        assert_eq!(state.exit_failure_mode(), Err(invalid_field(1, 4)));
        assert_eq!(state.begin(1, true), Err(invalid_field(1, 5)));
        state.begin(1, false).unwrap();
        state.finish(true, false);
        assert_eq!(state.pending_sense(), None);
    }
}
