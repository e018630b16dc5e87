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
