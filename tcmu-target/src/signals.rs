//! SIGINT and SIGTERM as bytes on a socket: a program serving targets
//! catches them from before it starts one (so a stop during setup still
//! tears down), waits for the first, and lets a second one cut the
//! shutdown short.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use signal_hook::SigId;

/// How often a wait looks at its condition between signals.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// SIGINT and SIGTERM caught from [`Signals::catch`] on, until dropped.
pub struct Signals {
    received: UnixStream,
    ids: Vec<SigId>,
}

impl Signals {
    /// Catch SIGINT and SIGTERM from now on (their default action, ending
    /// the process, no longer applies while this value lives).
    pub fn catch() -> io::Result<Signals> {
        let (received, sender) = UnixStream::pair()?;
        let mut signals = Signals {
            received,
            ids: Vec::new(),
        };
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let id = signal_hook::low_level::pipe::register(sig, sender.try_clone()?)?;
            signals.ids.push(id);
        }
        signals.received.set_read_timeout(Some(POLL_INTERVAL))?;
        Ok(signals)
    }

    /// Block until a signal arrives (true) or `keep_waiting` says to stop
    /// (false; asked every 200 ms).
    pub fn wait_while(&mut self, mut keep_waiting: impl FnMut() -> bool) -> bool {
        while keep_waiting() {
            if self.take() {
                return true;
            }
        }
        false
    }

    /// Consume the signals that arrived; whether there was one. Waits up
    /// to 200 ms for one.
    pub fn take(&mut self) -> bool {
        let mut bytes = [0u8; 16];
        matches!(self.received.read(&mut bytes), Ok(n) if n > 0)
    }

    /// Call `action` on a thread of its own when the next signal arrives,
    /// e.g. to stop without waiting for commands still in flight.
    pub fn on_next(mut self, action: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            while !self.take() {}
            log::warn!("second signal: not waiting for commands in flight");
            action();
        });
    }
}

impl AsFd for Signals {
    /// Readable when a signal arrived: for a `poll` beside other sockets.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.received.as_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
