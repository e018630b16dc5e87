//! COMPARE AND WRITE (SBC-4 5.3).
//!
//! The data-out buffer holds NUMBER OF LOGICAL BLOCKS blocks to compare
//! with the medium, then as many blocks to write. The whole operation
//! runs under the LBA range lock, so no WRITE, WRITE SAME, UNMAP or other
//! COMPARE AND WRITE to those blocks can come between the compare and
//! the write. On a difference nothing is written and the command ends in
//! MISCOMPARE with the offset of the first differing byte.

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, block_size, byte_len, check_range};
use crate::response::ScsiResponse;
use crate::verify::{first_difference, miscompare};

/// CDB byte of the NUMBER OF LOGICAL BLOCKS field.
const NUMBER_FIELD: u16 = 13;

/// A decoded COMPARE AND WRITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompareAndWrite {
    lba: u64,
    blocks: u64,
    fua: bool,
}

impl CompareAndWrite {
    const FUA: u8 = 0x08;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        // WRPROTECT: no protection information.
        if cdb.byte(1) & 0xE0 != 0 {
            return Err(invalid_field(1, 7));
        }
        Ok(CompareAndWrite {
            lba: cdb.be64(2),
            blocks: u64::from(cdb.byte(13)),
            // DPO is a hint; FUA_NV (obsolete) is ignored.
            fua: cdb.byte(1) & Self::FUA != 0,
        })
    }
}

pub(crate) fn compare_and_write<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &CompareAndWrite,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let Some(bs) = block_size(device) else {
        return ScsiResponse::internal_failure();
    };
    if cmd.blocks > lun.limits.max_compare_and_write {
        return invalid_field(NUMBER_FIELD, 7).into();
    }
    // The LBA is checked even for zero blocks, as for READ and WRITE.
    if let Err(sense) = check_range(device, cmd.lba, cmd.blocks) {
        return sense.into();
    }
    // The data-out buffer must be exactly what NUMBER OF LOGICAL BLOCKS
    // implies. The kernel does not size-check passthrough commands, so an
    // initiator's transfer length that disagrees with the CDB arrives
    // here: refuse it, as LIO's own backstores do, rather than compare
    // and write the wrong bytes (an 8-bit count of 256 blocks reads 0).
    let len = byte_len(cmd.blocks, bs);
    if data.len() != 2 * len {
        return invalid_field(NUMBER_FIELD, 7).into();
    }
    // Zero blocks: nothing is compared or written, and that is no error.
    if cmd.blocks == 0 {
        return ScsiResponse::good();
    }
    let mut expected = vec![0u8; len];
    data.read_at(0, &mut expected);
    let mut new = vec![0u8; len];
    data.read_at(len, &mut new);

    let _range = lun.locks.lock(cmd.lba, cmd.blocks);
    if lun.declared.compare_and_write {
        // The store does it atomically itself; FUA then needs a flush.
        return match device.compare_and_write(cmd.lba, &expected, &new) {
            Ok(Some(offset)) => miscompare(offset).into(),
            Ok(None) if cmd.fua || lun.write_through() => match device.flush() {
                Ok(()) => ScsiResponse::good(),
                Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
            },
            Ok(None) => ScsiResponse::good(),
            Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
        };
    }
    let mut medium = vec![0u8; len];
    if let Err(err) = device.read(cmd.lba, &mut medium) {
        return backend_failure(&err, cmd.lba, Direction::Read);
    }
    if let Some(offset) = first_difference(&medium, &expected) {
        return miscompare(offset).into();
    }
    match device.write_vectored(cmd.lba, &[&new], lun.write_flags(cmd.fua)) {
        Ok(()) => ScsiResponse::good(),
        Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::BlockError;
    use crate::testutil::*;

    const BS: usize = 512;

    fn caw(flags: u8, lba: u64, blocks: u8) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x89;
        cdb[1] = flags;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[13] = blocks;
        cdb
    }

    #[test]
    fn match_writes_and_mismatch_leaves_the_medium() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let before = emu.device().contents();
        let old = before[4 * BS..6 * BS].to_vec();
        let new = vec![0xA5u8; 2 * BS];
        let mut data = [old.clone(), new.clone()].concat();
        assert_eq!(emu.execute(&caw(0, 4, 2), &mut data), ScsiResponse::good());
        let after = emu.device().contents();
        assert_eq!(after[4 * BS..6 * BS], new[..]);
        assert_eq!(after[..4 * BS], before[..4 * BS]);
        assert_eq!(after[6 * BS..], before[6 * BS..]);

        // The same command again: the medium no longer holds `old`.
        let resp = emu.execute(&caw(0, 4, 2), &mut data);
        assert_check(
            &resp,
            SenseKey::Miscompare,
            AdditionalSense::MISCOMPARE_DURING_VERIFY,
        );
        let first = old
            .iter()
            .position(|&b| b != 0xA5)
            .expect("pattern differs somewhere");
        assert_eq!(resp.sense.unwrap().information, Some(first as u64));
        assert_eq!(emu.device().contents(), after);

        // A difference in the second block reports its offset.
        let mut expected = new.clone();
        expected[BS + 3] = 0;
        let mut data = [expected, vec![1u8; 2 * BS]].concat();
        let resp = emu.execute(&caw(0, 4, 2), &mut data);
        assert_eq!(resp.sense.unwrap().information, Some(BS as u64 + 3));
        assert_eq!(emu.device().contents(), after);
    }

    #[test]
    fn fua_and_write_through_reach_write_fua() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let old = emu.device().contents()[..BS].to_vec();
        let mut data = [old, vec![1u8; BS]].concat();
        assert_eq!(
            emu.execute(&caw(0x08, 0, 1), &mut data),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('r', 0, BS), ('f', 0, BS)]);
    }

    #[test]
    fn field_and_range_checks() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut none = Vec::<u8>::new();
        assert_eq!(emu.execute(&caw(0, 16, 0), &mut none), ScsiResponse::good());
        // Zero blocks past the end: the LBA is still checked.
        assert_illegal(
            &emu.execute(&caw(0, 17, 0), &mut none),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        assert_illegal(
            &emu.execute(&caw(0, u64::MAX, 0), &mut none),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        // Zero blocks with data: the transfer disagrees with the CDB
        // (libiscsi sends 256 blocks' data with the count wrapped to 0).
        let mut data = vec![0u8; 2 * 256 * BS];
        assert_invalid_field(&emu.execute(&caw(0, 0, 0), &mut data), 13, 7);
        let mut data = vec![0u8; 64 * BS];
        assert_invalid_field(&emu.execute(&caw(0, 0, 17), &mut data), 13, 7);
        assert_invalid_field(&emu.execute(&caw(0x20, 0, 1), &mut data), 1, 7);
        assert_illegal(
            &emu.execute(&caw(0, 15, 2), &mut data),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        assert_illegal(
            &emu.execute(&caw(0, u64::MAX, 1), &mut data),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        // Data-out must hold both halves, and nothing more.
        assert_invalid_field(&emu.execute(&caw(0, 0, 2), &mut vec![0u8; 3 * BS]), 13, 7);
        assert_invalid_field(&emu.execute(&caw(0, 0, 1), &mut vec![0u8; 4 * BS]), 13, 7);
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn read_only_and_backend_errors() {
        let emu = emulator(VecDevice::new(BS as u32, 16).read_only());
        let mut data = vec![0u8; 2 * BS];
        assert_check(
            &emu.execute(&caw(0, 0, 1), &mut data),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        let emu = emulator(VecDevice::new(BS as u32, 16).failing(BlockError::Medium));
        assert_check(
            &emu.execute(&caw(0, 0, 1), &mut data),
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        );
    }

    /// A device with its own compare-and-write: the emulator hands the
    /// whole operation over instead of reading and writing itself.
    struct NativeCaw(VecDevice);

    impl BlockDevice for NativeCaw {
        fn block_size(&self) -> u32 {
            self.0.block_size()
        }
        fn num_blocks(&self) -> u64 {
            self.0.num_blocks()
        }
        fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.0.read(lba, buf)
        }
        fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.0.write(lba, buf)
        }
        fn capabilities(&self) -> crate::DeviceCapabilities {
            crate::DeviceCapabilities::new().compare_and_write(true)
        }
        fn compare_and_write(
            &self,
            lba: u64,
            compare: &[u8],
            write: &[u8],
        ) -> Result<Option<usize>, BlockError> {
            let mut medium = vec![0u8; compare.len()];
            self.0.read(lba, &mut medium)?;
            if let Some(i) = medium.iter().zip(compare).position(|(a, b)| a != b) {
                return Ok(Some(i + 1000)); // marked, to see that this path ran
            }
            self.0.write(lba, write).map(|()| None)
        }
    }

    #[test]
    fn a_native_compare_and_write_is_used_when_declared() {
        let emu = Emulator::new(
            NativeCaw(VecDevice::new(BS as u32, 8)),
            crate::LunIdentity::new("s", "p"),
        );
        emu.device().0.write(1, &[0u8; BS]).unwrap();
        let mut data = vec![0u8; 2 * BS];
        data[BS..].fill(7);
        assert_eq!(
            emu.execute(&caw(0, 1, 1), &mut data).status,
            ScsiStatus::Good
        );
        let mut back = vec![0u8; BS];
        emu.device().0.read(1, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 7));
        // Now the medium holds 7s: comparing with zeros fails at byte 0.
        let r = emu.execute(&caw(0, 1, 1), &mut data);
        assert_eq!(r.status, ScsiStatus::CheckCondition);
        assert_eq!(r.sense.unwrap().information, Some(1000));
    }

    #[test]
    fn concurrent_compare_and_writes_are_atomic() {
        // Every thread increments a counter in block 0 with COMPARE AND
        // WRITE, retrying on miscompare; concurrent WRITEs to block 1
        // (same lock domain, disjoint range) must not disturb it. Without
        // atomicity two threads could both succeed from the same value.
        let emu = Arc::new(emulator(VecDevice::new(BS as u32, 4)));
        let mut zero = vec![0u8; BS];
        emu.execute(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &mut zero);
        const THREADS: u64 = 4;
        const INCREMENTS: u64 = 50;
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let emu = emu.clone();
                std::thread::spawn(move || {
                    let mut done = 0;
                    while done < INCREMENTS {
                        let mut cur = vec![0u8; BS];
                        emu.execute(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &mut cur);
                        let n = u64::from_be_bytes(cur[..8].try_into().unwrap());
                        let mut next = cur.clone();
                        next[..8].copy_from_slice(&(n + 1).to_be_bytes());
                        let mut data = [cur, next].concat();
                        if emu.execute(&caw(0, 0, 1), &mut data) == ScsiResponse::good() {
                            done += 1;
                        }
                        let mut noise = vec![t as u8; BS];
                        emu.execute(&[0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0], &mut noise);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let block = emu.device().contents();
        let n = u64::from_be_bytes(block[..8].try_into().unwrap());
        assert_eq!(n, THREADS * INCREMENTS);
    }
}
