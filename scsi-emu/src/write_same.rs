//! WRITE SAME(10) and WRITE SAME(16) (SBC-4 5.48, 5.49).
//!
//! One block of data-out (or, with NDOB, a block of zeros) is written to
//! every block of the range:
//! - zeros with UNMAP set, on a device whose unmapped blocks read as
//!   zeros: the range is unmapped (reads return the same zeros);
//! - other zeros: `write_zeroes`, which backends may do cheaply;
//! - anything else: the block replicated into a buffer of up to 1 MiB,
//!   written piece by piece.
//!
//! The number of blocks must be non-zero (WSNZ) and at most the MAXIMUM
//! WRITE SAME LENGTH; ANCHOR is not supported.

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::data_buffer::DataBuffer;
use crate::extent::Extent;
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, block_size, byte_len, check_range};
use crate::opcode;
use crate::response::ScsiResponse;
use crate::write_flags::WriteFlags;

/// Largest buffer of replicated blocks written at once.
const REPLICATE_BYTES: usize = 1 << 20;

/// A decoded WRITE SAME(10) or (16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteSame {
    lba: u64,
    blocks: u64,
    /// UNMAP: the blocks may be deallocated.
    unmap: bool,
    /// NDOB (16 only): no data-out buffer, the block is zeros.
    ndob: bool,
    /// CDB byte of the NUMBER OF LOGICAL BLOCKS field.
    length_field: u16,
}

impl WriteSame {
    const ANCHOR: u8 = 0x10;
    const UNMAP: u8 = 0x08;
    const NDOB: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        // WRPROTECT: no protection information.
        if cdb.byte(1) & 0xE0 != 0 {
            return Err(invalid_field(1, 7));
        }
        // ANC_SUP is zero in the Logical Block Provisioning VPD page.
        if cdb.byte(1) & Self::ANCHOR != 0 {
            return Err(invalid_field(1, 4));
        }
        let sixteen = cdb.opcode() == opcode::WRITE_SAME_16;
        let (lba, blocks, length_field) = if sixteen {
            (cdb.be64(2), u64::from(cdb.be32(10)), 10)
        } else {
            (u64::from(cdb.be32(2)), u64::from(cdb.be16(7)), 7)
        };
        // WSNZ: zero blocks ("to the end of the medium") is refused.
        if blocks == 0 {
            return Err(invalid_field(length_field, 7));
        }
        Ok(WriteSame {
            lba,
            blocks,
            unmap: cdb.byte(1) & Self::UNMAP != 0,
            ndob: sixteen && cdb.byte(1) & Self::NDOB != 0,
            length_field,
        })
    }
}

pub(crate) fn write_same<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &WriteSame,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let Some(bs) = block_size(device) else {
        return ScsiResponse::internal_failure();
    };
    if cmd.blocks > lun.limits.max_write_same {
        return invalid_field(cmd.length_field, 7).into();
    }
    if let Err(sense) = check_range(device, cmd.lba, cmd.blocks) {
        return sense.into();
    }
    let mut block = vec![0u8; bs];
    if !cmd.ndob {
        // The data-out buffer is one block; less than that cannot be
        // replicated.
        if data.len() < bs {
            return invalid_field(0, 7).into();
        }
        data.read_at(0, &mut block);
    }
    let zeros = block.iter().all(|&b| b == 0);

    let _range = lun.locks.lock(cmd.lba, cmd.blocks);
    let result = if zeros && cmd.unmap && lun.caps.unmap_reads_zeroes {
        device.unmap(Extent::new(cmd.lba, cmd.blocks))
    } else if zeros {
        device
            .write_zeroes(Extent::new(cmd.lba, cmd.blocks))
            .and_then(|()| {
                // write_zeroes has no FUA form: flush when writing through.
                if lun.write_through() {
                    device.flush()
                } else {
                    Ok(())
                }
            })
    } else {
        replicate(device, cmd.lba, cmd.blocks, &block, lun.write_flags(false))
    };
    match result {
        Ok(()) => ScsiResponse::good(),
        Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
    }
}

/// Write `block` to `blocks` blocks from `lba`.
fn replicate<D: BlockDevice + ?Sized>(
    device: &D,
    lba: u64,
    blocks: u64,
    block: &[u8],
    flags: WriteFlags,
) -> Result<(), crate::BlockError> {
    let bs = block.len();
    let per_write = (REPLICATE_BYTES / bs).max(1) as u64;
    let buf = block.repeat(byte_len(per_write.min(blocks), bs) / bs);
    let mut done = 0;
    while done < blocks {
        let n = per_write.min(blocks - done);
        let piece = &buf[..byte_len(n, bs)];
        device.write_vectored(lba + done, &[piece], flags)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::BlockError;
    use crate::testutil::*;

    const BS: usize = 512;

    fn ws10(flags: u8, lba: u32, blocks: u16) -> Vec<u8> {
        let mut cdb = vec![0x41, flags, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    fn ws16(flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x93;
        cdb[1] = flags;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    const UNMAP: u8 = 0x08;
    const NDOB: u8 = 0x01;

    #[test]
    fn pattern_is_replicated() {
        let emu = emulator(VecDevice::new(BS as u32, 4096));
        let before = emu.device().contents();
        let mut block: Vec<u8> = (0..BS).map(|i| (i % 13) as u8 + 1).collect();
        // 3000 blocks: two 1 MiB writes and the rest.
        assert_eq!(
            emu.execute(&ws16(0, 10, 3000), &mut block),
            ScsiResponse::good()
        );
        let after = emu.device().contents();
        for b in 10..3010 {
            assert_eq!(after[b * BS..(b + 1) * BS], block[..], "block {b}");
        }
        assert_eq!(after[..10 * BS], before[..10 * BS]);
        assert_eq!(after[3010 * BS..], before[3010 * BS..]);
        assert_eq!(
            emu.device().calls(),
            [('w', 10, 1 << 20), ('w', 2058, 952 * BS)]
        );
        // UNMAP with non-zero data writes the data.
        assert_eq!(
            emu.execute(&ws10(UNMAP, 0, 2), &mut block),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().contents()[BS..2 * BS], block[..]);
    }

    #[test]
    fn zeros_use_write_zeroes_or_unmap() {
        // No unmap support: zeros are written, UNMAP or not.
        let emu = emulator(VecDevice::new(BS as u32, 64));
        let mut zero = vec![0u8; BS];
        assert_eq!(
            emu.execute(&ws10(UNMAP, 4, 8), &mut zero),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&ws16(NDOB, 20, 2), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('z', 4, 8 * BS), ('z', 20, 2 * BS)]);
        let c = emu.device().contents();
        assert!(c[4 * BS..12 * BS].iter().all(|&b| b == 0));
        assert!(c[20 * BS..22 * BS].iter().all(|&b| b == 0));

        // Unmap support with zeroes: UNMAP unmaps, no UNMAP writes zeros.
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap());
        assert_eq!(
            emu.execute(&ws16(UNMAP, 4, 8), &mut zero),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&ws16(UNMAP | NDOB, 30, 1), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&ws10(0, 40, 1), &mut zero),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.device().calls(),
            [('u', 4, 8 * BS), ('u', 30, BS), ('z', 40, BS)]
        );
        assert!(
            emu.device().contents()[4 * BS..12 * BS]
                .iter()
                .all(|&b| b == 0)
        );

        // Unmapped blocks that keep their data: never unmap for zeros.
        let emu = emulator(VecDevice::new(BS as u32, 64).with_unmap_keeping_data());
        assert_eq!(
            emu.execute(&ws16(UNMAP, 4, 8), &mut zero),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('z', 4, 8 * BS)]);
        assert!(
            emu.device().contents()[4 * BS..12 * BS]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn ndob_only_in_write_same_16() {
        // In WRITE SAME(10) byte 1 bit 0 is reserved: data-out is used.
        let emu = emulator(VecDevice::new(BS as u32, 8));
        let mut ones = vec![1u8; BS];
        assert_eq!(
            emu.execute(&ws10(NDOB, 0, 1), &mut ones),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().contents()[..BS], ones[..]);
    }

    #[test]
    fn field_checks() {
        let emu = emulator(VecDevice::new(BS as u32, 64)).with_max_io_bytes(BS as u32);
        let mut block = vec![1u8; BS];
        assert_invalid_field(&emu.execute(&ws10(0, 0, 0), &mut block), 7, 7);
        assert_invalid_field(&emu.execute(&ws16(0, 0, 0), &mut block), 10, 7);
        assert_invalid_field(&emu.execute(&ws16(0x10, 0, 1), &mut block), 1, 4);
        assert_invalid_field(&emu.execute(&ws10(0x40, 0, 1), &mut block), 1, 7);
        assert_invalid_field(&emu.execute(&ws16(0, 0, 1), &mut vec![0u8; BS - 1]), 0, 7);
        assert_illegal(
            &emu.execute(&ws16(0, 60, 5), &mut block),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        // Not limited by the MAXIMUM TRANSFER LENGTH (no data moves) ...
        assert_eq!(
            emu.execute(&ws16(0, 0, 64), &mut block),
            ScsiResponse::good()
        );
        // ... but by the MAXIMUM WRITE SAME LENGTH.
        let big = emulator(VecDevice::geometry(BS as u32, 1 << 40));
        let max = big.lun.limits.max_write_same as u32;
        assert_invalid_field(&big.execute(&ws16(NDOB, 0, max + 1), &mut block), 10, 7);
    }

    #[test]
    fn read_only_and_failures() {
        let emu = emulator(VecDevice::new(BS as u32, 8).read_only());
        let mut block = vec![1u8; BS];
        assert_check(
            &emu.execute(&ws10(0, 0, 1), &mut block),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        let emu = emulator(VecDevice::new(BS as u32, 8).failing(BlockError::NoSpace));
        assert_check(
            &emu.execute(&ws10(0, 0, 1), &mut block),
            SenseKey::DataProtect,
            AdditionalSense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        );
    }
}
