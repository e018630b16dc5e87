//! A disk that is an image of a Ceph cluster: RBD (RADOS Block Device).
//!
//! [`RbdDevice`] opens one image with librbd (Ceph Octopus or later) and
//! turns every block request into an asynchronous librbd call whose
//! completion callback wakes the request's future: as an
//! [`AsyncBlockDevice`] it keeps as many requests in flight as commands
//! arrive, with no thread waiting on any of them, and they complete in
//! whatever order the cluster answers. Wrapped in
//! [`Blocking`](scsi_emu::Blocking) it is a
//! [`BlockDevice`](scsi_emu::BlockDevice) whose calls wait for the
//! callback on the calling thread.
//!
//! Built only with the crate's `rbd` feature, which links `librbd` and
//! `librados` (Debian: `apt-get install librbd-dev librados-dev`).
//!
//! Connecting:
//! - The Ceph configuration is read from [`RbdSpec::conf`], else from the
//!   places every Ceph client looks (`$CEPH_CONF`, /etc/ceph/ceph.conf,
//!   ~/.ceph/config, ./ceph.conf); it names the monitors and the keyring.
//! - The client is `client.ID` for [`RbdSpec::client_id`] `Some(ID)`,
//!   else `client.admin`.
//! - The image size must be a whole, non-zero number of blocks
//!   ([`RbdError::BadSize`] otherwise). [`RbdDevice::refresh_size`] reads
//!   it again after the image was resized.
//!
//! Requests:
//! - READ and WRITE are `rbd_aio_read` and `rbd_aio_write` on a buffer of
//!   the request's own (one copy of the data).
//! - SYNCHRONIZE CACHE is `rbd_aio_flush`.
//! - UNMAP and WRITE SAME with zeros are `rbd_aio_write_zeroes`, which
//!   librbd carries out as a discard that deallocates whole objects and
//!   zeroes partial ones. (`rbd_aio_discard` skips ranges smaller than
//!   `rbd_discard_granularity_bytes`, 64 KiB by default, leaving their old
//!   data; the zeroing discard does not, so unmapped blocks read as zeros
//!   and [`DeviceCapabilities::unmap_reads_zeroes`] is declared.)
//!
//! Failures: librados is told to give up on monitor and OSD operations
//! after [`RbdOptions::timeout`] (`client_mount_timeout`,
//! `rados_mon_op_timeout`, `rados_osd_op_timeout`), so a request to a
//! cluster that is gone fails with `ETIMEDOUT` instead of waiting for
//! ever. As a second bound, a request is waited for at most twice that
//! plus one second (a thread wakes waiters past that), then given up
//! ([`BlockError::Busy`]; the request finishes unobserved). Errors map to [`BlockError`]s so that the
//! initiator retries what may pass: `ETIMEDOUT`, `EAGAIN`, `EBUSY`,
//! `ENOTCONN` and `ESHUTDOWN` are [`BlockError::Busy`]; `ENOSPC` and
//! `EDQUOT` are [`BlockError::NoSpace`]; `EROFS` is
//! [`BlockError::ReadOnly`]; anything else is [`BlockError::Io`]; a
//! flush that fails is never [`BlockError::Busy`] (see below). The
//! first failure after a success is logged at error level, the rest of an
//! outage at debug level, and the first success after it at info level.
//!
//! A request that timed out may still be carried out by the cluster later;
//! that is the price of not hanging, as with any storage timeout.
//!
//! librbd's cache is off unless [`RbdOptions::cache`] turns it on (the
//! device sets `rbd_cache` either way, over what the configuration file
//! says). Without it a write completes when the OSDs have it, and its
//! error, if any, is the write's own: there is no volatile write cache
//! ([`DeviceCapabilities::write_cache`] is not declared). With it, librbd's write-around
//! mode acknowledges writes before the OSDs have them (after the first
//! flush) and reports their errors only at a later flush, and only at one
//! issued while other requests are in flight: a SYNCHRONIZE CACHE with
//! nothing else in flight passes an earlier loss by. A failed flush is
//! therefore never reported as retryable (a retried flush would succeed
//! and hide the loss); the cache is for those who accept that. An image
//! whose own configuration (`rbd config image set`) turns the cache on
//! overrides this.
//!
//! Two gateways (failover): with [`RbdOptions::failover`], two processes
//! may serve the same image to a multipath initiator that uses one of them
//! at a time, and only the one holding the image's exclusive lock writes.
//! The image needs the exclusive-lock feature ([`RbdError::NoExclusiveLock`]
//! otherwise). librbd is told never to take or hand over the lock by
//! itself (`rbd_auto_exclusive_lock_until_manual_request` off) and its
//! cache is off, so that no acknowledged write waits in a volatile cache.
//! A write (or UNMAP, WRITE SAME) without the lock starts acquiring it in
//! the background and is answered [`BlockError::Busy`] at once; the
//! initiator's retry passes once the lock is held. Acquiring breaks the
//! current owner's lock, and librbd blocklists the owner's client first
//! (`rbd_blocklist_on_break_lock`), so none of the old owner's writes can
//! land afterwards. The old owner then sees its requests fail (blocklisted,
//! or a write refused without the lock): it logs that the lock was lost,
//! answers them [`BlockError::Busy`] and, at its next request, opens a new
//! session (a new client) in the background, closing the fenced one when
//! its last request has finished. Reads and SYNCHRONIZE CACHE never take
//! the lock, so path checkers reading through both gateways do not move it;
//! a SYNCHRONIZE CACHE without the lock succeeds at once (without the cache
//! every acknowledged write is on the OSDs already, and librbd would refuse
//! a flush without the lock).
//! [`RbdDevice::lock_state`] tells where the lock stands; dropping the
//! device releases it.
//!
//! A server that learns only after opening that another gateway serves the
//! image (tcmu-runner's situation: ceph-iscsi creates the ALUA groups after
//! the device) switches failover on later with
//! [`RbdDevice::failover_switch`]. Until then librbd moves the lock
//! between writers by itself; from then on, the rules above apply, and the
//! next write takes the lock explicitly. Growing the image with `rbd
//! resize` works while a gateway holds the lock: librbd hands the resize
//! to the owner.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use scsi_emu::{AsyncBlockDevice, BlockError, BlockSize, DeviceCapabilities, Extent};

use deadlines::Deadlines;
use lock::Gate;
pub use lock::LockState;
use session::{OpenError, SessionParams};

mod deadlines;
#[allow(unsafe_code)]
mod ffi;
mod lock;
mod session;

/// Which image to open, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RbdSpec {
    /// The pool's name.
    pub pool: String,
    /// The image's name in the pool.
    pub image: String,
    /// The Ceph configuration file; `None` looks where Ceph clients do.
    pub conf: Option<PathBuf>,
    /// The client's ID, without `client.`; `None` is `admin`.
    pub client_id: Option<String>,
    /// What the device's log lines call it besides `pool/image`: the
    /// backstore or device serving the image, for a process that serves
    /// one image more than once (two gateways in one test, say). `None`
    /// names the image alone.
    pub label: Option<String>,
}

impl RbdSpec {
    /// `pool/image`, and the label in parentheses when there is one.
    fn log_name(&self) -> String {
        match &self.label {
            Some(label) => format!("{self} ({label})"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for RbdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.image)
    }
}

/// How to connect an [`RbdDevice`].
///
/// ```
/// use std::time::Duration;
/// use block_backends::RbdOptions;
///
/// let options = RbdOptions { block_size: 4096, ..RbdOptions::default() };
/// assert_eq!(options.timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RbdOptions {
    /// Logical block size: 512, 1024, 2048 or 4096. Default 512.
    pub block_size: u32,
    /// How long librados waits for the monitors (connecting, commands)
    /// and for an OSD operation before it fails with `ETIMEDOUT`; whole
    /// seconds, at least one. Default 10 seconds.
    pub timeout: Duration,
    /// Use librbd's write cache (`rbd_cache`), a volatile write cache for
    /// SCSI; see the [module](self) documentation. Default off.
    pub cache: bool,
    /// Failover between two gateways serving the image: write only while
    /// holding the image's exclusive lock, taking it (and fencing its
    /// owner) when a write arrives without it; see "Two gateways" in the
    /// [module](self) documentation. Needs the image's exclusive-lock
    /// feature; turns [`cache`](Self::cache) off. Default off.
    pub failover: bool,
}

impl Default for RbdOptions {
    fn default() -> Self {
        RbdOptions {
            block_size: 512,
            timeout: Duration::from_secs(10),
            cache: false,
            failover: false,
        }
    }
}

/// Why an [`RbdDevice`] could not be connected, or its size not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RbdError {
    /// A thread of the device could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(String),
    /// The block size is not 512, 1024, 2048 or 4096.
    #[error("invalid block size {0}: must be 512, 1024, 2048 or 4096")]
    InvalidBlockSize(u32),
    /// A name or path contains a NUL byte.
    #[error("invalid {what} {value:?}: contains a NUL byte")]
    InvalidName {
        /// What it names: "pool", "image", "client id", "config path".
        what: &'static str,
        /// The value.
        value: String,
    },
    /// librados could not make a cluster handle.
    #[error(
        "cannot create a Ceph client handle for client.{}: {}",
        client_id.as_deref().unwrap_or("admin"),
        describe(*errno)
    )]
    Create {
        /// The client ID asked for.
        client_id: Option<String>,
        /// The errno.
        errno: i32,
    },
    /// The configuration file could not be read.
    #[error("{}", config_failure(path.as_ref(), *errno))]
    Config {
        /// The file, or `None` for the default places.
        path: Option<PathBuf>,
        /// The errno.
        errno: i32,
    },
    /// A configuration option could not be set.
    #[error("cannot set Ceph option {option}: {}", describe(*errno))]
    SetOption {
        /// The option.
        option: &'static str,
        /// The errno.
        errno: i32,
    },
    /// The cluster could not be reached or refused the client.
    #[error("{}", connect_failure(*errno, *timeout))]
    Connect {
        /// The errno.
        errno: i32,
        /// The timeout that was in force, for the message.
        timeout: Duration,
    },
    /// The cluster has no pool of that name.
    #[error("the Ceph cluster has no pool named {pool:?}")]
    NoPool {
        /// The pool.
        pool: String,
    },
    /// The pool could not be opened for another reason.
    #[error("cannot open pool {pool:?}: {}", describe(*errno))]
    Pool {
        /// The pool.
        pool: String,
        /// The errno.
        errno: i32,
    },
    /// The pool has no image of that name.
    #[error("pool {pool:?} has no RBD image named {image:?}")]
    NoImage {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
    },
    /// The image could not be opened for another reason.
    #[error("cannot open RBD image {pool}/{image}: {}", describe(*errno))]
    Open {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
        /// The errno.
        errno: i32,
    },
    /// The image's size could not be read.
    #[error("cannot read the RBD image's size: {}", describe(*errno))]
    Size {
        /// The errno.
        errno: i32,
    },
    /// Failover was asked for, but the image lacks the exclusive-lock
    /// feature.
    #[error(
        "RBD image {pool}/{image} needs the exclusive-lock feature for failover \
         (rbd feature enable {pool}/{image} exclusive-lock)"
    )]
    NoExclusiveLock {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
    },
    /// Failover was asked for on a device with librbd's write cache on.
    #[error(
        "RBD image {pool}/{image}: failover needs librbd's write cache off \
         (writes it acknowledged would be lost with the gateway)"
    )]
    FailoverWithCache {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
    },
    /// The image size is not a whole, non-zero number of blocks.
    #[error("RBD image size {size} is not a non-zero multiple of the block size {block_size}")]
    BadSize {
        /// Image size in bytes.
        size: u64,
        /// The block size.
        block_size: u32,
    },
}

fn describe(errno: i32) -> &'static str {
    Errno::from_raw(errno).desc()
}

/// The message of [`RbdError::Config`]: the file, or the default places.
fn config_failure(path: Option<&PathBuf>, errno: i32) -> String {
    match path {
        Some(path) => format!(
            "cannot read the Ceph configuration {}: {}",
            path.display(),
            describe(errno)
        ),
        None => format!(
            "cannot read a Ceph configuration ($CEPH_CONF, /etc/ceph/ceph.conf, \
             ~/.ceph/config, ./ceph.conf): {}",
            describe(errno)
        ),
    }
}

/// The message of [`RbdError::Connect`]: what the errno means for a
/// cluster connection.
fn connect_failure(errno: i32, timeout: Duration) -> String {
    let why = if errno == Errno::ETIMEDOUT as i32 {
        format!(
            "no monitor answered within {} s (is the cluster up, is mon_host right?)",
            timeout.as_secs()
        )
    } else if errno == Errno::EACCES as i32 || errno == Errno::EPERM as i32 {
        format!(
            "authentication refused ({}): check the client id and its keyring",
            describe(errno)
        )
    } else if errno == Errno::ENOENT as i32 {
        "no keyring or monitor address found in the configuration".into()
    } else {
        describe(errno).into()
    };
    format!("cannot connect to the Ceph cluster: {why}")
}

/// The [`BlockError`] for a librbd errno (positive).
///
/// ```
/// use block_backends::rbd::block_error;
/// use scsi_emu::BlockError;
///
/// assert_eq!(block_error(110), BlockError::Busy); // ETIMEDOUT: retry
/// assert_eq!(block_error(28), BlockError::NoSpace);
/// assert_eq!(block_error(5), BlockError::Io(5));
/// ```
pub fn block_error(errno: i32) -> BlockError {
    // The mapping every backend shares.
    BlockError::from_errno(errno)
}

/// An RBD image as an [`AsyncBlockDevice`]. See the [module](self) documentation.
///
/// Dropping it releases the image's exclusive lock if held in failover
/// mode, then closes the image (`rbd_close` waits for the requests still
/// in flight and releases the image's exclusive lock), then the cluster
/// connection. With the cluster unreachable that takes a few
/// [`RbdOptions::timeout`]s: three with the only OSD down, in the tests.
/// In failover mode, a session that a background acquisition or reconnect
/// is still using is closed when that work ends.
pub struct RbdDevice {
    /// The session requests run on, and the lock in failover mode.
    gate: Gate,
    /// "pool/image", for messages.
    name: String,
    block_size: u32,
    num_blocks: AtomicU64,
    object_size: u64,
    timeout: Duration,
    cache: bool,
    /// How long a request is waited for.
    request_bound: Duration,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Requests failed since the last success (for logging an outage once).
    failures: AtomicU64,
    /// Wakes waiters of requests past `request_bound`.
    deadlines: Deadlines,
}

/// Switches an [`RbdDevice`] opened without [`RbdOptions::failover`] to
/// failover mode ([`RbdDevice::failover_switch`]); cheap to clone, and
/// usable after the device is gone (it then changes nothing that matters).
#[derive(Clone)]
pub struct FailoverSwitch {
    gate: Gate,
    /// "pool/image".
    name: String,
    cache: bool,
}

impl FailoverSwitch {
    /// From the next write on, writes need the exclusive lock, for good:
    /// for a server that learns only after opening that another gateway
    /// serves the image (tcmu-runner's way: ceph-iscsi creates the ALUA
    /// groups after the device). `Ok(true)` when the mode changed,
    /// `Ok(false)` when it was on already.
    ///
    /// Refused for an image without the exclusive-lock feature, and with
    /// librbd's write cache on (writes acknowledged from it would be lost
    /// with the gateway).
    pub fn enable(&self) -> Result<bool, RbdError> {
        let (pool, image) = self.name.split_once('/').unwrap_or((&self.name, ""));
        if self.cache {
            return Err(RbdError::FailoverWithCache {
                pool: pool.to_string(),
                image: image.to_string(),
            });
        }
        let features = self
            .gate
            .session()
            .features()
            .map_err(|errno| RbdError::Open {
                pool: pool.to_string(),
                image: image.to_string(),
                errno,
            })?;
        if features & ffi::RBD_FEATURE_EXCLUSIVE_LOCK == 0 {
            return Err(RbdError::NoExclusiveLock {
                pool: pool.to_string(),
                image: image.to_string(),
            });
        }
        let changed = self.gate.enter_failover();
        if changed {
            log::info!(
                "RBD image {}: failover mode from now on: writes need the exclusive lock",
                self.name
            );
        }
        Ok(changed)
    }

    /// Whether the device is in failover mode.
    pub fn is_on(&self) -> bool {
        self.gate.in_failover()
    }
}

impl fmt::Debug for FailoverSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverSwitch")
            .field("image", &self.name)
            .field("on", &self.is_on())
            .finish()
    }
}

impl fmt::Debug for RbdDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RbdDevice")
            .field("image", &self.name)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("object_size", &self.object_size)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache)
            .field("lock_state", &self.gate.lock_state())
            .finish_non_exhaustive()
    }
}

fn c_string(what: &'static str, value: &str) -> Result<CString, RbdError> {
    CString::new(value).map_err(|_| RbdError::InvalidName {
        what,
        value: value.to_owned(),
    })
}

/// Counts a request in flight while alive.
struct InFlight<'a>(&'a RbdDevice);

impl<'a> InFlight<'a> {
    fn enter(dev: &'a RbdDevice) -> InFlight<'a> {
        let now = dev.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        dev.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(dev)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RbdDevice {
    /// Opens `spec`'s image with `block_size`-byte blocks and the default
    /// [`RbdOptions`] otherwise.
    pub fn connect(spec: RbdSpec, block_size: u32) -> Result<RbdDevice, RbdError> {
        RbdDevice::connect_with(
            spec,
            RbdOptions {
                block_size,
                ..RbdOptions::default()
            },
        )
    }

    /// Opens `spec`'s image as `options` say. Blocks until connected, at
    /// most about [`RbdOptions::timeout`] per step when the cluster does
    /// not answer.
    pub fn connect_with(spec: RbdSpec, options: RbdOptions) -> Result<RbdDevice, RbdError> {
        let block_size = options.block_size;
        BlockSize::new(block_size).map_err(|_| RbdError::InvalidBlockSize(block_size))?;
        let pool = c_string("pool", &spec.pool)?;
        let image_name = c_string("image", &spec.image)?;
        let client_id = spec
            .client_id
            .as_deref()
            .map(|id| c_string("client id", id))
            .transpose()?;
        let conf = spec
            .conf
            .as_deref()
            .map(|path| {
                CString::new(path.as_os_str().as_bytes()).map_err(|_| RbdError::InvalidName {
                    what: "config path",
                    value: path.display().to_string(),
                })
            })
            .transpose()?;

        let secs = options.timeout.as_secs().max(1);
        let timeout = Duration::from_secs(secs);
        let params = SessionParams {
            pool,
            image: image_name,
            client_id,
            conf,
            timeout_secs: secs,
            cache: options.cache && !options.failover,
            failover: options.failover,
        };
        let image = session::open(&params).map_err(|e| match e {
            OpenError::Create(errno) => RbdError::Create {
                client_id: spec.client_id.clone(),
                errno,
            },
            OpenError::Config(errno) => RbdError::Config {
                path: spec.conf.clone(),
                errno,
            },
            OpenError::SetOption(option, errno) => RbdError::SetOption { option, errno },
            OpenError::Connect(errno) => RbdError::Connect { errno, timeout },
            OpenError::Pool(errno) if errno == Errno::ENOENT as i32 => RbdError::NoPool {
                pool: spec.pool.clone(),
            },
            OpenError::Pool(errno) => RbdError::Pool {
                pool: spec.pool.clone(),
                errno,
            },
            OpenError::Image(errno) if errno == Errno::ENOENT as i32 => RbdError::NoImage {
                pool: spec.pool.clone(),
                image: spec.image.clone(),
            },
            OpenError::Image(errno) => RbdError::Open {
                pool: spec.pool.clone(),
                image: spec.image.clone(),
                errno,
            },
        })?;
        if options.failover {
            let features = image.features().map_err(|errno| RbdError::Open {
                pool: spec.pool.clone(),
                image: spec.image.clone(),
                errno,
            })?;
            if features & ffi::RBD_FEATURE_EXCLUSIVE_LOCK == 0 {
                return Err(RbdError::NoExclusiveLock {
                    pool: spec.pool.clone(),
                    image: spec.image.clone(),
                });
            }
        }
        let info = image.stat().map_err(|errno| RbdError::Size { errno })?;
        let request_bound = timeout * 2 + Duration::from_secs(1);
        let deadlines = Deadlines::start((request_bound / 8).min(Duration::from_secs(1)))
            .map_err(|e| RbdError::Thread(e.to_string()))?;
        let log_name = spec.log_name();
        let num_blocks = blocks_of(info.size, block_size)?;
        log::info!(
            "RBD image {log_name}: {} bytes in objects of {} bytes, {num_blocks} blocks of {block_size}",
            info.size,
            info.object_size
        );
        if options.failover {
            log::info!("RBD image {log_name}: failover mode: writes need the exclusive lock");
        }
        Ok(RbdDevice {
            gate: Gate::new(log_name.clone(), params, image),
            name: log_name,
            block_size,
            num_blocks: AtomicU64::new(num_blocks),
            object_size: info.object_size,
            timeout,
            cache: options.cache && !options.failover,
            request_bound,
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            deadlines,
        })
    }

    /// Reads the image's size again (after a resize) and takes it as the
    /// device's; the new number of blocks.
    pub fn refresh_size(&self) -> Result<u64, RbdError> {
        let size = self
            .gate
            .session()
            .size()
            .map_err(|errno| RbdError::Size { errno })?;
        let blocks = blocks_of(size, self.block_size)?;
        let old = self.num_blocks.swap(blocks, Ordering::Relaxed);
        if old != blocks {
            log::info!("RBD image {}: now {blocks} blocks (was {old})", self.name);
        }
        Ok(blocks)
    }

    /// The image size in bytes, as last read.
    pub fn image_size(&self) -> u64 {
        self.num_blocks.load(Ordering::Relaxed) * u64::from(self.block_size)
    }

    /// The size of the RADOS objects the image is striped over (4 MiB
    /// unless the image was created otherwise).
    pub fn object_size(&self) -> u64 {
        self.object_size
    }

    /// "pool/image".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the image's exclusive lock stands for this device; always
    /// [`LockState::Unlocked`] without [`RbdOptions::failover`].
    pub fn lock_state(&self) -> LockState {
        self.gate.lock_state()
    }

    /// Switches a device opened without [`RbdOptions::failover`] to
    /// failover mode, for good; see [`FailoverSwitch::enable`].
    pub fn enable_failover(&self) -> Result<bool, RbdError> {
        self.failover_switch().enable()
    }

    /// A handle that switches this device to failover mode later, from
    /// wherever the server learns that another gateway serves the image.
    pub fn failover_switch(&self) -> FailoverSwitch {
        FailoverSwitch {
            gate: self.gate.clone(),
            name: self.name.clone(),
            cache: self.cache,
        }
    }

    /// The most requests that were in flight at once so far.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Byte offset and length of `bytes` bytes at `lba`, checked against
    /// the device.
    fn range(&self, lba: u64, bytes: u64) -> Result<(u64, usize), BlockError> {
        let bs = u64::from(self.block_size);
        if bytes % bs != 0 {
            return Err(BlockError::Io(Errno::EINVAL as i32));
        }
        let len = usize::try_from(bytes).map_err(|_| BlockError::OutOfRange)?;
        match lba.checked_add(bytes / bs) {
            Some(end) if end <= self.num_blocks.load(Ordering::Relaxed) => Ok((lba * bs, len)),
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Submits one request, waits for its completion callback (bounded)
    /// and returns librbd's non-negative result and the request's buffer.
    async fn run(
        &self,
        op: Op,
        offset: u64,
        len: usize,
        submit: impl FnOnce(&ffi::Image) -> Result<ffi::Pending, i32>,
    ) -> Result<(usize, Vec<u8>), BlockError> {
        let session = self.gate.admit(op.writes())?;
        let _counted = InFlight::enter(self);
        let pending =
            submit(&session).map_err(|errno| self.failed(op, offset, len, errno, &session))?;
        let deadline = Instant::now() + self.request_bound;
        self.deadlines.watch(deadline, pending.watch());
        let outcome = std::future::poll_fn(|cx| match pending.poll_outcome(cx) {
            std::task::Poll::Ready(outcome) => std::task::Poll::Ready(Some(outcome)),
            _ if Instant::now() >= deadline => std::task::Poll::Ready(None),
            _ => std::task::Poll::Pending,
        })
        .await;
        match outcome {
            Some((result, buf)) => match usize::try_from(result) {
                Ok(n) => {
                    self.succeeded();
                    Ok((n, buf))
                }
                Err(_) => {
                    let errno = i32::try_from(-result).unwrap_or(Errno::EIO as i32);
                    Err(self.failed(op, offset, len, errno, &session))
                }
            },
            None => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let error = op.error(Errno::ETIMEDOUT as i32);
                log::error!(
                    "RBD image {}: {op} of {len} bytes at {offset} got no answer in {} s; \
                     given up (the cluster may carry it out later); reported as {error}",
                    self.name,
                    self.request_bound.as_secs()
                );
                Err(error)
            }
        }
    }

    fn failed(
        &self,
        op: Op,
        offset: u64,
        len: usize,
        errno: i32,
        session: &Arc<ffi::Image>,
    ) -> BlockError {
        if self.gate.lost(session, op.needs_lock(), errno) {
            // Another gateway has the image: the initiator's retry goes
            // through a new session (or the other gateway).
            log::debug!(
                "RBD image {}: {op} of {len} bytes at {offset} failed: {} (lock lost)",
                self.name,
                describe(errno)
            );
            return BlockError::Busy;
        }
        let error = op.error(errno);
        let hint = match Errno::from_raw(errno) {
            Errno::ETIMEDOUT => " (cluster unreachable or OSDs down?)",
            Errno::ESHUTDOWN => " (client blocklisted or connection shut down?)",
            _ => "",
        };
        if self.failures.fetch_add(1, Ordering::Relaxed) == 0 {
            log::error!(
                "RBD image {}: {op} of {len} bytes at {offset} failed: {}{hint}; reported as {error}",
                self.name,
                describe(errno)
            );
        } else {
            log::debug!(
                "RBD image {}: {op} of {len} bytes at {offset} failed: {}",
                self.name,
                describe(errno)
            );
        }
        error
    }

    fn succeeded(&self) {
        let failed = self.failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            log::info!(
                "RBD image {}: I/O works again after {failed} failed request(s)",
                self.name
            );
        }
    }

    async fn zero(&self, op: Op, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let bytes = blocks
            .checked_mul(u64::from(self.block_size))
            .ok_or(BlockError::OutOfRange)?;
        let (offset, len) = self.range(lba, bytes)?;
        if len == 0 {
            return Ok(());
        }
        self.run(op, offset, len, |image| image.aio_write_zeroes(offset, len))
            .await
            .map(drop)
    }

    /// librbd's cache is a write cache when enabled; discards zero.
    fn declared(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .write_cache(self.cache)
            .unmap(true)
            .unmap_reads_zeroes(true)
            .write_zeroes(true)
    }
}

impl Drop for RbdDevice {
    fn drop(&mut self) {
        self.gate.close();
    }
}

/// The kinds of request, for messages and error mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Flush,
    Unmap,
    WriteZeroes,
}

impl Op {
    /// Whether the request changes the image (and so needs the lock in
    /// failover mode).
    fn writes(self) -> bool {
        matches!(self, Op::Write | Op::Unmap | Op::WriteZeroes)
    }

    /// Whether librbd refuses the request (`EROFS`) without the lock in
    /// manual lock mode: writes, and flushes too.
    fn needs_lock(self) -> bool {
        self.writes() || self == Op::Flush
    }

    /// The [`BlockError`] for this request failing with `errno`.
    ///
    /// A failed flush may mean that writes librbd's cache acknowledged
    /// earlier are lost (its write-around mode acknowledges writes before
    /// the OSDs have them and reports their errors at a later flush), so
    /// it is never reported as retryable: a retried flush would succeed
    /// and hide the loss.
    fn error(self, errno: i32) -> BlockError {
        match (self, block_error(errno)) {
            (Op::Flush, BlockError::Busy) => BlockError::Io(errno),
            (_, error) => error,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Unmap => "unmap",
            Op::WriteZeroes => "write zeroes",
        })
    }
}

fn blocks_of(size: u64, block_size: u32) -> Result<u64, RbdError> {
    let bs = u64::from(block_size);
    if size == 0 || size % bs != 0 {
        return Err(RbdError::BadSize { size, block_size });
    }
    Ok(size / bs)
}

/// Every request completes through librbd's aio callback, which wakes the
/// command's future: no thread waits while the cluster works.
impl AsyncBlockDevice for RbdDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Relaxed)
    }

    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (offset, len) = self.range(lba, buf.len() as u64)?;
        if len == 0 {
            return Ok(());
        }
        let (n, data) = self
            .run(Op::Read, offset, len, |image| image.aio_read(offset, len))
            .await?;
        if n != len || data.len() != len {
            // librbd clips reads at the end of the image: it shrank.
            log::error!(
                "RBD image {}: read of {len} bytes at {offset} returned {n} bytes (image shrunk?)",
                self.name
            );
            return Err(BlockError::OutOfRange);
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let (offset, len) = self.range(lba, buf.len() as u64)?;
        if len == 0 {
            return Ok(());
        }
        self.run(Op::Write, offset, len, |image| {
            image.aio_write(offset, buf.to_vec())
        })
        .await
        .map(drop)
    }

    async fn flush(&self) -> Result<(), BlockError> {
        if self.gate.flush_is_moot() {
            return Ok(());
        }
        self.run(Op::Flush, 0, 0, |image| image.aio_flush())
            .await
            .map(drop)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.declared()
    }

    fn product_name(&self) -> &str {
        "RBD image"
    }

    async fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        self.zero(Op::Unmap, extent.lba, extent.blocks).await
    }

    async fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        self.zero(Op::WriteZeroes, extent.lba, extent.blocks).await
    }

    /// The image is resized in Ceph (`rbd resize`), not here: the new size
    /// is accepted when the image, read again, has exactly that size.
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let now = self.refresh_size().map_err(|e| {
            log::error!("RBD image {}: {e}", self.name);
            BlockError::Busy
        })?;
        if now == num_blocks {
            return Ok(());
        }
        log::error!(
            "RBD image {}: refusing a size of {num_blocks} blocks: the image has {now}; \
             resize it first (rbd resize)",
            self.name
        );
        Err(BlockError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use nix::libc;

    use super::*;

    #[test]
    fn errnos_map_to_block_errors() {
        for retry in [110, 11, 16, 107, 108] {
            assert_eq!(block_error(retry), BlockError::Busy, "errno {retry}");
        }
        assert_eq!(block_error(28), BlockError::NoSpace);
        assert_eq!(block_error(122), BlockError::NoSpace);
        assert_eq!(block_error(30), BlockError::ReadOnly);
        assert_eq!(block_error(libc::EIO), BlockError::Io(libc::EIO));
        assert_eq!(block_error(libc::ENOENT), BlockError::Io(libc::ENOENT));
        // Flushes are never retryable; their other errors map as usual.
        assert_eq!(
            Op::Flush.error(libc::ETIMEDOUT),
            BlockError::Io(libc::ETIMEDOUT)
        );
        assert_eq!(Op::Flush.error(28), BlockError::NoSpace);
        assert_eq!(Op::Write.error(110), BlockError::Busy);
    }

    #[test]
    fn sizes_must_be_whole_blocks() {
        assert_eq!(blocks_of(1 << 20, 4096), Ok(256));
        assert_eq!(
            blocks_of((1 << 20) + 512, 4096),
            Err(RbdError::BadSize {
                size: (1 << 20) + 512,
                block_size: 4096
            })
        );
        assert!(blocks_of(0, 512).is_err());
    }

    #[test]
    fn bad_arguments_fail_before_touching_a_cluster() {
        let spec = RbdSpec {
            pool: "rbd".into(),
            image: "x".into(),
            ..RbdSpec::default()
        };
        assert_eq!(
            RbdDevice::connect(spec.clone(), 1000).unwrap_err(),
            RbdError::InvalidBlockSize(1000)
        );
        let nul = RbdSpec {
            image: "a\0b".into(),
            ..spec
        };
        let err = RbdDevice::connect(nul, 512).unwrap_err();
        assert!(
            matches!(err, RbdError::InvalidName { what: "image", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn log_lines_name_the_label_after_the_image() {
        let spec = RbdSpec {
            pool: "rbd".into(),
            image: "disk".into(),
            ..RbdSpec::default()
        };
        assert_eq!(spec.log_name(), "rbd/disk");
        let labelled = RbdSpec {
            label: Some("gw2".into()),
            ..spec
        };
        assert_eq!(labelled.log_name(), "rbd/disk (gw2)");
        // Errors name what the cluster knows, the image alone.
        assert_eq!(labelled.to_string(), "rbd/disk");
    }

    #[test]
    fn messages_name_what_is_missing() {
        let e = RbdError::NoPool {
            pool: "tank".into(),
        };
        assert_eq!(e.to_string(), "the Ceph cluster has no pool named \"tank\"");
        let e = RbdError::NoImage {
            pool: "rbd".into(),
            image: "disk".into(),
        };
        assert_eq!(
            e.to_string(),
            "pool \"rbd\" has no RBD image named \"disk\""
        );
        let e = RbdError::Connect {
            errno: 110,
            timeout: Duration::from_secs(7),
        };
        assert!(e.to_string().contains("within 7 s"), "{e}");
        let e = RbdError::NoExclusiveLock {
            pool: "rbd".into(),
            image: "disk".into(),
        };
        assert!(
            e.to_string()
                .contains("rbd feature enable rbd/disk exclusive-lock"),
            "{e}"
        );
        let e = RbdError::Config {
            path: Some("/nonexistent/ceph.conf".into()),
            errno: 2,
        };
        assert!(
            e.to_string().contains("/nonexistent/ceph.conf")
                && e.to_string().contains("No such file"),
            "{e}"
        );
    }
}
