//! The shared area: the one module of this crate that touches raw memory.
//!
//! Everything in the shared area can be written by the kernel at any moment,
//! so no Rust reference into the ring or mailbox ever exists: fields are read
//! and written through bounds-checked volatile or atomic accesses at byte
//! offsets, and values are copied out before they are validated. The only
//! slices handed out cover a command's data buffer, which the kernel does not
//! touch while the command is in flight (see [`DataSegments`]).
//!
//! The rules, and who keeps them:
//! - The accessors that read or write at an offset are private to this
//!   crate; outside it a [`SharedMap`] is an opaque handle. The simulated
//!   kernel's one public write ([`SharedMap`] through `SimKernel::overwrite`)
//!   refuses bytes lent to a data buffer.
//! - A data page is lent to at most one live [`DataSegments`] of its map:
//!   the map keeps the set of lent pages, [`DataSegments::claim`] is the only
//!   way to make one, and dropping it gives the pages back. So two buffers
//!   never alias, whatever the entries in the ring say.
//! - The one exception argued here rather than enforced: a second mapping of
//!   the same device (a second `SharedMap` over the same UIO file) is other
//!   memory to Rust. The framework maps a device once per process.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use memmap2::MmapRaw;

use crate::bitmap::BitSet;
// Data buffers are lent in the kernel's data pages.
use crate::layout::DATA_PAGE as PAGE;

/// An access outside the shared area, or a misaligned atomic access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} bytes at offset {offset:#x} is outside the {map_len:#x}-byte shared area")]
pub struct OutOfBounds {
    /// Offset of the access from the start of the shared area.
    pub offset: u64,
    /// Length of the access in bytes.
    pub len: u64,
    /// Size of the shared area in bytes.
    pub map_len: usize,
}

/// Page-aligned heap memory standing in for the kernel's mapping.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[allow(dead_code)] // held only to keep the memory alive
enum Backing {
    Mmap(MmapRaw),
    Heap(Box<[Page]>),
}

/// Bytes of the shared area lent to a live data buffer, which nothing else
/// may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes at offset {offset:#x} are (partly) a data buffer handed out")]
pub struct Lent {
    /// Offset of the access from the start of the shared area.
    pub offset: u64,
    /// Length of the access in bytes.
    pub len: u64,
}

/// Why an access checked against lent pages was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The access leaves the shared area.
    #[error(transparent)]
    OutOfBounds(#[from] OutOfBounds),
    /// The access touches a data buffer handed out.
    #[error(transparent)]
    Lent(#[from] Lent),
}

/// The mapped TCMU area (mailbox, command ring, data area).
///
/// Outside this crate it is an opaque handle: what it holds is reached only
/// through a [`Ring`](crate::Ring) and the [`DataSegments`] it hands out.
/// Safe code cannot write into the area:
///
/// ```compile_fail
/// let map = tcmu_core::SharedMap::anonymous(8192);
/// map.write_bytes(4096, b"under a command in flight").unwrap();
/// ```
///
/// (while the handle itself is usable: `tcmu_core::SharedMap::anonymous(8192).len()`).
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    /// Pages lent to live data buffers, one bit per page of the map.
    lent: Mutex<BitSet>,
    _backing: Backing,
}

// SAFETY: the map is plain memory; every access at an offset is a
// raw-pointer volatile or atomic operation, and the only references into it
// are the slices of `DataSegments`, whose pages the map lends to one buffer
// at a time (under its mutex). Sharing the handle between threads is sound.
unsafe impl Send for SharedMap {}
// SAFETY: as above: two threads can never hold aliasing slices, because
// two live buffers never share a page.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Wrap a mapping of the UIO device.
    pub fn from_mmap(map: MmapRaw) -> Self {
        let len = map.len();
        let ptr = NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling());
        SharedMap {
            ptr,
            len,
            lent: Mutex::new(BitSet::new(pages_of(len))),
            _backing: Backing::Mmap(map),
        }
    }

    /// Zeroed, page-aligned heap memory of `len` bytes (rounded up to a page):
    /// the simulated kernel's stand-in for the device mapping.
    pub fn anonymous(len: usize) -> Self {
        let pages = len.div_ceil(4096).max(1);
        let mut heap: Box<[Page]> = (0..pages).map(|_| Page([0; 4096])).collect();
        let ptr = NonNull::new(heap.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        SharedMap {
            ptr,
            len,
            lent: Mutex::new(BitSet::new(pages_of(len))),
            _backing: Backing::Heap(heap),
        }
    }

    /// Size of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the area is empty (never for a real device).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: u64, len: u64) -> Result<usize, OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => Ok(offset as usize),
            _ => Err(OutOfBounds {
                offset,
                len,
                map_len: self.len,
            }),
        }
    }

    fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32, OutOfBounds> {
        let off = self.check(offset, 4)?;
        if off % 4 != 0 {
            return Err(OutOfBounds {
                offset,
                len: 4,
                map_len: self.len,
            });
        }
        // SAFETY: the four bytes are inside the mapping (checked), 4-aligned
        // (the mapping is page-aligned and off % 4 == 0), and live as long as
        // `self`. AtomicU32 tolerates concurrent modification by the kernel.
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast::<u32>()) })
    }

    /// Load a `u32` with acquire ordering (e.g. the kernel's `cmd_head`).
    pub(crate) fn load_u32_acquire(&self, offset: u64) -> Result<u32, OutOfBounds> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Acquire))
    }

    /// Store a `u32` with release ordering (e.g. our `cmd_tail`).
    pub(crate) fn store_u32_release(&self, offset: u64, value: u32) -> Result<(), OutOfBounds> {
        self.atomic_u32(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Copy bytes out of the area into `dst`.
    pub(crate) fn read_bytes(&self, offset: u64, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let off = self.check(offset, dst.len() as u64)?;
        // SAFETY: the source range is inside the mapping (checked above) and
        // cannot overlap `dst`, which is ordinary memory. The kernel may
        // change the source concurrently; the bytes are then arbitrary, and
        // every caller validates what it copied out.
        unsafe { copy_out(self.ptr.as_ptr().add(off), dst) };
        Ok(())
    }

    /// Copy `N` bytes at `offset` out of the area with one bounds check:
    /// a fixed-size part of an entry, decoded from the copy.
    pub(crate) fn read_array<const N: usize>(&self, offset: u64) -> Result<[u8; N], OutOfBounds> {
        let mut out = [0u8; N];
        self.read_bytes(offset, &mut out)?;
        Ok(out)
    }

    /// Copy `src` into the area. Only for the ring and mailbox (the replies
    /// the ring writes, the entries the simulated kernel writes): never
    /// bytes of a data buffer handed out.
    pub(crate) fn write_bytes(&self, offset: u64, src: &[u8]) -> Result<(), OutOfBounds> {
        let off = self.check(offset, src.len() as u64)?;
        // SAFETY: the destination is inside the mapping (checked above) and
        // cannot overlap `src`; no Rust reference covers it (callers write
        // the ring and mailbox, or bytes they hold unlent, see `unlent`).
        unsafe { copy_in(src, self.ptr.as_ptr().add(off)) };
        Ok(())
    }

    /// Hold the lent-page set while touching `ranges` (offset, length) of
    /// the area outside any data buffer: `Err` when a page of them is lent
    /// now. Nothing is lent while the guard lives.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn unlent(
        &self,
        ranges: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Unlent<'_>, AccessError> {
        let held = Unlent {
            map: self,
            lent: self.lent.lock().unwrap_or_else(PoisonError::into_inner),
        };
        for (offset, len) in ranges {
            held.also(offset, len)?;
        }
        Ok(held)
    }

    /// Copy `src` to `offset` unless a page of it is lent: the simulated
    /// kernel's public way to corrupt the ring and mailbox.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn write_unlent(&self, offset: u64, src: &[u8]) -> Result<(), AccessError> {
        let _held = self.unlent([(offset, src.len() as u64)])?;
        Ok(self.write_bytes(offset, src)?)
    }

    /// Read a `u8`.
    pub(crate) fn read_u8(&self, offset: u64) -> Result<u8, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u16`.
    pub(crate) fn read_u16(&self, offset: u64) -> Result<u16, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u32`.
    pub(crate) fn read_u32(&self, offset: u64) -> Result<u32, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u64`.
    #[cfg(test)]
    pub(crate) fn read_u64(&self, offset: u64) -> Result<u64, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Write a `u8`.
    pub(crate) fn write_u8(&self, offset: u64, value: u8) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u16`.
    pub(crate) fn write_u16(&self, offset: u64, value: u16) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u32`.
    pub(crate) fn write_u32(&self, offset: u64, value: u32) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u64`.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn write_u64(&self, offset: u64, value: u64) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// One volatile load of an aligned integer, or a volatile byte copy
    /// when the offset is misaligned (only a corrupt ring produces those).
    fn read_scalar<T: Scalar>(&self, offset: u64) -> Result<T, OutOfBounds> {
        let off = self.check(offset, size_of::<T>() as u64)?;
        let p = self.ptr.as_ptr().wrapping_add(off);
        if off % align_of::<T>() == 0 {
            // SAFETY: the bytes are inside the mapping (checked above) and
            // the pointer is aligned for T (the mapping is page-aligned and
            // off is a multiple of T's alignment); any bit pattern is a
            // valid integer.
            Ok(unsafe { p.cast::<T>().read_volatile() })
        } else {
            let mut bytes = [0u8; 8];
            let bytes = &mut bytes[..size_of::<T>()];
            // SAFETY: as in `read_bytes`: inside the mapping, into a local.
            unsafe { copy_out(p, bytes) };
            Ok(T::from_ne_slice(bytes))
        }
    }

    /// The store counterpart of [`read_scalar`](Self::read_scalar).
    fn write_scalar<T: Scalar>(&self, offset: u64, value: T) -> Result<(), OutOfBounds> {
        let off = self.check(offset, size_of::<T>() as u64)?;
        let p = self.ptr.as_ptr().wrapping_add(off);
        if off % align_of::<T>() == 0 {
            // SAFETY: as in read_scalar; no Rust reference covers these
            // bytes (they are in the ring or mailbox).
            unsafe { p.cast::<T>().write_volatile(value) };
        } else {
            let mut bytes = [0u8; 8];
            let bytes = &mut bytes[..size_of::<T>()];
            value.to_ne_slice(bytes);
            // SAFETY: as in `write_bytes`.
            unsafe { copy_in(bytes, p) };
        }
        Ok(())
    }
}

/// The lent-page set, held: no buffer is lent while this lives, so bytes
/// found unlent stay unlent.
#[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
pub(crate) struct Unlent<'a> {
    map: &'a SharedMap,
    lent: MutexGuard<'a, BitSet>,
}

impl Unlent<'_> {
    /// `Ok` when the range is inside the map and no page of it is lent.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn also(&self, offset: u64, len: u64) -> Result<(), AccessError> {
        self.map.check(offset, len)?;
        if self.lent.any(page_range(offset, len)) {
            return Err(Lent { offset, len }.into());
        }
        Ok(())
    }
}

/// Number of pages that cover `len` bytes.
fn pages_of(len: usize) -> usize {
    (len as u64).div_ceil(PAGE) as usize
}

/// The pages (numbered from the start of the map) that `len` bytes at
/// `offset` touch; empty for no bytes. The caller checked the range.
fn page_range(offset: u64, len: u64) -> std::ops::Range<usize> {
    if len == 0 {
        return 0..0;
    }
    (offset / PAGE) as usize..((offset + len - 1) / PAGE + 1) as usize
}

/// Copy out of memory another party may write at any time: every load is
/// volatile (eight bytes at a time where aligned), never a plain copy the
/// compiler could split, repeat or elide.
///
/// # Safety
/// `src..src + dst.len()` lies inside one live mapping.
unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    // SAFETY: every `src.add(i)` stays inside the range the
    // caller vouched for; the u64 loads are at 8-aligned addresses.
    unsafe {
        while i < n && (src as usize + i) % 8 != 0 {
            dst[i] = src.add(i).read_volatile();
            i += 1;
        }
        while i + 8 <= n {
            let word = src.add(i).cast::<u64>().read_volatile();
            dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
            i += 8;
        }
        while i < n {
            dst[i] = src.add(i).read_volatile();
            i += 1;
        }
    }
}

/// The store counterpart of [`copy_out`].
///
/// # Safety
/// `dst..dst + src.len()` lies inside one live mapping and no Rust
/// reference covers it.
unsafe fn copy_in(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let mut i = 0;
    // SAFETY: as in `copy_out`, for the destination.
    unsafe {
        while i < n && (dst as usize + i) % 8 != 0 {
            dst.add(i).write_volatile(src[i]);
            i += 1;
        }
        while i + 8 <= n {
            let mut word = [0u8; 8];
            word.copy_from_slice(&src[i..i + 8]);
            dst.add(i)
                .cast::<u64>()
                .write_volatile(u64::from_ne_bytes(word));
            i += 8;
        }
        while i < n {
            dst.add(i).write_volatile(src[i]);
            i += 1;
        }
    }
}

/// Plain integers: every bit pattern is a valid value.
trait Scalar: Copy {
    fn from_ne_slice(bytes: &[u8]) -> Self;
    fn to_ne_slice(self, out: &mut [u8]);
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn from_ne_slice(bytes: &[u8]) -> Self {
                let mut raw = [0u8; size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_ne_bytes(raw)
            }
            fn to_ne_slice(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
scalar!(u8, u16, u32, u64);

/// One contiguous piece of a command's data buffer: `len` bytes at `offset`
/// from the start of the shared area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset from the start of the shared area.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Up to this many regions a buffer is checked for overlaps pair by pair,
/// which allocates nothing; longer lists are sorted in a copy.
const PAIRWISE_OVERLAP_CHECK: usize = 32;

/// The data buffer of one in-flight command, as byte slices of the shared
/// area.
///
/// Invariant (established by `claim`, the only way to make
/// one): every region lies inside the map's data area, no two regions of
/// this buffer overlap, and every page they touch is lent to this buffer
/// alone until it is dropped. The kernel does not touch a command's data
/// blocks between handing the command out and seeing its completion, so
/// these bytes are exclusively ours while this value lives.
///
/// A buffer with regions keeps the map alive; an empty one (a command
/// without data, the common case for TEST UNIT READY and the like) holds
/// no reference, which spares two atomic operations per command.
pub struct DataSegments {
    /// `Some` whenever `regions` is not empty.
    map: Option<Arc<SharedMap>>,
    regions: Vec<Region>,
}

/// Why a buffer could not be made from the regions an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimError {
    /// A region lies outside the data area, or two regions overlap.
    #[error("iovecs are outside the data area or overlap")]
    Invalid,
    /// A page is lent to another live buffer.
    #[error("data buffer shares pages with another in-flight command")]
    Shared,
}

impl DataSegments {
    /// Take the regions as a buffer, lending their pages to it: refused
    /// when one lies outside `[data_start, map end)`, two overlap, or a page
    /// is lent to another live buffer. Pages shared by regions of this
    /// buffer are fine. The map is referenced only when there are regions.
    #[inline]
    pub(crate) fn claim(
        map: &Arc<SharedMap>,
        regions: Vec<Region>,
        data_start: u64,
    ) -> Result<Self, ClaimError> {
        if regions.is_empty() {
            return Ok(DataSegments { map: None, regions });
        }
        if !DataSegments::valid(map, &regions, data_start) {
            return Err(ClaimError::Invalid);
        }
        let mut lent = map.lent.lock().unwrap_or_else(PoisonError::into_inner);
        if regions
            .iter()
            .any(|r| lent.any(page_range(r.offset, r.len)))
        {
            return Err(ClaimError::Shared);
        }
        for r in &regions {
            lent.set_range(page_range(r.offset, r.len), true);
        }
        drop(lent);
        Ok(DataSegments {
            map: Some(map.clone()),
            regions,
        })
    }

    /// Whether every region lies inside `[data_start, map end)` and no two
    /// overlap.
    fn valid(map: &SharedMap, regions: &[Region], data_start: u64) -> bool {
        let end = map.len() as u64;
        let inside = |r: &Region| {
            r.offset >= data_start && r.offset.checked_add(r.len).is_some_and(|e| e <= end)
        };
        if !regions.iter().all(inside) {
            return false;
        }
        let overlap = |a: &Region, b: &Region| {
            a.len > 0 && b.len > 0 && a.offset < b.offset + b.len && b.offset < a.offset + a.len
        };
        if regions.len() <= PAIRWISE_OVERLAP_CHECK {
            // The usual case: a few segments, compared pairwise without
            // allocating (at most 496 comparisons).
            regions
                .iter()
                .enumerate()
                .all(|(i, a)| !regions[i + 1..].iter().any(|b| overlap(a, b)))
        } else {
            let mut sorted: Vec<Region> = regions.iter().copied().filter(|r| r.len > 0).collect();
            sorted.sort_unstable_by_key(|r| r.offset);
            !sorted.windows(2).any(|w| overlap(&w[0], &w[1]))
        }
    }

    /// Give the pages back (nothing can borrow from `self` any more).
    fn give_back(&mut self) {
        if let Some(map) = self.map.take() {
            let mut lent = map.lent.lock().unwrap_or_else(PoisonError::into_inner);
            for r in &self.regions {
                lent.set_range(page_range(r.offset, r.len), false);
            }
        }
    }

    /// Zero the bytes past the first `keep` (a read that returned less than
    /// its buffer, when the kernel would copy out the whole buffer).
    pub(crate) fn zero_after(&mut self, keep: u64) {
        let mut pos = 0u64;
        for i in 0..self.regions.len() {
            let len = self.regions[i].len;
            let skip = keep.saturating_sub(pos).min(len) as usize;
            self.segment_mut(i)[skip..].fill(0);
            pos += len;
        }
    }

    /// Start of the shared area, or a dangling pointer for an empty buffer
    /// (never dereferenced: there is no region to add to it).
    fn base(&self) -> *mut u8 {
        self.map
            .as_ref()
            .map_or(NonNull::dangling(), |m| m.ptr)
            .as_ptr()
    }

    /// Give the pages and the region list back (to reuse its allocation).
    pub(crate) fn into_regions(mut self) -> Vec<Region> {
        self.give_back();
        std::mem::take(&mut self.regions)
    }

    /// The regions, in buffer order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.regions.len()
    }

    /// Total length in bytes.
    pub fn total_len(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// Segment `index` as a slice.
    ///
    /// # Panics
    /// When `index >= self.count()`, like slice indexing.
    pub fn segment(&self, index: usize) -> &[u8] {
        let r = self.regions[index];
        // SAFETY: the region is inside the mapping, disjoint from every other
        // live segment (type invariant) and not written by the kernel while
        // the command is in flight; the slice borrows `self`, which holds
        // the map (there is a region, so `map` is `Some` and `base` is the
        // mapping's start) and so keeps it alive.
        unsafe { std::slice::from_raw_parts(self.base().add(r.offset as usize), r.len as usize) }
    }

    /// Segment `index` as a mutable slice.
    ///
    /// # Panics
    /// When `index >= self.count()`, like slice indexing.
    pub fn segment_mut(&mut self, index: usize) -> &mut [u8] {
        let r = self.regions[index];
        // SAFETY: as in `segment`; `&mut self` guarantees no other slice of
        // this buffer is live, and other commands' buffers are disjoint.
        unsafe {
            std::slice::from_raw_parts_mut(self.base().add(r.offset as usize), r.len as usize)
        }
    }

    /// Every segment at once, as mutable slices in `out[..n]` (no
    /// allocation); `n`, or `None` when `out` has fewer than
    /// [`count`](Self::count) places.
    pub fn segments_mut<'a>(&'a mut self, out: &mut [&'a mut [u8]]) -> Option<usize> {
        if self.regions.len() > out.len() {
            return None;
        }
        let base = self.base();
        for (slot, r) in out.iter_mut().zip(&self.regions) {
            // SAFETY: as in `segment_mut`; the regions are pairwise
            // disjoint (checked in `new`), so the slices do not alias, and
            // they borrow `self` mutably, so no other slice of this buffer
            // is live meanwhile.
            *slot = unsafe {
                std::slice::from_raw_parts_mut(base.add(r.offset as usize), r.len as usize)
            };
        }
        Some(self.regions.len())
    }
}

impl Drop for DataSegments {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset: u64, len: u64) -> Region {
        Region { offset, len }
    }

    #[test]
    fn accesses_outside_the_map_fail() {
        let m = SharedMap::anonymous(4096);
        assert!(m.read_u32(4092).is_ok());
        assert!(m.read_u32(4093).is_err());
        assert!(m.read_u64(u64::MAX - 3).is_err());
        assert!(m.write_bytes(4000, &[0; 97]).is_err());
        assert!(m.load_u32_acquire(2).is_err(), "misaligned atomic refused");
        assert!(m.store_u32_release(4096, 1).is_err());
        assert!(m.write_unlent(1, &[0; 4096]).is_err());
    }

    #[test]
    fn values_round_trip() {
        let m = SharedMap::anonymous(8192);
        m.write_u64(8, 0x0102_0304_0506_0708).unwrap();
        m.write_u16(3, 0xBEEF).unwrap();
        m.write_u32(21, 0xDEAD_BEEF).unwrap();
        m.store_u32_release(64, 77).unwrap();
        assert_eq!(m.read_u64(8).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(m.read_u16(3).unwrap(), 0xBEEF);
        assert_eq!(m.read_u32(21).unwrap(), 0xDEAD_BEEF, "misaligned");
        assert_eq!(m.load_u32_acquire(64).unwrap(), 77);
        assert_eq!(m.read_u32(64).unwrap(), 77);
    }

    #[test]
    fn volatile_copies_match_plain_ones_at_every_alignment() {
        let m = SharedMap::anonymous(8192);
        let src: Vec<u8> = (0..100u8).collect();
        for at in 0..16u64 {
            for len in [0usize, 1, 7, 8, 9, 31, 100] {
                m.write_bytes(100 + at, &src[..len]).unwrap();
                let mut back = vec![0xEE; len];
                m.read_bytes(100 + at, &mut back).unwrap();
                assert_eq!(back, src[..len], "at {at} len {len}");
            }
        }
        assert_eq!(m.read_array::<3>(115).unwrap(), [0, 1, 2], "the last copy");
    }

    #[test]
    fn segments_are_validated() {
        let m = Arc::new(SharedMap::anonymous(16384));
        assert!(DataSegments::claim(&m, vec![r(8192, 4096), r(12288, 4096)], 8192).is_ok());
        let refused = |regions, why| {
            assert_eq!(
                DataSegments::claim(&m, regions, 8192).err(),
                Some(ClaimError::Invalid),
                "{why}"
            )
        };
        refused(vec![r(4096, 4096)], "before data area");
        refused(vec![r(12288, 4097)], "past the end");
        refused(vec![r(u64::MAX, 2)], "overflow");
        refused(vec![r(8192, 100), r(8291, 10)], "overlap");
        let mut s = DataSegments::claim(&m, vec![r(12288, 10), r(8192, 10)], 8192).unwrap();
        s.segment_mut(0).copy_from_slice(b"0123456789");
        assert_eq!(s.segment(0), b"0123456789");
        assert_eq!(s.total_len(), 20);
        drop(s);
        let mut back = [0u8; 10];
        m.read_bytes(12288, &mut back).unwrap();
        assert_eq!(&back, b"0123456789");
    }

    #[test]
    fn a_page_is_lent_to_one_buffer_until_it_is_dropped() {
        let m = Arc::new(SharedMap::anonymous(16384));
        // Two regions of one buffer may share a page.
        let first = DataSegments::claim(&m, vec![r(8192, 100), r(8300, 100)], 8192).unwrap();
        assert_eq!(
            DataSegments::claim(&m, vec![r(12000, 400)], 8192).err(),
            Some(ClaimError::Shared),
            "its last page is the first buffer's"
        );
        assert!(
            m.write_unlent(8200, b"x").is_err(),
            "no write under a buffer"
        );
        assert!(m.write_unlent(12288, b"x").is_ok());
        let regions = first.into_regions();
        assert_eq!(regions.len(), 2);
        let second = DataSegments::claim(&m, vec![r(12000, 400)], 8192).unwrap();
        drop(second);
        assert!(m.write_unlent(8192, &[0; 8192]).is_ok(), "all given back");
    }

    #[test]
    fn the_tail_past_a_short_read_is_zeroed() {
        let m = Arc::new(SharedMap::anonymous(16384));
        let mut s = DataSegments::claim(&m, vec![r(8192, 4), r(12288, 4)], 8192).unwrap();
        s.segment_mut(0).copy_from_slice(b"abcd");
        s.segment_mut(1).copy_from_slice(b"efgh");
        s.zero_after(5);
        assert_eq!(
            (s.segment(0), s.segment(1)),
            (&b"abcd"[..], &b"e\0\0\0"[..])
        );
    }

    #[test]
    fn long_region_lists_are_checked_for_overlaps_too() {
        let m = Arc::new(SharedMap::anonymous(1 << 20));
        for count in [PAIRWISE_OVERLAP_CHECK, PAIRWISE_OVERLAP_CHECK + 8] {
            let disjoint: Vec<Region> = (0..count as u64).map(|i| r(8192 + i * 100, 100)).collect();
            assert!(
                DataSegments::claim(&m, disjoint.clone(), 8192).is_ok(),
                "{count}"
            );
            let mut overlapping = disjoint;
            overlapping[count - 1] = r(8192 + 50, 100);
            assert!(
                DataSegments::claim(&m, overlapping, 8192).is_err(),
                "{count}"
            );
        }
    }

    #[test]
    fn only_buffers_with_regions_hold_the_map() {
        let m = Arc::new(SharedMap::anonymous(16384));
        let mut empty = DataSegments::claim(&m, Vec::new(), 8192).unwrap();
        assert_eq!(Arc::strong_count(&m), 1);
        assert_eq!((empty.count(), empty.total_len()), (0, 0));
        assert_eq!(empty.segments_mut(&mut []), Some(0));
        let mut full = DataSegments::claim(&m, vec![r(8192, 4)], 8192).unwrap();
        assert_eq!(Arc::strong_count(&m), 2);
        drop(m);
        full.segment_mut(0).copy_from_slice(b"live");
        assert_eq!(full.segment(0), b"live");
    }
}
