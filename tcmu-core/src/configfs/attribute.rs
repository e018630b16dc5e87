//! Reading and writing configfs attributes, and its directories: every
//! write and every directory names its path when it fails.

use std::io;
use std::path::Path;

use super::error::ConfigfsError;

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ConfigfsError + '_ {
    move |source| ConfigfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn write_attr(path: &Path, value: &str) -> Result<(), ConfigfsError> {
    log::debug!("configfs: {} <- {value}", path.display());
    std::fs::write(path, value).map_err(io_err(path))
}

/// Fail unless the attribute at `path` reads `wanted`.
pub(super) fn check_attr(path: &Path, wanted: u32) -> Result<(), ConfigfsError> {
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

pub(super) fn mkdir(path: &Path) -> Result<(), ConfigfsError> {
    log::debug!("configfs: mkdir {}", path.display());
    std::fs::create_dir(path).map_err(io_err(path))
}

pub(super) fn rmdir(path: &Path) -> Result<(), ConfigfsError> {
    log::debug!("configfs: rmdir {}", path.display());
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(io_err(path)),
    }
}
