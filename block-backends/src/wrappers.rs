//! Devices that wrap another device and change how it behaves.
//!
//! - [`ReadOnly`] refuses every write.
//! - [`FaultInjector`] fails or delays chosen LBA ranges, for testing how
//!   initiators and the SCSI layer cope with a failing disk.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

// DeviceFilter is named in full at its impls: imported, its method names
// would be ambiguous with BlockDevice's on the wrappers.
use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, Extent, WriteFlags};

/// A read-only view of a device: writes, unmaps and zeroing fail with
/// [`BlockError::ReadOnly`] without reaching the inner device; reads and
/// flushes pass through.
///
/// ```
/// use block_backends::{MemoryDevice, ReadOnly};
/// use scsi_emu::{BlockDevice, BlockError};
///
/// let disk = ReadOnly::new(MemoryDevice::new(512, 8)?);
/// assert!(disk.capabilities().read_only);
/// assert_eq!(disk.write(0, &[1; 512]), Err(BlockError::ReadOnly));
/// let mut block = [0xffu8; 512];
/// disk.read(0, &mut block)?;
/// assert_eq!(block, [0; 512]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadOnly<D> {
    inner: D,
}

impl<D: BlockDevice> ReadOnly<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> ReadOnly<D> {
        ReadOnly { inner }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

/// Forwards everything but what changes data, and declares the view
/// read-only (nothing can be unmapped, zeroed or compared-and-written).
impl<D: BlockDevice> scsi_emu::DeviceFilter for ReadOnly<D> {
    type Inner = D;

    fn inner(&self) -> &D {
        &self.inner
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner
            .capabilities()
            .read_only(true)
            .unmap(false)
            .write_zeroes(false)
            .compare_and_write(false)
    }

    fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn write_vectored(
        &self,
        _lba: u64,
        _bufs: &[&[u8]],
        _flags: WriteFlags,
    ) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn unmap(&self, _extent: Extent) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn write_zeroes(&self, _extent: Extent) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn compare_and_write(
        &self,
        _lba: u64,
        _compare: &[u8],
        _write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        Err(BlockError::ReadOnly)
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Reads,
    /// Writes, FUA writes, unmaps and zeroing: everything that changes data.
    Writes,
    All,
}

#[derive(Debug, Clone)]
enum Action {
    Fail(BlockError),
    Delay(Duration),
    /// Delay the first request that touches the range, then disappear.
    DelayOnce(Duration),
}

#[derive(Debug, Clone)]
struct Rule {
    target: Target,
    lbas: Range<u64>,
    action: Action,
}

#[derive(Debug, Default)]
struct Rules {
    rules: Vec<Rule>,
    flush: Option<BlockError>,
}

/// A device that fails or delays requests touching chosen LBA ranges.
///
/// Faults are added and cleared at any time through `&self`, also while
/// other threads use the device. A request fails if any block it touches
/// lies in a failing range (the inner device is then not called); it is
/// delayed by the longest delay of the ranges it touches, before any
/// failure. Writes here mean everything that changes data: `write`,
/// `write_vectored`, `unmap`, `write_zeroes` and `compare_and_write`.
///
/// ```
/// use block_backends::{FaultInjector, MemoryDevice};
/// use scsi_emu::{BlockDevice, BlockError};
///
/// let disk = FaultInjector::new(MemoryDevice::new(512, 100)?);
/// disk.fail_reads(10..12, BlockError::Medium);
///
/// let mut buf = [0u8; 1024];
/// assert_eq!(disk.read(9, &mut buf), Err(BlockError::Medium)); // touches LBA 10
/// assert_eq!(disk.read(12, &mut buf), Ok(()));
/// assert_eq!(disk.write(10, &buf), Ok(())); // only reads fail
/// assert_eq!(disk.injected(), 1);
///
/// disk.clear();
/// assert_eq!(disk.read(10, &mut buf), Ok(()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FaultInjector<D> {
    inner: D,
    rules: RwLock<Rules>,
    injected: AtomicU64,
}

impl<D: BlockDevice> FaultInjector<D> {
    /// Wraps `inner`, with no faults yet.
    pub fn new(inner: D) -> FaultInjector<D> {
        FaultInjector {
            inner,
            rules: RwLock::new(Rules::default()),
            injected: AtomicU64::new(0),
        }
    }

    /// Make reads of any block in `lbas` fail with `error`.
    pub fn fail_reads(&self, lbas: Range<u64>, error: BlockError) {
        self.add(Target::Reads, lbas, Action::Fail(error));
    }

    /// Make writes (also FUA writes, unmaps and zeroing) of any block in
    /// `lbas` fail with `error`.
    pub fn fail_writes(&self, lbas: Range<u64>, error: BlockError) {
        self.add(Target::Writes, lbas, Action::Fail(error));
    }

    /// Delay every request touching a block in `lbas` by `delay`.
    pub fn delay(&self, lbas: Range<u64>, delay: Duration) {
        self.add(Target::All, lbas, Action::Delay(delay));
    }

    /// Delay only the first request touching a block in `lbas` by `delay`
    /// (a call that hangs once: the initiator's retry then succeeds).
    pub fn delay_once(&self, lbas: Range<u64>, delay: Duration) {
        self.add(Target::All, lbas, Action::DelayOnce(delay));
    }

    /// Make `flush` fail with `error`, or succeed again with `None`.
    pub fn fail_flush(&self, error: Option<BlockError>) {
        self.rules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .flush = error;
    }

    /// Remove every fault and delay.
    pub fn clear(&self) {
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Rules::default();
    }

    /// How many requests have failed because of an injected fault.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn add(&self, target: Target, lbas: Range<u64>, action: Action) {
        self.rules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .rules
            .push(Rule {
                target,
                lbas,
                action,
            });
    }

    // The rules are plain data, valid even if a writer panicked.
    fn rules(&self) -> RwLockReadGuard<'_, Rules> {
        self.rules.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply the rules to a request for `blocks` blocks at `lba`: sleep
    /// for the longest matching delay, then fail if a failing range
    /// matches.
    fn check(&self, write: bool, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let request = lba..lba.saturating_add(blocks);
        let (mut delay, error, once) = {
            let rules = self.rules();
            let mut delay = Duration::ZERO;
            let mut error = None;
            let mut once = None;
            for (i, rule) in rules.rules.iter().enumerate() {
                let applies = match rule.target {
                    Target::Reads => !write,
                    Target::Writes => write,
                    Target::All => true,
                };
                if !applies || !overlaps(&rule.lbas, &request) {
                    continue;
                }
                match &rule.action {
                    Action::Delay(d) => delay = delay.max(*d),
                    Action::Fail(e) if error.is_none() => error = Some(e.clone()),
                    Action::Fail(_) => {}
                    Action::DelayOnce(d) if once.is_none() => once = Some((i, *d)),
                    Action::DelayOnce(_) => {}
                }
            }
            (delay, error, once)
        };
        if let Some((index, d)) = once {
            // Only the request that removes the rule is delayed by it.
            let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
            let still_there = rules.rules.get(index).is_some_and(|r| {
                matches!(r.action, Action::DelayOnce(x) if x == d) && overlaps(&r.lbas, &request)
            });
            if still_there {
                rules.rules.remove(index);
                delay = delay.max(d);
            }
        }
        // Sleep without holding the lock: rules may change meanwhile.
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        match error {
            Some(e) => {
                self.injected.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn blocks_in(&self, len: usize) -> u64 {
        len as u64 / u64::from(self.inner.block_size().max(1))
    }
}

/// Whether the ranges share a block (an empty range shares none).
fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
}

/// Checks the rules before every request that reads or changes data,
/// forwards the rest.
impl<D: BlockDevice> scsi_emu::DeviceFilter for FaultInjector<D> {
    type Inner = D;

    fn inner(&self) -> &D {
        &self.inner
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(false, lba, self.blocks_in(buf.len()))?;
        self.inner.read(lba, buf)
    }

    fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.check(false, lba, self.blocks_in(len))?;
        self.inner.read_vectored(lba, bufs)
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(true, lba, self.blocks_in(buf.len()))?;
        self.inner.write(lba, buf)
    }

    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.check(true, lba, self.blocks_in(len))?;
        self.inner.write_vectored(lba, bufs, flags)
    }

    fn flush(&self) -> Result<(), BlockError> {
        let error = self.rules().flush.clone();
        if let Some(e) = error {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.inner.flush()
    }

    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        self.check(true, extent.lba, extent.blocks)?;
        self.inner.unmap(extent)
    }

    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        self.check(true, extent.lba, extent.blocks)?;
        self.inner.write_zeroes(extent)
    }

    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        self.check(true, lba, self.blocks_in(write.len()))?;
        self.inner.compare_and_write(lba, compare, write)
    }
}

#[cfg(test)]
mod tests {
    use nix::libc;

    use super::*;
    use crate::MemoryDevice;
    use scsi_emu::ExtentStatus;
    use std::sync::Arc;

    fn memory() -> MemoryDevice {
        MemoryDevice::new(512, 64).unwrap()
    }

    #[test]
    fn read_only_refuses_changes_and_forwards_the_rest() {
        let inner = memory();
        inner.write(2, &[6; 512]).unwrap();
        let dev = ReadOnly::new(inner);
        let caps = dev.capabilities();
        assert!(caps.read_only && caps.unmap_reads_zeroes && caps.lba_status);
        assert!(!caps.unmap && !caps.write_zeroes);
        // Kept: a refused write changes nothing, so the promise holds, and
        // WRITE ATOMIC is refused as write protected like any write.
        assert_eq!(caps.atomic_write_blocks, u64::MAX);
        assert_eq!((dev.block_size(), dev.num_blocks()), (512, 64));
        assert_eq!(dev.product_name(), "RAM disk");
        assert_eq!(dev.write(2, &[0; 512]), Err(BlockError::ReadOnly));
        assert_eq!(
            dev.write_vectored(2, &[&[0; 512]], WriteFlags::FUA),
            Err(BlockError::ReadOnly)
        );
        assert_eq!(dev.unmap(Extent::new(2, 1)), Err(BlockError::ReadOnly));
        assert_eq!(
            dev.write_zeroes(Extent::new(2, 1)),
            Err(BlockError::ReadOnly)
        );
        assert_eq!(dev.flush(), Ok(()));
        let mut buf = [0; 512];
        dev.read(2, &mut buf).unwrap();
        assert_eq!(buf, [6; 512]);
        // The inner device saw none of the refused changes.
        assert_eq!(dev.inner().allocated_bytes(), dev.inner().len_bytes());
        let inner = dev.into_inner();
        inner.read(2, &mut buf).unwrap();
        assert_eq!(buf, [6; 512]);
    }

    #[test]
    fn read_only_forwards_read_errors() {
        let dev = ReadOnly::new(memory());
        assert_eq!(dev.read(64, &mut [0; 512]), Err(BlockError::OutOfRange));
    }

    #[test]
    fn faults_hit_only_their_ranges_and_directions() {
        let dev = FaultInjector::new(memory());
        dev.fail_reads(10..12, BlockError::Medium);
        dev.fail_writes(20..21, BlockError::Io(libc::EIO));
        let mut buf = [0u8; 1024];
        // Reads: any overlap fails, neighbours pass.
        assert_eq!(dev.read(9, &mut buf), Err(BlockError::Medium));
        assert_eq!(dev.read(11, &mut buf), Err(BlockError::Medium));
        assert_eq!(dev.read(8, &mut buf), Ok(()));
        assert_eq!(dev.read(12, &mut buf), Ok(()));
        assert_eq!(dev.read(20, &mut buf), Ok(()));
        // Writes of every kind.
        assert_eq!(dev.write(19, &buf), Err(BlockError::Io(libc::EIO)));
        assert_eq!(
            dev.write_vectored(20, &[&buf[..512]], WriteFlags::FUA),
            Err(BlockError::Io(libc::EIO))
        );
        assert_eq!(
            dev.unmap(Extent::new(15, 10)),
            Err(BlockError::Io(libc::EIO))
        );
        assert_eq!(
            dev.write_zeroes(Extent::new(20, 1)),
            Err(BlockError::Io(libc::EIO))
        );
        assert_eq!(dev.write(10, &buf), Ok(()));
        assert_eq!(dev.write(21, &buf), Ok(()));
        assert_eq!(dev.injected(), 6);
        // A failed write did not reach the device.
        dev.inner().read(19, &mut buf).unwrap();
        assert_eq!(buf, [0; 1024]);
        // Empty requests touch no block.
        assert_eq!(dev.read(10, &mut []), Ok(()));
        assert_eq!(dev.unmap(Extent::new(20, 0)), Ok(()));
    }

    #[test]
    fn faults_change_at_run_time_through_a_shared_reference() {
        let dev = Arc::new(FaultInjector::new(memory()));
        let other = Arc::clone(&dev);
        std::thread::spawn(move || other.fail_reads(0..64, BlockError::Busy))
            .join()
            .unwrap();
        assert_eq!(dev.read(30, &mut [0; 512]), Err(BlockError::Busy));
        dev.clear();
        assert_eq!(dev.read(30, &mut [0; 512]), Ok(()));
        assert_eq!(dev.injected(), 1);
    }

    #[test]
    fn flush_faults() {
        let dev = FaultInjector::new(memory());
        dev.fail_flush(Some(BlockError::Io(libc::EIO)));
        assert_eq!(dev.flush(), Err(BlockError::Io(libc::EIO)));
        dev.fail_flush(None);
        assert_eq!(dev.flush(), Ok(()));
        dev.fail_flush(Some(BlockError::Medium));
        dev.clear();
        assert_eq!(dev.flush(), Ok(()));
    }

    /// A device that records how long after the start each read arrived.
    struct Clock {
        start: std::time::Instant,
        inner: MemoryDevice,
        seen: std::sync::Mutex<Vec<Duration>>,
    }

    impl BlockDevice for Clock {
        fn block_size(&self) -> u32 {
            self.inner.block_size()
        }
        fn num_blocks(&self) -> u64 {
            self.inner.num_blocks()
        }
        fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.seen.lock().unwrap().push(self.start.elapsed());
            self.inner.read(lba, buf)
        }
        fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.inner.write(lba, buf)
        }
    }

    #[test]
    fn delays_hold_requests_back_before_they_reach_the_device() {
        let dev = FaultInjector::new(Clock {
            start: std::time::Instant::now(),
            inner: memory(),
            seen: Default::default(),
        });
        dev.delay(5..6, Duration::from_millis(50));
        dev.read(5, &mut [0; 512]).unwrap();
        // A lower bound only: sleeping can overrun, never fall short.
        let seen = dev.inner().seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0] >= Duration::from_millis(50), "{seen:?}");
        // A delayed and failing range delays, then fails.
        dev.fail_reads(5..6, BlockError::Medium);
        assert_eq!(dev.read(5, &mut [0; 512]), Err(BlockError::Medium));
    }

    #[test]
    fn a_one_shot_delay_holds_back_only_the_first_request() {
        let dev = FaultInjector::new(Clock {
            start: std::time::Instant::now(),
            inner: memory(),
            seen: Default::default(),
        });
        dev.delay_once(5..6, Duration::from_millis(300));
        dev.read(4, &mut [0; 1024]).unwrap(); // touches LBA 5: delayed
        dev.read(5, &mut [0; 512]).unwrap(); // the rule is gone
        dev.read(7, &mut [0; 512]).unwrap(); // never matched
        let seen = dev.inner().seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert!(seen[0] >= Duration::from_millis(300), "{seen:?}");
        // The later requests came right after the first, not 300 ms each.
        assert!(seen[2] < seen[0] * 2, "{seen:?}");
    }

    #[test]
    fn wrappers_forward_geometry_and_capabilities() {
        let dev = FaultInjector::new(memory());
        assert_eq!((dev.block_size(), dev.num_blocks()), (512, 64));
        assert_eq!(dev.capabilities(), memory().capabilities());
        assert_eq!(dev.product_name(), "RAM disk");
        dev.write(1, &[2; 512]).unwrap();
        assert_eq!(
            dev.lba_status(0),
            Ok(ExtentStatus::mapped(Extent::new(0, 64)))
        );
        assert_eq!(
            ReadOnly::new(memory()).lba_status(3),
            Ok(ExtentStatus::deallocated(Extent::new(3, 61)))
        );
        dev.unmap(Extent::new(1, 1)).unwrap();
        let mut buf = [9; 512];
        dev.into_inner().read(1, &mut buf).unwrap();
        assert_eq!(buf, [0; 512]);
        // Stacked: a read-only view of a fault injector.
        let dev = ReadOnly::new(FaultInjector::new(memory()));
        dev.inner().fail_reads(0..1, BlockError::Medium);
        assert_eq!(dev.read(0, &mut buf), Err(BlockError::Medium));
    }

    /// Records which method each call arrived as.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<&'static str>>);

    impl Recorder {
        fn saw(&self, what: &'static str) {
            self.0.lock().unwrap().push(what);
        }
        fn take(&self) -> Vec<&'static str> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl BlockDevice for Recorder {
        fn block_size(&self) -> u32 {
            512
        }
        fn num_blocks(&self) -> u64 {
            64
        }
        fn read(&self, _: u64, _: &mut [u8]) -> Result<(), BlockError> {
            self.saw("read");
            Ok(())
        }
        fn write(&self, _: u64, _: &[u8]) -> Result<(), BlockError> {
            self.saw("write");
            Ok(())
        }
        fn capabilities(&self) -> DeviceCapabilities {
            DeviceCapabilities::new()
                .write_cache(true)
                .unmap(true)
                .unmap_reads_zeroes(true)
                .write_zeroes(true)
                .lba_status(true)
                .compare_and_write(true)
        }
        fn product_name(&self) -> &str {
            "recorder"
        }
        fn flush(&self) -> Result<(), BlockError> {
            self.saw("flush");
            Ok(())
        }
        fn read_vectored(&self, _: u64, _: &mut [&mut [u8]]) -> Result<(), BlockError> {
            self.saw("read_vectored");
            Ok(())
        }
        fn write_vectored(&self, _: u64, _: &[&[u8]], f: WriteFlags) -> Result<(), BlockError> {
            self.saw(if f.fua {
                "write_vectored fua"
            } else {
                "write_vectored"
            });
            Ok(())
        }
        fn unmap(&self, _: Extent) -> Result<(), BlockError> {
            self.saw("unmap");
            Ok(())
        }
        fn write_zeroes(&self, _: Extent) -> Result<(), BlockError> {
            self.saw("write_zeroes");
            Ok(())
        }
        fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
            self.saw("lba_status");
            Ok(ExtentStatus::mapped(Extent::new(lba, 1)))
        }
        fn compare_and_write(
            &self,
            _: u64,
            _: &[u8],
            _: &[u8],
        ) -> Result<Option<usize>, BlockError> {
            self.saw("compare_and_write");
            Ok(None)
        }
        fn resize(&self, _: u64) -> Result<(), BlockError> {
            self.saw("resize");
            Ok(())
        }
    }

    /// Call every method once; which calls reached the recorder, in order.
    fn every_method(dev: &dyn BlockDevice, recorder: &Recorder) -> Vec<&'static str> {
        let mut a = [0u8; 512];
        let mut b = [0u8; 512];
        assert_eq!((dev.block_size(), dev.num_blocks()), (512, 64));
        assert_eq!(dev.product_name(), "recorder");
        let _ = dev.read(0, &mut a);
        let _ = dev.write(0, &a);
        let _ = dev.flush();
        let _ = dev.read_vectored(0, &mut [&mut a, &mut b]);
        let _ = dev.write_vectored(0, &[&a, &b], WriteFlags::NONE);
        let _ = dev.write_vectored(0, &[&a, &b], WriteFlags::FUA);
        let _ = dev.unmap(Extent::new(0, 1));
        let _ = dev.write_zeroes(Extent::new(0, 1));
        let _ = dev.lba_status(3);
        let _ = dev.compare_and_write(0, &a, &b);
        let _ = dev.resize(64);
        recorder.take()
    }

    const EVERY_CALL: [&str; 11] = [
        "read",
        "write",
        "flush",
        "read_vectored",
        "write_vectored",
        "write_vectored fua",
        "unmap",
        "write_zeroes",
        "lba_status",
        "compare_and_write",
        "resize",
    ];

    #[test]
    fn wrappers_forward_every_method_and_capability_as_itself() {
        // A vectored call must arrive vectored (one preadv, not a loop of
        // reads), a FUA write as a FUA write, and so on.
        let shared = Arc::new(Recorder::default());
        assert_eq!(every_method(&shared, &shared), EVERY_CALL);
        assert_eq!(shared.capabilities(), Recorder::default().capabilities());

        let faults = FaultInjector::new(Recorder::default());
        assert_eq!(every_method(&faults, faults.inner()), EVERY_CALL);
        assert_eq!(faults.capabilities(), Recorder::default().capabilities());

        // Read-only: whatever does not change data, unchanged.
        let read_only = ReadOnly::new(Recorder::default());
        assert_eq!(
            every_method(&read_only, read_only.inner()),
            ["read", "flush", "read_vectored", "lba_status", "resize"]
        );
        let caps = read_only.capabilities();
        assert!(caps.read_only && caps.write_cache && caps.lba_status && caps.unmap_reads_zeroes);
    }
}
