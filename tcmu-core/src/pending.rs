//! A command handed to a handler that may finish later: the handler gets a
//! [`PendingCommand`], which owns the command's data buffer and completes
//! it exactly once, from whatever thread finishes the work (a worker, a
//! librbd callback, a socket reader). The shape is fuser's reply objects.

use std::sync::Arc;

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::mem::DataSegments;
use crate::ring::{Command, Reply};

/// Where a finished command goes: the serving loop that handed it out.
pub(crate) trait Completer: Send + Sync {
    /// Write `reply` for `cmd` into the ring (and tell the kernel).
    fn complete(&self, cmd: Command, reply: &Reply);
}

/// A command being executed: read its CDB and data buffer, then
/// [`complete`](Self::complete) it, now or later, from any thread.
///
/// It completes exactly once: `complete` takes it by value, so a second
/// completion does not compile:
///
/// ```compile_fail
/// fn twice(cmd: tcmu_core::PendingCommand) {
///     cmd.complete(&tcmu_core::Reply::good());
///     cmd.complete(&tcmu_core::Reply::good()); // use of moved `cmd`
/// }
/// ```
///
/// Dropped without completing (a handler that lost it, a panic), it fails
/// the command with HARDWARE ERROR, INTERNAL TARGET FAILURE and logs a
/// warning: the ring slot and the data pages are never leaked. The data
/// buffer stays valid, and the kernel leaves it alone, until completion.
pub struct PendingCommand {
    /// `Some` until completed.
    cmd: Option<Command>,
    to: Arc<dyn Completer>,
}

impl PendingCommand {
    pub(crate) fn new(cmd: Command, to: Arc<dyn Completer>) -> Self {
        PendingCommand { cmd: Some(cmd), to }
    }

    fn command(&self) -> &Command {
        // `cmd` is `Some` until `complete` consumes `self` or `drop` runs.
        self.cmd
            .as_ref()
            .expect("a pending command holds its command")
    }

    fn command_mut(&mut self) -> &mut Command {
        self.cmd
            .as_mut()
            .expect("a pending command holds its command")
    }

    /// The kernel's command id.
    pub fn id(&self) -> u16 {
        self.command().id()
    }

    /// The CDB bytes.
    pub fn cdb(&self) -> &[u8] {
        self.command().cdb()
    }

    /// The data buffer (data-out for writes, to be filled for reads).
    pub fn data(&self) -> &DataSegments {
        self.command().data()
    }

    /// The CDB and the writable data buffer at once.
    pub fn cdb_and_data(&mut self) -> (&[u8], &mut DataSegments) {
        self.command_mut().cdb_and_data()
    }

    /// The data-in part of a bidirectional command.
    pub fn bidi_in(&mut self) -> Option<&mut DataSegments> {
        self.command_mut().bidi_in()
    }

    /// Answer the command with `reply`.
    pub fn complete(mut self, reply: &Reply) {
        if let Some(cmd) = self.cmd.take() {
            self.to.complete(cmd, reply);
        }
    }
}

impl Drop for PendingCommand {
    fn drop(&mut self) {
        if let Some(cmd) = self.cmd.take() {
            log::warn!(
                "command {} {:02x?} was dropped without a reply: failing it",
                cmd.id(),
                cmd.cdb()
            );
            let sense = Sense::new(
                SenseKey::HardwareError,
                AdditionalSense::INTERNAL_TARGET_FAILURE,
            );
            self.to.complete(cmd, &Reply::check_condition(&sense));
        }
    }
}

impl std::fmt::Debug for PendingCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PendingCommand").field(&self.cmd).finish()
    }
}
