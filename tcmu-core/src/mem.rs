//! The shared area: the one module of this crate that touches raw memory.
//!
//! Everything in the shared area can be written by the kernel at any moment,
//! so no Rust reference into the ring or mailbox ever exists: fields are read
//! and written through bounds-checked volatile or atomic accesses at byte
//! offsets, and values are copied out before they are validated. The only
//! slices handed out cover a command's data buffer, which the kernel does not
//! touch while the command is in flight (see [`DataSegments`]).

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapRaw;

/// An access outside the shared area, or a misaligned atomic access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} bytes at offset {offset:#x} is outside the {map_len:#x}-byte shared area")]
pub struct OutOfBounds {
    pub offset: u64,
    pub len: u64,
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

/// The mapped TCMU area (mailbox, command ring, data area).
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    _backing: Backing,
}

// SAFETY: the map is plain memory; every access goes through raw-pointer
// volatile/atomic operations or through data segments whose exclusivity the
// ring enforces, so sharing the handle between threads is sound.
unsafe impl Send for SharedMap {}
// SAFETY: as above: no method hands out references that could alias.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Wrap a mapping of the UIO device.
    pub fn from_mmap(map: MmapRaw) -> Self {
        let len = map.len();
        let ptr = NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling());
        SharedMap {
            ptr,
            len,
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
    pub fn load_u32_acquire(&self, offset: u64) -> Result<u32, OutOfBounds> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Acquire))
    }

    /// Store a `u32` with release ordering (e.g. our `cmd_tail`).
    pub fn store_u32_release(&self, offset: u64, value: u32) -> Result<(), OutOfBounds> {
        self.atomic_u32(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Copy bytes out of the area into `dst`.
    pub fn read_bytes(&self, offset: u64, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let off = self.check(offset, dst.len() as u64)?;
        // SAFETY: the source range is inside the mapping (checked above) and
        // cannot overlap `dst`, which is ordinary memory. The kernel may
        // change the source concurrently; the bytes are then arbitrary, and
        // every caller validates what it copied out.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// Copy `N` bytes at `offset` out of the area with one bounds check:
    /// a fixed-size part of an entry, decoded from the copy.
    pub(crate) fn read_array<const N: usize>(&self, offset: u64) -> Result<[u8; N], OutOfBounds> {
        let off = self.check(offset, N as u64)?;
        let mut out = [0u8; N];
        // SAFETY: as in `read_bytes`: the source range is inside the mapping
        // (checked above) and cannot overlap the local array; whatever bytes
        // the kernel left there are validated by the caller.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), N) };
        Ok(out)
    }

    /// Copy `src` into the area.
    pub fn write_bytes(&self, offset: u64, src: &[u8]) -> Result<(), OutOfBounds> {
        let off = self.check(offset, src.len() as u64)?;
        // SAFETY: the destination is inside the mapping (checked above) and
        // cannot overlap `src`; no Rust reference covers it (data segments
        // are never written through this method while in flight).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        };
        Ok(())
    }

    /// Fill `len` bytes at `offset` with zeros.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), OutOfBounds> {
        let off = self.check(offset, len)?;
        // SAFETY: the range is inside the mapping (checked above) and is not
        // covered by any live data-segment slice (callers zero only the
        // unused tail of a completed command's buffer).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(off), 0, len as usize) };
        Ok(())
    }

    /// Read a `u8`.
    pub fn read_u8(&self, offset: u64) -> Result<u8, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u16`.
    pub fn read_u16(&self, offset: u64) -> Result<u16, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u32`.
    pub fn read_u32(&self, offset: u64) -> Result<u32, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Read a native-endian `u64`.
    pub fn read_u64(&self, offset: u64) -> Result<u64, OutOfBounds> {
        self.read_scalar(offset)
    }

    /// Write a `u8`.
    pub fn write_u8(&self, offset: u64, value: u8) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u16`.
    pub fn write_u16(&self, offset: u64, value: u16) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u32`.
    pub fn write_u32(&self, offset: u64, value: u32) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// Write a native-endian `u64`.
    pub fn write_u64(&self, offset: u64, value: u64) -> Result<(), OutOfBounds> {
        self.write_scalar(offset, value)
    }

    /// One volatile load of an aligned integer, or a byte copy when the
    /// offset is misaligned (only a corrupt ring produces those).
    fn read_scalar<T: Scalar>(&self, offset: u64) -> Result<T, OutOfBounds> {
        let off = self.check(offset, size_of::<T>() as u64)?;
        // SAFETY: the bytes are inside the mapping (checked above); the
        // pointer is aligned for T when off is (the mapping is page-aligned);
        // any bit pattern is a valid integer.
        Ok(unsafe {
            let p = self.ptr.as_ptr().add(off);
            if off % align_of::<T>() == 0 {
                p.cast::<T>().read_volatile()
            } else {
                p.cast::<T>().read_unaligned()
            }
        })
    }

    /// The store counterpart of [`read_scalar`](Self::read_scalar).
    fn write_scalar<T: Scalar>(&self, offset: u64, value: T) -> Result<(), OutOfBounds> {
        let off = self.check(offset, size_of::<T>() as u64)?;
        // SAFETY: as in read_scalar; no Rust reference covers these bytes.
        unsafe {
            let p = self.ptr.as_ptr().add(off);
            if off % align_of::<T>() == 0 {
                p.cast::<T>().write_volatile(value)
            } else {
                p.cast::<T>().write_unaligned(value)
            }
        }
        Ok(())
    }
}

/// Plain integers: every bit pattern is a valid value.
trait Scalar: Copy {}
impl Scalar for u8 {}
impl Scalar for u16 {}
impl Scalar for u32 {}
impl Scalar for u64 {}

/// One contiguous piece of a command's data buffer: `len` bytes at `offset`
/// from the start of the shared area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

/// Up to this many regions a buffer is checked for overlaps pair by pair,
/// which allocates nothing; longer lists are sorted in a copy.
const PAIRWISE_OVERLAP_CHECK: usize = 32;

/// The data buffer of one in-flight command, as byte slices of the shared
/// area.
///
/// Invariant (established by `DataSegments::new` and the ring): every
/// region lies inside the map's data area, no two regions of this buffer
/// overlap, and no region overlaps a page owned by another in-flight
/// command. The kernel does not touch a command's data blocks between
/// handing the command out and seeing its completion, so these bytes are
/// exclusively ours while this value lives.
///
/// A buffer with regions keeps the map alive; an empty one (a command
/// without data, the common case for TEST UNIT READY and the like) holds
/// no reference, which spares two atomic operations per command.
pub struct DataSegments {
    /// `Some` whenever `regions` is not empty.
    map: Option<Arc<SharedMap>>,
    regions: Vec<Region>,
}

impl DataSegments {
    /// Take the regions; `None` when one lies outside `[data_start, map end)`
    /// or two overlap. The map is referenced only when there are regions.
    #[inline]
    pub(crate) fn new(map: &Arc<SharedMap>, regions: Vec<Region>, data_start: u64) -> Option<Self> {
        if regions.is_empty() {
            Some(DataSegments { map: None, regions })
        } else if DataSegments::valid(map, &regions, data_start) {
            Some(DataSegments {
                map: Some(map.clone()),
                regions,
            })
        } else {
            None
        }
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

    /// Start of the shared area, or a dangling pointer for an empty buffer
    /// (never dereferenced: there is no region to add to it).
    fn base(&self) -> *mut u8 {
        self.map
            .as_ref()
            .map_or(NonNull::dangling(), |m| m.ptr)
            .as_ptr()
    }

    /// Give the region list back (to reuse its allocation).
    pub(crate) fn into_regions(self) -> Vec<Region> {
        self.regions
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_outside_the_map_fail() {
        let m = SharedMap::anonymous(4096);
        assert!(m.read_u32(4092).is_ok());
        assert!(m.read_u32(4093).is_err());
        assert!(m.read_u64(u64::MAX - 3).is_err());
        assert!(m.write_bytes(4000, &[0; 97]).is_err());
        assert!(m.load_u32_acquire(2).is_err(), "misaligned atomic refused");
        assert!(m.store_u32_release(4096, 1).is_err());
        assert!(m.zero(1, 4096).is_err());
    }

    #[test]
    fn values_round_trip() {
        let m = SharedMap::anonymous(8192);
        m.write_u64(8, 0x0102_0304_0506_0708).unwrap();
        m.write_u16(3, 0xBEEF).unwrap();
        m.store_u32_release(64, 77).unwrap();
        assert_eq!(m.read_u64(8).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(m.read_u16(3).unwrap(), 0xBEEF);
        assert_eq!(m.load_u32_acquire(64).unwrap(), 77);
        assert_eq!(m.read_u32(64).unwrap(), 77);
        m.zero(8, 8).unwrap();
        assert_eq!(m.read_u64(8).unwrap(), 0);
    }

    #[test]
    fn segments_are_validated() {
        let m = Arc::new(SharedMap::anonymous(16384));
        let r = |offset, len| Region { offset, len };
        assert!(DataSegments::new(&m, vec![r(8192, 4096), r(12288, 4096)], 8192).is_some());
        assert!(
            DataSegments::new(&m, vec![r(4096, 4096)], 8192).is_none(),
            "before data area"
        );
        assert!(
            DataSegments::new(&m, vec![r(12288, 4097)], 8192).is_none(),
            "past the end"
        );
        assert!(
            DataSegments::new(&m, vec![r(u64::MAX, 2)], 8192).is_none(),
            "overflow"
        );
        assert!(
            DataSegments::new(&m, vec![r(8192, 100), r(8291, 10)], 8192).is_none(),
            "overlap"
        );
        let mut s = DataSegments::new(&m, vec![r(12288, 10), r(8192, 10)], 8192).unwrap();
        s.segment_mut(0).copy_from_slice(b"0123456789");
        assert_eq!(s.segment(0), b"0123456789");
        let mut back = [0u8; 10];
        m.read_bytes(12288, &mut back).unwrap();
        assert_eq!(&back, b"0123456789");
        assert_eq!(s.total_len(), 20);
    }

    #[test]
    fn long_region_lists_are_checked_for_overlaps_too() {
        let m = Arc::new(SharedMap::anonymous(1 << 20));
        let r = |offset, len| Region { offset, len };
        for count in [PAIRWISE_OVERLAP_CHECK, PAIRWISE_OVERLAP_CHECK + 8] {
            let disjoint: Vec<Region> = (0..count as u64).map(|i| r(8192 + i * 100, 100)).collect();
            assert!(
                DataSegments::new(&m, disjoint.clone(), 8192).is_some(),
                "{count}"
            );
            let mut overlapping = disjoint;
            overlapping[count - 1] = r(8192 + 50, 100);
            assert!(
                DataSegments::new(&m, overlapping, 8192).is_none(),
                "{count}"
            );
        }
    }

    #[test]
    fn only_buffers_with_regions_hold_the_map() {
        let m = Arc::new(SharedMap::anonymous(16384));
        let mut empty = DataSegments::new(&m, Vec::new(), 8192).unwrap();
        assert_eq!(Arc::strong_count(&m), 1);
        assert_eq!((empty.count(), empty.total_len()), (0, 0));
        assert_eq!(empty.segments_mut(&mut []), Some(0));
        let mut full = DataSegments::new(
            &m,
            vec![Region {
                offset: 8192,
                len: 4,
            }],
            8192,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&m), 2);
        drop(m);
        full.segment_mut(0).copy_from_slice(b"live");
        assert_eq!(full.segment(0), b"live");
    }
}
