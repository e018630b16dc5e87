//! `--backend` specifications, `--inject-fault` specifications, and opening
//! the device they describe.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use block_backends::{
    FaultInjector, FileDevice, FileDeviceError, FileOptions, MemoryDevice, NbdAddress, NbdDevice,
    NbdOptions, ReadOnly, UringFileDevice,
};
use scsi_emu::{BlockDevice, BlockError, Blocking};

use crate::io_engine::IoEngine;

/// A parsed `--backend` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// `mem`: a sparse RAM disk.
    Memory,
    /// `file:PATH`: a regular file or a block device.
    File(PathBuf),
    /// `nbd:HOST[:PORT][/EXPORT]` or `nbd+unix:PATH[/EXPORT]`: an NBD export.
    Nbd { address: NbdAddress, export: String },
    /// `rbd:POOL/IMAGE[?conf=PATH&id=NAME&timeout=SECS]`: an image of a
    /// Ceph cluster (needs the `rbd` feature to open).
    Rbd(RbdBackend),
}

/// The parts of an `rbd:` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdBackend {
    /// The pool.
    pub pool: String,
    /// The image in the pool.
    pub image: String,
    /// `conf=PATH`: the Ceph configuration file (default: where Ceph
    /// clients look, `$CEPH_CONF` first).
    pub conf: Option<PathBuf>,
    /// `id=NAME`: the client, without `client.` (default `admin`).
    pub id: Option<String>,
    /// `timeout=SECS`: librados' monitor and OSD timeouts (default 10).
    pub timeout: Option<u64>,
}

impl BackendSpec {
    /// Parse a `--backend` value.
    pub fn parse(text: &str) -> Result<BackendSpec, String> {
        match text.split_once(':') {
            None if text == "mem" || text == "memory" => Ok(BackendSpec::Memory),
            None if text == "file" => Err(missing_path()),
            Some(("file", "")) => Err(missing_path()),
            Some(("file", path)) => Ok(BackendSpec::File(PathBuf::from(path))),
            Some(("nbd", rest)) => parse_nbd_tcp(rest),
            Some(("nbd+unix", rest)) => parse_nbd_unix(rest),
            Some(("rbd", rest)) => parse_rbd(rest).map(BackendSpec::Rbd),
            _ => Err(format!(
                "unknown backend {text:?} (supported: mem, file:PATH, nbd:HOST[:PORT][/EXPORT], nbd+unix:PATH[/EXPORT], rbd:POOL/IMAGE[?conf=PATH&id=NAME&timeout=SECS])"
            )),
        }
    }

    /// The handler part of the backstore's `dev_config` (no ':' allowed,
    /// so no path either).
    pub fn dev_config(&self) -> String {
        match self {
            BackendSpec::Memory => "tcmu-rs/mem".to_string(),
            BackendSpec::File(_) => "tcmu-rs/file".to_string(),
            BackendSpec::Nbd { .. } => "tcmu-rs/nbd".to_string(),
            BackendSpec::Rbd(_) => "tcmu-rs/rbd".to_string(),
        }
    }

    /// Whether the backend needs `--size` (a file only to be created).
    pub fn needs_size(&self, create: bool) -> bool {
        match self {
            BackendSpec::Memory => true,
            BackendSpec::File(_) => create,
            BackendSpec::Nbd { .. } | BackendSpec::Rbd(_) => false,
        }
    }

    /// Whether this is a `file:` backend.
    pub fn is_file(&self) -> bool {
        matches!(self, BackendSpec::File(_))
    }

    /// Open the device to serve it: an NBD export or an RBD image without
    /// wrappers, or a file with `--io-engine io_uring`, is served
    /// asynchronously (its requests wait on the connection, on librbd's
    /// callbacks or on the io_uring, not on worker threads); everything
    /// else as [`open`](Self::open) says.
    pub fn open_served(&self, options: &DeviceOptions) -> Result<Opened, String> {
        let wrapped = options.read_only || !options.faults.is_empty();
        match self {
            // Read-only is the file device's own option: no wrapper.
            BackendSpec::File(path) if options.io_engine == IoEngine::IoUring => {
                if !options.faults.is_empty() {
                    return Err("--inject-fault needs --io-engine threads".into());
                }
                let device = UringFileDevice::open(path, file_options(options));
                Ok(Opened::FileUring(device.map_err(file_error)?))
            }
            BackendSpec::Nbd { address, export } if !wrapped => {
                Ok(Opened::Nbd(connect_nbd(address, export, options)?))
            }
            #[cfg(feature = "rbd")]
            BackendSpec::Rbd(rbd) if !wrapped => Ok(Opened::Rbd(connect_rbd(rbd, options)?)),
            _ => Ok(Opened::Sync(self.open(options)?)),
        }
    }

    /// Open the device, wrapped as `options` ask.
    pub fn open(&self, options: &DeviceOptions) -> Result<Arc<dyn BlockDevice>, String> {
        let device: Arc<dyn BlockDevice> = match self {
            BackendSpec::Memory => {
                let size = options.size.ok_or("--size is required for this backend")?;
                let blocks = size / u64::from(options.block_size);
                Arc::new(MemoryDevice::new(options.block_size, blocks).map_err(|e| e.to_string())?)
            }
            BackendSpec::File(path) => {
                Arc::new(FileDevice::open(path, file_options(options)).map_err(file_error)?)
            }
            BackendSpec::Nbd { address, export } => {
                Arc::new(Blocking(connect_nbd(address, export, options)?))
            }
            BackendSpec::Rbd(rbd) => open_rbd(rbd, options)?,
        };
        let device = if options.faults.is_empty() {
            device
        } else {
            let blocks = device.num_blocks();
            let injector = FaultInjector::new(device);
            for fault in &options.faults {
                if fault.lbas().end > blocks {
                    return Err(format!(
                        "--inject-fault {fault}: beyond the end of the disk ({blocks} blocks)"
                    ));
                }
                // MEDIUM ERROR, as a failing disk reports it.
                match fault.op {
                    FaultOp::Read => injector.fail_reads(fault.lbas(), BlockError::Medium),
                    FaultOp::Write => injector.fail_writes(fault.lbas(), BlockError::Medium),
                    // Only the first access hangs: the initiator's retry
                    // after its timeout and abort must go through.
                    FaultOp::Hang => {
                        injector.delay_once(fault.lbas(), std::time::Duration::from_secs(3600))
                    }
                }
            }
            Arc::new(injector)
        };
        Ok(if options.read_only {
            Arc::new(ReadOnly::new(device))
        } else {
            device
        })
    }
}

/// A device ready to serve: synchronous (any backend, any wrappers) or an
/// asynchronous backend as it is.
pub enum Opened {
    Sync(Arc<dyn BlockDevice>),
    Nbd(NbdDevice),
    #[cfg(feature = "rbd")]
    Rbd(block_backends::RbdDevice),
    /// A file with `--io-engine io_uring`.
    FileUring(UringFileDevice),
}

/// The file device's options, from the command line's.
fn file_options(options: &DeviceOptions) -> FileOptions {
    FileOptions {
        block_size: options.block_size,
        size: options.size,
        create: options.create,
        read_only: options.read_only,
        direct: options.direct,
    }
}

/// Connect to an NBD export and check its size against `--size`.
fn connect_nbd(
    address: &NbdAddress,
    export: &str,
    options: &DeviceOptions,
) -> Result<NbdDevice, String> {
    let nbd_options = NbdOptions {
        block_size: options.block_size,
        ..NbdOptions::default()
    };
    let dev = NbdDevice::connect(address, export, nbd_options)
        .map_err(|e| format!("NBD server {address}: {e}"))?;
    if let Some(size) = options.size
        && size != dev.export_size()
    {
        return Err(format!(
            "size mismatch: the NBD export is {} bytes but --size asks for {size} bytes",
            dev.export_size()
        ));
    }
    Ok(dev)
}

/// `HOST[:PORT][/EXPORT]`.
fn parse_nbd_tcp(rest: &str) -> Result<BackendSpec, String> {
    let (addr, export) = rest.split_once('/').unwrap_or((rest, ""));
    if addr.is_empty() {
        return Err("backend \"nbd:\" needs a server: nbd:HOST[:PORT][/EXPORT]".into());
    }
    let address: NbdAddress = addr
        .parse()
        .map_err(|e| format!("invalid NBD server {addr:?}: {e}"))?;
    if matches!(address, NbdAddress::Unix { .. }) {
        return Err(format!(
            "{addr:?} is not HOST[:PORT]: use nbd+unix:PATH for a socket"
        ));
    }
    Ok(BackendSpec::Nbd {
        address,
        export: export.to_string(),
    })
}

/// `PATH[/EXPORT]`: the whole text is the socket when it exists, else the
/// part before the last '/'.
fn parse_nbd_unix(rest: &str) -> Result<BackendSpec, String> {
    if rest.is_empty() {
        return Err("backend \"nbd+unix:\" needs a socket path: nbd+unix:PATH[/EXPORT]".into());
    }
    let (path, export) = match rest.rsplit_once('/') {
        Some((path, export)) if !std::path::Path::new(rest).exists() && !path.is_empty() => {
            (path, export)
        }
        _ => (rest, ""),
    };
    Ok(BackendSpec::Nbd {
        address: NbdAddress::Unix {
            path: PathBuf::from(path),
        },
        export: export.to_string(),
    })
}

const RBD_SYNTAX: &str = "rbd:POOL/IMAGE[?conf=PATH&id=NAME&timeout=SECS]";

/// `POOL/IMAGE[?KEY=VALUE&...]` with the keys conf, id and timeout.
fn parse_rbd(rest: &str) -> Result<RbdBackend, String> {
    let bad = |why: String| format!("invalid backend \"rbd:{rest}\": {why} (use {RBD_SYNTAX})");
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let mut spec = RbdBackend::named(path).map_err(bad)?;
    for item in query.into_iter().flat_map(|q| q.split('&')) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(bad(format!("{item:?} is not KEY=VALUE")));
        };
        spec.set_option(key, value, "timeout").map_err(bad)?;
    }
    Ok(spec)
}

impl RbdBackend {
    /// `POOL/IMAGE`, with no options yet.
    pub fn named(path: &str) -> Result<RbdBackend, String> {
        let Some((pool, image)) = path.split_once('/') else {
            return Err("needs POOL/IMAGE".into());
        };
        if pool.is_empty() {
            return Err("the pool name is empty".into());
        }
        if image.is_empty() {
            return Err("the image name is empty".into());
        }
        if image.contains('/') {
            return Err("RADOS namespaces (POOL/NAMESPACE/IMAGE) are not supported".into());
        }
        if image.contains('@') {
            return Err("snapshots (IMAGE@SNAP) are not supported".into());
        }
        Ok(RbdBackend {
            pool: pool.to_string(),
            image: image.to_string(),
            conf: None,
            id: None,
            timeout: None,
        })
    }

    /// Set option `key` (`conf`, `id`, or `timeout_key` for the timeout
    /// in seconds) once.
    pub fn set_option(&mut self, key: &str, value: &str, timeout_key: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err(format!("{key}= has no value"));
        }
        let duplicate = match key {
            "conf" => self.conf.replace(PathBuf::from(value)).is_some(),
            "id" => self.id.replace(value.to_string()).is_some(),
            _ if key == timeout_key => {
                let secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&secs| secs > 0)
                    .ok_or_else(|| format!("{key}={value} is not a number of seconds >= 1"))?;
                self.timeout.replace(secs).is_some()
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (known: conf, id, {timeout_key})"
                ));
            }
        };
        if duplicate {
            return Err(format!("{key}= is given twice"));
        }
        Ok(())
    }
}

#[cfg(feature = "rbd")]
fn open_rbd(spec: &RbdBackend, options: &DeviceOptions) -> Result<Arc<dyn BlockDevice>, String> {
    Ok(Arc::new(Blocking(connect_rbd(spec, options)?)))
}

/// Open an RBD image and check its size against `--size`.
#[cfg(feature = "rbd")]
fn connect_rbd(
    spec: &RbdBackend,
    options: &DeviceOptions,
) -> Result<block_backends::RbdDevice, String> {
    use block_backends::{RbdDevice, RbdOptions, RbdSpec};

    let rbd_options = RbdOptions {
        block_size: options.block_size,
        timeout: spec.timeout.map_or(
            RbdOptions::default().timeout,
            std::time::Duration::from_secs,
        ),
        failover: options.failover,
        ..RbdOptions::default()
    };
    let rbd_spec = RbdSpec {
        pool: spec.pool.clone(),
        image: spec.image.clone(),
        conf: spec.conf.clone(),
        client_id: spec.id.clone(),
        label: options.label.clone(),
    };
    let dev = RbdDevice::connect_with(rbd_spec, rbd_options)
        .map_err(|e| format!("rbd:{}/{}: {e}", spec.pool, spec.image))?;
    if let Some(size) = options.size
        && size != dev.image_size()
    {
        return Err(format!(
            "size mismatch: the RBD image is {} bytes but --size asks for {size} bytes",
            dev.image_size()
        ));
    }
    Ok(dev)
}

#[cfg(not(feature = "rbd"))]
fn open_rbd(spec: &RbdBackend, _: &DeviceOptions) -> Result<Arc<dyn BlockDevice>, String> {
    Err(format!(
        "rbd:{}/{}: this tcmu-serve was built without RBD support \
         (build it with --features rbd, which needs librbd-dev and librados-dev)",
        spec.pool, spec.image
    ))
}

fn missing_path() -> String {
    "backend \"file:\" needs a path: file:PATH".to_string()
}

/// The library's message, in the command line's words where they differ.
fn file_error(e: FileDeviceError) -> String {
    match e {
        FileDeviceError::NotFound(path) => format!(
            "{} does not exist (use --create with --size to create it)",
            path.display()
        ),
        FileDeviceError::CreateNeedsSize(path) => {
            format!("{} does not exist: --create needs --size", path.display())
        }
        FileDeviceError::SizeMismatch {
            path,
            actual,
            requested,
        } => format!(
            "size mismatch: {} is {actual} bytes but --size asks for {requested} bytes",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// How to open the device, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceOptions {
    /// `--size` in bytes, already checked against the block size.
    pub size: Option<u64>,
    /// `--block-size`.
    pub block_size: u32,
    /// `--create`: make a missing backing file.
    pub create: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--direct`: O_DIRECT on the backing file.
    pub direct: bool,
    /// `--io-engine`: how a file backend does its I/O.
    pub io_engine: IoEngine,
    /// `--inject-fault` values.
    pub faults: Vec<FaultSpec>,
    /// `--alua-gateways`: several gateways serve the image; an `rbd:`
    /// image is written only while this one holds its exclusive lock.
    pub failover: bool,
    /// What the device's log lines call it besides its backing (`--name`,
    /// or the backstore's name in runner mode): one process may serve an
    /// image more than once.
    pub label: Option<String>,
}

/// Which requests an injected fault fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// Reads.
    Read,
    /// Writes (also FUA writes, unmaps and zeroing).
    Write,
    /// The first access: the call does not return for an hour (a backend
    /// call that hangs; the initiator's retry then succeeds).
    Hang,
}

/// A parsed `--inject-fault` value: `read:LBA[+COUNT]` or `write:LBA[+COUNT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// Reads or writes.
    pub op: FaultOp,
    /// First failing block.
    pub lba: u64,
    /// Number of failing blocks (at least 1).
    pub count: u64,
}

impl FaultSpec {
    /// Parse an `--inject-fault` value.
    pub fn parse(text: &str) -> Result<FaultSpec, String> {
        let bad = |why: &str| {
            format!(
                "invalid --inject-fault {text:?}: {why} (use read:LBA[+COUNT], write:LBA[+COUNT] or hang:LBA[+COUNT])"
            )
        };
        let (op, range) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let op = match op {
            "read" => FaultOp::Read,
            "write" => FaultOp::Write,
            "hang" => FaultOp::Hang,
            _ => return Err(bad(&format!("unknown operation {op:?}"))),
        };
        let (lba, count) = match range.split_once('+') {
            Some((lba, count)) => (lba, Some(count)),
            None => (range, None),
        };
        let number = |s: &str, what: &str| {
            s.parse::<u64>()
                .map_err(|_| bad(&format!("{what} {s:?} is not a number")))
        };
        let lba = number(lba, "LBA")?;
        let count = match count {
            Some(c) => number(c, "COUNT")?,
            None => 1,
        };
        if count == 0 {
            return Err(bad("COUNT must be at least 1"));
        }
        if lba.checked_add(count).is_none() {
            return Err(bad("LBA+COUNT is too large"));
        }
        Ok(FaultSpec { op, lba, count })
    }

    /// The failing blocks.
    pub fn lbas(&self) -> Range<u64> {
        self.lba..self.lba + self.count
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            FaultOp::Read => "read",
            FaultOp::Write => "write",
            FaultOp::Hang => "hang",
        };
        write!(f, "{op}:{}+{}", self.lba, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path in the temporary directory, removed on drop.
    struct TempPath(PathBuf, #[allow(dead_code)] tempfile::TempDir); // the directory goes on drop

    impl TempPath {
        fn new(name: &str) -> TempPath {
            let dir = tempfile::tempdir().unwrap();
            TempPath(dir.path().join(name), dir)
        }
    }

    fn options(size: Option<u64>, block_size: u32) -> DeviceOptions {
        DeviceOptions {
            size,
            block_size,
            ..DeviceOptions::default()
        }
    }

    #[test]
    fn nbd_specs_parse() {
        match BackendSpec::parse("nbd:localhost:10810/disk").unwrap() {
            BackendSpec::Nbd {
                address: NbdAddress::Tcp { host, port },
                export,
            } => {
                assert_eq!(
                    (host.as_str(), port, export.as_str()),
                    ("localhost", 10810, "disk")
                );
            }
            other => panic!("{other:?}"),
        }
        match BackendSpec::parse("nbd:127.0.0.1").unwrap() {
            BackendSpec::Nbd {
                address: NbdAddress::Tcp { port, .. },
                export,
            } => {
                assert_eq!((port, export.as_str()), (10809, ""));
            }
            other => panic!("{other:?}"),
        }
        match BackendSpec::parse("nbd+unix:/nonexistent/nbd.sock/exp").unwrap() {
            BackendSpec::Nbd {
                address: NbdAddress::Unix { path },
                export,
            } => {
                assert_eq!(path, PathBuf::from("/nonexistent/nbd.sock"));
                assert_eq!(export, "exp");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            BackendSpec::parse("nbd:")
                .unwrap_err()
                .contains("needs a server")
        );
        assert!(
            BackendSpec::parse("nbd+unix:")
                .unwrap_err()
                .contains("needs a socket path")
        );
        assert!(
            BackendSpec::parse("nbd:host:notaport")
                .unwrap_err()
                .contains("invalid NBD server")
        );
        assert_eq!(
            BackendSpec::parse("nbd:h").unwrap().dev_config(),
            "tcmu-rs/nbd"
        );
    }

    #[test]
    fn parses_known_backends_only() {
        assert_eq!(BackendSpec::parse("mem"), Ok(BackendSpec::Memory));
        assert_eq!(
            BackendSpec::parse("file:/tmp/a:b.img"),
            Ok(BackendSpec::File(PathBuf::from("/tmp/a:b.img")))
        );
        assert_eq!(
            BackendSpec::parse("file:disk.img"),
            Ok(BackendSpec::File(PathBuf::from("disk.img")))
        );
        let err = BackendSpec::parse("floppy").unwrap_err();
        assert!(err.contains("unknown backend \"floppy\""), "{err}");
        assert!(
            BackendSpec::parse("sheepdog:vdi")
                .unwrap_err()
                .contains("unknown backend")
        );
        for text in ["file:", "file"] {
            let err = BackendSpec::parse(text).unwrap_err();
            assert!(err.contains("needs a path"), "{text}: {err}");
        }
    }

    #[test]
    fn rbd_specs_parse() {
        let rbd = |text: &str| match BackendSpec::parse(text) {
            Ok(BackendSpec::Rbd(rbd)) => rbd,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            rbd("rbd:rbd/disk"),
            RbdBackend {
                pool: "rbd".into(),
                image: "disk".into(),
                conf: None,
                id: None,
                timeout: None,
            }
        );
        assert_eq!(
            rbd("rbd:tank/vm-1.img?conf=/etc/ceph/other.conf&id=tcmu&timeout=30"),
            RbdBackend {
                pool: "tank".into(),
                image: "vm-1.img".into(),
                conf: Some("/etc/ceph/other.conf".into()),
                id: Some("tcmu".into()),
                timeout: Some(30),
            }
        );
        let spec = BackendSpec::parse("rbd:p/i?id=x").unwrap();
        assert_eq!(spec.dev_config(), "tcmu-rs/rbd");
        assert!(!spec.needs_size(false) && !spec.needs_size(true) && !spec.is_file());
    }

    #[test]
    fn bad_rbd_specs_name_the_problem() {
        for (text, why) in [
            ("rbd:", "needs POOL/IMAGE"),
            ("rbd:pool", "needs POOL/IMAGE"),
            ("rbd:/img", "pool name is empty"),
            ("rbd:pool/", "image name is empty"),
            ("rbd:pool/?id=a", "image name is empty"),
            ("rbd:pool/ns/img", "namespaces"),
            ("rbd:pool/img@snap", "snapshots"),
            ("rbd:p/i?", "\"\" is not KEY=VALUE"),
            ("rbd:p/i?id=a&", "\"\" is not KEY=VALUE"),
            ("rbd:p/i?conf", "\"conf\" is not KEY=VALUE"),
            ("rbd:p/i?conf=", "conf= has no value"),
            ("rbd:p/i?user=x", "unknown option \"user\""),
            ("rbd:p/i?id=a&id=b", "id= is given twice"),
            ("rbd:p/i?timeout=0", "timeout=0 is not a number"),
            ("rbd:p/i?timeout=ten", "timeout=ten is not a number"),
        ] {
            let err = BackendSpec::parse(text).unwrap_err();
            assert!(
                err.contains(why) && err.contains("rbd:POOL/IMAGE") && !err.contains('\n'),
                "{text}: {err}"
            );
        }
    }

    #[cfg(feature = "rbd")]
    #[test]
    fn rbd_open_reports_an_unreadable_config() {
        let spec = BackendSpec::parse("rbd:rbd/disk?conf=/nonexistent/ceph.conf").unwrap();
        let err = spec.open(&options(None, 512)).err().unwrap();
        assert!(
            err.starts_with("rbd:rbd/disk: ") && err.contains("/nonexistent/ceph.conf"),
            "{err}"
        );
    }

    #[cfg(not(feature = "rbd"))]
    #[test]
    fn rbd_open_needs_the_feature() {
        let spec = BackendSpec::parse("rbd:rbd/disk").unwrap();
        let err = spec.open(&options(None, 512)).err().unwrap();
        assert!(err.contains("--features rbd"), "{err}");
    }

    #[test]
    fn dev_config_has_no_colon() {
        for spec in [BackendSpec::Memory, BackendSpec::File("/a:b".into())] {
            let config = spec.dev_config();
            assert!(
                config.starts_with("tcmu-rs/") && !config.contains(':'),
                "{config}"
            );
        }
    }

    #[test]
    fn size_is_needed_for_memory_and_new_files() {
        let file = BackendSpec::File("x".into());
        assert!(BackendSpec::Memory.needs_size(false));
        assert!(file.needs_size(true));
        assert!(!file.needs_size(false));
        assert!(file.is_file() && !BackendSpec::Memory.is_file());
    }

    #[test]
    fn memory_backend_has_the_requested_geometry() {
        let dev = BackendSpec::Memory
            .open(&options(Some(1 << 20), 4096))
            .unwrap();
        assert_eq!(dev.block_size(), 4096);
        assert_eq!(dev.num_blocks(), 256);
        assert!(!dev.capabilities().read_only);
        // Its writes are all-or-nothing: WRITE ATOMIC is offered.
        assert_eq!(dev.capabilities().atomic_write_blocks, u64::MAX);
    }

    #[test]
    fn file_backend_creates_then_reopens() {
        let path = TempPath::new("disk.img");
        let spec = BackendSpec::File(path.0.clone());
        let err = spec.open(&options(None, 512)).err().unwrap();
        assert!(
            err.contains("does not exist") && err.contains("--create"),
            "{err}"
        );

        let create = DeviceOptions {
            create: true,
            ..options(Some(1 << 20), 512)
        };
        let dev = spec.open(&create).unwrap();
        assert_eq!(dev.num_blocks(), 2048);
        assert_eq!(dev.capabilities().atomic_write_blocks, 0, "no WRITE ATOMIC");
        dev.write(1, &[8; 512]).unwrap();
        drop(dev);
        assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 1 << 20);

        // Without --size: the file's size; with a different one: refused.
        let dev = spec.open(&options(None, 4096)).unwrap();
        assert_eq!(dev.num_blocks(), 256);
        let err = spec.open(&options(Some(2 << 20), 512)).err().unwrap();
        assert!(
            err.contains("size mismatch") && err.contains("1048576") && err.contains("2097152"),
            "{err}"
        );
    }

    #[test]
    fn io_uring_engine_serves_the_file_asynchronously() {
        let path = TempPath::new("uring.img");
        let spec = BackendSpec::File(path.0.clone());
        let uring = |read_only| DeviceOptions {
            create: true,
            read_only,
            io_engine: IoEngine::IoUring,
            ..options(Some(1 << 20), 512)
        };
        let Ok(Opened::FileUring(dev)) = spec.open_served(&uring(false)) else {
            panic!("not served through io_uring");
        };
        assert_eq!(scsi_emu::AsyncBlockDevice::num_blocks(&dev), 2048);
        drop(dev);
        let Ok(Opened::FileUring(dev)) = spec.open_served(&uring(true)) else {
            panic!("not served through io_uring");
        };
        assert!(scsi_emu::AsyncBlockDevice::capabilities(&dev).read_only);
        // The default engine: worker threads.
        assert!(matches!(
            spec.open_served(&options(None, 512)),
            Ok(Opened::Sync(_))
        ));
    }

    #[test]
    fn read_only_wraps_any_backend() {
        let path = TempPath::new("ro.img");
        std::fs::write(&path.0, [5u8; 4096]).unwrap();
        for spec in [BackendSpec::Memory, BackendSpec::File(path.0.clone())] {
            let ro = DeviceOptions {
                read_only: true,
                ..options(Some(4096), 512)
            };
            let dev = spec.open(&ro).unwrap();
            assert!(dev.capabilities().read_only, "{spec:?}");
            assert_eq!(dev.write(0, &[0; 512]), Err(BlockError::ReadOnly));
        }
        assert_eq!(std::fs::read(&path.0).unwrap(), vec![5u8; 4096]);
    }

    #[test]
    fn injected_faults_fail_their_blocks_with_medium_errors() {
        let faulty = DeviceOptions {
            faults: vec![
                FaultSpec::parse("read:10+2").unwrap(),
                FaultSpec::parse("write:5").unwrap(),
            ],
            ..options(Some(64 * 512), 512)
        };
        let dev = BackendSpec::Memory.open(&faulty).unwrap();
        let mut buf = [0; 512];
        assert_eq!(dev.read(11, &mut buf), Err(BlockError::Medium));
        assert_eq!(dev.read(12, &mut buf), Ok(()));
        assert_eq!(dev.write(5, &buf), Err(BlockError::Medium));
        assert_eq!(dev.write(10, &buf), Ok(()));

        let beyond = DeviceOptions {
            faults: vec![FaultSpec::parse("read:63+2").unwrap()],
            ..options(Some(64 * 512), 512)
        };
        let err = BackendSpec::Memory.open(&beyond).err().unwrap();
        assert!(
            err.contains("read:63+2") && err.contains("64 blocks"),
            "{err}"
        );
    }

    #[test]
    fn an_injected_hang_hangs_the_first_access_only() {
        let hanging = DeviceOptions {
            faults: vec![FaultSpec::parse("hang:8+8").unwrap()],
            ..options(Some(64 * 512), 512)
        };
        let dev = BackendSpec::Memory.open(&hanging).unwrap();
        let mut buf = [0; 512];
        // Outside the range nothing waits.
        dev.read(0, &mut buf).unwrap();
        // Two concurrent reads of the range: whichever comes first hangs
        // (its thread is left behind), the other returns at once.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for lba in [9, 12] {
            let (dev, done_tx) = (dev.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let mut buf = [0; 512];
                let _ = done_tx.send((lba, dev.read(lba, &mut buf)));
            });
        }
        let (_, first) = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("both accesses of a hang:LBA range hang");
        assert_eq!(first, Ok(()));
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "no access hung"
        );
        // The rule is gone: later accesses, writes too, return at once.
        assert_eq!(dev.write(8, &buf), Ok(()));
        assert_eq!(dev.read(15, &mut buf), Ok(()));
    }

    #[test]
    fn fault_specs() {
        assert_eq!(
            FaultSpec::parse("read:100"),
            Ok(FaultSpec {
                op: FaultOp::Read,
                lba: 100,
                count: 1
            })
        );
        let w = FaultSpec::parse("write:7+3").unwrap();
        assert_eq!((w.op, w.lbas()), (FaultOp::Write, 7..10));
        assert_eq!(w.to_string(), "write:7+3");
        let h = FaultSpec::parse("hang:4096+8").unwrap();
        assert_eq!(
            (h.op, h.lbas(), h.to_string()),
            (FaultOp::Hang, 4096..4104, "hang:4096+8".to_string())
        );
        for (text, why) in [
            ("read", "no ':'"),
            ("erase:1", "unknown operation"),
            ("read:", "LBA \"\" is not a number"),
            ("read:x", "LBA \"x\" is not a number"),
            ("read:1+", "COUNT"),
            ("read:1+0", "at least 1"),
            ("read:-1", "not a number"),
            ("write:18446744073709551615+1", "too large"),
        ] {
            let err = FaultSpec::parse(text).unwrap_err();
            assert!(
                err.contains(why) && err.contains("--inject-fault"),
                "{text}: {err}"
            );
        }
    }
}
