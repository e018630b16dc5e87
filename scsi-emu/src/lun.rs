//! One logical unit's context: the device and what every command shares
//! about it (identity, capabilities, limits, mode parameters, the stopped
//! flag, the range locks, a capacity change not yet reported, the copy
//! statuses its copy manager holds, the sanitize state). The command families take this, not
//! the whole emulator; EXTENDED COPY reaches the unit itself through it,
//! and the copy registry holds it to reach the unit from EXTENDED COPY on
//! another one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::capabilities::Capabilities;
use crate::copy_registry::CopyTarget;
use crate::copy_status::CopyStatuses;
use crate::device_capabilities::DeviceCapabilities;
use crate::identity::LunIdentity;
use crate::limits::Limits;
use crate::mode_page::ModeState;
use crate::port_groups::{self, PortGroupSource, PortGroups};
use crate::range_lock::RangeLocks;
use crate::sanitize_state::SanitizeState;
use crate::write_flags::WriteFlags;

/// What a stopped unit reports: START STOP UNIT with START=1 makes it
/// ready again.
pub(crate) const NOT_READY_INITIALIZING_COMMAND_REQUIRED: AdditionalSense =
    AdditionalSense::LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED;

/// NOT READY, INITIALIZING COMMAND REQUIRED: what a stopped unit reports.
pub(crate) fn not_ready() -> Sense {
    Sense::new(SenseKey::NotReady, NOT_READY_INITIALIZING_COMMAND_REQUIRED)
}

/// A logical unit: its device and its shared state. Mode parameters, the
/// stopped flag and the range locks live behind atomics and mutexes, so
/// commands run on it from several threads at once.
pub(crate) struct Lun<D> {
    pub(crate) device: D,
    /// Behind a lock: a TCMU handler learns the serial the administrator
    /// sets after the unit starts (rtslib writes it after `enable`).
    pub(crate) identity: RwLock<LunIdentity>,
    /// What the device declared, once.
    pub(crate) declared: DeviceCapabilities,
    /// What the unit advertises, derived from that and the configuration.
    pub(crate) caps: Capabilities,
    /// The largest data transfer of one command, in bytes.
    pub(crate) max_io_bytes: u32,
    pub(crate) limits: Limits,
    pub(crate) modes: ModeState,
    /// START STOP UNIT with START=0 was processed: medium access is
    /// refused until a START.
    pub(crate) stopped: AtomicBool,
    pub(crate) locks: RangeLocks,
    /// The capacity changed and no command has reported it yet: the next
    /// one gets the unit attention.
    pub(crate) capacity_changed: AtomicBool,
    /// What RECEIVE COPY STATUS reports about this unit's EXTENDED COPY
    /// commands.
    pub(crate) copy_statuses: CopyStatuses,
    /// A sanitize running or failed: most commands are refused then.
    pub(crate) sanitize: SanitizeState,
    /// Where the target port groups come from, when the unit reports
    /// asymmetric access.
    pub(crate) port_groups: Option<Arc<dyn PortGroupSource>>,
}

impl<D: BlockDevice> Lun<D> {
    /// The unit on `device`. Its optional capabilities are read once, here.
    pub(crate) fn new(device: D, identity: LunIdentity, max_io_bytes: u32) -> Self {
        let declared = device.capabilities();
        let caps = Capabilities {
            unmap: declared.unmap,
            unmap_reads_zeroes: declared.unmap && declared.unmap_reads_zeroes,
            lba_status: declared.lba_status,
            atomic_write_blocks: declared.atomic_write_blocks,
            port_groups: false,
        };
        let limits = Limits::new(device.block_size(), max_io_bytes, &caps);
        let modes = ModeState::new(declared.write_cache);
        Lun {
            device,
            identity: RwLock::new(identity),
            declared,
            caps,
            max_io_bytes,
            limits,
            modes,
            stopped: AtomicBool::new(false),
            locks: RangeLocks::new(caps.atomic_write_blocks > 0),
            capacity_changed: AtomicBool::new(false),
            copy_statuses: CopyStatuses::default(),
            sanitize: SanitizeState::default(),
            port_groups: None,
        }
    }

    /// Report asymmetric access as `source` tells.
    pub(crate) fn set_port_groups(&mut self, source: Arc<dyn PortGroupSource>) {
        self.port_groups = Some(source);
        self.caps.port_groups = true;
    }

    /// The current port groups; `None` when the unit has no source or it
    /// cannot tell.
    pub(crate) fn current_port_groups(&self) -> Option<PortGroups> {
        self.port_groups.as_deref().and_then(port_groups::current)
    }

    /// Accept at most `bytes` of data per command.
    pub(crate) fn set_max_io_bytes(&mut self, bytes: u32) {
        self.max_io_bytes = bytes;
        self.limits = Limits::new(self.device.block_size(), bytes, &self.caps);
    }

    pub(crate) fn device(&self) -> &D {
        &self.device
    }

    pub(crate) fn identity(&self) -> LunIdentity {
        self.identity
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Report `serial` from now on (VPD pages 0x80 and 0x83).
    pub(crate) fn set_serial(&self, serial: String) {
        self.identity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .serial = serial;
    }

    /// Whether START STOP UNIT stopped the unit.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether sense goes out in descriptor format (D_SENSE).
    pub(crate) fn descriptor_sense(&self) -> bool {
        self.modes.current().d_sense
    }

    /// Whether the write cache is enabled (WCE).
    pub(crate) fn write_cache_enabled(&self) -> bool {
        self.modes.current().wce
    }

    /// Whether writes must reach stable storage before completing even
    /// without FUA: the initiator turned the device's cache off.
    pub(crate) fn write_through(&self) -> bool {
        self.declared.write_cache && !self.write_cache_enabled()
    }

    /// The flags of a write with the CDB's FUA bit `fua`: FUA also when
    /// the initiator turned the device's cache off.
    pub(crate) fn write_flags(&self, fua: bool) -> WriteFlags {
        WriteFlags::fua(fua || self.write_through())
    }

    /// Whether the device declared itself read-only.
    pub(crate) fn read_only(&self) -> bool {
        self.declared.read_only
    }

    /// Why the unit refuses writes, if it does: a read-only device (WRITE
    /// PROTECTED), or an initiator set SWP in the control mode page
    /// (LOGICAL UNIT SOFTWARE WRITE PROTECTED).
    pub(crate) fn write_protection(&self) -> Option<Sense> {
        let code = if self.read_only() {
            AdditionalSense::WRITE_PROTECTED
        } else if self.modes.current().swp {
            AdditionalSense::LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED
        } else {
            return None;
        };
        Some(Sense::new(SenseKey::DataProtect, code))
    }
}

impl<D: BlockDevice> CopyTarget for Lun<D> {
    fn block_size(&self) -> u32 {
        self.device.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.device.num_blocks()
    }
    fn read_only(&self) -> bool {
        self.write_protection().is_some()
    }
    fn stopped(&self) -> bool {
        self.is_stopped()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let bs = u64::from(self.device.block_size().max(1));
        // Not in the middle of a WRITE ATOMIC.
        let _range = self.locks.lock_read(lba, buf.len() as u64 / bs);
        self.device.read(lba, buf)
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let bs = u64::from(self.device.block_size().max(1));
        let _range = self.locks.lock(lba, buf.len() as u64 / bs);
        // The initiator may have turned the cache off: then FUA.
        self.device
            .write_vectored(lba, &[buf], self.write_flags(false))
    }
}
