//! REPORT TARGET PORT GROUPS (SPC-5 6.37): the unit's target port groups
//! and their access states, as its [`PortGroupSource`] tells them now.

use scsi_sense_codes::Sense;

use crate::cdb::{Cdb, invalid_field, to_usize};
use crate::data_buffer::DataBuffer;
use crate::port_groups::{self, PortGroupSource, PortGroups};
use crate::response::{ScsiResponse, send_data_in};

/// A decoded REPORT TARGET PORT GROUPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportTargetPortGroups {
    /// PARAMETER DATA FORMAT 001b: the extended header with the implicit
    /// transition time.
    extended: bool,
    allocation_length: usize,
}

impl ReportTargetPortGroups {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let extended = match cdb.byte(1) >> 5 {
            0 => false,
            1 => true,
            _ => return Err(invalid_field(1, 7)),
        };
        Ok(ReportTargetPortGroups {
            extended,
            allocation_length: to_usize(cdb.be32(6)),
        })
    }
}

/// FORMAT TYPE 001b of the extended header.
const EXTENDED_FORMAT: u8 = 0x10;

pub(crate) fn report_target_port_groups(
    source: Option<&dyn PortGroupSource>,
    cmd: &ReportTargetPortGroups,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    // The command is only decoded when a source is set.
    let Some(groups) = source.and_then(port_groups::current) else {
        return ScsiResponse::internal_failure();
    };
    send_data_in(
        data,
        &parameter_data(&groups, cmd.extended),
        cmd.allocation_length,
    )
}

fn parameter_data(groups: &PortGroups, extended: bool) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    if extended {
        let secs = u8::try_from(groups.implicit_transition_secs).unwrap_or(u8::MAX);
        b.extend_from_slice(&[EXTENDED_FORMAT, secs, 0, 0]);
    }
    for group in &groups.groups {
        port_groups::push_descriptor(&mut b, group);
        // RETURN DATA LENGTH is 32 bits, but stop long before it matters.
        if b.len() > usize::from(u16::MAX) {
            break;
        }
    }
    let len = u32::try_from(b.len() - 4).unwrap_or(u32::MAX);
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_groups() -> PortGroups {
        crate::port_groups::two_gateways(true)
    }

    #[test]
    fn length_only_format() {
        let b = parameter_data(&two_groups(), false);
        assert_eq!(&b[..4], &[0, 0, 0, 24]);
        assert_eq!(&b[4..16], &[0x00, 0x87, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&b[16..28], &[0x01, 0x87, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn extended_format_carries_the_transition_time() {
        let mut groups = two_groups();
        let b = parameter_data(&groups, true);
        assert_eq!(&b[..8], &[0, 0, 0, 28, 0x10, 45, 0, 0]);
        groups.implicit_transition_secs = 1000;
        assert_eq!(parameter_data(&groups, true)[5], 255);
    }

    #[test]
    fn reserved_formats_are_refused() {
        let mut cdb = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert!(ReportTargetPortGroups::decode(&Cdb::parse(&cdb).unwrap()).is_ok());
        cdb[1] = 0x2A;
        assert!(ReportTargetPortGroups::decode(&Cdb::parse(&cdb).unwrap()).is_ok());
        cdb[1] = 0x4A;
        assert_eq!(
            ReportTargetPortGroups::decode(&Cdb::parse(&cdb).unwrap()),
            Err(invalid_field(1, 7))
        );
    }

    fn rtpg(
        emu: &crate::Emulator<crate::testutil::VecDevice>,
        format: u8,
    ) -> (ScsiResponse, Vec<u8>) {
        let cdb = [0xA3, format << 5 | 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let mut buf = vec![0u8; 256];
        let resp = emu.execute(&cdb, &mut buf);
        buf.truncate(resp.data_in_len.unwrap_or(0));
        (resp, buf)
    }

    #[test]
    fn the_emulator_reports_its_source() {
        use crate::testutil::{VecDevice, emulator};
        let emu = emulator(VecDevice::new(512, 8)).with_port_groups(two_groups());
        let (resp, b) = rtpg(&emu, 0);
        assert_eq!(resp, ScsiResponse::data_in(28));
        assert_eq!(b, parameter_data(&two_groups(), false));
        let (resp, b) = rtpg(&emu, 1);
        assert_eq!(resp, ScsiResponse::data_in(32));
        assert_eq!(b, parameter_data(&two_groups(), true));
    }

    #[test]
    fn without_a_source_the_command_does_not_exist() {
        use crate::testutil::{VecDevice, assert_invalid_field, emulator};
        let (resp, _) = rtpg(&emulator(VecDevice::new(512, 8)), 0);
        assert_invalid_field(&resp, 1, 4);
    }

    #[test]
    fn an_unreadable_source_is_a_hardware_error() {
        use crate::testutil::{VecDevice, assert_check, emulator};
        use scsi_sense_codes::{AdditionalSense, SenseKey};
        struct Unreadable;
        impl PortGroupSource for Unreadable {
            fn port_groups(&self) -> std::io::Result<PortGroups> {
                Err(std::io::Error::other("gone"))
            }
        }
        let (resp, _) = rtpg(
            &emulator(VecDevice::new(512, 8)).with_port_groups(Unreadable),
            0,
        );
        assert_check(
            &resp,
            SenseKey::HardwareError,
            AdditionalSense::INTERNAL_TARGET_FAILURE,
        );
    }

    #[test]
    fn set_target_port_groups_is_refused() {
        use crate::testutil::{VecDevice, assert_illegal, emulator};
        use scsi_sense_codes::AdditionalSense;
        let emu = emulator(VecDevice::new(512, 8)).with_port_groups(two_groups());
        let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
        let mut buf = vec![0u8; 8];
        let resp = emu.execute(&stpg, &mut buf);
        assert_illegal(&resp, AdditionalSense::INVALID_COMMAND_OPERATION_CODE);
    }

    #[test]
    fn the_opcode_report_lists_it_only_with_a_source() {
        use crate::testutil::{VecDevice, emulator};
        // REPORT SUPPORTED OPERATION CODES, one opcode and service action.
        let ask = [0xA3, 0x0C, 0x02, 0xA3, 0, 0x0A, 0, 0, 1, 0, 0, 0];
        let support = |emu: &crate::Emulator<VecDevice>| {
            let mut buf = vec![0u8; 256];
            emu.execute(&ask, &mut buf);
            buf[1] & 0x07
        };
        assert_eq!(
            support(&emulator(VecDevice::new(512, 8))),
            1,
            "not supported"
        );
        let emu = emulator(VecDevice::new(512, 8)).with_port_groups(two_groups());
        assert_eq!(support(&emu), 3, "supported as the standard says");
    }
}
