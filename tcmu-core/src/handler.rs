//! What executes the commands a ring hands out: a synchronous handler
//! answers before it returns; an asynchronous one completes each
//! [`PendingCommand`] whenever its work is done.

use crate::mem::DataSegments;
use crate::pending::PendingCommand;
use crate::ring::Reply;

/// Executes SCSI commands and answers before returning; the SCSI emulator
/// over a [`BlockDevice`](https://docs.rs/scsi-emu) implements it.
pub trait CommandHandler {
    /// Execute `cdb` with its data buffer and say how it ended.
    fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply;
}

/// Starts SCSI commands and completes each one when its work is done, from
/// any thread, so a command need not hold a thread while it waits (for a
/// network round trip, say). The serving loop calls
/// [`start`](Self::start) on a worker thread; it should return quickly.
///
/// Every [`CommandHandler`] is one: it answers inside `start`.
pub trait AsyncCommandHandler: Send + Sync {
    /// Begin executing `cmd`; complete it now or later.
    fn start(&self, cmd: PendingCommand);
}

impl<H: CommandHandler + Send + Sync + ?Sized> AsyncCommandHandler for H {
    fn start(&self, mut cmd: PendingCommand) {
        let (cdb, data) = cmd.cdb_and_data();
        let reply = self.handle(cdb, data);
        cmd.complete(&reply);
    }
}
