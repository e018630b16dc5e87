//! Settings of a target, and starting it: modules, backstore, UIO device,
//! ring thread, netlink watcher and export, in that order.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scsi_emu::{BlockSize, CopyRegistry, LunIdentity, PortGroupSource};
use tcmu_core::Ring;
use tcmu_core::configfs::{
    self, Backstore, BackstoreConfig, ConfigfsError, IscsiExport, LoopbackExport, UserBackstore,
};
use tcmu_core::server::ServeOptions;
use tcmu_core::uio::{UioDevice, UioError};

use crate::configfs_port_groups::ConfigfsPortGroups;
use crate::error::TargetError;
use crate::export::Export;
use crate::naming::{loop_wwn, new_serial, uio_minor};
use crate::reconfig::ReconfigWatcher;
use crate::ring_thread::RingThread;
use crate::servable::{Servable, UnitOptions};
use crate::target::Target;

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

impl<D: Servable> TargetBuilder<D> {
    /// Copy between LUNs: the LUN registers in `registry` while it is
    /// served, and EXTENDED COPY may then name any LUN registered there
    /// (see [`CopyRegistry`]). Without a registry a LUN still copies
    /// within itself. Give every target of the process that should copy
    /// to each other a clone of one registry.
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

    /// Spin (up to [`spin`](Self::spin)) only while it pays: while spins
    /// find commands and the CPUs are not contended
    /// ([`ServeOptions::spin_adaptive`](tcmu_core::server::ServeOptions::spin_adaptive)).
    pub fn spin_adaptive(mut self, adaptive: bool) -> Self {
        self.serve.spin_adaptive = adaptive;
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
        let (block_size, num_blocks) = self.device.geometry();
        let block_size = BlockSize::new(block_size)
            .map_err(|e| TargetError::Config(e.to_string()))?
            .get();
        let dev_size = num_blocks
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

        let iscsi = self.export.iscsi_config(&name);
        if let Some(config) = &iscsi {
            config.validate().map_err(TargetError::Config)?;
        }

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
            max_io_bytes: Some(self.max_io_bytes),
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
            set_timeout(&backstore, "cmd_time_out", t.as_secs().max(1), reattached)?;
        }
        if let Some(t) = self.qfull_time_out {
            set_timeout(&backstore, "qfull_time_out", t.as_secs(), reattached)?;
        }
        // Task management reaches the ring only when asked for (Linux 5.9+).
        if backstore.dir().join("attrib/tmr_notification").exists() {
            backstore.set_attrib("tmr_notification", "1")?;
        } else {
            log::info!("this kernel does not pass task management to the handler");
        }
        let ring = Ring::new(uio.map())?;
        let identity = LunIdentity::new(serial.clone(), self.device.product());
        let options = UnitOptions {
            max_io_bytes: self.max_io_bytes,
            registry: self.copy_registry,
            // ALUA groups an administrator (or the export) adds to the
            // backstore are reported from then on.
            port_groups: UserBackstore::from_uio_name(root, backstore.uio_name())
                .map(|b| Arc::new(ConfigfsPortGroups::new(b)) as Arc<dyn PortGroupSource>),
        };
        let unit = self.device.into_unit(identity, options)?;
        let reconfig = match uio_minor(uio.path()) {
            Some(minor) => ReconfigWatcher::spawn(
                minor,
                backstore.dir().to_path_buf(),
                dev_config,
                unit.clone(),
            )?,
            None => None,
        };
        let ring_thread = RingThread::spawn(uio, ring, unit, self.serve)?;
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

impl Target {
    /// Start describing a target that serves `device`: a
    /// [`BlockDevice`](scsi_emu::BlockDevice), or an
    /// [`AsyncBlockDevice`](scsi_emu::AsyncBlockDevice) wrapped in
    /// [`AsyncDevice`](crate::AsyncDevice).
    pub fn builder<D: Servable>(device: D) -> TargetBuilder<D> {
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
}

/// Set a timeout attribute. The kernel refuses `cmd_time_out` while the
/// backstore is exported, as a reattached one still is (by the export of
/// the handler that died): then an unchanged value is left alone and a
/// changed one is kept as it was, with a warning.
fn set_timeout(
    backstore: &Backstore,
    name: &str,
    secs: u64,
    reattached: bool,
) -> Result<(), ConfigfsError> {
    let value = secs.to_string();
    if reattached && backstore.attrib(name).is_ok_and(|v| v == value) {
        return Ok(());
    }
    match backstore.set_attrib(name, &value) {
        Err(e) if reattached => {
            log::warn!(
                "attrib/{name} stays as it was ({e}); it changes once the backstore is no longer exported"
            );
            Ok(())
        }
        r => r,
    }
}
