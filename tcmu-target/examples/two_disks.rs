//! Two 64 MiB memory disks served by one process and sharing a copy
//! registry, so that EXTENDED COPY sent to either copies between them
//! without the data passing through the initiator (try `sg_xcopy`). Prints
//! `ready: /dev/sdX /dev/sdY`. Run as root; stop with ^C.

use block_backends::MemoryDevice;
use scsi_emu::CopyRegistry;
use tcmu_target::Target;

const BLOCKS: u64 = (64 << 20) / 512;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = CopyRegistry::new();
    let first = Target::builder(MemoryDevice::new(512, BLOCKS)?)
        .name("xcopy-a")
        .copy_registry(registry.clone())
        .start()?;
    // Should this fail, dropping `first` removes it again.
    let second = Target::builder(MemoryDevice::new(512, BLOCKS)?)
        .name("xcopy-b")
        .copy_registry(registry)
        .start()?;
    println!(
        "ready: {} {}",
        first.disk().unwrap().display(),
        second.disk().unwrap().display()
    );
    first.wait_for_signal()?;
    let stopped = second.shutdown();
    first.shutdown()?;
    Ok(stopped?)
}
