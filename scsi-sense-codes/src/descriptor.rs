//! Descriptor-format sense data (SPC-5 4.4.2).

use crate::sense::Sense;

/// Length of the descriptor-format header (bytes 0..=7).
pub(crate) const HEADER_LEN: usize = 8;
/// Length of the information sense data descriptor.
const INFORMATION_DESCRIPTOR_LEN: usize = 12;
/// Length of the sense-key specific sense data descriptor.
const SENSE_KEY_SPECIFIC_DESCRIPTOR_LEN: usize = 8;

/// The longest descriptor-format sense data this crate builds: the header,
/// an information descriptor and a sense-key specific descriptor.
pub const DESCRIPTOR_SENSE_MAX_LEN: usize =
    HEADER_LEN + INFORMATION_DESCRIPTOR_LEN + SENSE_KEY_SPECIFIC_DESCRIPTOR_LEN;

/// Response code of descriptor-format sense data for a current error.
pub(crate) const RESPONSE_CODE_CURRENT_DESCRIPTOR: u8 = 0x72;
/// DESCRIPTOR TYPE of the information sense data descriptor.
pub(crate) const INFORMATION_DESCRIPTOR: u8 = 0x00;
/// DESCRIPTOR TYPE of the sense-key specific sense data descriptor.
pub(crate) const SENSE_KEY_SPECIFIC_DESCRIPTOR: u8 = 0x02;

/// Descriptor-format sense data bytes (response code 72h): the header,
/// then an information descriptor (type 00h) when the sense has an
/// INFORMATION value, then a sense-key specific descriptor (type 02h) when
/// it has a field pointer or a progress indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorSense {
    bytes: [u8; DESCRIPTOR_SENSE_MAX_LEN],
    len: u8,
}

impl DescriptorSense {
    /// Encode `sense`.
    pub fn new(sense: &Sense) -> Self {
        let mut b = [0u8; DESCRIPTOR_SENSE_MAX_LEN];
        b[0] = RESPONSE_CODE_CURRENT_DESCRIPTOR;
        b[1] = sense.key as u8;
        b[2] = sense.code.asc;
        b[3] = sense.code.ascq;
        let mut len = HEADER_LEN;
        if let Some(info) = sense.information {
            let d = &mut b[len..len + INFORMATION_DESCRIPTOR_LEN];
            d[0] = INFORMATION_DESCRIPTOR;
            d[1] = (INFORMATION_DESCRIPTOR_LEN - 2) as u8;
            // VALID is always one in this descriptor (SPC-5 4.4.2.2).
            d[2] = 0x80;
            d[4..12].copy_from_slice(&info.to_be_bytes());
            len += INFORMATION_DESCRIPTOR_LEN;
        }
        if let Some(sks) = sense.sense_key_specific() {
            let d = &mut b[len..len + SENSE_KEY_SPECIFIC_DESCRIPTOR_LEN];
            d[0] = SENSE_KEY_SPECIFIC_DESCRIPTOR;
            d[1] = (SENSE_KEY_SPECIFIC_DESCRIPTOR_LEN - 2) as u8;
            d[4..7].copy_from_slice(&sks);
            len += SENSE_KEY_SPECIFIC_DESCRIPTOR_LEN;
        }
        // ADDITIONAL SENSE LENGTH: the descriptors after the header.
        b[7] = (len - HEADER_LEN) as u8;
        DescriptorSense {
            bytes: b,
            len: len as u8,
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use crate::{AdditionalSense, Sense, SenseKey};

    #[test]
    fn header_only_without_information_or_field_pointer() {
        let s =
            Sense::new(SenseKey::NotReady, AdditionalSense::LOGICAL_UNIT_NOT_READY).to_descriptor();
        assert_eq!(s.as_bytes(), &[0x72, 0x02, 0x04, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn information_descriptor_carries_64_bits() {
        let s = Sense::new(
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        )
        .with_information_u64(0x0102_0304_0506_0708)
        .to_descriptor();
        assert_eq!(
            s.as_bytes(),
            &[
                0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12, // header
                0x00, 0x0A, 0x80, 0, 1, 2, 3, 4, 5, 6, 7, 8, // information
            ]
        );
    }

    #[test]
    fn both_descriptors_in_order() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_information(7)
            .with_cdb_field(9, Some(1))
            .to_descriptor();
        let b = s.as_bytes();
        assert_eq!(b.len(), 28);
        assert_eq!(b[7], 20);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0]);
        assert_eq!(b[19], 7);
        assert_eq!(
            &b[20..28],
            &[0x02, 0x06, 0, 0, 0x80 | 0x40 | 0x08 | 1, 0, 9, 0]
        );
    }

    #[test]
    fn progress_indication_descriptor() {
        let s = Sense::new(
            SenseKey::NotReady,
            AdditionalSense::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
        )
        .with_progress(0xABCD)
        .to_descriptor();
        assert_eq!(
            s.as_bytes(),
            &[
                0x72, 0x02, 0x04, 0x1B, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0x80, 0xAB, 0xCD, 0
            ]
        );
    }

    #[test]
    fn field_pointer_alone() {
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST)
            .with_parameter_field(0x0203, None)
            .to_descriptor();
        assert_eq!(
            s.as_bytes(),
            &[
                0x72, 0x05, 0x26, 0x00, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0x80, 2, 3, 0
            ]
        );
    }
}
