//! START STOP UNIT (SBC-4 5.25) and TEST UNIT READY (SPC-5 6.47): stopping
//! and starting the unit, and asking whether it is ready.

use std::sync::atomic::Ordering;

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::lun::{Lun, not_ready};
use crate::medium::{Direction, backend_failure};
use crate::response::ScsiResponse;

/// TEST UNIT READY: ready unless stopped (no media changes, no pending
/// unit attentions).
pub(crate) fn test_unit_ready<D: BlockDevice>(lun: &Lun<D>) -> ScsiResponse {
    if lun.is_stopped() {
        return ScsiResponse::check_condition(not_ready());
    }
    ScsiResponse::good()
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
pub(crate) fn start_stop_unit<D: BlockDevice>(lun: &Lun<D>, cmd: &StartStopUnit) -> ScsiResponse {
    if !cmd.start
        && !cmd.no_flush
        && let Err(err) = lun.device().flush()
    {
        return backend_failure(&err, 0, Direction::Write);
    }
    let was_stopped = lun.stopped.swap(!cmd.start, Ordering::SeqCst);
    if was_stopped == cmd.start {
        log::info!("unit {}", if cmd.start { "started" } else { "stopped" });
    }
    ScsiResponse::good()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::BlockError;
    use crate::ScsiStatus;
    use crate::testutil::*;

    #[test]
    fn test_unit_ready_is_good() {
        let emu = emulator(VecDevice::new(512, 8));
        let resp = emu.execute(&[0; 6], &mut Vec::<u8>::new());
        assert_eq!(resp, ScsiResponse::good());
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
            ScsiStatus::Good
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
            ScsiStatus::Good
        );
    }

    #[test]
    fn stop_flush_failure_is_reported_and_the_unit_keeps_running() {
        let dev = VecDevice::new(512, 8);
        *dev.fail_flush.lock().unwrap() = Some(BlockError::Io(EIO));
        let emu = emulator(dev);
        let resp = emu.execute(&ssu(0, 0), &mut Vec::<u8>::new());
        assert_check(&resp, SenseKey::MediumError, AdditionalSense::WRITE_ERROR);
        assert_eq!(
            emu.execute(&[0; 6], &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
    }
}
