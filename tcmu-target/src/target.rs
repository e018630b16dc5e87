//! A LUN being served, and the way to stop it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use tcmu_core::configfs::{Backstore, IscsiExport, LoopbackExport};

use crate::error::TargetError;
use crate::reconfig::ReconfigWatcher;
use crate::ring_thread::RingThread;
use crate::signals::Signals;

/// A LUN being served. Dropping it shuts it down (errors are logged);
/// [`shutdown`](Target::shutdown) reports them.
pub struct Target {
    // Drop order matters: exports, then ring thread, then backstore.
    pub(crate) reconfig: Option<ReconfigWatcher>,
    pub(crate) export: Option<LoopbackExport>,
    pub(crate) iscsi: Option<IscsiExport>,
    pub(crate) ring_thread: Option<RingThread>,
    pub(crate) backstore: Option<Backstore>,
    pub(crate) disk: Option<PathBuf>,
    pub(crate) name: String,
}

impl Target {
    /// The local disk (`/dev/sdX`) with [`Export::Loopback`](crate::Export::Loopback).
    pub fn disk(&self) -> Option<&Path> {
        self.disk.as_deref()
    }

    /// Where initiators find the LUN with [`Export::Iscsi`](crate::Export::Iscsi):
    /// `iscsi://ADDR:PORT/IQN/0`.
    pub fn iscsi_url(&self) -> Option<&str> {
        self.iscsi.as_ref().map(|e| e.url())
    }

    /// The configfs directory of the backstore.
    pub fn backstore_dir(&self) -> &Path {
        self.backstore.as_ref().map_or(Path::new(""), |b| b.dir())
    }

    /// The backstore name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the ring thread stopped on its own (a corrupt ring).
    pub fn failed(&self) -> bool {
        self.ring_thread.as_ref().is_none_or(|t| t.finished())
    }

    /// Block until SIGINT or SIGTERM arrives (or serving fails). To catch
    /// them from before the target starts, use [`Signals`] directly.
    pub fn wait_for_signal(&self) -> Result<(), TargetError> {
        Signals::catch()?.wait_while(|| !self.failed());
        Ok(())
    }

    /// A handle that cuts a [`shutdown`](Self::shutdown) short (e.g. on a
    /// second signal): commands still executing are not waited for.
    pub fn force_stop_handle(&self) -> Option<ForceStop> {
        self.ring_thread.as_ref()?.stop_stream().ok().map(ForceStop)
    }

    /// Unexport, stop serving (waiting for commands in flight), and remove
    /// the backstore.
    pub fn shutdown(mut self) -> Result<(), TargetError> {
        drop(self.reconfig.take());
        if let Some(export) = self.export.take() {
            export.remove()?;
        }
        if let Some(export) = self.iscsi.take() {
            export.remove()?;
        }
        let served = match self.ring_thread.take() {
            Some(t) => t.stop(),
            None => Ok(()),
        };
        if let Some(backstore) = self.backstore.take() {
            backstore.remove()?;
        }
        served
    }
}

/// Ends a shutdown in progress without waiting for commands still
/// executing; see [`Target::force_stop_handle`].
pub struct ForceStop(UnixStream);

impl ForceStop {
    /// Stop serving now.
    pub fn force(&self) {
        // Two bytes at once: "stop" and "do not wait" (see serve_with).
        let _ = (&self.0).write_all(&[1, 1]);
    }
}
