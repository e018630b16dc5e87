//! A device that keeps its data in a structure of the user's choice: a
//! `BTreeMap` from LBA to block, holding only blocks that were written
//! (a sparse disk), behind a read-write lock so that commands from several
//! worker threads can read at the same time. Run as root; stop with ^C.

use std::collections::BTreeMap;
use std::sync::RwLock;

use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, Extent};
use tcmu_target::Target;

const BLOCK: usize = 4096;

/// Blocks by LBA; a missing block reads as zeros.
struct BTreeDisk {
    blocks: RwLock<BTreeMap<u64, Box<[u8; BLOCK]>>>,
    num_blocks: u64,
}

impl BlockDevice for BTreeDisk {
    fn block_size(&self) -> u32 {
        BLOCK as u32
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.blocks.read().map_err(|_| BlockError::Medium)?;
        for (i, out) in buf.chunks_mut(BLOCK).enumerate() {
            match blocks.get(&(lba + i as u64)) {
                Some(block) => out.copy_from_slice(&block[..]),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut blocks = self.blocks.write().map_err(|_| BlockError::Medium)?;
        for (i, data) in buf.chunks(BLOCK).enumerate() {
            let mut block = Box::new([0u8; BLOCK]);
            block.copy_from_slice(data);
            blocks.insert(lba + i as u64, block);
        }
        Ok(())
    }

    // Thin provisioning for free: unmapping forgets blocks, which then read
    // as zeros, so the disk advertises UNMAP and discards work.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .unmap(true)
            .unmap_reads_zeroes(true)
    }

    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let mut map = self.blocks.write().map_err(|_| BlockError::Medium)?;
        let end = extent.lba + extent.blocks;
        let doomed: Vec<u64> = map.range(extent.lba..end).map(|(k, _)| *k).collect();
        for k in doomed {
            map.remove(&k);
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let disk = BTreeDisk {
        blocks: RwLock::new(BTreeMap::new()),
        num_blocks: (256 << 20) / BLOCK as u64,
    };
    let target = Target::builder(disk).name("btree").start()?;
    println!("ready: {}", target.disk().unwrap().display());
    target.wait_for_signal()?;
    Ok(target.shutdown()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_emu::testing::{CheckOptions, check_device};

    /// Without root: through the emulator and the serving loop over a
    /// simulated kernel, against a model of the medium.
    #[test]
    fn passes_the_device_check() {
        check_device(
            || BTreeDisk {
                blocks: RwLock::new(BTreeMap::new()),
                num_blocks: 256,
            },
            CheckOptions::default(),
        );
    }
}
