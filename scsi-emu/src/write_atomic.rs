//! WRITE ATOMIC(16) (SBC-4 5.48): a write that no command sees half done
//! and no failure leaves half done.
//!
//! Against other commands: the write holds its LBA range as an atomic
//! write (see [`range_lock`](crate::range_lock)). Commands that change
//! those blocks wait for it, as they wait for any write, and so do the
//! commands that read them (READ, VERIFY, the reads of EXTENDED COPY): a
//! read sees all of the old data or all of the new. Plain writes do not
//! hold reads back; only atomic ones do.
//!
//! Against failure: the data goes to the device in one `write_vectored`
//! call, and the command exists only on a device that promises such a
//! call to be all-or-nothing if it fails or the system crashes
//! ([`DeviceCapabilities::atomic_write_blocks`](crate::DeviceCapabilities::atomic_write_blocks));
//! without the promise it is an unknown operation code. The Block Limits
//! VPD page reports that many blocks, capped by the MAXIMUM TRANSFER
//! LENGTH, as the MAXIMUM ATOMIC TRANSFER LENGTH, with no alignment or
//! granularity required. Atomic boundaries are not supported (MAXIMUM
//! ATOMIC BOUNDARY SIZE 0), so the ATOMIC BOUNDARY field must be zero.

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::cdb::{Cdb, invalid_field};
use crate::data_buffer::{DataBuffer, MAX_LENT_SEGMENTS};
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, block_size, byte_len, check_range, write_parts};
use crate::response::ScsiResponse;
use crate::write_flags::WriteFlags;

/// CDB byte of the ATOMIC BOUNDARY field.
const BOUNDARY_FIELD: u16 = 10;
/// CDB byte of the TRANSFER LENGTH field.
const LENGTH_FIELD: u16 = 12;

/// A decoded WRITE ATOMIC(16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteAtomic {
    pub(crate) lba: u64,
    pub(crate) blocks: u64,
    pub(crate) fua: bool,
}

impl WriteAtomic {
    /// WRPROTECT (byte 1, bits 7-5): protection information is not
    /// supported.
    const PROTECT: u8 = 0xE0;
    /// FUA (byte 1, bit 3).
    const FUA: u8 = 0x08;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        if cdb.byte(1) & Self::PROTECT != 0 {
            return Err(invalid_field(1, 7));
        }
        if cdb.be16(usize::from(BOUNDARY_FIELD)) != 0 {
            return Err(invalid_field(BOUNDARY_FIELD, 7));
        }
        Ok(WriteAtomic {
            lba: cdb.be64(2),
            blocks: u64::from(cdb.be16(usize::from(LENGTH_FIELD))),
            // DPO is only a cache-retention hint; GROUP NUMBER is ignored.
            fua: cdb.byte(1) & Self::FUA != 0,
        })
    }
}

pub(crate) fn write_atomic<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &WriteAtomic,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let Some(bs) = block_size(device) else {
        return ScsiResponse::internal_failure();
    };
    if cmd.blocks > lun.limits.max_atomic_transfer {
        return invalid_field(LENGTH_FIELD, 7).into();
    }
    // The LBA is checked even for zero blocks, as for WRITE.
    if let Err(sense) = check_range(device, cmd.lba, cmd.blocks) {
        return sense.into();
    }
    let len = byte_len(cmd.blocks, bs);
    // Part of the data, or blocks padded with garbage, is no atomic write.
    if len > data.len() {
        return invalid_field(LENGTH_FIELD, 7).into();
    }
    if cmd.blocks == 0 {
        return ScsiResponse::good();
    }
    let flags = lun.write_flags(cmd.fua);
    let _range = lun.locks.lock_atomic_write(cmd.lba, cmd.blocks);
    match write_in_one_call(device, cmd.lba, bs, data, len, flags) {
        Ok(()) => ScsiResponse::good(),
        Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
    }
}

/// Write the first `len` bytes of `data` to the blocks from `lba` in one
/// `write_vectored` call, so that the device's promise covers all of it:
/// the segments as they are when each holds whole blocks, else one copy.
fn write_in_one_call<D: BlockDevice>(
    device: &D,
    lba: u64,
    bs: usize,
    data: &dyn DataBuffer,
    len: usize,
    flags: WriteFlags,
) -> Result<(), BlockError> {
    if data.segment_count() <= MAX_LENT_SEGMENTS {
        let mut parts: [&[u8]; MAX_LENT_SEGMENTS] = [&[]; MAX_LENT_SEGMENTS];
        let count = write_parts(data, len, &mut parts);
        if parts[..count].iter().all(|p| p.len() % bs == 0) {
            return device.write_vectored(lba, &parts[..count], flags);
        }
    }
    let mut joined = vec![0u8; len];
    data.read_at(0, &mut joined);
    device.write_vectored(lba, &[&joined], flags)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc;
    use std::time::Duration;

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::capabilities::Capabilities;
    use crate::command::Command;
    use crate::testutil::*;

    const BS: usize = 512;

    fn write_atomic16(flags: u8, lba: u64, boundary: u16, blocks: u16) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x9C;
        cdb[1] = flags;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..12].copy_from_slice(&boundary.to_be_bytes());
        cdb[12..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    /// A unit over 16 blocks whose writes of up to 8 are all-or-nothing.
    fn atomic_unit() -> Emulator<VecDevice> {
        emulator(VecDevice::new(BS as u32, 16).with_atomic_writes(8))
    }

    fn decode(cdb: &[u8]) -> Result<WriteAtomic, Sense> {
        let caps = Capabilities {
            atomic_write_blocks: 8,
            ..Capabilities::default()
        };
        match Command::decode(cdb, &caps)?.0 {
            Command::WriteAtomic(w) => Ok(w),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_lba_length_and_fua_and_refuses_protection_and_boundaries() {
        let w = decode(&write_atomic16(0x08, 0x0102_0304_0506_0708, 0, 0xABCD)).unwrap();
        assert_eq!(
            (w.lba, w.blocks, w.fua),
            (0x0102_0304_0506_0708, 0xABCD, true)
        );
        // DPO is a hint, GROUP NUMBER is ignored.
        let mut cdb = write_atomic16(0x10, 7, 0, 1);
        cdb[14] = 0x3F;
        let w = decode(&cdb).unwrap();
        assert_eq!((w.lba, w.blocks, w.fua), (7, 1, false));
        for wrprotect in 1..8u8 {
            let cdb = write_atomic16(wrprotect << 5, 0, 0, 1);
            assert_eq!(decode(&cdb), Err(invalid_field(1, 7)), "{wrprotect}");
        }
        for boundary in [1, 0x8000, 0xFFFF] {
            let cdb = write_atomic16(0, 0, boundary, 1);
            assert_eq!(decode(&cdb), Err(invalid_field(10, 7)), "{boundary}");
        }
    }

    #[test]
    fn exists_only_where_the_device_declares_atomic_writes() {
        let plain = emulator(VecDevice::new(BS as u32, 16));
        let mut data = vec![1u8; BS];
        assert_illegal(
            &plain.execute(&write_atomic16(0, 0, 0, 1), &mut data),
            AdditionalSense::INVALID_COMMAND_OPERATION_CODE,
        );
        assert!(plain.device().calls().is_empty());
        // REPORT SUPPORTED OPERATION CODES, one command: SUPPORT 001b
        // without the capability, 011b and the usage data with it.
        let rsoc = [0xA3, 0x0C, 0x01, 0x9C, 0, 0, 0, 0, 0, 64, 0, 0];
        let mut report = vec![0u8; 64];
        assert_eq!(plain.execute(&rsoc, &mut report), ScsiResponse::data_in(4));
        assert_eq!(report[..4], [0, 0x01, 0, 0]);
        let emu = atomic_unit();
        assert_eq!(emu.execute(&rsoc, &mut report), ScsiResponse::data_in(20));
        assert_eq!(report[..4], [0, 0x03, 0, 16]);
        assert_eq!(
            report[4..20],
            [
                0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                0, 0x04
            ]
        );
        assert_eq!(
            emu.execute(&write_atomic16(0, 0, 0, 1), &mut data),
            ScsiResponse::good()
        );
    }

    #[test]
    fn the_data_lands_in_one_device_call() {
        let emu = atomic_unit();
        let before = emu.device().contents();
        let data = pattern(4 * BS, 7);
        // Whole-block segments go as they are, in one call.
        let mut segments = vec![data[..BS].to_vec(), data[BS..].to_vec()];
        assert_eq!(
            emu.execute(&write_atomic16(0, 3, 0, 4), &mut segments),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('w', 3, BS), ('w', 4, 3 * BS)]);
        assert_eq!(emu.device().vectored_writes.load(Ordering::SeqCst), 1);
        let after = emu.device().contents();
        assert_eq!(after[3 * BS..7 * BS], data[..]);
        assert_eq!(after[..3 * BS], before[..3 * BS]);
        assert_eq!(after[7 * BS..], before[7 * BS..]);
        // A block split between segments: one copy, still one call.
        let data = pattern(2 * BS, 9);
        let mut segments = vec![data[..100].to_vec(), data[100..].to_vec(), vec![0xEE; 50]];
        assert_eq!(
            emu.execute(&write_atomic16(0, 14, 0, 2), &mut segments),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls()[2..], [('w', 14, 2 * BS)]);
        assert_eq!(emu.device().vectored_writes.load(Ordering::SeqCst), 2);
        assert_eq!(emu.device().contents()[14 * BS..], data[..]);
    }

    #[test]
    fn fua_and_write_through_reach_the_device_as_a_fua_write() {
        let emu = emulator(
            VecDevice::new(BS as u32, 16)
                .with_atomic_writes(8)
                .with_write_cache(),
        );
        let mut data = vec![5u8; 2 * BS];
        for (flags, kind) in [(0x08, 'f'), (0x18, 'f'), (0x10, 'w'), (0, 'w')] {
            assert_eq!(
                emu.execute(&write_atomic16(flags, 2, 0, 2), &mut data),
                ScsiResponse::good()
            );
            assert_eq!(
                emu.device().calls().pop(),
                Some((kind, 2, 2 * BS)),
                "{flags:#x}"
            );
        }
        emu.set_write_cache_enabled(false);
        assert_eq!(
            emu.execute(&write_atomic16(0, 2, 0, 2), &mut data),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls().pop(), Some(('f', 2, 2 * BS)));
    }

    #[test]
    fn refusals_touch_nothing() {
        let emu = atomic_unit();
        let before = emu.device().contents();
        let mut data = vec![1u8; 16 * BS];
        // Longer than the MAXIMUM ATOMIC TRANSFER LENGTH, even in range.
        assert_invalid_field(&emu.execute(&write_atomic16(0, 0, 0, 9), &mut data), 12, 7);
        for (lba, blocks) in [
            (15, 2),
            (16, 1),
            (17, 0),
            (1 << 63, 0),
            (1 << 63, 1),
            (u64::MAX, 0),
        ] {
            assert_illegal(
                &emu.execute(&write_atomic16(0, lba, 0, blocks), &mut data),
                AdditionalSense::LBA_OUT_OF_RANGE,
            );
        }
        // Less data than the transfer length.
        let mut short = vec![vec![1u8; BS], vec![2u8; BS - 1]];
        assert_invalid_field(&emu.execute(&write_atomic16(0, 0, 0, 2), &mut short), 12, 7);
        assert_invalid_field(
            &emu.execute(&write_atomic16(0x20, 0, 0, 1), &mut data),
            1,
            7,
        );
        assert_invalid_field(&emu.execute(&write_atomic16(0, 0, 1, 1), &mut data), 10, 7);
        // Zero blocks in range: nothing to do.
        for lba in [0, 16] {
            assert_eq!(
                emu.execute(&write_atomic16(0, lba, 0, 0), &mut Vec::<u8>::new()),
                ScsiResponse::good()
            );
        }
        assert!(emu.device().calls().is_empty());
        assert_eq!(emu.device().contents(), before);
    }

    #[test]
    fn a_read_only_unit_refuses_it_as_write_protected() {
        let emu = emulator(
            VecDevice::new(BS as u32, 16)
                .with_atomic_writes(8)
                .read_only(),
        );
        assert_check(
            &emu.execute(&write_atomic16(0, 0, 0, 1), &mut vec![0u8; BS]),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn backend_failures_map_to_sense() {
        let emu = emulator(
            VecDevice::new(BS as u32, 16)
                .with_atomic_writes(8)
                .failing(BlockError::Medium),
        );
        assert_check(
            &emu.execute(&write_atomic16(0, 0, 0, 2), &mut vec![0u8; 2 * BS]),
            SenseKey::MediumError,
            AdditionalSense::WRITE_ERROR,
        );
    }

    const NEW: u8 = 0xA6;

    /// A unit whose writes stop half way, over 16 blocks; atomic writes of
    /// up to 8 declared.
    fn half_writing_unit() -> Arc<Emulator<HalfWrite>> {
        let device = HalfWrite::new(VecDevice::new(BS as u32, 16).with_atomic_writes(8));
        let identity = LunIdentity::for_device("SN0002", &device);
        Arc::new(Emulator::new(device, identity))
    }

    /// Run `cdb` with `data` on another thread; its answer comes through
    /// the channel.
    fn in_background<D: BlockDevice + 'static>(
        emu: &Arc<Emulator<D>>,
        cdb: Vec<u8>,
        mut data: Vec<u8>,
    ) -> mpsc::Receiver<(ScsiResponse, Vec<u8>)> {
        let (done, answer) = mpsc::channel();
        let emu = emu.clone();
        std::thread::spawn(move || {
            let response = emu.execute(&cdb, &mut data);
            let _ = done.send((response, data));
        });
        answer
    }

    /// Wait (yielding) until one command waits for a range lock; panic if
    /// `read` is answered first, which would mean it ran into the write.
    fn until_the_read_waits(
        locks: &crate::range_lock::RangeLocks,
        read: &mpsc::Receiver<(ScsiResponse, Vec<u8>)>,
    ) {
        while locks.waiting() == 0 {
            if let Ok((response, data)) = read.try_recv() {
                panic!(
                    "the read ran during the atomic write: {response:?}, {:02x?}",
                    &data[..8]
                );
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_read_never_sees_an_atomic_write_half_done() {
        let emu = half_writing_unit();
        let write = in_background(&emu, write_atomic16(0, 2, 0, 4), vec![NEW; 4 * BS]);
        emu.device().halfway.wait();
        // The first block is new, the others old: a read must wait.
        let read = in_background(&emu, rw10(false, 0, 1, 6), vec![0u8; 6 * BS]);
        until_the_read_waits(&emu.lun.locks, &read);
        emu.device().resume.wait();
        let timeout = Duration::from_secs(10);
        assert_eq!(write.recv_timeout(timeout).unwrap().0, ScsiResponse::good());
        let (response, data) = read.recv_timeout(timeout).unwrap();
        assert_eq!(response, ScsiResponse::data_in(6 * BS));
        let medium = emu.device().inner.contents();
        assert_eq!(data, medium[BS..7 * BS], "the read came after the write");
        assert!(data[BS..5 * BS].iter().all(|&b| b == NEW));
    }

    #[test]
    fn a_plain_write_does_not_hold_reads_back() {
        let emu = half_writing_unit();
        let old = emu.device().inner.contents();
        let write = in_background(&emu, rw10(true, 0, 2, 4), vec![NEW; 4 * BS]);
        emu.device().halfway.wait();
        // The write is half done and stays so until `resume`: the read
        // completes meanwhile and sees the half.
        let read = in_background(&emu, rw10(false, 0, 2, 4), vec![0u8; 4 * BS]);
        let timeout = Duration::from_secs(10);
        let (response, data) = read.recv_timeout(timeout).expect("the read completes");
        assert_eq!(response, ScsiResponse::data_in(4 * BS));
        assert!(data[..BS].iter().all(|&b| b == NEW));
        assert_eq!(data[BS..], old[3 * BS..6 * BS]);
        emu.device().resume.wait();
        assert_eq!(write.recv_timeout(timeout).unwrap().0, ScsiResponse::good());
    }

    /// An asynchronous unit over a device whose writes stop half way.
    fn async_half_writing_unit() -> Arc<crate::AsyncEmulator<Yielding<HalfWrite>>> {
        let device = HalfWrite::new(VecDevice::new(BS as u32, 16).with_atomic_writes(8));
        let identity = LunIdentity::for_device("SN0003", &device);
        Arc::new(crate::AsyncEmulator::new(Yielding(device), identity).unwrap())
    }

    /// Start `cdb` on the asynchronous unit from another thread (a command
    /// on the synchronous path runs on the thread that starts it).
    fn start_in_background(
        lun: &Arc<crate::AsyncEmulator<Yielding<HalfWrite>>>,
        cdb: Vec<u8>,
        data: Vec<u8>,
    ) -> mpsc::Receiver<(ScsiResponse, Vec<u8>)> {
        let (done, answer) = mpsc::channel();
        let lun = lun.clone();
        std::thread::spawn(move || lun.start(Job { cdb, data, done }));
        answer
    }

    #[test]
    fn an_asynchronous_read_never_sees_an_atomic_write_half_done() {
        let lun = async_half_writing_unit();
        let write = start_in_background(&lun, write_atomic16(0, 2, 0, 4), vec![NEW; 4 * BS]);
        lun.device().0.halfway.wait();
        let read = start_in_background(&lun, rw10(false, 0, 1, 6), vec![0u8; 6 * BS]);
        until_the_read_waits(&lun.emulator().lun.locks, &read);
        // A read of other blocks goes on as a future meanwhile.
        let (done, other) = mpsc::channel();
        lun.start(Job {
            cdb: rw10(false, 0, 8, 2),
            data: vec![0u8; 2 * BS],
            done,
        });
        let timeout = Duration::from_secs(10);
        assert_eq!(
            other.recv_timeout(timeout).unwrap().0,
            ScsiResponse::data_in(2 * BS)
        );
        lun.device().0.resume.wait();
        assert_eq!(write.recv_timeout(timeout).unwrap().0, ScsiResponse::good());
        let (response, data) = read.recv_timeout(timeout).unwrap();
        assert_eq!(response, ScsiResponse::data_in(6 * BS));
        assert_eq!(data, lun.device().0.inner.contents()[BS..7 * BS]);
        assert!(data[BS..5 * BS].iter().all(|&b| b == NEW));
    }

    #[test]
    fn an_asynchronous_plain_write_does_not_hold_reads_back() {
        let lun = async_half_writing_unit();
        let old = lun.device().0.inner.contents();
        let write = start_in_background(&lun, rw10(true, 0, 2, 4), vec![NEW; 4 * BS]);
        lun.device().0.halfway.wait();
        let read = start_in_background(&lun, rw10(false, 0, 2, 4), vec![0u8; 4 * BS]);
        let timeout = Duration::from_secs(10);
        let (response, data) = read.recv_timeout(timeout).expect("the read completes");
        assert_eq!(response, ScsiResponse::data_in(4 * BS));
        assert!(data[..BS].iter().all(|&b| b == NEW));
        assert_eq!(data[BS..], old[3 * BS..6 * BS]);
        lun.device().0.resume.wait();
        assert_eq!(write.recv_timeout(timeout).unwrap().0, ScsiResponse::good());
    }
}
