//! Data buffers shaped by fuzz input: one flat buffer, or the same bytes
//! scattered over several segments, as a transport hands them over.

use scsi_emu::DataBuffer;

/// A command's data buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Buffer {
    Flat(Vec<u8>),
    Split(Vec<Vec<u8>>),
}

impl Buffer {
    /// A buffer of `len` bytes starting with `content` (zeros after it),
    /// shaped by `segmentation`: bits 1-0 give the number of segments
    /// (0: one flat `Vec<u8>`; 1-3: two to four segments), bits 7-2 shift
    /// the cuts so that segments of odd and zero length occur.
    pub(crate) fn new(content: &[u8], len: usize, segmentation: u8) -> Buffer {
        let mut flat = vec![0u8; len];
        let n = content.len().min(len);
        flat[..n].copy_from_slice(&content[..n]);
        let pieces = usize::from(segmentation & 3);
        if pieces == 0 {
            return Buffer::Flat(flat);
        }
        let pieces = pieces + 1;
        let jitter = usize::from(segmentation >> 2);
        let mut segments = Vec::with_capacity(pieces);
        let mut start = 0;
        for k in 1..=pieces {
            let end = if k == pieces {
                len
            } else {
                (len * k / pieces + jitter * k).min(len)
            };
            segments.push(flat[start..end].to_vec());
            start = end;
        }
        Buffer::Split(segments)
    }

    /// Total length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Buffer::Flat(v) => v.len(),
            Buffer::Split(v) => v.iter().map(Vec::len).sum(),
        }
    }

    /// The buffer as the emulator takes it.
    pub(crate) fn as_data_buffer(&mut self) -> &mut dyn DataBuffer {
        match self {
            Buffer::Flat(v) => v,
            Buffer::Split(v) => v,
        }
    }

    /// The contents, joined.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        match self {
            Buffer::Flat(v) => v.clone(),
            Buffer::Split(v) => v.concat(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_buffer_is_content_then_zeros() {
        assert_eq!(Buffer::new(&[1, 2], 4, 0), Buffer::Flat(vec![1, 2, 0, 0]));
        assert_eq!(Buffer::new(&[1, 2, 3], 2, 0), Buffer::Flat(vec![1, 2]));
    }

    #[test]
    fn split_buffers_keep_every_byte_in_order() {
        let content: Vec<u8> = (0..100).collect();
        for segmentation in 0..=255u8 {
            let b = Buffer::new(&content, 100, segmentation);
            assert_eq!(b.len(), 100);
            assert_eq!(b.to_vec(), content);
            if let Buffer::Split(v) = &b {
                assert_eq!(v.len(), usize::from(segmentation & 3) + 1);
            }
        }
        // Large jitter pushes the later cuts to the end: empty segments.
        let Buffer::Split(v) = Buffer::new(&content, 100, 0xFF) else {
            panic!("expected segments");
        };
        assert!(v.iter().any(Vec::is_empty));
    }
}
