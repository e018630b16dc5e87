//! What can go wrong while configuring LIO.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors while configuring LIO.
#[derive(Debug, thiserror::Error)]
pub enum ConfigfsError {
    /// configfs is not mounted at the given path.
    #[error("configfs is not available ({0} does not exist; is CONFIG_CONFIGFS_FS enabled?)")]
    ConfigfsAbsent(PathBuf),
    /// A kernel module (target_core_user, tcm_loop, ...) could not be loaded.
    #[error("kernel module {module} could not be loaded: {reason}")]
    ModuleMissing {
        /// The module's name.
        module: String,
        /// What modprobe or the kernel said.
        reason: String,
    },
    /// A backstore of that name exists already.
    #[error("a backstore named {0:?} already exists")]
    NameTaken(String),
    /// The name is not usable as a configfs directory name.
    #[error("invalid backstore name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
    /// Reading, writing, creating or removing a configfs entry failed.
    #[error("{path}: {source}")]
    Io {
        /// The configfs entry.
        path: PathBuf,
        /// The error of the system call.
        source: io::Error,
    },
    /// The kernel did not reach the awaited state in time (the string says
    /// which state).
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The attribute does not exist on this kernel.
    #[error("this kernel has no {} (too old for the setting)", .0.display())]
    Unsupported(PathBuf),
    #[error("{} is {got}, not {wanted}: the kernel did not take the setting", .path.display())]
    /// An attribute read back differs from what was written.
    NotApplied {
        /// The attribute.
        path: PathBuf,
        /// The value written.
        wanted: String,
        /// The value read back.
        got: String,
    },
}
