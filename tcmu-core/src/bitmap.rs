//! A fixed-size bit set, with range operations that touch each word once.

/// A fixed-size bit set of words: the ring's commands in flight and
/// data pages owned, the simulated kernel's free data pages.
pub(crate) struct BitSet(Vec<u64>);

impl BitSet {
    /// `bits` bits, all clear.
    pub(crate) fn new(bits: usize) -> Self {
        BitSet(vec![0; bits.div_ceil(64)])
    }
    /// `bits` bits, all set.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn full(bits: usize) -> Self {
        let mut set = BitSet(vec![u64::MAX; bits / 64]);
        if bits % 64 != 0 {
            set.0.push((1 << (bits % 64)) - 1);
        }
        set
    }
    /// Clear and return the lowest set bit at or after word `*word`, which
    /// moves to that bit's word: successive calls scan the set once.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn take_first(&mut self, word: &mut usize) -> Option<usize> {
        while let Some(&bits) = self.0.get(*word) {
            if bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                self.0[*word] &= !(1 << bit);
                return Some(*word * 64 + bit);
            }
            *word += 1;
        }
        None
    }
    pub(crate) fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    pub(crate) fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
    /// The words covering `bits` (non-empty), each with the mask of the
    /// bits of the range it holds.
    fn words(bits: &std::ops::Range<usize>) -> impl Iterator<Item = (usize, u64)> {
        let (first, last) = (bits.start, bits.end - 1);
        (first / 64..=last / 64).map(move |w| {
            let lo = if w == first / 64 { first % 64 } else { 0 };
            let hi = if w == last / 64 { last % 64 } else { 63 };
            (w, (u64::MAX >> (63 - hi)) & (u64::MAX << lo))
        })
    }
    /// The word and mask of `bits` when they lie in one word (a buffer of
    /// up to 64 pages usually does).
    fn one_word(bits: &std::ops::Range<usize>) -> Option<(usize, u64)> {
        let (first, last) = (bits.start, bits.end - 1);
        (first / 64 == last / 64).then(|| {
            (
                first / 64,
                (u64::MAX >> (63 - last % 64)) & (u64::MAX << (first % 64)),
            )
        })
    }
    /// Whether any bit of `bits` is set.
    pub(crate) fn any(&self, bits: std::ops::Range<usize>) -> bool {
        if bits.is_empty() {
            return false;
        }
        if let Some((w, m)) = BitSet::one_word(&bits) {
            return self.0[w] & m != 0;
        }
        BitSet::words(&bits).any(|(w, m)| self.0[w] & m != 0)
    }
    /// Set or clear every bit of `bits`.
    pub(crate) fn set_range(&mut self, bits: std::ops::Range<usize>, on: bool) {
        if bits.is_empty() {
            return;
        }
        if let Some((w, m)) = BitSet::one_word(&bits) {
            if on {
                self.0[w] |= m;
            } else {
                self.0[w] &= !m;
            }
            return;
        }
        for (w, m) in BitSet::words(&bits) {
            if on {
                self.0[w] |= m;
            } else {
                self.0[w] &= !m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_bits_agree() {
        let mut set = BitSet::new(200);
        set.set_range(60..130, true);
        assert!((60..130).all(|i| set.get(i)));
        assert!(!set.get(59) && !set.get(130));
        assert!(set.any(0..61) && !set.any(0..60) && !set.any(130..200));
        set.set(100, false);
        set.set_range(61..100, false);
        assert!(set.get(60) && !set.any(61..101) && set.any(101..102));
    }

    #[test]
    fn a_full_set_hands_out_every_bit_once_in_order() {
        let mut set = BitSet::full(130);
        let mut word = 0;
        let taken: Vec<usize> = std::iter::from_fn(|| set.take_first(&mut word)).collect();
        assert_eq!(taken, (0..130).collect::<Vec<_>>());
        assert!(!set.any(0..130));
        set.set(70, true);
        let mut word = 0;
        assert_eq!(set.take_first(&mut word), Some(70));
        assert_eq!(word, 1);
    }

    #[test]
    fn bit_ranges_match_single_bits() {
        // Every range within three words, against a bit-by-bit model.
        for start in 0..192 {
            for end in start..=192 {
                let mut set = BitSet::new(192);
                set.set_range(start..end, true);
                for i in 0..192 {
                    assert_eq!(
                        set.get(i),
                        (start..end).contains(&i),
                        "{start}..{end} bit {i}"
                    );
                }
                for probe in [0, 63, 64, 127, 128, 191] {
                    let hit = (start..end).contains(&probe);
                    assert_eq!(set.any(probe..probe + 1), hit);
                }
                assert_eq!(set.any(start..end), start < end);
                set.set_range(start..end, false);
                assert!(!set.any(0..192));
            }
        }
    }
}
