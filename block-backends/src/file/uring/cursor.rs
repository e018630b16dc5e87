//! Copying a command's data, scattered over several buffers, to or from
//! consecutive pieces of one bounce buffer.

/// A position in a list of buffers, for copying a command's data to or
/// from consecutive pieces of a bounce buffer.
#[derive(Default)]
pub(super) struct Cursor {
    buf: usize,
    at: usize,
}

impl Cursor {
    /// Copy `from` into the buffers from the cursor on, and advance.
    pub(super) fn scatter(&mut self, bufs: &mut [&mut [u8]], mut from: &[u8]) {
        while !from.is_empty() {
            let dest = &mut bufs[self.buf][self.at..];
            let n = dest.len().min(from.len());
            dest[..n].copy_from_slice(&from[..n]);
            from = &from[n..];
            self.advance(n, dest.len());
        }
    }

    /// Fill `into` from the buffers from the cursor on, and advance.
    pub(super) fn gather(&mut self, bufs: &[&[u8]], mut into: &mut [u8]) {
        while !into.is_empty() {
            let src = &bufs[self.buf][self.at..];
            let n = src.len().min(into.len());
            into[..n].copy_from_slice(&src[..n]);
            into = &mut into[n..];
            self.advance(n, src.len());
        }
    }

    fn advance(&mut self, n: usize, left_in_buf: usize) {
        if n == left_in_buf {
            self.buf += 1;
            self.at = 0;
        } else {
            self.at += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cross_buffer_boundaries_and_skip_empty_buffers() {
        let data: Vec<u8> = (0..10).collect();
        let (mut a, mut b, mut c) = (vec![0; 3], vec![], vec![0; 7]);
        let mut bufs: [&mut [u8]; 3] = [&mut a, &mut b, &mut c];
        let mut into = Cursor::default();
        into.scatter(&mut bufs, &data[..4]);
        into.scatter(&mut bufs, &data[4..]);
        assert_eq!([a, c].concat(), data);

        let parts: [&[u8]; 3] = [&data[..5], &[], &data[5..]];
        let mut from = Cursor::default();
        let mut out = vec![0; 10];
        from.gather(&parts, &mut out[..6]);
        from.gather(&parts, &mut out[6..]);
        assert_eq!(out, data);
    }
}
