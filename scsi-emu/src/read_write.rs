//! READ and WRITE (6/10/12/16) (SBC-4 5.15-5.18, 5.38-5.41).
//!
//! Data moves without copies where possible: the block-aligned part of
//! every data buffer segment goes straight to `BlockDevice::read` or
//! `write`; only a block split across two segments passes through a
//! one-block bounce buffer.
//!
//! Buffer length policy (the buffer is what the transport allocated, which
//! may differ from what the CDB asks for when the initiator's expected
//! length disagrees):
//! - READ fills what fits (whole blocks directly, a final partial block
//!   through the bounce buffer) and reports that as data-in; the caller
//!   reports the rest as residual.
//! - WRITE with fewer bytes than the CDB's transfer length is refused
//!   with INVALID FIELD IN CDB before anything is written: writing part
//!   of the data, or blocks padded with garbage, would corrupt the disk.
//!   Extra bytes beyond the transfer length are ignored.
//!
//! A transfer longer than the MAXIMUM TRANSFER LENGTH the Block Limits
//! VPD page reports is refused with INVALID FIELD IN CDB. WRITE locks its
//! LBA range (see [`range_lock`](crate::range_lock)), and goes through
//! a FUA write (`WriteFlags::FUA`) when FUA is set or the initiator turned the device's write
//! cache off (WCE=0). READ holds its range for reading, which only makes
//! it wait for a WRITE ATOMIC of those blocks.

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field, lba_and_length, length_field};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::medium::{
    Direction, backend_failure, byte_len, check_transfer, check_write_transfer, read_into,
    write_from,
};
use crate::response::ScsiResponse;

/// A decoded READ or WRITE: which blocks, and whether to force them to
/// stable storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) lba: u64,
    pub(crate) blocks: u64,
    pub(crate) fua: bool,
    /// CDB byte of the TRANSFER LENGTH field, for field pointers.
    pub(crate) length_field: u16,
}

impl Transfer {
    /// RDPROTECT / WRPROTECT (byte 1, bits 7-5): protection information
    /// is not supported.
    const PROTECT: u8 = 0xE0;
    /// FUA (byte 1, bit 3).
    const FUA: u8 = 0x08;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        if cdb.len() == 6 {
            // 21-bit LBA; a transfer length of 0 means 256 blocks. The top
            // bits of byte 1 are reserved here (they held the LUN in
            // SCSI-2) and are ignored.
            let lba = (u64::from(cdb.byte(1) & 0x1F) << 16) | u64::from(cdb.be16(2));
            let blocks = match cdb.byte(4) {
                0 => 256,
                n => u64::from(n),
            };
            return Ok(Transfer {
                lba,
                blocks,
                fua: false,
                length_field: 4,
            });
        }
        if cdb.byte(1) & Self::PROTECT != 0 {
            return Err(invalid_field(1, 7));
        }
        let (lba, blocks) = lba_and_length(cdb);
        Ok(Transfer {
            lba,
            blocks,
            // DPO (bit 4) is only a cache-retention hint and is ignored.
            fua: cdb.byte(1) & Self::FUA != 0,
            length_field: length_field(cdb.len()),
        })
    }
}

pub(crate) fn read<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Transfer,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let bs = match check_transfer(lun, cmd.lba, cmd.blocks, cmd.length_field) {
        Ok(bs) => bs,
        Err(resp) => return resp,
    };
    // FUA on a read asks for data from the medium, not a cache; the
    // backend's read always returns the latest data, so it changes nothing.
    let len = byte_len(cmd.blocks, bs).min(data.len());
    // Never in the middle of a WRITE ATOMIC.
    let _range = lun.locks.lock_read(cmd.lba, cmd.blocks);
    match read_into(lun.device(), cmd.lba, bs, data, len) {
        Ok(()) => ScsiResponse::data_in(len),
        Err((err, lba)) => backend_failure(&err, lba, Direction::Read),
    }
}

pub(crate) fn write<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Transfer,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let (bs, len) =
        match check_write_transfer(lun, cmd.lba, cmd.blocks, cmd.length_field, data.len()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
    let flags = lun.write_flags(cmd.fua);
    let _range = lun.locks.lock(cmd.lba, cmd.blocks);
    match write_from(lun.device(), cmd.lba, bs, data, len, flags) {
        Ok(()) => ScsiResponse::good(),
        Err((err, lba)) => backend_failure(&err, lba, Direction::Write),
    }
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;

    const BS: usize = 512;

    fn split(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        for &s in sizes {
            out.push(bytes[at..at + s].to_vec());
            at += s;
        }
        assert_eq!(at, bytes.len());
        out
    }

    fn flat(segments: &[Vec<u8>]) -> Vec<u8> {
        segments.concat()
    }

    #[test]
    fn decode_lba_and_length_of_every_size() {
        let caps = crate::capabilities::Capabilities::default();
        let dec = |cdb: &[u8]| match crate::command::Command::decode(cdb, &caps).unwrap().0 {
            crate::command::Command::Read(t) | crate::command::Command::Write(t) => t,
            other => panic!("{other:?}"),
        };
        let t = dec(&rw6(false, 0x1F_FFFF, 0));
        assert_eq!((t.lba, t.blocks, t.fua), (0x1F_FFFF, 256, false));
        let t = dec(&[0x0A, 0xFF, 0x12, 0x34, 3, 0]);
        assert_eq!((t.lba, t.blocks), (0x1F_1234, 3));
        let t = dec(&rw10(true, 0x08, 0xDEAD_BEEF, 0xFFFF));
        assert_eq!((t.lba, t.blocks, t.fua), (0xDEAD_BEEF, 0xFFFF, true));
        let t = dec(&rw12(false, 0, 7, 0x0102_0304));
        assert_eq!((t.lba, t.blocks), (7, 0x0102_0304));
        let t = dec(&rw16(true, 0x18, u64::MAX - 1, 9));
        assert_eq!((t.lba, t.blocks, t.fua), (u64::MAX - 1, 9, true));
    }

    #[test]
    fn write_then_read_every_cdb_size() {
        let emu = emulator(VecDevice::new(BS as u32, 64));
        let cases: [(Vec<u8>, Vec<u8>); 4] = [
            (rw6(true, 3, 2), rw6(false, 3, 2)),
            (rw10(true, 0, 10, 2), rw10(false, 0, 10, 2)),
            (rw12(true, 0, 20, 2), rw12(false, 0, 20, 2)),
            (rw16(true, 0, 62, 2), rw16(false, 0, 62, 2)),
        ];
        for (seed, (w, r)) in cases.into_iter().enumerate() {
            let mut out = pattern(2 * BS, seed as u8);
            assert_eq!(emu.execute(&w, &mut out), ScsiResponse::good());
            let mut back = vec![0u8; 2 * BS];
            assert_eq!(emu.execute(&r, &mut back), ScsiResponse::data_in(2 * BS));
            assert_eq!(back, out);
        }
    }

    #[test]
    fn read_6_zero_length_means_256_blocks() {
        let emu = emulator(VecDevice::new(BS as u32, 300));
        let mut buf = vec![0u8; 256 * BS];
        assert_eq!(
            emu.execute(&rw6(false, 0, 0), &mut buf),
            ScsiResponse::data_in(256 * BS)
        );
        assert_eq!(buf, emu.device().contents()[..256 * BS]);
        assert_illegal(
            &emu.execute(&rw6(false, 45, 0), &mut buf),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
    }

    #[test]
    fn zero_length_transfers_do_nothing() {
        let emu = emulator(VecDevice::new(BS as u32, 8));
        let mut buf = vec![0xEEu8; BS];
        assert_eq!(
            emu.execute(&rw10(false, 0, 8, 0), &mut buf),
            ScsiResponse::data_in(0)
        );
        assert_eq!(
            emu.execute(&rw16(true, 0, 3, 0), &mut buf),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&rw12(true, 0, 0, 0), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert!(emu.device().calls().is_empty());
        assert!(buf.iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn out_of_range_is_refused_without_calling_the_device() {
        let emu = emulator(VecDevice::new(BS as u32, 8));
        let mut buf = vec![0u8; 16 * BS];
        for cdb in [
            rw10(false, 0, 7, 2),
            rw10(true, 0, 8, 1),
            rw10(false, 0, 9, 0),
            rw12(false, 0, 0, 9),
            rw16(false, 0, u64::MAX, 1),
            rw16(true, 0, u64::MAX - 1, 4),
            rw16(false, 0, 1 << 40, 0),
            rw6(true, 8, 1),
        ] {
            assert_illegal(
                &emu.execute(&cdb, &mut buf),
                AdditionalSense::LBA_OUT_OF_RANGE,
            );
        }
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn protection_fields_are_refused() {
        let emu = emulator(VecDevice::new(BS as u32, 8));
        let mut buf = vec![0u8; BS];
        for flags in [0x20, 0x40, 0x80, 0xE0] {
            assert_invalid_field(&emu.execute(&rw10(false, flags, 0, 1), &mut buf), 1, 7);
            assert_invalid_field(&emu.execute(&rw10(true, flags, 0, 1), &mut buf), 1, 7);
            assert_invalid_field(&emu.execute(&rw12(true, flags, 0, 1), &mut buf), 1, 7);
            assert_invalid_field(&emu.execute(&rw16(false, flags, 0, 1), &mut buf), 1, 7);
        }
    }

    #[test]
    fn transfers_beyond_the_maximum_transfer_length_are_refused() {
        let emu = emulator(VecDevice::new(BS as u32, 64)).with_max_io_bytes(8 * BS as u32);
        let mut buf = vec![0u8; 9 * BS];
        assert_invalid_field(&emu.execute(&rw10(false, 0, 0, 9), &mut buf), 7, 7);
        assert_invalid_field(&emu.execute(&rw12(true, 0, 0, 9), &mut buf), 6, 7);
        assert_invalid_field(&emu.execute(&rw16(false, 0, 0, 9), &mut buf), 10, 7);
        assert_invalid_field(&emu.execute(&rw6(true, 0, 9), &mut buf), 4, 7);
        assert!(emu.device().calls().is_empty());
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 8), &mut buf),
            ScsiResponse::data_in(8 * BS)
        );
    }

    #[test]
    fn fua_reaches_write_fua() {
        let emu = emulator(VecDevice::new(BS as u32, 8));
        let mut buf = pattern(2 * BS, 1);
        assert_eq!(
            emu.execute(&rw10(true, 0x08, 1, 2), &mut buf),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&rw16(true, 0x00, 4, 1), &mut buf),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('f', 1, 2 * BS), ('w', 4, BS)]);
        assert_eq!(emu.device().contents()[BS..3 * BS], buf[..]);
    }

    #[test]
    fn read_only_device_refuses_writes() {
        let emu = emulator(VecDevice::new(BS as u32, 8).read_only());
        let before = emu.device().contents();
        let mut buf = pattern(BS, 3);
        for cdb in [
            rw6(true, 0, 1),
            rw10(true, 0, 0, 1),
            rw12(true, 0x08, 0, 1),
            rw16(true, 0, 0, 1),
        ] {
            assert_check(
                &emu.execute(&cdb, &mut buf),
                SenseKey::DataProtect,
                AdditionalSense::WRITE_PROTECTED,
            );
        }
        assert_eq!(emu.device().contents(), before);
        // Reads still work.
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 1), &mut buf),
            ScsiResponse::data_in(BS)
        );
    }

    #[test]
    fn aligned_segments_go_straight_to_the_device() {
        let emu = emulator(VecDevice::new(BS as u32, 64));
        let data = pattern(6 * BS, 9);
        let mut segs = split(&data, &[BS, 3 * BS, 2 * BS]);
        assert_eq!(
            emu.execute(&rw10(true, 0, 10, 6), &mut segs),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.device().calls(),
            [('w', 10, BS), ('w', 11, 3 * BS), ('w', 14, 2 * BS)]
        );
        emu.device().calls.lock().unwrap().clear();

        let mut back = split(&vec![0; 6 * BS], &[2 * BS, 4 * BS]);
        assert_eq!(
            emu.execute(&rw10(false, 0, 10, 6), &mut back),
            ScsiResponse::data_in(6 * BS)
        );
        assert_eq!(emu.device().calls(), [('r', 10, 2 * BS), ('r', 12, 4 * BS)]);
        assert_eq!(flat(&back), data);
    }

    #[test]
    fn scattered_unaligned_segments_round_trip() {
        let layouts: &[&[usize]] = &[
            &[1, 4095],
            &[100, 412, 1000, 24, 2560],
            &[511, 2, 511, 3072],
            &[700, 700, 700, 700, 700, 596],
            &[4096],
            &[0, 2048, 0, 2048],
        ];
        for (n, sizes) in layouts.iter().enumerate() {
            let total: usize = sizes.iter().sum();
            if total == 0 {
                continue;
            }
            let blocks = total / BS;
            let emu = emulator(VecDevice::new(BS as u32, 32));
            let before = emu.device().contents();
            let data = pattern(total, n as u8 + 40);
            let mut segs = split(&data, sizes);
            assert_eq!(
                emu.execute(&rw12(true, 0, 5, blocks as u32), &mut segs),
                ScsiResponse::good(),
                "{sizes:?}"
            );
            let after = emu.device().contents();
            assert_eq!(after[5 * BS..5 * BS + total], data[..], "{sizes:?}");
            assert_eq!(after[..5 * BS], before[..5 * BS]);
            assert_eq!(after[5 * BS + total..], before[5 * BS + total..]);
            // Every backend call covered whole blocks in order, once.
            let mut next = 5;
            for (_, lba, len) in emu.device().calls() {
                assert_eq!(lba, next);
                next += (len / BS) as u64;
            }
            assert_eq!(next, 5 + blocks as u64);

            // Read back through a differently scattered buffer.
            let mut rev: Vec<usize> = sizes.to_vec();
            rev.reverse();
            let mut back = split(&vec![0; total], &rev);
            assert_eq!(
                emu.execute(&rw16(false, 0, 5, blocks as u32), &mut back),
                ScsiResponse::data_in(total)
            );
            assert_eq!(flat(&back), data, "{rev:?}");
        }
    }

    #[test]
    fn unaligned_segments_use_direct_io_for_their_aligned_middle() {
        let emu = emulator(VecDevice::new(BS as u32, 32));
        // 100 | 412 + 2*512 + 300 | 212
        let data = pattern(4 * BS, 5);
        let mut segs = split(&data, &[100, 412 + 2 * BS + 300, 212]);
        assert_eq!(
            emu.execute(&rw10(true, 0, 0, 4), &mut segs),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.device().calls(),
            [('w', 0, BS), ('w', 1, 2 * BS), ('w', 3, BS)]
        );
    }

    #[test]
    fn read_into_a_short_buffer_transfers_what_fits() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let contents = emu.device().contents();
        let mut segs = vec![vec![0u8; 300], vec![0u8; 1000]];
        assert_eq!(
            emu.execute(&rw10(false, 0, 2, 4), &mut segs),
            ScsiResponse::data_in(1300)
        );
        assert_eq!(flat(&segs), contents[2 * BS..2 * BS + 1300]);
        let mut empty: Vec<Vec<u8>> = Vec::new();
        assert_eq!(
            emu.execute(&rw10(false, 0, 2, 4), &mut empty),
            ScsiResponse::data_in(0)
        );
    }

    #[test]
    fn read_into_a_long_buffer_leaves_the_rest() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut buf = vec![0xEEu8; 3 * BS];
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 2), &mut buf),
            ScsiResponse::data_in(2 * BS)
        );
        assert!(buf[2 * BS..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn write_with_a_short_buffer_is_refused() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let before = emu.device().contents();
        let mut segs = vec![vec![1u8; BS], vec![2u8; BS - 1]];
        assert_invalid_field(&emu.execute(&rw10(true, 0, 0, 2), &mut segs), 7, 7);
        assert_invalid_field(&emu.execute(&rw16(true, 0, 0, 2), &mut segs), 10, 7);
        assert_eq!(emu.device().contents(), before);
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn write_ignores_extra_buffer_bytes() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let before = emu.device().contents();
        let mut segs = vec![vec![1u8; 700], vec![2u8; 700]];
        assert_eq!(
            emu.execute(&rw10(true, 0, 3, 2), &mut segs),
            ScsiResponse::good()
        );
        let after = emu.device().contents();
        assert_eq!(&after[3 * BS..3 * BS + 700], &[1u8; 700][..]);
        assert_eq!(&after[3 * BS + 700..5 * BS], &[2u8; 2 * BS - 700][..]);
        assert_eq!(after[5 * BS..], before[5 * BS..]);
    }

    fn failing(err: BlockError) -> Emulator<VecDevice> {
        emulator(VecDevice::new(BS as u32, 16).failing(err))
    }

    #[test]
    fn backend_errors_map_to_sense() {
        let mut buf = vec![0u8; BS];
        let read = rw10(false, 0, 1, 1);
        let write = rw10(true, 0, 1, 1);
        let cases = [
            (
                BlockError::OutOfRange,
                SenseKey::IllegalRequest,
                AdditionalSense::LBA_OUT_OF_RANGE,
                AdditionalSense::LBA_OUT_OF_RANGE,
            ),
            (
                BlockError::Medium,
                SenseKey::MediumError,
                AdditionalSense::UNRECOVERED_READ_ERROR,
                AdditionalSense::WRITE_ERROR,
            ),
            (
                BlockError::Io(EIO),
                SenseKey::MediumError,
                AdditionalSense::UNRECOVERED_READ_ERROR,
                AdditionalSense::WRITE_ERROR,
            ),
            (
                BlockError::ReadOnly,
                SenseKey::DataProtect,
                AdditionalSense::WRITE_PROTECTED,
                AdditionalSense::WRITE_PROTECTED,
            ),
            (
                BlockError::NoSpace,
                SenseKey::DataProtect,
                AdditionalSense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
                AdditionalSense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
            ),
        ];
        for (err, key, on_read, on_write) in cases {
            let emu = failing(err.clone());
            assert_check(&emu.execute(&read, &mut buf), key, on_read);
            assert_check(&emu.execute(&write, &mut buf), key, on_write);
        }
        let emu = failing(BlockError::Busy);
        for cdb in [&read, &write] {
            let resp = emu.execute(cdb, &mut buf);
            assert_eq!(resp, ScsiResponse::busy());
            assert_eq!(resp.status, ScsiStatus::Busy);
        }
    }

    #[test]
    fn backend_errors_in_bounce_path_map_too() {
        let emu = failing(BlockError::Medium);
        let mut segs = vec![vec![0u8; 100], vec![0u8; BS - 100]];
        assert_check(
            &emu.execute(&rw10(false, 0, 0, 1), &mut segs),
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        );
        assert_check(
            &emu.execute(&rw10(true, 0x08, 0, 1), &mut segs),
            SenseKey::MediumError,
            AdditionalSense::WRITE_ERROR,
        );
    }

    #[test]
    fn zero_block_size_fails_cleanly() {
        let emu = emulator(VecDevice::geometry(0, 8));
        let mut buf = vec![0u8; 64];
        for cdb in [rw10(false, 0, 0, 1), rw10(true, 0, 0, 1)] {
            assert_check(
                &emu.execute(&cdb, &mut buf),
                SenseKey::HardwareError,
                AdditionalSense::INTERNAL_TARGET_FAILURE,
            );
        }
    }
}
