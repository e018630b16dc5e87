//! An asynchronous device seen as a synchronous one.

use crate::async_block_device::AsyncBlockDevice;
use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::block_on::block_on;
use crate::device_capabilities::DeviceCapabilities;
use crate::extent::{Extent, ExtentStatus};
use crate::write_flags::WriteFlags;

/// The synchronous view of an [`AsyncBlockDevice`]: each call waits for
/// the device's future on the calling thread. The
/// [`AsyncEmulator`](crate::AsyncEmulator) runs the rare multi-step
/// commands (COMPARE AND WRITE, VERIFY, EXTENDED COPY, ...) through it; it
/// also lets synchronous tools use an asynchronous device.
///
/// It dereferences to the device, so the device's own methods stay at hand.
#[derive(Debug)]
pub struct Blocking<D>(pub D);

impl<D> std::ops::Deref for Blocking<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.0
    }
}

#[deny(clippy::missing_trait_methods)]
impl<D: AsyncBlockDevice> BlockDevice for Blocking<D> {
    fn block_size(&self) -> u32 {
        self.0.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.0.num_blocks()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        block_on(self.0.read(lba, buf))
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        block_on(self.0.write(lba, buf))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.0.capabilities()
    }
    fn product_name(&self) -> &str {
        self.0.product_name()
    }
    fn flush(&self) -> Result<(), BlockError> {
        block_on(self.0.flush())
    }
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        block_on(self.0.read_vectored(lba, bufs))
    }
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        block_on(self.0.write_vectored(lba, bufs, flags))
    }
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        block_on(self.0.unmap(extent))
    }
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        block_on(self.0.write_zeroes(extent))
    }
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        block_on(self.0.lba_status(lba))
    }
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        block_on(self.0.compare_and_write(lba, compare, write))
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        self.0.resize(num_blocks)
    }
}
