//! Hand-off between the worker that reads the ring and the others, and
//! the kernel notification the workers share.
//!
//! Under load both are where threads meet, so both are built to wake as
//! few threads as possible: a batch of commands wakes only as many idle
//! workers as it has commands (a busy worker takes the next command
//! without sleeping), the worker that read a batch executes its first
//! command itself, and of the workers that complete commands at the same
//! time only one is ever inside the kernel's completion path.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// A queue of items for a pool of threads, one of which at a time leads:
/// produces items (reads the ring) while the others wait for them
/// (leader/followers). The leader keeps the first item of what it read
/// for itself, so at low load one thread reads and executes a command
/// with no hand-off at all.
pub(crate) struct WorkQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// Threads waiting in [`WorkQueue::next`].
    idle: usize,
    /// A thread leads.
    leader: bool,
    /// Threads may still lead (reading has not stopped).
    reading: bool,
    closed: bool,
}

/// What a thread should do next.
pub(crate) enum Next<T> {
    /// Handle this item.
    Item(T),
    /// Lead: produce items, then [`WorkQueue::resign`].
    Lead,
    /// The queue is closed: stop.
    Closed,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                idle: 0,
                leader: false,
                reading: true,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The state is consistent between any two statements under the lock.
    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next item, or the lead when nobody leads; waits otherwise.
    pub(crate) fn next(&self) -> Next<T> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Next::Closed;
            }
            if let Some(item) = s.items.pop_front() {
                return Next::Item(item);
            }
            if s.reading && !s.leader {
                s.leader = true;
                return Next::Lead;
            }
            s.idle += 1;
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
            s.idle -= 1;
        }
    }

    /// The leader queues every item of `batch` (leaving it empty, its
    /// capacity kept) and gives up the lead: as many idle threads wake as
    /// there are items, and one more to lead.
    pub(crate) fn resign(&self, batch: &mut Vec<T>) {
        let wake = {
            let mut s = self.lock();
            s.leader = false;
            let wake = (batch.len() + 1).min(s.idle);
            s.items.extend(batch.drain(..));
            wake
        };
        for _ in 0..wake {
            self.ready.notify_one();
        }
    }

    /// How many items wait for a thread.
    pub(crate) fn queued(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether threads may still lead.
    pub(crate) fn reading(&self) -> bool {
        self.lock().reading
    }

    /// Nobody leads any more once the current leader resigns; queued
    /// items are still handed out.
    pub(crate) fn stop_reading(&self) {
        self.lock().reading = false;
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

    /// `next` for a thread that should get an item.
    fn item<T>(q: &WorkQueue<T>) -> T {
        match q.next() {
            Next::Item(item) => item,
            Next::Lead => panic!("got the lead, wanted an item"),
            Next::Closed => panic!("closed, wanted an item"),
        }
    }

    #[test]
    fn one_thread_leads_and_its_items_come_out_in_order() {
        let q = Arc::new(WorkQueue::new());
        assert!(matches!(q.next(), Next::Lead));
        // While one leads, another thread waits...
        let follower = {
            let q = q.clone();
            std::thread::spawn(move || item(&q))
        };
        let mut batch = vec![1, 2, 3];
        q.resign(&mut batch);
        assert!(batch.is_empty());
        // ...and gets the first item; the rest stay queued, in order.
        assert_eq!(follower.join().unwrap(), 1);
        assert_eq!(item(&q), 2);
        assert_eq!(item(&q), 3);
        assert!(matches!(q.next(), Next::Lead), "the lead was given up");
        q.resign(&mut Vec::new());
        q.stop_reading();
        assert!(!q.reading());
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || matches!(q.next(), Next::Closed))
        };
        q.close();
        assert!(
            waiter.join().unwrap(),
            "close ends the wait of a thread that may not lead"
        );
        q.resign(&mut vec![4]);
        assert!(
            matches!(q.next(), Next::Closed),
            "a closed queue hands out nothing"
        );
    }

    #[test]
    fn every_item_reaches_exactly_one_thread_and_leaders_take_turns() {
        // Each leader produces the next ten numbers until 1000 are out.
        let q = Arc::new(WorkQueue::new());
        let produced = Arc::new(AtomicUsize::new(0));
        let sum = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (q, produced, sum) = (q.clone(), produced.clone(), sum.clone());
                std::thread::spawn(move || {
                    let mut batch = Vec::new();
                    let mut leads = 0;
                    loop {
                        match q.next() {
                            Next::Item(n) => {
                                sum.fetch_add(n, Ordering::SeqCst);
                            }
                            Next::Lead => {
                                leads += 1;
                                let start = produced.fetch_add(10, Ordering::SeqCst);
                                if start >= 1000 {
                                    q.stop_reading();
                                    q.resign(&mut batch);
                                    return leads;
                                }
                                batch.extend(start + 1..=start + 10);
                                q.resign(&mut batch);
                            }
                            Next::Closed => return leads,
                        }
                    }
                })
            })
            .collect();
        // Once reading stopped and the items are out, close.
        while q.reading() || !q.lock().items.is_empty() {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        q.close();
        let leads: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(sum.load(Ordering::SeqCst), (1..=1000).sum::<usize>());
        assert_eq!(
            leads, 101,
            "one lead per batch of ten, and the one that saw the end"
        );
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
