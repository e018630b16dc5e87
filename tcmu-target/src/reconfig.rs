//! Following the kernel's RECONFIG_DEVICE events for a served LUN.
//!
//! Writing `attrib/dev_size`, `attrib/emulate_write_cache` or
//! `attrib/dev_config` of an enabled TCMU backstore makes the kernel
//! multicast a RECONFIG_DEVICE event on its `TCM-USER` netlink channel.
//! A [`Target`](crate::Target) listens and applies the change:
//!
//! - `dev_size`: the device is resized ([`BlockDevice::resize`]); the next
//!   command reports CAPACITY DATA HAS CHANGED, so the initiator reads the
//!   capacity again;
//! - `emulate_write_cache`: the caching mode page's WCE bit follows it;
//! - `dev_config`: it names the handler and its backing store, which a
//!   running target cannot swap, so only the current value is accepted.
//!
//! The kernel does not wait for this handler's answer: every backstore is
//! created with `nl_reply_supported=-1`, because such a wait is
//! uninterruptible and outlives a handler that died (the hang tcmu-runner
//! is known for). The kernel therefore takes the new value at once, and a
//! refused change is undone by writing the previous value back (which
//! raises one more event, for a value that is already in effect). No
//! `*_DONE` reply is sent: with no wait pending the kernel would only log
//! an error for it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use io::Write;
use tcmu_core::netlink::{Change, DeviceEvent, EventKind, TcmuNetlink};
use tcmu_core::poll::wait_readable;

use scsi_emu::{BlockDevice, Emulator};

use crate::servable::Unit;

/// What becomes of one announced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Applied (or already in effect); the text says what happened.
    Accepted(String),
    /// Not applied: `attribute` (under `attrib/`) goes back to `restore`.
    Refused {
        attribute: &'static str,
        restore: String,
        reason: String,
    },
}

/// Apply `change` to the LUN behind `emulator`, whose current `dev_config`
/// (the part after the hba/name) is `dev_config`.
pub(crate) fn decide<D: BlockDevice>(
    emulator: &Emulator<D>,
    dev_config: &str,
    change: &Change,
) -> Decision {
    match change {
        Change::DevSize(bytes) => {
            let device = emulator.device();
            let block_size = u64::from(device.block_size());
            let old = device.num_blocks() * block_size;
            if *bytes == 0 || bytes % block_size != 0 {
                return Decision::Refused {
                    attribute: "dev_size",
                    restore: old.to_string(),
                    reason: format!(
                        "dev_size {bytes}: not a whole, non-zero number of {block_size}-byte blocks"
                    ),
                };
            }
            match emulator.resize(*bytes) {
                Ok(()) if *bytes == old => Decision::Accepted(format!("size stays {old} bytes")),
                Ok(()) => Decision::Accepted(format!(
                    "size now {bytes} bytes (was {old}); CAPACITY DATA HAS CHANGED goes to the \
                     initiator"
                )),
                Err(e) => Decision::Refused {
                    attribute: "dev_size",
                    restore: old.to_string(),
                    reason: format!("dev_size {bytes}: the device cannot take that size ({e})"),
                },
            }
        }
        Change::WriteCache(on) => {
            emulator.set_write_cache_enabled(*on);
            Decision::Accepted(format!("write cache {}", if *on { "on" } else { "off" }))
        }
        Change::DevConfig(new) => {
            let new = new.trim_end_matches('\n');
            if new == dev_config {
                Decision::Accepted(format!("dev_config stays {dev_config:?}"))
            } else {
                Decision::Refused {
                    attribute: "dev_config",
                    restore: dev_config.to_string(),
                    reason: format!(
                        "dev_config {new:?}: a running target cannot change its backing store"
                    ),
                }
            }
        }
    }
}

/// The thread that listens for this LUN's events; stopped on drop.
pub(crate) struct ReconfigWatcher {
    stop: UnixStream,
    handle: Option<JoinHandle<()>>,
}

impl ReconfigWatcher {
    /// Listen for RECONFIG_DEVICE events of UIO device `minor` and apply
    /// them to `emulator`; refused changes are undone under `backstore_dir`.
    /// Without the netlink family (an old kernel) the changes are not
    /// followed, which is logged once.
    pub(crate) fn spawn<U: Unit>(
        minor: u32,
        backstore_dir: PathBuf,
        dev_config: String,
        unit: Arc<U>,
    ) -> io::Result<Option<ReconfigWatcher>> {
        let netlink = match TcmuNetlink::connect() {
            Ok(n) => n,
            Err(e) => {
                log::warn!("attribute changes (dev_size, write cache) are not followed: {e}");
                return Ok(None);
            }
        };
        let (stop, stop_rx) = UnixStream::pair()?;
        let handle = std::thread::Builder::new()
            .name("tcmu-reconfig".into())
            .spawn(move || {
                watch(
                    &netlink,
                    stop_rx.as_fd(),
                    minor,
                    &backstore_dir,
                    &dev_config,
                    unit.emulator(),
                )
            })?;
        Ok(Some(ReconfigWatcher {
            stop,
            handle: Some(handle),
        }))
    }
}

impl Drop for ReconfigWatcher {
    fn drop(&mut self) {
        let _ = self.stop.write_all(&[1]);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn watch<D: BlockDevice>(
    netlink: &TcmuNetlink,
    stop: BorrowedFd<'_>,
    minor: u32,
    backstore_dir: &Path,
    dev_config: &str,
    emulator: &Emulator<D>,
) {
    loop {
        // The stop first: it wins when both are readable.
        match wait_readable(stop, &[netlink.as_fd()], None) {
            Ok(Some(1)) => {}
            Ok(_) => return,
            Err(e) => {
                log::error!("netlink events: {e}; attribute changes are no longer followed");
                return;
            }
        }
        let event = match netlink.recv_event(Some(Duration::ZERO)) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                log::error!("netlink events: {e}; attribute changes are no longer followed");
                return;
            }
        };
        if let Some(change) = reconfig_of(&event, minor) {
            apply(backstore_dir, dev_config, emulator, change);
        }
    }
}

/// The change `event` announces for UIO device `minor`, if any.
fn reconfig_of(event: &DeviceEvent, minor: u32) -> Option<&Change> {
    match &event.kind {
        // The device string changes with dev_config; the minor does not.
        EventKind::Reconfig(change) if event.minor == minor => Some(change),
        _ => None,
    }
}

fn apply<D: BlockDevice>(
    backstore_dir: &Path,
    dev_config: &str,
    emulator: &Emulator<D>,
    change: &Change,
) {
    match decide(emulator, dev_config, change) {
        Decision::Accepted(what) => log::info!("{}: {what}", backstore_dir.display()),
        Decision::Refused {
            attribute,
            restore,
            reason,
        } => {
            log::warn!(
                "{}: refused {reason}; attrib/{attribute} is set back to {restore:?}",
                backstore_dir.display()
            );
            if let Err(e) = restore_attribute(backstore_dir, attribute, &restore) {
                log::error!("{}: {e}", backstore_dir.display());
            }
        }
    }
}

/// Write `value` back to `attrib/<attribute>`. The writer of the refused
/// value may still be finishing (the kernel stores it after sending the
/// event), so the value is read back and written again until it stays.
pub(crate) fn restore_attribute(dir: &Path, attribute: &str, value: &str) -> io::Result<()> {
    let path = dir.join("attrib").join(attribute);
    // Let the refused write finish first: a dev_config store goes on to
    // rename the UIO device from the stored string, and a second store
    // racing with that makes the kernel warn (kvasprintf sees the string
    // change under it). Stored means it no longer reads `value`.
    for _ in 0..20 {
        if !std::fs::read_to_string(&path).is_ok_and(|v| v.trim_end() == value) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        std::fs::write(&path, value)?;
        std::thread::sleep(Duration::from_millis(50));
        if std::fs::read_to_string(&path)?.trim_end() == value {
            return Ok(());
        }
    }
    Err(io::Error::other(format!(
        "attrib/{attribute} did not keep the value {value:?}"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use scsi_emu::{BlockError, LunIdentity};

    /// A zero-filled disk: resizable up to 1000 blocks, or of a fixed size.
    struct TestDisk {
        blocks: AtomicU64,
        resizable: bool,
        write_cache: bool,
    }

    impl BlockDevice for TestDisk {
        fn block_size(&self) -> u32 {
            512
        }
        fn num_blocks(&self) -> u64 {
            self.blocks.load(Ordering::SeqCst)
        }
        fn read(&self, _lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            buf.fill(0);
            Ok(())
        }
        fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
            Ok(())
        }
        fn capabilities(&self) -> scsi_emu::DeviceCapabilities {
            scsi_emu::DeviceCapabilities::new().write_cache(self.write_cache)
        }
        fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
            if !self.resizable {
                return Err(BlockError::Unsupported);
            }
            if num_blocks > 1000 {
                return Err(BlockError::NoSpace);
            }
            self.blocks.store(num_blocks, Ordering::SeqCst);
            Ok(())
        }
    }

    fn test_lun(blocks: u64, resizable: bool, write_cache: bool) -> Emulator<TestDisk> {
        let dev = TestDisk {
            blocks: AtomicU64::new(blocks),
            resizable,
            write_cache,
        };
        let identity = LunIdentity::for_device("SN0003", &dev);
        Emulator::new(dev, identity)
    }

    fn memory_lun(blocks: u64) -> Emulator<TestDisk> {
        test_lun(blocks, true, false)
    }

    #[test]
    fn a_new_size_resizes_the_device() {
        let lun = memory_lun(100);
        let d = decide(&lun, "tcmu-rs/mem", &Change::DevSize(300 * 512));
        assert!(
            matches!(&d, Decision::Accepted(t) if t.contains("was 51200")),
            "{d:?}"
        );
        assert_eq!(lun.device().num_blocks(), 300);
        let d = decide(&lun, "tcmu-rs/mem", &Change::DevSize(300 * 512));
        assert!(
            matches!(&d, Decision::Accepted(t) if t.contains("stays")),
            "{d:?}"
        );
    }

    #[test]
    fn an_impossible_size_is_refused_and_the_old_one_restored() {
        let lun = memory_lun(100);
        for bytes in [0, 1000, 100 * 512 + 7, 2000 * 512] {
            let d = decide(&lun, "x", &Change::DevSize(bytes));
            assert!(
                matches!(&d, Decision::Refused { attribute: "dev_size", restore, reason }
                    if restore == "51200"
                        && reason.starts_with(&format!("dev_size {bytes}: "))),
                "{d:?}"
            );
            assert_eq!(lun.device().num_blocks(), 100);
        }
        // A device that cannot resize at all.
        let fixed = test_lun(8, false, false);
        let d = decide(&fixed, "x", &Change::DevSize(16 * 512));
        assert!(
            matches!(&d, Decision::Refused { restore, .. } if restore == "4096"),
            "{d:?}"
        );
        assert_eq!(fixed.device().num_blocks(), 8);
    }

    #[test]
    fn the_write_cache_follows_the_kernel() {
        let lun = test_lun(8, false, true);
        assert!(lun.write_cache_enabled());
        let d = decide(&lun, "x", &Change::WriteCache(false));
        assert_eq!(d, Decision::Accepted("write cache off".into()));
        assert!(!lun.write_cache_enabled());
        decide(&lun, "x", &Change::WriteCache(true));
        assert!(lun.write_cache_enabled());
    }

    #[test]
    fn only_the_current_dev_config_is_accepted() {
        let lun = memory_lun(8);
        let same = decide(
            &lun,
            "tcmu-rs/file",
            &Change::DevConfig("tcmu-rs/file\n".into()),
        );
        assert!(matches!(same, Decision::Accepted(_)));
        let other = decide(
            &lun,
            "tcmu-rs/file",
            &Change::DevConfig("tcmu-rs/other".into()),
        );
        assert!(
            matches!(&other, Decision::Refused { attribute: "dev_config", restore, .. }
                if restore == "tcmu-rs/file"),
            "{other:?}"
        );
    }

    #[test]
    fn only_this_devices_reconfig_events_count() {
        let event = |kind, minor| DeviceEvent {
            kind,
            device: "tcm-user/0/a/tcmu-rs/mem".into(),
            minor,
            device_id: 3,
        };
        let size = Change::DevSize(4096);
        assert_eq!(
            reconfig_of(&event(EventKind::Reconfig(size.clone()), 2), 2),
            Some(&size)
        );
        assert_eq!(reconfig_of(&event(EventKind::Reconfig(size), 3), 2), None);
        assert_eq!(reconfig_of(&event(EventKind::Added, 2), 2), None);
        assert_eq!(reconfig_of(&event(EventKind::Removed, 2), 2), None);
    }

    #[test]
    fn a_restored_attribute_is_written_and_checked() {
        let tmp_dir = tempfile::tempdir().unwrap();
        let dir = tmp_dir.path().to_path_buf();
        std::fs::create_dir_all(dir.join("attrib")).unwrap();
        restore_attribute(&dir, "dev_size", "4096").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("attrib/dev_size")).unwrap(),
            "4096"
        );
        let missing = restore_attribute(&dir.join("nowhere"), "dev_size", "1");
        assert!(missing.is_err());
    }
}
