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
    /// Size of the data area in MiB (`max_data_area_mb`).
    pub max_data_area_mb: Option<u32>,
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
}
