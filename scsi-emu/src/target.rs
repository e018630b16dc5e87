//! Serving a [`BlockDevice`] as a SCSI disk of the running kernel: the one
//! entry point for programs (the `tcmu-serve` command uses it too).
//!
//! ```no_run
//! use block_backends::MemoryDevice;
//! use scsi_emu::target::{Export, Target};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = MemoryDevice::new(512, 1 << 20)?; // 512 MiB
//! let target = Target::builder(device).name("scratch").export(Export::Loopback).start()?;
//! println!("serving {}", target.disk().unwrap().display());
//! target.wait_for_signal()?; // until SIGINT or SIGTERM
//! target.shutdown()?; // unexport, stop serving, remove the backstore
//! # Ok(())
//! # }
//! ```
//!
//! Starting needs root: it loads the kernel modules, creates a `user_0`
//! backstore in configfs, maps its UIO device, serves the ring on a thread
//! (with a pool of workers executing commands) and, with
//! [`Export::Loopback`], makes a local `/dev/sdX` through tcm_loop, or with
//! [`Export::Iscsi`] an iSCSI target of the kernel (LIO) that initiators
//! log in to.
//! Everything created is removed again by [`Target::shutdown`] or, if that
//! is never called, when the `Target` is dropped.
//!
//! While it runs, the target follows the kernel's attribute changes
//! (`attrib/dev_size`, `emulate_write_cache`, `dev_config`, announced on
//! netlink): the device is resized through [`BlockDevice::resize`] and the
//! initiator told CAPACITY DATA HAS CHANGED, the write cache follows, and a
//! change that cannot be made is written back (see the `reconfig` module's
//! notes in the README). Task management notification is turned on.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tcmu_core::Ring;
use tcmu_core::configfs::{
    self, Backstore, BackstoreConfig, ConfigfsError, IscsiConfig, IscsiExport, LoopbackExport,
};
use tcmu_core::server::{ServeError, ServeOptions, serve_with};
use tcmu_core::uio::{UioDevice, UioError};

use crate::reconfig::ReconfigWatcher;
use crate::{BlockDevice, CopyRegistry, Emulator, LunIdentity};

pub use tcmu_core::configfs::IscsiAuth;

/// How the LUN is made visible to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// A local SCSI disk (`/dev/sdX`) through tcm_loop.
    Loopback,
    /// No fabric: only the configfs backstore (link it yourself).
    None,
    /// An iSCSI target of the kernel (LIO): LUN 0 of TPG 1, one portal,
    /// any initiator may log in (demo mode), with CHAP if `auth` says so.
    /// [`Target::iscsi_url`] tells where. Everything is removed on
    /// shutdown.
    Iscsi {
        /// The target name (`iqn.YYYY-MM.reversed.domain[:name]`); default
        /// [`configfs::default_iqn`] of the backstore name.
        iqn: Option<String>,
        /// Where the target listens, e.g. `127.0.0.1:3260`.
        portal: SocketAddr,
        /// Who may log in.
        auth: IscsiAuth,
    },
}

/// Why a target could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("must run as root: configuring the kernel target (configfs) needs it")]
    NotRoot,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Configfs(#[from] ConfigfsError),
    #[error(transparent)]
    Uio(#[from] UioError),
    #[error("cannot attach to the command ring: {0}")]
    Ring(#[from] tcmu_core::RingError),
    #[error("serving stopped: {0}")]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Settings of a [`Target`]; start it with [`TargetBuilder::start`].
pub struct TargetBuilder<D> {
    device: D,
    name: Option<String>,
    serial: Option<String>,
    export: Export,
    max_io_bytes: u32,
    data_area_mb: Option<u32>,
    ring_size_mb: Option<u32>,
    serve: ServeOptions,
    dev_config: String,
    disk_timeout: Duration,
    cmd_time_out: Option<Duration>,
    qfull_time_out: Option<Duration>,
    copy_registry: Option<CopyRegistry>,
}

impl<D: BlockDevice + 'static> TargetBuilder<D> {
    /// Take part in third-party copy: the LUN registers in `registry`
    /// while it is served and accepts EXTENDED COPY between any LUNs
    /// registered there (see [`CopyRegistry`]). Give every target of the
    /// process that should copy to each other a clone of one registry.
    pub fn copy_registry(mut self, registry: CopyRegistry) -> Self {
        self.copy_registry = Some(registry);
        self
    }

    /// The configfs backstore name (default `tcmurs-<pid>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The unit serial number (default: a random UUID).
    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = Some(serial.into());
        self
    }

    /// How the LUN is exported (default [`Export::Loopback`]).
    pub fn export(mut self, export: Export) -> Self {
        self.export = export;
        self
    }

    /// The largest command the kernel may send, in bytes (default 1 MiB).
    pub fn max_io_bytes(mut self, bytes: u32) -> Self {
        self.max_io_bytes = bytes;
        self
    }

    /// The data area in MiB: the bytes of all commands in the ring at once
    /// (`max_data_area_mb`; default: the kernel's, 1024 MiB on Linux 6.x).
    /// Its pages are allocated as commands first need them.
    pub fn data_area_mb(mut self, mib: u32) -> Self {
        self.data_area_mb = Some(mib);
        self
    }

    /// The command ring (with its mailbox) in MiB, at most 8
    /// (`cmd_ring_size_mb`; default: the kernel's, 8 MiB).
    pub fn ring_size_mb(mut self, mib: u32) -> Self {
        self.ring_size_mb = Some(mib);
        self
    }

    /// Worker threads executing commands (0: on the serving thread).
    pub fn workers(mut self, workers: usize) -> Self {
        self.serve.workers = workers;
        self
    }

    /// How long the worker reading the ring watches for the next command
    /// before it sleeps (default [`tcmu_core::server::DEFAULT_SPIN`]; zero
    /// never spins): lower latency under load for up to that much CPU time
    /// per wait.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.serve.spin = spin;
        self
    }

    /// How long the kernel lets a command wait for its completion before
    /// failing it to the initiator (`attrib/cmd_time_out`; kernel default
    /// 30 s), and how long a command may wait for room in a full ring
    /// (`attrib/qfull_time_out`; kernel default: the same as
    /// `cmd_time_out`). A backend call that hangs is bounded by the first:
    /// the initiator sees an error, the LUN recovers, and the late
    /// completion is accepted once.
    pub fn timeouts(mut self, command: Option<Duration>, queue_full: Option<Duration>) -> Self {
        self.cmd_time_out = command;
        self.qfull_time_out = queue_full;
        self
    }

    /// The handler part of `dev_config` (default `tcmu-rs/custom`); tools
    /// such as `targetcli` show it. It must not contain ':'.
    pub fn dev_config(mut self, dev_config: impl Into<String>) -> Self {
        self.dev_config = dev_config.into();
        self
    }

    /// Create the LUN and start serving it.
    pub fn start(self) -> Result<Target, TargetError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TargetError::NotRoot);
        }
        let block_size = self.device.block_size();
        if !block_size.is_power_of_two() || !(512..=4096).contains(&block_size) {
            return Err(TargetError::Config(format!(
                "block size {block_size} (use 512, 1024, 2048 or 4096)"
            )));
        }
        let dev_size = self
            .device
            .num_blocks()
            .checked_mul(block_size as u64)
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                TargetError::Config("the device has no blocks or is too large".into())
            })?;
        if self.dev_config.contains(':') {
            return Err(TargetError::Config(format!(
                "dev_config {:?} contains ':'",
                self.dev_config
            )));
        }
        if self.max_io_bytes < block_size || self.max_io_bytes % 512 != 0 {
            return Err(TargetError::Config(format!(
                "max I/O of {} bytes (use a multiple of 512, at least the block size)",
                self.max_io_bytes
            )));
        }
        let name = self
            .name
            .unwrap_or_else(|| format!("tcmurs-{}", std::process::id()));
        if !configfs::valid_name(&name) {
            return Err(ConfigfsError::BadName(name).into());
        }

        let iscsi = match &self.export {
            Export::Iscsi { iqn, portal, auth } => {
                let config = IscsiConfig {
                    iqn: iqn.clone().unwrap_or_else(|| configfs::default_iqn(&name)),
                    portal: *portal,
                    auth: auth.clone(),
                };
                config.validate().map_err(TargetError::Config)?;
                Some(config)
            }
            _ => None,
        };

        let mut modules = vec!["configfs", "target_core_mod", "target_core_user"];
        if self.export == Export::Loopback {
            // No udev may be running: load the disk drivers ourselves.
            modules.extend(["tcm_loop", "sd_mod", "sg"]);
        }
        if iscsi.is_some() {
            modules.push("iscsi_target_mod");
        }
        configfs::load_modules(&modules)?;
        let root = Path::new(configfs::TARGET_ROOT);
        configfs::ensure_target_root(root)?;

        let serial = self.serial.unwrap_or_else(new_serial);
        let dev_config = self.dev_config.clone();
        let config = BackstoreConfig {
            name: name.clone(),
            hba: 0,
            dev_size,
            block_size,
            dev_config: self.dev_config,
            max_sectors: Some(self.max_io_bytes / 512),
            max_data_area_mb: self.data_area_mb,
            cmd_ring_size_mb: self.ring_size_mb,
            serial: serial.clone(),
        };
        // Fields drop in declaration order of `Target`; until then these
        // locals clean up in reverse order on any early return: the export
        // first (while the ring still answers the disk's last commands),
        // then the ring thread, then the backstore.
        let (backstore, reattached) = match Backstore::create(root, &config) {
            Ok(b) => (b, false),
            // Left behind by a handler that died: serve it again.
            Err(ConfigfsError::NameTaken(_)) => (Backstore::attach(root, &config)?, true),
            Err(e) => return Err(e.into()),
        };
        let uio = match UioDevice::open(backstore.uio_name(), Duration::from_secs(10)) {
            Ok(uio) => uio,
            Err(UioError::Io { source, .. }) if source.raw_os_error() == Some(nix::libc::EBUSY) => {
                backstore.disown(); // another process serves it
                return Err(ConfigfsError::NameTaken(name).into());
            }
            Err(e) => return Err(e.into()),
        };
        // A reattached LUN keeps its identity: initiators must see the same disk.
        let serial = if reattached {
            log::warn!("reattaching to backstore {name}: commands in flight are retried");
            backstore.block_and_reset()?;
            backstore.unit_serial()?
        } else {
            serial
        };
        if let Some(t) = self.cmd_time_out {
            backstore.set_attrib("cmd_time_out", &t.as_secs().max(1).to_string())?;
        }
        if let Some(t) = self.qfull_time_out {
            backstore.set_attrib("qfull_time_out", &t.as_secs().to_string())?;
        }
        // Task management reaches the ring only when asked for (Linux 5.9+).
        if backstore.dir().join("attrib/tmr_notification").exists() {
            backstore.set_attrib("tmr_notification", "1")?;
        } else {
            log::info!("this kernel does not pass task management to the handler");
        }
        let ring = Ring::new(uio.map())?;
        let identity = LunIdentity::new(serial.clone(), self.device.product_name());
        let mut emulator =
            Emulator::new(self.device, identity).with_max_transfer_bytes(self.max_io_bytes);
        if let Some(registry) = self.copy_registry {
            emulator = emulator.with_copy_registry(registry);
        }
        let emulator = Arc::new(emulator);
        let reconfig = match uio_minor(uio.path()) {
            Some(minor) => ReconfigWatcher::spawn(
                minor,
                backstore.dir().to_path_buf(),
                dev_config,
                emulator.clone(),
            )?,
            None => None,
        };
        let ring_thread = RingThread::spawn(uio, ring, emulator, self.serve)?;
        if reattached {
            backstore.unblock()?;
        }
        let (export, disk) = match self.export {
            Export::Loopback => {
                let export = match LoopbackExport::find(root, backstore.dir()) {
                    Some(existing) => existing,
                    None => LoopbackExport::create(
                        root,
                        backstore.dir(),
                        &loop_wwn(&serial, 0),
                        &loop_wwn(&serial, 1),
                    )?,
                };
                let disk = export.wait_for_disk(self.disk_timeout)?;
                (Some(export), Some(disk))
            }
            Export::None | Export::Iscsi { .. } => (None, None),
        };
        let iscsi = match iscsi {
            Some(config) => {
                if let Some(stale) = IscsiExport::find(root, backstore.dir(), &config) {
                    // Left behind by a handler of this backstore that died.
                    log::warn!("removing iSCSI target {} left behind", config.iqn);
                    stale.remove()?;
                }
                Some(IscsiExport::create(root, backstore.dir(), &config)?)
            }
            None => None,
        };
        Ok(Target {
            reconfig,
            export,
            iscsi,
            ring_thread: Some(ring_thread),
            backstore: Some(backstore),
            disk,
            name,
        })
    }
}

/// A LUN being served. Dropping it shuts it down (errors are logged);
/// [`shutdown`](Target::shutdown) reports them.
pub struct Target {
    // Drop order matters: exports, then ring thread, then backstore.
    reconfig: Option<ReconfigWatcher>,
    export: Option<LoopbackExport>,
    iscsi: Option<IscsiExport>,
    ring_thread: Option<RingThread>,
    backstore: Option<Backstore>,
    disk: Option<PathBuf>,
    name: String,
}

impl Target {
    /// Start describing a target that serves `device`.
    pub fn builder<D: BlockDevice + 'static>(device: D) -> TargetBuilder<D> {
        TargetBuilder {
            device,
            name: None,
            serial: None,
            export: Export::Loopback,
            max_io_bytes: 1 << 20,
            data_area_mb: None,
            ring_size_mb: None,
            serve: ServeOptions::default(),
            dev_config: "tcmu-rs/custom".into(),
            disk_timeout: Duration::from_secs(30),
            cmd_time_out: None,
            qfull_time_out: None,
            copy_registry: None,
        }
    }

    /// The local disk (`/dev/sdX`) with [`Export::Loopback`].
    pub fn disk(&self) -> Option<&Path> {
        self.disk.as_deref()
    }

    /// Where initiators find the LUN with [`Export::Iscsi`]:
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

    /// Block until SIGINT or SIGTERM arrives (or serving fails).
    pub fn wait_for_signal(&self) -> Result<(), TargetError> {
        let (mut signals, tx) = UnixStream::pair()?;
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                tx.try_clone()?,
            )?);
        }
        signals.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut byte = [0u8; 16];
        while !self.failed() {
            if matches!(signals.read(&mut byte), Ok(n) if n > 0) {
                break;
            }
        }
        for id in ids {
            signal_hook::low_level::unregister(id);
        }
        Ok(())
    }

    /// A handle that cuts a [`shutdown`](Self::shutdown) short (e.g. on a
    /// second signal): commands still executing are not waited for.
    pub fn force_stop_handle(&self) -> Option<ForceStop> {
        let thread = self.ring_thread.as_ref()?;
        thread.stop.try_clone().ok().map(ForceStop)
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

/// The ring-serving thread; stopping it (or dropping it) joins it.
struct RingThread {
    stop: UnixStream,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
    /// The emulator (and so the device), also held by the worker threads.
    emulator: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// How long a stop waits for the worker threads to let go of the device.
const WORKERS_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

impl RingThread {
    fn spawn<D: BlockDevice + 'static>(
        uio: UioDevice,
        ring: Ring,
        emulator: Arc<Emulator<D>>,
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

    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    fn stop(mut self) -> Result<(), TargetError> {
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

/// The minor number of a UIO device node (`/dev/uio<minor>`).
fn uio_minor(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("uio")?
        .parse()
        .ok()
}

/// A unit serial number: a random UUID from the kernel.
fn new_serial() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("tcmurs-{}", std::process::id()))
}

/// A tcm_loop WWN (`naa.5` + 15 hex digits) derived from the serial.
fn loop_wwn(serial: &str, salt: u8) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in serial.bytes().chain([salt]) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("naa.5{:015x}", h & 0x0fff_ffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uio_minors_come_from_the_node_name() {
        assert_eq!(uio_minor(Path::new("/dev/uio12")), Some(12));
        assert_eq!(uio_minor(Path::new("/dev/uio")), None);
        assert_eq!(uio_minor(Path::new("/dev/sda")), None);
    }

    #[test]
    fn wwns_are_well_formed_and_distinct() {
        let a = loop_wwn("serial", 0);
        let b = loop_wwn("serial", 1);
        assert_ne!(a, b);
        assert!(a.starts_with("naa.5") && a.len() == 20, "{a}");
    }
}
