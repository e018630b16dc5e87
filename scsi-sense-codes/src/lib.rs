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

#![forbid(unsafe_code)]

mod asc;
mod descriptor;
mod fixed;
mod key;
mod parse;
mod sense_data;

use std::fmt;

pub use asc::AdditionalSense;
pub use descriptor::{DESCRIPTOR_SENSE_MAX_LEN, DescriptorSense};
pub use fixed::{FIXED_SENSE_LEN, FixedSense};
pub use key::SenseKey;
pub use sense_data::{MAX_SENSE_LEN, SenseData};

/// Where the offending field is, for ILLEGAL REQUEST (sense-key specific
/// field pointer, SPC-5 4.4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPointer {
    /// The field is in the CDB (`true`) or in the parameter list (`false`).
    pub in_cdb: bool,
    /// Byte number of the field.
    pub byte: u16,
    /// Bit number (0..=7) of the field's most significant bit, if known.
    pub bit: Option<u8>,
}

/// SKSV: the sense-key specific bytes are valid.
const SKSV: u8 = 0x80;
/// C/D: the field pointer points into the CDB.
const C_D: u8 = 0x40;
/// BPV: the BIT POINTER field is valid.
const BPV: u8 = 0x08;

impl FieldPointer {
    /// The three sense-key specific bytes (SKSV set).
    pub fn to_bytes(&self) -> [u8; 3] {
        let mut b0 = SKSV;
        if self.in_cdb {
            b0 |= C_D;
        }
        if let Some(bit) = self.bit {
            b0 |= BPV | (bit & 0x07);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }

    /// Decode the three sense-key specific bytes of an ILLEGAL REQUEST;
    /// `None` when SKSV is clear (no field pointer was reported).
    pub fn from_bytes(bytes: [u8; 3]) -> Option<FieldPointer> {
        if bytes[0] & SKSV == 0 {
            return None;
        }
        Some(FieldPointer {
            in_cdb: bytes[0] & C_D != 0,
            byte: u16::from_be_bytes([bytes[1], bytes[2]]),
            bit: (bytes[0] & BPV != 0).then_some(bytes[0] & 0x07),
        })
    }
}

impl fmt::Display for FieldPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.in_cdb { "CDB" } else { "parameter list" };
        write!(f, "{place} byte {}", self.byte)?;
        if let Some(bit) = self.bit {
            write!(f, " bit {bit}")?;
        }
        Ok(())
    }
}

/// A complete sense description: key, additional sense code, the optional
/// INFORMATION field and the optional field pointer.
///
/// The INFORMATION field is 64 bits wide, as in the information sense data
/// descriptor, so an LBA beyond 2^32 can be reported. Fixed-format sense
/// has room for only 32 bits: there, a wider value is left out and the
/// VALID bit is clear, as SPC-5 and SBC-4 require for a value that does not
/// fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    /// The general category of the condition.
    pub key: SenseKey,
    /// The additional sense code and qualifier.
    pub code: AdditionalSense,
    /// The INFORMATION field (e.g. the offset of a miscompare, the LBA of a
    /// medium error), if valid.
    pub information: Option<u64>,
    /// The offending field of an ILLEGAL REQUEST, if known.
    pub field_pointer: Option<FieldPointer>,
}

impl Sense {
    /// Sense with the given key and code and no INFORMATION field.
    pub const fn new(key: SenseKey, code: AdditionalSense) -> Self {
        Sense {
            key,
            code,
            information: None,
            field_pointer: None,
        }
    }

    /// The same sense pointing at CDB byte `byte` (and bit `bit`).
    pub const fn with_cdb_field(mut self, byte: u16, bit: Option<u8>) -> Self {
        self.field_pointer = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        self
    }

    /// The same sense pointing at parameter-list byte `byte` (and bit `bit`).
    pub const fn with_parameter_field(mut self, byte: u16, bit: Option<u8>) -> Self {
        self.field_pointer = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        self
    }

    /// The same sense with the INFORMATION field set to a 32-bit value
    /// (which every sense format can carry).
    pub const fn with_information(mut self, information: u32) -> Self {
        self.information = Some(information as u64);
        self
    }

    /// The same sense with the INFORMATION field set to a 64-bit value
    /// (e.g. an LBA of a 16-byte command). Only descriptor-format sense
    /// carries values above `u32::MAX`; fixed format then leaves it out.
    pub const fn with_information_u64(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// ILLEGAL REQUEST with the given additional sense.
    pub const fn illegal_request(code: AdditionalSense) -> Self {
        Sense::new(SenseKey::IllegalRequest, code)
    }

    /// Encode as fixed-format sense data (response code 70h, current error).
    pub fn to_fixed(&self) -> FixedSense {
        FixedSense::new(self)
    }

    /// Encode as descriptor-format sense data (response code 72h, current
    /// error).
    pub fn to_descriptor(&self) -> DescriptorSense {
        DescriptorSense::new(self)
    }

    /// Encode in descriptor format when `descriptor` is true (the D_SENSE
    /// bit of the control mode page is set), in fixed format otherwise.
    pub fn encode(&self, descriptor: bool) -> SenseData {
        if descriptor {
            SenseData::from(self.to_descriptor())
        } else {
            SenseData::from(self.to_fixed())
        }
    }

    /// Decode fixed-format (70h/71h) or descriptor-format (72h/73h) sense
    /// data; `None` for any other response code or when the 8-byte header
    /// is incomplete.
    ///
    /// Fields the data is too short to hold read as zero or absent, and the
    /// additional sense length is honoured. Current and deferred errors are
    /// not told apart. The sense-key specific bytes are read back as a
    /// field pointer only for ILLEGAL REQUEST, the one key for which they
    /// hold one.
    pub fn parse(bytes: &[u8]) -> Option<Sense> {
        parse::parse(bytes)
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.key, self.code)?;
        if let Some(info) = self.information {
            write!(f, ", information {info:#x}")?;
        }
        if let Some(fp) = self.field_pointer {
            write!(f, ", field pointer {fp}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_pointer_bytes_round_trip() {
        for fp in [
            FieldPointer {
                in_cdb: true,
                byte: 2,
                bit: Some(5),
            },
            FieldPointer {
                in_cdb: false,
                byte: 0x1234,
                bit: None,
            },
            FieldPointer {
                in_cdb: false,
                byte: 0,
                bit: Some(0),
            },
        ] {
            assert_eq!(FieldPointer::from_bytes(fp.to_bytes()), Some(fp));
        }
        assert_eq!(FieldPointer::from_bytes([0x4F, 1, 2]), None);
    }

    #[test]
    fn display_names_every_part() {
        let s = Sense::new(
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        )
        .with_information_u64(0x1_0000_0000);
        assert_eq!(
            s.to_string(),
            "MEDIUM ERROR, UNRECOVERED READ ERROR (11h/00h), information 0x100000000"
        );
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST)
            .with_parameter_field(260, None);
        assert_eq!(
            s.to_string(),
            "ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26h/00h), \
             field pointer parameter list byte 260"
        );
    }

    #[test]
    fn encode_picks_the_format() {
        let s = Sense::new(
            SenseKey::UnitAttention,
            AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
        );
        let fixed = s.encode(false);
        assert_eq!(fixed.as_bytes(), s.to_fixed().as_bytes());
        assert!(!fixed.is_descriptor());
        let desc = s.encode(true);
        assert_eq!(desc.as_bytes(), s.to_descriptor().as_bytes());
        assert!(desc.is_descriptor());
        assert_eq!(desc.len(), 8);
    }

    #[test]
    fn with_information_keeps_32_bit_callers_working() {
        let s = Sense::new(
            SenseKey::Miscompare,
            AdditionalSense::MISCOMPARE_DURING_VERIFY,
        )
        .with_information(u32::MAX);
        assert_eq!(s.information, Some(0xFFFF_FFFF));
    }
}
