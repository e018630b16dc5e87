//! Decoding sense data of either format.

use crate::asc::AdditionalSense;
use crate::descriptor::{HEADER_LEN, INFORMATION_DESCRIPTOR, SENSE_KEY_SPECIFIC_DESCRIPTOR};
use crate::field_pointer::FieldPointer;
use crate::fixed::VALID;
use crate::key::SenseKey;
use crate::progress;
use crate::sense::Sense;

/// Response codes: current and deferred errors in each format.
const FIXED_CURRENT: u8 = 0x70;
const FIXED_DEFERRED: u8 = 0x71;
const DESCRIPTOR_CURRENT: u8 = 0x72;
const DESCRIPTOR_DEFERRED: u8 = 0x73;

/// Both formats put ADDITIONAL SENSE LENGTH in byte 7: the number of bytes
/// after it. Returns the part of `bytes` the sense data claims, cut to what
/// is there.
fn claimed(bytes: &[u8]) -> &[u8] {
    let end = HEADER_LEN + usize::from(bytes[7]);
    &bytes[..end.min(bytes.len())]
}

/// Byte `at` of `b`, zero past the end.
fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

pub(crate) fn parse(bytes: &[u8]) -> Option<Sense> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    match bytes[0] & 0x7F {
        FIXED_CURRENT | FIXED_DEFERRED => Some(parse_fixed(claimed(bytes))),
        DESCRIPTOR_CURRENT | DESCRIPTOR_DEFERRED => Some(parse_descriptor(claimed(bytes))),
        _ => None,
    }
}

fn parse_fixed(b: &[u8]) -> Sense {
    let key = SenseKey::from_u8(b[2]);
    let mut sense = Sense::new(key, AdditionalSense::new(byte(b, 12), byte(b, 13)));
    if b[0] & VALID != 0 {
        sense.information = Some(u64::from(u32::from_be_bytes([b[3], b[4], b[5], b[6]])));
    }
    if b.len() >= 18 {
        read_sense_key_specific(&mut sense, [b[15], b[16], b[17]]);
    }
    sense
}

/// The sense-key specific bytes hold a field pointer for ILLEGAL REQUEST
/// and a progress indication for NOT READY and NO SENSE; for other keys
/// they are not read.
fn read_sense_key_specific(sense: &mut Sense, bytes: [u8; 3]) {
    match sense.key {
        SenseKey::IllegalRequest => sense.field_pointer = FieldPointer::from_bytes(bytes),
        SenseKey::NotReady | SenseKey::NoSense => sense.progress = progress::from_bytes(bytes),
        _ => {}
    }
}

fn parse_descriptor(b: &[u8]) -> Sense {
    let key = SenseKey::from_u8(b[1]);
    let mut sense = Sense::new(key, AdditionalSense::new(b[2], b[3]));
    let mut rest = &b[HEADER_LEN..];
    // Each descriptor: type, additional length, then that many bytes. A
    // descriptor cut short by the end of the data is ignored.
    while let [kind, len, ..] = *rest {
        let Some(body) = rest.get(2..2 + usize::from(len)) else {
            break;
        };
        match kind {
            INFORMATION_DESCRIPTOR if body.len() >= 10 && body[0] & VALID != 0 => {
                let mut info = [0u8; 8];
                info.copy_from_slice(&body[2..10]);
                sense.information = Some(u64::from_be_bytes(info));
            }
            SENSE_KEY_SPECIFIC_DESCRIPTOR if body.len() >= 5 => {
                read_sense_key_specific(&mut sense, [body[2], body[3], body[4]]);
            }
            _ => {}
        }
        rest = &rest[2 + usize::from(len)..];
    }
    sense
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_unknown_response_codes_and_short_headers() {
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x70, 0, 5, 0, 0, 0, 0]), None);
        assert_eq!(
            Sense::parse(&[0x7F, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0]),
            None
        );
        assert_eq!(Sense::parse(&[0x00; 18]), None);
    }

    #[test]
    fn reads_deferred_errors_and_a_short_fixed_header() {
        let s = Sense::parse(&[0x71, 0, 0x04, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            s,
            Sense::new(
                SenseKey::HardwareError,
                AdditionalSense::NO_ADDITIONAL_SENSE
            )
        );
        let s = Sense::parse(&[0x73, 0x06, 0x29, 0x00, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            s,
            Sense::new(
                SenseKey::UnitAttention,
                AdditionalSense::POWER_ON_RESET_OR_BUS_DEVICE_RESET
            )
        );
    }

    #[test]
    fn honours_additional_sense_length() {
        // Bytes past the claimed length (here ASC/ASCQ) are not read.
        let mut b = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .to_fixed()
            .0;
        b[7] = 4;
        let s = Sense::parse(&b).unwrap();
        assert_eq!(s.code, AdditionalSense::NO_ADDITIONAL_SENSE);
    }

    #[test]
    fn skips_unknown_and_truncated_descriptors() {
        let b = [
            0x72, 0x05, 0x24, 0x00, 0, 0, 0, 22, // header
            0x80, 0x02, 0xAA, 0xBB, // vendor-specific descriptor
            0x02, 0x06, 0, 0, 0xC8, 0, 4, 0, // sense-key specific
            0x00, 0x0A, 0x80, 0, // information, cut short
        ];
        let s = Sense::parse(&b).unwrap();
        assert_eq!(
            s,
            Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
                .with_cdb_field(4, Some(0))
        );
    }

    #[test]
    fn field_pointer_is_read_only_for_illegal_request() {
        let mut b = Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
            .with_cdb_field(1, None)
            .to_fixed()
            .0;
        b[2] = SenseKey::NotReady as u8; // progress indication, not a pointer
        let s = Sense::parse(&b).unwrap();
        assert_eq!(s.field_pointer, None);
        assert_eq!(s.progress, Some(0x0001));
        b[2] = SenseKey::MediumError as u8; // neither
        let s = Sense::parse(&b).unwrap();
        assert_eq!((s.field_pointer, s.progress), (None, None));
    }

    fn sense_strategy() -> impl Strategy<Value = Sense> {
        (
            0u8..16,
            any::<(u8, u8)>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of((any::<bool>(), any::<u16>(), proptest::option::of(0u8..8))),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(|(key, (asc, ascq), information, fp, progress)| {
                let key = SenseKey::from_u8(key);
                Sense {
                    key,
                    code: AdditionalSense::new(asc, ascq),
                    information,
                    field_pointer: fp
                        .filter(|_| key == SenseKey::IllegalRequest)
                        .map(|(in_cdb, byte, bit)| FieldPointer { in_cdb, byte, bit }),
                    progress: progress
                        .filter(|_| matches!(key, SenseKey::NotReady | SenseKey::NoSense)),
                }
            })
    }

    proptest! {
        #[test]
        fn descriptor_format_round_trips(sense in sense_strategy()) {
            prop_assert_eq!(Sense::parse(sense.to_descriptor().as_bytes()), Some(sense));
            prop_assert_eq!(Sense::parse(sense.encode(true).as_bytes()), Some(sense));
        }

        #[test]
        fn fixed_format_round_trips_32_bit_information(sense in sense_strategy()) {
            let mut expected = sense;
            expected.information = sense.information.filter(|&i| i <= u64::from(u32::MAX));
            prop_assert_eq!(Sense::parse(sense.to_fixed().as_bytes()), Some(expected));
            prop_assert_eq!(Sense::parse(sense.encode(false).as_bytes()), Some(expected));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            code in prop_oneof![Just(0x70u8), Just(0x71), Just(0x72), Just(0xF3), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = vec![code];
            b.extend(rest);
            if let Some(s) = Sense::parse(&b) {
                // Whatever was read can be encoded and displayed.
                let _ = s.to_string();
                prop_assert!(s.encode(true).len() <= crate::MAX_SENSE_LEN);
            }
        }
    }
}
