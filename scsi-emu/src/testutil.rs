//! A Vec-backed block device and assertion helpers for the unit tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use scsi_sense_codes::{AdditionalSense, SenseKey};

use crate::{
    AsyncBlockDevice, AsyncEmulator, Completion, DataBuffer, DeviceCapabilities, Extent,
    ExtentStatus, WriteFlags,
};

// What most unit tests use besides their own module, in one import.
pub(crate) use crate::{BlockDevice, BlockError, Emulator, LunIdentity, ScsiResponse, ScsiStatus};
pub(crate) use nix::libc::EIO;

/// One backend call: (kind, lba, byte length). Kind is 'r', 'w', 'f'
/// (write_vectored with FUA), 'z' (write_zeroes) or 'u' (unmap).
pub(crate) type Call = (char, u64, usize);

/// What `unmap` does to the data of a [`VecDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnmapMode {
    /// No unmap support.
    None,
    /// Unmapped blocks read as zeros (LBPRZ).
    Zeroes,
    /// Unmapped blocks keep their old contents.
    KeepData,
}

/// A RAM disk that records its calls and can be told to fail.
pub(crate) struct VecDevice {
    block_size: u32,
    num_blocks: u64,
    data: Mutex<Vec<u8>>,
    pub(crate) read_only: bool,
    pub(crate) write_cache: bool,
    pub(crate) unmap: UnmapMode,
    /// Whether `lba_status` answers (from `mapped`).
    pub(crate) lba_status: bool,
    /// What `capabilities` declares as `atomic_write_blocks`.
    pub(crate) atomic_write_blocks: u64,
    /// Per block: mapped (written since the last unmap). Starts mapped.
    mapped: Mutex<Vec<bool>>,
    /// Every read/write call fails with this error when set.
    pub(crate) fail: Mutex<Option<BlockError>>,
    /// `flush` fails with this error when set.
    pub(crate) fail_flush: Mutex<Option<BlockError>>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) flushes: AtomicUsize,
    /// `write_vectored` calls (`calls` has one entry per buffer).
    pub(crate) vectored_writes: AtomicUsize,
}

impl VecDevice {
    pub(crate) fn new(block_size: u32, num_blocks: u64) -> Self {
        let bytes = usize::try_from(u64::from(block_size) * num_blocks).unwrap();
        VecDevice {
            block_size,
            num_blocks,
            data: Mutex::new((0..bytes).map(|i| (i % 251) as u8).collect()),
            read_only: false,
            write_cache: false,
            unmap: UnmapMode::None,
            lba_status: false,
            atomic_write_blocks: 0,
            mapped: Mutex::new(vec![true; usize::try_from(num_blocks).unwrap()]),
            fail: Mutex::new(None),
            fail_flush: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            flushes: AtomicUsize::new(0),
            vectored_writes: AtomicUsize::new(0),
        }
    }

    /// Geometry only: reads return zeros, writes are dropped. For huge
    /// capacities.
    pub(crate) fn geometry(block_size: u32, num_blocks: u64) -> Self {
        VecDevice {
            num_blocks,
            ..VecDevice::new(block_size, 0)
        }
    }

    /// Unmap supported; unmapped blocks read as zeros.
    pub(crate) fn with_unmap(mut self) -> Self {
        self.unmap = UnmapMode::Zeroes;
        self
    }

    /// Unmap supported; unmapped blocks keep their data.
    pub(crate) fn with_unmap_keeping_data(mut self) -> Self {
        self.unmap = UnmapMode::KeepData;
        self
    }

    /// `lba_status` reports the mapped/unmapped state of every block.
    pub(crate) fn with_lba_status(mut self) -> Self {
        self.lba_status = true;
        self
    }

    /// Declares writes of up to `blocks` blocks all-or-nothing (a RAM disk
    /// that fails before it stores anything).
    pub(crate) fn with_atomic_writes(mut self, blocks: u64) -> Self {
        self.atomic_write_blocks = blocks;
        self
    }

    fn set_mapped(&self, lba: u64, blocks: u64, mapped: bool) {
        let mut map = self.mapped.lock().unwrap();
        for b in lba..lba + blocks {
            if let Some(m) = map.get_mut(b as usize) {
                *m = mapped;
            }
        }
    }

    pub(crate) fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub(crate) fn with_write_cache(mut self) -> Self {
        self.write_cache = true;
        self
    }

    pub(crate) fn failing(self, err: BlockError) -> Self {
        *self.fail.lock().unwrap() = Some(err);
        self
    }

    pub(crate) fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, kind: char, lba: u64, len: usize) -> Result<(), BlockError> {
        self.calls.lock().unwrap().push((kind, lba, len));
        assert_eq!(len % self.block_size as usize, 0, "partial block");
        assert!(len > 0, "empty transfer");
        let blocks = (len / self.block_size as usize) as u64;
        assert!(lba + blocks <= self.num_blocks, "beyond the end");
        match self.fail.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn range(&self, lba: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(lba * u64::from(self.block_size)).ok()?;
        let range = start..start + len;
        (range.end <= self.data.lock().unwrap().len()).then_some(range)
    }

    fn store(&self, lba: u64, buf: &[u8]) {
        if let Some(r) = self.range(lba, buf.len()) {
            self.data.lock().unwrap()[r].copy_from_slice(buf);
        }
        self.set_mapped(lba, (buf.len() / self.block_size as usize) as u64, true);
    }

    fn byte_len(&self, blocks: u64) -> usize {
        usize::try_from(blocks * u64::from(self.block_size)).unwrap()
    }
}

impl BlockDevice for VecDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check('r', lba, buf.len())?;
        match self.range(lba, buf.len()) {
            Some(r) => buf.copy_from_slice(&self.data.lock().unwrap()[r]),
            None => buf.fill(0),
        }
        Ok(())
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check('w', lba, buf.len())?;
        self.store(lba, buf);
        Ok(())
    }
    /// Each buffer recorded as a write ('w') or a FUA write ('f').
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        self.vectored_writes.fetch_add(1, Ordering::SeqCst);
        let mut at = lba;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            self.check(if flags.fua { 'f' } else { 'w' }, at, buf.len())?;
            self.store(at, buf);
            at += (buf.len() / self.block_size as usize) as u64;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        match self.fail_flush.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .write_cache(self.write_cache)
            .read_only(self.read_only)
            .unmap(self.unmap != UnmapMode::None)
            .unmap_reads_zeroes(self.unmap == UnmapMode::Zeroes)
            .lba_status(self.lba_status)
            .atomic_write_blocks(self.atomic_write_blocks)
    }
    fn product_name(&self) -> &str {
        "vec disk"
    }
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let Extent { lba, blocks } = extent;
        assert!(
            self.unmap != UnmapMode::None,
            "unmap on a device that cannot"
        );
        let len = self.byte_len(blocks);
        self.check('u', lba, len)?;
        if self.unmap == UnmapMode::Zeroes
            && let Some(r) = self.range(lba, len)
        {
            self.data.lock().unwrap()[r].fill(0);
        }
        self.set_mapped(lba, blocks, false);
        Ok(())
    }
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        let Extent { lba, blocks } = extent;
        let len = self.byte_len(blocks);
        self.check('z', lba, len)?;
        if let Some(r) = self.range(lba, len) {
            self.data.lock().unwrap()[r].fill(0);
        }
        self.set_mapped(lba, blocks, true);
        Ok(())
    }
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        assert!(
            self.lba_status,
            "lba_status on a device that does not declare it"
        );
        let map = self.mapped.lock().unwrap();
        let start = usize::try_from(lba).map_err(|_| BlockError::OutOfRange)?;
        let state = *map.get(start).ok_or(BlockError::OutOfRange)?;
        let run = map[start..].iter().take_while(|&&m| m == state).count();
        let extent = Extent::new(lba, run as u64);
        Ok(if state {
            ExtentStatus::mapped(extent)
        } else {
            ExtentStatus::deallocated(extent)
        })
    }
}

/// A write caught half done: `write_vectored` stores the first block,
/// meets the test at `halfway`, and stores the rest only after meeting it
/// again at `resume`. Meant for a single write of several blocks, whose
/// overlap with other commands is then certain. It passes on what `inner`
/// declares, also atomic writes it does not keep: the tests check that
/// other commands cannot see the half.
pub(crate) struct HalfWrite {
    pub(crate) inner: VecDevice,
    pub(crate) halfway: Barrier,
    pub(crate) resume: Barrier,
}

impl HalfWrite {
    pub(crate) fn new(inner: VecDevice) -> Self {
        HalfWrite {
            inner,
            halfway: Barrier::new(2),
            resume: Barrier::new(2),
        }
    }
}

impl crate::DeviceFilter for HalfWrite {
    type Inner = VecDevice;
    fn inner(&self) -> &VecDevice {
        &self.inner
    }
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let data = bufs.concat();
        let (first, rest) = data.split_at(self.inner.block_size() as usize);
        self.inner.write_vectored(lba, &[first], flags)?;
        self.halfway.wait();
        self.resume.wait();
        self.inner.write_vectored(lba + 1, &[rest], flags)
    }
}

/// An emulator over `device` with serial "SN0001".
pub(crate) fn emulator(device: VecDevice) -> Emulator<VecDevice> {
    let identity = LunIdentity::for_device("SN0001", &device);
    Emulator::new(device, identity)
}

/// Assert CHECK CONDITION with exactly this key and code.
#[track_caller]
pub(crate) fn assert_check(resp: &ScsiResponse, key: SenseKey, code: AdditionalSense) {
    assert_eq!(resp.status, ScsiStatus::CheckCondition, "{resp:?}");
    let sense = resp.sense.expect("sense data");
    assert_eq!((sense.key, sense.code), (key, code), "{resp:?}");
    assert_eq!(resp.data_in_len, None);
}

/// Assert ILLEGAL REQUEST with this code.
#[track_caller]
pub(crate) fn assert_illegal(resp: &ScsiResponse, code: AdditionalSense) {
    assert_check(resp, SenseKey::IllegalRequest, code);
}

/// Assert ILLEGAL REQUEST, INVALID FIELD IN CDB with the field pointer
/// at CDB byte `byte`, bit `bit`.
#[track_caller]
pub(crate) fn assert_invalid_field(resp: &ScsiResponse, byte: u16, bit: u8) {
    assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_CDB);
    let fp = resp
        .sense
        .and_then(|s| s.field_pointer)
        .expect("field pointer");
    assert!(fp.in_cdb, "{resp:?}");
    assert_eq!((fp.byte, fp.bit), (byte, Some(bit)), "{resp:?}");
}

/// A zero-filled disk whose size can change (up to 1000 blocks).
pub(crate) struct Resizable(std::sync::atomic::AtomicU64);

impl Resizable {
    pub(crate) fn new(blocks: u64) -> Self {
        Resizable(std::sync::atomic::AtomicU64::new(blocks))
    }
}

impl BlockDevice for Resizable {
    fn block_size(&self) -> u32 {
        512
    }
    fn num_blocks(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn read(&self, _lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Ok(())
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        if num_blocks > 1000 {
            return Err(BlockError::NoSpace);
        }
        self.0.store(num_blocks, Ordering::SeqCst);
        Ok(())
    }
}

/// `len` bytes that depend on their position and on `seed` and are never
/// zero (so they cannot pass for unwritten or unmapped blocks).
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// READ(10) or WRITE(10) with the flags byte (FUA: 08h).
pub(crate) fn rw10(write: bool, flags: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut cdb = vec![
        if write { 0x2A } else { 0x28 },
        flags,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// READ(12) or WRITE(12).
pub(crate) fn rw12(write: bool, flags: u8, lba: u32, blocks: u32) -> Vec<u8> {
    let mut cdb = vec![0u8; 12];
    cdb[0] = if write { 0xAA } else { 0xA8 };
    cdb[1] = flags;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[6..10].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// READ(16) or WRITE(16).
pub(crate) fn rw16(write: bool, flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = if write { 0x8A } else { 0x88 };
    cdb[1] = flags;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// READ(6) or WRITE(6).
pub(crate) fn rw6(write: bool, lba: u32, blocks: u8) -> Vec<u8> {
    let l = lba.to_be_bytes();
    vec![if write { 0x0A } else { 0x08 }, l[1], l[2], l[3], blocks, 0]
}

/// An asynchronous device over a synchronous one: every call first yields
/// once (returns Pending and wakes itself), so the futures really suspend.
pub(crate) struct Yielding<D>(pub(crate) D);

fn yield_once() -> impl std::future::Future<Output = ()> + Send {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}

impl<D: BlockDevice + 'static> AsyncBlockDevice for Yielding<D> {
    fn block_size(&self) -> u32 {
        self.0.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.0.num_blocks()
    }
    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        yield_once().await;
        self.0.read(lba, buf)
    }
    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        yield_once().await;
        self.0.write(lba, buf)
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.0.capabilities()
    }
    fn product_name(&self) -> &str {
        self.0.product_name()
    }
    async fn flush(&self) -> Result<(), BlockError> {
        yield_once().await;
        self.0.flush()
    }
    async fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        yield_once().await;
        self.0.read_vectored(lba, bufs)
    }
    async fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        yield_once().await;
        self.0.write_vectored(lba, bufs, flags)
    }
    async fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        yield_once().await;
        self.0.unmap(extent)
    }
    async fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        yield_once().await;
        self.0.write_zeroes(extent)
    }
    async fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        yield_once().await;
        self.0.lba_status(lba)
    }
    async fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<Option<usize>, BlockError> {
        yield_once().await;
        self.0.compare_and_write(lba, compare, write)
    }
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        self.0.resize(num_blocks)
    }
}

/// A command whose answer and data come back through a channel.
pub(crate) struct Job<B = Vec<u8>> {
    pub(crate) cdb: Vec<u8>,
    pub(crate) data: B,
    pub(crate) done: std::sync::mpsc::Sender<(ScsiResponse, B)>,
}

impl<B: DataBuffer + Send + 'static> Completion for Job<B> {
    fn parts(&mut self) -> (&[u8], &mut (dyn DataBuffer + Send)) {
        (&self.cdb, &mut self.data)
    }
    fn complete(self, response: ScsiResponse, _descriptor_sense: bool) {
        let _ = self.done.send((response, self.data));
    }
}

/// Run one command to its end on either emulator, with a one-segment
/// buffer (the model test drives both through this).
pub(crate) trait Executes {
    fn run(&self, cdb: &[u8], data: &mut Vec<u8>) -> ScsiResponse;
    fn contents(&self) -> Vec<u8>;
}

impl Executes for Emulator<VecDevice> {
    fn run(&self, cdb: &[u8], data: &mut Vec<u8>) -> ScsiResponse {
        self.execute(cdb, data)
    }
    fn contents(&self) -> Vec<u8> {
        self.device().contents()
    }
}

impl Executes for AsyncEmulator<Yielding<VecDevice>> {
    fn run(&self, cdb: &[u8], data: &mut Vec<u8>) -> ScsiResponse {
        let (done, answers) = std::sync::mpsc::channel();
        self.start(Job {
            cdb: cdb.to_vec(),
            data: std::mem::take(data),
            done,
        });
        let (response, back) = answers
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the command was answered");
        *data = back;
        response
    }
    fn contents(&self) -> Vec<u8> {
        self.device().0.contents()
    }
}

/// An asynchronous emulator over `device`, serial "SN0001".
pub(crate) fn async_emulator(device: VecDevice) -> AsyncEmulator<Yielding<VecDevice>> {
    let identity = LunIdentity::for_device("SN0001", &device);
    AsyncEmulator::new(Yielding(device), identity).unwrap()
}
