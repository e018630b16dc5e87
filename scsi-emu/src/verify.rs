//! VERIFY(10)/(12)/(16) and WRITE AND VERIFY(10)/(12)/(16) (SBC-4
//! 5.34-5.37, 5.42-5.44), and the byte comparison COMPARE AND WRITE
//! shares.
//!
//! Verifying reads the blocks back from the device: without a byte check
//! that proves they are readable, with one their contents are compared
//! with the data-out buffer. A difference ends in MISCOMPARE, MISCOMPARE
//! DURING VERIFY OPERATION, with the INFORMATION field set to the offset
//! of the first differing byte in the data-out buffer.

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::cdb::{lba_and_length, length_field};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::medium::{
    Direction, backend_failure, byte_len, check_transfer, check_write_transfer, write_from,
};
use crate::response::ScsiResponse;
use crate::write_flags::WriteFlags;

/// Blocks read from the device at a time while verifying.
const CHUNK_BYTES: usize = 1 << 20;

/// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION at byte `offset` of the
/// data-out buffer.
pub(crate) fn miscompare(offset: usize) -> Sense {
    Sense::new(
        SenseKey::Miscompare,
        AdditionalSense::MISCOMPARE_DURING_VERIFY,
    )
    .with_information_u64(offset as u64)
}

/// The BYTCHK field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteCheck {
    /// 00b: verify the medium only; no data-out.
    None,
    /// 01b: compare the blocks with as many blocks of data-out.
    Compare,
    /// 11b: compare every block with the one block of data-out.
    CompareOne,
}

/// The BYTCHK field (byte 1, bits 2-1) of a VERIFY or WRITE AND VERIFY;
/// `one_block` tells whether 11b is allowed.
fn byte_check(cdb: &Cdb<'_>, one_block: bool) -> Result<ByteCheck, Sense> {
    match (cdb.byte(1) >> 1) & 0x03 {
        0 => Ok(ByteCheck::None),
        1 => Ok(ByteCheck::Compare),
        3 if one_block => Ok(ByteCheck::CompareOne),
        _ => Err(invalid_field(1, 2)),
    }
}

/// VRPROTECT / WRPROTECT (byte 1, bits 7-5): no protection information.
fn check_protect(cdb: &Cdb<'_>) -> Result<(), Sense> {
    if cdb.byte(1) & 0xE0 != 0 {
        return Err(invalid_field(1, 7));
    }
    Ok(())
}

/// A decoded VERIFY(10), (12) or (16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verify {
    lba: u64,
    blocks: u64,
    check: ByteCheck,
    length_field: u16,
}

impl Verify {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        check_protect(cdb)?;
        let check = byte_check(cdb, true)?;
        let (lba, blocks) = lba_and_length(cdb);
        // DPO is a cache hint and ignored.
        Ok(Verify {
            lba,
            blocks,
            check,
            length_field: length_field(cdb.len()),
        })
    }
}

/// A decoded WRITE AND VERIFY(10), (12) or (16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteAndVerify {
    lba: u64,
    blocks: u64,
    /// BYTCHK 01b: compare what was written with the data-out buffer.
    compare: bool,
    length_field: u16,
}

impl WriteAndVerify {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        check_protect(cdb)?;
        let compare = byte_check(cdb, false)? == ByteCheck::Compare;
        let (lba, blocks) = lba_and_length(cdb);
        Ok(WriteAndVerify {
            lba,
            blocks,
            compare,
            length_field: length_field(cdb.len()),
        })
    }
}

pub(crate) fn verify<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Verify,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let bs = match check_transfer(lun, cmd.lba, cmd.blocks, cmd.length_field) {
        Ok(bs) => bs,
        Err(resp) => return resp,
    };
    let needed = match cmd.check {
        ByteCheck::None => 0,
        ByteCheck::Compare => byte_len(cmd.blocks, bs),
        ByteCheck::CompareOne => bs,
    };
    if cmd.blocks > 0 && data.len() < needed {
        return invalid_field(cmd.length_field, 7).into();
    }
    let expected = |pos: usize, out: &mut [u8]| match cmd.check {
        ByteCheck::None => {}
        ByteCheck::Compare => {
            data.read_at(pos, out);
        }
        ByteCheck::CompareOne => {
            // The one block, repeated (pos and out are block aligned).
            for block in out.chunks_mut(bs) {
                data.read_at(0, block);
            }
        }
    };
    // Never in the middle of a WRITE ATOMIC.
    let _range = lun.locks.lock_read(cmd.lba, cmd.blocks);
    compare_medium(
        lun.device(),
        cmd.lba,
        cmd.blocks,
        bs,
        cmd.check != ByteCheck::None,
        expected,
    )
}

pub(crate) fn write_and_verify<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &WriteAndVerify,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let (bs, len) =
        match check_write_transfer(lun, cmd.lba, cmd.blocks, cmd.length_field, data.len()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
    let device = lun.device();
    let _range = lun.locks.lock(cmd.lba, cmd.blocks);
    // Durable first: the verification reads what the medium holds.
    if let Err((err, lba)) = write_from(device, cmd.lba, bs, data, len, WriteFlags::FUA) {
        return backend_failure(&err, lba, Direction::Write);
    }
    compare_medium(device, cmd.lba, cmd.blocks, bs, cmd.compare, |pos, out| {
        data.read_at(pos, out);
    })
}

/// Read `blocks` blocks from `lba` in chunks; when `compare` is set, check
/// each chunk against the bytes `expected(offset, buf)` puts in `buf`
/// (`offset` counts from the first block).
pub(crate) fn compare_medium<D: BlockDevice + ?Sized>(
    device: &D,
    lba: u64,
    blocks: u64,
    bs: usize,
    compare: bool,
    mut expected: impl FnMut(usize, &mut [u8]),
) -> ScsiResponse {
    let per_chunk = (CHUNK_BYTES / bs).max(1) as u64;
    let mut medium = Vec::new();
    let mut want = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let n = per_chunk.min(blocks - done);
        let len = byte_len(n, bs);
        medium.resize(len, 0);
        let at = lba + done;
        if let Err(err) = device.read(at, &mut medium) {
            return backend_failure(&err, at, Direction::Read);
        }
        if compare {
            want.resize(len, 0);
            let pos = byte_len(done, bs);
            expected(pos, &mut want);
            if let Some(i) = first_difference(&medium, &want) {
                let offset = pos + i;
                log::debug!("miscompare at LBA {at}, data-out byte {offset}");
                return ScsiResponse::check_condition(miscompare(offset));
            }
        }
        done += n;
    }
    ScsiResponse::good()
}

/// The index of the first byte where `a` and `b` differ.
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockError;
    use crate::testutil::*;

    const BS: usize = 512;

    fn v10(bytchk: u8, lba: u32, blocks: u16) -> Vec<u8> {
        let mut cdb = vec![0x2F, bytchk << 1, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    fn v16(bytchk: u8, lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x8F;
        cdb[1] = bytchk << 1;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    fn wv(sixteen: bool, bytchk: u8, lba: u32, blocks: u16) -> Vec<u8> {
        if sixteen {
            let mut cdb = v16(bytchk, u64::from(lba), u32::from(blocks));
            cdb[0] = 0x8E;
            cdb
        } else {
            let mut cdb = v10(bytchk, lba, blocks);
            cdb[0] = 0x2E;
            cdb
        }
    }

    #[track_caller]
    fn assert_miscompare(resp: &ScsiResponse, offset: u64) {
        assert_check(
            resp,
            SenseKey::Miscompare,
            AdditionalSense::MISCOMPARE_DURING_VERIFY,
        );
        assert_eq!(resp.sense.unwrap().information, Some(offset));
    }

    #[test]
    fn verify_without_byte_check_reads_the_range() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut none = Vec::<u8>::new();
        assert_eq!(emu.execute(&v10(0, 2, 5), &mut none), ScsiResponse::good());
        assert_eq!(emu.device().calls(), [('r', 2, 5 * BS)]);
        assert_eq!(emu.execute(&v16(0, 15, 1), &mut none), ScsiResponse::good());
        // Zero blocks: nothing to do, even at the end of the medium.
        assert_eq!(emu.execute(&v10(0, 16, 0), &mut none), ScsiResponse::good());
        assert_illegal(
            &emu.execute(&v16(0, 15, 2), &mut none),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        let failing = emulator(VecDevice::new(BS as u32, 16).failing(BlockError::Medium));
        assert_check(
            &failing.execute(&v10(0, 0, 1), &mut none),
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        );
    }

    #[test]
    fn verify_byte_check_compares_data_out() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let contents = emu.device().contents();
        let mut same = contents[3 * BS..6 * BS].to_vec();
        assert_eq!(emu.execute(&v10(1, 3, 3), &mut same), ScsiResponse::good());
        // Scattered data-out compares the same.
        let mut segs = vec![same[..700].to_vec(), same[700..].to_vec()];
        assert_eq!(emu.execute(&v16(1, 3, 3), &mut segs), ScsiResponse::good());

        let mut different = same.clone();
        different[BS + 17] ^= 0x40;
        assert_miscompare(&emu.execute(&v10(1, 3, 3), &mut different), BS as u64 + 17);
        different[5] ^= 1;
        assert_miscompare(&emu.execute(&v16(1, 3, 3), &mut different), 5);
        // Too little data-out.
        assert_invalid_field(&emu.execute(&v10(1, 3, 3), &mut same[..BS].to_vec()), 7, 7);
    }

    #[test]
    fn verify_byte_check_one_block_against_each() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut block = vec![0x5Au8; BS];
        let mut write = vec![0x2A, 0, 0, 0, 0, 4, 0, 0, 3, 0];
        assert_eq!(
            emu.execute(&write, &mut block.repeat(3)),
            ScsiResponse::good()
        );
        assert_eq!(emu.execute(&v10(3, 4, 3), &mut block), ScsiResponse::good());
        // Block 5 differs at byte 9.
        let mut other = block.clone();
        other[9] = 0;
        write[5] = 5;
        write[8] = 1;
        assert_eq!(emu.execute(&write, &mut other), ScsiResponse::good());
        assert_miscompare(&emu.execute(&v16(3, 4, 3), &mut block), BS as u64 + 9);
    }

    #[test]
    fn verify_field_checks() {
        let emu = emulator(VecDevice::new(BS as u32, 16)).with_max_io_bytes(4 * BS as u32);
        let mut none = Vec::<u8>::new();
        assert_invalid_field(&emu.execute(&v10(2, 0, 1), &mut none), 1, 2);
        let mut protect = v16(0, 0, 1);
        protect[1] |= 0x20;
        assert_invalid_field(&emu.execute(&protect, &mut none), 1, 7);
        assert_invalid_field(&emu.execute(&v10(0, 0, 5), &mut none), 7, 7);
        assert_invalid_field(&emu.execute(&v16(0, 0, 5), &mut none), 10, 7);
    }

    #[test]
    fn large_verify_is_chunked() {
        const MIB: usize = 1 << 20;
        let emu = emulator(VecDevice::new(BS as u32, 6144)).with_max_io_bytes(4 << 20);
        let mut out = emu.device().contents();
        assert_eq!(
            emu.execute(&v16(1, 0, 6144), &mut out),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.device().calls(),
            [('r', 0, MIB), ('r', 2048, MIB), ('r', 4096, MIB)]
        );
        emu.device().calls.lock().unwrap().clear();
        out[MIB + 1] ^= 0xFF;
        assert_miscompare(&emu.execute(&v16(1, 0, 6144), &mut out), MIB as u64 + 1);
        // It stops at the first difference.
        assert_eq!(emu.device().calls(), [('r', 0, MIB), ('r', 2048, MIB)]);
    }

    #[test]
    fn write_and_verify_writes_durably_then_checks() {
        for sixteen in [false, true] {
            let emu = emulator(VecDevice::new(BS as u32, 16));
            let mut data = (0..2 * BS).map(|i| (i % 7) as u8).collect::<Vec<u8>>();
            for bytchk in [0, 1] {
                emu.device().calls.lock().unwrap().clear();
                assert_eq!(
                    emu.execute(&wv(sixteen, bytchk, 6, 2), &mut data),
                    ScsiResponse::good()
                );
                assert_eq!(emu.device().calls(), [('f', 6, 2 * BS), ('r', 6, 2 * BS)]);
                assert_eq!(emu.device().contents()[6 * BS..8 * BS], data[..]);
            }
            assert_invalid_field(&emu.execute(&wv(sixteen, 3, 6, 2), &mut data), 1, 2);
            assert_invalid_field(&emu.execute(&wv(sixteen, 2, 6, 2), &mut data), 1, 2);
            let len_at = if sixteen { 10 } else { 7 };
            assert_invalid_field(&emu.execute(&wv(sixteen, 0, 6, 3), &mut data), len_at, 7);
        }
    }

    /// VERIFY(12) (AFh) and WRITE AND VERIFY(12) (AEh): 32-bit LBA and
    /// length at bytes 2 and 6, otherwise the 10-byte forms.
    fn twelve(opcode: u8, bytchk: u8, lba: u32, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![opcode, bytchk << 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[6..10].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    #[test]
    fn twelve_byte_forms_verify_and_write_and_verify() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut none = Vec::<u8>::new();
        assert_eq!(
            emu.execute(&twelve(0xAF, 0, 2, 5), &mut none),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('r', 2, 5 * BS)]);
        let mut same = emu.device().contents()[3 * BS..5 * BS].to_vec();
        assert_eq!(
            emu.execute(&twelve(0xAF, 1, 3, 2), &mut same),
            ScsiResponse::good()
        );
        same[BS + 1] ^= 1;
        assert_miscompare(
            &emu.execute(&twelve(0xAF, 1, 3, 2), &mut same),
            BS as u64 + 1,
        );
        assert_illegal(
            &emu.execute(&twelve(0xAF, 0, 15, 2), &mut none),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        // The length field is byte 6 in the 12-byte form.
        assert_invalid_field(
            &emu.execute(&twelve(0xAF, 1, 3, 2), &mut vec![0u8; BS]),
            6,
            7,
        );

        let mut data = vec![0x3Cu8; 2 * BS];
        emu.device().calls.lock().unwrap().clear();
        assert_eq!(
            emu.execute(&twelve(0xAE, 1, 8, 2), &mut data),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('f', 8, 2 * BS), ('r', 8, 2 * BS)]);
        assert_eq!(emu.device().contents()[8 * BS..10 * BS], data[..]);
        assert_invalid_field(&emu.execute(&twelve(0xAE, 3, 8, 2), &mut data), 1, 2);
    }

    #[test]
    fn write_and_verify_reports_a_device_that_loses_writes() {
        // A geometry-only device drops writes and reads zeros.
        let emu = emulator(VecDevice::geometry(BS as u32, 16));
        let mut data = vec![0u8; BS];
        data[100] = 1;
        assert_miscompare(&emu.execute(&wv(false, 1, 0, 1), &mut data), 100);
        // Without byte check it only proves the block is readable.
        assert_eq!(
            emu.execute(&wv(true, 0, 0, 1), &mut data),
            ScsiResponse::good()
        );
    }

    #[test]
    fn read_only_refuses_write_and_verify_but_verifies() {
        let emu = emulator(VecDevice::new(BS as u32, 16).read_only());
        let mut data = vec![0u8; BS];
        assert_check(
            &emu.execute(&wv(false, 0, 0, 1), &mut data),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        assert_eq!(emu.execute(&v10(0, 0, 1), &mut data), ScsiResponse::good());
    }
}
