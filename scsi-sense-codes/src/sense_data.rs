//! Encoded sense data of either format, without heap allocation.

use crate::descriptor::{DESCRIPTOR_SENSE_MAX_LEN, DescriptorSense};
use crate::fixed::{FIXED_SENSE_LEN, FixedSense};

/// The longest sense data [`SenseData`] holds.
pub const MAX_SENSE_LEN: usize = if DESCRIPTOR_SENSE_MAX_LEN > FIXED_SENSE_LEN {
    DESCRIPTOR_SENSE_MAX_LEN
} else {
    FIXED_SENSE_LEN
};

/// Sense data in fixed or descriptor format, as returned by
/// [`Sense::encode`](crate::Sense::encode): a byte array and its length, so
/// it is `Copy` and never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenseData {
    bytes: [u8; MAX_SENSE_LEN],
    len: u8,
}

impl SenseData {
    fn from_slice(src: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_SENSE_LEN];
        bytes[..src.len()].copy_from_slice(src);
        SenseData {
            bytes,
            len: src.len() as u8,
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Number of encoded bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no bytes (never the case for encoded sense).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the data is in descriptor format (response code 72h/73h).
    pub fn is_descriptor(&self) -> bool {
        matches!(self.bytes[0] & 0x7F, 0x72 | 0x73)
    }
}

impl From<FixedSense> for SenseData {
    fn from(fixed: FixedSense) -> Self {
        SenseData::from_slice(fixed.as_bytes())
    }
}

impl From<DescriptorSense> for SenseData {
    fn from(descriptor: DescriptorSense) -> Self {
        SenseData::from_slice(descriptor.as_bytes())
    }
}

impl AsRef<[u8]> for SenseData {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdditionalSense, Sense};

    #[test]
    fn holds_the_longest_encoding_of_either_format() {
        assert_eq!(MAX_SENSE_LEN, 28);
        let s = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_information_u64(u64::MAX)
            .with_cdb_field(1, None);
        let d = s.encode(true);
        assert_eq!(d.len(), MAX_SENSE_LEN);
        assert_eq!(d.as_ref(), s.to_descriptor().as_bytes());
        let f = s.encode(false);
        assert_eq!(f.len(), FIXED_SENSE_LEN);
        assert!(!f.is_empty());
        assert_eq!(f.as_ref(), s.to_fixed().as_bytes());
    }
}
