//! Runner mode: serve the `user:` backstores that targetcli, rtslib and
//! ceph-iscsi create, in place of tcmu-runner.

mod args;
mod backing;
mod config_string;
pub mod dbus;
mod devices;
// Only RBD images are shared between gateways.
#[cfg(feature = "rbd")]
mod failover;
mod guard;
mod listeners;
mod lock;
mod netlink_waits;
mod opening;
mod service;

pub use args::RunnerArgs;
pub use service::run;
