//! Why a qcow2 device could not be opened.

use std::io;
use std::path::{Path, PathBuf};

/// Why a [`QcowDevice`](super::QcowDevice) could not be opened. Every
/// message is one line that names the image.
#[derive(Debug, thiserror::Error)]
pub enum QcowError {
    /// The block size is not a power of two between 512 and 4096.
    #[error("invalid block size {0}: must be 512, 1024, 2048 or 4096")]
    InvalidBlockSize(u32),
    /// The image does not exist.
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// Opening or reading the file failed.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{} is a {kind}, not a qcow2 image", path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// What it is instead, e.g. "directory".
        kind: &'static str,
    },
    /// The file is not a qcow2 image (version 2 or 3).
    #[error("{} is not a qcow2 image: it is {what}", path.display())]
    NotQcow2 {
        /// The file.
        path: PathBuf,
        /// What it is instead, e.g. "a raw image (no image format header)".
        what: String,
    },
    /// The image has a qcow2 header that imago refused: corrupt or dirty
    /// metadata, unknown incompatible features, a backing or data file
    /// that cannot be opened.
    #[error("cannot open qcow2 image {}: {source}", path.display())]
    Image {
        /// The image.
        path: PathBuf,
        /// What imago said.
        source: io::Error,
    },
    /// The virtual size is zero or not a multiple of the block size.
    #[error("{}", unusable_size(path, *size, *block_size))]
    UnusableSize {
        /// The image.
        path: PathBuf,
        /// Its virtual size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
}

/// The message of [`QcowError::UnusableSize`].
fn unusable_size(path: &Path, size: u64, block_size: u32) -> String {
    if size == 0 {
        format!("{}: the image's virtual size is 0", path.display())
    } else {
        format!(
            "{}: the image's virtual size {size} bytes is not a multiple of the block size {block_size}",
            path.display()
        )
    }
}
