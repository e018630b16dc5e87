//! The emulator serving a memory device through the ring of the simulated
//! kernel: what the real kernel sees, without a kernel.

use std::sync::Arc;

use block_backends::MemoryDevice;
use scsi_emu::{BlockDevice, Emulator, LunIdentity};
use tcmu_core::Ring;
use tcmu_core::server::drain;
use tcmu_core::sim::{SimCompletion, SimConfig, SimKernel};

struct Harness {
    kernel: SimKernel,
    ring: Ring,
    emulator: Emulator<Arc<dyn BlockDevice>>,
}

impl Harness {
    fn new(blocks: u64) -> Harness {
        let kernel = SimKernel::new(SimConfig::default());
        let ring = Ring::new(kernel.map()).unwrap();
        let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(512, blocks).unwrap());
        let emulator = Emulator::new(device, LunIdentity::new("serial-1", "RAM disk"));
        Harness {
            kernel,
            ring,
            emulator,
        }
    }

    fn run(&mut self, cdb: &[u8], data_out: &[u8], data_in_len: usize) -> SimCompletion {
        let id = self.kernel.submit(cdb, data_out, data_in_len).unwrap();
        assert_eq!(drain(&mut self.ring, &self.emulator).unwrap(), 1);
        assert!(self.ring.take_notify());
        let mut done = self.kernel.reap();
        assert!(self.kernel.broken().is_none());
        assert_eq!(done.len(), 1);
        let c = done.pop().unwrap();
        assert_eq!(c.id, id);
        c
    }
}

fn rw10(opcode: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut cdb = vec![opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

#[test]
fn writes_read_back_through_the_ring() {
    let mut h = Harness::new(4096);
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 253) as u8).collect();
    let w = h.run(&rw10(0x2A, 100, 512), &data, 0);
    assert_eq!(w.status, 0);
    let r = h.run(&rw10(0x28, 100, 512), &[], data.len());
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in, data);
}

#[test]
fn inquiry_is_truncated_and_reported_short() {
    let mut h = Harness::new(64);
    let r = h.run(&[0x12, 0, 0, 0, 255, 0], &[], 255);
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in[0] & 0x1F, 0, "direct-access device");
    let len = r.data_in.len();
    assert!(
        (36..255).contains(&len),
        "the residual is reported, got {len} bytes"
    );
    assert_eq!(r.read_len, Some(len as u32));
}

#[test]
fn out_of_range_reads_fail_with_lba_out_of_range() {
    let mut h = Harness::new(64);
    let r = h.run(&rw10(0x28, 60, 8), &[], 8 * 512);
    assert_eq!(r.status, 2);
    assert_eq!(r.sense[2] & 0xF, 0x5);
    assert_eq!((r.sense[12], r.sense[13]), (0x21, 0x00));
}

#[test]
fn unknown_opcodes_fail_with_invalid_command_operation_code() {
    let mut h = Harness::new(64);
    let r = h.run(&[0xC7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(r.status, 2);
    assert_eq!(
        (r.sense[2] & 0xF, r.sense[12], r.sense[13]),
        (0x5, 0x20, 0x00)
    );
}

#[test]
fn read_capacity_reports_the_geometry() {
    let mut h = Harness::new(1 << 20);
    let r = h.run(
        &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        &[],
        32,
    );
    assert_eq!(r.status, 0);
    assert_eq!(
        u64::from_be_bytes(r.data_in[0..8].try_into().unwrap()),
        (1 << 20) - 1
    );
    assert_eq!(
        u32::from_be_bytes(r.data_in[8..12].try_into().unwrap()),
        512
    );
}

#[test]
fn mode_select_d_sense_switches_the_sense_format() {
    let mut h = Harness::new(64);
    // An error in fixed format, pointing at the page code.
    let bad_inquiry = [0x12, 0x01, 0x42, 0, 255, 0];
    let r = h.run(&bad_inquiry, &[], 255);
    assert_eq!(r.status, 2);
    assert_eq!(r.sense[0], 0x70);
    assert_eq!(&r.sense[15..18], &[0xC0 | 0x08 | 7, 0, 2]);

    // MODE SELECT(6): the control page with D_SENSE set.
    let mut params = vec![0u8, 0, 0, 0];
    params.extend_from_slice(&[0x0A, 0x0A, 0x04, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
    let r = h.run(&[0x15, 0x10, 0, 0, params.len() as u8, 0], &params, 0);
    assert_eq!(r.status, 0);
    assert!(h.emulator.descriptor_sense());

    let r = h.run(&bad_inquiry, &[], 255);
    assert_eq!(r.status, 2);
    assert_eq!(&r.sense[..4], &[0x72, 0x05, 0x24, 0x00]);
    assert_eq!(r.sense[7], 8, "one sense key specific descriptor");
    assert_eq!(
        &r.sense[8..16],
        &[0x02, 0x06, 0, 0, 0xC0 | 0x08 | 7, 0, 2, 0]
    );
}

#[test]
fn compare_and_write_through_the_ring() {
    let mut h = Harness::new(64);
    let old = vec![0u8; 512];
    let new = vec![0x11u8; 512];
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[9] = 5;
    cdb[13] = 1;
    let r = h.run(&cdb, &[old.clone(), new.clone()].concat(), 0);
    assert_eq!(r.status, 0);
    // Again: the block now holds `new`, so `old` miscompares at byte 0.
    let r = h.run(&cdb, &[old, new.clone()].concat(), 0);
    assert_eq!(r.status, 2);
    assert_eq!(r.sense[0], 0xF0, "fixed format with VALID");
    assert_eq!(r.sense[2] & 0xF, 0x0E, "MISCOMPARE");
    assert_eq!((r.sense[12], r.sense[13]), (0x1D, 0x00));
    assert_eq!(&r.sense[3..7], &[0, 0, 0, 0]);
    let r = h.run(&rw10(0x28, 5, 1), &[], 512);
    assert_eq!(r.data_in, new);
}
