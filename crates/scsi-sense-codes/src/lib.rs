//! SCSI sense data: sense keys, additional sense codes (ASC/ASCQ) and the
//! fixed-format sense builder (SPC-5 4.4).

#![forbid(unsafe_code)]

mod asc;
mod fixed;
mod key;

pub use asc::AdditionalSense;
pub use fixed::{FIXED_SENSE_LEN, FixedSense};
pub use key::SenseKey;

/// A complete sense description: key, additional sense code and the
/// optional INFORMATION field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: SenseKey,
    pub code: AdditionalSense,
    /// The INFORMATION field (e.g. the offset of a miscompare), if valid.
    pub information: Option<u32>,
}

impl Sense {
    /// Sense with the given key and code and no INFORMATION field.
    pub const fn new(key: SenseKey, code: AdditionalSense) -> Self {
        Sense {
            key,
            code,
            information: None,
        }
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
