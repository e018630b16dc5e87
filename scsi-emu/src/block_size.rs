//! The logical block sizes a unit can have.

use std::fmt;

/// A logical block size the emulator, the kernel's TCMU and Linux's sd
/// driver all accept: 512, 1024, 2048 or 4096 bytes. Devices report theirs
/// as a plain `u32` ([`BlockDevice::block_size`](crate::BlockDevice::block_size));
/// this type is where a size given by a person or a file is checked.
///
/// ```
/// use scsi_emu::BlockSize;
///
/// assert_eq!(BlockSize::new(4096).map(BlockSize::get), Ok(4096));
/// assert_eq!(
///     BlockSize::new(777).unwrap_err().to_string(),
///     "invalid block size 777: use 512, 1024, 2048 or 4096"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockSize(u32);

/// A block size other than 512, 1024, 2048 or 4096 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid block size {0}: use 512, 1024, 2048 or 4096")]
pub struct InvalidBlockSize(pub u32);

impl BlockSize {
    /// 512 bytes, the default of every backend.
    pub const DEFAULT: BlockSize = BlockSize(512);

    /// `bytes`, if it is 512, 1024, 2048 or 4096.
    pub const fn new(bytes: u32) -> Result<BlockSize, InvalidBlockSize> {
        match bytes {
            512 | 1024 | 2048 | 4096 => Ok(BlockSize(bytes)),
            _ => Err(InvalidBlockSize(bytes)),
        }
    }

    /// The size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for BlockSize {
    fn default() -> BlockSize {
        BlockSize::DEFAULT
    }
}

impl TryFrom<u32> for BlockSize {
    type Error = InvalidBlockSize;
    fn try_from(bytes: u32) -> Result<BlockSize, InvalidBlockSize> {
        BlockSize::new(bytes)
    }
}

impl From<BlockSize> for u32 {
    fn from(size: BlockSize) -> u32 {
        size.0
    }
}

impl std::str::FromStr for BlockSize {
    type Err = InvalidBlockSize;
    /// A decimal number of bytes; anything else reads as size 0.
    fn from_str(text: &str) -> Result<BlockSize, InvalidBlockSize> {
        BlockSize::new(text.trim().parse().unwrap_or(0))
    }
}

impl fmt::Display for BlockSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_sizes_are_accepted() {
        let accepted: Vec<u32> = (0..=8192).filter(|&n| BlockSize::new(n).is_ok()).collect();
        assert_eq!(accepted, [512, 1024, 2048, 4096]);
        assert_eq!("2048".parse::<BlockSize>().map(u32::from), Ok(2048));
        assert_eq!("big".parse::<BlockSize>(), Err(InvalidBlockSize(0)));
        assert_eq!(BlockSize::default().get(), 512);
    }
}
