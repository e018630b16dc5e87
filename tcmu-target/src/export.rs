//! How a served LUN is made visible to the system.

use std::net::SocketAddr;

use tcmu_core::configfs::{self, GatewayAlua, IscsiAuth, IscsiConfig};

/// How the LUN is made visible to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// A local SCSI disk (`/dev/sdX`) through tcm_loop.
    Loopback,
    /// No fabric: only the configfs backstore (link it yourself).
    None,
    /// An iSCSI target of the kernel (LIO): LUN 0 of TPG `tpg_tag`, one
    /// portal, any initiator may log in (demo mode), with CHAP if `auth`
    /// says so; with `alua`, as one gateway of several exporting one
    /// image (the target is shared, each gateway has its own TPG, and
    /// ALUA groups tell initiators which gateway is the owner's).
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
        /// The TPG's tag: 1, or this gateway's among several.
        tpg_tag: u16,
        /// The ALUA groups, for a gateway among several.
        alua: Option<GatewayAlua>,
    },
}

impl Export {
    /// What an iSCSI export makes for backstore `name` (the IQN defaults
    /// to [`configfs::default_iqn`] of it); `None` for another export.
    pub fn iscsi_config(&self, name: &str) -> Option<IscsiConfig> {
        match self {
            Export::Iscsi {
                iqn,
                portal,
                auth,
                tpg_tag,
                alua,
            } => Some(IscsiConfig {
                iqn: iqn.clone().unwrap_or_else(|| configfs::default_iqn(name)),
                portal: *portal,
                auth: auth.clone(),
                tpg_tag: *tpg_tag,
                alua: alua.clone(),
            }),
            _ => None,
        }
    }
}
