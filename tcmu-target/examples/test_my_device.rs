//! Testing a device without root: the device goes through the real SCSI
//! emulator and the real serving loop, over an in-process simulated
//! kernel (`scsi_emu::testing`, feature `test-utils`). `cargo run
//! --example test_my_device` runs the conformance check; `cargo test -p
//! tcmu-target --example test_my_device` runs the tests below, which is
//! how a device crate would test its own device.

use std::collections::HashMap;
use std::sync::Mutex;

use scsi_emu::testing::{CheckOptions, check_device};
use scsi_emu::{BlockDevice, BlockError, DeviceCapabilities, Extent};

/// The device under test: a sparse disk of 512-byte blocks in a
/// `HashMap`; blocks never written, or unmapped, read as zeros.
struct Sparse {
    blocks: Mutex<HashMap<u64, Vec<u8>>>,
    num_blocks: u64,
}

impl Sparse {
    fn new(num_blocks: u64) -> Sparse {
        Sparse {
            blocks: Mutex::new(HashMap::new()),
            num_blocks,
        }
    }
}

impl BlockDevice for Sparse {
    fn block_size(&self) -> u32 {
        512
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.blocks.lock().unwrap();
        for (i, out) in buf.chunks_mut(512).enumerate() {
            match blocks.get(&(lba + i as u64)) {
                Some(block) => out.copy_from_slice(block),
                None => out.fill(0),
            }
        }
        Ok(())
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut blocks = self.blocks.lock().unwrap();
        for (i, data) in buf.chunks(512).enumerate() {
            blocks.insert(lba + i as u64, data.to_vec());
        }
        Ok(())
    }
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
            .unmap(true)
            .unmap_reads_zeroes(true)
    }
    fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let mut blocks = self.blocks.lock().unwrap();
        for lba in extent.lba..extent.lba + extent.blocks {
            blocks.remove(&lba);
        }
        Ok(())
    }
}

fn main() {
    // Random command sequences against a model of the medium; panics with
    // the shortest failing sequence found.
    check_device(|| Sparse::new(1024), CheckOptions::default());
    println!("Sparse passed the device check");
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_emu::testing::{Request, SenseKey, TestLun};

    #[test]
    fn reads_what_was_written_and_zeros_after_unmap() {
        let lun = TestLun::new(Sparse::new(64)).unwrap();
        lun.write(8, &[0xAB; 1024]).unwrap();
        lun.unmap(&[(9, 1)]).unwrap();
        let mut expected = vec![0xAB; 512];
        expected.extend([0; 512]);
        assert_eq!(lun.read(8, 2).unwrap(), expected);

        // Commands in flight together, completed in any order.
        let writes = (0..16).map(|lba| Request::write(lba, vec![lba as u8; 512]));
        for outcome in lun.run_all(writes.collect()).unwrap() {
            assert!(outcome.is_good(), "{outcome}");
        }
        assert_eq!(lun.read(15, 1).unwrap(), vec![15; 512]);

        // Errors are SCSI answers, with the command named.
        let past_the_end = lun.read(64, 1).unwrap_err();
        assert_eq!(past_the_end.sense().unwrap().key, SenseKey::IllegalRequest);
    }

    #[test]
    fn passes_the_device_check() {
        check_device(|| Sparse::new(1024), CheckOptions::default());
    }
}
