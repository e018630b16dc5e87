//! Drives the SCSI emulator with arbitrary bytes and checks what every
//! response must satisfy, whatever the command.
//!
//! The same two entry points serve the cargo-fuzz targets in `fuzz/` and
//! this crate's proptest suite, so the invariants run in `cargo test` too:
//!
//! * [`run_cdb_case`]: the bytes become a device geometry and a short
//!   sequence of raw CDBs, each with a data buffer that may be split into
//!   several segments ([`CdbCase`] is the layout).
//! * [`run_parameter_list_case`]: the bytes become the parameter list
//!   (data-out) of a command that takes one (UNMAP, MODE SELECT, COMPARE
//!   AND WRITE, WRITE SAME, EXTENDED COPY, ...) sent with a well-formed CDB
//!   whose length fields match the data ([`ParameterListCase`] is the
//!   layout). Where the outcome is known (data written by WRITE SAME,
//!   COMPARE AND WRITE, EXTENDED COPY), the device contents are checked
//!   too.
//!
//! * [`run_ring_case`]: the bytes become the kernel's half of the shared
//!   area (mailbox fields, ring entries, offsets, counts, iovecs) of the
//!   simulated kernel, and drive the ring parser and the completion path.
//!
//! Every response is checked by [`check_response`]: the status is GOOD,
//! CHECK CONDITION, CONDITION MET or BUSY; sense data is present exactly
//! with CHECK CONDITION and survives encoding and parsing in both formats;
//! the data-in length fits in the buffer. A violated invariant panics, which
//! is what a fuzzer reports.

#![forbid(unsafe_code)]

mod buffer;
mod cdb_case;
mod input;
mod lun;
mod parameter_list;
mod ring_case;
pub mod seeds;

pub use cdb_case::{CdbCase, CdbCommand, MAX_CDB_LEN, MAX_COMMANDS, run_cdb_case};
pub use lun::{Executed, GEOMETRIES, check_response, geometry};
pub use parameter_list::{ParameterListCase, ParameterListCommand, run_parameter_list_case};
pub use ring_case::run_ring_case;
