//! What the harness asks of the served emulator besides commands, the same
//! for a synchronous and an asynchronous device.

use crate::{
    AsyncBlockDevice, AsyncEmulator, BlockDevice, BlockError, DeviceCapabilities, Emulator,
};

/// The served unit, without its device's type.
pub(super) trait Unit: Send + Sync {
    fn block_size(&self) -> u32;
    fn num_blocks(&self) -> u64;
    fn capabilities(&self) -> DeviceCapabilities;
    /// [`Emulator::resize`]: the device's resize and the unit attention.
    fn resize(&self, bytes: u64) -> Result<(), BlockError>;
}

impl<D: BlockDevice + 'static> Unit for Emulator<D> {
    fn block_size(&self) -> u32 {
        self.device().block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.device().num_blocks()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.device().capabilities()
    }
    fn resize(&self, bytes: u64) -> Result<(), BlockError> {
        Emulator::resize(self, bytes)
    }
}

impl<D: AsyncBlockDevice> Unit for AsyncEmulator<D> {
    fn block_size(&self) -> u32 {
        self.device().block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.device().num_blocks()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.device().capabilities()
    }
    fn resize(&self, bytes: u64) -> Result<(), BlockError> {
        self.emulator().resize(bytes)
    }
}
