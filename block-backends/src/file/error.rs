//! Why a file device could not be opened.

use std::io;
use std::path::{Path, PathBuf};

use nix::libc;

/// Why a [`FileDevice`](super::FileDevice) could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FileDeviceError {
    /// The block size is not a power of two between 512 and 4096.
    #[error("invalid block size {0}: must be 512, 1024, 2048 or 4096")]
    InvalidBlockSize(u32),
    /// The requested size is zero, not a multiple of the block size, or
    /// beyond the largest file offset.
    #[error("{}", invalid_size(*size, *block_size))]
    InvalidSize {
        /// The requested size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
    /// The file does not exist and `create` was not given.
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// The file does not exist and cannot be created without a size.
    #[error("{} does not exist and cannot be created without a size", .0.display())]
    CreateNeedsSize(PathBuf),
    /// Creating the file failed.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Opening (or examining) the file failed.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{} is a {kind}, not a regular file or block device", path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// What it is instead, e.g. "directory".
        kind: &'static str,
    },
    /// The file's own size is zero or not a multiple of the block size.
    #[error("{}", unusable_size(path, *size, *block_size))]
    UnusableSize {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
    /// A regular file's size differs from the requested size.
    #[error("{} is {actual} bytes but the requested size is {requested} bytes", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        actual: u64,
        /// The requested size in bytes.
        requested: u64,
    },
    /// A block device is smaller than the requested size.
    #[error(
        "block device {} has {actual} bytes, less than the requested {requested} bytes",
        path.display()
    )]
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
    #[error("{}: direct I/O (O_DIRECT) refused: {source}", path.display())]
    DirectUnsupported {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The kernel refused to set up an io_uring for the file (a kernel
    /// older than 5.6, io_uring disabled by `kernel.io_uring_disabled`, or
    /// a seccomp filter).
    #[error(
        "{}: cannot set up io_uring: {source} (kernel too old, io_uring disabled, or blocked by seccomp)",
        path.display()
    )]
    IoUring {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// The message of [`FileDeviceError::InvalidSize`]: which rule the size breaks.
fn invalid_size(size: u64, block_size: u32) -> String {
    if size == 0 {
        "invalid size 0: the disk must not be empty".into()
    } else if size % u64::from(block_size.max(1)) != 0 {
        format!("invalid size {size}: not a multiple of the block size {block_size}")
    } else {
        format!("invalid size {size}: too large for a file")
    }
}

/// The message of [`FileDeviceError::UnusableSize`].
fn unusable_size(path: &Path, size: u64, block_size: u32) -> String {
    if size == 0 {
        format!("{} is empty", path.display())
    } else {
        format!(
            "{} is {size} bytes, not a multiple of the block size {block_size}",
            path.display()
        )
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
