//! The data buffer of one SCSI command, as the emulator sees it.

/// The most segments lent together for one vectored backend call (they
/// are lent on the stack); a buffer with more moves segment by segment.
/// The kernel joins adjacent data-area blocks, so commands have few.
pub(crate) const MAX_LENT_SEGMENTS: usize = 16;

/// The data buffer of a command: a list of byte segments.
///
/// For a command that transfers data to the initiator (data-in, e.g. READ)
/// the emulator fills it; for one that transfers data from the initiator
/// (data-out, e.g. WRITE) it holds what the initiator sent. The segments are
/// handed to the backend directly when they are block-aligned, so a ring
/// buffer is read and written without copies.
pub trait DataBuffer {
    /// Number of segments.
    fn segment_count(&self) -> usize;

    /// Segment `index` (`index < segment_count()`).
    fn segment(&self, index: usize) -> &[u8];

    /// Segment `index`, writable (`index < segment_count()`).
    fn segment_mut(&mut self, index: usize) -> &mut [u8];

    /// Every segment at once, writable, for one vectored backend call:
    /// fills `out[..n]` and returns `n`; `None` when the buffer cannot lend
    /// its segments together or has more than `out.len()`.
    fn segments_mut<'a>(&'a mut self, out: &mut [&'a mut [u8]]) -> Option<usize> {
        let _ = out;
        None
    }

    /// Total length in bytes over all segments.
    fn len(&self) -> usize {
        (0..self.segment_count())
            .map(|i| self.segment(i).len())
            .sum()
    }

    /// Whether the buffer holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy `src` into the buffer at byte `offset`; what does not fit is
    /// dropped. Returns the number of bytes copied.
    fn write_at(&mut self, offset: usize, src: &[u8]) -> usize {
        let mut seg_start = 0;
        let mut copied = 0;
        for i in 0..self.segment_count() {
            if copied == src.len() {
                break;
            }
            let seg = self.segment_mut(i);
            let seg_end = seg_start + seg.len();
            let pos = offset + copied;
            if pos < seg_end {
                let in_seg = pos - seg_start;
                let n = (seg.len() - in_seg).min(src.len() - copied);
                seg[in_seg..in_seg + n].copy_from_slice(&src[copied..copied + n]);
                copied += n;
            }
            seg_start = seg_end;
        }
        copied
    }

    /// Copy bytes at `offset` out of the buffer into `dst`. Returns the
    /// number of bytes copied (less than `dst.len()` past the end).
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        let mut seg_start = 0;
        let mut copied = 0;
        for i in 0..self.segment_count() {
            if copied == dst.len() {
                break;
            }
            let seg = self.segment(i);
            let seg_end = seg_start + seg.len();
            let pos = offset + copied;
            if pos < seg_end {
                let in_seg = pos - seg_start;
                let n = (seg.len() - in_seg).min(dst.len() - copied);
                dst[copied..copied + n].copy_from_slice(&seg[in_seg..in_seg + n]);
                copied += n;
            }
            seg_start = seg_end;
        }
        copied
    }

    /// Zero every byte from `offset` to the end.
    fn zero_from(&mut self, offset: usize) {
        let mut seg_start = 0;
        for i in 0..self.segment_count() {
            let seg = self.segment_mut(i);
            let seg_end = seg_start + seg.len();
            if offset < seg_end {
                let from = offset.saturating_sub(seg_start);
                seg[from..].fill(0);
            }
            seg_start = seg_end;
        }
    }
}

/// A plain contiguous buffer is a one-segment data buffer.
impl DataBuffer for Vec<u8> {
    fn segment_count(&self) -> usize {
        1
    }
    fn segment(&self, _index: usize) -> &[u8] {
        self
    }
    fn segment_mut(&mut self, _index: usize) -> &mut [u8] {
        self
    }
    fn segments_mut<'a>(&'a mut self, out: &mut [&'a mut [u8]]) -> Option<usize> {
        *out.first_mut()? = self.as_mut_slice();
        Some(1)
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// A list of buffers is a data buffer with one segment each (tests use it
/// to imitate a ring command's scattered data).
impl DataBuffer for Vec<Vec<u8>> {
    fn segment_count(&self) -> usize {
        self.as_slice().len()
    }
    fn segment(&self, index: usize) -> &[u8] {
        &self[index]
    }
    fn segment_mut(&mut self, index: usize) -> &mut [u8] {
        &mut self[index]
    }
    fn segments_mut<'a>(&'a mut self, out: &mut [&'a mut [u8]]) -> Option<usize> {
        let count = self.as_slice().len();
        if count > out.len() {
            return None;
        }
        for (slot, segment) in out.iter_mut().zip(self.iter_mut()) {
            *slot = segment.as_mut_slice();
        }
        Some(count)
    }
}
