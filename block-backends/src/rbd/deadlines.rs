//! The second bound on a request (after librados' own timeouts): a thread
//! that wakes every waiter whose deadline has passed, so that it gives its
//! request up instead of waiting for ever.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::ffi::Watch;

/// Requests with their deadlines; the thread ends with the last handle.
pub(super) struct Deadlines {
    watched: Arc<Mutex<Vec<(Instant, Watch)>>>,
}

impl Deadlines {
    /// Checks every `tick`.
    pub(super) fn start(tick: Duration) -> std::io::Result<Deadlines> {
        let watched = Arc::new(Mutex::new(Vec::new()));
        let weak = Arc::downgrade(&watched);
        std::thread::Builder::new()
            .name("rbd-deadlines".into())
            .spawn(move || sweep(&weak, tick))?;
        Ok(Deadlines { watched })
    }

    /// Wake `request`'s waiter at `deadline` unless it completed by then.
    pub(super) fn watch(&self, deadline: Instant, request: Watch) {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((deadline, request));
    }
}

fn sweep(watched: &Weak<Mutex<Vec<(Instant, Watch)>>>, tick: Duration) {
    loop {
        std::thread::sleep(tick);
        let Some(watched) = watched.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<Watch> = {
            let mut list = watched.lock().unwrap_or_else(PoisonError::into_inner);
            let mut due = Vec::new();
            list.retain_mut(|(at, request)| {
                if !request.pending() {
                    return false;
                }
                if *at <= now {
                    due.push(std::mem::replace(request, Watch::gone()));
                    return false;
                }
                true
            });
            due
        };
        due.iter().for_each(Watch::nudge);
    }
}
