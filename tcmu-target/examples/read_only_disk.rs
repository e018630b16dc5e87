//! A read-only device whose content is computed, not stored: block N holds
//! the text "block N" padded with dots. Writes are refused with DATA
//! PROTECT, and the disk shows up write-protected. Run as root; stop with ^C.

use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities};
use tcmu_target::Target;

/// 64 MiB of generated, immutable blocks.
struct GeneratedDisk;

const BLOCK: usize = 512;

impl BlockDevice for GeneratedDisk {
    fn block_size(&self) -> u32 {
        BLOCK as u32
    }

    fn num_blocks(&self) -> u64 {
        (64 << 20) / BLOCK as u64
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        for (i, block) in buf.chunks_mut(BLOCK).enumerate() {
            block.fill(b'.');
            let label = format!("block {}", lba + i as u64);
            block[..label.len()].copy_from_slice(label.as_bytes());
        }
        Ok(())
    }

    fn write(&self, _lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new().read_only(true)
    }

    fn product_name(&self) -> &str {
        "generated disk"
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::builder(GeneratedDisk).name("generated").start()?;
    println!("ready: {}", target.disk().unwrap().display());
    target.wait_for_signal()?;
    Ok(target.shutdown()?)
}
