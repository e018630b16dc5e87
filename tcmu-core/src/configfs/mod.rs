//! LIO configuration through configfs: load the modules, create and enable
//! a TCMU (`user_N`) backstore, export it through `tcm_loop`, and remove
//! everything again in reverse order.
//!
//! Each object removes itself when dropped (best effort, logged), so an
//! error half-way through a setup leaves nothing behind; call `remove` to
//! see the errors.

mod alua;
mod attribute;
mod backstore;
mod chap;
mod error;
mod gateway_alua;
mod iqn;
mod iscsi;
mod loopback;
mod modules;
mod portal;
mod user_backstore;

pub use alua::{AccessType, AluaGroup, AluaMember};
pub use backstore::{Backstore, BackstoreConfig, valid_name};
pub use chap::IscsiAuth;
pub use error::ConfigfsError;
pub use gateway_alua::{GatewayAlua, GatewayGroup};
pub use iqn::{check_iqn, default_iqn};
pub use iscsi::{IscsiConfig, IscsiExport};
pub use loopback::LoopbackExport;
pub use modules::{TARGET_ROOT, ensure_target_root, load_modules};
pub use portal::{ISCSI_DEFAULT_PORT, parse_portal};
pub use user_backstore::UserBackstore;
