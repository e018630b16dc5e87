//! The typed command layer: CDB bytes to a [`Command`].
//!
//! Decoding checks everything that depends only on the CDB (length,
//! CONTROL byte, reserved or unsupported field values), so executing a
//! command only has to deal with the device. A new command is a new
//! opcode arm in [`Command::decode`], a variant and an execute function.

use scsi_sense_codes::Sense;

use crate::cdb::{Cdb, invalid_field, invalid_opcode};
use crate::inquiry::Inquiry;
use crate::misc::{RequestSense, SynchronizeCache};
use crate::mode_sense::ModeSense;
use crate::read_capacity::ReadCapacity16;
use crate::read_write::Transfer;

/// Operation codes (SPC-5, SBC-4).
pub(crate) mod opcode {
    pub(crate) const TEST_UNIT_READY: u8 = 0x00;
    pub(crate) const REQUEST_SENSE: u8 = 0x03;
    pub(crate) const READ_6: u8 = 0x08;
    pub(crate) const WRITE_6: u8 = 0x0A;
    pub(crate) const INQUIRY: u8 = 0x12;
    pub(crate) const MODE_SENSE_6: u8 = 0x1A;
    pub(crate) const READ_CAPACITY_10: u8 = 0x25;
    pub(crate) const READ_10: u8 = 0x28;
    pub(crate) const WRITE_10: u8 = 0x2A;
    pub(crate) const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub(crate) const MODE_SENSE_10: u8 = 0x5A;
    pub(crate) const READ_16: u8 = 0x88;
    pub(crate) const WRITE_16: u8 = 0x8A;
    pub(crate) const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub(crate) const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub(crate) const READ_12: u8 = 0xA8;
    pub(crate) const WRITE_12: u8 = 0xAA;
}

/// Service actions of SERVICE ACTION IN(16).
pub(crate) mod service_action_in {
    pub(crate) const READ_CAPACITY_16: u8 = 0x10;
}

/// A decoded, validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    TestUnitReady,
    RequestSense(RequestSense),
    Inquiry(Inquiry),
    ModeSense(ModeSense),
    ReadCapacity10,
    ReadCapacity16(ReadCapacity16),
    Read(Transfer),
    Write(Transfer),
    SynchronizeCache(SynchronizeCache),
}

type Decoder = fn(&Cdb<'_>) -> Result<Command, Sense>;

impl Command {
    /// Decode `bytes`. The opcode is looked up first, so an unsupported
    /// command is reported as such even when its CDB is also too short.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Command, Sense> {
        use opcode::*;
        let Some(&op) = bytes.first() else {
            return Err(invalid_opcode());
        };
        let decode: Decoder = match op {
            TEST_UNIT_READY => |_| Ok(Command::TestUnitReady),
            REQUEST_SENSE => |c| RequestSense::decode(c).map(Command::RequestSense),
            INQUIRY => |c| Inquiry::decode(c).map(Command::Inquiry),
            MODE_SENSE_6 | MODE_SENSE_10 => |c| ModeSense::decode(c).map(Command::ModeSense),
            READ_CAPACITY_10 => |_| Ok(Command::ReadCapacity10),
            SERVICE_ACTION_IN_16 => decode_service_action_in,
            READ_6 | READ_10 | READ_12 | READ_16 => |c| Transfer::decode(c).map(Command::Read),
            WRITE_6 | WRITE_10 | WRITE_12 | WRITE_16 => |c| Transfer::decode(c).map(Command::Write),
            SYNCHRONIZE_CACHE_10 | SYNCHRONIZE_CACHE_16 => {
                |c| SynchronizeCache::decode(c).map(Command::SynchronizeCache)
            }
            _ => return Err(invalid_opcode()),
        };
        decode(&Cdb::parse(bytes)?)
    }
}

/// SERVICE ACTION IN(16) multiplexes several commands; Linux probes some
/// we lack (e.g. GET LBA STATUS), which must fail as an invalid field,
/// not as an unknown opcode.
fn decode_service_action_in(cdb: &Cdb<'_>) -> Result<Command, Sense> {
    match cdb.service_action() {
        service_action_in::READ_CAPACITY_16 => {
            Ok(Command::ReadCapacity16(ReadCapacity16::decode(cdb)))
        }
        _ => Err(invalid_field()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_unknown_opcodes() {
        assert_eq!(Command::decode(&[]), Err(invalid_opcode()));
        assert_eq!(Command::decode(&[0x01; 6]), Err(invalid_opcode()));
        assert_eq!(Command::decode(&[0x7F; 40]), Err(invalid_opcode()));
        assert_eq!(Command::decode(&[0xC0; 16]), Err(invalid_opcode()));
        // Unknown beats too short.
        assert_eq!(Command::decode(&[0xA0]), Err(invalid_opcode()));
    }

    #[test]
    fn short_cdbs_are_invalid_fields() {
        for op in [
            0x00u8, 0x03, 0x08, 0x12, 0x1A, 0x25, 0x28, 0x35, 0x5A, 0x88, 0x9E, 0xA8,
        ] {
            assert_eq!(Command::decode(&[op]), Err(invalid_field()), "{op:#x}");
        }
        assert_eq!(Command::decode(&[0x28; 9]), Err(invalid_field()));
    }

    #[test]
    fn naca_is_refused() {
        assert_eq!(
            Command::decode(&[0, 0, 0, 0, 0, 0x04]),
            Err(invalid_field())
        );
        let mut rc16 = [0u8; 16];
        rc16[0] = 0x9E;
        rc16[1] = 0x10;
        assert!(Command::decode(&rc16).is_ok());
        rc16[15] = 0x04;
        assert_eq!(Command::decode(&rc16), Err(invalid_field()));
    }

    #[test]
    fn other_service_actions_are_invalid_fields() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x12; // GET LBA STATUS
        assert_eq!(Command::decode(&cdb), Err(invalid_field()));
    }
}
