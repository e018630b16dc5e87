//! Serving the emulator on a TCMU ring: the glue between `tcmu-core` and
//! this crate.

use tcmu_core::{AsyncCommandHandler, CommandHandler, DataSegments, PendingCommand, Reply};

use crate::{
    AsyncBlockDevice, AsyncEmulator, BlockDevice, Completion, DataBuffer, Emulator, ScsiResponse,
};

/// A ring command's data buffer is a list of shared-memory segments.
impl DataBuffer for DataSegments {
    fn segment_count(&self) -> usize {
        self.count()
    }
    fn segment(&self, index: usize) -> &[u8] {
        DataSegments::segment(self, index)
    }
    fn segment_mut(&mut self, index: usize) -> &mut [u8] {
        DataSegments::segment_mut(self, index)
    }
    fn len(&self) -> usize {
        self.total_len() as usize
    }
    fn segments_mut<'a>(&'a mut self, out: &mut [&'a mut [u8]]) -> Option<usize> {
        DataSegments::segments_mut(self, out)
    }
}

/// The ring's reply for a response; the sense format follows the control
/// mode page's D_SENSE.
fn reply_of(response: &ScsiResponse, descriptor_sense: bool) -> Reply {
    let mut reply = match response.sense_bytes(descriptor_sense) {
        Some(sense) => Reply::with_sense(response.status, &sense),
        None => Reply::status(response.status),
    };
    reply.data_in_len = response.data_in_len;
    reply
}

impl<D: BlockDevice + 'static> CommandHandler for Emulator<D> {
    fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply {
        let response = self.execute(cdb, data);
        reply_of(&response, self.descriptor_sense())
    }
}

/// A ring command pending in the asynchronous emulator.
impl Completion for PendingCommand {
    fn parts(&mut self) -> (&[u8], &mut (dyn DataBuffer + Send)) {
        let (cdb, data) = self.cdb_and_data();
        (cdb, data)
    }
    fn complete(self, response: ScsiResponse, descriptor_sense: bool) {
        PendingCommand::complete(self, &reply_of(&response, descriptor_sense));
    }
}

impl<D: AsyncBlockDevice> AsyncCommandHandler for AsyncEmulator<D> {
    fn start(&self, cmd: PendingCommand) {
        AsyncEmulator::start(self, cmd);
    }
}
