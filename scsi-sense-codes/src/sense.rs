//! A complete sense description: key, additional sense code, INFORMATION
//! and sense-key specific data (field pointer or progress indication),
//! independent of its encoding.

use std::fmt;

use crate::asc::AdditionalSense;
use crate::field_pointer::FieldPointer;
use crate::key::SenseKey;
use crate::progress;

/// A complete sense description: key, additional sense code, the optional
/// INFORMATION field and the optional sense-key specific data (a field
/// pointer or a progress indication).
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
    /// How far an operation that keeps the unit NOT READY (e.g. a
    /// sanitize) has got, in 65536ths (SPC-5 4.4.2.4.4); meaningful for
    /// NOT READY and NO SENSE. A field pointer takes the same bytes and
    /// wins when both are set.
    pub progress: Option<u16>,
}

impl Sense {
    /// Sense with the given key and code and no INFORMATION field.
    pub const fn new(key: SenseKey, code: AdditionalSense) -> Self {
        Sense {
            key,
            code,
            information: None,
            field_pointer: None,
            progress: None,
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

    /// The same sense with a progress indication of `progress` / 65536.
    pub const fn with_progress(mut self, progress: u16) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The three sense-key specific bytes (SKSV set), when there are any:
    /// the field pointer, else the progress indication.
    pub(crate) fn sense_key_specific(&self) -> Option<[u8; 3]> {
        match (self.field_pointer, self.progress) {
            (Some(fp), _) => Some(fp.to_bytes()),
            (None, Some(progress)) => Some(progress::to_bytes(progress)),
            (None, None) => None,
        }
    }

    /// ILLEGAL REQUEST with the given additional sense.
    pub const fn illegal_request(code: AdditionalSense) -> Self {
        Sense::new(SenseKey::IllegalRequest, code)
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
        if let Some(progress) = self.progress {
            write!(f, ", progress {progress}/65536")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn progress_is_displayed_and_yields_to_a_field_pointer() {
        let s = Sense::new(
            SenseKey::NotReady,
            AdditionalSense::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
        )
        .with_progress(0x8000);
        assert_eq!(
            s.to_string(),
            "NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS (04h/1Bh), \
             progress 32768/65536"
        );
        assert_eq!(s.sense_key_specific(), Some([0x80, 0x80, 0x00]));
        let both = s.with_cdb_field(1, None);
        assert_eq!(both.sense_key_specific(), Some([0xC0, 0, 1]));
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
