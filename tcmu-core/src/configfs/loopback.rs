//! The `tcm_loop` export: a local SCSI host whose LUN 0 is the backstore.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::attribute::{io_err, mkdir, rmdir, write_attr};
use super::error::ConfigfsError;

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
