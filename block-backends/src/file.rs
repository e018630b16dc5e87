//! Regular files and block devices as disks.
//!
//! [`FileDevice`] serves the blocks of a regular file (an image file) or of
//! a block device with positioned I/O, so requests from several threads
//! never share a file offset.
//!
//! Rules for the size of the disk:
//! - A regular file that exists keeps its size: without a requested size
//!   the disk is as large as the file, with one the two must be equal.
//!   The file is never grown or shrunk.
//! - A missing regular file is created only with
//!   [`FileOptions::create`], sparse (no data blocks allocated) and exactly
//!   as large as the requested size, which is then required.
//! - A block device may be larger than the requested size: the disk is
//!   then its first `size` bytes. Without a size, the whole device.
//!
//! Either way the size must be a whole, non-zero number of blocks.
//!
//! A block device is opened exclusively (`O_EXCL`): opening fails while it
//! is mounted or otherwise held exclusively, and it cannot be mounted while
//! served.

use std::fmt;
use std::fs::{File, FileType, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};
use nix::libc;
use nix::sys::uio::{preadv, pwritev};
use nix::unistd::{Whence, lseek};
use scsi_emu::{BlockDevice, BlockError};

/// Buffers of one command passed to `preadv`/`pwritev` without allocating
/// (the kernel joins adjacent data area blocks, so commands have few).
const INLINE_SLICES: usize = 16;

/// Memory alignment of buffers for direct I/O. A page satisfies every
/// device's DMA alignment; buffers that are not aligned this way pass
/// through an aligned bounce buffer.
const DIRECT_ALIGN: usize = 4096;

/// Largest bounce or zero buffer allocated for one request; longer
/// requests are done in pieces of this size.
const MAX_BUFFER: usize = 1 << 20;

/// How to open a [`FileDevice`].
///
/// ```
/// use block_backends::FileOptions;
///
/// let options = FileOptions {
///     size: Some(64 << 20),
///     create: true,
///     ..FileOptions::new(4096)
/// };
/// assert_eq!(options.block_size, 4096);
/// assert!(!options.read_only && !options.direct);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Logical block size in bytes: 512, 1024, 2048 or 4096.
    pub block_size: u32,
    /// Size of the disk in bytes; `None` takes the size of the file or
    /// device. See the [module documentation](self) for the rules.
    pub size: Option<u64>,
    /// Create a missing regular file (sparse, `size` bytes).
    pub create: bool,
    /// Open read-only; every write is refused with [`BlockError::ReadOnly`].
    pub read_only: bool,
    /// Bypass the page cache (`O_DIRECT`).
    pub direct: bool,
}

impl FileOptions {
    /// Options for an existing file or device with `block_size`-byte
    /// blocks, read-write, through the page cache.
    pub fn new(block_size: u32) -> FileOptions {
        FileOptions {
            block_size,
            size: None,
            create: false,
            read_only: false,
            direct: false,
        }
    }
}

impl Default for FileOptions {
    /// [`FileOptions::new`] with 512-byte blocks.
    fn default() -> FileOptions {
        FileOptions::new(512)
    }
}

/// What kind of file a [`FileDevice`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (an image file).
    Regular,
    /// A block device such as `/dev/sdb` or a partition.
    BlockDevice,
}

/// Why a [`FileDevice`] could not be opened.
#[derive(Debug)]
pub enum FileDeviceError {
    /// The block size is not a power of two between 512 and 4096.
    InvalidBlockSize(u32),
    /// The requested size is zero, not a multiple of the block size, or
    /// beyond the largest file offset.
    InvalidSize {
        /// The requested size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
    /// The file does not exist and `create` was not given.
    NotFound(PathBuf),
    /// The file does not exist and cannot be created without a size.
    CreateNeedsSize(PathBuf),
    /// Creating the file failed.
    Create {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Opening (or examining) the file failed.
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// What it is instead, e.g. "directory".
        kind: &'static str,
    },
    /// The file's own size is zero or not a multiple of the block size.
    UnusableSize {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
    /// A regular file's size differs from the requested size.
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        actual: u64,
        /// The requested size in bytes.
        requested: u64,
    },
    /// A block device is smaller than the requested size.
    TooSmall {
        /// The device.
        path: PathBuf,
        /// Its size in bytes.
        actual: u64,
        /// The requested size in bytes.
        requested: u64,
    },
    /// The file system or device refused direct I/O (`O_DIRECT`), or needs
    /// larger blocks for it.
    DirectUnsupported {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

impl fmt::Display for FileDeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FileDeviceError::*;
        match self {
            InvalidBlockSize(size) => write!(
                f,
                "invalid block size {size}: must be 512, 1024, 2048 or 4096"
            ),
            InvalidSize { size: 0, .. } => {
                f.write_str("invalid size 0: the disk must not be empty")
            }
            InvalidSize { size, block_size } if size % u64::from(*block_size) != 0 => write!(
                f,
                "invalid size {size}: not a multiple of the block size {block_size}"
            ),
            InvalidSize { size, .. } => write!(f, "invalid size {size}: too large for a file"),
            NotFound(path) => write!(f, "{} does not exist", path.display()),
            CreateNeedsSize(path) => write!(
                f,
                "{} does not exist and cannot be created without a size",
                path.display()
            ),
            Create { path, source } => write!(f, "cannot create {}: {source}", path.display()),
            Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            UnsupportedType { path, kind } => write!(
                f,
                "{} is a {kind}, not a regular file or block device",
                path.display()
            ),
            UnusableSize { path, size: 0, .. } => write!(f, "{} is empty", path.display()),
            UnusableSize {
                path,
                size,
                block_size,
            } => write!(
                f,
                "{} is {size} bytes, not a multiple of the block size {block_size}",
                path.display()
            ),
            SizeMismatch {
                path,
                actual,
                requested,
            } => write!(
                f,
                "{} is {actual} bytes but the requested size is {requested} bytes",
                path.display()
            ),
            TooSmall {
                path,
                actual,
                requested,
            } => write!(
                f,
                "block device {} has {actual} bytes, less than the requested {requested} bytes",
                path.display()
            ),
            DirectUnsupported { path, source } => write!(
                f,
                "{}: direct I/O (O_DIRECT) refused: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for FileDeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileDeviceError::Create { source, .. }
            | FileDeviceError::Open { source, .. }
            | FileDeviceError::DirectUnsupported { source, .. } => Some(source),
            _ => None,
        }
    }
}

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
    file: File,
    /// The same file opened with `O_DSYNC`, for FUA writes; `None` when
    /// read-only or when it could not be reopened (FUA then syncs).
    dsync: Option<File>,
    path: PathBuf,
    kind: FileKind,
    block_size: u32,
    /// Changes only on [`BlockDevice::resize`].
    num_blocks: AtomicU64,
    read_only: bool,
    direct: bool,
    /// Cleared once the file system refuses `FALLOC_FL_ZERO_RANGE`.
    zero_range: AtomicBool,
    /// Cleared once the file system refuses `FALLOC_FL_PUNCH_HOLE`.
    punch_hole: AtomicBool,
    /// Held across buffered writes to a regular file. The kernel runs
    /// them one at a time anyway (under the inode's lock, exclusively, on
    /// every common file system), but waiting there it spins on the CPU
    /// the writer needs; waiting here sleeps. Direct I/O and block devices
    /// write in parallel and take no lock.
    write_lock: Option<Mutex<()>>,
}

impl FileDevice {
    /// Opens (or, with [`FileOptions::create`], creates) the regular file
    /// or block device at `path` as a disk. See the
    /// [module documentation](self) for how its size is chosen.
    ///
    /// ```
    /// use block_backends::{FileDevice, FileDeviceError, FileOptions};
    ///
    /// let missing = std::env::temp_dir().join("surely-no-such-file.img");
    /// assert!(matches!(
    ///     FileDevice::open(&missing, FileOptions::new(512)),
    ///     Err(FileDeviceError::NotFound(_))
    /// ));
    /// ```
    pub fn open(
        path: impl AsRef<Path>,
        options: FileOptions,
    ) -> Result<FileDevice, FileDeviceError> {
        let path = path.as_ref();
        let block_size = options.block_size;
        if !block_size.is_power_of_two() || !(512..=4096).contains(&block_size) {
            return Err(FileDeviceError::InvalidBlockSize(block_size));
        }
        if let Some(size) = options.size {
            let off_max = i64::MAX as u64;
            if size == 0 || size % u64::from(block_size) != 0 || size > off_max {
                return Err(FileDeviceError::InvalidSize { size, block_size });
            }
        }

        // Look before opening: opening a FIFO would block.
        let mut created = false;
        let expected = match std::fs::metadata(path) {
            Ok(meta) => file_kind(path, meta.file_type())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !options.create {
                    return Err(FileDeviceError::NotFound(path.to_path_buf()));
                }
                let size = options
                    .size
                    .ok_or_else(|| FileDeviceError::CreateNeedsSize(path.to_path_buf()))?;
                created = create_sparse(path, size)?;
                FileKind::Regular
            }
            Err(e) => return Err(open_error(path, e)),
        };
        let result = FileDevice::open_as(path, expected, options);
        if result.is_err() && created {
            // Leave nothing behind from a failed attempt.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Open the existing file at `path`, a file of the `expected` kind.
    fn open_as(
        path: &Path,
        expected: FileKind,
        options: FileOptions,
    ) -> Result<FileDevice, FileDeviceError> {
        let block_size = options.block_size;
        // O_EXCL on a block device: refused while it is mounted or served
        // by someone else, and keeps them away while we serve it.
        let exclusive = match expected {
            FileKind::BlockDevice => libc::O_EXCL,
            FileKind::Regular => 0,
        };
        let file = open_file(path, options.read_only, options.direct, exclusive)
            .map_err(|e| direct_or_open_error(path, options.direct, e))?;
        let meta = file.metadata().map_err(|e| open_error(path, e))?;
        let kind = file_kind(path, meta.file_type())?;
        let actual = match kind {
            FileKind::Regular => meta.len(),
            // The size of a block device is where seeking to its end lands.
            FileKind::BlockDevice => (&file)
                .seek(SeekFrom::End(0))
                .map_err(|e| open_error(path, e))?,
        };
        let size = disk_size(path, kind, actual, options.size, block_size)?;

        let device = FileDevice {
            dsync: None,
            path: path.to_path_buf(),
            kind,
            block_size,
            num_blocks: AtomicU64::new(size / u64::from(block_size)),
            read_only: options.read_only,
            direct: options.direct,
            zero_range: AtomicBool::new(true),
            punch_hole: AtomicBool::new(true),
            write_lock: (kind == FileKind::Regular && !options.direct).then(|| Mutex::new(())),
            file,
        };
        if options.direct {
            device.probe_direct()?;
        }
        let dsync = if options.read_only {
            None
        } else {
            device.reopen_dsync()
        };
        Ok(FileDevice { dsync, ..device })
    }

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

    /// A direct read of the first block: fails with EINVAL when the
    /// backing store needs larger blocks (or does not do O_DIRECT at all).
    fn probe_direct(&self) -> Result<(), FileDeviceError> {
        let mut buf = AlignedBuf::zeroed(self.block_size as usize);
        match self.file.read_exact_at(buf.as_mut_slice(), 0) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Err(FileDeviceError::DirectUnsupported {
                    path: self.path.clone(),
                    source: e,
                })
            }
            // Any other failure (a bad sector, say) is the disk's business.
            _ => Ok(()),
        }
    }

    /// The same file, opened again with `O_DSYNC` through /proc (never by
    /// path: the path could now name another file). Without `O_EXCL`, which
    /// only keeps out other exclusive opens.
    fn reopen_dsync(&self) -> Option<File> {
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        let dsync = open_file(&proc_path, false, self.direct, libc::O_DSYNC).ok()?;
        let (a, b) = (self.file.metadata().ok()?, dsync.metadata().ok()?);
        (a.dev() == b.dev() && a.ino() == b.ino()).then_some(dsync)
    }

    /// Byte offset of `len` bytes at `lba`, or `OutOfRange` unless they are
    /// whole blocks inside the disk.
    fn offset(&self, lba: u64, len: usize) -> Result<u64, BlockError> {
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

    fn check_writable(&self) -> Result<(), BlockError> {
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
            io_error(e)
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
            return file.write_all_at(buf, offset).map_err(io_error);
        }
        let mut bounce = AlignedBuf::zeroed(buf.len().min(MAX_BUFFER));
        let mut pos = offset;
        for piece in buf.chunks(MAX_BUFFER) {
            let tmp = &mut bounce.as_mut_slice()[..piece.len()];
            tmp.copy_from_slice(piece);
            file.write_all_at(tmp, pos).map_err(io_error)?;
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
                .map_err(io_error)?;
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
            Err(errno) => Err(io_error(io::Error::from(errno))),
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
                Err(errno) => return Err(io_error(io::Error::from(errno))),
            };
            pos += n as u64;
            IoSliceMut::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// One `pwritev` (through the O_DSYNC descriptor for FUA).
    fn write_vectored(&self, lba: u64, bufs: &[&[u8]], fua: bool) -> Result<(), BlockError> {
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
                Err(errno) => return Err(io_error(io::Error::from(errno))),
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
        self.file.sync_data().map_err(io_error)
    }

    /// The page cache holds written data until a flush.
    fn write_cache(&self) -> bool {
        true
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn product_name(&self) -> &str {
        match self.kind {
            FileKind::Regular => "file",
            FileKind::BlockDevice => "block device",
        }
    }

    fn can_unmap(&self) -> bool {
        self.kind == FileKind::Regular && !self.read_only
    }

    fn unmap_reads_zeroes(&self) -> bool {
        self.kind == FileKind::Regular
    }

    /// Punches a hole, giving the space back to the file system.
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let (offset, len) = self.block_range(lba, blocks)?;
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

    fn can_write_zeroes(&self) -> bool {
        !self.read_only
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let (offset, len) = self.block_range(lba, blocks)?;
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
    fn lba_status(&self, lba: u64) -> Option<(u64, bool)> {
        if self.kind != FileKind::Regular || lba >= self.num_blocks() {
            return None;
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
        Some(((extent_end - start) / block_size, mapped))
    }
}

/// Map an I/O error to what the SCSI layer reports.
fn io_error(e: io::Error) -> BlockError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => BlockError::NoSpace,
        // The file system went read-only (often after errors of its own).
        Some(libc::EROFS) => BlockError::ReadOnly,
        Some(errno) => BlockError::Io(errno),
        // Short reads at the end of a truncated file, zero-length writes.
        None => BlockError::Medium,
    }
}

fn open_error(path: &Path, source: io::Error) -> FileDeviceError {
    FileDeviceError::Open {
        path: path.to_path_buf(),
        source,
    }
}

fn direct_or_open_error(path: &Path, direct: bool, source: io::Error) -> FileDeviceError {
    if direct && source.raw_os_error() == Some(libc::EINVAL) {
        FileDeviceError::DirectUnsupported {
            path: path.to_path_buf(),
            source,
        }
    } else {
        open_error(path, source)
    }
}

fn open_file(path: &Path, read_only: bool, direct: bool, flags: i32) -> io::Result<File> {
    let mut flags = flags;
    if direct {
        flags |= libc::O_DIRECT;
    }
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(flags)
        .open(path)
}

/// Create `path` as a sparse file of `size` bytes; `false` if a file
/// appeared there meanwhile, which is left alone (its size is checked like
/// any other's).
fn create_sparse(path: &Path, size: u64) -> Result<bool, FileDeviceError> {
    let create_error = |source| FileDeviceError::Create {
        path: path.to_path_buf(),
        source,
    };
    let file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(create_error(e)),
    };
    if let Err(e) = file.set_len(size) {
        // Do not leave an empty file behind that a retry would refuse.
        let _ = std::fs::remove_file(path);
        return Err(create_error(e));
    }
    Ok(true)
}

fn file_kind(path: &Path, file_type: FileType) -> Result<FileKind, FileDeviceError> {
    let kind = if file_type.is_file() {
        return Ok(FileKind::Regular);
    } else if file_type.is_block_device() {
        return Ok(FileKind::BlockDevice);
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(FileDeviceError::UnsupportedType {
        path: path.to_path_buf(),
        kind,
    })
}

/// The size of the disk from the file's `actual` size and the `requested`
/// one, following the rules in the module documentation.
fn disk_size(
    path: &Path,
    kind: FileKind,
    actual: u64,
    requested: Option<u64>,
    block_size: u32,
) -> Result<u64, FileDeviceError> {
    match (kind, requested) {
        (FileKind::Regular, Some(requested)) if actual != requested => {
            Err(FileDeviceError::SizeMismatch {
                path: path.to_path_buf(),
                actual,
                requested,
            })
        }
        (FileKind::BlockDevice, Some(requested)) if actual < requested => {
            Err(FileDeviceError::TooSmall {
                path: path.to_path_buf(),
                actual,
                requested,
            })
        }
        // Already checked to be a valid size.
        (_, Some(requested)) => Ok(requested),
        (_, None) if actual == 0 || actual % u64::from(block_size) != 0 => {
            Err(FileDeviceError::UnusableSize {
                path: path.to_path_buf(),
                size: actual,
                block_size,
            })
        }
        (_, None) => Ok(actual),
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

fn is_aligned(buf: &[u8]) -> bool {
    buf.as_ptr() as usize % DIRECT_ALIGN == 0
}

/// A zeroed buffer whose start is aligned for direct I/O.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        // The vector is never resized, so its address and the offset stay valid.
        let addr = storage.as_ptr() as usize;
        let start = (DIRECT_ALIGN - addr % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// A path in the temporary directory, unique to this test run, removed
    /// on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            TempPath(
                std::env::temp_dir()
                    .join(format!("block-backends-{}-{n}-{name}", std::process::id())),
            )
        }

        /// A new file holding `data`.
        fn with_data(name: &str, data: &[u8]) -> TempPath {
            let path = TempPath::new(name);
            std::fs::write(&path.0, data).unwrap();
            path
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 1)
            .collect()
    }

    fn create(path: &TempPath, block_size: u32, size: u64) -> FileDevice {
        let options = FileOptions {
            size: Some(size),
            create: true,
            ..FileOptions::new(block_size)
        };
        FileDevice::open(&path.0, options).unwrap()
    }

    fn read_vec(dev: &FileDevice, lba: u64, blocks: usize) -> Vec<u8> {
        let mut buf = vec![0xee; blocks * dev.block_size() as usize];
        dev.read(lba, &mut buf).unwrap();
        buf
    }

    fn open_err(path: &Path, options: FileOptions) -> FileDeviceError {
        FileDevice::open(path, options).unwrap_err()
    }

    #[test]
    fn round_trip_lands_at_the_block_offsets() {
        let path = TempPath::new("round-trip");
        let dev = create(&path, 512, 1 << 20);
        assert_eq!((dev.block_size(), dev.num_blocks()), (512, 2048));
        assert_eq!(dev.kind(), FileKind::Regular);
        assert_eq!(dev.len_bytes(), 1 << 20);
        assert_eq!(dev.path(), path.0.as_path());

        let a = pattern(3 * 512, 1);
        let b = pattern(512, 2);
        dev.write(5, &a).unwrap();
        dev.write(2047, &b).unwrap();
        assert_eq!(read_vec(&dev, 5, 3), a);
        assert_eq!(read_vec(&dev, 2047, 1), b);
        assert_eq!(read_vec(&dev, 4, 1), vec![0; 512]);

        let file = std::fs::read(&path.0).unwrap();
        assert_eq!(file.len(), 1 << 20);
        assert_eq!(file[5 * 512..8 * 512], a);
        assert_eq!(file[2047 * 512..], b);
        assert!(file[..5 * 512].iter().all(|&x| x == 0));
    }

    #[test]
    fn vectored_io_lands_where_sequential_io_would() {
        let path = TempPath::new("vectored");
        let dev = create(&path, 512, 1 << 20);
        let data = pattern(512 * 11, 9);
        // Three buffers of 2, 8 and 1 blocks, written with one call.
        let parts: [&[u8]; 3] = [&data[..1024], &data[1024..5120], &data[5120..]];
        dev.write_vectored(40, &parts, false).unwrap();
        assert_eq!(read_vec(&dev, 40, 11), data);
        // Read back into differently cut buffers with one call.
        let (mut a, mut b) = (vec![0u8; 512 * 5], vec![0u8; 512 * 6]);
        dev.read_vectored(40, &mut [&mut a, &mut b]).unwrap();
        assert_eq!([a, b].concat(), data);
        // FUA goes through the synchronous path and lands the same way.
        let again = pattern(512 * 3, 77);
        dev.write_vectored(1, &[&again[..512], &again[512..]], true)
            .unwrap();
        assert_eq!(read_vec(&dev, 1, 3), again);
        // Past the end: refused before any I/O.
        let mut tail = vec![0u8; 1024];
        assert_eq!(
            dev.read_vectored(2047, &mut [&mut tail]),
            Err(BlockError::OutOfRange)
        );
    }

    #[test]
    fn vectored_io_with_more_buffers_than_fit_on_the_stack() {
        let path = TempPath::new("vectored-many");
        let dev = create(&path, 512, 1 << 20);
        for count in [INLINE_SLICES, INLINE_SLICES + 1, 3 * INLINE_SLICES] {
            let data = pattern(512 * count, count as u8);
            let parts: Vec<&[u8]> = data.chunks(512).collect();
            dev.write_vectored(100, &parts, false).unwrap();
            assert_eq!(read_vec(&dev, 100, count), data, "{count} buffers");
            let mut back = vec![0u8; data.len()];
            let mut pieces: Vec<&mut [u8]> = back.chunks_mut(512).collect();
            dev.read_vectored(100, &mut pieces).unwrap();
            assert_eq!(back, data, "{count} buffers read back");
        }
    }

    #[test]
    fn buffered_writes_from_many_threads_all_land() {
        let path = TempPath::new("parallel-writes");
        let dev = Arc::new(create(&path, 512, 1 << 20));
        assert!(
            dev.write_lock.is_some(),
            "a buffered regular file serializes writes"
        );
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let dev = dev.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let lba = t * 256 + i * 4;
                        let data = pattern(2048, (t * 50 + i) as u8);
                        dev.write_vectored(lba, &[&data[..1024], &data[1024..]], false)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..4u64 {
            for i in 0..50 {
                let want = pattern(2048, (t * 50 + i) as u8);
                assert_eq!(read_vec(&dev, t * 256 + i * 4, 4), want);
            }
        }
    }

    #[test]
    fn resize_truncates_or_extends_the_file() {
        let path = TempPath::new("resize");
        let dev = create(&path, 512, 8 * 512);
        dev.write(6, &pattern(1024, 3)).unwrap();
        dev.resize(16).unwrap();
        assert_eq!((dev.num_blocks(), dev.len_bytes()), (16, 16 * 512));
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 16 * 512);
        assert_eq!(read_vec(&dev, 6, 2), pattern(1024, 3));
        assert_eq!(read_vec(&dev, 8, 8), vec![0; 8 * 512]);
        dev.write(15, &pattern(512, 9)).unwrap();
        // Shrinking cuts the file; what was beyond the end reads as zeros
        // after growing again.
        dev.resize(7).unwrap();
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 7 * 512);
        assert_eq!(dev.read(7, &mut [0; 512]), Err(BlockError::OutOfRange));
        dev.resize(16).unwrap();
        assert_eq!(read_vec(&dev, 6, 1), pattern(512, 3));
        assert_eq!(read_vec(&dev, 7, 9), vec![0; 9 * 512]);
        assert_eq!(dev.resize(0), Err(BlockError::OutOfRange));

        let read_only = FileDevice::open(
            &path.0,
            FileOptions {
                read_only: true,
                ..FileOptions::new(512)
            },
        )
        .unwrap();
        assert_eq!(read_only.resize(32), Err(BlockError::ReadOnly));
        assert_eq!(read_only.num_blocks(), 16);
    }

    #[test]
    fn creation_is_sparse_and_allocation_follows_writes() {
        let path = TempPath::new("sparse");
        let dev = create(&path, 4096, 64 << 20);
        let meta = std::fs::metadata(&path.0).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        let before = dev.allocated_bytes().unwrap();
        dev.write(100, &pattern(1 << 20, 3)).unwrap();
        dev.flush().unwrap();
        assert!(dev.allocated_bytes().unwrap() >= before + (1 << 20));
    }

    #[test]
    fn existing_file_keeps_its_data_and_size() {
        let data = pattern(8192, 4);
        let path = TempPath::with_data("existing", &data);
        // No size: the file's.
        let dev = FileDevice::open(&path.0, FileOptions::new(1024)).unwrap();
        assert_eq!(dev.num_blocks(), 8);
        assert_eq!(read_vec(&dev, 0, 8), data);
        drop(dev);
        // The same size with create: opened as it is, not recreated.
        let dev = create(&path, 512, 8192);
        assert_eq!(read_vec(&dev, 0, 16), data);
    }

    #[test]
    fn size_mismatch_names_both_sizes_and_changes_nothing() {
        let path = TempPath::with_data("mismatch", &[7; 4096]);
        for requested in [8192, 2048] {
            for create in [false, true] {
                let options = FileOptions {
                    size: Some(requested),
                    create,
                    ..FileOptions::new(512)
                };
                let err = open_err(&path.0, options);
                assert!(
                    matches!(err, FileDeviceError::SizeMismatch { actual: 4096, requested: r, .. } if r == requested),
                    "{err:?}"
                );
                let msg = err.to_string();
                assert!(
                    msg.contains("4096") && msg.contains(&requested.to_string()),
                    "{msg}"
                );
            }
        }
        assert_eq!(std::fs::read(&path.0).unwrap(), vec![7; 4096]);
    }

    #[test]
    fn missing_file_needs_create_and_a_size() {
        let path = TempPath::new("missing");
        let err = open_err(&path.0, FileOptions::new(512));
        assert!(matches!(err, FileDeviceError::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("does not exist"));
        let err = open_err(
            &path.0,
            FileOptions {
                create: true,
                ..FileOptions::new(512)
            },
        );
        assert!(
            matches!(err, FileDeviceError::CreateNeedsSize(_)),
            "{err:?}"
        );
        assert!(!path.0.exists(), "nothing created");
    }

    #[test]
    fn creating_in_a_missing_directory_fails_cleanly() {
        let dir = TempPath::new("no-such-dir");
        let err = open_err(
            &dir.0.join("disk.img"),
            FileOptions {
                size: Some(4096),
                create: true,
                ..FileOptions::new(512)
            },
        );
        assert!(matches!(err, FileDeviceError::Create { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot create"));
    }

    #[test]
    fn unusable_sizes_are_refused() {
        let empty = TempPath::with_data("empty", &[]);
        let err = open_err(&empty.0, FileOptions::new(512));
        assert!(
            matches!(err, FileDeviceError::UnusableSize { size: 0, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("is empty"));

        let odd = TempPath::with_data("odd", &[1; 1536]);
        let err = open_err(&odd.0, FileOptions::new(1024));
        assert!(
            err.to_string()
                .contains("not a multiple of the block size 1024"),
            "{err}"
        );
        assert!(FileDevice::open(&odd.0, FileOptions::new(512)).is_ok());

        let fresh = TempPath::new("bad-request");
        for size in [0, 1000, u64::MAX - 511] {
            let options = FileOptions {
                size: Some(size),
                create: true,
                ..FileOptions::new(512)
            };
            let err = open_err(&fresh.0, options);
            assert!(
                matches!(err, FileDeviceError::InvalidSize { .. }),
                "{size}: {err:?}"
            );
        }
        assert!(!fresh.0.exists());

        let err = open_err(&odd.0, FileOptions::new(768));
        assert!(
            matches!(err, FileDeviceError::InvalidBlockSize(768)),
            "{err:?}"
        );
    }

    #[test]
    fn only_regular_files_and_block_devices_are_served() {
        let dir = TempPath::new("dir");
        std::fs::create_dir(&dir.0).unwrap();
        let err = open_err(&dir.0, FileOptions::new(512));
        assert!(
            matches!(
                err,
                FileDeviceError::UnsupportedType {
                    kind: "directory",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = open_err(Path::new("/dev/null"), FileOptions::new(512));
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn read_only_refuses_every_change() {
        let data = pattern(4096, 5);
        let path = TempPath::with_data("ro", &data);
        let options = FileOptions {
            read_only: true,
            ..FileOptions::new(512)
        };
        let dev = FileDevice::open(&path.0, options).unwrap();
        assert!(dev.read_only());
        assert!(!dev.can_unmap() && !dev.can_write_zeroes());
        assert_eq!(dev.write(0, &[0; 512]), Err(BlockError::ReadOnly));
        assert_eq!(dev.write_fua(0, &[0; 512]), Err(BlockError::ReadOnly));
        assert_eq!(dev.unmap(0, 1), Err(BlockError::ReadOnly));
        assert_eq!(dev.write_zeroes(0, 1), Err(BlockError::ReadOnly));
        assert_eq!(dev.flush(), Ok(()));
        assert_eq!(read_vec(&dev, 0, 8), data);
        assert_eq!(std::fs::read(&path.0).unwrap(), data);
    }

    #[test]
    fn out_of_range_requests_are_rejected() {
        let path = TempPath::new("range");
        let dev = create(&path, 512, 100 * 512);
        for (lba, len) in [(100, 512), (99, 1024), (u64::MAX, 512), (0, 511)] {
            assert_eq!(
                dev.read(lba, &mut vec![0; len]),
                Err(BlockError::OutOfRange)
            );
            assert_eq!(dev.write(lba, &vec![1; len]), Err(BlockError::OutOfRange));
            assert_eq!(
                dev.write_fua(lba, &vec![1; len]),
                Err(BlockError::OutOfRange)
            );
        }
        for (lba, blocks) in [(100, 1), (50, 51), (u64::MAX, 2)] {
            assert_eq!(dev.unmap(lba, blocks), Err(BlockError::OutOfRange));
            assert_eq!(dev.write_zeroes(lba, blocks), Err(BlockError::OutOfRange));
        }
        // Nothing grew the file.
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 100 * 512);
        assert_eq!(dev.unmap(100, 0), Ok(()));
        assert_eq!(dev.write_zeroes(100, 0), Ok(()));
    }

    #[test]
    fn unmap_punches_holes_that_read_as_zeros() {
        let path = TempPath::new("punch");
        let dev = create(&path, 4096, 8 << 20);
        assert!(dev.can_unmap() && dev.unmap_reads_zeroes());
        let data = pattern(8 << 20, 6);
        dev.write(0, &data).unwrap();
        dev.flush().unwrap();
        let full = dev.allocated_bytes().unwrap();
        assert!(full >= 8 << 20, "allocated {full}");

        // 4 MiB from 1 MiB on.
        dev.unmap(256, 1024).unwrap();
        let after = dev.allocated_bytes().unwrap();
        assert!(after <= full - (4 << 20), "allocated {full} -> {after}");
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 8 << 20);
        let got = read_vec(&dev, 0, 2048);
        assert_eq!(got[..1 << 20], data[..1 << 20]);
        assert!(got[1 << 20..5 << 20].iter().all(|&b| b == 0));
        assert_eq!(got[5 << 20..], data[5 << 20..]);
    }

    #[test]
    fn write_zeroes_zeroes_exactly_the_range() {
        let path = TempPath::new("zero");
        let dev = create(&path, 512, 1 << 20);
        assert!(dev.can_write_zeroes());
        let data = pattern(1 << 20, 7);
        dev.write(0, &data).unwrap();
        // An odd range that is not aligned to file system blocks.
        dev.write_zeroes(3, 1001).unwrap();
        let mut want = data.clone();
        want[3 * 512..1004 * 512].fill(0);
        assert_eq!(read_vec(&dev, 0, 2048), want);
        assert_eq!(std::fs::read(&path.0).unwrap(), want);
    }

    #[test]
    fn zeroing_falls_back_to_writing_zeros() {
        let path = TempPath::new("fallback");
        let dev = create(&path, 512, 3 << 20);
        dev.write(0, &vec![9; 3 << 20]).unwrap();
        // As if the file system had refused both fallocate modes.
        dev.zero_range.store(false, Ordering::Relaxed);
        dev.punch_hole.store(false, Ordering::Relaxed);
        // Longer than one zero buffer.
        dev.write_zeroes(1, 2500).unwrap();
        dev.unmap(4000, 100).unwrap();
        let got = read_vec(&dev, 0, 6144);
        assert_eq!(got[..512], [9; 512]);
        assert!(got[512..2501 * 512].iter().all(|&b| b == 0));
        assert!(got[2501 * 512..4000 * 512].iter().all(|&b| b == 9));
        assert!(got[4000 * 512..4100 * 512].iter().all(|&b| b == 0));
        assert!(got[4100 * 512..].iter().all(|&b| b == 9));
    }

    #[test]
    fn truncated_file_gives_errors_not_hangs() {
        let path = TempPath::new("truncated");
        let dev = create(&path, 512, 64 * 512);
        dev.write(0, &pattern(64 * 512, 8)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path.0)
            .unwrap()
            .set_len(10 * 512)
            .unwrap();
        assert_eq!(dev.read(20, &mut [0; 512]), Err(BlockError::Medium));
        // Straddling the new end: also an error, not a partial read.
        assert_eq!(dev.read(8, &mut [0; 4 * 512]), Err(BlockError::Medium));
        assert_eq!(read_vec(&dev, 0, 10), pattern(64 * 512, 8)[..10 * 512]);
        // Writing there grows the file again; the gap reads as zeros.
        dev.write(30, &[3; 512]).unwrap();
        assert_eq!(read_vec(&dev, 30, 1), vec![3; 512]);
        assert_eq!(read_vec(&dev, 20, 1), vec![0; 512]);
    }

    #[test]
    fn removed_file_stays_usable_while_open() {
        let path = TempPath::new("removed");
        let dev = create(&path, 512, 16 * 512);
        std::fs::remove_file(&path.0).unwrap();
        dev.write(3, &[4; 512]).unwrap();
        dev.write_fua(4, &[5; 512]).unwrap();
        dev.flush().unwrap();
        assert_eq!(read_vec(&dev, 3, 2)[..512], [4; 512]);
        assert_eq!(read_vec(&dev, 4, 1), vec![5; 512]);
    }

    #[test]
    fn fua_writes_use_a_dsync_descriptor_on_the_same_file() {
        let path = TempPath::new("fua");
        let dev = create(&path, 512, 64 * 512);
        assert!(dev.write_cache());
        let dsync = dev.dsync.as_ref().expect("an O_DSYNC descriptor");
        let flags = nix::fcntl::fcntl(dsync.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_ne!(flags & libc::O_DSYNC, 0, "flags {flags:#x}");
        dev.write_fua(9, &pattern(2048, 9)).unwrap();
        assert_eq!(read_vec(&dev, 9, 4), pattern(2048, 9));
        assert_eq!(
            std::fs::read(&path.0).unwrap()[9 * 512..13 * 512],
            pattern(2048, 9)
        );
    }

    #[test]
    fn direct_io_with_aligned_and_unaligned_buffers() {
        let path = TempPath::new("direct");
        let options = FileOptions {
            size: Some(4 << 20),
            create: true,
            direct: true,
            ..FileOptions::new(4096)
        };
        let dev = FileDevice::open(&path.0, options).unwrap();
        assert!(dev.is_direct());
        let flags = nix::fcntl::fcntl(dev.file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_ne!(flags & libc::O_DIRECT, 0);

        // Longer than one bounce buffer, starting one byte into a vector:
        // never aligned for O_DIRECT.
        let len = MAX_BUFFER + 2 * 4096;
        let data = pattern(len, 10);
        let mut unaligned = vec![0u8; len + 1];
        unaligned[1..].copy_from_slice(&data);
        assert!(!is_aligned(&unaligned[1..]));
        dev.write(3, &unaligned[1..]).unwrap();

        let mut aligned = AlignedBuf::zeroed(len);
        dev.read(3, aligned.as_mut_slice()).unwrap();
        assert_eq!(aligned.as_slice(), &data[..]);

        let mut back = vec![0u8; len + 1];
        dev.read(3, &mut back[1..]).unwrap();
        assert_eq!(back[1..], data);

        dev.write_fua(900, &unaligned[1..4097]).unwrap();
        dev.write_zeroes(4, 1).unwrap();
        dev.flush().unwrap();
        let file = std::fs::read(&path.0).unwrap();
        assert_eq!(file[3 * 4096..4 * 4096], data[..4096]);
        assert!(file[4 * 4096..5 * 4096].iter().all(|&b| b == 0));
        assert_eq!(file[5 * 4096..3 * 4096 + len], data[2 * 4096..]);
        assert_eq!(file[900 * 4096..901 * 4096], data[..4096]);
    }

    #[test]
    fn lba_status_reports_holes_and_data() {
        let path = TempPath::new("status");
        let dev = create(&path, 4096, 16 << 20); // 4096 blocks
        assert_eq!(dev.lba_status(0), Some((4096, false)));
        assert_eq!(dev.lba_status(4095), Some((1, false)));
        assert_eq!(dev.lba_status(4096), None);

        // 1 MiB of data from block 1024.
        dev.write(1024, &pattern(1 << 20, 11)).unwrap();
        dev.flush().unwrap();
        assert_eq!(dev.lba_status(0), Some((1024, false)));
        assert_eq!(dev.lba_status(1000), Some((24, false)));
        assert_eq!(dev.lba_status(1024), Some((256, true)));
        assert_eq!(dev.lba_status(1100), Some((180, true)));
        assert_eq!(dev.lba_status(1280), Some((4096 - 1280, false)));

        // A punched hole in the middle splits the data.
        dev.unmap(1100, 100).unwrap();
        assert_eq!(dev.lba_status(1024), Some((76, true)));
        assert_eq!(dev.lba_status(1100), Some((100, false)));
        assert_eq!(dev.lba_status(1200), Some((80, true)));

        // Beyond the end of a truncated file: deallocated.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path.0)
            .unwrap()
            .set_len(2048 * 4096)
            .unwrap();
        assert_eq!(dev.lba_status(3000), Some((1096, false)));
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0, 1, 512, 4096, 12345] {
            let mut buf = AlignedBuf::zeroed(len);
            assert!(is_aligned(buf.as_slice()));
            assert_eq!(buf.as_mut_slice().len(), len);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn io_errors_map_to_block_errors() {
        let errno = io::Error::from_raw_os_error;
        assert_eq!(io_error(errno(libc::EIO)), BlockError::Io(libc::EIO));
        assert_eq!(io_error(errno(libc::ENOSPC)), BlockError::NoSpace);
        assert_eq!(io_error(errno(libc::EDQUOT)), BlockError::NoSpace);
        assert_eq!(io_error(errno(libc::EROFS)), BlockError::ReadOnly);
        assert_eq!(
            io_error(io::Error::from(io::ErrorKind::UnexpectedEof)),
            BlockError::Medium
        );
    }

    #[test]
    fn concurrent_writers_on_disjoint_ranges() {
        let path = TempPath::new("threads");
        let dev = create(&path, 512, 8 * 256 * 512);
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let dev = &dev;
                s.spawn(move || {
                    for round in 0..20u8 {
                        let data = pattern(256 * 512, (t as u8) << 4 | round);
                        dev.write(t * 256, &data).unwrap();
                        assert_eq!(read_vec(dev, t * 256, 256), data);
                    }
                });
            }
        });
        for t in 0..8u64 {
            assert_eq!(
                read_vec(&dev, t * 256, 256),
                pattern(256 * 512, (t as u8) << 4 | 19)
            );
        }
    }

    #[test]
    fn error_messages_name_the_file() {
        let path = TempPath::new("named");
        let err = open_err(&path.0, FileOptions::new(512));
        assert!(err.to_string().contains(&path.0.display().to_string()));
        assert!(std::error::Error::source(&err).is_none());
        let err = FileDeviceError::Open {
            path: path.0.clone(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(err.to_string().starts_with("cannot open "));
        assert!(std::error::Error::source(&err).is_some());
    }
}
