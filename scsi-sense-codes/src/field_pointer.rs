//! The sense-key specific field pointer of an ILLEGAL REQUEST: which CDB or
//! parameter-list byte (and bit) was refused.

use std::fmt;

/// Where the offending field is, for ILLEGAL REQUEST (sense-key specific
/// field pointer, SPC-5 4.4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPointer {
    /// The field is in the CDB (`true`) or in the parameter list (`false`).
    pub in_cdb: bool,
    /// Byte number of the field.
    pub byte: u16,
    /// Bit number (0..=7) of the field's most significant bit, if known.
    pub bit: Option<u8>,
}

/// SKSV: the sense-key specific bytes are valid.
const SKSV: u8 = 0x80;
/// C/D: the field pointer points into the CDB.
const C_D: u8 = 0x40;
/// BPV: the BIT POINTER field is valid.
const BPV: u8 = 0x08;

impl FieldPointer {
    /// The three sense-key specific bytes (SKSV set).
    pub fn to_bytes(&self) -> [u8; 3] {
        let mut b0 = SKSV;
        if self.in_cdb {
            b0 |= C_D;
        }
        if let Some(bit) = self.bit {
            b0 |= BPV | (bit & 0x07);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }

    /// Decode the three sense-key specific bytes of an ILLEGAL REQUEST;
    /// `None` when SKSV is clear (no field pointer was reported).
    pub fn from_bytes(bytes: [u8; 3]) -> Option<FieldPointer> {
        if bytes[0] & SKSV == 0 {
            return None;
        }
        Some(FieldPointer {
            in_cdb: bytes[0] & C_D != 0,
            byte: u16::from_be_bytes([bytes[1], bytes[2]]),
            bit: (bytes[0] & BPV != 0).then_some(bytes[0] & 0x07),
        })
    }
}

impl fmt::Display for FieldPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.in_cdb { "CDB" } else { "parameter list" };
        write!(f, "{place} byte {}", self.byte)?;
        if let Some(bit) = self.bit {
            write!(f, " bit {bit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_pointer_bytes_round_trip() {
        for fp in [
            FieldPointer {
                in_cdb: true,
                byte: 2,
                bit: Some(5),
            },
            FieldPointer {
                in_cdb: false,
                byte: 0x1234,
                bit: None,
            },
            FieldPointer {
                in_cdb: false,
                byte: 0,
                bit: Some(0),
            },
        ] {
            assert_eq!(FieldPointer::from_bytes(fp.to_bytes()), Some(fp));
        }
        assert_eq!(FieldPointer::from_bytes([0x4F, 1, 2]), None);
    }
}
