//! The thread serving the ring, and a stop that lets go of the device on
//! the stopping thread.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tcmu_core::server::{ServeError, ServeOptions, serve_with};
use tcmu_core::uio::UioDevice;
use tcmu_core::{AsyncCommandHandler, Ring};

use crate::error::TargetError;

/// The ring-serving thread; stopping it (or dropping it) joins it.
pub(crate) struct RingThread {
    stop: UnixStream,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
    /// The emulator (and so the device), also held by the worker threads.
    emulator: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// How long a stop waits for the worker threads to let go of the device.
const WORKERS_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

impl RingThread {
    pub(crate) fn spawn<U: AsyncCommandHandler + 'static>(
        uio: UioDevice,
        ring: Ring,
        emulator: Arc<U>,
        options: ServeOptions,
    ) -> Result<RingThread, TargetError> {
        let (stop, stop_rx) = UnixStream::pair()?;
        let held = emulator.clone();
        let handle = std::thread::Builder::new()
            .name("tcmu-ring".into())
            .spawn(move || serve_with(Arc::new(uio), ring, emulator, stop_rx.as_fd(), options))?;
        Ok(RingThread {
            stop,
            handle: Some(handle),
            emulator: Some(held),
        })
    }

    /// A second end of the stop channel, for a [`ForceStop`](crate::ForceStop).
    pub(crate) fn stop_stream(&self) -> std::io::Result<UnixStream> {
        self.stop.try_clone()
    }

    pub(crate) fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    pub(crate) fn stop(mut self) -> Result<(), TargetError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), TargetError> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let _ = self.stop.write_all(&[1]);
        let result = match handle.join() {
            Ok(result) => result.map_err(TargetError::from),
            Err(_) => Err(TargetError::Io(std::io::Error::other(
                "the ring thread panicked",
            ))),
        };
        self.release_device();
        result
    }

    /// Close the device here, not on a worker thread that may still be
    /// exiting when the process does (a library such as librbd must not be
    /// torn down under a thread that is still using it). Workers let go as
    /// soon as serving stops, unless one is stuck in a backend call.
    fn release_device(&mut self) {
        let Some(emulator) = self.emulator.take() else {
            return;
        };
        let start = std::time::Instant::now();
        while Arc::strong_count(&emulator) > 1 {
            if start.elapsed() >= WORKERS_EXIT_TIMEOUT {
                log::warn!("a backend call is still running; the device is closed when it returns");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(emulator);
    }
}

impl Drop for RingThread {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            log::error!("{e}");
        }
    }
}
