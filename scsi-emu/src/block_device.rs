//! The trait a storage backend implements to become a SCSI disk.

/// What went wrong in a backend call; the SCSI layer turns it into sense data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The request lies (partly) beyond the end of the device.
    #[error("request beyond the end of the device")]
    OutOfRange,
    /// The medium could not be read or written (unrecovered error).
    #[error("medium error")]
    Medium,
    /// A transient condition: the initiator should retry later.
    #[error("device busy, retry later")]
    Busy,
    /// The device is write protected.
    #[error("device is read-only")]
    ReadOnly,
    /// The backend has no space left to store the data.
    #[error("no space left on the backing store")]
    NoSpace,
    /// An operating-system error, with its errno.
    #[error("I/O error (errno {0})")]
    Io(i32),
    /// The device does not implement this operation.
    #[error("operation not supported by the device")]
    Unsupported,
}

impl From<std::io::Error> for BlockError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            _ if e.kind() == std::io::ErrorKind::StorageFull => BlockError::NoSpace,
            Some(errno) => BlockError::Io(errno),
            None => BlockError::Medium,
        }
    }
}

/// A block device: fixed-size blocks addressed by LBA.
///
/// Only the geometry, `read` and `write` are required; everything else has a
/// default. Buffers passed to `read` and `write` are always a whole number
/// of blocks and lie inside the device (the SCSI layer checks the range
/// before calling).
///
/// The methods take `&self` and the trait requires `Send + Sync`: the
/// server may call them from several threads at once, also for overlapping
/// ranges, exactly as an initiator may issue overlapping commands. A device
/// that needs mutual exclusion provides it inside.
pub trait BlockDevice: Send + Sync {
    /// Size of one logical block in bytes (512, 1024, 2048 or 4096).
    fn block_size(&self) -> u32;

    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;

    /// Fill `buf` with the blocks starting at `lba`.
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Store `buf` at the blocks starting at `lba`.
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;

    /// Store `buf` and make it durable before returning (SCSI FUA).
    /// The default writes, then flushes.
    fn write_fua(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.write(lba, buf)?;
        self.flush()
    }

    /// Make every completed write durable. The default has nothing to do
    /// (a device without a volatile cache).
    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    /// Whether the device has a volatile write cache that `flush` empties;
    /// reported as WCE in the caching mode page.
    fn write_cache(&self) -> bool {
        false
    }

    /// Whether the device refuses writes.
    fn read_only(&self) -> bool {
        false
    }

    /// A short product name for INQUIRY (at most 16 ASCII characters are used).
    fn product_name(&self) -> &str {
        "block device"
    }

    /// Whether [`unmap`](Self::unmap) is implemented (thin provisioning).
    fn can_unmap(&self) -> bool {
        false
    }

    /// Whether blocks read as zeros after [`unmap`](Self::unmap) (LBPRZ).
    fn unmap_reads_zeroes(&self) -> bool {
        false
    }

    /// Deallocate `blocks` blocks starting at `lba`; called only when
    /// [`can_unmap`](Self::can_unmap) says so.
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let _ = (lba, blocks);
        Err(BlockError::Unsupported)
    }

    /// Whether [`write_zeroes`](Self::write_zeroes) is implemented natively
    /// (cheaper than writing zero buffers).
    fn can_write_zeroes(&self) -> bool {
        false
    }

    /// Set `blocks` blocks starting at `lba` to zeros. The default writes
    /// zero buffers of up to 1 MiB.
    fn write_zeroes(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let bs = self.block_size() as u64;
        if bs == 0 {
            return Err(BlockError::Unsupported);
        }
        let per_call = ((1 << 20) / bs).max(1);
        let zeros = vec![0u8; (per_call.min(blocks) * bs) as usize];
        let mut done = 0;
        while done < blocks {
            let n = per_call.min(blocks - done);
            self.write(lba + done, &zeros[..(n * bs) as usize])?;
            done += n;
        }
        Ok(())
    }

    /// The provisioning status of the extent that starts at `lba`: how
    /// many blocks from `lba` (at least one) share it, and whether they
    /// are mapped (`true`) or deallocated (`false`). Devices that track
    /// allocation return `Some` for every LBA on the device; the default
    /// `None` means "not tracked".
    ///
    /// The emulator asks once for LBA 0 when it is built: GET LBA STATUS
    /// is supported (and listed by REPORT SUPPORTED OPERATION CODES) only
    /// if that answer is `Some`.
    fn lba_status(&self, lba: u64) -> Option<(u64, bool)> {
        let _ = lba;
        None
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
    /// (each a whole number of blocks), durable before returning when
    /// `fua`. The default writes each buffer in turn.
    fn write_vectored(&self, lba: u64, bufs: &[&[u8]], fua: bool) -> Result<(), BlockError> {
        let bs = u64::from(self.block_size().max(1));
        let mut at = lba;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            if fua {
                self.write_fua(at, buf)?;
            } else {
                self.write(at, buf)?;
            }
            at += buf.len() as u64 / bs;
        }
        Ok(())
    }

    /// Whether [`compare_and_write`](Self::compare_and_write) is implemented
    /// natively (atomic in the store itself, e.g. against other clients of
    /// a shared image). Otherwise the SCSI layer emulates COMPARE AND WRITE
    /// with a read, a compare and a write under a range lock, which is
    /// atomic against every command of this process.
    fn can_compare_and_write(&self) -> bool {
        false
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

    /// Atomically compare the blocks at `lba` with `compare` and, if they
    /// are equal, write `write` there (both the same length). `Ok(None)`:
    /// written; `Ok(Some(offset))`: the first differing byte, nothing
    /// written. Called only when
    /// [`can_compare_and_write`](Self::can_compare_and_write) says so.
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        let _ = (lba, compare, write);
        Err(BlockError::Unsupported)
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<T> {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn num_blocks(&self) -> u64 {
        (**self).num_blocks()
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        (**self).resize(num_blocks)
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read(lba, buf)
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write(lba, buf)
    }
    fn write_fua(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_fua(lba, buf)
    }
    fn flush(&self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn write_cache(&self) -> bool {
        (**self).write_cache()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn product_name(&self) -> &str {
        (**self).product_name()
    }
    fn can_unmap(&self) -> bool {
        (**self).can_unmap()
    }
    fn unmap_reads_zeroes(&self) -> bool {
        (**self).unmap_reads_zeroes()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        (**self).unmap(lba, blocks)
    }
    fn can_write_zeroes(&self) -> bool {
        (**self).can_write_zeroes()
    }
    fn write_zeroes(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        (**self).write_zeroes(lba, blocks)
    }
    fn lba_status(&self, lba: u64) -> Option<(u64, bool)> {
        (**self).lba_status(lba)
    }
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        (**self).read_vectored(lba, bufs)
    }
    fn write_vectored(&self, lba: u64, bufs: &[&[u8]], fua: bool) -> Result<(), BlockError> {
        (**self).write_vectored(lba, bufs, fua)
    }
    fn can_compare_and_write(&self) -> bool {
        (**self).can_compare_and_write()
    }
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        (**self).compare_and_write(lba, compare, write)
    }
}
