//! Devices that wrap another device: one forwarding mechanism, so a
//! wrapper cannot forget a method (and with it a capability or a fast
//! path such as one vectored call).

use std::sync::Arc;

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::device_capabilities::DeviceCapabilities;
use crate::extent::{Extent, ExtentStatus};
use crate::write_flags::WriteFlags;

/// A device that wraps another one (nbdkit's filters, in spirit): every
/// [`BlockDevice`] method has a default here that forwards to
/// [`inner`](Self::inner), and a type implementing `DeviceFilter` is a
/// `BlockDevice`. Override only what the wrapper changes.
///
/// ```
/// use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, DeviceFilter};
///
/// /// Counts reads, changes nothing else.
/// struct CountReads<D> {
///     inner: D,
///     reads: std::sync::atomic::AtomicU64,
/// }
///
/// impl<D: BlockDevice> DeviceFilter for CountReads<D> {
///     type Inner = D;
///     fn inner(&self) -> &D {
///         &self.inner
///     }
///     fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
///         self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         self.inner.read_vectored(lba, bufs)
///     }
///     fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
///         self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         self.inner.read(lba, buf)
///     }
/// }
/// ```
///
/// Call the methods through [`BlockDevice`]; with both traits imported a
/// method name is ambiguous.
pub trait DeviceFilter: Send + Sync {
    /// The wrapped device.
    type Inner: BlockDevice + ?Sized;

    /// The wrapped device.
    fn inner(&self) -> &Self::Inner;

    /// See [`BlockDevice::block_size`].
    fn block_size(&self) -> u32 {
        self.inner().block_size()
    }
    /// See [`BlockDevice::num_blocks`].
    fn num_blocks(&self) -> u64 {
        self.inner().num_blocks()
    }
    /// See [`BlockDevice::read`].
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner().read(lba, buf)
    }
    /// See [`BlockDevice::write`].
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.inner().write(lba, buf)
    }
    /// See [`BlockDevice::capabilities`].
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner().capabilities()
    }
    /// See [`BlockDevice::product_name`].
    fn product_name(&self) -> &str {
        self.inner().product_name()
    }
    /// See [`BlockDevice::flush`].
    fn flush(&self) -> Result<(), BlockError> {
        self.inner().flush()
    }
    /// See [`BlockDevice::read_vectored`].
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.inner().read_vectored(lba, bufs)
    }
    /// See [`BlockDevice::write_vectored`].
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        self.inner().write_vectored(lba, bufs, flags)
    }
    /// See [`BlockDevice::unmap`].
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        self.inner().unmap(extent)
    }
    /// See [`BlockDevice::write_zeroes`].
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        self.inner().write_zeroes(extent)
    }
    /// See [`BlockDevice::lba_status`].
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        self.inner().lba_status(lba)
    }
    /// See [`BlockDevice::compare_and_write`].
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        self.inner().compare_and_write(lba, compare, write)
    }
    /// See [`BlockDevice::resize`].
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        self.inner().resize(num_blocks)
    }
}

// Every method is listed: clippy's `missing_trait_methods` (denied here)
// fails the build if BlockDevice gains one that is not forwarded.
#[deny(clippy::missing_trait_methods)]
impl<F: DeviceFilter> BlockDevice for F {
    fn block_size(&self) -> u32 {
        DeviceFilter::block_size(self)
    }
    fn num_blocks(&self) -> u64 {
        DeviceFilter::num_blocks(self)
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        DeviceFilter::read(self, lba, buf)
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        DeviceFilter::write(self, lba, buf)
    }
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceFilter::capabilities(self)
    }
    fn product_name(&self) -> &str {
        DeviceFilter::product_name(self)
    }
    fn flush(&self) -> Result<(), BlockError> {
        DeviceFilter::flush(self)
    }
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        DeviceFilter::read_vectored(self, lba, bufs)
    }
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        DeviceFilter::write_vectored(self, lba, bufs, flags)
    }
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        DeviceFilter::unmap(self, extent)
    }
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        DeviceFilter::write_zeroes(self, extent)
    }
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        DeviceFilter::lba_status(self, lba)
    }
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        DeviceFilter::compare_and_write(self, lba, compare, write)
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        DeviceFilter::resize(self, num_blocks)
    }
}

/// A shared device is the device: everything forwards.
impl<T: BlockDevice + ?Sized> DeviceFilter for Arc<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}
