//! Locks on LBA ranges.
//!
//! COMPARE AND WRITE must be atomic against every other command that
//! changes the same blocks. Commands that change the medium (WRITE, WRITE
//! SAME, UNMAP, COMPARE AND WRITE, ...) hold the lock for their range
//! while they run, so overlapping ones take turns and disjoint ones run in
//! parallel.
//!
//! WRITE ATOMIC must also be atomic against reads: a read of its blocks
//! sees all of the old data or all of the new. On a unit that offers it,
//! commands that read the medium hold their range for reading, which keeps
//! out atomic writes and nothing else: an atomic write waits for the reads
//! of its blocks, and a read waits for an atomic write of its blocks that
//! runs or waits (so that a stream of reads cannot hold it off forever).
//! Reads never wait for plain writes, nor plain writes for reads, and on a
//! unit without atomic writes reads hold nothing at all.
//!
//! Each command holds at most one range at a time, so waiting cannot
//! deadlock.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// What a command holds a range for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Reading the medium.
    Read,
    /// Changing the medium.
    Write,
    /// Changing the medium so that no read sees the change half done.
    AtomicWrite,
}

impl Hold {
    /// Whether commands holding overlapping ranges for `self` and `other`
    /// must take turns: readers share with readers and plain writers.
    fn excludes(self, other: Hold) -> bool {
        !matches!(
            (self, other),
            (Hold::Read, Hold::Read) | (Hold::Read, Hold::Write) | (Hold::Write, Hold::Read)
        )
    }
}

/// A held range: `first` to `end` (exclusive), and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    first: u64,
    end: u64,
    hold: Hold,
}

impl Held {
    fn new(lba: u64, blocks: u64, hold: Hold) -> Self {
        Held {
            first: lba,
            end: lba.saturating_add(blocks),
            hold,
        }
    }

    fn overlaps(&self, other: &Held) -> bool {
        overlaps((self.first, self.end), (other.first, other.end))
    }
}

#[derive(Debug, Default)]
struct Table {
    held: Vec<Held>,
    /// Atomic writes waiting for their range: new reads of it wait too.
    queued_atomic: Vec<Held>,
    /// Commands waiting on the condition variable, so that releasing a
    /// range wakes no one (no system call) when nobody waits.
    waiting: usize,
}

impl Table {
    /// Whether `wanted` must wait.
    fn blocks(&self, wanted: &Held) -> bool {
        self.held
            .iter()
            .any(|h| h.overlaps(wanted) && h.hold.excludes(wanted.hold))
            || (wanted.hold == Hold::Read && self.queued_atomic.iter().any(|q| q.overlaps(wanted)))
    }

    fn remove(list: &mut Vec<Held>, entry: &Held) {
        if let Some(i) = list.iter().position(|h| h == entry) {
            list.swap_remove(i);
        }
    }
}

/// The set of locked ranges of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct RangeLocks {
    table: Mutex<Table>,
    released: Condvar,
    /// Whether the unit runs WRITE ATOMIC: only then do reads hold ranges.
    atomic_writes: bool,
}

/// A locked range; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    held: Option<Held>,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl RangeLocks {
    /// The locks of a unit that runs atomic writes (`atomic_writes`) or
    /// not.
    pub(crate) fn new(atomic_writes: bool) -> Self {
        RangeLocks {
            atomic_writes,
            ..RangeLocks::default()
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the table cannot leave it inconsistent
        // (push and remove are single steps), so poisoning is ignored.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, mut table: MutexGuard<'a, Table>) -> MutexGuard<'a, Table> {
        table.waiting += 1;
        let mut table = self
            .released
            .wait(table)
            .unwrap_or_else(PoisonError::into_inner);
        table.waiting -= 1;
        table
    }

    fn guard(&self, held: Option<Held>) -> RangeGuard<'_> {
        RangeGuard { locks: self, held }
    }

    /// Take `wanted` once nothing keeps it out.
    fn take(&self, wanted: Held) -> RangeGuard<'_> {
        let mut table = self.table();
        while table.blocks(&wanted) {
            table = self.wait(table);
        }
        table.held.push(wanted);
        self.guard(Some(wanted))
    }

    /// Lock `blocks` blocks from `lba` for a write, waiting while an
    /// overlapping range is locked for another write. An empty range locks
    /// nothing.
    pub(crate) fn lock(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        if blocks == 0 {
            return self.guard(None);
        }
        self.take(Held::new(lba, blocks, Hold::Write))
    }

    /// Lock `blocks` blocks from `lba` for an atomic write, waiting while
    /// any overlapping range is held; reads that would overlap it wait
    /// from now on. An empty range locks nothing.
    pub(crate) fn lock_atomic_write(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        if blocks == 0 {
            return self.guard(None);
        }
        let wanted = Held::new(lba, blocks, Hold::AtomicWrite);
        let mut table = self.table();
        if table.blocks(&wanted) {
            table.queued_atomic.push(wanted);
            while table.blocks(&wanted) {
                table = self.wait(table);
            }
            Table::remove(&mut table.queued_atomic, &wanted);
        }
        table.held.push(wanted);
        self.guard(Some(wanted))
    }

    /// Hold `blocks` blocks from `lba` for reading, waiting while an
    /// atomic write of an overlapping range runs or waits. Holds nothing
    /// on a unit without atomic writes, or for an empty range.
    pub(crate) fn lock_read(&self, lba: u64, blocks: u64) -> RangeGuard<'_> {
        if !self.atomic_writes || blocks == 0 {
            return self.guard(None);
        }
        self.take(Held::new(lba, blocks, Hold::Read))
    }
}

/// A range locked with [`RangeLocks::try_acquire`], to give back with
/// [`RangeLocks::release`] (for holders that cannot borrow the locks, such
/// as a command's future).
#[derive(Debug)]
#[must_use = "a locked range stays locked until released"]
pub(crate) struct Acquired(Option<Held>);

impl RangeLocks {
    /// Take `wanted` if nothing keeps it out.
    fn try_take(&self, wanted: Held) -> Option<Acquired> {
        let mut table = self.table();
        if table.blocks(&wanted) {
            return None;
        }
        table.held.push(wanted);
        Some(Acquired(Some(wanted)))
    }

    /// Lock `blocks` blocks from `lba` for a write if no overlapping range
    /// is locked for another write; `None` when one is. An empty range
    /// locks nothing.
    pub(crate) fn try_acquire(&self, lba: u64, blocks: u64) -> Option<Acquired> {
        if blocks == 0 {
            return Some(Acquired(None));
        }
        self.try_take(Held::new(lba, blocks, Hold::Write))
    }

    /// Hold `blocks` blocks from `lba` for reading unless an atomic write
    /// of an overlapping range runs or waits; `None` then. Holds nothing
    /// on a unit without atomic writes, or for an empty range.
    pub(crate) fn try_acquire_read(&self, lba: u64, blocks: u64) -> Option<Acquired> {
        if !self.atomic_writes || blocks == 0 {
            return Some(Acquired(None));
        }
        self.try_take(Held::new(lba, blocks, Hold::Read))
    }

    /// Unlock a range from [`try_acquire`](Self::try_acquire) or
    /// [`try_acquire_read`](Self::try_acquire_read).
    pub(crate) fn release(&self, acquired: Acquired) {
        drop(self.guard(acquired.0));
    }

    /// How many commands wait for a range (for tests that must know a
    /// command is waiting before they let another one go on).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.table().waiting
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held {
            let mut table = self.locks.table();
            Table::remove(&mut table.held, &held);
            let wake = table.waiting > 0;
            drop(table);
            if wake {
                self.locks.released.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn held_count(locks: &RangeLocks) -> usize {
        locks.table().held.len()
    }

    /// Wait (yielding) until `n` commands wait for a range.
    fn until_waiting(locks: &RangeLocks, n: usize) {
        while locks.waiting() != n {
            std::thread::yield_now();
        }
    }

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
        assert_eq!(held_count(&locks), 2);
        drop((a, b, empty));
        assert_eq!(held_count(&locks), 0);
        let _again = locks.lock(u64::MAX - 1, u64::MAX);
        assert_eq!(held_count(&locks), 1);
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
        assert_eq!(held_count(&locks), 0);
    }

    #[test]
    fn without_atomic_writes_reads_hold_nothing() {
        let locks = RangeLocks::new(false);
        let _write = locks.lock(0, 8);
        let _read = locks.lock_read(0, 8);
        let acquired = locks.try_acquire_read(0, 8).expect("reads never wait");
        assert_eq!(held_count(&locks), 1);
        locks.release(acquired);
    }

    #[test]
    fn reads_and_plain_writes_do_not_keep_each_other_out() {
        let locks = RangeLocks::new(true);
        let read = locks.lock_read(0, 8);
        let write = locks.try_acquire(2, 2).expect("a write passes a read");
        let other_read = locks.try_acquire_read(0, 4).expect("reads share");
        assert_eq!(held_count(&locks), 3);
        locks.release(write);
        locks.release(other_read);
        drop(read);
        assert_eq!(held_count(&locks), 0);
    }

    #[test]
    fn an_atomic_write_keeps_out_overlapping_reads_and_writes() {
        let locks = RangeLocks::new(true);
        let atomic = locks.lock_atomic_write(4, 4);
        assert!(locks.try_acquire_read(7, 1).is_none());
        assert!(locks.try_acquire_read(0, 5).is_none());
        assert!(locks.try_acquire(6, 8).is_none());
        // Disjoint ranges are free.
        let before = locks.try_acquire_read(0, 4).unwrap();
        let after = locks.try_acquire(8, 4).unwrap();
        locks.release(before);
        locks.release(after);
        drop(atomic);
        locks.release(locks.try_acquire_read(0, 16).unwrap());
        assert_eq!(held_count(&locks), 0);
    }

    #[test]
    fn an_atomic_write_waits_for_reads_and_new_reads_wait_behind_it() {
        let locks = Arc::new(RangeLocks::new(true));
        let read = locks.lock_read(0, 4);
        let (done, finished) = std::sync::mpsc::channel();
        let writer = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                let _atomic = locks.lock_atomic_write(2, 4);
                done.send(()).unwrap();
            })
        };
        until_waiting(&locks, 1);
        assert!(finished.try_recv().is_err(), "the atomic write waits");
        // Queued, it keeps out new reads of its range, not plain writes.
        assert!(locks.try_acquire_read(5, 1).is_none());
        locks.release(locks.try_acquire(4, 4).expect("plain writes pass"));
        drop(read);
        writer.join().unwrap();
        finished.recv().unwrap();
        locks.release(locks.try_acquire_read(5, 1).unwrap());
        assert_eq!(held_count(&locks), 0);
        assert!(locks.table().queued_atomic.is_empty());
    }

    #[test]
    fn a_read_waits_for_an_atomic_write() {
        let locks = Arc::new(RangeLocks::new(true));
        let atomic = locks.lock_atomic_write(0, 4);
        let (done, finished) = std::sync::mpsc::channel();
        let reader = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                let _read = locks.lock_read(3, 2);
                done.send(()).unwrap();
            })
        };
        until_waiting(&locks, 1);
        assert!(finished.try_recv().is_err(), "the read waits");
        drop(atomic);
        reader.join().unwrap();
        finished.recv().unwrap();
        assert_eq!(held_count(&locks), 0);
    }
}
