//! Opening (or creating) the file or block device, checking its size, and
//! probing what it supports.

use scsi_emu::BlockSize;
use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use nix::libc;

use super::aligned::AlignedBuf;
use super::device::FileDevice;
use super::error::{FileDeviceError, direct_or_open_error, open_error};
use super::options::{FileKind, FileOptions};

impl FileDevice {
    /// Opens (or, with [`FileOptions::create`], creates) the regular file
    /// or block device at `path` as a disk. See the
    /// [module documentation](crate::file) for how its size is chosen.
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
        BlockSize::new(block_size).map_err(|_| FileDeviceError::InvalidBlockSize(block_size))?;
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
pub(super) fn create_sparse(path: &Path, size: u64) -> Result<bool, FileDeviceError> {
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

pub(super) fn file_kind(path: &Path, file_type: FileType) -> Result<FileKind, FileDeviceError> {
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
pub(super) fn disk_size(
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
