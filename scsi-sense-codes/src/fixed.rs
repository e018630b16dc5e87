//! Fixed-format sense data (SPC-5 4.4.3).

use crate::sense::Sense;

/// Length of the fixed-format sense data this crate builds.
pub const FIXED_SENSE_LEN: usize = 18;

/// Response code of fixed-format sense data for a current error.
pub(crate) const RESPONSE_CODE_CURRENT_FIXED: u8 = 0x70;
/// The VALID bit: the INFORMATION field is meaningful.
pub(crate) const VALID: u8 = 0x80;

/// Fixed-format sense data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedSense(pub [u8; FIXED_SENSE_LEN]);

impl FixedSense {
    /// Encode `sense`.
    pub fn new(sense: &Sense) -> Self {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = RESPONSE_CODE_CURRENT_FIXED;
        b[2] = sense.key as u8;
        // A value wider than the 4-byte field is left out with VALID clear
        // (SPC-5 4.4.3); descriptor format carries it whole.
        if let Some(info) = sense.information.and_then(|i| u32::try_from(i).ok()) {
            b[0] |= VALID;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        // ADDITIONAL SENSE LENGTH: bytes after byte 7.
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = sense.code.asc;
        b[13] = sense.code.ascq;
        if let Some(sks) = sense.sense_key_specific() {
            b[15..18].copy_from_slice(&sks);
        }
        FixedSense(b)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use crate::{AdditionalSense, Sense, SenseKey};

    #[test]
    fn encodes_key_asc_and_ascq() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB).to_fixed();
        let b = s.as_bytes();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(&b[3..7], &[0, 0, 0, 0]);
    }

    #[test]
    fn field_pointer_fills_the_sense_key_specific_bytes() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_cdb_field(2, Some(5))
            .to_fixed();
        assert_eq!(&s.as_bytes()[15..18], &[0x80 | 0x40 | 0x08 | 5, 0, 2]);
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST)
            .with_parameter_field(0x104, None)
            .to_fixed();
        assert_eq!(&s.as_bytes()[15..18], &[0x80, 1, 4]);
    }

    #[test]
    fn progress_fills_the_sense_key_specific_bytes() {
        let s = Sense::new(
            SenseKey::NotReady,
            AdditionalSense::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
        )
        .with_progress(0x1234)
        .to_fixed();
        let b = s.as_bytes();
        assert_eq!((b[2], b[12], b[13]), (0x02, 0x04, 0x1B));
        assert_eq!(&b[15..18], &[0x80, 0x12, 0x34]);
    }

    #[test]
    fn information_sets_valid_bit() {
        let s = Sense::new(
            SenseKey::Miscompare,
            AdditionalSense::MISCOMPARE_DURING_VERIFY,
        )
        .with_information(0x01020304)
        .to_fixed();
        let b = s.as_bytes();
        assert_eq!(b[0], 0xF0);
        assert_eq!(&b[3..7], &[1, 2, 3, 4]);
        assert_eq!(b[2], 0x0E);
    }

    #[test]
    fn information_wider_than_32_bits_is_left_out() {
        let s = Sense::new(
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        )
        .with_information_u64(0x1_0000_0000)
        .to_fixed();
        let b = s.as_bytes();
        assert_eq!(b[0], 0x70);
        assert_eq!(&b[3..7], &[0, 0, 0, 0]);
        let s = Sense::new(
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        )
        .with_information_u64(0xFFFF_FFFF)
        .to_fixed();
        assert_eq!(s.as_bytes()[0], 0xF0);
        assert_eq!(&s.as_bytes()[3..7], &[0xFF; 4]);
    }
}
