//! Why a file device could not be opened, and backend errors as
//! [`BlockError`]s.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::libc;
use scsi_emu::BlockError;

/// Why a [`FileDevice`](super::FileDevice) could not be opened.
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

/// Map an I/O error to what the SCSI layer reports.
pub(super) fn io_error(e: io::Error) -> BlockError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => BlockError::NoSpace,
        // The file system went read-only (often after errors of its own).
        Some(libc::EROFS) => BlockError::ReadOnly,
        Some(errno) => BlockError::Io(errno),
        // Short reads at the end of a truncated file, zero-length writes.
        None => BlockError::Medium,
    }
}

pub(super) fn open_error(path: &Path, source: io::Error) -> FileDeviceError {
    FileDeviceError::Open {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn direct_or_open_error(
    path: &Path,
    direct: bool,
    source: io::Error,
) -> FileDeviceError {
    if direct && source.raw_os_error() == Some(libc::EINVAL) {
        FileDeviceError::DirectUnsupported {
            path: path.to_path_buf(),
            source,
        }
    } else {
        open_error(path, source)
    }
}
