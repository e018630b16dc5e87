//! The flags of runner mode.

use std::path::PathBuf;

use crate::runner::lock::DEFAULT_LOCK_FILE;

/// The flags of runner mode.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunnerArgs {
    /// Free the kernel's netlink waits that a runner which died left
    /// behind (SET_FEATURES(0), block_netlink, reset_netlink), then exit:
    /// for a service manager's stop step. A running runner's guard process
    /// does the same on its own when the runner is killed.
    #[arg(long)]
    pub release: bool,
    /// The lock file that keeps a second runner from starting.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LOCK_FILE)]
    pub lock_file: PathBuf,
    /// Do not own org.kernel.TCMUService1 on D-Bus (targetcli then lists no
    /// `user:` backstores; configfs writes still work).
    #[arg(long)]
    pub no_dbus: bool,
    /// The D-Bus bus to own the name on, as an address (default: the
    /// system bus).
    #[arg(long, value_name = "ADDRESS", conflicts_with = "no_dbus")]
    pub dbus_address: Option<String>,
    /// Worker threads per device (default: as for one device).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The guard process the runner starts (internal).
    #[arg(long, hide = true)]
    pub guard: bool,
}
