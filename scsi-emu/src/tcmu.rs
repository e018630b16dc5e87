//! Serving the emulator on a TCMU ring: the glue between `tcmu-core` and
//! this crate.

use tcmu_core::{CommandHandler, DataSegments, Reply};

use crate::{BlockDevice, DataBuffer, Emulator};

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

impl<D: BlockDevice> CommandHandler for Emulator<D> {
    fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply {
        let response = self.execute(cdb, data);
        // The sense format follows the control mode page's D_SENSE.
        let mut reply = match response.sense_bytes(self.descriptor_sense()) {
            Some(sense) => Reply::with_sense(response.status, &sense),
            None => Reply::status(response.status),
        };
        reply.data_in_len = response.data_in_len;
        reply
    }
}
