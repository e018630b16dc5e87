//! The qcow2 device: the imago image behind a lock, and the block device
//! it is.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use imago::FormatAccess;
use imago::file::File;
use imago::format::PreallocateMode;
use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, Extent};

/// Largest zero buffer written at once when zeroing a version 2 image
/// (which has no zero clusters).
const MAX_ZERO_BUFFER: u64 = 1 << 20;

/// A disk backed by a qcow2 image, read and written through the `imago`
/// crate.
///
/// Block `n` is at byte `n * block_size` of the image's virtual disk.
/// Reads and writes of several threads run concurrently inside imago;
/// the operations that can drop clusters another request is using
/// (unmap, zeroing, resizing) take the image for themselves.
///
/// New clusters and metadata updates (L2 tables, refcounts) are cached
/// by imago and the page cache, so the device reports a write cache:
/// [`flush`](BlockDevice::flush) writes imago's metadata back and
/// `fsync`s the image (and an external data file). Dropping the device
/// does the same.
///
/// On version 3 images (`compat=1.1`, qemu-img's default) `unmap`
/// discards clusters, which then read as zeros (also over a backing
/// file), and `write_zeroes` marks whole clusters as zero; both fall back
/// to writing zeros for partial clusters. Version 2 images have no zero
/// clusters: they declare neither, and zeroing writes zeros.
///
/// ```no_run
/// use block_backends::{QcowDevice, QcowOptions};
/// use scsi_emu::BlockDevice;
///
/// // Made with: qemu-img create -f qcow2 /srv/disk.qcow2 1G
/// let disk = QcowDevice::open("/srv/disk.qcow2", QcowOptions::new(512))?;
/// assert_eq!(disk.num_blocks(), 2 << 20);
/// disk.write(7, &[0x5a; 512])?;
/// disk.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct QcowDevice {
    /// Shared by reads, writes and flushes; exclusive for unmap, zeroing
    /// and resizing, which imago allows only with `&mut` (or while no
    /// other request can hold a mapping).
    pub(super) image: RwLock<FormatAccess<File>>,
    pub(super) path: PathBuf,
    pub(super) block_size: u32,
    /// Changes only on [`BlockDevice::resize`], under the exclusive lock.
    pub(super) num_blocks: AtomicU64,
    pub(super) read_only: bool,
    /// The qcow2 version, 2 or 3.
    pub(super) version: u32,
    /// The backing file named in the image header, if any.
    pub(super) backing_file: Option<String>,
}

impl QcowDevice {
    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the disk (the image's virtual size) in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.num_blocks() * u64::from(self.block_size)
    }

    /// The image's qcow2 version: 2 (`compat=0.10`) or 3 (`compat=1.1`).
    pub fn qcow2_version(&self) -> u32 {
        self.version
    }

    /// The backing file as the image header names it (relative names
    /// are relative to the image), or `None` without one.
    pub fn backing_file(&self) -> Option<&str> {
        self.backing_file.as_deref()
    }

    fn shared(&self) -> Result<RwLockReadGuard<'_, FormatAccess<File>>, BlockError> {
        self.image.read().map_err(|_| self.poisoned())
    }

    fn exclusive(&self) -> Result<RwLockWriteGuard<'_, FormatAccess<File>>, BlockError> {
        self.image.write().map_err(|_| self.poisoned())
    }

    /// Only a panic inside imago while it changed the image's mappings
    /// poisons the lock; its metadata in memory may then be half-changed,
    /// so no more I/O is risked.
    fn poisoned(&self) -> BlockError {
        log::error!(
            "{}: an earlier unmap or resize panicked; refusing I/O to the image",
            self.path.display()
        );
        BlockError::Medium
    }

    /// Byte offset and length of `blocks` blocks at `lba`, or `OutOfRange`
    /// unless they lie inside the disk. Called with the lock held, so the
    /// size cannot change before the request is made.
    fn block_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BlockError> {
        match lba.checked_add(blocks) {
            // Cannot overflow: the disk's size in bytes fits in a u64.
            Some(end) if end <= self.num_blocks() => {
                let block_size = u64::from(self.block_size);
                Ok((lba * block_size, blocks * block_size))
            }
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Byte offset of a buffer of `len` bytes at `lba`, or `OutOfRange`
    /// unless it is whole blocks inside the disk.
    fn buffer_offset(&self, lba: u64, len: usize) -> Result<u64, BlockError> {
        let block_size = u64::from(self.block_size);
        let len = len as u64;
        if len % block_size != 0 {
            return Err(BlockError::OutOfRange);
        }
        self.block_range(lba, len / block_size)
            .map(|(offset, _)| offset)
    }

    fn check_writable(&self) -> Result<(), BlockError> {
        if self.read_only {
            Err(BlockError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The error for a failed imago call, logged with its message (which
    /// the `BlockError` cannot carry). imago's own errors (corrupt
    /// metadata, say) carry no errno and become `Medium`.
    fn failed(&self, what: &str, offset: u64, len: u64, err: io::Error) -> BlockError {
        log::warn!(
            "{}: {what} of {len} bytes at byte {offset} failed: {err}",
            self.path.display()
        );
        BlockError::from(err)
    }

    /// As [`failed`](Self::failed), but an operation imago does not do
    /// on this image is `Unsupported`.
    fn failed_optional(&self, what: &str, offset: u64, len: u64, err: io::Error) -> BlockError {
        if err.kind() == io::ErrorKind::Unsupported && err.raw_os_error().is_none() {
            log::info!("{}: {what} not supported: {err}", self.path.display());
            return BlockError::Unsupported;
        }
        self.failed(what, offset, len, err)
    }

    /// Write imago's cached metadata to the file, then `fsync` it.
    fn flush_and_sync(image: &FormatAccess<File>) -> io::Result<()> {
        image.flush()?;
        image.sync()
    }
}

impl BlockDevice for QcowDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    fn product_name(&self) -> &str {
        "qcow2 image"
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // Zero clusters exist from version 3 on; imago refuses to discard
        // or zero on version 2.
        let native = !self.read_only && self.version >= 3;
        DeviceCapabilities::new()
            .read_only(self.read_only)
            .write_cache(!self.read_only)
            .unmap(native)
            .unmap_reads_zeroes(native)
            .write_zeroes(native)
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let image = self.shared()?;
        let offset = self.buffer_offset(lba, buf.len())?;
        let len = buf.len() as u64;
        image
            .read(buf, offset)
            .map_err(|e| self.failed("read", offset, len, e))
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let image = self.shared()?;
        let offset = self.buffer_offset(lba, buf.len())?;
        self.check_writable()?;
        image
            .write(buf, offset)
            .map_err(|e| self.failed("write", offset, buf.len() as u64, e))
    }

    fn flush(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        let image = self.shared()?;
        Self::flush_and_sync(&image).map_err(|e| self.failed("flush", 0, 0, e))
    }

    /// Discards the clusters the extent covers wholly; the parts of
    /// clusters at its ends are zeroed. Either way the blocks read as
    /// zeros afterwards, also over a backing file.
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let mut image = self.exclusive()?;
        let (offset, len) = self.block_range(extent.lba, extent.blocks)?;
        self.check_writable()?;
        if len == 0 {
            return Ok(());
        }
        image
            .discard_to_zero(offset, len)
            .map_err(|e| self.failed_optional("discard", offset, len, e))
    }

    /// Marks whole clusters as zero clusters (version 3); writes zeros
    /// elsewhere, and on version 2 images.
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        // Exclusive: zeroing a cluster under a concurrent write to it
        // could leave neither the zeros nor the write's data.
        let image = self.exclusive()?;
        let (offset, len) = self.block_range(extent.lba, extent.blocks)?;
        self.check_writable()?;
        if len == 0 {
            return Ok(());
        }
        if self.version >= 3 {
            return image
                .write_zeroes(offset, len)
                .map_err(|e| self.failed("write zeroes", offset, len, e));
        }
        let zeros = vec![0u8; len.min(MAX_ZERO_BUFFER) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MAX_ZERO_BUFFER);
            image
                .write(&zeros[..n as usize], offset + done)
                .map_err(|e| self.failed("write", offset + done, n, e))?;
            done += n;
        }
        Ok(())
    }

    /// Sets the image's virtual size. Growing makes the new blocks read
    /// as zeros (also where a longer backing file has data); shrinking
    /// discards the clusters beyond the new end. Durable when it returns.
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let bytes = u64::from(self.block_size)
            .checked_mul(num_blocks)
            .filter(|&n| n > 0)
            .ok_or(BlockError::OutOfRange)?;
        self.check_writable()?;
        let mut image = self.exclusive()?;
        let resized = image.resize(bytes, PreallocateMode::Zero);
        // The size imago has now, also after a failure part of the way.
        let now = image.size() / u64::from(self.block_size);
        let old = self.num_blocks.swap(now, Ordering::AcqRel);
        resized
            .and_then(|()| Self::flush_and_sync(&image))
            .map_err(|e| self.failed_optional("resize", 0, bytes, e))?;
        log::info!(
            "{}: resized from {old} to {num_blocks} blocks",
            self.path.display()
        );
        Ok(())
    }
}

impl Drop for QcowDevice {
    /// Writes imago's cached metadata back and syncs, logging a failure
    /// (imago's own flush on drop reports only through `tracing`).
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        // Poisoned: imago's own drop still writes its metadata back.
        let Ok(image) = self.image.get_mut() else {
            return;
        };
        if let Err(e) = Self::flush_and_sync(image) {
            log::error!(
                "{}: flushing the image on close failed: {e}",
                self.path.display()
            );
        }
    }
}
