//! Starting one device from its plan, and what its `ready:` line names.

use tcmu_target::{AsyncDevice, Servable, Target};

use crate::backend::Opened;
use crate::plan::Plan;

/// Open the backing store, then create and export the LUN.
pub fn start_target(plan: &Plan) -> Result<Target, String> {
    // Problems with the backing store show before anything in the kernel changes.
    match plan.backend.open_served(&plan.device)? {
        Opened::Sync(device) => start_with(device, plan),
        Opened::Nbd(device) => {
            log::info!("{}: NBD requests are served asynchronously", plan.name);
            start_with(AsyncDevice(device), plan)
        }
        Opened::FileUring(device) => {
            log::info!("{}: file requests are served through io_uring", plan.name);
            start_with(AsyncDevice(device), plan)
        }
        #[cfg(feature = "rbd")]
        Opened::Rbd(device) => {
            log::info!("{}: RBD requests are served asynchronously", plan.name);
            start_with(AsyncDevice(device), plan)
        }
    }
}

fn start_with<D: Servable>(device: D, plan: &Plan) -> Result<Target, String> {
    let (block_size, blocks) = device.geometry();
    let size = blocks * u64::from(block_size);
    let mut builder = Target::builder(device)
        .name(plan.name.clone())
        .dev_config(plan.backend.dev_config())
        .max_io_bytes(plan.max_io_bytes)
        .export(plan.export.clone());
    if let Some(serial) = &plan.serial {
        builder = builder.serial(serial.clone());
    }
    if let Some(workers) = plan.workers {
        builder = builder.workers(workers);
    }
    if let Some(spin) = plan.spin {
        builder = builder.spin(spin.max).spin_adaptive(spin.adaptive);
    }
    if let Some(mib) = plan.data_area_mb {
        builder = builder.data_area_mb(mib);
    }
    if let Some(mib) = plan.ring_size_mb {
        builder = builder.ring_size_mb(mib);
    }
    builder = builder.timeouts(plan.cmd_timeout, plan.qfull_timeout);
    let target = builder.start().map_err(|e| e.to_string())?;
    log::info!(
        "serving {} ({size} bytes, {}-byte blocks)",
        plan.name,
        plan.device.block_size
    );
    Ok(target)
}

/// What the `ready:` line names: the disk, the iSCSI URL, or the backstore.
pub fn ready_target(target: &Target) -> String {
    match (target.disk(), target.iscsi_url()) {
        (Some(disk), _) => disk.display().to_string(),
        (None, Some(url)) => url.to_string(),
        (None, None) => target.backstore_dir().display().to_string(),
    }
}
