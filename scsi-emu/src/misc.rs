//! TEST UNIT READY, REQUEST SENSE, START STOP UNIT and SYNCHRONIZE CACHE.

use std::sync::atomic::Ordering;

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::command::opcode;
use crate::data_buffer::DataBuffer;
use crate::emulator::{Emulator, NOT_READY_INITIALIZING_COMMAND_REQUIRED};
use crate::read_write::{Direction, backend_failure, check_range};
use crate::response::{ScsiResponse, send_data_in};
use crate::sense_format;

/// NOT READY, INITIALIZING COMMAND REQUIRED: what a stopped unit reports.
fn not_ready() -> Sense {
    Sense::new(SenseKey::NotReady, NOT_READY_INITIALIZING_COMMAND_REQUIRED)
}

/// TEST UNIT READY: ready unless stopped (no media changes, no pending
/// unit attentions).
pub(crate) fn test_unit_ready<D: BlockDevice>(emu: &Emulator<D>) -> ScsiResponse {
    if emu.stopped.load(Ordering::SeqCst) {
        return ScsiResponse::check_condition(not_ready());
    }
    ScsiResponse::good()
}

/// REQUEST SENSE (SPC-5 6.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestSense {
    /// DESC: descriptor-format sense data.
    descriptor: bool,
    allocation_length: usize,
}

impl RequestSense {
    const DESC: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        Ok(RequestSense {
            descriptor: cdb.byte(1) & Self::DESC != 0,
            allocation_length: usize::from(cdb.byte(4)),
        })
    }
}

/// With autosense every error's sense went out with its status and no
/// deferred errors exist, so the only condition to report is a stopped
/// unit; otherwise NO SENSE. The format follows the DESC bit.
pub(crate) fn request_sense<D: BlockDevice>(
    emu: &Emulator<D>,
    cmd: &RequestSense,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let sense = if emu.stopped.load(Ordering::SeqCst) {
        not_ready()
    } else {
        Sense::new(SenseKey::NoSense, AdditionalSense::NO_ADDITIONAL_SENSE)
    };
    let bytes = sense_format::encode(&sense, cmd.descriptor);
    send_data_in(data, &bytes, cmd.allocation_length)
}

/// START STOP UNIT (SBC-4 5.25). Only the START bit is honoured: the
/// medium cannot be ejected and power conditions other than START_VALID
/// are not supported. IMMED needs no handling (returning after the
/// operation is always allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartStopUnit {
    start: bool,
    no_flush: bool,
}

impl StartStopUnit {
    const START: u8 = 0x01;
    const LOEJ: u8 = 0x02;
    const NO_FLUSH: u8 = 0x04;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let power_condition = cdb.byte(4) >> 4;
        if power_condition != 0 {
            return Err(invalid_field(4, 7));
        }
        if cdb.byte(3) & 0x0F != 0 {
            return Err(invalid_field(3, 3));
        }
        // The medium is not removable.
        if cdb.byte(4) & Self::LOEJ != 0 {
            return Err(invalid_field(4, 1));
        }
        Ok(StartStopUnit {
            start: cdb.byte(4) & Self::START != 0,
            no_flush: cdb.byte(4) & Self::NO_FLUSH != 0,
        })
    }
}

/// START=1 makes the unit ready; START=0 flushes the cache (unless
/// NO_FLUSH) and stops it: medium access commands then fail with NOT
/// READY, INITIALIZING COMMAND REQUIRED until the next START.
pub(crate) fn start_stop_unit<D: BlockDevice>(
    emu: &Emulator<D>,
    cmd: &StartStopUnit,
) -> ScsiResponse {
    if !cmd.start && !cmd.no_flush {
        if let Err(err) = emu.device().flush() {
            return backend_failure(&err, 0, Direction::Write);
        }
    }
    let was_stopped = emu.stopped.swap(!cmd.start, Ordering::SeqCst);
    if was_stopped == cmd.start {
        log::info!("unit {}", if cmd.start { "started" } else { "stopped" });
    }
    ScsiResponse::good()
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
    fn request_sense_desc_returns_descriptor_format() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 1, 0, 0, 252, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        assert_eq!(&buf[..8], &[0x72, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(buf[8], 0xFF);
    }

    fn ssu(byte3: u8, byte4: u8) -> [u8; 6] {
        [0x1B, 0, 0, byte3, byte4, 0]
    }

    const READ1: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    #[test]
    fn stop_refuses_medium_access_until_start() {
        let emu = emulator(VecDevice::new(512, 8).with_write_cache());
        let mut none = Vec::<u8>::new();
        let mut buf = vec![0u8; 512];
        assert_eq!(emu.execute(&ssu(0, 0), &mut none), ScsiResponse::good());
        assert_eq!(emu.device().flushes.load(Ordering::SeqCst), 1);
        for cdb in [&READ1[..], &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 6]] {
            assert_check(
                &emu.execute(cdb, &mut buf),
                SenseKey::NotReady,
                AdditionalSense::new(0x04, 0x02),
            );
        }
        // REQUEST SENSE reports the condition; non-medium commands work.
        let resp = emu.execute(&[0x03, 0, 0, 0, 18, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(18));
        assert_eq!((buf[2], buf[12], buf[13]), (0x02, 0x04, 0x02));
        assert_eq!(
            emu.execute(&[0x12, 0, 0, 0, 36, 0], &mut buf).status,
            status::GOOD
        );
        assert!(emu.device().calls().is_empty());
        // Stop again with NO_FLUSH: no flush.
        assert_eq!(emu.execute(&ssu(0, 0x04), &mut none), ScsiResponse::good());
        assert_eq!(emu.device().flushes.load(Ordering::SeqCst), 1);
        // IMMED start.
        let mut start = ssu(0, 0x01);
        start[1] = 0x01;
        assert_eq!(emu.execute(&start, &mut none), ScsiResponse::good());
        assert_eq!(emu.execute(&READ1, &mut buf), ScsiResponse::data_in(512));
        assert_eq!(emu.execute(&[0; 6], &mut none), ScsiResponse::good());
    }

    #[test]
    fn start_stop_refuses_power_conditions_and_eject() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut none = Vec::<u8>::new();
        assert_invalid_field(&emu.execute(&ssu(0, 0x11), &mut none), 4, 7);
        assert_invalid_field(&emu.execute(&ssu(0, 0x30), &mut none), 4, 7);
        assert_invalid_field(&emu.execute(&ssu(1, 0x01), &mut none), 3, 3);
        assert_invalid_field(&emu.execute(&ssu(0, 0x02), &mut none), 4, 1);
        assert_invalid_field(&emu.execute(&ssu(0, 0x03), &mut none), 4, 1);
        assert_eq!(
            emu.execute(&READ1, &mut vec![0u8; 512]).status,
            status::GOOD
        );
    }

    #[test]
    fn stop_flush_failure_is_reported_and_the_unit_keeps_running() {
        let dev = VecDevice::new(512, 8);
        *dev.fail_flush.lock().unwrap() = Some(BlockError::Io(5));
        let emu = emulator(dev);
        let resp = emu.execute(&ssu(0, 0), &mut Vec::<u8>::new());
        assert_check(&resp, SenseKey::MediumError, AdditionalSense::WRITE_ERROR);
        assert_eq!(
            emu.execute(&[0; 6], &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
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
