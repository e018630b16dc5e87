//! Page-aligned buffers for direct I/O.

/// Memory alignment of buffers for direct I/O. A page satisfies every
/// device's DMA alignment; buffers that are not aligned this way pass
/// through an aligned bounce buffer.
pub(super) const DIRECT_ALIGN: usize = 4096;

pub(super) fn is_aligned(buf: &[u8]) -> bool {
    buf.as_ptr() as usize % DIRECT_ALIGN == 0
}

/// A zeroed buffer whose start is aligned for direct I/O.
pub(super) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub(super) fn zeroed(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        // The vector is never resized, so its address and the offset stay valid.
        let addr = storage.as_ptr() as usize;
        let start = (DIRECT_ALIGN - addr % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}
