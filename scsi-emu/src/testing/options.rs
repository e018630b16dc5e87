//! How a [`TestLun`](super::TestLun) serves its device.

use std::time::Duration;

/// How a [`TestLun`](super::TestLun) serves its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestLunOptions {
    /// Worker threads of the serving loop (at least 1): with several,
    /// commands run at the same time and complete out of order, as under
    /// the real kernel.
    pub workers: usize,
    /// How long a command may take before the harness gives up on it
    /// ([`CommandFailure::TimedOut`](super::CommandFailure::TimedOut)).
    pub timeout: Duration,
    /// Size of the simulated data area: the most data of all commands in
    /// the ring at once.
    pub data_area_bytes: u64,
    /// Largest piece the simulated kernel splits a data buffer into (the
    /// real one uses pages), so vectored reads and writes are exercised.
    pub segment_size: u64,
}

impl Default for TestLunOptions {
    fn default() -> Self {
        TestLunOptions {
            workers: 4,
            timeout: Duration::from_secs(10),
            data_area_bytes: 4 << 20,
            segment_size: 4096,
        }
    }
}

impl TestLunOptions {
    /// The defaults with `workers` worker threads.
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The defaults with a per-command time limit of `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
