//! How a served LUN is made visible to the system.

use std::net::SocketAddr;

use tcmu_core::configfs::IscsiAuth;

/// How the LUN is made visible to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// A local SCSI disk (`/dev/sdX`) through tcm_loop.
    Loopback,
    /// No fabric: only the configfs backstore (link it yourself).
    None,
    /// An iSCSI target of the kernel (LIO): LUN 0 of TPG 1, one portal,
    /// any initiator may log in (demo mode), with CHAP if `auth` says so.
    /// [`Target::iscsi_url`](crate::Target::iscsi_url) tells where. Everything is removed on
    /// shutdown.
    Iscsi {
        /// The target name (`iqn.YYYY-MM.reversed.domain[:name]`); default
        /// [`tcmu_core::configfs::default_iqn`] of the backstore name.
        iqn: Option<String>,
        /// Where the target listens, e.g. `127.0.0.1:3260`.
        portal: SocketAddr,
        /// Who may log in.
        auth: IscsiAuth,
    },
}
