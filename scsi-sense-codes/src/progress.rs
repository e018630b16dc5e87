//! The sense-key specific progress indication of NOT READY and NO SENSE
//! (SPC-5 4.4.2.4.4): how much of a long operation, such as a format or a
//! sanitize, is done.

/// SKSV: the sense-key specific bytes are valid.
const SKSV: u8 = 0x80;

/// The three sense-key specific bytes for `progress` / 65536 done.
pub(crate) fn to_bytes(progress: u16) -> [u8; 3] {
    let [hi, lo] = progress.to_be_bytes();
    [SKSV, hi, lo]
}

/// The progress indication in three sense-key specific bytes; `None` when
/// SKSV is clear.
pub(crate) fn from_bytes(bytes: [u8; 3]) -> Option<u16> {
    (bytes[0] & SKSV != 0).then(|| u16::from_be_bytes([bytes[1], bytes[2]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bytes_round_trip() {
        for progress in [0u16, 1, 0x1234, 0xFFFF] {
            assert_eq!(from_bytes(to_bytes(progress)), Some(progress));
        }
        assert_eq!(to_bytes(0x4000), [0x80, 0x40, 0x00]);
        assert_eq!(from_bytes([0x00, 0x40, 0x00]), None);
    }
}
