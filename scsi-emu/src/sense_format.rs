//! Sense data on the wire: fixed format (70h) or descriptor format (72h),
//! as the control mode page's D_SENSE bit (or REQUEST SENSE's DESC bit)
//! selects (SPC-5 4.4).
//!
//! This is the one place that turns a [`Sense`] into bytes.

use scsi_sense_codes::Sense;

/// `sense` encoded in descriptor format when `descriptor` is set, in
/// fixed format otherwise.
pub(crate) fn encode(sense: &Sense, descriptor: bool) -> Vec<u8> {
    sense.encode(descriptor).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;

    #[test]
    fn fixed_format_is_the_sense_crates() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_cdb_field(2, Some(7));
        assert_eq!(encode(&s, false), s.to_fixed().as_bytes());
    }

    #[test]
    fn descriptor_format_without_descriptors() {
        let s = Sense::new(SenseKey::NoSense, AdditionalSense::NO_ADDITIONAL_SENSE);
        assert_eq!(encode(&s, true), [0x72, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_format_with_information_and_field_pointer() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_cdb_field(0x0102, Some(3));
        let b = encode(&s, true);
        assert_eq!(&b[..8], &[0x72, 0x05, 0x24, 0x00, 0, 0, 0, 8]);
        assert_eq!(
            &b[8..],
            &[0x02, 0x06, 0, 0, 0x80 | 0x40 | 0x08 | 3, 0x01, 0x02, 0]
        );

        let s = Sense::new(
            SenseKey::Miscompare,
            AdditionalSense::MISCOMPARE_DURING_VERIFY,
        )
        .with_information_u64(0x0A0B_0C0D);
        let b = encode(&s, true);
        assert_eq!(&b[..8], &[0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12]);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0]);
        assert_eq!(&b[12..], &[0, 0, 0, 0, 0x0A, 0x0B, 0x0C, 0x0D]);
    }
}
