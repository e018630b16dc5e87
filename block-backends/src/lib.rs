//! Storage backends for the SCSI emulation: implementations of
//! [`scsi_emu::BlockDevice`].
//!
//! - [`MemoryDevice`]: a sparse RAM disk whose unwritten blocks read as
//!   zeros and take no memory.
//! - [`FileDevice`]: a regular file (an image) or a block device;
//!   [`UringFileDevice`] serves the same asynchronously through io_uring.
//! - [`QcowDevice`]: a qcow2 image (what tcmu-runner serves as
//!   `qcow/PATH`), through the `imago` crate.
//! - [`ReadOnly`] and [`FaultInjector`]: wrappers around any device that
//!   refuse writes, or fail and delay chosen blocks for testing.
//! - `RbdDevice` (feature `rbd`): an image of a Ceph cluster, through
//!   librbd.
//!
//! ```
//! use block_backends::MemoryDevice;
//! use scsi_emu::BlockDevice;
//!
//! let disk = MemoryDevice::new(4096, 256)?; // 1 MiB
//! disk.write(3, &[0x5a; 4096])?;
//! let mut block = [0u8; 4096];
//! disk.read(3, &mut block)?;
//! assert!(block.iter().all(|&b| b == 0x5a));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Unsafe code is denied everywhere but in the Ceph FFI module
// (`rbd::ffi`, feature `rbd`) and the io_uring ring (`file::uring::ring`),
// which allow it for themselves.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod file;
pub mod memory;
pub mod nbd;
pub mod qcow;
#[cfg(feature = "rbd")]
pub mod rbd;
#[cfg(test)]
mod test_support;
pub mod wrappers;

pub use file::{FileDevice, FileDeviceError, FileKind, FileOptions, UringFileDevice};
pub use memory::{CHUNK_SIZE, MemoryDevice, MemoryDeviceError};
pub use nbd::{NbdAddress, NbdAddressParseError, NbdDevice, NbdError, NbdOptions};
pub use qcow::{QcowDevice, QcowError, QcowOptions};
#[cfg(feature = "rbd")]
pub use rbd::{FailoverSwitch, LockState, RbdDevice, RbdError, RbdOptions, RbdSpec};
pub use wrappers::{FaultInjector, ReadOnly};
