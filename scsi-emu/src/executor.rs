//! A small executor for the futures of commands in flight: a few threads
//! poll whatever task was woken. A task's first poll happens on the thread
//! that spawns it, so a future that is ready at once (a RAM disk, a cache
//! hit) costs no hand-off.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Spawns and polls tasks; dropping it stops its threads (tasks not
/// finished are dropped, which answers their commands).
pub(crate) struct Executor {
    queue: Arc<RunQueue>,
}

struct RunQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    tasks: VecDeque<Arc<Task>>,
    closed: bool,
}

struct Task {
    /// `None` once finished.
    future: Mutex<Option<TaskFuture>>,
    /// In the run queue, or about to be polled: a wake adds nothing.
    scheduled: AtomicBool,
    queue: Arc<RunQueue>,
}

impl RunQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, task: Arc<Task>) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        s.tasks.push_back(task);
        drop(s);
        self.ready.notify_one();
    }

    /// The next woken task; `None` once closed.
    fn pop(&self) -> Option<Arc<Task>> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(task) = s.tasks.pop_front() {
                return Some(task);
            }
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.queue.push(self.clone());
        }
    }
}

impl Task {
    /// Poll once; a panicking future is dropped (its command is answered
    /// by whatever it owned).
    fn run(self: &Arc<Self>) {
        let mut slot = self.future.lock().unwrap_or_else(PoisonError::into_inner);
        // Cleared before the poll: a wake during it schedules a new one.
        self.scheduled.store(false, Ordering::Release);
        let Some(future) = slot.as_mut() else {
            return;
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(std::task::Poll::Pending) => {}
            Ok(std::task::Poll::Ready(())) => *slot = None,
            Err(_) => {
                log::error!("a command's future panicked; its command fails");
                *slot = None;
            }
        }
    }
}

impl Executor {
    /// An executor with `threads` polling threads (at least one).
    pub(crate) fn new(threads: usize) -> std::io::Result<Executor> {
        let queue = Arc::new(RunQueue {
            state: Mutex::new(QueueState {
                tasks: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("scsi-emu-poll-{n}"))
                .spawn(move || {
                    while let Some(task) = queue.pop() {
                        task.run();
                    }
                })?;
        }
        Ok(Executor { queue })
    }

    /// Run `future` to its end: polled here first, then on the executor's
    /// threads whenever it is woken.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            scheduled: AtomicBool::new(true),
            queue: self.queue.clone(),
        });
        task.run();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let tasks = {
            let mut s = self.queue.lock();
            s.closed = true;
            std::mem::take(&mut s.tasks)
        };
        self.queue.ready.notify_all();
        // Outside the lock: dropping a task drops its future.
        drop(tasks);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    /// Pending until `flag` is set; sends its waker out each time.
    fn wait_for_flag(
        flag: Arc<AtomicBool>,
        wakers: mpsc::Sender<Waker>,
    ) -> impl Future<Output = ()> + Send {
        std::future::poll_fn(move |cx| {
            if flag.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                let _ = wakers.send(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    #[test]
    fn a_ready_future_runs_on_the_spawning_thread() {
        let executor = Executor::new(1).unwrap();
        let here = std::thread::current().id();
        let (tx, rx) = mpsc::channel();
        executor.spawn(async move { tx.send(std::thread::current().id()).unwrap() });
        assert_eq!(rx.try_recv().unwrap(), here);
    }

    #[test]
    fn woken_futures_finish_on_the_executor_threads_many_at_once() {
        let executor = Executor::new(2).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let (waker_tx, waker_rx) = mpsc::channel();
        let flag = Arc::new(AtomicBool::new(false));
        for i in 0..100 {
            let wait = wait_for_flag(flag.clone(), waker_tx.clone());
            let done = done_tx.clone();
            executor.spawn(async move {
                wait.await;
                done.send((i, std::thread::current().name().map(String::from)))
                    .unwrap();
            });
        }
        assert!(done_rx.try_recv().is_err(), "all 100 are pending");
        flag.store(true, Ordering::SeqCst);
        // Woken from another thread, some twice.
        std::thread::spawn(move || {
            for waker in waker_rx.iter().take(100) {
                waker.wake_by_ref();
                waker.wake();
            }
        });
        let mut seen: Vec<usize> = (0..100)
            .map(|_| {
                let (i, thread) = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
                assert!(thread.unwrap().starts_with("scsi-emu-poll-"));
                i
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>(), "each exactly once");
    }

    #[test]
    fn dropping_the_executor_drops_unfinished_futures() {
        struct Noted(mpsc::Sender<()>);
        impl Drop for Noted {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let executor = Executor::new(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let (waker_tx, waker_rx) = mpsc::channel();
        let noted = Noted(tx);
        let never = wait_for_flag(Arc::new(AtomicBool::new(false)), waker_tx);
        executor.spawn(async move {
            let _noted = noted;
            never.await;
        });
        drop(executor);
        // The task is parked, held by its waker alone: it goes with it.
        drop(waker_rx);
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}
