//! The kernel's netlink waits, and freeing them.
//!
//! Once a handler has sent SET_FEATURES(1), `enable` of a backstore waits
//! (uninterruptibly) for ADDED_DEVICE_DONE even when nobody listens, so a
//! runner that died would leave every later `enable` hanging. The module
//! parameters are the way out: `block_netlink=1` makes new waits fail
//! (EAGAIN), `reset_netlink=1` ends the waits in progress (EINTR), and
//! `block_netlink=0` lets waits start again.

use std::path::Path;

use tcmu_core::netlink::TcmuNetlink;

/// Where target_core_user's module parameters are.
const PARAMS: &str = "/sys/module/target_core_user/parameters";

fn write_param(name: &str, value: &str) -> Result<(), String> {
    let path = Path::new(PARAMS).join(name);
    std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
}

/// Refuse new netlink waits and end the ones in progress; the waiting
/// configfs writes fail (a stuck `enable` then reports EINTR).
pub fn block_and_reset() -> Result<(), String> {
    write_param("block_netlink", "1")?;
    write_param("reset_netlink", "1")
}

/// Let netlink waits start again.
pub fn unblock() -> Result<(), String> {
    write_param("block_netlink", "0")
}

/// What a runner leaves behind when it is gone: the kernel waits for no
/// reply (SET_FEATURES(0)), and no configfs write is left waiting. Then
/// `enable` and `rmdir` never hang while no runner runs; a backstore
/// enabled meanwhile is served when a runner starts.
pub fn release() -> Result<(), String> {
    match TcmuNetlink::connect() {
        Ok(netlink) => netlink
            .set_features(false)
            .map_err(|e| format!("SET_FEATURES(0): {e}"))?,
        Err(e) => log::warn!("netlink: {e}; only the waits in progress are released"),
    }
    block_and_reset()?;
    unblock()
}
