//! What the unit tests of several devices share.

/// `len` bytes that depend on their position and on `seed` and are never
/// zero (so they cannot pass for unwritten or unmapped blocks).
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}
