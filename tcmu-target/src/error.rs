//! Why a target could not be started or stopped.

use tcmu_core::configfs::ConfigfsError;
use tcmu_core::server::ServeError;
use tcmu_core::uio::UioError;

/// Why a target could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("must run as root: configuring the kernel target (configfs) needs it")]
    NotRoot,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Configfs(#[from] ConfigfsError),
    #[error(transparent)]
    Uio(#[from] UioError),
    #[error("cannot attach to the command ring: {0}")]
    Ring(#[from] tcmu_core::RingError),
    #[error("serving stopped: {0}")]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
