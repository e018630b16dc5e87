//! Serving a TCMU backstore that someone else created — `targetcli`,
//! rtslib, ceph-iscsi — as tcmu-runner does: the administrator owns it in
//! configfs (creates, exports, resizes and removes it); the handler only
//! serves its ring and answers for its attributes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scsi_emu::LunIdentity;
use tcmu_core::configfs::UserBackstore;
use tcmu_core::netlink::Change;
use tcmu_core::server::ServeOptions;
use tcmu_core::uio::UioDevice;
use tcmu_core::{AsyncCommandHandler, PendingCommand, Ring};

use crate::configfs_port_groups::{AluaObserver, ConfigfsPortGroups};
use crate::error::TargetError;
use crate::naming::uio_minor;
use crate::reconfig::{Decision, decide, restore_attribute};
use crate::ring_thread::RingThread;
use crate::servable::{Servable, Unit, UnitOptions};

/// How long to wait for the UIO device of an enabled backstore to appear.
const UIO_TIMEOUT: Duration = Duration::from_secs(10);

/// SCSI INQUIRY.
const INQUIRY: u8 = 0x12;

/// A backstore created by someone else, served until [`stop`](Self::stop)
/// (or drop), which leaves it in configfs.
pub struct AdoptedLun {
    ring_thread: Option<RingThread>,
    minor: Option<u32>,
    backstore: UserBackstore,
    dev_config: String,
    decide: Box<dyn Fn(&Change) -> Decision + Send + Sync>,
}

/// How an adopted backstore came to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// Announced by ADDED_DEVICE while its `enable` write is in progress:
    /// its ring is new, and the kernel refuses `action/` writes until the
    /// enable is done.
    Added,
    /// Enabled earlier, perhaps served by a handler that died: commands
    /// left in its ring are failed with BUSY (initiators retry them) and
    /// serving starts from a reset ring.
    Existing,
}

impl AdoptedLun {
    /// Serve the enabled backstore `backstore` with `device`, whose block
    /// size and number of blocks must be those of the backstore
    /// (`attrib/hw_block_size`, `attrib/dev_size`). The unit serial is read
    /// from `wwn/vpd_unit_serial`, again on every INQUIRY: rtslib writes it
    /// after enabling.
    pub fn adopt<D: Servable>(
        device: D,
        backstore: UserBackstore,
        how: Adoption,
        serve: ServeOptions,
    ) -> Result<AdoptedLun, TargetError> {
        Self::adopt_with(device, backstore, how, serve, None)
    }

    /// [`adopt`](Self::adopt), telling `observer` the backstore's ALUA
    /// groups whenever they are read: once before serving starts, then on
    /// every INQUIRY and REPORT TARGET PORT GROUPS.
    pub fn adopt_observing_alua<D: Servable>(
        device: D,
        backstore: UserBackstore,
        how: Adoption,
        serve: ServeOptions,
        observer: AluaObserver,
    ) -> Result<AdoptedLun, TargetError> {
        Self::adopt_with(device, backstore, how, serve, Some(observer))
    }

    fn adopt_with<D: Servable>(
        device: D,
        backstore: UserBackstore,
        how: Adoption,
        serve: ServeOptions,
        observer: Option<AluaObserver>,
    ) -> Result<AdoptedLun, TargetError> {
        let (block_size, blocks) = device.geometry();
        let hw_block_size = backstore.attrib_number("hw_block_size")?;
        let dev_size = backstore.attrib_number("dev_size")?;
        if i64::from(block_size) != hw_block_size
            || (blocks as i128) * i128::from(block_size) != i128::from(dev_size)
        {
            return Err(TargetError::Config(format!(
                "the device has {blocks} blocks of {block_size} bytes, the backstore \
                 {dev_size} bytes in blocks of {hw_block_size}"
            )));
        }
        let max_io_bytes = max_io_bytes(&backstore, block_size)?;
        let dev_config = backstore.dev_config()?;
        let uio = UioDevice::open(&backstore.uio_name()?, UIO_TIMEOUT)?;
        let minor = uio_minor(uio.path());
        if how == Adoption::Existing {
            log::warn!(
                "{}: taking over; commands in flight are retried",
                backstore.name()
            );
            backstore.block_and_reset()?;
        }
        // Task management reaches the ring only when asked for (Linux 5.9+).
        if backstore.dir().join("attrib/tmr_notification").exists() {
            backstore.set_attrib("tmr_notification", "1")?;
        }
        let ring = Ring::new(uio.map())?;
        let serial = backstore.unit_serial()?;
        let identity = LunIdentity::new(serial.clone(), device.product());
        let port_groups = match observer {
            Some(observer) => {
                let groups = ConfigfsPortGroups::observed(backstore.clone(), observer);
                // Before the first command: a restarted handler finds the
                // groups in place already.
                if let Err(e) = groups.read() {
                    log::warn!("{}: reading its ALUA groups: {e}", backstore.name());
                }
                groups
            }
            None => ConfigfsPortGroups::new(backstore.clone()),
        };
        let options = UnitOptions {
            max_io_bytes,
            registry: None,
            port_groups: Some(Arc::new(port_groups)),
        };
        let unit = device.into_unit(identity, options)?;
        let decider = unit.clone();
        let current_config = dev_config.clone();
        let decide =
            Box::new(move |change: &Change| decide(decider.emulator(), &current_config, change));
        let handler = Arc::new(SerialFollower {
            unit,
            serial_of: backstore.clone(),
            serial: Mutex::new(serial),
        });
        let ring_thread = RingThread::spawn(uio, ring, handler, serve)?;
        if how == Adoption::Existing {
            backstore.unblock()?;
        }
        Ok(AdoptedLun {
            ring_thread: Some(ring_thread),
            minor,
            backstore,
            dev_config,
            decide,
        })
    }

    /// Apply a change the kernel announced (RECONFIG_DEVICE). `Ok` says
    /// what was done; `Err` why the change was refused. When the kernel
    /// does not wait for an answer (`awaited` false) it has taken the new
    /// value already, so a refused value is written back.
    pub fn apply(&self, change: &Change, awaited: bool) -> Result<String, String> {
        match (self.decide)(change) {
            Decision::Accepted(what) => Ok(what),
            Decision::Refused {
                attribute,
                restore,
                reason,
            } => {
                if !awaited
                    && let Err(e) = restore_attribute(self.backstore.dir(), attribute, &restore)
                {
                    log::error!("{}: {e}", self.backstore.name());
                }
                Err(reason)
            }
        }
    }

    /// The minor number of its UIO device (`/dev/uio<minor>`), which the
    /// kernel's device events carry.
    pub fn minor(&self) -> Option<u32> {
        self.minor
    }

    /// The backstore served.
    pub fn backstore(&self) -> &UserBackstore {
        &self.backstore
    }

    /// Its `dev_config` when serving started.
    pub fn dev_config(&self) -> &str {
        &self.dev_config
    }

    /// Whether serving stopped on its own (a corrupt ring).
    pub fn failed(&self) -> bool {
        self.ring_thread.as_ref().is_none_or(|t| t.finished())
    }

    /// Stop serving, waiting for commands in flight; the backstore stays
    /// in configfs. Commands that arrive afterwards wait in the ring for
    /// the next handler (or the kernel's `cmd_time_out`).
    pub fn stop(mut self) -> Result<(), TargetError> {
        match self.ring_thread.take() {
            Some(t) => t.stop(),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for AdoptedLun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoptedLun")
            .field("backstore", &self.backstore)
            .field("dev_config", &self.dev_config)
            .finish_non_exhaustive()
    }
}

/// The largest command: `attrib/hw_max_sectors` blocks.
fn max_io_bytes(backstore: &UserBackstore, block_size: u32) -> Result<u32, TargetError> {
    let sectors = backstore.attrib_number("hw_max_sectors")?;
    let bytes = u64::try_from(sectors)
        .ok()
        .filter(|&s| s > 0)
        .map(|s| s.saturating_mul(u64::from(block_size)))
        .ok_or_else(|| TargetError::Config(format!("hw_max_sectors is {sectors}")))?;
    Ok(u32::try_from(bytes).unwrap_or(u32::MAX / block_size * block_size))
}

/// The unit, with its serial kept equal to `wwn/vpd_unit_serial`: read
/// again before every INQUIRY (rare, and tcmu-runner does the same), so a
/// serial written after `enable` is what the initiator sees.
struct SerialFollower<U> {
    unit: Arc<U>,
    serial_of: UserBackstore,
    serial: Mutex<String>,
}

impl<U: Unit> AsyncCommandHandler for SerialFollower<U> {
    fn start(&self, cmd: PendingCommand) {
        if cmd.cdb().first() == Some(&INQUIRY) {
            self.refresh_serial();
        }
        self.unit.start(cmd);
    }
}

impl<U: Unit> SerialFollower<U> {
    fn refresh_serial(&self) {
        let Ok(now) = self.serial_of.unit_serial() else {
            return; // the backstore is going away; keep what we had
        };
        let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        if *serial != now {
            log::info!("{}: unit serial is now {now:?}", self.serial_of.name());
            self.unit.emulator().set_serial(now.clone());
            *serial = now;
        }
    }
}
