//! The backstores the runner serves, and what it does with each device
//! event: serve an added one (opened on a thread of its own, so a slow
//! backing store holds up no other device), stop serving a removed one,
//! apply a change, and answer the kernel whenever it waits for an answer.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use tcmu_core::configfs::UserBackstore;
use tcmu_core::netlink::{DeviceEvent, EventKind, TcmuNetlink};
use tcmu_core::server::ServeOptions;
use tcmu_target::{AdoptedLun, Adoption, AsyncDevice, Servable};

use crate::backend::Opened;
use crate::runner::backing::{self, Geometry};
use crate::runner::config_string::{self, ConfigError};
#[cfg(feature = "rbd")]
use crate::runner::failover;
use crate::runner::opening::{OpenResult, OpeningEnded, Openings};

/// The served backstores, by the minor number of their UIO device (which,
/// unlike the device's name, stays when `dev_config` changes).
pub struct Devices {
    root: PathBuf,
    serve: ServeOptions,
    served: BTreeMap<u32, AdoptedLun>,
    /// Whether the kernel waits for our answers to each device's events,
    /// by minor: learned when the device is added (or found at start),
    /// because during its `rmdir` its attributes cannot be read — the
    /// read would wait for the removal, which waits for our answer.
    awaits: BTreeMap<u32, bool>,
    openings: Openings,
}

impl Devices {
    /// No device yet; backstores are looked for under `root` (the configfs
    /// target directory).
    pub fn new(root: &Path, serve: ServeOptions) -> Result<Devices, String> {
        Ok(Devices {
            root: root.to_path_buf(),
            serve,
            served: BTreeMap::new(),
            awaits: BTreeMap::new(),
            openings: Openings::new().map_err(|e| format!("cannot make a doorbell: {e}"))?,
        })
    }

    /// Readable when a device being opened is ready to be answered for
    /// (then call [`answer_opened`](Self::answer_opened)).
    pub fn doorbell(&self) -> BorrowedFd<'_> {
        self.openings.doorbell()
    }

    /// Serve the devices whose opening ended, and answer their ADDED events.
    pub fn answer_opened(&mut self, netlink: &TcmuNetlink) {
        for opened in self.openings.ended() {
            self.finish(opened, netlink);
        }
    }

    /// How many backstores are served.
    pub fn len(&self) -> usize {
        self.served.len()
    }

    /// Serve every enabled backstore of a known subtype that exists already
    /// (created while no runner ran, or served by one that ended).
    /// A backstore that cannot be served is logged and left alone.
    pub fn serve_existing(&mut self) -> Result<(), String> {
        let found = UserBackstore::scan(&self.root).map_err(|e| e.to_string())?;
        for backstore in found {
            if !backstore.enabled().unwrap_or(false) {
                continue;
            }
            if let Some(minor) = uio_minor_of(&backstore) {
                let awaited = backstore.awaits_netlink_replies().unwrap_or(false);
                self.awaits.insert(minor, awaited);
            }
            let Ok(dev_config) = backstore.dev_config() else {
                continue;
            };
            match config_string::parse(&dev_config) {
                Ok(_) => {}
                Err(ConfigError::UnknownSubtype(_)) => continue, // another handler's
                Err(e) => {
                    log::error!("{}: {e}; not served", backstore.name());
                    continue;
                }
            }
            match open_and_adopt(backstore.clone(), Adoption::Existing, self.serve) {
                Ok(lun) => self.insert(lun),
                Err((_, why)) => log::error!("{}: {why}; not served", backstore.name()),
            }
        }
        Ok(())
    }

    /// Handle one event; answer it if the kernel waits for the answer.
    pub fn handle(&mut self, event: &DeviceEvent, netlink: &TcmuNetlink) {
        // Any later event of a device being opened sees it served or
        // refused, with its ADDED answered first.
        if self.openings.contains(event.minor) {
            for opened in self.openings.wait_for(event.minor) {
                self.finish(opened, netlink);
            }
        }
        let backstore = UserBackstore::from_uio_name(&self.root, &event.device);
        // The kernel fixed at enable whether it waits for this device's
        // answers. Read it when the device comes, never while it goes.
        let read = || {
            backstore
                .as_ref()
                .is_some_and(|b| b.awaits_netlink_replies().unwrap_or(false))
        };
        let awaited = match event.kind {
            EventKind::Added => {
                let awaited = read();
                self.awaits.insert(event.minor, awaited);
                awaited
            }
            EventKind::Removed => self.awaits.remove(&event.minor).unwrap_or(false),
            EventKind::Reconfig(_) => *self.awaits.entry(event.minor).or_insert_with(read),
        };
        let status = match (&event.kind, backstore) {
            (EventKind::Added, Some(backstore)) => self.added(event, backstore, awaited),
            (EventKind::Added, None) => {
                log::warn!("{event}: not a TCMU device name; not served");
                Some(-(Errno::EINVAL as i32))
            }
            (EventKind::Removed, _) => {
                self.removed(event);
                Some(0)
            }
            (EventKind::Reconfig(change), _) => match self.served.get(&event.minor) {
                Some(lun) => match lun.apply(change, awaited) {
                    Ok(what) => {
                        log::info!("{}: {what}", lun.backstore().name());
                        Some(0)
                    }
                    Err(why) => {
                        log::warn!("{}: refused {why}", lun.backstore().name());
                        Some(-(Errno::EINVAL as i32))
                    }
                },
                // Not ours, or not served: a runner serving it later reads
                // the attributes afresh.
                None => Some(0),
            },
        };
        match status {
            Some(status) if awaited => {
                if let Err(e) = netlink.reply(event, status) {
                    log::error!("{event}: answering: {e}");
                }
            }
            _ => {}
        }
    }

    /// ADDED_DEVICE: start opening it if the subtype is ours; it is
    /// answered when the opening ends. `None`: no answer now.
    fn added(
        &mut self,
        event: &DeviceEvent,
        backstore: UserBackstore,
        awaited: bool,
    ) -> Option<i32> {
        let dev_config = event
            .device
            .splitn(4, '/')
            .nth(3)
            .unwrap_or_default()
            .to_string();
        if config_string::subtype(&dev_config) == "tcmu-rs" {
            return None; // served by the tcmu-serve that created it
        }
        let name = backstore.name().to_string();
        let serve = self.serve;
        self.openings
            .start(event.clone(), awaited, name, dev_config, move || {
                open_and_adopt(backstore, Adoption::Added, serve)
            });
        None
    }

    /// An opening ended: serve the device or log why not, and answer its
    /// ADDED event if the kernel waits.
    fn finish(&mut self, opened: OpeningEnded, netlink: &TcmuNetlink) {
        let OpeningEnded {
            event,
            awaited,
            name,
            dev_config,
            result,
        } = opened;
        let status = match result {
            Ok(lun) => {
                log::info!("{name}: serving {dev_config}");
                self.insert(lun);
                0
            }
            Err((errno, why)) => {
                log::error!("{name}: {why}; refused");
                -(errno as i32)
            }
        };
        if awaited && let Err(e) = netlink.reply(&event, status) {
            log::error!("{event}: answering: {e}");
        }
    }

    /// REMOVED_DEVICE: stop serving it (the kernel removes it next).
    fn removed(&mut self, event: &DeviceEvent) {
        if let Some(lun) = self.served.remove(&event.minor) {
            let name = lun.backstore().name().to_string();
            match lun.stop() {
                Ok(()) => log::info!("{name}: removed"),
                Err(e) => log::error!("{name}: stopping: {e}"),
            }
        }
    }

    /// Serve `lun` (by its minor); one served already under that minor stops.
    fn insert(&mut self, lun: AdoptedLun) {
        // open_and_adopt serves nothing without a minor.
        let Some(minor) = lun.minor() else {
            return;
        };
        if let Some(old) = self.served.insert(minor, lun) {
            log::warn!(
                "{}: served twice; the older one stops",
                old.backstore().name()
            );
            let _ = old.stop();
        }
    }

    /// Stop the backstores whose serving ended on its own (a corrupt
    /// ring); they stay in configfs for the administrator.
    pub fn reap_failed(&mut self) {
        let failed: Vec<u32> = self
            .served
            .iter()
            .filter(|(_, lun)| lun.failed())
            .map(|(minor, _)| *minor)
            .collect();
        for minor in failed {
            if let Some(lun) = self.served.remove(&minor) {
                log::error!("{}: serving stopped", lun.backstore().name());
                let _ = lun.stop();
            }
        }
    }

    /// Stop serving everything; the backstores stay, for the next runner.
    /// Devices still being opened are answered first.
    pub fn stop_all(mut self, netlink: &TcmuNetlink) -> Result<(), String> {
        for opened in self.openings.wait_all() {
            self.finish(opened, netlink);
        }
        let mut first_error = None;
        for (_, lun) in self.served {
            let name = lun.backstore().name().to_string();
            if let Err(e) = lun.stop() {
                log::error!("{name}: {e}");
                first_error.get_or_insert(format!("{name}: {e}"));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Open the backing store `backstore` names and serve the backstore.
fn open_and_adopt(backstore: UserBackstore, how: Adoption, serve: ServeOptions) -> OpenResult {
    let invalid = |e: String| (Errno::EINVAL, e);
    let dev_config = backstore.dev_config().map_err(|e| invalid(e.to_string()))?;
    let config = config_string::parse(&dev_config).map_err(|e| match e {
        ConfigError::UnknownSubtype(_) => (Errno::ENOENT, e.to_string()),
        ConfigError::Invalid(why) => (Errno::EINVAL, why),
    })?;
    let number = |attrib: &str| {
        backstore
            .attrib_number(attrib)
            .map_err(|e| invalid(e.to_string()))
    };
    let geometry = Geometry {
        block_size: u32::try_from(number("hw_block_size")?)
            .map_err(|_| invalid("hw_block_size out of range".into()))?,
        dev_size: u64::try_from(number("dev_size")?)
            .map_err(|_| invalid("dev_size out of range".into()))?,
    };
    if let Some(secs) = config.cmd_time_out {
        backstore
            .set_attrib("cmd_time_out", &secs.to_string())
            .map_err(|e| invalid(e.to_string()))?;
    }
    let opened =
        backing::open(&config.backing, geometry, backstore.name()).map_err(|e| (Errno::EIO, e))?;
    let lun = adopt_opened(opened, backstore, how, serve).map_err(|e| (Errno::EIO, e))?;
    if lun.minor().is_none() {
        let _ = lun.stop();
        return Err((Errno::EIO, "its UIO device has no minor number".into()));
    }
    Ok(lun)
}

/// Serve `opened` as `backstore`.
fn adopt_opened(
    opened: Opened,
    backstore: UserBackstore,
    how: Adoption,
    serve: ServeOptions,
) -> Result<AdoptedLun, String> {
    fn with<D: Servable>(
        device: D,
        backstore: UserBackstore,
        how: Adoption,
        serve: ServeOptions,
    ) -> Result<AdoptedLun, String> {
        AdoptedLun::adopt(device, backstore, how, serve).map_err(|e| e.to_string())
    }
    match opened {
        Opened::Sync(device) => with(device, backstore, how, serve),
        Opened::Nbd(device) => with(AsyncDevice(device), backstore, how, serve),
        Opened::FileUring(device) => with(AsyncDevice(device), backstore, how, serve),
        #[cfg(feature = "rbd")]
        Opened::Rbd(device) => {
            let observer =
                failover::observer(backstore.name().to_string(), device.failover_switch());
            AdoptedLun::adopt_observing_alua(AsyncDevice(device), backstore, how, serve, observer)
                .map_err(|e| e.to_string())
        }
    }
}

/// The minor number of the UIO device of an enabled backstore.
fn uio_minor_of(backstore: &UserBackstore) -> Option<u32> {
    let name = backstore.uio_name().ok()?;
    let dir =
        tcmu_core::uio::find_by_name(Path::new(tcmu_core::uio::SYS_CLASS_UIO), &name).ok()??;
    dir.file_name()?.to_str()?.strip_prefix("uio")?.parse().ok()
}
