//! The typed command layer: CDB bytes to a [`Command`], driven by one
//! static table.
//!
//! [`COMMANDS`] lists every command the emulator knows: operation code,
//! service action, CDB usage data (whose length is the CDB length), the
//! capability the device needs for it, how it touches the medium, and its
//! decoder. The dispatcher looks commands up there and REPORT SUPPORTED
//! OPERATION CODES reports from there, so the two cannot disagree: a
//! command the device cannot do is neither executed nor listed.
//!
//! Decoding checks everything that depends only on the CDB (length,
//! CONTROL byte, reserved or unsupported field values), so executing a
//! command only has to deal with the device. A new command is a new row,
//! a variant and an execute function.

use scsi_sense_codes::Sense;

use crate::capabilities::Capabilities;
use crate::cdb::{Cdb, invalid_field, invalid_opcode};
use crate::command_spec::{Access, CommandSpec, spec_for};
use crate::compare_and_write::CompareAndWrite;
use crate::copy_status::ReceiveCopyStatus;
use crate::inquiry::Inquiry;
use crate::lba_status::GetLbaStatus;
use crate::mode_select::ModeSelect;
use crate::mode_sense::ModeSense;
use crate::opcode::{
    self, copy_in, copy_out, has_service_actions, maintenance_in, sanitize_action,
    service_action_in,
};
use crate::prefetch::Prefetch;
use crate::read_capacity::ReadCapacity16;
use crate::read_defect_data::ReadDefectData;
use crate::read_write::Transfer;
use crate::report_opcodes::{ReportOpcodes, ReportTmf};
use crate::report_target_port_groups::ReportTargetPortGroups;
use crate::request_sense::RequestSense;
use crate::sanitize::Sanitize;
use crate::start_stop_unit::StartStopUnit;
use crate::synchronize_cache::SynchronizeCache;
use crate::unmap::Unmap;
use crate::verify::{Verify, WriteAndVerify};
use crate::write_atomic::WriteAtomic;
use crate::write_same::WriteSame;
use crate::xcopy::{ExtendedCopy, ReceiveCopyResults};

/// A decoded, validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    TestUnitReady,
    RequestSense(RequestSense),
    Inquiry(Inquiry),
    ModeSense(ModeSense),
    ModeSelect(ModeSelect),
    StartStopUnit(StartStopUnit),
    ReadCapacity10,
    ReadCapacity16(ReadCapacity16),
    GetLbaStatus(GetLbaStatus),
    Read(Transfer),
    Write(Transfer),
    Verify(Verify),
    WriteAndVerify(WriteAndVerify),
    CompareAndWrite(CompareAndWrite),
    WriteSame(WriteSame),
    Unmap(Unmap),
    SynchronizeCache(SynchronizeCache),
    ReportOpcodes(ReportOpcodes),
    ReportTmf(ReportTmf),
    ReportTargetPortGroups(ReportTargetPortGroups),
    ExtendedCopy(ExtendedCopy),
    CopyStatus(ReceiveCopyStatus),
    CopyOperatingParameters(ReceiveCopyResults),
    Prefetch(Prefetch),
    ReadDefectData(ReadDefectData),
    OrWrite(Transfer),
    Sanitize(Sanitize),
    WriteAtomic(WriteAtomic),
}

fn always(_: &Capabilities) -> bool {
    true
}

fn with_unmap(caps: &Capabilities) -> bool {
    caps.unmap
}

fn with_lba_status(caps: &Capabilities) -> bool {
    caps.lba_status
}

fn with_block_erase(caps: &Capabilities) -> bool {
    caps.block_erase()
}

fn with_port_groups(caps: &Capabilities) -> bool {
    caps.port_groups
}

fn with_atomic_write(caps: &Capabilities) -> bool {
    caps.atomic_write_blocks > 0
}

/// The CONTROL byte's usage: NACA is evaluated (and refused).
const C: u8 = 0x04;

/// Every command, in ascending (opcode, service action) order, which is
/// also the order REPORT SUPPORTED OPERATION CODES lists them in.
pub(crate) static COMMANDS: &[CommandSpec<Command>] = &[
    CommandSpec {
        opcode: opcode::TEST_UNIT_READY,
        service_action: None,
        name: "TEST UNIT READY",
        usage: &[0x00, 0, 0, 0, 0, C],
        supported: always,
        access: Access::None,
        decode: |_| Ok(Command::TestUnitReady),
    },
    CommandSpec {
        opcode: opcode::REQUEST_SENSE,
        service_action: None,
        name: "REQUEST SENSE",
        usage: &[0x03, 0x01, 0, 0, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| RequestSense::decode(c).map(Command::RequestSense),
    },
    CommandSpec {
        opcode: opcode::READ_6,
        service_action: None,
        name: "READ(6)",
        usage: &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Read,
        decode: |c| Transfer::decode(c).map(Command::Read),
    },
    CommandSpec {
        opcode: opcode::WRITE_6,
        service_action: None,
        name: "WRITE(6)",
        usage: &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Write,
        decode: |c| Transfer::decode(c).map(Command::Write),
    },
    CommandSpec {
        opcode: opcode::INQUIRY,
        service_action: None,
        name: "INQUIRY",
        usage: &[0x12, 0x01, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| Inquiry::decode(c).map(Command::Inquiry),
    },
    CommandSpec {
        opcode: opcode::MODE_SELECT_6,
        service_action: None,
        name: "MODE SELECT(6)",
        usage: &[0x15, 0x11, 0, 0, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| ModeSelect::decode(c).map(Command::ModeSelect),
    },
    CommandSpec {
        opcode: opcode::MODE_SENSE_6,
        service_action: None,
        name: "MODE SENSE(6)",
        usage: &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| ModeSense::decode(c).map(Command::ModeSense),
    },
    CommandSpec {
        opcode: opcode::START_STOP_UNIT,
        service_action: None,
        name: "START STOP UNIT",
        usage: &[0x1B, 0x01, 0, 0x0F, 0xF7, C],
        supported: always,
        access: Access::None,
        decode: |c| StartStopUnit::decode(c).map(Command::StartStopUnit),
    },
    CommandSpec {
        opcode: opcode::READ_CAPACITY_10,
        service_action: None,
        name: "READ CAPACITY(10)",
        usage: &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, C],
        supported: always,
        access: Access::None,
        decode: |_| Ok(Command::ReadCapacity10),
    },
    CommandSpec {
        opcode: opcode::READ_10,
        service_action: None,
        name: "READ(10)",
        usage: &[0x28, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Read,
        decode: |c| Transfer::decode(c).map(Command::Read),
    },
    CommandSpec {
        opcode: opcode::WRITE_10,
        service_action: None,
        name: "WRITE(10)",
        usage: &[0x2A, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Write,
        decode: |c| Transfer::decode(c).map(Command::Write),
    },
    CommandSpec {
        opcode: opcode::WRITE_AND_VERIFY_10,
        service_action: None,
        name: "WRITE AND VERIFY(10)",
        usage: &[0x2E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Write,
        decode: |c| WriteAndVerify::decode(c).map(Command::WriteAndVerify),
    },
    CommandSpec {
        opcode: opcode::VERIFY_10,
        service_action: None,
        name: "VERIFY(10)",
        usage: &[0x2F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Read,
        decode: |c| Verify::decode(c).map(Command::Verify),
    },
    CommandSpec {
        opcode: opcode::PRE_FETCH_10,
        service_action: None,
        name: "PRE-FETCH(10)",
        usage: &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Read,
        decode: |c| Prefetch::decode(c).map(Command::Prefetch),
    },
    CommandSpec {
        opcode: opcode::SYNCHRONIZE_CACHE_10,
        service_action: None,
        name: "SYNCHRONIZE CACHE(10)",
        usage: &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Read,
        decode: |c| SynchronizeCache::decode(c).map(Command::SynchronizeCache),
    },
    CommandSpec {
        opcode: opcode::READ_DEFECT_DATA_10,
        service_action: None,
        name: "READ DEFECT DATA(10)",
        usage: &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| ReadDefectData::decode(c).map(Command::ReadDefectData),
    },
    CommandSpec {
        opcode: opcode::WRITE_SAME_10,
        service_action: None,
        name: "WRITE SAME(10)",
        usage: &[0x41, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Write,
        decode: |c| WriteSame::decode(c).map(Command::WriteSame),
    },
    CommandSpec {
        opcode: opcode::UNMAP,
        service_action: None,
        name: "UNMAP",
        usage: &[0x42, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, C],
        supported: with_unmap,
        access: Access::Write,
        decode: |c| Unmap::decode(c).map(Command::Unmap),
    },
    CommandSpec {
        opcode: opcode::SANITIZE,
        service_action: Some(sanitize_action::OVERWRITE),
        name: "SANITIZE OVERWRITE",
        usage: &[0x48, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        access: Access::Write,
        decode: |c| Sanitize::decode(c).map(Command::Sanitize),
    },
    CommandSpec {
        opcode: opcode::SANITIZE,
        service_action: Some(sanitize_action::BLOCK_ERASE),
        name: "SANITIZE BLOCK ERASE",
        usage: &[0x48, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, C],
        supported: with_block_erase,
        access: Access::Write,
        decode: |c| Sanitize::decode(c).map(Command::Sanitize),
    },
    CommandSpec {
        opcode: opcode::SANITIZE,
        service_action: Some(sanitize_action::EXIT_FAILURE_MODE),
        name: "SANITIZE EXIT FAILURE MODE",
        usage: &[0x48, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, C],
        supported: always,
        // Leaves a state; touches no block.
        access: Access::None,
        decode: |c| Sanitize::decode(c).map(Command::Sanitize),
    },
    CommandSpec {
        opcode: opcode::MODE_SELECT_10,
        service_action: None,
        name: "MODE SELECT(10)",
        usage: &[0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| ModeSelect::decode(c).map(Command::ModeSelect),
    },
    CommandSpec {
        opcode: opcode::MODE_SENSE_10,
        service_action: None,
        name: "MODE SENSE(10)",
        usage: &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, C],
        supported: always,
        access: Access::None,
        decode: |c| ModeSense::decode(c).map(Command::ModeSense),
    },
    CommandSpec {
        opcode: opcode::THIRD_PARTY_COPY_OUT,
        service_action: Some(copy_out::EXTENDED_COPY_LID1),
        name: "EXTENDED COPY(LID1)",
        usage: &[
            0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        // The medium touched is the source's and destination's, checked
        // per unit by the copy, not this unit's.
        access: Access::None,
        decode: |c| Ok(Command::ExtendedCopy(ExtendedCopy::decode(c))),
    },
    CommandSpec {
        opcode: opcode::THIRD_PARTY_COPY_IN,
        service_action: Some(copy_in::RECEIVE_COPY_STATUS_LID1),
        name: "RECEIVE COPY STATUS(LID1)",
        usage: &[
            0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::None,
        decode: |c| Ok(Command::CopyStatus(ReceiveCopyStatus::decode(c))),
    },
    CommandSpec {
        opcode: opcode::THIRD_PARTY_COPY_IN,
        service_action: Some(copy_in::RECEIVE_COPY_OPERATING_PARAMETERS),
        name: "RECEIVE COPY OPERATING PARAMETERS",
        usage: &[
            0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::None,
        decode: |c| {
            Ok(Command::CopyOperatingParameters(
                ReceiveCopyResults::decode(c),
            ))
        },
    },
    CommandSpec {
        opcode: opcode::READ_16,
        service_action: None,
        name: "READ(16)",
        usage: &[
            0x88, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| Transfer::decode(c).map(Command::Read),
    },
    CommandSpec {
        opcode: opcode::COMPARE_AND_WRITE,
        service_action: None,
        name: "COMPARE AND WRITE",
        usage: &[
            0x89, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| CompareAndWrite::decode(c).map(Command::CompareAndWrite),
    },
    CommandSpec {
        opcode: opcode::WRITE_16,
        service_action: None,
        name: "WRITE(16)",
        usage: &[
            0x8A, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| Transfer::decode(c).map(Command::Write),
    },
    CommandSpec {
        opcode: opcode::ORWRITE_16,
        service_action: None,
        name: "ORWRITE(16)",
        usage: &[
            0x8B, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| Transfer::decode(c).map(Command::OrWrite),
    },
    CommandSpec {
        opcode: opcode::WRITE_AND_VERIFY_16,
        service_action: None,
        name: "WRITE AND VERIFY(16)",
        usage: &[
            0x8E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| WriteAndVerify::decode(c).map(Command::WriteAndVerify),
    },
    CommandSpec {
        opcode: opcode::VERIFY_16,
        service_action: None,
        name: "VERIFY(16)",
        usage: &[
            0x8F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| Verify::decode(c).map(Command::Verify),
    },
    CommandSpec {
        opcode: opcode::PRE_FETCH_16,
        service_action: None,
        name: "PRE-FETCH(16)",
        usage: &[
            0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| Prefetch::decode(c).map(Command::Prefetch),
    },
    CommandSpec {
        opcode: opcode::SYNCHRONIZE_CACHE_16,
        service_action: None,
        name: "SYNCHRONIZE CACHE(16)",
        usage: &[
            0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| SynchronizeCache::decode(c).map(Command::SynchronizeCache),
    },
    CommandSpec {
        opcode: opcode::WRITE_SAME_16,
        service_action: None,
        name: "WRITE SAME(16)",
        usage: &[
            0x93, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| WriteSame::decode(c).map(Command::WriteSame),
    },
    CommandSpec {
        opcode: opcode::WRITE_ATOMIC_16,
        service_action: None,
        name: "WRITE ATOMIC(16)",
        usage: &[
            0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: with_atomic_write,
        access: Access::Write,
        decode: |c| WriteAtomic::decode(c).map(Command::WriteAtomic),
    },
    CommandSpec {
        opcode: opcode::SERVICE_ACTION_IN_16,
        service_action: Some(service_action_in::READ_CAPACITY_16),
        name: "READ CAPACITY(16)",
        usage: &[
            0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::None,
        decode: |c| Ok(Command::ReadCapacity16(ReadCapacity16::decode(c))),
    },
    CommandSpec {
        opcode: opcode::SERVICE_ACTION_IN_16,
        service_action: Some(service_action_in::GET_LBA_STATUS),
        name: "GET LBA STATUS",
        usage: &[
            0x9E, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            C,
        ],
        supported: with_lba_status,
        access: Access::Read,
        decode: |c| Ok(Command::GetLbaStatus(GetLbaStatus::decode(c))),
    },
    CommandSpec {
        opcode: opcode::MAINTENANCE_IN,
        service_action: Some(maintenance_in::REPORT_TARGET_PORT_GROUPS),
        name: "REPORT TARGET PORT GROUPS",
        usage: &[0xA3, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C],
        supported: with_port_groups,
        access: Access::None,
        decode: |c| ReportTargetPortGroups::decode(c).map(Command::ReportTargetPortGroups),
    },
    CommandSpec {
        opcode: opcode::MAINTENANCE_IN,
        service_action: Some(maintenance_in::REPORT_SUPPORTED_OPERATION_CODES),
        name: "REPORT SUPPORTED OPERATION CODES",
        usage: &[
            0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::None,
        decode: |c| ReportOpcodes::decode(c).map(Command::ReportOpcodes),
    },
    CommandSpec {
        opcode: opcode::MAINTENANCE_IN,
        service_action: Some(maintenance_in::REPORT_SUPPORTED_TMFS),
        name: "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        usage: &[0xA3, 0x1F, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C],
        supported: always,
        access: Access::None,
        decode: |c| ReportTmf::decode(c).map(Command::ReportTmf),
    },
    CommandSpec {
        opcode: opcode::READ_12,
        service_action: None,
        name: "READ(12)",
        usage: &[
            0xA8, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| Transfer::decode(c).map(Command::Read),
    },
    CommandSpec {
        opcode: opcode::WRITE_12,
        service_action: None,
        name: "WRITE(12)",
        usage: &[
            0xAA, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| Transfer::decode(c).map(Command::Write),
    },
    CommandSpec {
        opcode: opcode::WRITE_AND_VERIFY_12,
        service_action: None,
        name: "WRITE AND VERIFY(12)",
        usage: &[
            0xAE, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::Write,
        decode: |c| WriteAndVerify::decode(c).map(Command::WriteAndVerify),
    },
    CommandSpec {
        opcode: opcode::VERIFY_12,
        service_action: None,
        name: "VERIFY(12)",
        usage: &[
            0xAF, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::Read,
        decode: |c| Verify::decode(c).map(Command::Verify),
    },
    CommandSpec {
        opcode: opcode::READ_DEFECT_DATA_12,
        service_action: None,
        name: "READ DEFECT DATA(12)",
        usage: &[
            0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C,
        ],
        supported: always,
        access: Access::None,
        decode: |c| ReadDefectData::decode(c).map(Command::ReadDefectData),
    },
];

impl Command {
    /// Whether the command runs while a sanitize is in progress: SBC-4
    /// allows the ones that describe the unit and its state (the others
    /// get NOT READY, SANITIZE IN PROGRESS).
    pub(crate) fn runs_during_sanitize(&self) -> bool {
        matches!(
            self,
            Command::Inquiry(_)
                | Command::RequestSense(_)
                | Command::ReportOpcodes(_)
                | Command::ReportTmf(_)
        )
    }

    /// Look `bytes` up in the table and decode them. The opcode is looked
    /// up first, so an unsupported command is reported as such even when
    /// its CDB is also too short. An unknown or unsupported service action
    /// of a known opcode is an invalid field (the SERVICE ACTION field),
    /// not an unknown opcode.
    pub(crate) fn decode(
        bytes: &[u8],
        caps: &Capabilities,
    ) -> Result<(Command, &'static CommandSpec<Command>), Sense> {
        let Some(&op) = bytes.first() else {
            return Err(invalid_opcode());
        };
        let multiplexed = has_service_actions(op);
        if !multiplexed && !spec_for(COMMANDS, op, None).is_some_and(|s| (s.supported)(caps)) {
            return Err(invalid_opcode());
        }
        let cdb = Cdb::parse(bytes)?;
        let spec = if multiplexed {
            spec_for(COMMANDS, op, Some(cdb.service_action()))
                .filter(|s| (s.supported)(caps))
                .ok_or_else(|| invalid_field(1, 4))?
        } else {
            spec_for(COMMANDS, op, None).ok_or_else(invalid_opcode)?
        };
        (spec.decode)(&cdb).map(|command| (command, spec))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cdb::cdb_length;
    use crate::command_spec::supported_commands;

    const ALL: Capabilities = Capabilities {
        unmap: true,
        unmap_reads_zeroes: true,
        lba_status: true,
        atomic_write_blocks: u64::MAX,
        port_groups: true,
    };

    fn decode(bytes: &[u8]) -> Result<Command, Sense> {
        Command::decode(bytes, &ALL).map(|(c, _)| c)
    }

    #[test]
    fn table_is_sorted_unique_and_consistent() {
        for pair in COMMANDS.windows(2) {
            let key = |s: &CommandSpec<Command>| (s.opcode, s.service_action);
            assert!(key(&pair[0]) < key(&pair[1]), "{:?}", pair[1]);
        }
        for spec in COMMANDS {
            assert_eq!(spec.usage[0], spec.opcode, "{}", spec.name);
            assert_eq!(
                Some(spec.cdb_len()),
                cdb_length(spec.opcode),
                "{}",
                spec.name
            );
            let control = spec.usage[spec.cdb_len() - 1];
            assert_eq!(control, C, "{}", spec.name);
            // An opcode either always or never has service actions, and
            // then the SERVICE ACTION field is in the usage data.
            assert_eq!(
                spec.service_action.is_some(),
                has_service_actions(spec.opcode)
            );
            if spec.service_action.is_some() {
                assert_eq!(spec.usage[1] & 0x1F, 0x1F, "{}", spec.name);
            }
        }
    }

    #[test]
    fn every_row_is_found_by_its_plain_cdb() {
        // Opcode and service action only: the command is found; if its
        // decoder refuses the zero fields, it is for a field of its own.
        for spec in COMMANDS {
            let mut cdb = vec![0u8; spec.cdb_len()];
            cdb[0] = spec.opcode;
            if let Some(sa) = spec.service_action {
                cdb[1] = sa;
            }
            match Command::decode(&cdb, &ALL) {
                Ok((_, found)) => assert_eq!(found.name, spec.name),
                Err(sense) => {
                    assert_ne!(sense, invalid_opcode(), "{}", spec.name);
                    if spec.service_action.is_some() {
                        assert_ne!(sense, invalid_field(1, 4), "{}", spec.name);
                    }
                    assert_ne!(sense, invalid_field(0, 7), "{}", spec.name);
                }
            }
        }
    }

    #[test]
    fn empty_and_unknown_opcodes() {
        assert_eq!(decode(&[]), Err(invalid_opcode()));
        assert_eq!(decode(&[0x01; 6]), Err(invalid_opcode()));
        assert_eq!(decode(&[0x7F; 40]), Err(invalid_opcode()));
        assert_eq!(decode(&[0xC0; 16]), Err(invalid_opcode()));
        // Unknown beats too short.
        assert_eq!(decode(&[0xA0]), Err(invalid_opcode()));
    }

    #[test]
    fn short_cdbs_are_invalid_fields() {
        for op in [
            0x00u8, 0x03, 0x08, 0x12, 0x1A, 0x25, 0x28, 0x35, 0x5A, 0x88, 0x9E, 0xA3, 0xA8,
        ] {
            assert_eq!(decode(&[op]), Err(invalid_field(0, 7)), "{op:#x}");
        }
        assert_eq!(decode(&[0x28; 9]), Err(invalid_field(0, 7)));
    }

    #[test]
    fn naca_is_refused() {
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0x04]), Err(invalid_field(5, 2)));
        let mut rc16 = [0u8; 16];
        rc16[0] = 0x9E;
        rc16[1] = 0x10;
        assert!(decode(&rc16).is_ok());
        rc16[15] = 0x04;
        assert_eq!(decode(&rc16), Err(invalid_field(15, 2)));
    }

    #[test]
    fn unknown_service_actions_are_invalid_fields() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x11;
        assert_eq!(decode(&cdb), Err(invalid_field(1, 4)));
        let mut mi = [0u8; 12];
        mi[0] = 0xA3;
        mi[1] = 0x0B; // unassigned
        assert_eq!(decode(&mi), Err(invalid_field(1, 4)));
        // REPORT TARGET PORT GROUPS only for a unit given port groups.
        mi[1] = 0x0A;
        assert!(decode(&mi).is_ok());
        assert_eq!(
            Command::decode(&mi, &Capabilities::default()).map(|(c, _)| c),
            Err(invalid_field(1, 4))
        );
    }

    #[test]
    fn capabilities_gate_commands() {
        let none = Capabilities::default();
        let mut unmap = [0u8; 10];
        unmap[0] = 0x42;
        assert_eq!(
            Command::decode(&unmap, &none).unwrap_err(),
            invalid_opcode()
        );
        assert!(Command::decode(&unmap, &ALL).is_ok());
        // GET LBA STATUS is a service action: refused as an invalid field.
        let mut gls = [0u8; 16];
        gls[0] = 0x9E;
        gls[1] = 0x12;
        assert_eq!(
            Command::decode(&gls, &none).unwrap_err(),
            invalid_field(1, 4)
        );
        assert!(Command::decode(&gls, &ALL).is_ok());
        // WRITE ATOMIC needs a device whose writes are all-or-nothing.
        let mut atomic = [0u8; 16];
        atomic[0] = 0x9C;
        assert_eq!(
            Command::decode(&atomic, &none).unwrap_err(),
            invalid_opcode()
        );
        assert!(Command::decode(&atomic, &ALL).is_ok());
        let listed: Vec<_> = supported_commands(COMMANDS, &none)
            .map(|s| s.name)
            .collect();
        assert!(!listed.contains(&"UNMAP"));
        assert!(!listed.contains(&"GET LBA STATUS"));
        assert!(!listed.contains(&"WRITE ATOMIC(16)"));
        // Every unit is a copy manager (for copies within itself at least).
        for name in [
            "EXTENDED COPY(LID1)",
            "RECEIVE COPY STATUS(LID1)",
            "RECEIVE COPY OPERATING PARAMETERS",
        ] {
            assert!(listed.contains(&name), "{name}");
        }
        let mut xcopy = [0u8; 16];
        xcopy[0] = 0x83;
        assert!(Command::decode(&xcopy, &none).is_ok());
        assert!(listed.contains(&"WRITE SAME(16)"));
        assert_eq!(supported_commands(COMMANDS, &ALL).count(), COMMANDS.len());
    }

    /// A CDB for `spec` with random contents in the bits its usage data
    /// marks, and the SERVICE ACTION kept.
    fn cdb_for(spec: &CommandSpec<Command>, noise: &[u8]) -> Vec<u8> {
        let mut cdb: Vec<u8> = spec
            .usage
            .iter()
            .zip(noise.iter().chain(std::iter::repeat(&0)))
            .map(|(&mask, &n)| mask & n)
            .collect();
        cdb[0] = spec.opcode;
        if let Some(sa) = spec.service_action {
            cdb[1] = (cdb[1] & !0x1F) | sa;
        }
        cdb
    }

    proptest! {
        /// The usage data tells the truth: a bit it marks as unused never
        /// changes what the command decodes to (the same command or the
        /// same error).
        #[test]
        fn bits_outside_the_usage_data_are_ignored(
            row in 0..COMMANDS.len(),
            noise in proptest::collection::vec(any::<u8>(), 16),
            sparse in any::<bool>(),
            byte in 1usize..16,
            bit in 0u8..8,
        ) {
            let spec = &COMMANDS[row];
            let noise: Vec<u8> = if sparse {
                // Mostly-valid CDBs: small values reach deeper checks.
                noise.iter().map(|n| n & 0x03).collect()
            } else {
                noise
            };
            let cdb = cdb_for(spec, &noise);
            let byte = 1 + byte % (spec.cdb_len() - 1);
            prop_assume!(spec.usage[byte] & (1 << bit) == 0);
            let mut flipped = cdb.clone();
            flipped[byte] ^= 1 << bit;
            prop_assert_eq!(decode(&cdb), decode(&flipped), "{} byte {} bit {}", spec.name, byte, bit);
        }
    }
}
