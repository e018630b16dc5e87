//! A command handed to the [`AsyncEmulator`](crate::AsyncEmulator) with
//! the means to answer it later.

use crate::data_buffer::DataBuffer;
use crate::response::ScsiResponse;

/// One command for [`AsyncEmulator::start`](crate::AsyncEmulator::start):
/// it owns the CDB and the data buffer until it is answered, exactly once,
/// from whichever thread finishes the command. A TCMU ring's
/// `PendingCommand` is one (feature `tcmu`); a test or another transport
/// implements it over its own buffers.
pub trait Completion: Send + 'static {
    /// The CDB and the data buffer, at once.
    fn parts(&mut self) -> (&[u8], &mut (dyn DataBuffer + Send));

    /// Answer the command. `descriptor_sense` says which sense format the
    /// unit uses now (D_SENSE; see
    /// [`ScsiResponse::sense_bytes`](crate::ScsiResponse::sense_bytes)).
    fn complete(self, response: ScsiResponse, descriptor_sense: bool);
}
