//! SCSI sense data: sense keys, additional sense codes (ASC/ASCQ) and the
//! fixed-format sense builder (SPC-5 4.4).

#![forbid(unsafe_code)]

mod asc;
mod fixed;
mod key;

pub use asc::AdditionalSense;
pub use fixed::{FIXED_SENSE_LEN, FixedSense};
pub use key::SenseKey;

/// Where the offending field is, for ILLEGAL REQUEST (sense-key specific
/// field pointer, SPC-5 4.4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// The field is in the CDB (`true`) or in the parameter list (`false`).
    pub in_cdb: bool,
    /// Byte number of the field.
    pub byte: u16,
    /// Bit number (0..=7) of the field's most significant bit, if known.
    pub bit: Option<u8>,
}

impl FieldPointer {
    /// The three sense-key specific bytes (SKSV set).
    pub fn to_bytes(&self) -> [u8; 3] {
        let mut b0 = 0x80;
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }
}

/// A complete sense description: key, additional sense code, the optional
/// INFORMATION field and the optional field pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub code: AdditionalSense,
    /// The INFORMATION field (e.g. the offset of a miscompare), if valid.
    pub information: Option<u32>,
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

    /// The same sense with the INFORMATION field set.
    pub const fn with_information(mut self, information: u32) -> Self {
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
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.key, self.code)?;
        if let Some(info) = self.information {
            write!(f, " (information {info:#x})")?;
        }
        Ok(())
    }
}
