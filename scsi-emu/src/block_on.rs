//! Wait for a future on the calling thread.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Wakes a thread parked in [`block_on`].
struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Poll `future` on this thread until it is ready, parking in between: a
/// device that is asynchronous inside answers [`BlockDevice`](crate::BlockDevice)
/// calls with it (see [`Blocking`](crate::Blocking) for a whole device).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake between the poll and here leaves `woken` set; park can
        // also return spuriously, so the flag decides.
        while !unpark.woken.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_woken_from_another_thread_finishes() {
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let helper = std::thread::spawn(move || {
            let waker = rx.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            flag.store(true, Ordering::SeqCst);
            waker.wake();
        });
        let out = block_on(std::future::poll_fn(|cx| {
            if ready.load(Ordering::SeqCst) {
                Poll::Ready(7)
            } else {
                let _ = tx.send(cx.waker().clone());
                Poll::Pending
            }
        }));
        assert_eq!(out, 7);
        helper.join().unwrap();
    }
}
