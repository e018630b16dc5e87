//! Every local backend through `scsi_emu::testing::check_device`: served
//! by the emulator over the ring of the simulated kernel, random command
//! sequences (overlapping writes in flight together, FUA, flush, UNMAP,
//! WRITE SAME, COMPARE AND WRITE, resize) against a model of the medium.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use block_backends::{FileDevice, FileOptions, MemoryDevice, ReadOnly, UringFileDevice};
use scsi_emu::testing::{CheckOptions, TestLun, check_async_device, check_device};

/// A fresh image path in `dir` for each case.
fn fresh(dir: &tempfile::TempDir, n: &AtomicUsize) -> PathBuf {
    dir.path()
        .join(format!("{}.img", n.fetch_add(1, Ordering::Relaxed)))
}

fn created(block_size: u32, blocks: u64) -> FileOptions {
    FileOptions {
        size: Some(u64::from(block_size) * blocks),
        create: true,
        ..FileOptions::new(block_size)
    }
}

#[test]
fn memory_device_512() {
    check_device(
        || MemoryDevice::new(512, 256).unwrap(),
        CheckOptions::default(),
    );
}

#[test]
fn memory_device_4096() {
    check_device(
        || MemoryDevice::new(4096, 64).unwrap(),
        CheckOptions::default(),
    );
}

#[test]
fn file_device() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    check_device(
        || FileDevice::open(fresh(&dir, &n), created(512, 256)).unwrap(),
        CheckOptions::default(),
    );
}

#[test]
fn file_device_4096() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    check_device(
        || FileDevice::open(fresh(&dir, &n), created(4096, 64)).unwrap(),
        CheckOptions::default(),
    );
}

#[test]
fn uring_file_device_async() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    check_async_device(
        || UringFileDevice::open(fresh(&dir, &n), created(512, 256)).unwrap(),
        CheckOptions::default(),
    );
}

#[test]
fn read_only_memory_device() {
    // Read-only: every write, UNMAP and WRITE SAME must be refused with
    // DATA PROTECT and change nothing.
    check_device(
        || ReadOnly::new(MemoryDevice::new(512, 128).unwrap()),
        CheckOptions::default(),
    );
}

#[test]
fn a_file_device_reads_back_through_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let device = FileDevice::open(dir.path().join("disk.img"), created(512, 128)).unwrap();
    let lun = TestLun::new(device).unwrap();
    lun.write_fua(5, &[0x5A; 1024]).unwrap();
    lun.unmap(&[(6, 1)]).unwrap();
    let mut expected = vec![0x5A; 512];
    expected.extend([0; 512]);
    assert_eq!(lun.read(5, 2).unwrap(), expected);
    lun.shutdown().unwrap();
}
