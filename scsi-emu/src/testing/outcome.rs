//! How a command served by a [`TestLun`](super::TestLun) ended, and why a
//! typed call failed.

use std::fmt;
use std::time::Duration;

use scsi_sense_codes::{AdditionalSense, ScsiStatus, Sense, SenseKey};

/// What the initiator got back for one command: the status, the parsed
/// sense data of a CHECK CONDITION, and the data-in bytes (as many as the
/// emulator reported, so an allocation length larger than the answer is
/// trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The SCSI status.
    pub status: ScsiStatus,
    /// The sense data, parsed (fixed or descriptor format), when there
    /// was any.
    pub sense: Option<Sense>,
    /// The data-in bytes.
    pub data: Vec<u8>,
}

impl Outcome {
    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == ScsiStatus::Good
    }

    /// The sense key, if there is sense data.
    pub fn sense_key(&self) -> Option<SenseKey> {
        self.sense.map(|s| s.key)
    }

    /// The additional sense code and qualifier, if there is sense data.
    pub fn additional_sense(&self) -> Option<AdditionalSense> {
        self.sense.map(|s| s.code)
    }

    /// Whether this is CHECK CONDITION with `key` and `code`.
    pub fn is_check(&self, key: SenseKey, code: AdditionalSense) -> bool {
        self.status == ScsiStatus::CheckCondition
            && self.sense_key() == Some(key)
            && self.additional_sense() == Some(code)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(sense) = &self.sense {
            write!(f, " ({sense})")?;
        }
        Ok(())
    }
}

/// Why a command of a [`TestLun`](super::TestLun) did not succeed. Each
/// variant names the command (`READ(16) LBA 8, 2 blocks`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandFailure {
    /// The command completed with a status other than GOOD (or a typed
    /// call got a GOOD answer of the wrong size).
    Status {
        /// The command.
        command: String,
        /// How it ended.
        outcome: Outcome,
    },
    /// The command did not complete in time: the device is stuck, or lost
    /// the command.
    TimedOut {
        /// The command.
        command: String,
        /// How long the harness waited.
        waited: Duration,
    },
    /// The ring or the serving loop failed: the simulated kernel found the
    /// ring broken, the server stopped, or the command could not be
    /// placed in the ring.
    Ring {
        /// The command.
        command: String,
        /// What went wrong.
        reason: String,
    },
}

impl CommandFailure {
    /// The outcome of a command that completed, if it did.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            CommandFailure::Status { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    /// The sense data of a command that completed with it.
    pub fn sense(&self) -> Option<Sense> {
        self.outcome().and_then(|o| o.sense)
    }

    /// The command that failed.
    pub fn command(&self) -> &str {
        match self {
            CommandFailure::Status { command, .. }
            | CommandFailure::TimedOut { command, .. }
            | CommandFailure::Ring { command, .. } => command,
        }
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandFailure::Status { command, outcome } => {
                write!(f, "{command}: {outcome}")?;
                if outcome.is_good() {
                    write!(f, " with {} bytes of data", outcome.data.len())?;
                }
                Ok(())
            }
            CommandFailure::TimedOut { command, waited } => write!(
                f,
                "{command}: no completion after {waited:?} (is the device stuck in a call?)"
            ),
            CommandFailure::Ring { command, reason } => write!(f, "{command}: {reason}"),
        }
    }
}

impl std::error::Error for CommandFailure {}
