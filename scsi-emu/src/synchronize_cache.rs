//! SYNCHRONIZE CACHE(10) and (16) (SBC-4 5.26, 5.27).

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::Cdb;
use crate::medium::{Direction, backend_failure, check_range};
use crate::opcode;
use crate::response::ScsiResponse;

/// SYNCHRONIZE CACHE(10) and (16) (SBC-4 5.26, 5.27).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SynchronizeCache {
    pub(crate) lba: u64,
    /// Zero means "to the end of the medium".
    pub(crate) blocks: u64,
}

impl SynchronizeCache {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        // IMMED (byte 1 bit 1) needs no handling: returning after the
        // flush is always allowed.
        let (lba, blocks) = if cdb.opcode() == opcode::SYNCHRONIZE_CACHE_16 {
            (cdb.be64(2), u64::from(cdb.be32(10)))
        } else {
            (u64::from(cdb.be32(2)), u64::from(cdb.be16(7)))
        };
        Ok(SynchronizeCache { lba, blocks })
    }
}

/// The whole device is flushed whatever the range: backends offer no
/// ranged flush, and flushing more than asked is always correct.
pub(crate) fn synchronize_cache<D: BlockDevice + ?Sized>(
    device: &D,
    cmd: &SynchronizeCache,
) -> ScsiResponse {
    if let Err(sense) = check_range(device, cmd.lba, cmd.blocks) {
        return ScsiResponse::check_condition(sense);
    }
    match device.flush() {
        Ok(()) => ScsiResponse::good(),
        Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::BlockError;
    use crate::ScsiStatus;
    use crate::testutil::*;

    fn sync10(lba: u32, blocks: u16) -> Vec<u8> {
        let mut cdb = vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    fn sync16(lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x91;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    #[test]
    fn synchronize_cache_flushes() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut none = Vec::<u8>::new();
        assert_eq!(emu.execute(&sync10(0, 0), &mut none), ScsiResponse::good());
        assert_eq!(emu.execute(&sync10(2, 6), &mut none), ScsiResponse::good());
        assert_eq!(emu.execute(&sync16(7, 1), &mut none), ScsiResponse::good());
        assert_eq!(emu.execute(&sync16(8, 0), &mut none), ScsiResponse::good());
        assert_eq!(emu.device().flushes.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn synchronize_cache_checks_the_range() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut none = Vec::<u8>::new();
        for cdb in [
            sync10(2, 7),
            sync10(9, 0),
            sync16(u64::MAX, 2),
            sync16(8, 1),
        ] {
            assert_illegal(
                &emu.execute(&cdb, &mut none),
                AdditionalSense::LBA_OUT_OF_RANGE,
            );
        }
        assert_eq!(emu.device().flushes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn synchronize_cache_failure_is_a_write_error() {
        let dev = VecDevice::new(512, 8);
        *dev.fail_flush.lock().unwrap() = Some(BlockError::Io(EIO));
        let emu = emulator(dev);
        let resp = emu.execute(&sync10(0, 0), &mut Vec::<u8>::new());
        assert_check(&resp, SenseKey::MediumError, AdditionalSense::WRITE_ERROR);

        *emu.device().fail_flush.lock().unwrap() = Some(BlockError::Busy);
        let resp = emu.execute(&sync16(0, 0), &mut Vec::<u8>::new());
        assert_eq!(resp.status, ScsiStatus::Busy);
        assert_eq!(resp.sense, None);
    }
}
