//! LIO configuration through configfs: load the modules, create and enable
//! a TCMU (`user_N`) backstore, export it through `tcm_loop`, and remove
//! everything again in reverse order.
//!
//! Each object removes itself when dropped (best effort, logged), so an
//! error half-way through a setup leaves nothing behind; call `remove` to
//! see the errors.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where LIO's configfs tree lives.
pub const TARGET_ROOT: &str = "/sys/kernel/config/target";
const CONFIGFS_MOUNT: &str = "/sys/kernel/config";

/// Errors while configuring LIO.
#[derive(Debug, thiserror::Error)]
pub enum ConfigfsError {
    #[error("configfs is not available ({0} does not exist; is CONFIG_CONFIGFS_FS enabled?)")]
    ConfigfsAbsent(PathBuf),
    #[error("kernel module {module} could not be loaded: {reason}")]
    ModuleMissing { module: String, reason: String },
    #[error("a backstore named {0:?} already exists")]
    NameTaken(String),
    #[error("invalid backstore name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("this kernel has no {} (too old for the setting)", .0.display())]
    Unsupported(PathBuf),
    #[error("{} is {got}, not {wanted}: the kernel did not take the setting", .path.display())]
    NotApplied {
        path: PathBuf,
        wanted: String,
        got: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ConfigfsError + '_ {
    move |source| ConfigfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_attr(path: &Path, value: &str) -> Result<(), ConfigfsError> {
    log::debug!("configfs: {} <- {value}", path.display());
    std::fs::write(path, value).map_err(io_err(path))
}

/// Fail unless the attribute at `path` reads `wanted`.
fn check_attr(path: &Path, wanted: u32) -> Result<(), ConfigfsError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigfsError::Unsupported(path.to_path_buf()),
        _ => io_err(path)(source),
    })?;
    if text.trim() != wanted.to_string() {
        return Err(ConfigfsError::NotApplied {
            path: path.to_path_buf(),
            wanted: wanted.to_string(),
            got: text.trim().to_string(),
        });
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), ConfigfsError> {
    log::debug!("configfs: mkdir {}", path.display());
    std::fs::create_dir(path).map_err(io_err(path))
}

fn rmdir(path: &Path) -> Result<(), ConfigfsError> {
    log::debug!("configfs: rmdir {}", path.display());
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(io_err(path)),
    }
}

/// Load kernel modules with `modprobe`, skipping those already present.
pub fn load_modules(modules: &[&str]) -> Result<(), ConfigfsError> {
    for module in modules {
        if Path::new("/sys/module").join(module).exists() {
            continue;
        }
        let out = Command::new("modprobe").arg(module).output().map_err(|e| {
            ConfigfsError::ModuleMissing {
                module: module.to_string(),
                reason: format!("cannot run modprobe: {e}"),
            }
        })?;
        if !out.status.success() {
            let reason = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(ConfigfsError::ModuleMissing {
                module: module.to_string(),
                reason: if reason.is_empty() {
                    out.status.to_string()
                } else {
                    reason
                },
            });
        }
    }
    Ok(())
}

/// Make sure configfs is mounted and LIO's tree (`root`) exists.
pub fn ensure_target_root(root: &Path) -> Result<(), ConfigfsError> {
    if root.is_dir() {
        return Ok(());
    }
    let mount = Path::new(CONFIGFS_MOUNT);
    if mount.is_dir()
        && std::fs::read_dir(mount)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    {
        // Present but empty: configfs is not mounted yet.
        let status = Command::new("mount")
            .args(["-t", "configfs", "configfs", CONFIGFS_MOUNT])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            return Err(ConfigfsError::ConfigfsAbsent(root.to_path_buf()));
        }
    }
    if root.is_dir() {
        Ok(())
    } else {
        Err(ConfigfsError::ConfigfsAbsent(root.to_path_buf()))
    }
}

/// Whether `name` is usable as a configfs object name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What to create: a TCMU backstore.
#[derive(Debug, Clone)]
pub struct BackstoreConfig {
    /// Backstore name (also part of the UIO device name).
    pub name: String,
    /// Index N of the `user_N` HBA directory.
    pub hba: u32,
    /// Size of the LUN in bytes.
    pub dev_size: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// `dev_config`, `<subtype>/<handler config>` (no ':' allowed).
    pub dev_config: String,
    /// Largest command in 512-byte sectors (`hw_max_sectors`).
    pub max_sectors: Option<u32>,
    /// Size of the data area in MiB (`max_data_area_mb`; kernel default
    /// 1024). It bounds the bytes of all commands in the ring at once.
    pub max_data_area_mb: Option<u32>,
    /// Size of the mailbox and command ring in MiB (`cmd_ring_size_mb`,
    /// at most 8; kernel default 8).
    pub cmd_ring_size_mb: Option<u32>,
    /// Unit serial number (VPD page 0x80).
    pub serial: String,
}

impl BackstoreConfig {
    /// The `control` string written before enabling. `nl_reply_supported=-1`
    /// keeps `enable` and `rmdir` from waiting for netlink replies.
    pub fn control(&self) -> String {
        let mut s = format!(
            "dev_size={},dev_config={},hw_block_size={},nl_reply_supported=-1",
            self.dev_size, self.dev_config, self.block_size
        );
        if let Some(n) = self.max_sectors {
            s.push_str(&format!(",hw_max_sectors={n}"));
        }
        if let Some(n) = self.max_data_area_mb {
            s.push_str(&format!(",max_data_area_mb={n}"));
        }
        if let Some(n) = self.cmd_ring_size_mb {
            s.push_str(&format!(",cmd_ring_size_mb={n}"));
        }
        s
    }

    /// The name the kernel gives the backstore's UIO device.
    pub fn uio_name(&self) -> String {
        format!("tcm-user/{}/{}/{}", self.hba, self.name, self.dev_config)
    }
}

/// An enabled TCMU backstore in configfs.
#[derive(Debug)]
pub struct Backstore {
    dir: PathBuf,
    hba_dir: PathBuf,
    created_hba: bool,
    /// Taken over from a dead handler: its HBA directory goes too if this
    /// backstore was the last one in it.
    attached: bool,
    uio_name: String,
    removed: bool,
}

impl Backstore {
    /// Create, configure and enable the backstore under `root`
    /// (normally [`TARGET_ROOT`]). On error nothing is left behind.
    pub fn create(root: &Path, config: &BackstoreConfig) -> Result<Backstore, ConfigfsError> {
        if !valid_name(&config.name) {
            return Err(ConfigfsError::BadName(config.name.clone()));
        }
        let hba_dir = root.join("core").join(format!("user_{}", config.hba));
        let created_hba = !hba_dir.exists();
        if created_hba {
            match std::fs::create_dir(&hba_dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_err(&hba_dir)(e));
                }
                _ => {}
            }
        }
        let dir = hba_dir.join(&config.name);
        let mut bs = Backstore {
            dir: dir.clone(),
            hba_dir,
            created_hba,
            attached: false,
            uio_name: config.uio_name(),
            removed: false,
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                bs.dir = PathBuf::new(); // not ours: never remove it
                return Err(ConfigfsError::NameTaken(config.name.clone()));
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        write_attr(&dir.join("control"), &config.control())?;
        // The kernel ignores keys it does not know: see that the sizes took.
        for (attribute, wanted) in [
            ("max_data_area_mb", config.max_data_area_mb),
            ("cmd_ring_size_mb", config.cmd_ring_size_mb),
        ] {
            if let Some(wanted) = wanted {
                check_attr(&dir.join("attrib").join(attribute), wanted)?;
            }
        }
        write_attr(&dir.join("enable"), "1")?;
        write_attr(&dir.join("wwn/vpd_unit_serial"), &config.serial)?;
        Ok(bs)
    }

    /// Take over an existing, enabled backstore named `config.name` (after
    /// its previous handler died). Its `dev_config` must equal
    /// `config.dev_config`, so another handler's device is never taken.
    /// Open its UIO device next (which fails while another process serves
    /// it), then [`block_and_reset`](Self::block_and_reset), serve, and
    /// [`unblock`](Self::unblock). It is removed on shutdown like a created
    /// one.
    pub fn attach(root: &Path, config: &BackstoreConfig) -> Result<Backstore, ConfigfsError> {
        if !valid_name(&config.name) {
            return Err(ConfigfsError::BadName(config.name.clone()));
        }
        let hba_dir = root.join("core").join(format!("user_{}", config.hba));
        let dir = hba_dir.join(&config.name);
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(io_err(&path))
        };
        if read("enable")? != "1" || read("attrib/dev_config")? != config.dev_config {
            return Err(ConfigfsError::NameTaken(config.name.clone()));
        }
        Ok(Backstore {
            uio_name: config.uio_name(),
            dir,
            hba_dir,
            created_hba: false,
            attached: true,
            removed: false,
        })
    }

    /// Block new commands (the kernel answers them BUSY) and reset the
    /// ring: commands a dead handler left in flight fail with BUSY, so
    /// initiators retry them; old entries are never replayed.
    pub fn block_and_reset(&self) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("action/block_dev"), "1")?;
        write_attr(&self.dir.join("action/reset_ring"), "1")
    }

    /// Write an attribute under `attrib/` (e.g. `cmd_time_out`).
    pub fn set_attrib(&self, name: &str, value: &str) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("attrib").join(name), value)
    }

    /// The unit serial number configured in `wwn/vpd_unit_serial`.
    pub fn unit_serial(&self) -> Result<String, ConfigfsError> {
        let path = self.dir.join("wwn/vpd_unit_serial");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        // The attribute reads "T10 VPD Unit Serial Number: <serial>".
        let serial = text.rsplit(": ").next().unwrap_or("").trim();
        Ok(serial.to_string())
    }

    /// Forget the backstore without removing it (it belongs to someone else).
    pub fn disown(mut self) {
        self.removed = true;
    }

    /// Let new commands reach the ring again after [`attach`](Self::attach).
    pub fn unblock(&self) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("action/block_dev"), "0")
    }

    /// The backstore's configfs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of its UIO device.
    pub fn uio_name(&self) -> &str {
        &self.uio_name
    }

    /// Remove the backstore (and its HBA directory if this created it).
    /// Unexport it and close its UIO device first.
    pub fn remove(mut self) -> Result<(), ConfigfsError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), ConfigfsError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        if !self.dir.as_os_str().is_empty() {
            rmdir(&self.dir)?;
        }
        if self.created_hba {
            rmdir(&self.hba_dir)?;
        } else if self.attached {
            // Still holding other backstores: it stays (rmdir refuses).
            let _ = std::fs::remove_dir(&self.hba_dir);
        }
        Ok(())
    }
}

impl Drop for Backstore {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            log::error!("cleanup: {e}");
        }
    }
}

/// A `tcm_loop` target exporting one backstore as LUN 0 of a local SCSI host.
#[derive(Debug)]
pub struct LoopbackExport {
    target_dir: PathBuf,
    tpg_dir: PathBuf,
    lun_dir: PathBuf,
    link: PathBuf,
    removed: bool,
}

impl LoopbackExport {
    /// Create target `wwn` (e.g. `naa.5001405...`), its I_T nexus with
    /// initiator `initiator_wwn`, and LUN 0 linked to `backstore_dir`.
    pub fn create(
        root: &Path,
        backstore_dir: &Path,
        wwn: &str,
        initiator_wwn: &str,
    ) -> Result<LoopbackExport, ConfigfsError> {
        let target_dir = root.join("loopback").join(wwn);
        let tpg_dir = target_dir.join("tpgt_1");
        let lun_dir = tpg_dir.join("lun/lun_0");
        let link_name = backstore_dir.file_name().unwrap_or_default();
        let mut export = LoopbackExport {
            link: lun_dir.join(link_name),
            target_dir,
            tpg_dir,
            lun_dir,
            removed: false,
        };
        let loopback = root.join("loopback");
        if !loopback.exists() {
            mkdir(&loopback)?;
        }
        mkdir(&export.target_dir)?;
        mkdir(&export.tpg_dir)?;
        mkdir(&export.lun_dir)?;
        write_attr(&export.tpg_dir.join("nexus"), initiator_wwn)?;
        log::debug!(
            "configfs: ln -s {} {}",
            backstore_dir.display(),
            export.link.display()
        );
        std::os::unix::fs::symlink(backstore_dir, &export.link).map_err(io_err(&export.link))?;
        export.removed = false;
        Ok(export)
    }

    /// Find an existing tcm_loop target whose LUN 0 links `backstore_dir`
    /// (left behind by a handler that died); it is removed on shutdown.
    pub fn find(root: &Path, backstore_dir: &Path) -> Option<LoopbackExport> {
        let targets = std::fs::read_dir(root.join("loopback")).ok()?;
        for target in targets.flatten() {
            let target_dir = target.path();
            let tpg_dir = target_dir.join("tpgt_1");
            let lun_dir = tpg_dir.join("lun/lun_0");
            let Ok(links) = std::fs::read_dir(&lun_dir) else {
                continue;
            };
            for link in links.flatten() {
                let path = link.path();
                let points_here = std::fs::canonicalize(&path)
                    .ok()
                    .zip(std::fs::canonicalize(backstore_dir).ok())
                    .is_some_and(|(a, b)| a == b);
                if path
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                    && points_here
                {
                    return Some(LoopbackExport {
                        target_dir,
                        tpg_dir,
                        lun_dir,
                        link: path,
                        removed: false,
                    });
                }
            }
        }
        None
    }

    /// The SCSI address `H:C:T` of the LUN's host (tpg `address` attribute).
    pub fn scsi_address(&self) -> Result<String, ConfigfsError> {
        let path = self.tpg_dir.join("address");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Ok(text.trim().to_string())
    }

    /// Wait for the kernel to attach a disk to LUN 0 and for its `/dev`
    /// node to appear; returns e.g. `/dev/sdb`.
    pub fn wait_for_disk(&self, timeout: Duration) -> Result<PathBuf, ConfigfsError> {
        let start = Instant::now();
        loop {
            if let Ok(addr) = self.scsi_address() {
                let block = PathBuf::from(format!("/sys/bus/scsi/devices/{addr}:0/block"));
                if let Some(name) = std::fs::read_dir(&block)
                    .ok()
                    .and_then(|mut d| d.next())
                    .and_then(|e| e.ok())
                {
                    let node = Path::new("/dev").join(name.file_name());
                    if node.exists() {
                        return Ok(node);
                    }
                }
            }
            if start.elapsed() >= timeout {
                return Err(ConfigfsError::Timeout(
                    timeout,
                    "the SCSI disk of the tcm_loop LUN".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Remove the LUN, the nexus and the target.
    pub fn remove(mut self) -> Result<(), ConfigfsError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), ConfigfsError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        if self.link.symlink_metadata().is_ok() {
            log::debug!("configfs: rm {}", self.link.display());
            std::fs::remove_file(&self.link).map_err(io_err(&self.link))?;
        }
        rmdir(&self.lun_dir)?;
        rmdir(&self.tpg_dir)?;
        rmdir(&self.target_dir)
    }
}

impl Drop for LoopbackExport {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            log::error!("cleanup: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// iSCSI export

use std::net::SocketAddr;

/// The iSCSI port initiators connect to unless told otherwise.
pub const ISCSI_DEFAULT_PORT: u16 = 3260;

/// The naming authority of default target names (`iqn.<date>.<reversed domain>`).
const DEFAULT_IQN_PREFIX: &str = "iqn.2026-11.org.tcmu-rs";

/// The longest iSCSI name allowed (RFC 7143: 223 bytes).
const MAX_IQN_LEN: usize = 223;

/// How initiators authenticate to an iSCSI target.
#[derive(Clone, PartialEq, Eq)]
pub enum IscsiAuth {
    /// Demo mode without authentication: any initiator that reaches the
    /// portal may log in.
    None,
    /// One-way CHAP: an initiator logs in with this user name and secret.
    Chap { user: String, password: String },
}

impl std::fmt::Debug for IscsiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IscsiAuth::None => f.write_str("None"),
            IscsiAuth::Chap { user, .. } => f
                .debug_struct("Chap")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
        }
    }
}

/// What to create: an iSCSI target with one TPG, LUN 0 and one portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiConfig {
    /// The target name, `iqn.YYYY-MM.reversed.domain[:anything]`.
    pub iqn: String,
    /// The address and port the target listens on.
    pub portal: SocketAddr,
    /// Who may log in.
    pub auth: IscsiAuth,
}

impl IscsiConfig {
    /// Check the name, the portal and the CHAP credentials; the error is
    /// one line naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        check_iqn(&self.iqn)?;
        check_portal(&self.portal)?;
        if let IscsiAuth::Chap { user, password } = &self.auth {
            check_chap_value("CHAP user", user, 1)?;
            check_chap_value("CHAP password", password, 12)?;
        }
        Ok(())
    }

    /// `iscsi://ADDR:PORT/IQN/0`: where initiators find LUN 0.
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/0", self.portal, self.iqn)
    }
}

/// The default target name for a backstore: lowercase (iSCSI names are),
/// with '_' (not allowed in iSCSI names) turned into '-'.
pub fn default_iqn(backstore_name: &str) -> String {
    let suffix: String = backstore_name
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{DEFAULT_IQN_PREFIX}:{suffix}")
}

/// Check an iSCSI qualified name: `iqn.YYYY-MM.reversed.domain[:anything]`,
/// lowercase letters, digits, '-', '.' and ':' only.
pub fn check_iqn(iqn: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid IQN {iqn:?}: {why} (want iqn.YYYY-MM.reversed.domain[:name])"
        ))
    };
    if iqn.len() > MAX_IQN_LEN {
        return bad("longer than 223 bytes");
    }
    if let Some(c) = iqn
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return bad(&format!(
            "character {c:?} not allowed (lowercase letters, digits, '-', '.', ':')"
        ));
    }
    let Some(rest) = iqn.strip_prefix("iqn.") else {
        return bad("does not start with \"iqn.\"");
    };
    let date = rest.get(..7).unwrap_or("");
    let (year, month) = date.split_once('-').unwrap_or(("", ""));
    let month_ok = month.len() == 2 && matches!(month.parse::<u8>(), Ok(1..=12));
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) || !month_ok {
        return bad("no YYYY-MM date after \"iqn.\"");
    }
    let Some(rest) = rest[7..].strip_prefix('.') else {
        return bad("no '.' and reversed domain after the date");
    };
    let (domain, name) = match rest.split_once(':') {
        Some((domain, name)) => (domain, Some(name)),
        None => (rest, None),
    };
    if domain.is_empty()
        || domain
            .split('.')
            .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return bad("the reversed domain name is malformed");
    }
    if name.is_some_and(str::is_empty) {
        return bad("nothing after ':'");
    }
    Ok(())
}

/// Parse a portal: `A.B.C.D[:PORT]` or `[IPV6][:PORT]` (default port 3260).
pub fn parse_portal(text: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid portal {text:?}: {why} (want A.B.C.D:PORT or [IPv6]:PORT)"
        ))
    };
    let addr = if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
        SocketAddr::new(ip.into(), ISCSI_DEFAULT_PORT)
    } else if let Some(ip) = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
    {
        SocketAddr::new(ip.into(), ISCSI_DEFAULT_PORT)
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return bad("put an IPv6 address in brackets");
    } else {
        return bad("not an IP address and port");
    };
    match check_portal(&addr) {
        Ok(()) => Ok(addr),
        Err(why) => bad(&why),
    }
}

fn check_portal(addr: &SocketAddr) -> Result<(), String> {
    if addr.port() == 0 {
        return Err("port 0".into());
    }
    if let SocketAddr::V6(v6) = addr
        && v6.scope_id() != 0
    {
        return Err("a scope id is not supported".into());
    }
    Ok(())
}

/// The name of a portal's directory under `np/`: `A.B.C.D:PORT` or
/// `[IPV6]:PORT`.
pub fn portal_dir_name(addr: &SocketAddr) -> String {
    addr.to_string()
}

/// CHAP user names and secrets: printable ASCII without spaces, at most
/// 255 bytes (LIO's limit), and not starting with "NULL" (which LIO takes
/// as "unset").
fn check_chap_value(what: &str, value: &str, min_len: usize) -> Result<(), String> {
    if value.len() < min_len {
        return Err(if min_len == 1 {
            format!("the {what} is empty")
        } else {
            format!("the {what} is shorter than {min_len} characters")
        });
    }
    if value.len() > 255 {
        return Err(format!("the {what} is longer than 255 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the {what} may only hold printable ASCII characters without spaces"
        ));
    }
    if value.starts_with("NULL") {
        return Err(format!("the {what} must not start with \"NULL\""));
    }
    Ok(())
}

/// The configfs operations an export performs; a trait so that tests can
/// stand in for the kernel's automatic directories.
trait Tree: Send + Sync + std::fmt::Debug {
    fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError>;
    fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError>;
    fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError>;
    fn unlink(&self, link: &Path) -> Result<(), ConfigfsError>;
}

/// The real configfs.
#[derive(Debug)]
struct Kernel;

impl Tree for Kernel {
    fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError> {
        mkdir(path)
    }
    fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError> {
        rmdir(path)
    }
    fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError> {
        write_attr(path, value)
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError> {
        log::debug!("configfs: ln -s {} {}", target.display(), link.display());
        std::os::unix::fs::symlink(target, link).map_err(io_err(link))
    }
    fn unlink(&self, link: &Path) -> Result<(), ConfigfsError> {
        log::debug!("configfs: rm {}", link.display());
        match std::fs::remove_file(link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io_err(link)),
        }
    }
}

/// Which parts of an iSCSI export exist (and are removed on teardown).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct IscsiParts {
    target: bool,
    tpg: bool,
    lun: bool,
    link: bool,
    portal: bool,
    enabled: bool,
}

/// An LIO iSCSI target exporting one backstore as LUN 0 of TPG 1 on one
/// portal. Removed (disable, portal, LUN link, LUN, TPG, target) by
/// [`remove`](Self::remove) or on drop.
#[derive(Debug)]
pub struct IscsiExport {
    tree: Box<dyn Tree>,
    target_dir: PathBuf,
    tpg_dir: PathBuf,
    lun_dir: PathBuf,
    link: PathBuf,
    np_dir: PathBuf,
    url: String,
    parts: IscsiParts,
    removed: bool,
}

impl IscsiExport {
    /// Create target `config.iqn` under `root` (normally [`TARGET_ROOT`];
    /// load `iscsi_target_mod` first) with TPG 1 in demo mode
    /// (`generate_node_acls=1`, writable), LUN 0 linked to
    /// `backstore_dir`, a portal on `config.portal`, CHAP if asked for, and
    /// enable it. A target with that name must not exist yet. On error
    /// nothing is left behind.
    pub fn create(
        root: &Path,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> Result<IscsiExport, ConfigfsError> {
        Self::create_in(Box::new(Kernel), root, backstore_dir, config)
    }

    fn create_in(
        tree: Box<dyn Tree>,
        root: &Path,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> Result<IscsiExport, ConfigfsError> {
        let fabric = root.join("iscsi");
        let target_dir = fabric.join(&config.iqn);
        if let Err(why) = config.validate() {
            return Err(ConfigfsError::Io {
                path: target_dir,
                source: io::Error::new(io::ErrorKind::InvalidInput, why),
            });
        }
        let mut export = Self::at(tree, target_dir, backstore_dir, config);
        if export.target_dir.symlink_metadata().is_ok() {
            return Err(ConfigfsError::Io {
                path: export.target_dir.clone(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "an iSCSI target with this name already exists",
                ),
            });
        }
        if !fabric.exists() {
            export.tree.mkdir(&fabric)?;
        }
        export.tree.mkdir(&export.target_dir)?;
        export.parts.target = true;
        export.tree.mkdir(&export.tpg_dir)?;
        export.parts.tpg = true;
        export.tree.mkdir(&export.lun_dir)?;
        export.parts.lun = true;
        export.tree.symlink(backstore_dir, &export.link)?;
        export.parts.link = true;
        export.tree.mkdir(&export.np_dir)?;
        export.parts.portal = true;
        let attrib = export.tpg_dir.join("attrib");
        let chap = match &config.auth {
            IscsiAuth::None => None,
            IscsiAuth::Chap { user, password } => Some((user, password)),
        };
        let authentication = if chap.is_some() { "1" } else { "0" };
        export
            .tree
            .write(&attrib.join("authentication"), authentication)?;
        export.tree.write(&attrib.join("generate_node_acls"), "1")?;
        export.tree.write(&attrib.join("cache_dynamic_acls"), "1")?;
        export
            .tree
            .write(&attrib.join("demo_mode_write_protect"), "0")?;
        if let Some((user, password)) = chap {
            // Initiators without an explicit ACL (generate_node_acls=1)
            // authenticate against the TPG's own credentials.
            let auth = export.tpg_dir.join("auth");
            export.tree.write(&auth.join("userid"), user)?;
            export.tree.write(&auth.join("password"), password)?;
        }
        export.tree.write(&export.tpg_dir.join("enable"), "1")?;
        export.parts.enabled = true;
        Ok(export)
    }

    fn at(
        tree: Box<dyn Tree>,
        target_dir: PathBuf,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> IscsiExport {
        let tpg_dir = target_dir.join("tpgt_1");
        let lun_dir = tpg_dir.join("lun/lun_0");
        IscsiExport {
            tree,
            link: lun_dir.join(backstore_dir.file_name().unwrap_or_default()),
            np_dir: tpg_dir.join("np").join(portal_dir_name(&config.portal)),
            target_dir,
            tpg_dir,
            lun_dir,
            url: config.url(),
            parts: IscsiParts::default(),
            removed: false,
        }
    }

    /// Find target `config.iqn` if its LUN 0 links `backstore_dir` (left
    /// behind by a handler of this backstore that died), to remove it
    /// before creating it afresh. Its portals are all removed with it.
    pub fn find(root: &Path, backstore_dir: &Path, config: &IscsiConfig) -> Option<IscsiExport> {
        let target_dir = root.join("iscsi").join(&config.iqn);
        let mut export = Self::at(Box::new(Kernel), target_dir, backstore_dir, config);
        let ours = std::fs::canonicalize(backstore_dir).ok()?;
        let link = std::fs::read_dir(&export.lun_dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                    && std::fs::canonicalize(p).is_ok_and(|t| t == ours)
            })?;
        export.link = link;
        export.parts = IscsiParts {
            target: true,
            tpg: true,
            lun: true,
            link: true,
            portal: false,
            enabled: std::fs::read_to_string(export.tpg_dir.join("enable"))
                .is_ok_and(|t| t.trim() == "1"),
        };
        Some(export)
    }

    /// `iscsi://ADDR:PORT/IQN/0`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The target's configfs directory.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// Disable the TPG, then remove the portal, the LUN link, the LUN, the
    /// TPG and the target.
    pub fn remove(mut self) -> Result<(), ConfigfsError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), ConfigfsError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let tree = &self.tree;
        if self.parts.enabled {
            // Fails while sessions cannot be released; removing the TPG
            // below ends them anyway.
            if let Err(e) = tree.write(&self.tpg_dir.join("enable"), "0") {
                log::warn!("disabling the iSCSI TPG: {e}");
            }
            self.parts.enabled = false;
        }
        if self.parts.portal {
            tree.rmdir(&self.np_dir)?;
        } else if self.parts.tpg {
            // A target found after a crash: remove whatever portals it has.
            if let Ok(entries) = std::fs::read_dir(self.tpg_dir.join("np")) {
                for entry in entries.flatten() {
                    tree.rmdir(&entry.path())?;
                }
            }
        }
        self.parts.portal = false;
        if self.parts.link {
            tree.unlink(&self.link)?;
            self.parts.link = false;
        }
        if self.parts.lun {
            tree.rmdir(&self.lun_dir)?;
            self.parts.lun = false;
        }
        if self.parts.tpg {
            tree.rmdir(&self.tpg_dir)?;
            self.parts.tpg = false;
        }
        if self.parts.target {
            tree.rmdir(&self.target_dir)?;
            self.parts.target = false;
        }
        Ok(())
    }
}

impl Drop for IscsiExport {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            log::error!("cleanup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(valid_name("disk-1_a.b"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    fn config(name: &str) -> BackstoreConfig {
        BackstoreConfig {
            name: name.into(),
            hba: 0,
            dev_size: 1 << 20,
            block_size: 512,
            dev_config: "tcmu-rs/mem".into(),
            max_sectors: Some(2048),
            max_data_area_mb: None,
            cmd_ring_size_mb: None,
            serial: "abc".into(),
        }
    }

    #[test]
    fn control_string_and_uio_name() {
        let c = config("d");
        assert_eq!(
            c.control(),
            "dev_size=1048576,dev_config=tcmu-rs/mem,hw_block_size=512,nl_reply_supported=-1,hw_max_sectors=2048"
        );
        assert_eq!(c.uio_name(), "tcm-user/0/d/tcmu-rs/mem");
    }

    /// configfs directories behave like plain ones for this test: the
    /// sequence of objects is created and removed again.
    #[test]
    fn backstore_create_and_remove_in_a_plain_directory() {
        let root = std::env::temp_dir().join(format!("cfs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("core")).unwrap();
        // A plain directory has no wwn/ subdirectory: creation fails at the
        // serial and must leave nothing behind.
        let err = Backstore::create(&root, &config("d")).unwrap_err();
        assert!(matches!(err, ConfigfsError::Io { .. }), "{err}");
        // Drop removed the (non-empty) device dir? It holds files, so rmdir
        // fails, which is logged; clean by hand and check the HBA logic.
        let _ = std::fs::remove_dir_all(root.join("core/user_0"));
        std::fs::create_dir_all(root.join("core/user_0/taken")).unwrap();
        let err = Backstore::create(&root, &config("taken")).unwrap_err();
        assert!(matches!(err, ConfigfsError::NameTaken(_)), "{err}");
        assert!(
            root.join("core/user_0/taken").exists(),
            "someone else's backstore is kept"
        );
        assert!(matches!(
            Backstore::create(&root, &config("a/b")),
            Err(ConfigfsError::BadName(_))
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn sizes_the_kernel_did_not_take_fail_the_creation() {
        let c = BackstoreConfig {
            max_data_area_mb: Some(64),
            cmd_ring_size_mb: Some(2),
            ..config("d")
        };
        assert!(
            c.control()
                .ends_with(",hw_max_sectors=2048,max_data_area_mb=64,cmd_ring_size_mb=2")
        );
        let attrib = std::env::temp_dir().join(format!("cfs-attrib-{}", std::process::id()));
        std::fs::create_dir_all(&attrib).unwrap();
        let data_area = attrib.join("max_data_area_mb");
        // An older kernel has no such attribute.
        let err = check_attr(&data_area, 64).unwrap_err();
        assert!(matches!(err, ConfigfsError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("max_data_area_mb"), "{err}");
        std::fs::write(&data_area, "1024\n").unwrap();
        let err = check_attr(&data_area, 64).unwrap_err();
        assert!(matches!(err, ConfigfsError::NotApplied { .. }), "{err}");
        assert!(err.to_string().contains("is 1024, not 64"), "{err}");
        std::fs::write(&data_area, "64\n").unwrap();
        check_attr(&data_area, 64).unwrap();
        std::fs::remove_dir_all(&attrib).unwrap();
    }
}

#[cfg(test)]
mod iscsi_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn iqns_are_validated() {
        for good in [
            "iqn.2026-11.org.tcmu-rs:disk0",
            "iqn.2003-01.org.linux-iscsi.host.x8664:sn.1234",
            "iqn.1994-05.com.redhat",
            "iqn.2026-12.a:b:c",
        ] {
            assert_eq!(check_iqn(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "does not start"),
            ("eui.0123456789abcdef", "does not start"),
            ("naa.50014050000000a1", "does not start"),
            ("iqn.26-11.org.x", "YYYY-MM"),
            ("iqn.2026-13.org.x", "YYYY-MM"),
            ("iqn.2026-00.org.x", "YYYY-MM"),
            ("iqn.2026-1.org.x", "YYYY-MM"),
            ("iqn.2026", "YYYY-MM"),
            ("iqn.2026-11", "reversed domain after the date"),
            ("iqn.2026-11org.x", "reversed domain after the date"),
            ("iqn.2026-11.", "malformed"),
            ("iqn.2026-11.org..x", "malformed"),
            ("iqn.2026-11.-org.x", "malformed"),
            ("iqn.2026-11.org.x:", "nothing after"),
            ("iqn.2026-11.Org.x", "'O' not allowed"),
            ("iqn.2026-11.org.x:a_b", "'_' not allowed"),
            ("iqn.2026-11.org.x:a/b", "'/' not allowed"),
            ("iqn.2026-11.org.x:a b", "' ' not allowed"),
        ] {
            let err = check_iqn(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let long = format!("iqn.2026-11.org.x:{}", "a".repeat(210));
        assert!(check_iqn(&long).unwrap_err().contains("223"));
    }

    #[test]
    fn default_iqn_is_valid_for_any_backstore_name() {
        assert_eq!(default_iqn("iscsi0"), "iqn.2026-11.org.tcmu-rs:iscsi0");
        assert_eq!(
            default_iqn("My_Disk.1"),
            "iqn.2026-11.org.tcmu-rs:my-disk.1"
        );
        for name in ["a", "tcmurs-1234", "X_Y-z.9", &"n".repeat(64)] {
            assert!(valid_name(name));
            assert_eq!(check_iqn(&default_iqn(name)), Ok(()), "{name}");
        }
    }

    #[test]
    fn portals_are_parsed() {
        let p = |s: &str| parse_portal(s).map(|a| portal_dir_name(&a));
        assert_eq!(p("127.0.0.1:3260").unwrap(), "127.0.0.1:3260");
        assert_eq!(p("10.0.0.7").unwrap(), "10.0.0.7:3260");
        assert_eq!(p("0.0.0.0:3261").unwrap(), "0.0.0.0:3261");
        assert_eq!(p("[::1]:3260").unwrap(), "[::1]:3260");
        assert_eq!(p("[fd00::5]").unwrap(), "[fd00::5]:3260");
        for (bad, why) in [
            ("", "not an IP"),
            ("localhost:3260", "not an IP"),
            ("127.0.0.1:", "not an IP"),
            ("127.0.0.1:99999", "not an IP"),
            ("127.0.0.1:0", "port 0"),
            ("256.0.0.1:3260", "not an IP"),
            ("::1", "brackets"),
            ("[::1", "not an IP"),
            ("[fe80::1%2]:3260", "scope id"),
        ] {
            let err = parse_portal(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("[IPv6]:PORT") && !err.contains('\n'), "{err}");
        }
    }

    fn config(auth: IscsiAuth) -> IscsiConfig {
        IscsiConfig {
            iqn: "iqn.2026-11.org.tcmu-rs:d".into(),
            portal: "127.0.0.1:3260".parse().unwrap(),
            auth,
        }
    }

    fn chap() -> IscsiAuth {
        IscsiAuth::Chap {
            user: "alice".into(),
            password: "s3cret-s3cret".into(),
        }
    }

    #[test]
    fn config_checks_credentials_and_hides_the_password() {
        let c = config(chap());
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:d/0"
        );
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
        for (user, password, why) in [
            ("", "s3cret-s3cret", "user is empty"),
            ("alice", "short", "shorter than 12"),
            ("alice", "has a space!!", "printable ASCII"),
            ("al\nice", "s3cret-s3cret", "printable ASCII"),
            ("alice", "NULLNULLNULLNULL", "NULL"),
            ("alice", &"p".repeat(256), "longer than 255"),
        ] {
            let c = config(IscsiAuth::Chap {
                user: user.into(),
                password: password.into(),
            });
            let err = c.validate().unwrap_err();
            assert!(err.contains(why), "{user:?}/{password:?}: {err}");
        }
        let mut c = config(IscsiAuth::None);
        c.portal = "[::1]:3260".parse().unwrap();
        assert_eq!(c.url(), "iscsi://[::1]:3260/iqn.2026-11.org.tcmu-rs:d/0");
    }

    /// A plain directory standing in for configfs: making a `tpgt_N`
    /// directory also makes the groups the kernel creates with it, and
    /// removing it removes them; every operation is logged relative to the
    /// root. An operation whose log line starts with `fail_at` fails.
    #[derive(Debug, Clone)]
    struct FakeTree {
        root: PathBuf,
        log: Arc<Mutex<Vec<String>>>,
        fail_at: Option<String>,
    }

    const TPG_GROUPS: [&str; 5] = ["lun", "np", "attrib", "auth", "param"];

    impl FakeTree {
        fn new(root: &Path) -> FakeTree {
            FakeTree {
                root: root.to_path_buf(),
                log: Arc::default(),
                fail_at: None,
            }
        }
        fn note(&self, op: String) -> Result<(), ConfigfsError> {
            let fail = self.fail_at.as_ref().is_some_and(|f| op.starts_with(f));
            self.log.lock().unwrap().push(op);
            if fail {
                return Err(ConfigfsError::Io {
                    path: self.root.clone(),
                    source: io::Error::other("injected failure"),
                });
            }
            Ok(())
        }
        fn rel(&self, p: &Path) -> String {
            p.strip_prefix(&self.root).unwrap().display().to_string()
        }
        fn ops(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }
        fn is_tpg(p: &Path) -> bool {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tpgt_"))
        }
    }

    impl Tree for FakeTree {
        fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("mkdir {}", self.rel(path)))?;
            std::fs::create_dir(path).map_err(io_err(path))?;
            if Self::is_tpg(path) {
                for group in TPG_GROUPS {
                    std::fs::create_dir(path.join(group)).unwrap();
                }
            }
            Ok(())
        }
        fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("rmdir {}", self.rel(path)))?;
            if Self::is_tpg(path) {
                for group in ["attrib", "auth", "param"] {
                    let _ = std::fs::remove_dir_all(path.join(group));
                }
                // Attributes (`enable`) go with the directory.
                for entry in std::fs::read_dir(path).unwrap().flatten() {
                    if entry.file_type().unwrap().is_file() {
                        std::fs::remove_file(entry.path()).unwrap();
                    }
                }
                for group in ["lun", "np"] {
                    // Fails (like configfs) while LUNs or portals remain.
                    rmdir(&path.join(group))?;
                }
            }
            rmdir(path)
        }
        fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError> {
            self.note(format!("write {}={value}", self.rel(path)))?;
            std::fs::write(path, value).map_err(io_err(path))
        }
        fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("ln {} -> {}", self.rel(link), self.rel(target)))?;
            std::os::unix::fs::symlink(target, link).map_err(io_err(link))
        }
        fn unlink(&self, link: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("rm {}", self.rel(link)))?;
            std::fs::remove_file(link).map_err(io_err(link))
        }
    }

    fn scratch(tag: &str) -> (PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("cfs-iscsi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bs = root.join("core/user_0/d");
        std::fs::create_dir_all(&bs).unwrap();
        (root, bs)
    }

    fn targets(root: &Path) -> Vec<String> {
        std::fs::read_dir(root.join("iscsi"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    const T: &str = "iscsi/iqn.2026-11.org.tcmu-rs:d";

    fn teardown_ops() -> Vec<String> {
        [
            format!("write {T}/tpgt_1/enable=0"),
            format!("rmdir {T}/tpgt_1/np/127.0.0.1:3260"),
            format!("rm {T}/tpgt_1/lun/lun_0/d"),
            format!("rmdir {T}/tpgt_1/lun/lun_0"),
            format!("rmdir {T}/tpgt_1"),
            format!("rmdir {T}"),
        ]
        .into()
    }

    #[test]
    fn demo_mode_export_is_created_and_removed_in_order() {
        let (root, bs) = scratch("demo");
        let tree = FakeTree::new(&root);
        let export =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(IscsiAuth::None))
                .unwrap();
        assert_eq!(
            tree.ops(),
            [
                "mkdir iscsi".to_string(),
                format!("mkdir {T}"),
                format!("mkdir {T}/tpgt_1"),
                format!("mkdir {T}/tpgt_1/lun/lun_0"),
                format!("ln {T}/tpgt_1/lun/lun_0/d -> core/user_0/d"),
                format!("mkdir {T}/tpgt_1/np/127.0.0.1:3260"),
                format!("write {T}/tpgt_1/attrib/authentication=0"),
                format!("write {T}/tpgt_1/attrib/generate_node_acls=1"),
                format!("write {T}/tpgt_1/attrib/cache_dynamic_acls=1"),
                format!("write {T}/tpgt_1/attrib/demo_mode_write_protect=0"),
                format!("write {T}/tpgt_1/enable=1"),
            ]
        );
        assert_eq!(
            export.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:d/0"
        );
        let link = root.join(T).join("tpgt_1/lun/lun_0/d");
        assert_eq!(std::fs::read_link(&link).unwrap(), bs);
        export.remove().unwrap();
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty(), "left: {:?}", targets(&root));
        assert!(bs.is_dir(), "the backstore is not the export's to remove");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn chap_credentials_go_to_the_tpg_before_enabling() {
        let (root, bs) = scratch("chap");
        std::fs::create_dir(root.join("iscsi")).unwrap(); // the fabric exists
        let tree = FakeTree::new(&root);
        let export =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(chap())).unwrap();
        let ops = tree.ops();
        assert_eq!(
            ops[0],
            format!("mkdir {T}"),
            "the fabric directory is reused"
        );
        assert_eq!(
            ops[5..],
            [
                format!("write {T}/tpgt_1/attrib/authentication=1"),
                format!("write {T}/tpgt_1/attrib/generate_node_acls=1"),
                format!("write {T}/tpgt_1/attrib/cache_dynamic_acls=1"),
                format!("write {T}/tpgt_1/attrib/demo_mode_write_protect=0"),
                format!("write {T}/tpgt_1/auth/userid=alice"),
                format!("write {T}/tpgt_1/auth/password=s3cret-s3cret"),
                format!("write {T}/tpgt_1/enable=1"),
            ]
        );
        drop(export); // dropping removes it too
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_setup_leaves_nothing_behind() {
        let (root, bs) = scratch("fail");
        for (fail_at, undo) in [
            ("write iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1/enable", 5),
            ("mkdir iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1/np", 4),
            ("ln ", 3),
            ("mkdir iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1", 1),
        ] {
            let mut tree = FakeTree::new(&root);
            tree.fail_at = Some(fail_at.into());
            let err = IscsiExport::create_in(
                Box::new(tree.clone()),
                &root,
                &bs,
                &config(IscsiAuth::None),
            )
            .unwrap_err();
            assert!(err.to_string().contains("injected"), "{err}");
            let ops = tree.ops();
            let failed = ops.iter().position(|o| o.starts_with(fail_at)).unwrap();
            // The operation that failed is never undone (enable was not set).
            let cleanup: Vec<_> = ops[failed + 1..].to_vec();
            let want = teardown_ops();
            assert_eq!(cleanup, want[want.len() - undo..], "failing at {fail_at}");
            assert!(targets(&root).is_empty(), "failing at {fail_at}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_existing_target_or_a_bad_config_is_refused_untouched() {
        let (root, bs) = scratch("taken");
        std::fs::create_dir_all(root.join(T).join("tpgt_1")).unwrap();
        let tree = FakeTree::new(&root);
        let err =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(IscsiAuth::None))
                .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(
            root.join(T).join("tpgt_1").is_dir(),
            "someone else's target is kept"
        );
        assert!(tree.ops().is_empty());

        let mut bad = config(IscsiAuth::None);
        bad.iqn = "iqn.2026-11.org.tcmu-rs:D".into();
        let err = IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &bad).unwrap_err();
        assert!(err.to_string().contains("invalid IQN"), "{err}");
        assert!(tree.ops().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_target_left_behind_is_found_and_removed() {
        let (root, bs) = scratch("find");
        let tree = FakeTree::new(&root);
        let old =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(chap())).unwrap();
        std::mem::forget(old); // its handler died
        tree.ops();
        let other = root.join("core/user_0/other");
        std::fs::create_dir(&other).unwrap();
        let c = config(IscsiAuth::None);
        assert!(
            IscsiExport::find(&root, &other, &c).is_none(),
            "not linked there"
        );
        let mut found = IscsiExport::find(&root, &bs, &c).expect("found");
        assert!(found.parts.enabled);
        found.tree = Box::new(tree.clone());
        found.remove().unwrap();
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
