//! Why a target could not be started or stopped.

use tcmu_core::configfs::ConfigfsError;
use tcmu_core::server::ServeError;
use tcmu_core::uio::UioError;

/// Why a target could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The process is not root.
    #[error("must run as root: configuring the kernel target (configfs) needs it")]
    NotRoot,
    /// The builder's settings or the device's geometry cannot be served.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Creating, exporting or removing the backstore failed.
    #[error(transparent)]
    Configfs(#[from] ConfigfsError),
    /// The backstore's UIO device could not be opened or mapped.
    #[error(transparent)]
    Uio(#[from] UioError),
    /// The mapped area is not a ring this crate can serve.
    #[error("cannot attach to the command ring: {0}")]
    Ring(#[from] tcmu_core::RingError),
    /// The serving loop stopped with an error.
    #[error("serving stopped: {0}")]
    Serve(#[from] ServeError),
    /// Any other I/O error (also: the serving thread panicked).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
