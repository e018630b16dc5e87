//! Serving a [`BlockDevice`](scsi_emu::BlockDevice) (or an
//! [`AsyncBlockDevice`](scsi_emu::AsyncBlockDevice) wrapped in
//! [`AsyncDevice`]) as a SCSI disk of the running kernel: the one entry
//! point for programs (the `tcmu-serve` command uses it too).
//!
//! ```no_run
//! use block_backends::MemoryDevice;
//! use tcmu_target::{Export, Target};
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
//! netlink): the device is resized through [`BlockDevice::resize`](scsi_emu::BlockDevice::resize) and the
//! initiator told CAPACITY DATA HAS CHANGED, the write cache follows, and a
//! change that cannot be made is written back (see the `reconfig` module's
//! notes in the README). Task management notification is turned on.

//!
//! This crate is the control path around the data path of `tcmu-core`
//! (ring, workers) and the SCSI emulation of `scsi-emu`: kernel modules,
//! the configfs backstore and its export, the UIO device, netlink
//! reconfiguration and signals.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod adopted;
mod builder;
mod configfs_port_groups;
mod error;
mod export;
mod naming;
mod reconfig;
mod ring_thread;
mod servable;
mod signals;
mod target;

pub use adopted::{AdoptedLun, Adoption};
pub use builder::TargetBuilder;
pub use configfs_port_groups::AluaObserver;
pub use error::TargetError;
pub use export::Export;
pub use servable::{AsyncDevice, Servable};
pub use signals::Signals;
pub use target::{ForceStop, Target};
pub use tcmu_core::configfs::{AccessType, AluaGroup, GatewayAlua, IscsiAuth};
