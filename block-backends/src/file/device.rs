//! The file device: its state, its I/O paths (positioned, vectored,
//! direct through aligned buffers, writes serialized where the kernel would
//! serialize them anyway) and the block device it is.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};
use nix::sys::uio::{preadv, pwritev};
use nix::unistd::{Whence, lseek};
use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, Extent, ExtentStatus, WriteFlags};

use super::aligned::{AlignedBuf, is_aligned};
use super::options::FileKind;

/// Buffers of one command passed to `preadv`/`pwritev` without allocating
/// (the kernel joins adjacent data area blocks, so commands have few).
pub(super) const INLINE_SLICES: usize = 16;

/// Largest bounce or zero buffer allocated for one request; longer
/// requests are done in pieces of this size.
pub(super) const MAX_BUFFER: usize = 1 << 20;

/// A disk backed by a regular file or a block device.
///
/// Reads and writes go to the same byte offsets in the file (block `n` is
/// at `n * block_size`). Writes land in the page cache, a volatile cache
/// that [`flush`](BlockDevice::flush) empties with `fdatasync`, so the
/// device reports a write cache; FUA writes go through a second descriptor
/// opened with `O_DSYNC` and are durable when they return.
///
/// On regular files `unmap` punches holes (the file becomes sparse again
/// and the blocks read as zeros) and `write_zeroes` uses
/// `FALLOC_FL_ZERO_RANGE`; a file system without these falls back to
/// writing zeros. Block devices zero ranges the same way but do not
/// unmap (discarding would need an ioctl).
///
/// A file truncated behind the device's back makes reads beyond its new
/// end fail with [`BlockError::Medium`]; writes there grow the file
/// again. A file removed while open stays usable (the open descriptor
/// keeps it), as with any Unix program.
///
/// ```
/// use block_backends::{FileDevice, FileOptions};
/// use scsi_emu::BlockDevice;
///
/// let path = std::env::temp_dir().join(format!("doc-file-{}.img", std::process::id()));
/// let options = FileOptions { size: Some(1 << 20), create: true, ..FileOptions::new(512) };
/// let disk = FileDevice::open(&path, options)?;
/// assert_eq!(disk.num_blocks(), 2048);
///
/// disk.write(7, &[0x5a; 512])?;
/// let mut block = [0u8; 512];
/// disk.read(7, &mut block)?;
/// assert_eq!(block, [0x5a; 512]);
/// assert_eq!(std::fs::read(&path)?[7 * 512], 0x5a);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileDevice {
    pub(super) file: File,
    /// The same file opened with `O_DSYNC`, for FUA writes; `None` when
    /// read-only or when it could not be reopened (FUA then syncs).
    pub(super) dsync: Option<File>,
    pub(super) path: PathBuf,
    pub(super) kind: FileKind,
    pub(super) block_size: u32,
    /// Changes only on [`BlockDevice::resize`].
    pub(super) num_blocks: AtomicU64,
    pub(super) read_only: bool,
    pub(super) direct: bool,
    /// Cleared once the file system refuses `FALLOC_FL_ZERO_RANGE`.
    pub(super) zero_range: AtomicBool,
    /// Cleared once the file system refuses `FALLOC_FL_PUNCH_HOLE`.
    pub(super) punch_hole: AtomicBool,
    /// Held across buffered writes to a regular file. The kernel runs
    /// them one at a time anyway (under the inode's lock, exclusively, on
    /// every common file system), but waiting there it spins on the CPU
    /// the writer needs; waiting here sleeps. Direct I/O and block devices
    /// write in parallel and take no lock.
    pub(super) write_lock: Option<Mutex<()>>,
}

impl FileDevice {
    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a regular file or a block device.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Size of the disk in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.num_blocks() * u64::from(self.block_size)
    }

    /// Whether I/O bypasses the page cache (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes of storage the file occupies (its allocated blocks); less
    /// than [`len_bytes`](Self::len_bytes) for a sparse file. Not
    /// meaningful for block devices.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        // st_blocks counts 512-byte units whatever the file system's block size.
        Ok(self.file.metadata()?.blocks() * 512)
    }

    /// Byte offset of `len` bytes at `lba`, or `OutOfRange` unless they are
    /// whole blocks inside the disk.
    pub(super) fn offset(&self, lba: u64, len: usize) -> Result<u64, BlockError> {
        let block_size = u64::from(self.block_size);
        let len = len as u64;
        if len % block_size != 0 {
            return Err(BlockError::OutOfRange);
        }
        self.block_range(lba, len / block_size).map(|(off, _)| off)
    }

    /// Byte offset and length of `blocks` blocks at `lba`, or `OutOfRange`.
    fn block_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BlockError> {
        match lba.checked_add(blocks) {
            // Cannot overflow: the disk's size fits in an i64.
            Some(end) if end <= self.num_blocks() => {
                let block_size = u64::from(self.block_size);
                Ok((lba * block_size, blocks * block_size))
            }
            _ => Err(BlockError::OutOfRange),
        }
    }

    pub(super) fn check_writable(&self) -> Result<(), BlockError> {
        if self.read_only {
            Err(BlockError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                log::warn!(
                    "{}: read at byte {offset} past the end of the file: was it truncated?",
                    self.path.display()
                );
            }
            BlockError::from(e)
        })
    }

    /// Read into `buf` from `offset`, through an aligned bounce buffer if
    /// direct I/O cannot use `buf` itself.
    fn read_bytes(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        if !self.direct || is_aligned(buf) {
            return self.read_at(buf, offset);
        }
        let mut bounce = AlignedBuf::zeroed(buf.len().min(MAX_BUFFER));
        let mut pos = offset;
        for piece in buf.chunks_mut(MAX_BUFFER) {
            let tmp = &mut bounce.as_mut_slice()[..piece.len()];
            self.read_at(tmp, pos)?;
            piece.copy_from_slice(tmp);
            pos += piece.len() as u64;
        }
        Ok(())
    }

    /// Write `buf` at `offset` through `file` (the plain or the O_DSYNC
    /// descriptor), bouncing unaligned buffers for direct I/O.
    fn write_bytes(&self, file: &File, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        let _serial = self.serialize_write();
        if !self.direct || is_aligned(buf) {
            return file.write_all_at(buf, offset).map_err(BlockError::from);
        }
        let mut bounce = AlignedBuf::zeroed(buf.len().min(MAX_BUFFER));
        let mut pos = offset;
        for piece in buf.chunks(MAX_BUFFER) {
            let tmp = &mut bounce.as_mut_slice()[..piece.len()];
            tmp.copy_from_slice(piece);
            file.write_all_at(tmp, pos).map_err(BlockError::from)?;
            pos += piece.len() as u64;
        }
        Ok(())
    }

    /// The buffered-write lock, when this file has one.
    fn serialize_write(&self) -> Option<MutexGuard<'_, ()>> {
        let lock = self.write_lock.as_ref()?;
        // Nothing is guarded but the order of writes: a panic elsewhere
        // leaves nothing to repair.
        Some(lock.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Write `len` zero bytes at `offset` (the fallback when the file
    /// system cannot zero or punch ranges itself).
    fn write_zero_bytes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let zeros = AlignedBuf::zeroed((len as usize).min(MAX_BUFFER));
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MAX_BUFFER as u64) as usize;
            self.file
                .write_all_at(&zeros.as_slice()[..n], offset + done)
                .map_err(BlockError::from)?;
            done += n as u64;
        }
        Ok(())
    }

    /// `fallocate` with `flags` unless `supported` says the file system
    /// refused them before; `Ok(false)` when it does not support them.
    fn try_fallocate(
        &self,
        supported: &AtomicBool,
        flags: FallocateFlags,
        offset: u64,
        len: u64,
    ) -> Result<bool, BlockError> {
        if !supported.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // Offsets fit in an off_t: the disk's size was checked at open.
        match fallocate(self.file.as_raw_fd(), flags, offset as i64, len as i64) {
            Ok(()) => Ok(true),
            Err(Errno::EOPNOTSUPP) => {
                log::info!(
                    "{}: fallocate {flags:?} not supported, writing zeros instead",
                    self.path.display()
                );
                supported.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(errno) => Err(BlockError::from_errno(errno as i32)),
        }
    }
}

impl BlockDevice for FileDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// A regular file is truncated or extended (sparse) to the new size;
    /// a block device keeps its size, and the disk may take any size up to
    /// it.
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let bytes = u64::from(self.block_size)
            .checked_mul(num_blocks)
            .filter(|&n| n > 0)
            .ok_or(BlockError::OutOfRange)?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        match self.kind {
            FileKind::Regular => self.file.set_len(bytes)?,
            FileKind::BlockDevice => {
                let available = (&self.file).seek(SeekFrom::End(0))?;
                if bytes > available {
                    return Err(BlockError::OutOfRange);
                }
            }
        }
        let old = self.num_blocks.swap(num_blocks, Ordering::AcqRel);
        log::info!(
            "{}: resized from {old} to {num_blocks} blocks",
            self.path.display()
        );
        Ok(())
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let offset = self.offset(lba, buf.len())?;
        self.read_bytes(buf, offset)
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let offset = self.offset(lba, buf.len())?;
        self.check_writable()?;
        self.write_bytes(&self.file, buf, offset)
    }

    /// One `preadv` for a command scattered over several buffers.
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let offset = self.offset(lba, total)?;
        if self.direct && !bufs.iter().all(|b| is_aligned(b)) {
            return read_each(self, lba, bufs);
        }
        // The slices on the stack for the usual few buffers: no allocation
        // per command.
        let count = bufs.len();
        let mut inline: [IoSliceMut<'_>; INLINE_SLICES];
        let mut spilled: Vec<IoSliceMut<'_>>;
        let mut rest = if count <= INLINE_SLICES {
            let mut given = bufs.iter_mut();
            inline = std::array::from_fn(|_| {
                IoSliceMut::new(given.next().map_or(&mut [][..], |b| &mut b[..]))
            });
            &mut inline[..count]
        } else {
            spilled = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            &mut spilled[..]
        };
        let mut pos = offset;
        while !rest.is_empty() {
            let n = match preadv(&self.file, rest, pos as i64) {
                Ok(0) => {
                    log::warn!(
                        "{}: read at byte {pos} past the end of the file: was it truncated?",
                        self.path.display()
                    );
                    return Err(BlockError::Medium);
                }
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(BlockError::from_errno(errno as i32)),
            };
            pos += n as u64;
            IoSliceMut::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// One `pwritev` (through the O_DSYNC descriptor for FUA).
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let fua = flags.fua;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let offset = self.offset(lba, total)?;
        self.check_writable()?;
        if self.direct && !bufs.iter().all(|b| is_aligned(b)) {
            return write_each(self, lba, bufs, fua);
        }
        let file = match (&self.dsync, fua) {
            (Some(dsync), true) => dsync,
            _ => &self.file,
        };
        let mut inline = [IoSlice::new(&[]); INLINE_SLICES];
        let mut spilled: Vec<IoSlice<'_>>;
        let mut rest = if bufs.len() <= INLINE_SLICES {
            for (slice, buf) in inline.iter_mut().zip(bufs) {
                *slice = IoSlice::new(buf);
            }
            &mut inline[..bufs.len()]
        } else {
            spilled = bufs.iter().map(|b| IoSlice::new(b)).collect();
            &mut spilled[..]
        };
        let mut pos = offset;
        let _serial = self.serialize_write();
        while !rest.is_empty() {
            let n = match pwritev(file, rest, pos as i64) {
                Ok(0) => return Err(BlockError::NoSpace),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(BlockError::from_errno(errno as i32)),
            };
            pos += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
        if fua && self.dsync.is_none() {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(BlockError::from)
    }

    /// The page cache holds written data until a flush (a write cache).
    /// Regular files punch holes (which read as zeros) and report them;
    /// block devices do neither. No atomic writes: a crash or an error in
    /// the middle of a `pwritev` can leave part of it stored.
    fn capabilities(&self) -> DeviceCapabilities {
        let regular = self.kind == FileKind::Regular;
        DeviceCapabilities::new()
            .read_only(self.read_only)
            .write_cache(true)
            .unmap(regular && !self.read_only)
            .unmap_reads_zeroes(regular)
            .write_zeroes(!self.read_only)
            .lba_status(regular)
    }

    fn product_name(&self) -> &str {
        match self.kind {
            FileKind::Regular => "file",
            FileKind::BlockDevice => "block device",
        }
    }

    /// Punches a hole, giving the space back to the file system.
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let (offset, len) = self.block_range(extent.lba, extent.blocks)?;
        self.check_writable()?;
        if self.kind != FileKind::Regular {
            return Err(BlockError::Unsupported);
        }
        if len == 0 {
            return Ok(());
        }
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if self.try_fallocate(&self.punch_hole, flags, offset, len)? {
            return Ok(());
        }
        // Unmapped blocks must still read as zeros (unmap_reads_zeroes).
        self.write_zero_bytes(offset, len)
    }

    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        let (offset, len) = self.block_range(extent.lba, extent.blocks)?;
        self.check_writable()?;
        if len == 0 {
            return Ok(());
        }
        let flags = FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if self.try_fallocate(&self.zero_range, flags, offset, len)? {
            return Ok(());
        }
        self.write_zero_bytes(offset, len)
    }

    /// For regular files, from the file system's holes (`SEEK_DATA` and
    /// `SEEK_HOLE`); a block that holds any data counts as mapped. Block
    /// devices do not tell.
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        if self.kind != FileKind::Regular {
            return Err(BlockError::Unsupported);
        }
        if lba >= self.num_blocks() {
            return Err(BlockError::OutOfRange);
        }
        let block_size = u64::from(self.block_size);
        let start = lba * block_size;
        let end = self.len_bytes();
        let seek =
            |whence| lseek(self.file.as_raw_fd(), start as i64, whence).map(|pos| pos as u64);
        let (mapped, extent_end) = match seek(Whence::SeekData) {
            Ok(data) if data / block_size > lba => (false, data / block_size * block_size),
            // Data within this block: mapped up to the next hole.
            Ok(_) => match seek(Whence::SeekHole) {
                Ok(hole) => (true, hole.div_ceil(block_size) * block_size),
                Err(_) => (true, end),
            },
            // No data from here on (the file may also have been truncated).
            Err(Errno::ENXIO) => (false, end),
            // Holes not supported: everything is data.
            Err(_) => (true, end),
        };
        let extent_end = extent_end.clamp(start + block_size, end);
        let extent = Extent::new(lba, (extent_end - start) / block_size);
        Ok(if mapped {
            ExtentStatus::mapped(extent)
        } else {
            ExtentStatus::deallocated(extent)
        })
    }
}

/// Read each buffer in turn (direct I/O with unaligned buffers, which
/// then go through the bounce path one by one).
fn read_each(dev: &FileDevice, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
    let mut at = lba;
    for buf in bufs.iter_mut() {
        dev.read(at, buf)?;
        at += buf.len() as u64 / u64::from(dev.block_size);
    }
    Ok(())
}

/// Write each buffer in turn; see [`read_each`].
fn write_each(dev: &FileDevice, lba: u64, bufs: &[&[u8]], fua: bool) -> Result<(), BlockError> {
    let mut at = lba;
    for buf in bufs {
        if fua {
            dev.write_fua(at, buf)?;
        } else {
            dev.write(at, buf)?;
        }
        at += buf.len() as u64 / u64::from(dev.block_size);
    }
    Ok(())
}

impl FileDevice {
    /// One buffer, durable when this returns.
    fn write_fua(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let offset = self.offset(lba, buf.len())?;
        self.check_writable()?;
        match &self.dsync {
            // O_DSYNC syncs just this range, not every dirty page of the file.
            Some(dsync) => self.write_bytes(dsync, buf, offset),
            None => {
                self.write_bytes(&self.file, buf, offset)?;
                self.flush()
            }
        }
    }
}
