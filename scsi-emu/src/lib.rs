//! SCSI block-device emulation (SPC-5/SBC-4) on top of a [`BlockDevice`].
//!
//! Implement [`BlockDevice`] (block size, block count, read, write), wrap it
//! in an [`Emulator`], and feed it CDBs: it answers like a direct-access
//! SCSI disk that Linux's sd driver, `mkfs` and `fio` accept. The transport
//! (for example a TCMU command ring) hands each command's data buffer over
//! as a [`DataBuffer`] and sends back the [`ScsiResponse`]'s status, sense
//! data and data-in length.
//!
//! Supported commands (SPC-5, SBC-4): TEST UNIT READY, REQUEST SENSE
//! (fixed or descriptor format), INQUIRY (standard data; VPD pages 00h,
//! 80h, 83h, 86h, B0h, B1h, B2h), MODE SENSE(6/10) and MODE SELECT(6/10)
//! (caching and control pages; WCE and D_SENSE are changeable), START
//! STOP UNIT, READ CAPACITY(10/16), READ and WRITE (6/10/12/16, with FUA),
//! VERIFY(10/16), WRITE AND VERIFY(10/16), COMPARE AND WRITE, WRITE
//! SAME(10/16), SYNCHRONIZE CACHE(10/16), REPORT SUPPORTED OPERATION
//! CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS; REPORT TARGET
//! PORT GROUPS (ALUA, implicit transitions) when given a
//! [`PortGroupSource`]; UNMAP when the
//! device can unmap, GET LBA STATUS when it reports block mapping, WRITE
//! ATOMIC(16) when its writes are all-or-nothing;
//! EXTENDED COPY(LID1), RECEIVE COPY STATUS(LID1) and RECEIVE COPY
//! OPERATING PARAMETERS, copying within the unit and, when given a
//! [`CopyRegistry`], between the units of one process; SANITIZE
//! (OVERWRITE, EXIT FAILURE MODE, and BLOCK ERASE when unmapped blocks
//! read as zeros).
//! Anything else ends in CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND
//! OPERATION CODE (or INVALID FIELD IN CDB for an unknown service action);
//! every refused CDB field is pointed at in the sense data.
//!
//! Sense data goes out in fixed format until an initiator sets D_SENSE in
//! the control mode page; a transport encodes a response's sense with
//! [`ScsiResponse::sense_bytes`]`(emulator.`[`descriptor_sense`](Emulator::descriptor_sense)`())`.
//!
//! ```
//! use scsi_emu::{BlockDevice, BlockError, Emulator, LunIdentity, ScsiStatus};
//! use std::sync::Mutex;
//!
//! /// A 64 KiB RAM disk.
//! struct Tiny(Mutex<Vec<u8>>);
//!
//! impl BlockDevice for Tiny {
//!     fn block_size(&self) -> u32 { 512 }
//!     fn num_blocks(&self) -> u64 { 128 }
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
//!     fn product_name(&self) -> &str { "tiny disk" }
//! }
//!
//! let disk = Tiny(Mutex::new(vec![0; 128 * 512]));
//! let identity = LunIdentity::new("0001", disk.product_name());
//! let lun = Emulator::new(disk, identity);
//!
//! // INQUIRY, allocation length 36.
//! let mut data = vec![0u8; 36];
//! let resp = lun.execute(&[0x12, 0, 0, 0, 36, 0], &mut data);
//! assert_eq!(resp.status, ScsiStatus::Good);
//! assert_eq!(resp.data_in_len, Some(36));
//! assert_eq!(data[0], 0x00); // direct-access block device
//! assert_eq!(&data[8..16], b"TCMU-RS ");
//! assert_eq!(&data[16..32], b"tiny disk       ");
//! ```
//!
//! # Guide: write a device, test it, serve it
//!
//! 1. **Write it.** Implement [`BlockDevice`] as above: four methods are
//!    enough, and every other one has a default. Declare what more the
//!    device can do in [`DeviceCapabilities`] (unmap, unmapped blocks read
//!    as zeros, a volatile write cache, all-or-nothing writes, ...) and
//!    implement the matching methods; the emulator advertises exactly
//!    that and emulates the rest (WRITE SAME, COMPARE AND WRITE, VERIFY,
//!    EXTENDED COPY, ...). A device whose requests wait on the network
//!    implements [`AsyncBlockDevice`] instead, so that many commands wait
//!    at once without a thread each.
//! 2. **Test it without root.** With this crate's feature `test-utils`,
//!    the `testing` module serves the device through the real emulator
//!    and the real ring and serving loop over an in-process simulated
//!    kernel: `testing::TestLun` sends typed commands (`read`, `write`,
//!    `unmap`, `compare_and_write`, `sync`, raw CDBs, many in flight at
//!    once) and shows status, sense and data; `testing::check_device`
//!    drives random command sequences against a model of the medium and
//!    panics with a shrunk, readable counterexample when the device and
//!    its declared capabilities disagree. Both run in `cargo test`; the
//!    example `tcmu-target/examples/test_my_device.rs` shows a device
//!    crate doing it.
//! 3. **Serve it.** `tcmu_target::Target::builder(device).name("my-disk")
//!    .start()` makes it a SCSI disk of the running kernel (TCMU, as root)
//!    and exports it through tcm_loop or iSCSI; `tcmu-serve` does the same
//!    from the command line for the devices of `block-backends`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod async_block_device;
mod async_emulator;
mod async_path;
mod block_device;
mod block_error;
mod block_on;
mod block_size;
mod blocking;
mod capabilities;
mod cdb;
mod command;
mod command_spec;
mod compare_and_write;
mod completion;
mod copy_registry;
mod copy_status;
mod data_buffer;
mod device_capabilities;
mod device_filter;
mod emulator;
mod executor;
mod extent;
mod identity;
mod inquiry;
mod lba_status;
mod limits;
mod lun;
mod medium;
mod mode_page;
mod mode_select;
mod mode_sense;
#[cfg(test)]
mod model_tests;
mod opcode;
mod orwrite;
mod port_groups;
mod prefetch;
mod range_lock;
mod read_capacity;
mod read_defect_data;
mod read_write;
mod report_opcodes;
mod report_target_port_groups;
mod request_sense;
mod response;
mod sanitize;
mod sanitize_state;
mod sense_format;
mod start_stop_unit;
mod synchronize_cache;
// The TCMU ring glue: DataBuffer for ring segments, CommandHandler for
// the emulator (trait impls only, so the module stays private).
#[cfg(feature = "tcmu")]
mod tcmu;
// The harness and conformance check for device authors.
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(test)]
mod testutil;
mod unmap;
mod verify;
mod vpd;
mod write_atomic;
mod write_flags;
mod write_same;
mod xcopy;

pub use async_block_device::AsyncBlockDevice;
pub use async_emulator::{AsyncEmulator, DEFAULT_POLL_THREADS};
pub use block_device::BlockDevice;
pub use block_error::BlockError;
pub use block_on::block_on;
pub use block_size::{BlockSize, InvalidBlockSize};
pub use blocking::Blocking;
pub use completion::Completion;
pub use copy_registry::CopyRegistry;
pub use data_buffer::DataBuffer;
pub use device_capabilities::DeviceCapabilities;
pub use device_filter::DeviceFilter;
pub use emulator::{DEFAULT_MAX_IO_BYTES, Emulator};
pub use extent::{Extent, ExtentStatus, Provisioning};
pub use identity::{DEFAULT_VENDOR, LunIdentity, MAX_SERIAL_LEN};
pub use port_groups::{
    AccessState, LocalPort, PortGroupSource, PortGroups, SupportedStates, TargetPortGroup,
    TransitionCause,
};
pub use response::ScsiResponse;
pub use scsi_sense_codes::ScsiStatus;
pub use write_flags::WriteFlags;
