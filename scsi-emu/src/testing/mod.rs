//! Testing a device without root: serve a [`BlockDevice`](crate::BlockDevice)
//! (or an [`AsyncBlockDevice`](crate::AsyncBlockDevice)) through the real
//! emulator and the real serving loop over `tcmu-core`'s simulated kernel
//! ([`TestLun`]), and check it against a model of its medium
//! ([`check_device`]). Behind the feature `test-utils`; add to a device
//! crate's `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! scsi-emu = { version = "0.1", features = ["test-utils"] }
//! ```
//!
//! A test of a device (here a RAM disk) then reads:
//!
//! ```
//! use scsi_emu::testing::{CheckOptions, TestLun, check_device};
//! use scsi_emu::{BlockDevice, BlockError};
//! use std::sync::Mutex;
//!
//! struct Ram(Mutex<Vec<u8>>);
//!
//! impl BlockDevice for Ram {
//!     fn block_size(&self) -> u32 { 512 }
//!     fn num_blocks(&self) -> u64 { 64 }
//!     fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
//!         let at = lba as usize * 512;
//!         buf.copy_from_slice(&self.0.lock().unwrap()[at..at + buf.len()]);
//!         Ok(())
//!     }
//!     fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
//!         let at = lba as usize * 512;
//!         self.0.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
//!         Ok(())
//!     }
//! }
//!
//! let ram = || Ram(Mutex::new(vec![0; 64 * 512]));
//! let lun = TestLun::new(ram()).unwrap();
//! lun.write(8, &[0xAB; 1024]).unwrap();
//! assert_eq!(lun.read(9, 1).unwrap(), vec![0xAB; 512]);
//! lun.shutdown().unwrap();
//!
//! // Random command sequences against a model of the medium.
//! check_device(ram, CheckOptions::default().cases(4).resize(false));
//! ```

mod cdb;
mod check;
mod lun;
mod model;
mod options;
mod outcome;
mod request;
mod step;
mod unit;

pub use check::{
    CheckFailure, CheckOptions, check_async_device, check_device, try_check_async_device,
    try_check_device,
};
pub use lun::{TestLun, Ticket};
pub use options::TestLunOptions;
pub use outcome::{CommandFailure, Outcome};
pub use request::Request;
pub use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};
