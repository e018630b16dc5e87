//! A sparse RAM disk.
//!
//! The device is divided into [`CHUNK_SIZE`] chunks. A chunk gets memory on
//! the first write of non-zero data to it; chunks never written read as
//! zeros. Chunks live in several independently locked shards, chosen by
//! chunk index, so that requests to different parts of the disk rarely
//! wait for each other.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use scsi_emu::{
    BlockDevice, BlockError, BlockSize, DeviceCapabilities, Extent, ExtentStatus, WriteFlags,
};

/// Granularity of allocation in bytes. A multiple of every supported block
/// size, so a block never straddles two chunks.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Number of lock shards. Consecutive chunks fall into different shards,
/// so a large sequential request and its neighbours spread over all of them.
const SHARDS: usize = 64;
// A write notes the shards it touches in a u64.
const _: () = assert!(SHARDS <= 64);

/// The allocated chunks of a shard, by index.
type Chunks = HashMap<u64, Box<[u8]>>;
type Shard = RwLock<Chunks>;

/// Why a [`MemoryDevice`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryDeviceError {
    /// The block size is not a power of two between 512 and 4096.
    #[error("invalid block size {0}: must be 512, 1024, 2048 or 4096")]
    InvalidBlockSize(u32),
    /// The device would have no blocks.
    #[error("a device needs at least one block")]
    NoBlocks,
    /// The size in bytes does not fit in a `u64`.
    #[error("{num_blocks} blocks of {block_size} bytes exceed the largest possible device")]
    TooLarge {
        /// The requested block size.
        block_size: u32,
        /// The requested number of blocks.
        num_blocks: u64,
    },
}

/// A sparse, thread-safe RAM disk.
///
/// Unwritten blocks read as zeros and cost no memory, so a device may be
/// far larger than the machine's RAM as long as little of it is written.
/// Writing zeros to a chunk that holds no data allocates nothing, and
/// writing zeros over a whole chunk releases it. `unmap` and
/// `write_zeroes` release every chunk left without data.
///
/// Requests may come from several threads at once. A write locks every
/// shard it touches until it is complete and reserves its memory before
/// it copies anything, so it either fails unchanged or is stored whole
/// (the device declares atomic writes of any length). A read takes one
/// chunk at a time, so a read racing an overlapping write that spans
/// several chunks may see part of it, as with a real disk and overlapping
/// commands; the SCSI layer keeps reads away from atomic writes.
///
/// ```
/// use block_backends::MemoryDevice;
/// use scsi_emu::BlockDevice;
///
/// let disk = MemoryDevice::new(512, 2048)?; // 1 MiB
/// disk.write(10, &[0xab; 512])?;
///
/// let mut buf = [0xffu8; 1024];
/// disk.read(10, &mut buf)?;
/// assert_eq!(buf[..512], [0xab; 512]);
/// assert_eq!(buf[512..], [0; 512]); // never written
/// assert_eq!(disk.allocated_bytes(), block_backends::CHUNK_SIZE as u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MemoryDevice {
    block_size: u32,
    // Both change together, under every shard's lock, on resize.
    num_blocks: AtomicU64,
    len: AtomicU64,
    shards: Box<[Shard]>,
    allocated: AtomicU64,
}

impl MemoryDevice {
    /// Creates an empty (all-zero) device of `num_blocks` blocks of
    /// `block_size` bytes. No memory is allocated for the data yet.
    ///
    /// ```
    /// use block_backends::{MemoryDevice, MemoryDeviceError};
    ///
    /// assert!(MemoryDevice::new(4096, 1 << 40).is_ok()); // 4 PiB, sparse
    /// assert_eq!(
    ///     MemoryDevice::new(1000, 8).unwrap_err(),
    ///     MemoryDeviceError::InvalidBlockSize(1000)
    /// );
    /// ```
    pub fn new(block_size: u32, num_blocks: u64) -> Result<MemoryDevice, MemoryDeviceError> {
        BlockSize::new(block_size).map_err(|_| MemoryDeviceError::InvalidBlockSize(block_size))?;
        if num_blocks == 0 {
            return Err(MemoryDeviceError::NoBlocks);
        }
        let len =
            u64::from(block_size)
                .checked_mul(num_blocks)
                .ok_or(MemoryDeviceError::TooLarge {
                    block_size,
                    num_blocks,
                })?;
        Ok(MemoryDevice {
            block_size,
            num_blocks: AtomicU64::new(num_blocks),
            len: AtomicU64::new(len),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            allocated: AtomicU64::new(0),
        })
    }

    /// Bytes of memory currently holding data (whole chunks; the last
    /// chunk of the device may be shorter than [`CHUNK_SIZE`]).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Size of the device in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Byte range of a request, or `OutOfRange` if it is not a whole number
    /// of blocks inside the device.
    fn byte_range(&self, lba: u64, buf_len: usize) -> Result<Range<u64>, BlockError> {
        let block_size = u64::from(self.block_size);
        let buf_len = buf_len as u64;
        if buf_len % block_size != 0 {
            return Err(BlockError::OutOfRange);
        }
        match lba.checked_add(buf_len / block_size) {
            // Cannot overflow: the end lies within the device, whose size fits u64.
            Some(end) if end <= self.num_blocks() => Ok(lba * block_size..end * block_size),
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Length of chunk `index`; only the last one can be short.
    fn chunk_len(&self, index: u64) -> usize {
        let start = index * CHUNK_SIZE as u64;
        (self.len_bytes() - start).min(CHUNK_SIZE as u64) as usize
    }

    fn shard(&self, index: u64) -> &Shard {
        &self.shards[shard_index(index)]
    }

    // The maps hold plain bytes: a panic in another thread cannot leave
    // them inconsistent, so a poisoned lock is still safe to use.
    fn read_shard(&self, index: u64) -> RwLockReadGuard<'_, Chunks> {
        self.shard(index)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_shard(&self, index: u64) -> RwLockWriteGuard<'_, Chunks> {
        self.shard(index)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Store `bufs`, one after the other, at the blocks from `lba`, all or
    /// nothing. Every shard the write touches is locked first, in index
    /// order (as `resize` locks them all, so that the two cannot deadlock),
    /// and stays locked until the write is complete; the memory of every
    /// chunk it puts data into is reserved before any byte is copied. So a
    /// lack of memory fails the write before it changes anything, the copy
    /// cannot fail, and no request sees the write half done in a chunk.
    /// Allocates nothing unless a chunk needs memory.
    fn store(&self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        let range = self.byte_range(lba, len)?;
        let touched =
            segments(range.clone()).fold(0u64, |set, seg| set | 1 << shard_index(seg.chunk));
        let mut maps: [Option<RwLockWriteGuard<'_, Chunks>>; SHARDS] = std::array::from_fn(|i| {
            (touched & 1 << i != 0).then(|| {
                self.shards[i]
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
            })
        });
        // A shrink between the range check and the locks.
        if range.end > self.len_bytes() {
            return Err(BlockError::OutOfRange);
        }
        // Memory for the vacant chunks that get data, in write order.
        let mut reserved = Vec::new();
        for seg in segments(range.clone()) {
            if !locked(&mut maps, seg.chunk).contains_key(&seg.chunk)
                && !pieces(bufs, seg.buf.clone()).all(is_zero)
            {
                reserved.push(zeroed_chunk(self.chunk_len(seg.chunk))?);
            }
        }
        let mut reserved = reserved.into_iter();
        for seg in segments(range) {
            let chunk_len = self.chunk_len(seg.chunk);
            let within = seg.within..seg.within + seg.buf.len();
            let zeros = || pieces(bufs, seg.buf.clone()).all(is_zero);
            match locked(&mut maps, seg.chunk).entry(seg.chunk) {
                Entry::Occupied(mut entry) => {
                    if seg.buf.len() == chunk_len && zeros() {
                        entry.remove();
                        self.allocated
                            .fetch_sub(chunk_len as u64, Ordering::Relaxed);
                    } else {
                        copy_pieces(bufs, seg.buf.clone(), &mut entry.get_mut()[within]);
                    }
                }
                Entry::Vacant(entry) => {
                    if zeros() {
                        continue;
                    }
                    let mut chunk = reserved
                        .next()
                        .unwrap_or_else(|| unreachable!("reserved above"));
                    copy_pieces(bufs, seg.buf.clone(), &mut chunk[within]);
                    entry.insert(chunk);
                    self.allocated
                        .fetch_add(chunk_len as u64, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Zero the part of a chunk that `seg` covers, releasing the chunk if
    /// it then holds nothing but zeros.
    fn zero_segment(&self, seg: &Segment) {
        let len = seg.buf.len();
        let mut map = self.write_shard(seg.chunk);
        if let Entry::Occupied(mut entry) = map.entry(seg.chunk) {
            let chunk = entry.get_mut();
            chunk[seg.within..seg.within + len].fill(0);
            if len == chunk.len() || is_zero(chunk) {
                let freed = chunk.len() as u64;
                entry.remove();
                self.allocated.fetch_sub(freed, Ordering::Relaxed);
            }
        }
    }

    /// Release every chunk with an index in `chunks`. Visits the shorter
    /// of the range and the set of allocated chunks, so that discarding a
    /// whole huge sparse device costs no more than its allocated data.
    fn release_chunks(&self, chunks: Range<u64>) {
        let allocated_chunks = self.allocated_bytes() / CHUNK_SIZE as u64 + 1;
        if chunks.end - chunks.start <= allocated_chunks {
            for index in chunks {
                if let Some(chunk) = self.write_shard(index).remove(&index) {
                    self.allocated
                        .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                }
            }
            return;
        }
        for shard in self.shards.iter() {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            map.retain(|index, chunk| {
                let keep = !chunks.contains(index);
                if !keep {
                    self.allocated
                        .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                }
                keep
            });
        }
    }

    /// Zero `blocks` blocks from `lba`, giving back the memory of every
    /// chunk that no longer holds data.
    fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let range = self.block_range(lba, blocks)?;
        if range.is_empty() {
            return Ok(());
        }
        let chunk = CHUNK_SIZE as u64;
        // Whole chunks inside the range; the last chunk of the device counts
        // as whole when the range reaches the end of the device.
        let first_whole = range.start.div_ceil(chunk);
        let end_whole = if range.end == self.len_bytes() {
            range.end.div_ceil(chunk)
        } else {
            range.end / chunk
        };
        if first_whole >= end_whole {
            for seg in segments(range) {
                self.zero_segment(&seg);
            }
            return Ok(());
        }
        // The partial chunks at both ends, then the whole ones in between.
        for seg in segments(range.start..(first_whole * chunk).min(range.end)) {
            self.zero_segment(&seg);
        }
        let tail_start = (end_whole * chunk).min(self.len_bytes());
        for seg in segments(tail_start.max(range.start)..range.end) {
            self.zero_segment(&seg);
        }
        self.release_chunks(first_whole..end_whole);
        Ok(())
    }

    fn is_allocated(&self, index: u64) -> bool {
        self.read_shard(index).contains_key(&index)
    }

    /// The first allocated chunk after chunk `index`, if any. Looks at
    /// every allocated chunk: the maps are unordered.
    fn next_allocated(&self, index: u64) -> Option<u64> {
        self.shards
            .iter()
            .filter_map(|shard| {
                let map = shard.read().unwrap_or_else(PoisonError::into_inner);
                map.keys().copied().filter(|&k| k > index).min()
            })
            .min()
    }

    /// Byte range of `blocks` blocks from `lba`, or `OutOfRange`.
    fn block_range(&self, lba: u64, blocks: u64) -> Result<Range<u64>, BlockError> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.num_blocks() => {
                let block_size = u64::from(self.block_size);
                Ok(lba * block_size..end * block_size)
            }
            _ => Err(BlockError::OutOfRange),
        }
    }
}

/// The part of a request that falls into one chunk.
struct Segment {
    chunk: u64,
    /// Offset inside the chunk.
    within: usize,
    /// Range of the caller's buffer.
    buf: Range<usize>,
}

/// Splits the byte range `range` at chunk boundaries.
fn segments(range: Range<u64>) -> impl Iterator<Item = Segment> {
    let start = range.start;
    let total = (range.end - range.start) as usize;
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done == total {
            return None;
        }
        let pos = start + done as u64;
        let within = (pos % CHUNK_SIZE as u64) as usize;
        let n = (CHUNK_SIZE - within).min(total - done);
        let seg = Segment {
            chunk: pos / CHUNK_SIZE as u64,
            within,
            buf: done..done + n,
        };
        done += n;
        Some(seg)
    })
}

/// The chunks of the shard of chunk `index`, from the shards a write
/// locked.
fn locked<'a>(maps: &'a mut [Option<RwLockWriteGuard<'_, Chunks>>], index: u64) -> &'a mut Chunks {
    maps[shard_index(index)]
        .as_deref_mut()
        .unwrap_or_else(|| unreachable!("every touched shard is locked"))
}

/// The shard of chunk `index`.
fn shard_index(index: u64) -> usize {
    (index % SHARDS as u64) as usize
}

/// A chunk of `len` zero bytes, or `NoSpace`: exhausted memory is reported
/// to the initiator rather than aborting the process.
fn zeroed_chunk(len: usize) -> Result<Box<[u8]>, BlockError> {
    #[cfg(test)]
    if !tests::may_allocate_chunk() {
        return Err(BlockError::NoSpace);
    }
    let mut chunk = Vec::new();
    chunk
        .try_reserve_exact(len)
        .map_err(|_| BlockError::NoSpace)?;
    chunk.resize(len, 0);
    Ok(chunk.into_boxed_slice())
}

/// The parts of `bufs`, taken as one run of bytes, that hold `range`.
fn pieces<'a>(bufs: &'a [&'a [u8]], range: Range<usize>) -> impl Iterator<Item = &'a [u8]> {
    let mut start = 0;
    bufs.iter().filter_map(move |buf| {
        let (from, to) = (start, start + buf.len());
        start = to;
        let (low, high) = (range.start.max(from), range.end.min(to));
        (low < high).then(|| &buf[low - from..high - from])
    })
}

/// Copy the bytes `range` of `bufs` (taken as one run) into `out`, which
/// is as long as the range.
fn copy_pieces(bufs: &[&[u8]], range: Range<usize>, out: &mut [u8]) {
    let mut at = 0;
    for piece in pieces(bufs, range) {
        out[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
}

fn is_zero(data: &[u8]) -> bool {
    // Word-wise comparison; much faster than byte-wise on large zero buffers.
    let mut words = data.chunks_exact(16);
    words.all(|w| <[u8; 16]>::try_from(w).is_ok_and(|w| u128::from_ne_bytes(w) == 0))
        && words.remainder().iter().all(|&b| b == 0)
}

impl BlockDevice for MemoryDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Grows or shrinks the device; what is cut off is gone (growing again
    /// shows zeros there).
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let new_len = u64::from(self.block_size)
            .checked_mul(num_blocks)
            .filter(|&n| n > 0)
            .ok_or(BlockError::OutOfRange)?;
        // Every shard locked: no chunk is read or written while the
        // geometry changes.
        let mut maps: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.write().unwrap_or_else(PoisonError::into_inner))
            .collect();
        for map in maps.iter_mut() {
            map.retain(|&index, chunk| {
                let start = index * CHUNK_SIZE as u64;
                if start >= new_len {
                    self.allocated
                        .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                    return false;
                }
                // The old or the new last chunk is short: cut or pad it.
                let want = (new_len - start).min(CHUNK_SIZE as u64) as usize;
                if chunk.len() != want {
                    let mut bytes = std::mem::take(chunk).into_vec();
                    let old = bytes.len() as u64;
                    bytes.resize(want, 0);
                    *chunk = bytes.into_boxed_slice();
                    self.allocated.fetch_sub(old, Ordering::Relaxed);
                    self.allocated.fetch_add(want as u64, Ordering::Relaxed);
                }
                true
            });
        }
        self.len.store(new_len, Ordering::Release);
        self.num_blocks.store(num_blocks, Ordering::Release);
        drop(maps);
        Ok(())
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        for seg in segments(self.byte_range(lba, buf.len())?) {
            let out = &mut buf[seg.buf];
            match self.read_shard(seg.chunk).get(&seg.chunk) {
                Some(chunk) => out.copy_from_slice(&chunk[seg.within..seg.within + out.len()]),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.store(lba, &[buf])
    }

    /// All buffers in one store; FUA needs nothing more (no write cache).
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        _flags: WriteFlags,
    ) -> Result<(), BlockError> {
        self.store(lba, bufs)
    }

    /// Data is in its final place as soon as `write` returns: no write
    /// cache (the default `flush` applies). Unmapped blocks read as zeros,
    /// zeroing costs nothing, and which chunks hold memory is known. A
    /// write of any length is all-or-nothing if it fails (see `store`);
    /// a crash loses the whole disk, never part of a write.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .unmap(true)
            .unmap_reads_zeroes(true)
            .write_zeroes(true)
            .lba_status(true)
            .atomic_write_blocks(u64::MAX)
    }

    fn product_name(&self) -> &str {
        "RAM disk"
    }

    /// Unmapped blocks read as zeros; whole chunks give their memory back.
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        self.discard(extent.lba, extent.blocks)
    }

    /// The same as [`unmap`](Self::unmap): zeros cost no memory here.
    fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        self.discard(extent.lba, extent.blocks)
    }

    /// Mapped means: in a chunk that holds memory.
    fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        if lba >= self.num_blocks() {
            return Err(BlockError::OutOfRange);
        }
        let block_size = u64::from(self.block_size);
        let chunk = CHUNK_SIZE as u64;
        let index = lba * block_size / chunk;
        let mapped = self.is_allocated(index);
        let end_chunk = if mapped {
            // Runs of allocated chunks are as long as the data they hold.
            let mut next = index + 1;
            while next.saturating_mul(chunk) < self.len_bytes() && self.is_allocated(next) {
                next += 1;
            }
            next
        } else {
            self.next_allocated(index)
                .unwrap_or_else(|| self.len_bytes().div_ceil(chunk))
        };
        let end = end_chunk.saturating_mul(chunk).min(self.len_bytes());
        let extent = Extent::new(lba, end.div_ceil(block_size) - lba);
        Ok(if mapped {
            ExtentStatus::mapped(extent)
        } else {
            ExtentStatus::deallocated(extent)
        })
    }
}

impl fmt::Debug for MemoryDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDevice")
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pattern;
    use proptest::prelude::*;
    use scsi_emu::WriteFlags;

    const CHUNK: u64 = CHUNK_SIZE as u64;

    thread_local! {
        /// How many more chunks this thread's writes may allocate.
        static CHUNKS_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }

    /// Whether a test lets this thread allocate one more chunk (tests of
    /// running out of memory).
    pub(super) fn may_allocate_chunk() -> bool {
        CHUNKS_LEFT.with(|left| match left.get() {
            0 => false,
            n => {
                left.set(n - 1);
                true
            }
        })
    }

    fn read_vec(dev: &MemoryDevice, lba: u64, blocks: usize) -> Vec<u8> {
        let mut buf = vec![0xee; blocks * dev.block_size() as usize];
        dev.read(lba, &mut buf).unwrap();
        buf
    }

    #[test]
    fn resize_keeps_the_data_inside_and_zeroes_what_comes_back() {
        // 1.5 chunks: the last chunk is short.
        let blocks = (CHUNK_SIZE + CHUNK_SIZE / 2) as u64 / 512;
        let dev = MemoryDevice::new(512, blocks).unwrap();
        dev.write(blocks - 1, &[0x11; 512]).unwrap();
        dev.write(0, &[0x22; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), (CHUNK_SIZE + CHUNK_SIZE / 2) as u64);
        // Growing pads the short chunk to a whole one.
        dev.resize(blocks * 4).unwrap();
        assert_eq!(
            (dev.num_blocks(), dev.len_bytes()),
            (blocks * 4, blocks * 4 * 512)
        );
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK_SIZE as u64);
        assert_eq!(read_vec(&dev, blocks - 1, 1), vec![0x11; 512]);
        assert_eq!(read_vec(&dev, blocks, 4), vec![0; 4 * 512]);
        dev.write(blocks * 4 - 1, &[0x33; 512]).unwrap();
        // Shrinking drops what lies beyond; it reads as zeros after growing again.
        dev.resize(1).unwrap();
        assert_eq!(dev.allocated_bytes(), 512);
        assert_eq!(dev.read(1, &mut [0; 512]), Err(BlockError::OutOfRange));
        dev.resize(blocks * 4).unwrap();
        assert_eq!(read_vec(&dev, 0, 1), vec![0x22; 512]);
        assert_eq!(read_vec(&dev, blocks - 1, 1), vec![0; 512]);
        assert_eq!(read_vec(&dev, blocks * 4 - 1, 1), vec![0; 512]);
        assert_eq!(dev.allocated_bytes(), CHUNK_SIZE as u64);
        assert_eq!(dev.resize(0), Err(BlockError::OutOfRange));
        assert_eq!(dev.resize(u64::MAX), Err(BlockError::OutOfRange));
    }

    #[test]
    fn new_validates_geometry() {
        for bs in [512, 1024, 2048, 4096] {
            let dev = MemoryDevice::new(bs, 7).unwrap();
            assert_eq!(dev.block_size(), bs);
            assert_eq!(dev.num_blocks(), 7);
            assert_eq!(dev.len_bytes(), u64::from(bs) * 7);
            assert_eq!(dev.allocated_bytes(), 0);
        }
        for bs in [0, 1, 256, 513, 768, 3072, 8192, u32::MAX] {
            assert_eq!(
                MemoryDevice::new(bs, 8).unwrap_err(),
                MemoryDeviceError::InvalidBlockSize(bs)
            );
        }
        assert_eq!(
            MemoryDevice::new(512, 0).unwrap_err(),
            MemoryDeviceError::NoBlocks
        );
        assert_eq!(
            MemoryDevice::new(4096, u64::MAX / 4096 + 1).unwrap_err(),
            MemoryDeviceError::TooLarge {
                block_size: 4096,
                num_blocks: u64::MAX / 4096 + 1
            }
        );
        assert!(MemoryDevice::new(4096, u64::MAX / 4096).is_ok());
        assert!(
            MemoryDeviceError::InvalidBlockSize(100)
                .to_string()
                .contains("100")
        );
    }

    #[test]
    fn is_zero_checks_every_byte() {
        assert!(is_zero(&[]));
        for len in [1, 15, 16, 17, 33, 4096] {
            assert!(is_zero(&vec![0; len]), "len {len}");
            for pos in [0, len / 2, len - 1] {
                let mut data = vec![0; len];
                data[pos] = 0x80;
                assert!(!is_zero(&data), "len {len}, non-zero at {pos}");
            }
        }
    }

    #[test]
    fn device_properties() {
        let dev = MemoryDevice::new(512, 16).unwrap();
        assert_eq!(dev.product_name(), "RAM disk");
        assert!(dev.product_name().len() <= 16);
        assert!(!dev.capabilities().write_cache);
        assert!(!dev.capabilities().read_only);
        assert_eq!(dev.flush(), Ok(()));
        dev.write_vectored(2, &[&[9; 512]], WriteFlags::FUA)
            .unwrap();
        assert_eq!(read_vec(&dev, 2, 1), vec![9; 512]);
    }

    #[test]
    fn unwritten_blocks_read_as_zeros() {
        let dev = MemoryDevice::new(512, 1024).unwrap();
        assert_eq!(read_vec(&dev, 0, 1024), vec![0; 512 * 1024]);
        dev.write(5, &[1; 512]).unwrap();
        // Neighbours of a written block, inside the same chunk, stay zero.
        assert_eq!(read_vec(&dev, 4, 1), vec![0; 512]);
        assert_eq!(read_vec(&dev, 6, 1), vec![0; 512]);
    }

    #[test]
    fn read_after_write_across_chunk_boundaries() {
        let dev = MemoryDevice::new(512, 1024).unwrap(); // 8 chunks
        // Starts 3 blocks before the end of chunk 0 and ends inside chunk 3.
        let lba = CHUNK / 512 - 3;
        let data = pattern(3 * CHUNK_SIZE, 7);
        dev.write(lba, &data).unwrap();
        assert_eq!(read_vec(&dev, lba, data.len() / 512), data);
        assert_eq!(dev.allocated_bytes(), 4 * CHUNK);

        // A read that is offset from the write sees the right slice of it,
        // with zeros where it extends past the written range.
        let got = read_vec(&dev, lba + 200, 3 * CHUNK_SIZE / 512);
        assert_eq!(got[..data.len() - 200 * 512], data[200 * 512..]);
        assert!(got[data.len() - 200 * 512..].iter().all(|&b| b == 0));
        assert_eq!(read_vec(&dev, lba - 1, 1), vec![0; 512]);

        // Overwriting part of it changes only that part.
        dev.write(lba + 1, &[0xcc; 1024]).unwrap();
        let got = read_vec(&dev, lba, data.len() / 512);
        assert_eq!(got[..512], data[..512]);
        assert_eq!(got[512..1536], [0xcc; 1024]);
        assert_eq!(got[1536..], data[1536..]);
    }

    #[test]
    fn zero_writes_allocate_nothing() {
        let dev = MemoryDevice::new(4096, 64).unwrap();
        dev.write(0, &vec![0; 64 * 4096]).unwrap();
        assert_eq!(dev.allocated_bytes(), 0);
        // A single non-zero byte at the very end is not mistaken for zeros.
        let mut data = vec![0; 4096];
        data[4095] = 1;
        dev.write(20, &data).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        assert_eq!(read_vec(&dev, 20, 1), data);
    }

    #[test]
    fn allocated_bytes_grows_only_with_written_chunks() {
        let dev = MemoryDevice::new(512, 4096).unwrap(); // 32 chunks
        let per_chunk = CHUNK / 512;
        dev.write(0, &[1; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        dev.write(1, &[2; 512]).unwrap(); // same chunk
        dev.write(per_chunk - 1, &[3; 512]).unwrap(); // still the same chunk
        assert_eq!(dev.allocated_bytes(), CHUNK);
        dev.write(per_chunk, &[4; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        dev.write(31 * per_chunk, &[5; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), 3 * CHUNK);
        // Zeros into part of an allocated chunk keep it.
        dev.write(0, &[0; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), 3 * CHUNK);
        // Zeros over a whole chunk release it.
        dev.write(per_chunk, &[0; CHUNK_SIZE]).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        assert_eq!(read_vec(&dev, per_chunk, 1), vec![0; 512]);
        assert_eq!(read_vec(&dev, 1, 1), vec![2; 512]);
    }

    #[test]
    fn short_last_chunk_is_allocated_at_its_size() {
        // One full chunk plus two blocks.
        let blocks = CHUNK / 512 + 2;
        let dev = MemoryDevice::new(512, blocks).unwrap();
        dev.write(blocks - 1, &[8; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), 1024);
        assert_eq!(read_vec(&dev, blocks - 2, 2)[512..], [8; 512]);
    }

    #[test]
    fn huge_sparse_device_works_at_both_ends() {
        let blocks = u64::MAX / 4096;
        let dev = MemoryDevice::new(4096, blocks).unwrap();
        dev.write(blocks - 1, &[0x42; 4096]).unwrap();
        dev.write(0, &[0x24; 4096]).unwrap();
        assert_eq!(read_vec(&dev, blocks - 1, 1), vec![0x42; 4096]);
        assert_eq!(read_vec(&dev, 0, 1), vec![0x24; 4096]);
        assert!(dev.allocated_bytes() <= 2 * CHUNK);
        assert_eq!(dev.write(blocks, &[1; 4096]), Err(BlockError::OutOfRange));
    }

    #[test]
    fn out_of_range_requests_are_rejected() {
        let dev = MemoryDevice::new(512, 100).unwrap();
        for (lba, len) in [
            (100, 512),             // starts at the end
            (99, 1024),             // runs past the end
            (0, 101 * 512),         // larger than the device
            (u64::MAX, 512),        // lba + blocks overflows
            (u64::MAX / 512, 1024), // lba * block size would overflow
            (0, 511),               // not a whole block
            (0, 513),
            (101, 0), // empty, but starts beyond the end
        ] {
            assert_eq!(
                dev.read(lba, &mut vec![0; len]),
                Err(BlockError::OutOfRange),
                "read lba {lba} len {len}"
            );
            assert_eq!(
                dev.write(lba, &vec![1; len]),
                Err(BlockError::OutOfRange),
                "write lba {lba} len {len}"
            );
        }
        // Rejected writes leave nothing behind.
        assert_eq!(dev.allocated_bytes(), 0);
        assert_eq!(read_vec(&dev, 0, 100), vec![0; 100 * 512]);
        // The edges themselves are fine.
        assert_eq!(dev.read(100, &mut []), Ok(()));
        assert_eq!(dev.write(99, &[7; 512]), Ok(()));
        assert_eq!(read_vec(&dev, 99, 1), vec![7; 512]);
    }

    #[test]
    fn concurrent_writers_on_disjoint_ranges() {
        const THREADS: usize = 8;
        // Not a divisor of the chunk size: neighbouring threads share chunks.
        const BLOCKS_PER_THREAD: u64 = 300;
        let dev = MemoryDevice::new(512, THREADS as u64 * BLOCKS_PER_THREAD).unwrap();

        std::thread::scope(|s| {
            for t in 0..THREADS {
                let dev = &dev;
                s.spawn(move || {
                    let base = t as u64 * BLOCKS_PER_THREAD;
                    for round in 0..50u64 {
                        let seed = (t as u8) << 4 | (round as u8 & 0xf);
                        let blocks = 1 + (round * 37 + t as u64) % BLOCKS_PER_THREAD;
                        let lba = base + (round * 53) % (BLOCKS_PER_THREAD - blocks + 1);
                        let data = pattern(blocks as usize * 512, seed);
                        dev.write(lba, &data).unwrap();
                        assert_eq!(read_vec(dev, lba, blocks as usize), data);
                    }
                    // Leave a known final state in the whole range.
                    let last = pattern(BLOCKS_PER_THREAD as usize * 512, t as u8);
                    dev.write(base, &last).unwrap();
                });
            }
        });

        for t in 0..THREADS {
            let base = t as u64 * BLOCKS_PER_THREAD;
            assert_eq!(
                read_vec(&dev, base, BLOCKS_PER_THREAD as usize),
                pattern(BLOCKS_PER_THREAD as usize * 512, t as u8),
                "range of thread {t}"
            );
        }
        let total = THREADS as u64 * BLOCKS_PER_THREAD * 512;
        assert_eq!(dev.allocated_bytes(), total);
    }

    #[test]
    fn usable_as_shared_trait_object() {
        let dev: std::sync::Arc<dyn BlockDevice> =
            std::sync::Arc::new(MemoryDevice::new(512, 8).unwrap());
        dev.write(1, &[3; 512]).unwrap();
        let mut buf = [0; 512];
        dev.read(1, &mut buf).unwrap();
        assert_eq!(buf, [3; 512]);
    }

    #[test]
    fn advertises_unmap_write_zeroes_and_atomic_writes() {
        let dev = MemoryDevice::new(512, 16).unwrap();
        assert!(dev.capabilities().unmap);
        assert!(dev.capabilities().unmap_reads_zeroes);
        assert!(dev.capabilities().write_zeroes);
        assert_eq!(dev.capabilities().atomic_write_blocks, u64::MAX);
    }

    #[test]
    fn vectored_writes_store_buffers_split_anywhere() {
        let dev = MemoryDevice::new(512, 4 * CHUNK / 512).unwrap(); // 4 chunks
        // From 2 blocks before the end of chunk 0 to inside chunk 2, in
        // buffers that split blocks and chunks at other places; the part
        // in chunk 1 is zeros, which a vacant chunk does not allocate.
        let lba = CHUNK / 512 - 2;
        let mut data = pattern(CHUNK_SIZE + 3 * 512, 5);
        data[1024..1024 + CHUNK_SIZE].fill(0);
        let (a, rest) = data.split_at(700);
        let (b, c) = rest.split_at(CHUNK_SIZE);
        dev.write_vectored(lba, &[a, &[], b, c], WriteFlags::NONE)
            .unwrap();
        assert_eq!(read_vec(&dev, lba, data.len() / 512), data);
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        // Zeros over the whole of an allocated chunk give it back.
        let zeros = vec![0u8; CHUNK_SIZE];
        let (x, y) = zeros.split_at(100 * 512 + 7);
        dev.write_vectored(2 * CHUNK / 512, &[x, y], WriteFlags::FUA)
            .unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        assert_eq!(read_vec(&dev, lba, 2), data[..1024]);
        // Out of range: refused before anything is stored.
        assert_eq!(
            dev.write_vectored(
                4 * CHUNK / 512 - 1,
                &[&[1; 512], &[2; 512]],
                WriteFlags::NONE
            ),
            Err(BlockError::OutOfRange)
        );
        assert_eq!(read_vec(&dev, 4 * CHUNK / 512 - 1, 1), vec![0; 512]);
    }

    #[test]
    fn a_write_that_runs_out_of_memory_changes_nothing() {
        let dev = MemoryDevice::new(512, 4 * CHUNK / 512).unwrap(); // 4 chunks
        let old = pattern(512, 1);
        dev.write(CHUNK / 512 - 1, &old).unwrap();
        // From the last block of chunk 0 (allocated) over chunks 1 and 2
        // (vacant): the memory for chunk 2 is missing.
        let data = pattern(CHUNK_SIZE + 2 * 512, 2);
        CHUNKS_LEFT.with(|left| left.set(1));
        assert_eq!(dev.write(CHUNK / 512 - 1, &data), Err(BlockError::NoSpace));
        CHUNKS_LEFT.with(|left| left.set(usize::MAX));
        assert_eq!(read_vec(&dev, CHUNK / 512 - 1, 1), old);
        assert_eq!(
            read_vec(&dev, CHUNK / 512, CHUNK_SIZE / 512 + 1),
            vec![0; CHUNK_SIZE + 512]
        );
        assert_eq!(dev.allocated_bytes(), CHUNK);
        // With the memory there, the same write is stored whole.
        dev.write(CHUNK / 512 - 1, &data).unwrap();
        assert_eq!(read_vec(&dev, CHUNK / 512 - 1, data.len() / 512), data);
        assert_eq!(dev.allocated_bytes(), 3 * CHUNK);
    }

    #[test]
    fn unmap_of_whole_chunks_releases_them() {
        let dev = MemoryDevice::new(512, 4 * CHUNK / 512).unwrap(); // 4 chunks
        let per_chunk = CHUNK / 512;
        dev.write(0, &pattern(4 * CHUNK_SIZE, 3)).unwrap();
        assert_eq!(dev.allocated_bytes(), 4 * CHUNK);
        // Chunks 1 and 2.
        dev.unmap(Extent::new(per_chunk, 2 * per_chunk)).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        assert_eq!(
            read_vec(&dev, per_chunk, 2 * per_chunk as usize),
            vec![0; 2 * CHUNK_SIZE]
        );
        // The neighbours keep their data.
        let data = pattern(4 * CHUNK_SIZE, 3);
        assert_eq!(read_vec(&dev, 0, per_chunk as usize), data[..CHUNK_SIZE]);
        assert_eq!(
            read_vec(&dev, 3 * per_chunk, per_chunk as usize),
            data[3 * CHUNK_SIZE..]
        );
    }

    #[test]
    fn unmap_of_part_of_a_chunk_zeroes_only_that_part() {
        let dev = MemoryDevice::new(512, 2 * CHUNK / 512).unwrap();
        let data = pattern(2 * CHUNK_SIZE, 9);
        dev.write(0, &data).unwrap();
        // From block 3 of chunk 0 into the middle of chunk 1: no whole chunk.
        let (lba, blocks) = (3, CHUNK / 512);
        dev.unmap(Extent::new(lba, blocks)).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        let mut want = data.clone();
        want[3 * 512..(3 + CHUNK as usize / 512) * 512].fill(0);
        assert_eq!(read_vec(&dev, 0, 2 * CHUNK_SIZE / 512), want);
    }

    #[test]
    fn unmap_releases_a_chunk_left_all_zero() {
        let dev = MemoryDevice::new(512, 2 * CHUNK / 512).unwrap();
        dev.write(10, &[1; 1024]).unwrap();
        dev.write(CHUNK / 512 + 5, &[2; 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        // Only part of chunk 0, but all of its data.
        dev.unmap(Extent::new(8, 8)).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        assert_eq!(read_vec(&dev, 0, CHUNK_SIZE / 512), vec![0; CHUNK_SIZE]);
        // Unmapping what was never written allocates nothing.
        dev.unmap(Extent::new(0, 4)).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
    }

    #[test]
    fn unmap_to_the_end_releases_the_short_last_chunk() {
        let blocks = CHUNK / 512 + 2;
        let dev = MemoryDevice::new(512, blocks).unwrap();
        dev.write(0, &vec![5; blocks as usize * 512]).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK + 1024);
        dev.unmap(Extent::new(CHUNK / 512, 2)).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        assert_eq!(read_vec(&dev, CHUNK / 512, 2), vec![0; 1024]);
        assert_eq!(read_vec(&dev, 0, 1), vec![5; 512]);
    }

    #[test]
    fn unmap_of_a_huge_sparse_device_is_cheap_and_complete() {
        // 2^40 blocks = 2^27 chunks: visiting each would take far too long.
        let blocks = 1u64 << 40;
        let dev = MemoryDevice::new(4096, blocks).unwrap();
        for lba in [0, 12345, blocks / 2, blocks - 1] {
            dev.write(lba, &[0x77; 4096]).unwrap();
        }
        assert_eq!(dev.allocated_bytes(), 4 * CHUNK);
        dev.unmap(Extent::new(1, blocks - 1)).unwrap();
        assert_eq!(dev.allocated_bytes(), CHUNK);
        assert_eq!(read_vec(&dev, 0, 1), vec![0x77; 4096]);
        for lba in [12345, blocks / 2, blocks - 1] {
            assert_eq!(read_vec(&dev, lba, 1), vec![0; 4096], "lba {lba}");
        }
        dev.write_zeroes(Extent::new(0, blocks)).unwrap();
        assert_eq!(dev.allocated_bytes(), 0);
    }

    #[test]
    fn unmap_and_write_zeroes_check_the_range() {
        let dev = MemoryDevice::new(512, 100).unwrap();
        dev.write(99, &[1; 512]).unwrap();
        for (lba, blocks) in [(100, 1), (99, 2), (0, 101), (u64::MAX, 2)] {
            assert_eq!(
                dev.unmap(Extent::new(lba, blocks)),
                Err(BlockError::OutOfRange)
            );
            assert_eq!(
                dev.write_zeroes(Extent::new(lba, blocks)),
                Err(BlockError::OutOfRange)
            );
        }
        // Rejected requests change nothing.
        assert_eq!(read_vec(&dev, 99, 1), vec![1; 512]);
        assert_eq!(dev.unmap(Extent::new(100, 0)), Ok(()));
        assert_eq!(dev.write_zeroes(Extent::new(99, 1)), Ok(()));
        assert_eq!(read_vec(&dev, 99, 1), vec![0; 512]);
        assert_eq!(dev.allocated_bytes(), 0);
    }

    #[test]
    fn lba_status_follows_allocated_chunks() {
        let per_chunk = CHUNK / 512;
        // Five chunks and a short sixth one of 8 blocks.
        let blocks = 5 * per_chunk + 8;
        let dev = MemoryDevice::new(512, blocks).unwrap();
        assert_eq!(
            dev.lba_status(0),
            Ok(ExtentStatus::deallocated(Extent::new(0, blocks)))
        );
        assert_eq!(
            dev.lba_status(blocks - 1),
            Ok(ExtentStatus::deallocated(Extent::new(blocks - 1, 1)))
        );
        assert_eq!(dev.lba_status(blocks), Err(BlockError::OutOfRange));

        // Chunks 1 and 2, and the short last one.
        dev.write(per_chunk + 3, &[1; 512]).unwrap();
        dev.write(2 * per_chunk, &[1; 512]).unwrap();
        dev.write(blocks - 1, &[1; 512]).unwrap();
        assert_eq!(
            dev.lba_status(0),
            Ok(ExtentStatus::deallocated(Extent::new(0, per_chunk)))
        );
        assert_eq!(
            dev.lba_status(5),
            Ok(ExtentStatus::deallocated(Extent::new(5, per_chunk - 5)))
        );
        assert_eq!(
            dev.lba_status(per_chunk),
            Ok(ExtentStatus::mapped(Extent::new(per_chunk, 2 * per_chunk)))
        );
        assert_eq!(
            dev.lba_status(per_chunk + 10),
            Ok(ExtentStatus::mapped(Extent::new(
                per_chunk + 10,
                2 * per_chunk - 10
            )))
        );
        assert_eq!(
            dev.lba_status(3 * per_chunk),
            Ok(ExtentStatus::deallocated(Extent::new(
                3 * per_chunk,
                2 * per_chunk
            )))
        );
        assert_eq!(
            dev.lba_status(5 * per_chunk),
            Ok(ExtentStatus::mapped(Extent::new(5 * per_chunk, 8)))
        );
        assert_eq!(
            dev.lba_status(blocks - 1),
            Ok(ExtentStatus::mapped(Extent::new(blocks - 1, 1)))
        );

        dev.unmap(Extent::new(per_chunk, 2 * per_chunk)).unwrap();
        assert_eq!(
            dev.lba_status(0),
            Ok(ExtentStatus::deallocated(Extent::new(0, 5 * per_chunk)))
        );
    }

    #[test]
    fn lba_status_of_a_huge_sparse_device() {
        let blocks = 1u64 << 40;
        let dev = MemoryDevice::new(4096, blocks).unwrap();
        dev.write(blocks / 2, &[1; 4096]).unwrap();
        let per_chunk = CHUNK / 4096;
        assert_eq!(
            dev.lba_status(0),
            Ok(ExtentStatus::deallocated(Extent::new(0, blocks / 2)))
        );
        assert_eq!(
            dev.lba_status(blocks / 2),
            Ok(ExtentStatus::mapped(Extent::new(blocks / 2, per_chunk)))
        );
        assert_eq!(
            dev.lba_status(blocks / 2 + per_chunk),
            Ok(ExtentStatus::deallocated(Extent::new(
                blocks / 2 + per_chunk,
                blocks / 2 - per_chunk
            )))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { lba: u64, blocks: usize, seed: u8 },
        Zero { lba: u64, blocks: usize },
        Unmap { lba: u64, blocks: usize },
        Read { lba: u64, blocks: usize },
    }

    const MODEL_BLOCK: usize = 512;
    // Two full chunks and a short third one.
    const MODEL_BLOCKS: u64 = 300;

    fn op() -> impl Strategy<Value = Op> {
        // Ranges reach a little past the end so rejections are exercised too.
        let lba = 0..MODEL_BLOCKS + 4;
        let blocks = 0usize..=160;
        prop_oneof![
            3 => (lba.clone(), blocks.clone(), any::<u8>())
                .prop_map(|(lba, blocks, seed)| Op::Write { lba, blocks, seed }),
            1 => (lba.clone(), blocks.clone()).prop_map(|(lba, blocks)| Op::Zero { lba, blocks }),
            1 => (lba.clone(), blocks.clone()).prop_map(|(lba, blocks)| Op::Unmap { lba, blocks }),
            2 => (lba, blocks).prop_map(|(lba, blocks)| Op::Read { lba, blocks }),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_flat_buffer(ops in prop::collection::vec(op(), 1..40)) {
            let dev = MemoryDevice::new(MODEL_BLOCK as u32, MODEL_BLOCKS).unwrap();
            let mut model = vec![0u8; MODEL_BLOCKS as usize * MODEL_BLOCK];
            let in_range = |lba: u64, blocks: usize| lba + blocks as u64 <= MODEL_BLOCKS;

            for op in ops {
                match op {
                    Op::Write { lba, blocks, .. } | Op::Zero { lba, blocks } => {
                        let data = match op {
                            Op::Write { seed, .. } => pattern(blocks * MODEL_BLOCK, seed),
                            _ => vec![0; blocks * MODEL_BLOCK],
                        };
                        let result = dev.write(lba, &data);
                        if in_range(lba, blocks) {
                            prop_assert_eq!(result, Ok(()));
                            let start = lba as usize * MODEL_BLOCK;
                            model[start..start + data.len()].copy_from_slice(&data);
                        } else {
                            prop_assert_eq!(result, Err(BlockError::OutOfRange));
                        }
                    }
                    Op::Unmap { lba, blocks } => {
                        let result = dev.unmap(Extent::new(lba, blocks as u64));
                        if in_range(lba, blocks) {
                            prop_assert_eq!(result, Ok(()));
                            let start = lba as usize * MODEL_BLOCK;
                            model[start..start + blocks * MODEL_BLOCK].fill(0);
                        } else {
                            prop_assert_eq!(result, Err(BlockError::OutOfRange));
                        }
                    }
                    Op::Read { lba, blocks } => {
                        let mut buf = vec![0xee; blocks * MODEL_BLOCK];
                        let result = dev.read(lba, &mut buf);
                        if in_range(lba, blocks) {
                            prop_assert_eq!(result, Ok(()));
                            let start = lba as usize * MODEL_BLOCK;
                            prop_assert_eq!(&buf[..], &model[start..start + buf.len()]);
                        } else {
                            prop_assert_eq!(result, Err(BlockError::OutOfRange));
                        }
                    }
                }
            }

            prop_assert_eq!(read_vec(&dev, 0, MODEL_BLOCKS as usize), model.clone());
            // Every chunk holding data is allocated; nothing beyond the device is.
            let needed: u64 = model
                .chunks(CHUNK_SIZE)
                .filter(|c| c.iter().any(|&b| b != 0))
                .map(|c| c.len() as u64)
                .sum();
            prop_assert!(dev.allocated_bytes() >= needed);
            prop_assert!(dev.allocated_bytes() <= dev.len_bytes());
        }
    }
}
