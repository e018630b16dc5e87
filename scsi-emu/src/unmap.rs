//! UNMAP (SBC-4 5.32).
//!
//! Only listed (and accepted) when the device can unmap: without LBPU in
//! the Logical Block Provisioning VPD page the command is not supported.
//! The whole parameter list is validated before any block is unmapped:
//! the descriptor count and every descriptor's length against the Block
//! Limits VPD page (INVALID FIELD IN PARAMETER LIST), every range against
//! the capacity (LBA OUT OF RANGE). An incomplete last descriptor, cut by
//! the PARAMETER LIST LENGTH or the UNMAP BLOCK DESCRIPTOR DATA LENGTH, is
//! ignored, as SBC-4 says.
//!
//! SBC-4 5.32 defines the two header lengths but no error for them:
//! lengths larger than the list that arrived mean the PARAMETER LIST
//! LENGTH cut it, and the complete descriptors received are processed
//! (GOOD); a BLOCK DESCRIPTOR DATA LENGTH of zero is no error. Only lengths
//! that contradict each other (UNMAP DATA LENGTH too short to hold the
//! descriptors the other announces) are refused, with INVALID FIELD IN
//! PARAMETER LIST at byte 0, as the T10 reflector's reading of the text
//! advises; LIO's fileio ignores UNMAP DATA LENGTH instead.

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field, invalid_parameter, parameter_list_length_error};
use crate::data_buffer::DataBuffer;
use crate::extent::Extent;
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, check_range};
use crate::response::ScsiResponse;

/// Parameter list header length.
const HEADER_LEN: usize = 8;
/// UNMAP block descriptor length.
const DESCRIPTOR_LEN: usize = 16;

/// A decoded UNMAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmap {
    parameter_list_length: usize,
}

impl Unmap {
    const ANCHOR: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        // ANC_SUP is zero: anchoring is not supported.
        if cdb.byte(1) & Self::ANCHOR != 0 {
            return Err(invalid_field(1, 0));
        }
        Ok(Unmap {
            parameter_list_length: usize::from(cdb.be16(7)),
        })
    }
}

pub(crate) fn unmap<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Unmap,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let len = cmd.parameter_list_length;
    // No parameter data: nothing to unmap, and not an error.
    if len == 0 {
        return ScsiResponse::good();
    }
    if len < HEADER_LEN {
        return parameter_list_length_error().into();
    }
    if data.len() < len {
        return invalid_field(7, 7).into();
    }
    let mut params = vec![0u8; len];
    data.read_at(0, &mut params);
    let extents = match parse(lun, &params) {
        Ok(extents) => extents,
        Err(sense) => return sense.into(),
    };
    for (lba, blocks) in extents {
        if blocks == 0 {
            continue;
        }
        let _range = lun.locks.lock(lba, blocks);
        if let Err(err) = lun.device().unmap(Extent::new(lba, blocks)) {
            return backend_failure(&err, lba, Direction::Write);
        }
    }
    ScsiResponse::good()
}

/// The validated `(lba, blocks)` extents of a parameter list.
fn parse<D: BlockDevice>(lun: &Lun<D>, p: &[u8]) -> Result<Vec<(u64, u64)>, Sense> {
    let data_len = usize::from(BigEndian::read_u16(&p[0..2]));
    let descriptors_len = usize::from(BigEndian::read_u16(&p[2..4]));
    // UNMAP DATA LENGTH counts everything after itself, so it must leave
    // room for the descriptors the header announces.
    if data_len + 2 < HEADER_LEN + descriptors_len {
        return Err(invalid_parameter(0, 7));
    }
    let available = descriptors_len.min(p.len() - HEADER_LEN);
    let count = available / DESCRIPTOR_LEN;
    if count as u64 > lun.limits.max_unmap_descriptors {
        return Err(invalid_parameter(2, 7));
    }
    let mut total = 0u64;
    let mut extents = Vec::with_capacity(count);
    for i in 0..count {
        let at = HEADER_LEN + i * DESCRIPTOR_LEN;
        let d = &p[at..at + DESCRIPTOR_LEN];
        let lba = BigEndian::read_u64(&d[0..8]);
        let blocks = u64::from(BigEndian::read_u32(&d[8..12]));
        total = total.saturating_add(blocks);
        if total > lun.limits.max_unmap {
            return Err(invalid_parameter(at + 8, 7));
        }
        check_range(lun.device(), lba, blocks)?;
        extents.push((lba, blocks));
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::BlockError;
    use crate::testutil::*;

    const BS: usize = 512;

    fn unmap_cdb(len: u16) -> Vec<u8> {
        let l = len.to_be_bytes();
        vec![0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0]
    }

    fn list(extents: &[(u64, u32)]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        for &(lba, n) in extents {
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&n.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
        }
        let len = p.len();
        BigEndian::write_u16(&mut p[0..2], (len - 2) as u16);
        BigEndian::write_u16(&mut p[2..4], (len - 8) as u16);
        p
    }

    fn run(emu: &Emulator<VecDevice>, mut p: Vec<u8>) -> ScsiResponse {
        let cdb = unmap_cdb(p.len() as u16);
        emu.execute(&cdb, &mut p)
    }

    #[track_caller]
    fn assert_bad_param(resp: &ScsiResponse, byte: u16) {
        assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST);
        let fp = resp.sense.unwrap().field_pointer.unwrap();
        assert_eq!((fp.in_cdb, fp.byte, fp.bit), (false, byte, Some(7)));
    }

    #[test]
    fn descriptors_are_unmapped_and_read_as_zeros() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        let before = emu.device().contents();
        assert_eq!(
            run(&emu, list(&[(2, 3), (10, 0), (60, 4)])),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('u', 2, 3 * BS), ('u', 60, 4 * BS)]);
        let after = emu.device().contents();
        assert!(after[2 * BS..5 * BS].iter().all(|&b| b == 0));
        assert!(after[60 * BS..].iter().all(|&b| b == 0));
        assert_eq!(after[5 * BS..60 * BS], before[5 * BS..60 * BS]);
        // Through READ too.
        let mut buf = vec![0xFFu8; BS];
        emu.execute(&[0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn empty_and_truncated_lists() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        assert_eq!(
            emu.execute(&unmap_cdb(0), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert_eq!(run(&emu, list(&[])), ScsiResponse::good());
        for len in 1..8 {
            let mut p = list(&[(0, 1)]);
            let resp = emu.execute(&unmap_cdb(len), &mut p);
            assert_illegal(&resp, AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        }
        // The parameter list length cuts the second descriptor: ignored.
        let mut p = list(&[(0, 1), (5, 1)]);
        let resp = emu.execute(&unmap_cdb(8 + 16 + 15), &mut p);
        assert_eq!(resp, ScsiResponse::good());
        // So does a descriptor data length that is not a multiple of 16.
        let mut p = list(&[(8, 1), (9, 1)]);
        BigEndian::write_u16(&mut p[2..4], 20);
        assert_eq!(run(&emu, p), ScsiResponse::good());
        assert_eq!(emu.device().calls(), [('u', 0, BS), ('u', 8, BS)]);
        // Both header lengths larger than the list sent (the PARAMETER LIST
        // LENGTH cut it): the one complete descriptor is unmapped.
        let mut p = list(&[(12, 1)]);
        BigEndian::write_u16(&mut p[0..2], 0x100);
        BigEndian::write_u16(&mut p[2..4], 0xF0);
        assert_eq!(run(&emu, p), ScsiResponse::good());
        assert_eq!(emu.device().calls()[2..], [('u', 12, BS)]);
        // A descriptor data length of zero: nothing, and no error.
        let mut p = list(&[(13, 1)]);
        BigEndian::write_u16(&mut p[2..4], 0);
        assert_eq!(run(&emu, p), ScsiResponse::good());
        assert_eq!(emu.device().calls().len(), 3);
        // Less data than the CDB announces.
        let mut p = list(&[(0, 1)]);
        assert_invalid_field(&emu.execute(&unmap_cdb(100), &mut p), 7, 7);
    }

    #[test]
    fn inconsistent_lengths_are_invalid() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        let mut p = list(&[(0, 1), (5, 1)]);
        BigEndian::write_u16(&mut p[0..2], 20);
        assert_bad_param(&run(&emu, p), 0);
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn limits_and_range_are_checked_before_anything_is_unmapped() {
        let emu = emulator(VecDevice::geometry(BS as u32, 1 << 40).with_unmap());
        let max = emu.lun.limits.max_unmap as u32;
        assert_bad_param(&run(&emu, list(&[(0, max + 1)])), 8 + 8);
        // The total counts too: the second descriptor crosses it.
        assert_bad_param(
            &run(&emu, list(&[(0, max), (u64::from(max), 1)])),
            8 + 16 + 8,
        );
        let many: Vec<(u64, u32)> = (0..257).map(|i| (i, 1)).collect();
        assert_bad_param(&run(&emu, list(&many)), 2);
        assert!(emu.device().calls().is_empty());

        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        for extents in [&[(0u64, 1u32), (63, 2)][..], &[(64, 1)], &[(u64::MAX, 1)]] {
            assert_illegal(&run(&emu, list(extents)), AdditionalSense::LBA_OUT_OF_RANGE);
        }
        assert!(emu.device().calls().is_empty());
        // An empty extent at the very end is fine.
        assert_eq!(run(&emu, list(&[(64, 0)])), ScsiResponse::good());
    }

    #[test]
    fn anchor_read_only_and_failures() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        let mut p = list(&[(0, 1)]);
        let mut cdb = unmap_cdb(p.len() as u16);
        cdb[1] = 0x01;
        assert_invalid_field(&emu.execute(&cdb, &mut p), 1, 0);

        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap().read_only());
        assert_check(
            &run(&emu, list(&[(0, 1)])),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        let emu = emulator(
            VecDevice::new(BS as u32, 64)
                .with_unmap()
                .failing(BlockError::Io(EIO)),
        );
        assert_check(
            &run(&emu, list(&[(0, 1)])),
            SenseKey::MediumError,
            AdditionalSense::WRITE_ERROR,
        );
    }
}
