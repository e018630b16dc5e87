//! The kernel side: LIO's modules loaded and configfs mounted.

use std::path::Path;
use std::process::Command;

use super::error::ConfigfsError;

/// Where LIO's configfs tree lives.
pub const TARGET_ROOT: &str = "/sys/kernel/config/target";
const CONFIGFS_MOUNT: &str = "/sys/kernel/config";

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
