//! The trait a storage backend implements to become a SCSI disk.

use crate::block_error::BlockError;
use crate::device_capabilities::DeviceCapabilities;
use crate::extent::{Extent, ExtentStatus};
use crate::write_flags::WriteFlags;

/// A block device: fixed-size blocks addressed by LBA.
///
/// Only the geometry, `read` and `write` are required; everything else has
/// a default. What the device can do beyond that it declares in
/// [`capabilities`](Self::capabilities); the emulator calls an optional
/// method only when its capability is declared and emulates the rest.
/// Buffers are always a whole number of blocks and lie inside the device
/// (the SCSI layer checks the range before calling).
///
/// The methods take `&self` and the trait requires `Send + Sync`: the
/// server may call them from several threads at once, also for overlapping
/// ranges, exactly as an initiator may issue overlapping commands. A device
/// that needs mutual exclusion provides it inside.
///
/// A device that wraps another one implements
/// [`DeviceFilter`](crate::DeviceFilter) instead, which forwards every
/// method it does not override.
pub trait BlockDevice: Send + Sync {
    /// Size of one logical block in bytes (512, 1024, 2048 or 4096).
    fn block_size(&self) -> u32;

    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;

    /// Fill `buf` with the blocks starting at `lba`.
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Store `buf` at the blocks starting at `lba`.
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;

    /// What the device can do beyond reading and writing; asked once, when
    /// the emulator is built. The default declares nothing.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
    }

    /// A short product name for INQUIRY (at most 16 ASCII characters are used).
    fn product_name(&self) -> &str {
        "block device"
    }

    /// Make every completed write durable. The default has nothing to do
    /// (a device without a volatile write cache).
    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    /// Fill `bufs`, one after the other, from the blocks starting at `lba`
    /// (each buffer a whole number of blocks): one call for a command whose
    /// data is scattered over several ring segments. The default reads
    /// each buffer in turn; a file-like device overrides it with one
    /// vectored system call.
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let bs = u64::from(self.block_size().max(1));
        let mut at = lba;
        for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
            self.read(at, buf)?;
            at += buf.len() as u64 / bs;
        }
        Ok(())
    }

    /// Store `bufs`, one after the other, at the blocks starting at `lba`
    /// (each a whole number of blocks): the one write entry the SCSI layer
    /// calls, with the write's `flags`. With [`WriteFlags::fua`] the data
    /// must be durable when the call returns. The default writes each
    /// buffer in turn, then flushes for FUA.
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let bs = u64::from(self.block_size().max(1));
        let mut at = lba;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            self.write(at, buf)?;
            at += buf.len() as u64 / bs;
        }
        if flags.fua { self.flush() } else { Ok(()) }
    }

    /// Deallocate the blocks of `extent`; called only when
    /// [`DeviceCapabilities::unmap`] is declared.
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let _ = extent;
        Err(BlockError::Unsupported)
    }

    /// Set the blocks of `extent` to zeros. The default writes zero
    /// buffers of up to 1 MiB; a device declaring
    /// [`DeviceCapabilities::write_zeroes`] does it natively.
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        let bs = self.block_size() as u64;
        if bs == 0 {
            return Err(BlockError::Unsupported);
        }
        let per_call = ((1 << 20) / bs).max(1);
        let zeros = vec![0u8; (per_call.min(extent.blocks) * bs) as usize];
        let mut done = 0;
        while done < extent.blocks {
            let n = per_call.min(extent.blocks - done);
            self.write(extent.lba + done, &zeros[..(n * bs) as usize])?;
            done += n;
        }
        Ok(())
    }

    /// The provisioning status of the extent that starts at `lba`: how
    /// many blocks from `lba` (at least one) share it, and whether they are
    /// mapped or deallocated. Called only when
    /// [`DeviceCapabilities::lba_status`] is declared; such a device
    /// answers for every LBA on the device.
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        let _ = lba;
        Err(BlockError::Unsupported)
    }

    /// Atomically compare the blocks at `lba` with `compare` and, if they
    /// are equal, write `write` there (both the same length). `Ok(None)`:
    /// written; `Ok(Some(offset))`: the first differing byte, nothing
    /// written. Called only when [`DeviceCapabilities::compare_and_write`]
    /// is declared.
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        let _ = (lba, compare, write);
        Err(BlockError::Unsupported)
    }

    /// Change the number of blocks to `num_blocks` (grow or shrink), e.g.
    /// because the kernel's device size (`attrib/dev_size`) was changed.
    /// After `Ok`, [`num_blocks`](Self::num_blocks) returns the new value;
    /// blocks beyond the old end read as zeros (or as what an external
    /// store already holds there). An error refuses the change. The
    /// default refuses with `Unsupported`.
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let _ = num_blocks;
        Err(BlockError::Unsupported)
    }
}
