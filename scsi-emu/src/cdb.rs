//! Raw CDB access: the CDB length implied by the operation code, checks
//! every command shares, and big-endian field readers.
//!
//! Field readers never index out of bounds: a [`Cdb`] is only built once
//! the bytes are at least as long as the opcode's group requires, and the
//! readers return zero for anything beyond that anyway, so a wrong offset
//! in a decoder is a wrong value, never a panic.

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::{AdditionalSense, Sense};

/// NACA bit of the CONTROL byte (SAM-5 5.2). We do not implement ACA, so
/// a command asking for it must be rejected.
const CONTROL_NACA: u8 = 0x04;

/// The CDB length fixed by the group code (top three bits) of `opcode`,
/// or `None` for groups without a fixed length: 3 (reserved and the
/// variable-length CDBs) and 6, 7 (vendor specific).
pub(crate) fn cdb_length(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// ILLEGAL REQUEST, INVALID FIELD IN CDB, with the field pointer at CDB
/// byte `byte`, bit `bit` (the most significant bit of the offending
/// field), so the initiator can tell which field was refused.
pub(crate) fn invalid_field(byte: u16, bit: u8) -> Sense {
    Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB).with_cdb_field(byte, Some(bit))
}

/// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at byte
/// `byte`, bit `bit` of the parameter data.
pub(crate) fn invalid_parameter(byte: usize, bit: u8) -> Sense {
    Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST)
        .with_parameter_field(u16::try_from(byte).unwrap_or(u16::MAX), Some(bit))
}

/// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR: the parameter data ends
/// inside a structure it announces.
pub(crate) fn parameter_list_length_error() -> Sense {
    Sense::illegal_request(AdditionalSense::PARAMETER_LIST_LENGTH_ERROR)
}

/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
pub(crate) fn invalid_opcode() -> Sense {
    Sense::illegal_request(AdditionalSense::INVALID_COMMAND_OPERATION_CODE)
}

/// A CDB whose length matches its group code and whose CONTROL byte asks
/// for nothing we do not support. Bytes beyond the group's length (a
/// transport may hand over a padded CDB) are ignored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cdb<'a> {
    bytes: &'a [u8],
}

impl<'a> Cdb<'a> {
    /// Check `bytes` and trim them to the opcode's CDB length.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, Sense> {
        let opcode = *bytes.first().ok_or_else(invalid_opcode)?;
        let len = cdb_length(opcode).ok_or_else(invalid_opcode)?;
        // Too short for its group: the operation code is what implies a
        // length the bytes do not have.
        let bytes = bytes.get(..len).ok_or_else(|| invalid_field(0, 7))?;
        let cdb = Cdb { bytes };
        if cdb.control() & CONTROL_NACA != 0 {
            return Err(invalid_field(cdb.control_byte_index(), 2));
        }
        Ok(cdb)
    }

    /// The operation code (byte 0).
    pub(crate) fn opcode(&self) -> u8 {
        self.byte(0)
    }

    /// The CDB length (6, 10, 12 or 16).
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The CONTROL byte, always the last one.
    pub(crate) fn control(&self) -> u8 {
        self.bytes.last().copied().unwrap_or(0)
    }

    /// The index of the CONTROL byte, for field pointers.
    pub(crate) fn control_byte_index(&self) -> u16 {
        self.bytes.len().saturating_sub(1) as u16
    }

    /// Byte `index`; zero beyond the end.
    pub(crate) fn byte(&self, index: usize) -> u8 {
        self.bytes.get(index).copied().unwrap_or(0)
    }

    /// The SERVICE ACTION field of a 16-byte service-action CDB (byte 1,
    /// bits 4-0).
    pub(crate) fn service_action(&self) -> u8 {
        self.byte(1) & 0x1F
    }

    fn field(&self, at: usize, width: usize) -> Option<&[u8]> {
        self.bytes.get(at..at.checked_add(width)?)
    }

    /// Big-endian u16 at byte `at`.
    pub(crate) fn be16(&self, at: usize) -> u16 {
        self.field(at, 2).map_or(0, BigEndian::read_u16)
    }

    /// Big-endian u32 at byte `at`.
    pub(crate) fn be32(&self, at: usize) -> u32 {
        self.field(at, 4).map_or(0, BigEndian::read_u32)
    }

    /// Big-endian u64 at byte `at`.
    pub(crate) fn be64(&self, at: usize) -> u64 {
        self.field(at, 8).map_or(0, BigEndian::read_u64)
    }
}

/// A CDB length field as a `usize` (saturating on 16-bit targets).
pub(crate) fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The CDB byte of the TRANSFER LENGTH (or VERIFICATION LENGTH) field of
/// a 10-, 12- or 16-byte block command.
pub(crate) fn length_field(cdb_len: usize) -> u16 {
    match cdb_len {
        10 => 7,
        12 => 6,
        _ => 10,
    }
}

/// LBA and length of a 10-, 12- or 16-byte block command.
pub(crate) fn lba_and_length(cdb: &Cdb<'_>) -> (u64, u64) {
    match cdb.len() {
        10 => (u64::from(cdb.be32(2)), u64::from(cdb.be16(7))),
        12 => (u64::from(cdb.be32(2)), u64::from(cdb.be32(6))),
        _ => (cdb.be64(2), u64::from(cdb.be32(10))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_follows_group_code() {
        assert_eq!(cdb_length(0x00), Some(6));
        assert_eq!(cdb_length(0x28), Some(10));
        assert_eq!(cdb_length(0x5A), Some(10));
        assert_eq!(cdb_length(0x7F), None);
        assert_eq!(cdb_length(0x88), Some(16));
        assert_eq!(cdb_length(0xA8), Some(12));
        assert_eq!(cdb_length(0xC0), None);
        assert_eq!(cdb_length(0xE0), None);
    }

    #[test]
    fn parse_checks_length_and_naca() {
        assert_eq!(Cdb::parse(&[]).unwrap_err(), invalid_opcode());
        assert_eq!(Cdb::parse(&[0x28, 0, 0]).unwrap_err(), invalid_field(0, 7));
        assert_eq!(Cdb::parse(&[0xC0; 16]).unwrap_err(), invalid_opcode());
        let naca = Cdb::parse(&[0, 0, 0, 0, 0, CONTROL_NACA]).unwrap_err();
        assert_eq!(naca, invalid_field(5, 2));
        let fp = naca.field_pointer.unwrap();
        assert!(fp.in_cdb);
        assert_eq!((fp.byte, fp.bit), (5, Some(2)));
        let mut rc16 = [0u8; 16];
        rc16[0] = 0x9E;
        rc16[15] = CONTROL_NACA;
        assert_eq!(Cdb::parse(&rc16).unwrap_err(), invalid_field(15, 2));
        // Padding after the CDB is ignored, NACA included.
        let cdb = Cdb::parse(&[0, 0, 0, 0, 0, 0, 0xFF, 0xFF]).unwrap();
        assert_eq!(cdb.len(), 6);
        assert_eq!(cdb.control(), 0);
    }

    #[test]
    fn fields_are_big_endian_and_never_panic() {
        let bytes = [0x88, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0];
        let cdb = Cdb::parse(&bytes).unwrap();
        assert_eq!(cdb.opcode(), 0x88);
        assert_eq!(cdb.service_action(), 1);
        assert_eq!(cdb.be16(1), 0x0102);
        assert_eq!(cdb.be32(2), 0x0203_0405);
        assert_eq!(cdb.be64(2), 0x0203_0405_0607_0809);
        assert_eq!(cdb.be32(14), 0);
        assert_eq!(cdb.be64(usize::MAX), 0);
        assert_eq!(cdb.byte(99), 0);
    }
}
