//! SCSI sense data: sense keys, additional sense codes (ASC/ASCQ), and the
//! fixed-format and descriptor-format encodings (SPC-5 4.4).
//!
//! A [`Sense`] says what went wrong; [`Sense::encode`] turns it into the
//! bytes a target returns, in the format the initiator asked for (the
//! D_SENSE bit of the control mode page), and [`Sense::parse`] reads either
//! format back.
//!
//! ```
//! use scsi_sense_codes::{AdditionalSense, Sense};
//!
//! let sense = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
//!     .with_cdb_field(2, Some(5));
//! let fixed = sense.encode(false);
//! assert_eq!(fixed.as_bytes()[0], 0x70);
//! let descriptor = sense.encode(true);
//! assert_eq!(descriptor.as_bytes()[0], 0x72);
//! assert_eq!(Sense::parse(fixed.as_bytes()), Some(sense));
//! assert_eq!(Sense::parse(descriptor.as_bytes()), Some(sense));
//! assert_eq!(
//!     sense.to_string(),
//!     "ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h), field pointer CDB byte 2 bit 5"
//! );
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod asc;
mod descriptor;
mod encode;
mod field_pointer;
mod fixed;
mod key;
mod parse;
mod progress;
mod sense;
mod sense_data;
mod status;

pub use asc::AdditionalSense;
pub use descriptor::{DESCRIPTOR_SENSE_MAX_LEN, DescriptorSense};
pub use field_pointer::FieldPointer;
pub use fixed::{FIXED_SENSE_LEN, FixedSense};
pub use key::SenseKey;
pub use sense::Sense;
pub use sense_data::{MAX_SENSE_LEN, SenseData};
pub use status::ScsiStatus;
