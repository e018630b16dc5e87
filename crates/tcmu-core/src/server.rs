//! The serving loop: wait for the kernel, drain every published entry,
//! hand each command to a handler, complete it, notify once per batch.

use std::io;
use std::os::fd::BorrowedFd;

use crate::mem::DataSegments;
use crate::ring::{Reply, Ring, RingEntry, RingError};
use crate::uio::{UioDevice, Wake};

/// Executes SCSI commands; the SCSI emulator implements it.
pub trait CommandHandler {
    /// Execute `cdb` with its data buffer and say how it ended.
    fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply;
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("UIO device: {0}")]
    Io(#[from] io::Error),
}

/// Handle every entry the ring holds now; returns how many commands ran.
pub fn drain<H: CommandHandler + ?Sized>(ring: &mut Ring, handler: &H) -> Result<usize, RingError> {
    let mut handled = 0;
    while let Some(entry) = ring.next_entry()? {
        match entry {
            RingEntry::Command(mut cmd) => {
                let (cdb, data) = cmd.cdb_and_data();
                let reply = handler.handle(cdb, data);
                ring.complete(cmd, &reply)?;
                handled += 1;
            }
            RingEntry::TaskManagement(tmr) => {
                // Commands run to completion before the next entry is read,
                // so nothing named here is still queued.
                log::info!(
                    "task management {} for commands {:?}",
                    tmr.kind,
                    tmr.cmd_ids
                );
            }
        }
    }
    Ok(handled)
}

/// Serve `ring` of `uio` until `stop` becomes readable.
pub fn serve<H: CommandHandler + ?Sized>(
    uio: &UioDevice,
    ring: &mut Ring,
    handler: &H,
    stop: BorrowedFd<'_>,
) -> Result<(), ServeError> {
    loop {
        // Entries may already be waiting (e.g. after a restart), so drain
        // before the first wait.
        drain(ring, handler)?;
        if ring.take_notify() {
            uio.notify()?;
        }
        match uio.wait(Some(stop), None)? {
            Wake::Other => return Ok(()),
            Wake::Kernel | Wake::Timeout => {}
        }
    }
}
