//! GET LBA STATUS (SBC-4 5.8): which blocks from a starting LBA are
//! mapped and which are deallocated, from
//! [`BlockDevice::lba_status`]. Supported only by devices that answer it.

use byteorder::{BigEndian, ByteOrder};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, to_usize};
use crate::data_buffer::DataBuffer;
use crate::extent::Provisioning;
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, check_range};
use crate::response::{ScsiResponse, send_data_in};

/// Parameter data header length.
const HEADER_LEN: usize = 8;
/// LBA status descriptor length.
const DESCRIPTOR_LEN: usize = 16;
/// Most descriptors one command returns, whatever the allocation length:
/// bounds the calls to the device.
const MAX_DESCRIPTORS: usize = 256;
/// PROVISIONING STATUS values.
const MAPPED: u8 = 0x0;
const DEALLOCATED: u8 = 0x1;

/// A decoded GET LBA STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetLbaStatus {
    lba: u64,
    allocation_length: usize,
}

impl GetLbaStatus {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Self {
        GetLbaStatus {
            lba: cdb.be64(2),
            allocation_length: to_usize(cdb.be32(10)),
        }
    }
}

pub(crate) fn get_lba_status<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &GetLbaStatus,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let end = device.num_blocks();
    // The starting LBA must address a block.
    if let Err(sense) = check_range(device, cmd.lba, 1) {
        return sense.into();
    }
    let wanted = (cmd.allocation_length.saturating_sub(HEADER_LEN) / DESCRIPTOR_LEN)
        .clamp(1, MAX_DESCRIPTORS);
    let mut extents: Vec<(u64, u64, bool)> = Vec::new();
    let mut lba = cmd.lba;
    while lba < end {
        let status = match device.lba_status(lba) {
            Ok(status) => status,
            Err(err) => return backend_failure(&err, lba, Direction::Read),
        };
        let blocks = status.extent.blocks;
        let mapped = status.provisioning == Provisioning::Mapped;
        // At least one block, so the walk always advances; never beyond
        // the end, whatever the device says.
        let blocks = blocks.clamp(1, end - lba);
        let full = extents.len() == wanted;
        match extents.last_mut() {
            Some(last) if last.2 == mapped => last.1 += blocks,
            _ if full => break,
            _ => extents.push((lba, blocks, mapped)),
        }
        lba += blocks;
    }
    let mut b = vec![0u8; HEADER_LEN];
    for (lba, blocks, mapped) in extents {
        // A descriptor counts at most u32::MAX blocks; the initiator asks
        // again from where the data ended.
        let mut d = [0u8; DESCRIPTOR_LEN];
        BigEndian::write_u64(&mut d[0..8], lba);
        BigEndian::write_u32(&mut d[8..12], u32::try_from(blocks).unwrap_or(u32::MAX));
        d[12] = if mapped { MAPPED } else { DEALLOCATED };
        b.extend_from_slice(&d);
    }
    // PARAMETER DATA LENGTH: the bytes after the field.
    let length = u32::try_from(b.len() - 4).unwrap_or(u32::MAX);
    BigEndian::write_u32(&mut b[0..4], length);
    send_data_in(data, &b, cmd.allocation_length)
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::AdditionalSense;

    use super::*;
    use crate::testutil::*;

    const BS: usize = 512;

    fn gls(lba: u64, alloc: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x12;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&alloc.to_be_bytes());
        cdb
    }

    fn descriptors(b: &[u8]) -> Vec<(u64, u32, u8)> {
        b[8..]
            .chunks(16)
            .map(|d| {
                (
                    BigEndian::read_u64(&d[0..8]),
                    BigEndian::read_u32(&d[8..12]),
                    d[12],
                )
            })
            .collect()
    }

    fn unmap(emu: &Emulator<VecDevice>, lba: u64, n: u32) {
        let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        let resp = emu.execute(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &mut p);
        assert_eq!(resp, ScsiResponse::good());
    }

    #[test]
    fn reports_mapped_and_deallocated_extents() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap().with_lba_status());
        unmap(&emu, 10, 5);
        unmap(&emu, 40, 24);
        let mut buf = vec![0u8; 1024];
        let resp = emu.execute(&gls(0, 1024), &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8 + 4 * 16));
        assert_eq!(BigEndian::read_u32(&buf[0..4]), 4 + 4 * 16);
        assert_eq!(
            descriptors(&buf[..72]),
            [(0, 10, 0), (10, 5, 1), (15, 25, 0), (40, 24, 1)]
        );
        // From the middle of an extent; the allocation length limits the
        // descriptors.
        let resp = emu.execute(&gls(12, 8 + 2 * 16), &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(40));
        assert_eq!(descriptors(&buf[..40]), [(12, 3, 1), (15, 25, 0)]);
        // A short allocation length still describes one extent.
        let resp = emu.execute(&gls(63, 4), &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(4));
        assert_eq!(BigEndian::read_u32(&buf[0..4]), 4 + 16);
    }

    #[test]
    fn start_beyond_the_end_is_out_of_range() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap().with_lba_status());
        let mut buf = vec![0u8; 64];
        for lba in [64, u64::MAX] {
            assert_illegal(
                &emu.execute(&gls(lba, 64), &mut buf),
                AdditionalSense::LBA_OUT_OF_RANGE,
            );
        }
    }

    #[test]
    fn unsupported_without_lba_status() {
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        assert_invalid_field(&emu.execute(&gls(0, 64), &mut vec![0u8; 64]), 1, 4);
    }
}
