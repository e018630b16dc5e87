//! A Vec-backed block device and assertion helpers for the unit tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use scsi_sense_codes::{AdditionalSense, SenseKey};

use crate::{BlockDevice, BlockError, Emulator, LunIdentity, ScsiResponse, status};

/// One backend call: (kind, lba, byte length). Kind is 'r', 'w' or 'f'
/// (write_fua).
pub(crate) type Call = (char, u64, usize);

/// A RAM disk that records its calls and can be told to fail.
pub(crate) struct VecDevice {
    block_size: u32,
    num_blocks: u64,
    data: Mutex<Vec<u8>>,
    pub(crate) read_only: bool,
    pub(crate) write_cache: bool,
    /// Every read/write call fails with this error when set.
    pub(crate) fail: Mutex<Option<BlockError>>,
    /// `flush` fails with this error when set.
    pub(crate) fail_flush: Mutex<Option<BlockError>>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) flushes: AtomicUsize,
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
            fail: Mutex::new(None),
            fail_flush: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            flushes: AtomicUsize::new(0),
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
    fn write_fua(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check('f', lba, buf.len())?;
        self.store(lba, buf);
        Ok(())
    }
    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        match self.fail_flush.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
    fn write_cache(&self) -> bool {
        self.write_cache
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn product_name(&self) -> &str {
        "vec disk"
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
    assert_eq!(resp.status, status::CHECK_CONDITION, "{resp:?}");
    let sense = resp.sense.expect("sense data");
    assert_eq!((sense.key, sense.code), (key, code), "{resp:?}");
    assert_eq!(resp.data_in_len, None);
}

/// Assert ILLEGAL REQUEST with this code.
#[track_caller]
pub(crate) fn assert_illegal(resp: &ScsiResponse, code: AdditionalSense) {
    assert_check(resp, SenseKey::IllegalRequest, code);
}

/// Assert ILLEGAL REQUEST, INVALID FIELD IN CDB.
#[track_caller]
pub(crate) fn assert_invalid_field(resp: &ScsiResponse) {
    assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_CDB);
}
