//! REPORT SUPPORTED OPERATION CODES (SPC-5 6.35) and REPORT SUPPORTED
//! TASK MANAGEMENT FUNCTIONS (SPC-5 6.36).
//!
//! The operation codes come from the dispatcher's own table (handed in as
//! a slice of [`CommandSpec`] rows), filtered by what the device can do, so
//! the report lists exactly the commands that execute.

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::Sense;

use crate::capabilities::Capabilities;
use crate::cdb::{Cdb, invalid_field, to_usize};
use crate::command_spec::{CommandSpec, spec_for, supported_commands};
use crate::data_buffer::DataBuffer;
use crate::opcode::has_service_actions;
use crate::response::{ScsiResponse, send_data_in};

/// The REPORTING OPTIONS field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportingOptions {
    /// 000b: every supported command.
    All,
    /// 001b: one operation code without service actions.
    Opcode,
    /// 010b: one operation code and service action.
    OpcodeAndServiceAction,
    /// 011b: one operation code, with a service action if it has them.
    Either,
}

/// A decoded REPORT SUPPORTED OPERATION CODES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportOpcodes {
    /// RCTD: append command timeouts descriptors.
    rctd: bool,
    options: ReportingOptions,
    opcode: u8,
    service_action: u16,
    allocation_length: usize,
}

impl ReportOpcodes {
    const RCTD: u8 = 0x80;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let options = match cdb.byte(2) & 0x07 {
            0 => ReportingOptions::All,
            1 => ReportingOptions::Opcode,
            2 => ReportingOptions::OpcodeAndServiceAction,
            3 => ReportingOptions::Either,
            _ => return Err(invalid_field(2, 2)),
        };
        let opcode = cdb.byte(3);
        let service_action = cdb.be16(4);
        // Asking for an opcode without service actions in a form that
        // needs one, or the other way round, is an invalid CDB.
        match options {
            ReportingOptions::Opcode if has_service_actions(opcode) => {
                return Err(invalid_field(3, 7));
            }
            ReportingOptions::OpcodeAndServiceAction if !has_service_actions(opcode) => {
                return Err(invalid_field(3, 7));
            }
            _ => {}
        }
        Ok(ReportOpcodes {
            rctd: cdb.byte(2) & Self::RCTD != 0,
            options,
            opcode,
            // Only the ALL form ignores these; keep them meaningful.
            service_action: if options == ReportingOptions::All {
                0
            } else {
                service_action
            },
            allocation_length: to_usize(cdb.be32(6)),
        })
    }
}

/// SUPPORT values of the one-command format.
const NOT_SUPPORTED: u8 = 0b001;
const SUPPORTED: u8 = 0b011;
/// CTDP: a command timeouts descriptor follows.
const CTDP: u8 = 0x80;
/// All-commands descriptor byte 5: CTDP (bit 1), SERVACTV (bit 0).
const DESCRIPTOR_CTDP: u8 = 0x02;
const SERVACTV: u8 = 0x01;

/// The command timeouts descriptor: DESCRIPTOR LENGTH 0Ah and zero
/// timeouts (no nominal or recommended timeout is claimed).
fn timeouts_descriptor() -> [u8; 12] {
    let mut d = [0u8; 12];
    d[1] = 0x0A;
    d
}

/// The report for a logical unit with `caps` whose commands are `table`.
pub(crate) fn report_opcodes<C>(
    table: &'static [CommandSpec<C>],
    caps: &Capabilities,
    cmd: &ReportOpcodes,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let payload = match cmd.options {
        ReportingOptions::All => {
            let mut b = vec![0u8; 4];
            for spec in supported_commands(table, caps) {
                b.extend_from_slice(&all_commands_descriptor(spec, cmd.rctd));
                if cmd.rctd {
                    b.extend_from_slice(&timeouts_descriptor());
                }
            }
            // COMMAND DATA LENGTH: the descriptors after the header.
            let len = u32::try_from(b.len() - 4).unwrap_or(u32::MAX);
            BigEndian::write_u32(&mut b[0..4], len);
            b
        }
        _ => {
            let service_action = if has_service_actions(cmd.opcode) {
                u8::try_from(cmd.service_action).ok()
            } else if cmd.service_action == 0 {
                None
            } else {
                // 011b with a service action for an opcode without them.
                return send_data_in(data, &[0, NOT_SUPPORTED, 0, 0], cmd.allocation_length);
            };
            let spec = service_action
                .map_or_else(
                    || spec_for(table, cmd.opcode, None),
                    |sa| spec_for(table, cmd.opcode, Some(sa)),
                )
                .filter(|s| (s.supported)(caps));
            one_command(spec, cmd.rctd)
        }
    };
    send_data_in(data, &payload, cmd.allocation_length)
}

/// One command descriptor of the all-commands format.
fn all_commands_descriptor<C>(spec: &CommandSpec<C>, rctd: bool) -> [u8; 8] {
    let mut d = [0u8; 8];
    d[0] = spec.opcode;
    if let Some(sa) = spec.service_action {
        BigEndian::write_u16(&mut d[2..4], u16::from(sa));
        d[5] |= SERVACTV;
    }
    if rctd {
        d[5] |= DESCRIPTOR_CTDP;
    }
    BigEndian::write_u16(&mut d[6..8], spec.cdb_len() as u16);
    d
}

/// The one-command format: SUPPORT and, for a supported command, its
/// CDB usage data (and timeouts).
fn one_command<C>(spec: Option<&CommandSpec<C>>, rctd: bool) -> Vec<u8> {
    let Some(spec) = spec else {
        return vec![0, NOT_SUPPORTED, 0, 0];
    };
    let mut b = vec![0, SUPPORTED, 0, 0];
    BigEndian::write_u16(&mut b[2..4], spec.cdb_len() as u16);
    b.extend_from_slice(spec.usage);
    if rctd {
        b[1] |= CTDP;
        b.extend_from_slice(&timeouts_descriptor());
    }
    b
}

/// A decoded REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportTmf {
    /// REPD: the extended (16-byte) format with timeouts.
    extended: bool,
    allocation_length: usize,
}

impl ReportTmf {
    const REPD: u8 = 0x80;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let allocation_length = to_usize(cdb.be32(6));
        // SPC-5: an allocation length below four is an invalid field.
        if allocation_length < 4 {
            return Err(invalid_field(6, 7));
        }
        Ok(ReportTmf {
            extended: cdb.byte(2) & Self::REPD != 0,
            allocation_length,
        })
    }
}

/// Byte 0: ATS (ABORT TASK), ATSS (ABORT TASK SET), CTSS (CLEAR TASK
/// SET), LURS (LOGICAL UNIT RESET). LIO carries them out; the emulator
/// has no per-task state they would need to touch.
const TMF_SUPPORTED: u8 = 0x80 | 0x40 | 0x10 | 0x08;

pub(crate) fn report_tmf(cmd: &ReportTmf, data: &mut dyn DataBuffer) -> ScsiResponse {
    let mut b = vec![TMF_SUPPORTED, 0, 0, 0];
    if cmd.extended {
        // ADDITIONAL DATA LENGTH 0Ch; no timeouts reported.
        b[3] = 0x0C;
        b.resize(16, 0);
    }
    send_data_in(data, &b, cmd.allocation_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::COMMANDS;
    use crate::testutil::*;

    fn rsoc(rctd: bool, options: u8, op: u8, sa: u16, alloc: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 12];
        cdb[0] = 0xA3;
        cdb[1] = 0x0C;
        cdb[2] = options | if rctd { 0x80 } else { 0 };
        cdb[3] = op;
        cdb[4..6].copy_from_slice(&sa.to_be_bytes());
        cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
        cdb
    }

    fn run(emu: &Emulator<VecDevice>, cdb: &[u8]) -> (ScsiResponse, Vec<u8>) {
        let mut buf = vec![0xEEu8; 4096];
        let resp = emu.execute(cdb, &mut buf);
        buf.truncate(resp.data_in_len.unwrap_or(0));
        (resp, buf)
    }

    /// (opcode, service action or None, cdb length) of every descriptor.
    fn listed(b: &[u8], rctd: bool) -> Vec<(u8, Option<u16>, u16)> {
        let step = if rctd { 20 } else { 8 };
        assert_eq!(BigEndian::read_u32(&b[0..4]) as usize, b.len() - 4);
        assert_eq!((b.len() - 4) % step, 0);
        b[4..]
            .chunks(step)
            .map(|d| {
                assert_eq!(d[5] & 0x02 != 0, rctd, "CTDP");
                if rctd {
                    assert_eq!(&d[8..10], &[0, 0x0A]);
                }
                let sa = (d[5] & 0x01 != 0).then(|| BigEndian::read_u16(&d[2..4]));
                (d[0], sa, BigEndian::read_u16(&d[6..8]))
            })
            .collect()
    }

    #[test]
    fn all_commands_come_from_the_table() {
        for rctd in [false, true] {
            let emu = emulator(VecDevice::new(512, 8));
            let (_, b) = run(&emu, &rsoc(rctd, 0, 0, 0, 4096));
            let list = listed(&b, rctd);
            let caps = emu.lun.caps;
            let want: Vec<_> = supported_commands(COMMANDS, &caps)
                .map(|s| {
                    (
                        s.opcode,
                        s.service_action.map(u16::from),
                        s.cdb_len() as u16,
                    )
                })
                .collect();
            assert_eq!(list, want);
            // Without unmap: no UNMAP, no GET LBA STATUS.
            assert!(!list.iter().any(|&(op, _, _)| op == 0x42));
            assert!(list.contains(&(0x93, None, 16)));
            assert!(list.contains(&(0x9E, Some(0x10), 16)));
            assert!(!list.contains(&(0x9E, Some(0x12), 16)));
            // Every listed command executes (its plain CDB is not refused
            // as unknown).
            for &(op, sa, len) in &list {
                let mut cdb = vec![0u8; usize::from(len)];
                cdb[0] = op;
                if let Some(sa) = sa {
                    cdb[1] = sa as u8;
                }
                let resp = emu.execute(&cdb, &mut vec![0u8; 4096]);
                if let Some(sense) = resp.sense {
                    assert_ne!(
                        sense.code,
                        scsi_sense_codes::AdditionalSense::INVALID_COMMAND_OPERATION_CODE
                    );
                }
            }
        }
        let emu = emulator(VecDevice::new(512, 8).with_unmap().with_lba_status());
        let (_, b) = run(&emu, &rsoc(false, 0, 0, 0, 4096));
        let list = listed(&b, false);
        assert!(list.contains(&(0x42, None, 10)));
        assert!(list.contains(&(0x9E, Some(0x12), 16)));
    }

    #[test]
    fn one_command_reports_usage_data() {
        let emu = emulator(VecDevice::new(512, 8));
        // WRITE SAME(16), opcode only.
        let (resp, b) = run(&emu, &rsoc(false, 1, 0x93, 0, 512));
        let usage = COMMANDS.iter().find(|s| s.opcode == 0x93).unwrap().usage;
        assert_eq!(resp, ScsiResponse::data_in(4 + 16));
        assert_eq!(&b[..4], &[0, 0x03, 0, 16]);
        assert_eq!(&b[4..], usage);
        // READ CAPACITY(16) by service action, with timeouts.
        let (_, b) = run(&emu, &rsoc(true, 2, 0x9E, 0x10, 512));
        assert_eq!(&b[..4], &[0, 0x83, 0, 16]);
        assert_eq!(&b[4..6], &[0x9E, 0x1F]);
        assert_eq!(&b[20..], &timeouts_descriptor());
        // Reporting option 3 with and without a service action.
        let (_, b) = run(&emu, &rsoc(false, 3, 0xA3, 0x0D, 512));
        assert_eq!(&b[..6], &[0, 0x03, 0, 12, 0xA3, 0x1F]);
        let (_, b) = run(&emu, &rsoc(false, 3, 0x28, 0, 512));
        assert_eq!(&b[..5], &[0, 0x03, 0, 10, 0x28]);
        let (_, b) = run(&emu, &rsoc(false, 3, 0x28, 1, 512));
        assert_eq!(b, [0, 0x01, 0, 0]);
        // Not supported: unknown opcode, UNMAP without unmap, GET LBA
        // STATUS without LBA status.
        for (options, op, sa) in [(1, 0x04, 0), (1, 0x42, 0), (2, 0x9E, 0x12), (3, 0xA0, 0)] {
            let (_, b) = run(&emu, &rsoc(false, options, op, sa, 512));
            assert_eq!(b, [0, 0x01, 0, 0], "{op:#x}/{sa:#x}");
        }
    }

    #[test]
    fn linux_probe_for_write_same_16() {
        // sd asks with reporting option 1 and checks SUPPORT == 3.
        let emu = emulator(VecDevice::new(512, 8));
        let (_, b) = run(&emu, &rsoc(false, 1, 0x93, 0, 512));
        assert_eq!(b[1] & 0x07, 3);
    }

    #[test]
    fn field_checks() {
        let emu = emulator(VecDevice::new(512, 8));
        for options in 4..8 {
            let (resp, _) = run(&emu, &rsoc(false, options, 0, 0, 512));
            assert_invalid_field(&resp, 2, 2);
        }
        // 001b for an opcode with service actions, 010b for one without.
        let (resp, _) = run(&emu, &rsoc(false, 1, 0x9E, 0x10, 512));
        assert_invalid_field(&resp, 3, 7);
        let (resp, _) = run(&emu, &rsoc(false, 2, 0x28, 0, 512));
        assert_invalid_field(&resp, 3, 7);
        // Truncation keeps the full length.
        let (resp, b) = run(&emu, &rsoc(false, 0, 0, 0, 6));
        assert_eq!(resp, ScsiResponse::data_in(6));
        assert_eq!(
            BigEndian::read_u32(&b[0..4]) as usize,
            8 * supported_commands(COMMANDS, &emu.lun.caps).count()
        );
    }

    fn rstmf(repd: bool, alloc: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 12];
        cdb[0] = 0xA3;
        cdb[1] = 0x0D;
        cdb[2] = if repd { 0x80 } else { 0 };
        cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
        cdb
    }

    #[test]
    fn task_management_functions() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, &rstmf(false, 64));
        assert_eq!(resp, ScsiResponse::data_in(4));
        assert_eq!(b, [0xD8, 0, 0, 0]);
        let (resp, b) = run(&emu, &rstmf(true, 64));
        assert_eq!(resp, ScsiResponse::data_in(16));
        assert_eq!(&b[..4], &[0xD8, 0, 0, 0x0C]);
        assert!(b[4..].iter().all(|&x| x == 0));
        let (resp, _) = run(&emu, &rstmf(false, 3));
        assert_invalid_field(&resp, 6, 7);
    }
}
