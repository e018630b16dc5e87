//! Hand-off between the ring thread and the workers, and the kernel
//! notification the workers share.
//!
//! Under load both are where threads meet, so both are built to wake as
//! few threads as possible: a batch of commands wakes only as many idle
//! workers as it has commands (a busy worker takes the next command
//! without sleeping), and of the workers that complete commands at the
//! same time only one is ever inside the kernel's completion path.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// A queue of items for a pool of threads (many producers, many consumers).
pub(crate) struct WorkQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// Threads waiting in [`WorkQueue::pop`].
    idle: usize,
    closed: bool,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The state is consistent between any two statements under the lock.
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue every item of `batch` (leaving it empty, its capacity kept)
    /// and wake as many idle threads as there are new items.
    pub(crate) fn push_all(&self, batch: &mut Vec<T>) {
        if batch.is_empty() {
            return;
        }
        let wake = {
            let mut s = self.lock();
            let wake = batch.len().min(s.idle);
            s.items.extend(batch.drain(..));
            wake
        };
        for _ in 0..wake {
            self.ready.notify_one();
        }
    }

    /// The next item; waits while the queue is empty. `None` once the
    /// queue is closed.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            s.idle += 1;
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
            s.idle -= 1;
        }
    }

    /// Refuse further items and wake every waiting thread; queued items
    /// are dropped.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.items.clear();
        drop(s);
        self.ready.notify_all();
    }
}

/// One kernel notification for completions that arrive while another is
/// under way. The kernel handles every completion in the ring when it is
/// notified, under one lock per device, so a second thread notifying at
/// the same time would only wait for that lock and find nothing left; it
/// leaves a note instead, and the thread already notifying notifies once
/// more for it.
#[derive(Default)]
pub(crate) struct SharedNotify {
    /// Completions are in the ring that no notification has covered yet.
    pending: AtomicBool,
    /// A thread is notifying (and will look at `pending` again).
    busy: AtomicBool,
}

impl SharedNotify {
    /// Make sure the kernel is notified after the completions written so
    /// far: now by this thread, or soon by the one notifying already.
    pub(crate) fn notify(&self, notify: impl Fn() -> io::Result<()>) -> io::Result<()> {
        self.pending.store(true, Ordering::SeqCst);
        loop {
            if self.busy.swap(true, Ordering::SeqCst) {
                return Ok(()); // the busy thread sees `pending`
            }
            let mut result = Ok(());
            while self.pending.swap(false, Ordering::SeqCst) {
                result = notify();
                if result.is_err() {
                    break;
                }
            }
            self.busy.store(false, Ordering::SeqCst);
            result?;
            // A note left between the last swap and clearing `busy` has
            // nobody else to see it.
            if !self.pending.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn items_come_out_in_order_and_close_ends_the_wait() {
        let q = Arc::new(WorkQueue::new());
        let mut batch = vec![1, 2, 3];
        q.push_all(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        q.close();
        assert_eq!(waiter.join().unwrap(), None);
        q.push_all(&mut vec![4]);
        assert_eq!(q.pop(), None, "a closed queue hands out nothing");
    }

    #[test]
    fn every_item_reaches_exactly_one_of_many_threads() {
        let q = Arc::new(WorkQueue::new());
        let sum = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (q, sum) = (q.clone(), sum.clone());
                std::thread::spawn(move || {
                    while let Some(n) = q.pop() {
                        if n == 0 {
                            return;
                        }
                        sum.fetch_add(n, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let mut batch = Vec::new();
        for round in 0..100 {
            batch.extend((1..=10).map(|n| round * 10 + n));
            q.push_all(&mut batch);
        }
        q.push_all(&mut vec![0; 4]);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sum.load(Ordering::SeqCst), (1..=1000).sum::<usize>());
    }

    #[test]
    fn concurrent_requests_are_all_covered_by_a_later_notification() {
        // Each thread "completes" (bumps `written`) and then asks for a
        // notification; a notification records how many completions it
        // covered. The last notification must cover all of them.
        let shared = Arc::new(SharedNotify::default());
        let written = Arc::new(AtomicUsize::new(0));
        let covered = Arc::new(AtomicUsize::new(0));
        let notifications = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (shared, written) = (shared.clone(), written.clone());
                let (covered, notifications) = (covered.clone(), notifications.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        written.fetch_add(1, Ordering::SeqCst);
                        shared
                            .notify(|| {
                                notifications.fetch_add(1, Ordering::SeqCst);
                                covered.fetch_max(written.load(Ordering::SeqCst), Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(covered.load(Ordering::SeqCst), 40_000);
        assert!(notifications.load(Ordering::SeqCst) <= 40_000);
    }

    #[test]
    fn a_failed_notification_is_reported_and_the_next_one_runs() {
        let shared = SharedNotify::default();
        let err = shared.notify(|| Err(io::Error::other("gone"))).unwrap_err();
        assert_eq!(err.to_string(), "gone");
        let ran = AtomicBool::new(false);
        shared
            .notify(|| {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }
}
