//! How to open a file device, and what kind of file it serves.

#[cfg(doc)]
use scsi_emu::BlockError;

/// How to open a [`FileDevice`](super::FileDevice).
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
    /// device. See the [module documentation](crate::file) for the rules.
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

/// What kind of file a [`FileDevice`](super::FileDevice) serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (an image file).
    Regular,
    /// A block device such as `/dev/sdb` or a partition.
    BlockDevice,
}
