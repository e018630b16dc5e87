//! Regular files and block devices as disks.
//!
//! [`FileDevice`] serves the blocks of a regular file (an image file) or of
//! a block device with positioned I/O, so requests from several threads
//! never share a file offset. [`UringFileDevice`] serves the same file
//! asynchronously, through an io_uring.
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

mod aligned;
mod device;
mod error;
mod open;
mod options;
#[cfg(test)]
mod tests;
mod uring;

pub use device::FileDevice;
pub use error::FileDeviceError;
pub use options::{FileKind, FileOptions};
pub use uring::UringFileDevice;
