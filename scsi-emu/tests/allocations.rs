//! No allocation per command on the data path: READ and WRITE of buffers
//! of several segments, taken from the ring, executed by the emulator on a
//! memory device and completed in the ring, once warm. (Only the handler's
//! side is counted; the simulated kernel queues and reaps outside it.)

use std::sync::Arc;

use block_backends::MemoryDevice;
use scsi_emu::{BlockDevice, Emulator, LunIdentity};
use tcmu_core::Ring;
use tcmu_core::server::drain;
use tcmu_core::sim::{SimConfig, SimKernel};

/// Blocks per command: 64 KiB, in 16 segments of one 4 KiB page each.
const BLOCKS: u16 = 128;

fn rw10(opcode: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

#[test]
fn reads_and_writes_allocate_nothing_once_warm() {
    let mut kernel = SimKernel::new(SimConfig::default());
    // One page per segment: every buffer comes in 16 pieces.
    kernel.segment_size = 4096;
    let mut ring = Ring::new(kernel.map()).unwrap();
    let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(512, 4096).unwrap());
    let emulator = Emulator::new(device, LunIdentity::new("alloc-1", "RAM disk"));
    let data = vec![0x5Au8; usize::from(BLOCKS) * 512];

    let mut serve = |cdb: &[u8], out: &[u8], in_len: usize, count: bool| -> u64 {
        kernel.submit(cdb, out, in_len).unwrap();
        let measured = allocation_counter::measure(|| {
            assert_eq!(drain(&mut ring, &emulator).unwrap(), 1);
        });
        assert!(ring.take_notify());
        assert_eq!(kernel.reap_count(), 1);
        assert!(kernel.broken().is_none());
        if count { measured.count_total } else { 0 }
    };
    // Warm: the device's chunks, the ring's pools.
    for lba in (0..1024).step_by(usize::from(BLOCKS)) {
        serve(&rw10(0x2A, lba, BLOCKS), &data, 0, false);
        serve(&rw10(0x28, lba, BLOCKS), &[], data.len(), false);
    }
    let mut allocations = 0;
    for round in 0..4 {
        for lba in (0..1024).step_by(usize::from(BLOCKS)) {
            allocations += serve(&rw10(0x2A, lba, BLOCKS), &data, 0, true);
            allocations += serve(&rw10(0x28, lba, BLOCKS), &[], data.len(), true);
        }
        assert_eq!(allocations, 0, "allocations by round {round}");
    }
}
