//! SCSI block-device emulation (SPC/SBC) on top of a [`BlockDevice`].

#![forbid(unsafe_code)]

pub mod block_device;
pub mod data_buffer;

pub use block_device::{BlockDevice, BlockError};
pub use data_buffer::DataBuffer;
