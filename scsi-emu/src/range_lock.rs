//! Exclusive locks on LBA ranges.
//!
//! COMPARE AND WRITE must be atomic against every other command that
//! changes the same blocks. Commands that change the medium (WRITE, WRITE
//! SAME, UNMAP, COMPARE AND WRITE, ...) hold the lock for their range
//! while they run, so overlapping ones take turns and disjoint ones run in
//! parallel. Each command holds at most one range at a time, so waiting
//! cannot deadlock.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The set of locked ranges of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct RangeLocks {
    /// Locked `(first LBA, end LBA)` pairs, end exclusive.
    held: Mutex<Vec<(u64, u64)>>,
    released: Condvar,
}

/// A locked range; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    range: Option<(u64, u64)>,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl RangeLocks {
    fn held(&self) -> MutexGuard<'_, Vec<(u64, u64)>> {
        // A panic while holding the list cannot leave it inconsistent
        // (push and remove are single steps), so poisoning is ignored.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lock `blocks` blocks from `lba`, waiting while an overlapping range
    /// is locked. An empty range locks nothing.
    pub(crate) fn lock(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        if blocks == 0 {
            return RangeGuard {
                locks: self,
                range: None,
            };
        }
        let range = (lba, lba.saturating_add(blocks));
        let mut held = self.held();
        while held.iter().any(|&r| overlaps(r, range)) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.push(range);
        RangeGuard {
            locks: self,
            range: Some(range),
        }
    }
}

/// A range locked with [`RangeLocks::try_acquire`], to give back with
/// [`RangeLocks::release`] (for holders that cannot borrow the locks, such
/// as a command's future).
#[derive(Debug)]
#[must_use = "a locked range stays locked until released"]
pub(crate) struct Acquired(Option<(u64, u64)>);

impl RangeLocks {
    /// Lock `blocks` blocks from `lba` if no overlapping range is locked;
    /// `None` when one is. An empty range locks nothing.
    pub(crate) fn try_acquire(&self, lba: u64, blocks: u64) -> Option<Acquired> {
        if blocks == 0 {
            return Some(Acquired(None));
        }
        let range = (lba, lba.saturating_add(blocks));
        let mut held = self.held();
        if held.iter().any(|&r| overlaps(r, range)) {
            return None;
        }
        held.push(range);
        Some(Acquired(Some(range)))
    }

    /// Unlock a range from [`try_acquire`](Self::try_acquire).
    pub(crate) fn release(&self, acquired: Acquired) {
        drop(RangeGuard {
            locks: self,
            range: acquired.0,
        });
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        if let Some(range) = self.range {
            let mut held = self.locks.held();
            if let Some(i) = held.iter().position(|&r| r == range) {
                held.swap_remove(i);
            }
            drop(held);
            self.locks.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn overlap_rules() {
        assert!(overlaps((0, 4), (3, 5)));
        assert!(overlaps((3, 5), (0, 4)));
        assert!(overlaps((0, 10), (2, 3)));
        assert!(!overlaps((0, 4), (4, 8)));
        assert!(!overlaps((4, 8), (0, 4)));
    }

    #[test]
    fn disjoint_ranges_are_held_together_and_released_on_drop() {
        let locks = RangeLocks::default();
        let a = locks.lock(0, 4);
        let b = locks.lock(4, 4);
        let empty = locks.lock(2, 0);
        assert_eq!(locks.held().len(), 2);
        drop((a, b, empty));
        assert!(locks.held().is_empty());
        let _again = locks.lock(u64::MAX - 1, u64::MAX);
        assert_eq!(locks.held().len(), 1);
    }

    #[test]
    fn overlapping_holders_never_run_together() {
        let locks = Arc::new(RangeLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (locks, inside) = (locks.clone(), inside.clone());
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        // Ranges [t + i % 3, +4) all overlap block 3..4.
                        let _g = locks.lock((t + i) % 3, 4);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(locks.held().is_empty());
    }
}
