//! Bounce buffers reused from one request to the next.
//!
//! Every read and write through the ring passes through a page-aligned
//! buffer the ring owns. Allocating and zeroing one per request cost time
//! on every request, the most for large ones: reusing them made 1 MiB
//! reads and writes at QD8 1.2–1.4× faster in the VM benchmark. The pool
//! keeps free buffers in power-of-two sizes from 4 KiB to 1 MiB, at most
//! [`KEEP_BYTES`] of them in all, and hands out a free one of the right
//! size before it allocates.
//!
//! A reused buffer still holds an earlier request's bytes. The device only
//! ever uses the part it asked the kernel to fill (reads loop until all of
//! it is read) or filled itself (writes gather all of it first), so those
//! bytes never reach an initiator.

use std::sync::{Mutex, PoisonError};

use super::super::aligned::AlignedBuf;

/// The smallest buffer handed out: a page.
const SMALLEST: usize = 4096;

/// Sizes 4 KiB, 8 KiB, … 1 MiB.
const CLASSES: usize = 9;

/// The most bytes of free buffers kept; a buffer given back beyond it is
/// freed.
pub(super) const KEEP_BYTES: usize = 8 << 20;

/// Free bounce buffers by size.
#[derive(Default)]
pub(super) struct BufferPool {
    free: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    /// Boxed: the device that holds the pool stays small.
    by_class: Box<[Vec<AlignedBuf>; CLASSES]>,
    bytes: usize,
}

/// The class of a buffer of `size` bytes, if it is one of the pool's sizes.
fn class_of(size: usize) -> Option<usize> {
    if size < SMALLEST || !size.is_power_of_two() {
        return None;
    }
    let class = (size / SMALLEST).trailing_zeros() as usize;
    (class < CLASSES).then_some(class)
}

impl BufferPool {
    /// A buffer of at least `len` bytes: a free one of the size `len`
    /// rounds up to, or a new one. Longer than the largest class: a new
    /// buffer of exactly `len` bytes, never kept.
    pub(super) fn take(&self, len: usize) -> AlignedBuf {
        let size = len.max(SMALLEST).next_power_of_two();
        let Some(class) = class_of(size) else {
            return AlignedBuf::zeroed(len);
        };
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            let buffer = free.by_class[class].pop();
            if buffer.is_some() {
                free.bytes -= size;
            }
            buffer
        };
        reused.unwrap_or_else(|| AlignedBuf::zeroed(size))
    }

    /// Keeps `buffer` for a later request, unless the pool holds
    /// [`KEEP_BYTES`] already or it is not of a pool size.
    pub(super) fn give(&self, buffer: AlignedBuf) {
        let size = buffer.as_slice().len();
        let Some(class) = class_of(size) else {
            return;
        };
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.bytes + size <= KEEP_BYTES {
            free.bytes += size;
            free.by_class[class].push(buffer);
        }
    }

    /// Bytes of free buffers held.
    #[cfg(test)]
    pub(super) fn kept_bytes(&self) -> usize {
        self.free.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_a_power_of_two_from_a_page() {
        let pool = BufferPool::default();
        for (len, size) in [
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (65536, 65536),
            (1 << 20, 1 << 20),
        ] {
            let buffer = pool.take(len);
            assert_eq!(buffer.as_slice().len(), size, "for {len}");
            assert_eq!(buffer.as_slice().as_ptr() as usize % 4096, 0, "aligned");
        }
        // Beyond the largest class: exactly as asked, and not kept.
        let big = pool.take((1 << 20) + 512);
        assert_eq!(big.as_slice().len(), (1 << 20) + 512);
        pool.give(big);
        assert_eq!(pool.kept_bytes(), 0);
    }

    #[test]
    fn a_buffer_given_back_is_handed_out_again() {
        let pool = BufferPool::default();
        let buffer = pool.take(16384);
        let address = buffer.as_slice().as_ptr();
        pool.give(buffer);
        assert_eq!(pool.kept_bytes(), 16384);
        assert_eq!(pool.take(8192 + 1).as_slice().as_ptr(), address);
        assert_eq!(pool.kept_bytes(), 0);
        // Another size does not take it.
        pool.give(pool.take(16384));
        assert_eq!(pool.take(4096).as_slice().len(), 4096);
        assert_eq!(pool.kept_bytes(), 16384);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let pool = BufferPool::default();
        let buffers: Vec<AlignedBuf> = (0..12).map(|_| pool.take(1 << 20)).collect();
        buffers.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.kept_bytes(), KEEP_BYTES);
    }
}
