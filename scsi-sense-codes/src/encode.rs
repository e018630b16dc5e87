//! A [`Sense`] to bytes and back, in the format the initiator asked for
//! (the D_SENSE bit of the control mode page).

use crate::descriptor::DescriptorSense;
use crate::fixed::FixedSense;
use crate::parse;
use crate::sense::Sense;
use crate::sense_data::SenseData;

impl Sense {
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
    /// field pointer for ILLEGAL REQUEST and as a progress indication for
    /// NOT READY and NO SENSE, the keys for which they hold those.
    pub fn parse(bytes: &[u8]) -> Option<Sense> {
        parse::parse(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdditionalSense, SenseKey};

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
}
