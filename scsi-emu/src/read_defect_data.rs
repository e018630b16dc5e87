//! READ DEFECT DATA(10) and (12) (SBC-4 5.13, 5.14): the defect lists of
//! a medium that has none. A backend hides its media's defects, so both
//! the primary and the grown list are valid and empty, in whichever
//! address format the initiator asks for.

use scsi_sense_codes::Sense;

use crate::cdb::{Cdb, invalid_field, to_usize};
use crate::data_buffer::DataBuffer;
use crate::opcode;
use crate::response::{ScsiResponse, send_data_in};

/// REQ_PLIST and PLISTV: the primary defect list.
const PLIST: u8 = 0x10;
/// REQ_GLIST and GLISTV: the grown defect list.
const GLIST: u8 = 0x08;
/// DEFECT LIST FORMAT codes SBC-4 defines for direct-access devices:
/// short block, long block, bytes from index, physical sector, and the
/// extended forms of the last two. 001b and 010b are reserved; 110b is
/// vendor specific, and we specify nothing for it.
const FORMATS: [u8; 4] = [0b000, 0b011, 0b100, 0b101];

/// A decoded READ DEFECT DATA(10) or (12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadDefectData {
    /// REQ_PLIST, REQ_GLIST and the DEFECT LIST FORMAT, as the answer's
    /// PLISTV, GLISTV and format echo them.
    flags_and_format: u8,
    allocation_length: usize,
    twelve: bool,
}

impl ReadDefectData {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let twelve = cdb.opcode() == opcode::READ_DEFECT_DATA_12;
        // The flags and format are in byte 2 of the 10-byte CDB, byte 1
        // of the 12-byte one.
        let at = if twelve { 1 } else { 2 };
        let byte = cdb.byte(at);
        if !FORMATS.contains(&(byte & 0x07)) {
            return Err(invalid_field(at as u16, 2));
        }
        // ADDRESS DESCRIPTOR INDEX (12-byte form): any index is past the
        // end of an empty list, which just returns no descriptors.
        let allocation_length = if twelve {
            to_usize(cdb.be32(6))
        } else {
            usize::from(cdb.be16(7))
        };
        Ok(ReadDefectData {
            flags_and_format: byte & (PLIST | GLIST | 0x07),
            allocation_length,
            twelve,
        })
    }
}

pub(crate) fn read_defect_data(cmd: &ReadDefectData, data: &mut dyn DataBuffer) -> ScsiResponse {
    // The header alone: DEFECT LIST LENGTH 0 (and, in the 12-byte form,
    // GENERATION CODE 0: not reported).
    let mut header = vec![0u8; if cmd.twelve { 8 } else { 4 }];
    header[1] = cmd.flags_and_format;
    send_data_in(data, &header, cmd.allocation_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn rdd10(byte2: u8, alloc: u16) -> Vec<u8> {
        let a = alloc.to_be_bytes();
        vec![0x37, 0, byte2, 0, 0, 0, 0, a[0], a[1], 0]
    }

    fn rdd12(byte1: u8, index: u32, alloc: u32) -> Vec<u8> {
        let mut cdb = vec![0xB7, byte1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&index.to_be_bytes());
        cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
        cdb
    }

    fn run(emu: &Emulator<VecDevice>, cdb: &[u8]) -> (ScsiResponse, Vec<u8>) {
        let mut buf = vec![0xEEu8; 64];
        let resp = emu.execute(cdb, &mut buf);
        buf.truncate(resp.data_in_len.unwrap_or(0));
        (resp, buf)
    }

    #[test]
    fn empty_lists_in_the_requested_format() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, &rdd10(0, 32));
        assert_eq!(resp, ScsiResponse::data_in(4));
        assert_eq!(b, [0, 0, 0, 0]);
        // Both lists asked for, long block format: both valid, empty.
        let (_, b) = run(&emu, &rdd10(PLIST | GLIST | 0b011, 32));
        assert_eq!(b, [0, PLIST | GLIST | 0b011, 0, 0]);
        let (resp, b) = run(&emu, &rdd12(GLIST | 0b101, 7, 32));
        assert_eq!(resp, ScsiResponse::data_in(8));
        assert_eq!(b, [0, GLIST | 0b101, 0, 0, 0, 0, 0, 0]);
        // Truncated to the allocation length.
        let (resp, _) = run(&emu, &rdd12(0, 0, 2));
        assert_eq!(resp, ScsiResponse::data_in(2));
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn reserved_and_vendor_formats_are_refused() {
        let emu = emulator(VecDevice::new(512, 8));
        for format in [0b001, 0b010, 0b110, 0b111] {
            assert_invalid_field(&run(&emu, &rdd10(format, 32)).0, 2, 2);
            assert_invalid_field(&run(&emu, &rdd12(format, 0, 32)).0, 1, 2);
        }
    }
}
