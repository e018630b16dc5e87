//! How to open a qcow2 device.

#[cfg(doc)]
use scsi_emu::BlockError;

/// How to open a [`QcowDevice`](super::QcowDevice).
///
/// ```
/// use block_backends::QcowOptions;
///
/// let options = QcowOptions { read_only: true, ..QcowOptions::new(4096) };
/// assert_eq!(options.block_size, 4096);
/// assert_eq!(QcowOptions::default(), QcowOptions::new(512));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QcowOptions {
    /// Logical block size in bytes: 512, 1024, 2048 or 4096. The image's
    /// virtual size must be a multiple of it.
    pub block_size: u32,
    /// Open read-only; every write is refused with [`BlockError::ReadOnly`]
    /// and the image file is not modified at all.
    pub read_only: bool,
}

impl QcowOptions {
    /// Options for opening an image read-write with `block_size`-byte
    /// blocks.
    pub fn new(block_size: u32) -> QcowOptions {
        QcowOptions {
            block_size,
            read_only: false,
        }
    }
}

impl Default for QcowOptions {
    /// [`QcowOptions::new`] with 512-byte blocks.
    fn default() -> QcowOptions {
        QcowOptions::new(512)
    }
}
