//! Testing a device the way its author would, from another crate: only
//! the public API of `scsi_emu` and `scsi_emu::testing` (feature
//! `test-utils`), with a small device of this file's own.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use scsi_emu::testing::{
    CheckOptions, CommandFailure, Request, SenseKey, TestLun, TestLunOptions, check_async_device,
    check_device, try_check_device,
};
use scsi_emu::{
    AsyncBlockDevice, BlockDevice, BlockError, DeviceCapabilities, Extent, ExtentStatus,
    Provisioning, WriteFlags,
};

const BS: usize = 512;

/// A RAM disk that can unmap (to zeros) and resize, with switches that
/// break it on purpose.
#[derive(Default)]
struct Ram {
    data: Mutex<Vec<u8>>,
    /// Drop every write with FUA, answering GOOD.
    loses_fua_writes: bool,
    /// Keep the data of unmapped blocks while declaring that they read as zeros.
    stale_after_unmap: bool,
    /// Fill every buffer of a vectored read from the first LBA.
    vectored_reads_repeat: bool,
    /// Declare GET LBA STATUS and call every block deallocated.
    lba_status_lies: bool,
}

impl Ram {
    fn new(blocks: usize) -> Ram {
        Ram {
            data: Mutex::new(vec![0; blocks * BS]),
            ..Ram::default()
        }
    }

    fn range(lba: u64, len: usize) -> std::ops::Range<usize> {
        let at = lba as usize * BS;
        at..at + len
    }
}

impl BlockDevice for Ram {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        (self.data.lock().unwrap().len() / BS) as u64
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.copy_from_slice(&self.data.lock().unwrap()[Ram::range(lba, buf.len())]);
        Ok(())
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.data.lock().unwrap()[Ram::range(lba, buf.len())].copy_from_slice(buf);
        Ok(())
    }
    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let mut at = lba;
        for buf in bufs.iter_mut() {
            self.read(at, buf)?;
            if !self.vectored_reads_repeat {
                at += (buf.len() / BS) as u64;
            }
        }
        Ok(())
    }
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        if flags.fua && self.loses_fua_writes {
            return Ok(());
        }
        let mut at = lba;
        for buf in bufs {
            self.write(at, buf)?;
            at += (buf.len() / BS) as u64;
        }
        Ok(())
    }
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .unmap(true)
            .unmap_reads_zeroes(true)
            .lba_status(self.lba_status_lies)
    }
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        Ok(ExtentStatus {
            extent: Extent::new(lba, 1),
            provisioning: Provisioning::Deallocated,
        })
    }
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        if !self.stale_after_unmap {
            let len = extent.blocks as usize * BS;
            self.data.lock().unwrap()[Ram::range(extent.lba, len)].fill(0);
        }
        Ok(())
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        self.data
            .lock()
            .unwrap()
            .resize(num_blocks as usize * BS, 0);
        Ok(())
    }
}

#[test]
fn typed_calls_go_through_the_emulator() {
    let lun = TestLun::new(Ram::new(64)).unwrap();
    assert_eq!((lun.block_size(), lun.num_blocks()), (512, 64));

    lun.write(2, &[0x11; 2 * BS]).unwrap();
    lun.write_fua(4, &[0x22; BS]).unwrap();
    lun.sync().unwrap();
    let mut expected = vec![0x11; 2 * BS];
    expected.extend([0x22; BS]);
    assert_eq!(lun.read(2, 3).unwrap(), expected);

    lun.unmap(&[(3, 1)]).unwrap();
    assert_eq!(lun.read(3, 1).unwrap(), vec![0; BS], "unmapped reads zeros");

    lun.write_same(10, 5, &[0x33; BS], false).unwrap();
    assert_eq!(lun.read(10, 5).unwrap(), vec![0x33; 5 * BS]);

    lun.compare_and_write(10, &[0x33; BS], &[0x44; BS]).unwrap();
    assert_eq!(lun.read(10, 1).unwrap(), vec![0x44; BS]);
    let miscompare = lun
        .compare_and_write(10, &[0x33; BS], &[0x55; BS])
        .unwrap_err();
    let sense = miscompare.sense().expect("sense data");
    assert_eq!(sense.key, SenseKey::Miscompare);
    assert_eq!(sense.information, Some(0), "the first byte differs");
    assert!(miscompare.command().starts_with("COMPARE AND WRITE LBA 10"));

    let beyond = lun.read(63, 2).unwrap_err();
    assert_eq!(beyond.sense().unwrap().key, SenseKey::IllegalRequest);
    assert_eq!(
        beyond.to_string(),
        "READ(16) LBA 63, 2 blocks: CHECK CONDITION \
         (ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h))"
    );

    // A raw CDB: INQUIRY with a 96-byte allocation length.
    let inquiry = lun.command(&[0x12, 0, 0, 0, 96, 0], &[], 96).unwrap();
    assert!(inquiry.is_good());
    assert_eq!(&inquiry.data[8..16], b"TCMU-RS ");

    lun.resize(80).unwrap();
    assert_eq!(lun.read(79, 1).unwrap(), vec![0; BS], "after the attention");
    lun.shutdown().unwrap();
}

/// Writes to LBA 0 wait until LBA 1 has been written: they can only
/// finish if both are in flight at once, and then finish out of order.
struct Gated {
    inner: Ram,
    lba1_written: Mutex<bool>,
    cond: Condvar,
}

impl BlockDevice for Gated {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read(lba, buf)
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut written = self.lba1_written.lock().unwrap();
        if lba == 0 {
            let (written, timeout) = self
                .cond
                .wait_timeout_while(written, Duration::from_secs(5), |w| !*w)
                .unwrap();
            if timeout.timed_out() || !*written {
                return Err(BlockError::Busy);
            }
        } else {
            *written = true;
            self.cond.notify_all();
        }
        self.inner.write(lba, buf)
    }
}

#[test]
fn commands_submitted_together_are_in_flight_together() {
    let device = Gated {
        inner: Ram::new(16),
        lba1_written: Mutex::new(false),
        cond: Condvar::new(),
    };
    let lun = TestLun::with_options(device, TestLunOptions::default().workers(2)).unwrap();
    let tickets = lun
        .submit_all(vec![
            Request::write(0, [0xA0; BS]),
            Request::write(1, [0xA1; BS]),
        ])
        .unwrap();
    for ticket in tickets {
        let outcome = lun.wait(ticket).unwrap();
        assert!(outcome.is_good(), "{outcome}");
    }
    assert_eq!(lun.most_in_flight(), 2);
    assert_eq!(lun.read(0, 1).unwrap(), vec![0xA0; BS]);

    let outcomes = lun
        .run_all((0..8).map(|lba| Request::read(lba, 1)).collect())
        .unwrap();
    assert_eq!(outcomes.len(), 8);
    assert_eq!(outcomes[1].data, vec![0xA1; BS]);
}

/// Reads never return (until released).
struct Stuck {
    released: Mutex<bool>,
    cond: Condvar,
}

impl BlockDevice for Stuck {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        8
    }
    fn read(&self, _lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let released = self.released.lock().unwrap();
        drop(self.cond.wait_while(released, |r| !*r).unwrap());
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Ok(())
    }
}

#[test]
fn a_stuck_device_is_an_error_not_a_hang() {
    let device = std::sync::Arc::new(Stuck {
        released: Mutex::new(false),
        cond: Condvar::new(),
    });
    let options = TestLunOptions::default().timeout(Duration::from_millis(300));
    let lun = TestLun::with_options(device.clone(), options).unwrap();
    let failure = lun.read(0, 1).unwrap_err();
    assert!(
        matches!(failure, CommandFailure::TimedOut { .. }),
        "{failure:?}"
    );
    assert!(
        failure
            .to_string()
            .starts_with("READ(16) LBA 0, 1 block: no completion after")
    );
    *device.released.lock().unwrap() = true;
    device.cond.notify_all();
}

#[test]
fn a_correct_device_passes_the_check() {
    check_device(|| Ram::new(48), CheckOptions::default());
}

// The broken-device tests below run the check with a fixed seed: a random
// search misses a bug now and then (one run in about a hundred missed the
// resize bug in 128 cases), and a test must catch it on every run.
#[test]
fn the_check_names_the_lost_fua_write() {
    let broken = || Ram {
        loses_fua_writes: true,
        ..Ram::new(48)
    };
    let failure =
        try_check_device(broken, CheckOptions::default().seed(1).resize(false)).unwrap_err();
    let message = failure.message();
    assert!(message.contains("WRITE(16) FUA LBA"), "{message}");
    assert!(message.contains(": LBA "), "{message}");
    assert!(
        message.contains("but the model allows only: the data "),
        "{message}"
    );
}

#[test]
fn the_check_names_a_written_block_reported_deallocated() {
    let broken = || Ram {
        lba_status_lies: true,
        ..Ram::new(48)
    };
    let failure = try_check_device(broken, CheckOptions::default().seed(1)).unwrap_err();
    let message = failure.message();
    assert!(
        message.contains(": deallocated, but it holds written data"),
        "{message}"
    );
}

#[test]
fn a_seed_repeats_a_run() {
    let broken = || Ram {
        loses_fua_writes: true,
        ..Ram::new(48)
    };
    let options = CheckOptions::default().seed(0x5eed);
    let first = try_check_device(broken, options).unwrap_err();
    assert!(
        first
            .message()
            .starts_with("device check failed (seed 0x5eed: "),
        "{first}"
    );
    assert_eq!(try_check_device(broken, options).unwrap_err(), first);
}

#[test]
fn the_check_names_stale_data_after_unmap_on_a_device_claiming_lbprz() {
    let broken = || Ram {
        stale_after_unmap: true,
        ..Ram::new(48)
    };
    let failure = try_check_device(broken, CheckOptions::default().seed(1)).unwrap_err();
    let message = failure.message();
    // UNMAP, or WRITE SAME of zeros with UNMAP, which then unmaps.
    assert!(message.contains(" UNMAP LBA "), "{message}");
    assert!(message.contains(": LBA "), "{message}");
    assert!(
        message.contains("but the model allows only: zeros ("),
        "{message}"
    );
}

#[test]
fn the_check_names_a_vectored_read_that_repeats_its_first_buffer() {
    let broken = || Ram {
        vectored_reads_repeat: true,
        ..Ram::new(48)
    };
    let failure = try_check_device(broken, CheckOptions::default().seed(1)).unwrap_err();
    let message = failure.message();
    // The buffer of a read of 9 or more 512-byte blocks spans two pages,
    // two ring segments: only such a read shows the bug.
    assert!(message.contains("READ(16) LBA"), "{message}");
    assert!(message.contains("but the model allows only"), "{message}");
}

/// Resizing changes only the number of blocks it reports: blocks cut off
/// come back with their old data.
struct Window {
    data: Mutex<Vec<u8>>,
    blocks: std::sync::atomic::AtomicU64,
}

impl BlockDevice for Window {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        self.blocks.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.copy_from_slice(&self.data.lock().unwrap()[Ram::range(lba, buf.len())]);
        Ok(())
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.data.lock().unwrap()[Ram::range(lba, buf.len())].copy_from_slice(buf);
        Ok(())
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        if num_blocks as usize * BS > self.data.lock().unwrap().len() {
            return Err(BlockError::NoSpace);
        }
        self.blocks
            .store(num_blocks, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn the_check_names_old_data_in_blocks_that_came_back_with_a_resize() {
    let broken = || Window {
        data: Mutex::new(vec![0; 200 * BS]),
        blocks: 16.into(),
    };
    let failure = try_check_device(broken, CheckOptions::default().seed(1).cases(128)).unwrap_err();
    let message = failure.message();
    assert!(message.contains(". resize to "), "{message}");
    assert!(message.contains("blocks that came with step"), "{message}");
}

/// The RAM disk behind `async fn`s.
struct AsyncRam(Ram);

impl AsyncBlockDevice for AsyncRam {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        self.0.num_blocks()
    }
    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read(lba, buf)
    }
    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.write(lba, buf)
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.0.capabilities()
    }
    async fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        self.0.unmap(extent)
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        self.0.resize(num_blocks)
    }
}

#[test]
fn an_async_device_passes_the_check() {
    check_async_device(|| AsyncRam(Ram::new(48)), CheckOptions::default());
}

/// Panics on every read.
struct Panics;

impl BlockDevice for Panics {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        8
    }
    fn read(&self, _lba: u64, _buf: &mut [u8]) -> Result<(), BlockError> {
        panic!("a bug in the device");
    }
    fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Ok(())
    }
}

#[test]
fn a_panicking_device_is_an_error_not_a_hang() {
    let options = TestLunOptions::default().timeout(Duration::from_secs(2));
    let lun = TestLun::with_options(Panics, options).unwrap();
    let failure = lun.read(0, 1).unwrap_err();
    assert!(failure.command().starts_with("READ(16) LBA 0"), "{failure}");
    // The command dropped by the unwinding worker is failed, not lost.
    assert_eq!(
        failure.sense().map(|s| s.key),
        Some(SenseKey::HardwareError),
        "{failure}"
    );
    // The unit still serves commands that do not read.
    lun.write(0, &[1; BS]).unwrap();
}

/// Every UNMAP fails.
struct FailingUnmap(Ram);

impl BlockDevice for FailingUnmap {
    fn block_size(&self) -> u32 {
        BS as u32
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
    fn capabilities(&self) -> DeviceCapabilities {
        self.0.capabilities()
    }
    fn unmap(&self, _extent: Extent) -> Result<(), BlockError> {
        Err(BlockError::Medium)
    }
}

#[test]
fn the_check_names_a_command_that_fails() {
    let failure = try_check_device(
        || FailingUnmap(Ram::new(48)),
        CheckOptions::default().seed(1),
    )
    .unwrap_err();
    let message = failure.message();
    // Shrunk to the one UNMAP (or WRITE SAME with UNMAP) that fails.
    assert!(message.contains("  1. "), "{message}");
    assert!(!message.contains("  2. "), "{message}");
    assert!(message.contains("step 1, "), "{message}");
    assert!(message.contains("UNMAP LBA "), "{message}");
    assert!(
        message.contains(": expected GOOD, got CHECK CONDITION (MEDIUM ERROR"),
        "{message}"
    );
}

/// Counts the most calls in the device at once; each call takes a while.
struct Counting {
    inner: Ram,
    now: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_micros(300));
        let out = f();
        self.now.fetch_sub(1, SeqCst);
        out
    }
}

impl BlockDevice for Counting {
    fn block_size(&self) -> u32 {
        BS as u32
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.call(|| self.inner.read(lba, buf))
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.call(|| self.inner.write(lba, buf))
    }
}

#[test]
fn the_check_has_commands_in_the_device_at_once() {
    let now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    check_device(
        || Counting {
            inner: Ram::new(48),
            now: now.clone(),
            most: most.clone(),
        },
        CheckOptions::default().cases(8),
    );
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most >= 2, "at most {most} calls at once");
}
