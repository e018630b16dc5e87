//! What can go wrong while configuring LIO.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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
