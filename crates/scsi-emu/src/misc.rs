//! TEST UNIT READY, REQUEST SENSE and SYNCHRONIZE CACHE.

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::command::opcode;
use crate::data_buffer::DataBuffer;
use crate::read_write::{Direction, backend_failure, check_range};
use crate::response::{ScsiResponse, send_data_in};

/// TEST UNIT READY: the unit is always ready (no media changes, no
/// pending unit attentions yet).
pub(crate) fn test_unit_ready() -> ScsiResponse {
    ScsiResponse::good()
}

/// REQUEST SENSE (SPC-5 6.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestSense {
    allocation_length: usize,
}

impl RequestSense {
    const DESC: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        // Descriptor-format sense is not built yet; SPC allows refusing it.
        if cdb.byte(1) & Self::DESC != 0 {
            return Err(invalid_field());
        }
        Ok(RequestSense {
            allocation_length: usize::from(cdb.byte(4)),
        })
    }
}

/// With autosense every error's sense went out with its status, and no
/// deferred errors or pending conditions exist, so there is nothing to
/// report: NO SENSE in fixed format.
pub(crate) fn request_sense(cmd: &RequestSense, data: &mut dyn DataBuffer) -> ScsiResponse {
    let sense = Sense::new(SenseKey::NoSense, AdditionalSense::NO_ADDITIONAL_SENSE).to_fixed();
    send_data_in(data, sense.as_bytes(), cmd.allocation_length)
}

/// SYNCHRONIZE CACHE(10) and (16) (SBC-4 5.26, 5.27).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SynchronizeCache {
    lba: u64,
    /// Zero means "to the end of the medium".
    blocks: u64,
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

    use super::*;
    use crate::BlockError;
    use crate::status;
    use crate::testutil::*;

    #[test]
    fn test_unit_ready_is_good() {
        let emu = emulator(VecDevice::new(512, 8));
        let resp = emu.execute(&[0; 6], &mut Vec::<u8>::new());
        assert_eq!(resp, ScsiResponse::good());
    }

    #[test]
    fn request_sense_reports_no_sense_fixed_format() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 0, 0, 0, 252, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(18));
        assert_eq!(buf[0], 0x70);
        assert_eq!(buf[2], 0x00);
        assert_eq!(buf[7], 10);
        assert_eq!((buf[12], buf[13]), (0, 0));
        assert!(buf[18..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn request_sense_truncates_to_allocation_length() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 0, 0, 0, 8, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        assert_eq!(buf[8], 0xFF);
        let resp = emu.execute(&[0x03, 0, 0, 0, 0, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(0));
    }

    #[test]
    fn request_sense_desc_is_refused() {
        let emu = emulator(VecDevice::new(512, 8));
        assert_invalid_field(&emu.execute(&[0x03, 1, 0, 0, 18, 0], &mut vec![0u8; 18]));
    }

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
        *dev.fail_flush.lock().unwrap() = Some(BlockError::Io(5));
        let emu = emulator(dev);
        let resp = emu.execute(&sync10(0, 0), &mut Vec::<u8>::new());
        assert_check(&resp, SenseKey::MediumError, AdditionalSense::WRITE_ERROR);

        *emu.device().fail_flush.lock().unwrap() = Some(BlockError::Busy);
        let resp = emu.execute(&sync16(0, 0), &mut Vec::<u8>::new());
        assert_eq!(resp.status, status::BUSY);
        assert_eq!(resp.sense, None);
    }
}
