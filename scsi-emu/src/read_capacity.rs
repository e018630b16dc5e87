//! READ CAPACITY(10) and READ CAPACITY(16) (SBC-4 5.20, 5.21).

use byteorder::{BigEndian, ByteOrder};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, to_usize};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::response::{ScsiResponse, send_data_in};

/// Byte 14: LBPME, logical block provisioning (UNMAP) is enabled.
const LBPME: u8 = 0x80;
/// Byte 14: LBPRZ, unmapped blocks read as zeros.
const LBPRZ: u8 = 0x40;

/// The LBA of the last block. A device without blocks reports 0; SBC has
/// no way to say "empty".
fn last_lba<D: BlockDevice + ?Sized>(device: &D) -> u64 {
    device.num_blocks().saturating_sub(1)
}

/// READ CAPACITY(10). PMI and the LBA field are obsolete in SBC-4 and
/// ignored, so it takes no parameters.
pub(crate) fn read_capacity_10<D: BlockDevice + ?Sized>(
    device: &D,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let mut b = [0u8; 8];
    // FFFF_FFFFh tells the initiator to use READ CAPACITY(16).
    let last = u32::try_from(last_lba(device)).unwrap_or(u32::MAX);
    BigEndian::write_u32(&mut b[0..4], last);
    BigEndian::write_u32(&mut b[4..8], device.block_size());
    send_data_in(data, &b, b.len())
}

/// A decoded READ CAPACITY(16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadCapacity16 {
    allocation_length: usize,
}

impl ReadCapacity16 {
    /// The caller has matched the service action already.
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Self {
        ReadCapacity16 {
            allocation_length: to_usize(cdb.be32(10)),
        }
    }
}

/// READ CAPACITY(16): no protection, one logical block per physical
/// block, lowest aligned LBA 0; LBPME and LBPRZ as the Logical Block
/// Provisioning VPD page says.
pub(crate) fn read_capacity_16<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &ReadCapacity16,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let mut b = [0u8; 32];
    BigEndian::write_u64(&mut b[0..8], last_lba(device));
    BigEndian::write_u32(&mut b[8..12], device.block_size());
    if lun.caps.unmap {
        b[14] |= LBPME;
        if lun.caps.unmap_reads_zeroes {
            b[14] |= LBPRZ;
        }
    }
    send_data_in(data, &b, cmd.allocation_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    const RC10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    fn rc16(alloc: u32) -> [u8; 16] {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x10;
        cdb[10..14].copy_from_slice(&alloc.to_be_bytes());
        cdb
    }

    #[test]
    fn read_capacity_10_small_device() {
        let emu = emulator(VecDevice::new(4096, 100));
        let mut buf = vec![0u8; 8];
        assert_eq!(emu.execute(&RC10, &mut buf), ScsiResponse::data_in(8));
        assert_eq!(buf, [0, 0, 0, 99, 0, 0, 0x10, 0]);
    }

    #[test]
    fn read_capacity_10_caps_large_devices() {
        let mut buf = vec![0u8; 8];
        // Last LBA FFFF_FFFEh still fits.
        let emu = emulator(VecDevice::geometry(512, 0xFFFF_FFFF));
        emu.execute(&RC10, &mut buf);
        assert_eq!(&buf[..4], &[0xFF, 0xFF, 0xFF, 0xFE]);
        // Last LBA FFFF_FFFFh and beyond: reported as FFFF_FFFFh.
        for blocks in [0x1_0000_0000, 0x1_0000_0001, u64::MAX] {
            let emu = emulator(VecDevice::geometry(512, blocks));
            emu.execute(&RC10, &mut buf);
            assert_eq!(&buf[..4], &[0xFF; 4]);
            assert_eq!(&buf[4..], &[0, 0, 2, 0]);
        }
    }

    #[test]
    fn read_capacity_10_with_short_buffer() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0u8; 4];
        assert_eq!(emu.execute(&RC10, &mut buf), ScsiResponse::data_in(4));
        assert_eq!(buf, [0, 0, 0, 7]);
    }

    #[test]
    fn read_capacity_16_layout() {
        let emu = emulator(VecDevice::geometry(512, 0x1_2345_6789));
        let mut buf = vec![0xEEu8; 64];
        assert_eq!(emu.execute(&rc16(64), &mut buf), ScsiResponse::data_in(32));
        assert_eq!(&buf[0..8], &0x1_2345_6788u64.to_be_bytes());
        assert_eq!(&buf[8..12], &512u32.to_be_bytes());
        assert!(buf[12..32].iter().all(|&b| b == 0));
        assert!(buf[32..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn read_capacity_16_truncates_to_allocation_length() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xEEu8; 32];
        assert_eq!(emu.execute(&rc16(12), &mut buf), ScsiResponse::data_in(12));
        assert_eq!(&buf[..12], &[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 2, 0]);
        assert_eq!(buf[12], 0xEE);
        assert_eq!(emu.execute(&rc16(0), &mut buf), ScsiResponse::data_in(0));
    }

    #[test]
    fn other_service_actions_are_invalid() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut cdb = rc16(32);
        // 12h is GET LBA STATUS, which this device does not support.
        for sa in [0x00, 0x11, 0x12, 0x1F] {
            cdb[1] = sa;
            assert_invalid_field(&emu.execute(&cdb, &mut vec![0u8; 32]), 1, 4);
        }
    }

    #[test]
    fn provisioning_bits_follow_the_device() {
        let mut buf = vec![0u8; 32];
        let emu = emulator(VecDevice::new(512, 8).with_unmap());
        emu.execute(&rc16(32), &mut buf);
        assert_eq!(buf[14], 0xC0, "LBPME and LBPRZ");
        let emu = emulator(VecDevice::new(512, 8).with_unmap_keeping_data());
        emu.execute(&rc16(32), &mut buf);
        assert_eq!(buf[14], 0x80, "LBPME only");
    }
}
